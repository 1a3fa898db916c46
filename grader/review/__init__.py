"""TA review of the manual (free-text) items, and regrades that keep those reviews.

A result folder (`result.json`, the reports, `record.json`) gains `reviews.json`: the append-only
history of every review of its manual items (reviewer, UTC time, item, score, comment, how it was
entered, a hash of the answer that was reviewed). The history is the source of truth: a result's
manual items are always rebuilt from it (the latest review of an item decides its score), so
re-applying it is idempotent and no review is ever lost, also across a regrade.

    from grader.review import apply_reviews, pending_items
    apply_reviews(Path("results/kim"), {"exp-analysis": {"score": 1.5, "comment": "no numbers"}}, "lee")

DIR is one result folder (it holds `result.json`) or a batch folder (`grade batch`'s OUT: one
subfolder per student with a `result.json`, and `gradebook.csv`). In a batch the gradebook (and
the class summary, when there is one) is rebuilt after every review or regrade.

The scores file (`grade review DIR --scores FILE.yaml`, see `parse_scores` and
`write_template`):

    reviewer: lee-ta                  # optional; --reviewer wins
    results:
      kim:                            # the student's folder in a batch; "." for a single result
        theory-online-softmax:
          score: 1.5                  # 0..max points, decimals allowed; null (empty) = skip
          comment: "Rescaling argument complete."   # optional, shown to the student
        exp-analysis: 2               # shorthand: just the points

A file without the `results:` key is read as the `results` mapping itself
(`{kim: {exp-analysis: {score: 2}}}`).

A reviewed item's check entry becomes status "pass" with the awarded points ("fail" for 0), the
message "reviewed by NAME: COMMENT" (in the result's language) and a `review` field (reviewer,
time, comment, number of reviews); the totals come from `grader.rubric.score`.

`regrade(DIR)` grades the recorded submission (record.json: source, secret seed, options) again
into a fresh folder, re-applies reviews.json to it, compares the verdicts, moves the old result
to DIR/history/<UTC time>/ and puts the new one in place, with DIR/regrade.json saying what
changed and why. `carry_over(old, new)` is the part a batch re-run needs to keep the reviews.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import yaml

from grader.errors import UsageError
from grader.i18n import LANGUAGES

__all__ = [
    "ReviewError", "ReviewScore", "ResultFolder", "PendingItem", "REVIEWS_NAME", "HISTORY_DIR",
    "find_results", "pending_items", "read_history", "apply_reviews", "apply_batch_reviews", "reapply",
    "rebuild", "parse_scores", "write_template", "template_text", "refresh_gradebook", "write_gradebook",
    "carry_over", "default_reviewer", "answer_sha256", "review_lock", "stamp_folder", "SINGLE",
    "regrade", "compare_results", "RegradeOutcome", "CheckChange", "REGRADE_NAME", "review_message",
]

REVIEWS_NAME = "reviews.json"
REGRADE_NAME = "regrade.json"      # the last regrade's comparison, in the new result folder
HISTORY_DIR = "history"
LOCK_NAME = ".review-lock"
REVIEWS_FORMAT = 1
SINGLE = "."                     # the student key of a single result folder
GRADEBOOK_NAME = "gradebook.csv"
SUMMARY_NAME = "summary.html"
BATCH_LOCK_NAME = ".batch-lock"   # held by a running `grade batch` (grader/batch/state.py)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class ReviewError(UsageError):
    """The reviews cannot be applied (unknown student or item, a non-manual item, a score out of
    range, an unreadable file...). `problems` lists every one; nothing was applied."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ReviewScore:
    score: float
    comment: str = ""


@dataclass(frozen=True)
class ResultFolder:
    student: str        # "." for a single result folder, else the batch's student folder name
    path: Path


@dataclass
class PendingItem:
    """A manual item of one result, as the TA sees it."""

    student: str
    path: Path
    item: str
    title: str
    criterion: str
    max_score: float
    bonus: bool
    status: str                      # pending, or pass/fail when already reviewed
    score: float
    answer: str
    guidance: str
    reviews: list[dict] = field(default_factory=list)   # earlier reviews of this item, oldest first


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"{path}: no {what}") from None
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ReviewError(f"{path}: unreadable {what} (not a JSON object)")
    return data


def _write_json(path: Path, data: Any) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def answer_sha256(answer: Any) -> str:
    return hashlib.sha256(str(answer or "").encode("utf-8")).hexdigest()


def default_reviewer() -> str:
    """$GRADER_REVIEWER, else the login name."""
    name = os.environ.get("GRADER_REVIEWER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def _clean_reviewer(reviewer: Any) -> str:
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ReviewError("the reviewer's name is empty: give --reviewer NAME")
    name = " ".join(_CONTROL.sub(" ", reviewer).split())
    if len(name) > 100:
        raise ReviewError("the reviewer's name is longer than 100 characters")
    return name


def _fmt(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".")


@contextmanager
def review_lock(result_dir: Path) -> Iterator[None]:
    """One writer per result folder (a review or a regrade); a second one is refused at once."""
    handle = open(Path(result_dir) / LOCK_NAME, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ReviewError(f"{result_dir}: another review or regrade is writing to this result right now; "
                                  "try again when it has finished") from None
            raise
        yield
    finally:
        handle.close()


@contextmanager
def _batch_guard(batch_dir: Path | None) -> Iterator[None]:
    """While a review or regrade writes into a batch, no `grade batch` may write there (and the
    other way round): the batch's own lock, taken without blocking."""
    if batch_dir is None or not (batch_dir / GRADEBOOK_NAME).exists() and not (batch_dir / BATCH_LOCK_NAME).exists():
        yield
        return
    handle = open(batch_dir / BATCH_LOCK_NAME, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ReviewError(f"{batch_dir}: a `grade batch` is writing to this folder right now; "
                                  "review when it has finished") from None
            raise
        yield
    finally:
        handle.close()


# --------------------------------------------------------------------------------------------
# where the results are
# --------------------------------------------------------------------------------------------


def find_results(directory: Path) -> tuple[Path | None, list[ResultFolder]]:
    """(the batch folder or None, the result folders under `directory`).

    `directory` with a result.json is one result (student "."); its parent is returned as the
    batch folder when that holds a gradebook (a student's folder of a batch). Otherwise every
    non-hidden subfolder with a result.json is a student of the batch `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReviewError(f"{directory}: no such folder")
    if (directory / "result.json").is_file():
        parent = directory.resolve().parent
        batch = parent if (parent / GRADEBOOK_NAME).is_file() else None
        return batch, [ResultFolder(SINGLE, directory)]
    folders = [ResultFolder(child.name, child) for child in sorted(directory.iterdir(), key=lambda p: p.name)
               if not child.name.startswith(".") and child.is_dir() and not child.is_symlink()
               and (child / "result.json").is_file()]
    if not folders:
        raise ReviewError(f"{directory}: neither a result folder (result.json) nor a batch folder "
                          "(subfolders with result.json)")
    folders.sort(key=lambda f: (f.student.casefold(), f.student))
    return directory, folders


def _load_rubric(assignment: Any):
    from grader.pipeline import rubrics_dir
    from grader.rubric import load_rubric

    if not isinstance(assignment, str) or not assignment:
        raise ReviewError("the result names no assignment")
    path = rubrics_dir() / f"{assignment}.yaml"
    try:
        stat = path.stat()
    except OSError:
        return load_rubric(path)  # raises the usual "no rubric at ..."
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _RUBRICS:  # a batch review loads the same rubric for every student
        _RUBRICS.clear()
        _RUBRICS[key] = load_rubric(path)
    return _RUBRICS[key]


_RUBRICS: dict[tuple, Any] = {}


def read_history(result_dir: Path) -> list[dict]:
    """Every review of this result, oldest first ([] before the first review)."""
    path = Path(result_dir) / REVIEWS_NAME
    if not path.exists():
        return []
    data = _read_json(path, "review history")
    reviews = data.get("reviews")
    if not isinstance(reviews, list) or not all(isinstance(r, dict) and isinstance(r.get("item"), str)
                                                  and isinstance(r.get("score"), (int, float)) for r in reviews):
        raise ReviewError(f"{path}: unreadable review history (expected a list of reviews): fix or restore it "
                          "before reviewing again; it is never overwritten")
    return reviews


def _latest(history: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for entry in history:
        latest[entry["item"]] = entry
    return latest


# --------------------------------------------------------------------------------------------
# the result, rebuilt from the history
# --------------------------------------------------------------------------------------------


def _lang(result: dict) -> str:
    return result.get("lang") if result.get("lang") in LANGUAGES else "en"


def review_message(reviewer: str, comment: str, lang: str) -> str:
    """The check's message once reviewed, in the result's language: "reviewed by NAME: COMMENT"."""
    from grader.i18n import msg

    message = (msg("manual.reviewed_comment", reviewer=reviewer, comment=comment) if comment
               else msg("manual.reviewed", reviewer=reviewer))
    text = message.render(lang)
    if text == message.id:  # not in the catalogs (yet): the English text
        text = f"reviewed by {reviewer}" + (f": {comment}" if comment else "")
    return text


def _manual_ids(rubric, result: dict | None = None) -> dict[str, Any]:
    """The items a TA scores: the manual ones, and, in `result`, the checks a requirement left
    pending for a TA (what only the dynamic layer saw: the TA decides, with the evidence)."""
    items = {item.id: item for item in rubric.items if getattr(item, "kind", None) == "manual"}
    if result is not None:
        for check in result.get("checks") or []:
            if isinstance(check, dict) and _awaits_ta(check) and any(i.id == check.get("id") for i in rubric.items):
                items[check["id"]] = rubric.item(check["id"])
    return items


def _awaits_ta(check: dict) -> bool:
    """A check (not a manual item) sent to a TA by a requirement: pending with evidence, or reviewed since."""
    return bool(check.get("measured")) and (check.get("status") == "pending" or bool(check.get("review")))


def rebuild(result: dict, history: list[dict], rubric) -> tuple[dict, list[str]]:
    """The result with every reviewed manual item set from its latest review, and the totals
    recomputed with the rubric. Pure and idempotent. Returns (new result, warnings) -- warnings
    for reviews of items this result no longer has (the rubric changed since)."""
    from grader.rubric import score

    new = json.loads(json.dumps(result))
    checks = new.get("checks") or []
    by_id = {c.get("id"): c for c in checks if isinstance(c, dict)}
    manual = _manual_ids(rubric, new)
    lang = _lang(new)
    warnings = []
    for item_id, entry in _latest(history).items():
        check = by_id.get(item_id)
        if check is None or item_id not in manual:
            warnings.append(f"the review of {item_id} by {entry.get('reviewer')} ({entry.get('at')}) was not applied: "
                            "this result has no such manual item (the rubric changed)")
            continue
        awarded = round(float(entry["score"]), 4)
        comment = str(entry.get("comment") or "").strip()
        check["status"] = "pass" if awarded > 0 else "fail"
        check["score"] = awarded
        check["message"] = review_message(str(entry.get("reviewer")), comment, lang)
        check["review"] = {"reviewer": entry.get("reviewer"), "at": entry.get("at"), "comment": comment,
                           "reviews": sum(1 for e in history if e["item"] == item_id)}
    unknown = [c["id"] for c in checks if isinstance(c, dict) and not any(i.id == c.get("id") for i in rubric.items)]
    if unknown:
        raise ReviewError(f"the rubric of {new.get('assignment')} no longer has the items {', '.join(unknown)} of "
                          "this result: regrade it first (grade regrade DIR)")
    new.update(score(rubric, checks))
    return new, warnings


def _write_result(result_dir: Path, result: dict) -> None:
    from grader.report import write_reports

    _write_json(Path(result_dir) / "result.json", result)
    write_reports(result, Path(result_dir))


def reapply(result_dir: Path) -> tuple[dict, list[str]]:
    """Rebuild result.json (and the reports) from reviews.json. Idempotent."""
    result_dir = Path(result_dir)
    result = _read_json(result_dir / "result.json", "result.json")
    history = read_history(result_dir)
    if not history or result.get("status") != "graded":
        return result, []
    new, warnings = rebuild(result, history, _load_rubric(result.get("assignment")))
    _write_result(result_dir, new)
    return new, warnings


# --------------------------------------------------------------------------------------------
# what awaits review
# --------------------------------------------------------------------------------------------


def _items_of(folder: ResultFolder, *, include_reviewed: bool) -> list[PendingItem]:
    result = _read_json(folder.path / "result.json", "result.json")
    if result.get("status") != "graded":
        return []
    rubric = _load_rubric(result.get("assignment"))
    manual = _manual_ids(rubric, result)
    history = read_history(folder.path)
    out = []
    for check in result.get("checks") or []:
        if not isinstance(check, dict) or check.get("id") not in manual:
            continue
        if check.get("status") != "pending" and not include_reviewed:
            continue
        item = manual[check["id"]]
        from grader.i18n import msg, render

        out.append(PendingItem(
            student=folder.student, path=folder.path, item=item.id,
            title=str(check.get("title") or render(item.title, _lang(result)) or item.id), criterion=item.criterion,
            max_score=float(item.points), bonus=bool(item.bonus), status=str(check.get("status")),
            score=float(check.get("score") or 0.0),
            # for a requirement's pending check, the evidence is what the TA weighs
            answer=str(check.get("answer") or (check.get("message") if _awaits_ta(check) else "") or ""),
            guidance=str(check.get("guidance") or render(getattr(item, "guidance", "") or
                                                         msg("review.requirement_guidance"), _lang(result)) or ""),
            reviews=[e for e in history if e["item"] == item.id],
        ))
    return out


def pending_items(directory: Path, *, include_reviewed: bool = False) -> list[PendingItem]:
    """The manual items awaiting a TA in one result folder or a whole batch (with
    `include_reviewed`, the reviewed ones too), in student order then rubric order."""
    _, folders = find_results(directory)
    items: list[PendingItem] = []
    for folder in folders:
        items.extend(_items_of(folder, include_reviewed=include_reviewed))
    return items


# --------------------------------------------------------------------------------------------
# applying reviews
# --------------------------------------------------------------------------------------------


def _coerce_score(raw: Any) -> ReviewScore | None | str:
    """A ReviewScore, None (left blank: skip), or a problem message."""
    if isinstance(raw, ReviewScore):
        return raw
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        extra = sorted(str(k) for k in raw if k not in ("score", "comment"))
        if extra:
            return f"unknown key(s) {', '.join(extra)} (an entry has score and comment)"
        comment = raw.get("comment")
        if comment is None:
            comment = ""
        if not isinstance(comment, str):
            return f"comment must be text, got {comment!r}"
        value = raw.get("score")
        if value is None:
            return None
        number = _number(value)
        return number if isinstance(number, str) else ReviewScore(number, comment.strip())
    number = _number(raw)
    return number if isinstance(number, str) else ReviewScore(number)


def _number(value: Any) -> float | str:
    if isinstance(value, bool):
        return f"score must be a number of points, got {value!r}"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return f"score must be a number of points, got {value!r}"
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return f"score must be a number of points, got {value!r}"
    return float(value)


@dataclass
class _Plan:
    folder: ResultFolder
    result: dict
    rubric: Any
    history: list[dict]
    entries: list[dict]
    new_result: dict | None = None      # the result rebuilt from history + entries


def _plan(folder: ResultFolder, scores: Mapping[str, Any], reviewer: str, via: str,
          problems: list[str]) -> _Plan | None:
    """Validate the scores of one result; problems are appended (prefixed with the student)."""
    where = "" if folder.student == SINGLE else f"{folder.student}: "
    try:
        result = _read_json(folder.path / "result.json", "result.json")
        history = read_history(folder.path)
    except ReviewError as exc:
        problems.extend(where + p for p in exc.problems)
        return None
    if result.get("status") != "graded":
        problems.append(f"{where}the result is {result.get('status')!r}, not graded: nothing to review "
                        f"({result.get('reason') or 'no reason given'})")
        return None
    try:
        rubric = _load_rubric(result.get("assignment"))
    except UsageError as exc:
        problems.append(f"{where}{exc}")
        return None
    checks = {c.get("id"): c for c in result.get("checks") or [] if isinstance(c, dict)}
    manual = _manual_ids(rubric, result)
    all_ids = {i.id for i in rubric.items}
    entries = []
    at = _now()
    if not isinstance(scores, Mapping):
        problems.append(f"{where}expected a mapping of item id to score, got {type(scores).__name__}")
        return None
    for item_id, raw in scores.items():
        item_id = str(item_id)
        if item_id not in all_ids:
            known = ", ".join(sorted(manual)) or "none"
            problems.append(f"{where}{item_id}: unknown item (the manual items of {result.get('assignment')} are "
                            f"{known})")
            continue
        if item_id not in manual:
            problems.append(f"{where}{item_id}: not a manual item (it is decided by the grader; "
                            "a TA reviews only free-text answers)")
            continue
        if item_id not in checks:
            problems.append(f"{where}{item_id}: this result has no such item (graded with an older rubric: "
                            "regrade it first)")
            continue
        value = _coerce_score(raw)
        if isinstance(value, str):
            problems.append(f"{where}{item_id}: {value}")
            continue
        if value is None:
            continue  # left blank: skipped
        max_points = float(manual[item_id].points)
        if not 0 <= value.score <= max_points + 1e-9:
            problems.append(f"{where}{item_id}: score {_fmt(value.score)} out of range 0..{_fmt(max_points)}")
            continue
        entries.append({"item": item_id, "score": round(value.score, 4), "max_score": max_points,
                        "comment": _CONTROL.sub(" ", value.comment).strip(),
                        "reviewer": reviewer, "at": at, "via": via,
                        "answer_sha256": answer_sha256(checks[item_id].get("answer"))})
    try:  # a result the rubric no longer fits is refused here, before anything is written
        new_result, _ = rebuild(result, history + entries, rubric)
    except ReviewError as exc:
        problems.extend(where + p for p in exc.problems)
        return None
    return _Plan(folder, result, rubric, history, entries, new_result)


def _commit(plan: _Plan) -> dict:
    """Append the entries to the history (first: it is the source of truth), then write the
    result rebuilt from the whole history, and its reports."""
    _write_json(plan.folder.path / REVIEWS_NAME, {
        "format": REVIEWS_FORMAT, "assignment": plan.result.get("assignment"),
        "reviews": plan.history + plan.entries})
    _write_result(plan.folder.path, plan.new_result)
    return plan.new_result


def apply_batch_reviews(directory: Path, scores: Mapping[str, Mapping[str, Any]], reviewer: str, *,
                        via: str = "api", gradebook: bool = True) -> dict[str, dict]:
    """Apply `{student: {item: score | {score, comment}}}` to a result folder (student "." or
    the folder's name) or a batch. Everything is validated first: on any problem a ReviewError
    lists them all and nothing is written. Returns {student: new result} of the folders
    reviewed; the batch's gradebook is rebuilt."""
    reviewer = _clean_reviewer(reviewer)
    directory = Path(directory)
    batch, folders = find_results(directory)
    by_student = {f.student: f for f in folders}
    if len(folders) == 1 and folders[0].student == SINGLE:
        by_student[directory.resolve().name] = folders[0]
    problems: list[str] = []
    if not isinstance(scores, Mapping):
        raise ReviewError("the scores must map students to items")
    wanted: list[tuple[ResultFolder, Mapping]] = []
    seen: set[str] = set()
    for student, items in scores.items():
        student = str(student)
        folder = by_student.get(student)
        if folder is None:
            hint = ('"." for the result folder itself' if SINGLE in by_student
                    else "students: " + ", ".join(sorted(f.student for f in folders))[:300])
            problems.append(f"{student}: no such result in {directory} ({hint})")
            continue
        if folder.student in seen:
            problems.append(f"{student}: given twice")
            continue
        seen.add(folder.student)
        if items is None:
            continue
        wanted.append((folder, items))
    with ExitStack() as stack:
        stack.enter_context(_batch_guard(batch))
        for folder, _ in wanted:
            stack.enter_context(review_lock(folder.path))
        plans = [p for folder, items in wanted if (p := _plan(folder, items, reviewer, via, problems))]
        if problems:
            raise ReviewError(problems)
        out = {}
        for plan in plans:
            if plan.entries:
                out[plan.folder.student] = _commit(plan)
        if gradebook and batch is not None and out:
            refresh_gradebook(batch)
    return out


def apply_reviews(result_dir: Path, scores: Mapping[str, Any], reviewer: str, *, via: str = "api",
                  gradebook: bool = True) -> dict:
    """Review manual items of ONE result folder: `scores` maps item ids to points or
    `{score, comment}` (a ReviewScore works too). Validated first (ReviewError, nothing written),
    then appended to reviews.json, result.json rebuilt atomically, the reports re-rendered and,
    for a student of a batch, the batch's gradebook rebuilt. Returns the new result."""
    result_dir = Path(result_dir)
    if not (result_dir / "result.json").is_file():
        raise ReviewError(f"{result_dir}: not a result folder (no result.json)")
    done = apply_batch_reviews(result_dir, {SINGLE: scores}, reviewer, via=via, gradebook=gradebook)
    return done.get(SINGLE) or _read_json(result_dir / "result.json", "result.json")


# --------------------------------------------------------------------------------------------
# the scores file and its template
# --------------------------------------------------------------------------------------------


def parse_scores(path: Path) -> tuple[str | None, dict[str, Any]]:
    """(reviewer or None, {student: {item: entry}}) from a scores YAML file (format above)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path}: unreadable ({exc})") from None
    except yaml.YAMLError as exc:
        raise ReviewError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        raise ReviewError(f"{path}: empty scores file")
    if not isinstance(data, dict):
        raise ReviewError(f"{path}: expected a mapping (reviewer:, results: {{student: {{item: {{score, comment}}}}}})")
    reviewer = None
    if "results" in data:
        extra = sorted(str(k) for k in data if k not in ("reviewer", "results", "format"))
        if extra:
            raise ReviewError(f"{path}: unknown top-level key(s) {', '.join(extra)} "
                              "(expected reviewer and results)")
        reviewer = data.get("reviewer")
        if reviewer is not None and not isinstance(reviewer, str):
            raise ReviewError(f"{path}: reviewer must be a name, got {reviewer!r}")
        results = data.get("results") or {}
    else:
        results = data
    if not isinstance(results, dict):
        raise ReviewError(f"{path}: results must map students to items")
    problems = [f"{path}: {s}: expected a mapping of item ids to scores"
                for s, items in results.items() if items is not None and not isinstance(items, dict)]
    if problems:
        raise ReviewError(problems)
    return (reviewer.strip() or None) if isinstance(reviewer, str) else None, {str(k): v for k, v in results.items()}


# What PyYAML accepts in a stream (its reader's printable set) less its line breaks (\x85,
# \u2028, \u2029 end a comment): anything else in a comment would make the whole file unreadable.
_YAML_UNSAFE = re.compile("[^\x09\x20-\x7E\xA0-\u2027\u202A-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
# PyYAML reads a key written in the implicit form up to this many characters.
_YAML_SIMPLE_KEY_CHARS = 1000


def _comment_text(text: Any) -> str:
    """Free text (an answer, a title, a path) made safe for one YAML comment line."""
    return _YAML_UNSAFE.sub(" ", _CONTROL.sub(" ", str(text)))


def _yaml_scalar(value: Any, *, quoted: bool) -> str:
    """`value` as one YAML scalar on one line, written by PyYAML itself so that safe_load reads
    back exactly `value`, whatever it holds (controls, line separators, bytes that were not
    UTF-8, `null`, a leading `-`). `quoted`: always double-quoted (a student id, so that an id
    like `no` or `1e3` stays a string at a glance too); else plain where PyYAML allows it."""
    dumped = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=float("inf"),
                            default_style='"' if quoted else None)
    if not quoted and "\n" in dumped.strip():
        dumped = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=float("inf"),
                                default_style='"')
    return dumped.strip()[1:-1]  # the list's brackets off: a flow scalar is valid in block context


def _yaml_key_lines(key: Any, indent: str, *, quoted: bool) -> list[str]:
    """The line(s) that open a mapping entry `key:` whose value is the block that follows, at
    `indent`: the implicit form, or the explicit `? key` form for a key too long for it."""
    scalar = _yaml_scalar(key, quoted=quoted)
    if len(scalar) <= _YAML_SIMPLE_KEY_CHARS:
        return [f"{indent}{scalar}:"]
    return [f"{indent}? {scalar}", f"{indent}:"]


def _comment_lines(text: str, indent: str, width: int = 96) -> list[str]:
    """`text` as YAML comment lines (wrapped; no line break of any kind survives inside one)."""
    import textwrap

    lines = []
    for line in str(text).splitlines() or [""]:
        line = _comment_text(line).rstrip()
        parts = textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False,
                              drop_whitespace=True) if line.strip() else []
        lines.extend(f"{indent}#   {part}" for part in parts) if parts else lines.append(f"{indent}#")
    return lines


def template_text(directory: Path, *, include_reviewed: bool = False) -> tuple[str, int]:
    """The scores file to fill in for the pending items of `directory`, with each answer and
    the rubric's guidance as YAML comments. Returns (text, number of items)."""
    directory = Path(directory)
    items = pending_items(directory, include_reviewed=include_reviewed)
    out = [
        f"# Scores for the manual items of {_comment_text(os.fsencode(directory).decode('utf-8', 'backslashreplace'))} "
        f"({_now()}).",
        "# Fill in `score` (0..max points, decimals allowed) and optionally `comment` (shown to the",
        "# student), then: grade review DIR --scores THIS_FILE [--reviewer NAME]",
        "# Items whose score is left empty (null) are skipped; nothing is applied if any entry is invalid.",
        "reviewer: null",
    ]
    if not items:
        out.append("results: {}   # nothing awaits review")
        return "\n".join(out) + "\n", 0
    out.append("results:")
    current = None
    for it in items:
        if it.student != current:
            current = it.student
            # Written by PyYAML: a student id may hold anything a file name can (see grader.batch.names).
            out.extend(_yaml_key_lines(it.student, "  ", quoted=True))
        bonus = " bonus" if it.bonus else ""
        out.extend(_yaml_key_lines(it.item, "    ", quoted=False))
        out.append(f"      # {_comment_text(it.title)} ({_comment_text(it.criterion)}{bonus}, "
                   f"max {_fmt(it.max_score)} points)")
        if it.reviews:
            last = it.reviews[-1]
            out.append(f"      # Now {_fmt(float(last['score']))} points, reviewed by "
                       f"{_comment_text(last.get('reviewer'))} at {_comment_text(last.get('at'))}")
        out.append("      # Guidance:")
        out.extend(_comment_lines(it.guidance, "      "))
        out.append("      # Answer:")
        out.extend(_comment_lines(it.answer if it.answer.strip() else "(no answer)", "      "))
        out.append("      score: null")
        out.append('      comment: ""')
    return "\n".join(out) + "\n", len(items)


def write_template(directory: Path, path: Path, *, include_reviewed: bool = False) -> int:
    """Write the scores file to fill in (see template_text); returns the number of items."""
    text, count = template_text(directory, include_reviewed=include_reviewed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")  # plain UTF-8: every scalar above is PyYAML's own
    os.replace(tmp, path)
    return count


# --------------------------------------------------------------------------------------------
# the batch's gradebook
# --------------------------------------------------------------------------------------------


def refresh_gradebook(batch_dir: Path) -> Path | None:
    """Rebuild OUT/gradebook.csv (and OUT/summary.html when there is one) from every student's
    result.json, with the batch's own writer. None when `batch_dir` is not a batch."""
    batch_dir = Path(batch_dir)
    _, folders = find_results(batch_dir)
    if folders and folders[0].student == SINGLE:
        return None
    from grader.batch.gradebook import row_from_result, write_gradebook as batch_write_gradebook

    rows = []
    for folder in folders:
        try:
            result = json.loads((folder.path / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(result, dict):
            rows.append(row_from_result(folder.student, result))
    path = batch_write_gradebook(rows, batch_dir / GRADEBOOK_NAME)
    if (batch_dir / SUMMARY_NAME).exists():
        import grader
        from grader.batch.gradebook import write_summary

        engines = {str((r.result.get("batch") or {}).get("engine")) for r in rows
                   if isinstance(r.result.get("batch"), dict)}
        sources = [Path(str(r.result["submission"]["source"])).parent for r in rows
                   if isinstance(r.result.get("submission"), dict) and r.result["submission"].get("source")]
        input_dir = str(sources[0]) if sources and all(s == sources[0] for s in sources) else ""
        # In the language the batch wrote its feedback in (each result.json records it).
        languages = {r.result.get("lang") for r in rows if r.result.get("lang") in LANGUAGES}
        write_summary(rows, batch_dir / SUMMARY_NAME, input_dir=input_dir,
                      engine=engines.pop() if len(engines) == 1 else "", grader_version=grader.__version__,
                      lang=languages.pop() if len(languages) == 1 else None)
    return path


def write_gradebook(batch_dir: Path) -> Path | None:
    """Alias of refresh_gradebook (for callers that hold only the batch folder)."""
    return refresh_gradebook(batch_dir)


# --------------------------------------------------------------------------------------------
# a regraded result keeps its reviews
# --------------------------------------------------------------------------------------------


def carry_over(old_dir: Path, new_dir: Path, *, keep_old: bool = True) -> tuple[dict, list[str]]:
    """Bring the review history of `old_dir` to the freshly graded `new_dir` and re-apply the
    reviews to its result; with `keep_old`, also copy the old result (and the earlier ones in its
    history/) into new_dir/history/<UTC time>/. `old_dir` is only read.

    For the batch: call this on the new attempt before it replaces OUT/<student>/, so that a
    regrade of a changed submission keeps the TA's work and the old result. Returns (new result,
    warnings): a review of an answer that has changed since is re-applied but named in the
    warnings."""
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    warnings: list[str] = []
    history = read_history(old_dir) if old_dir.is_dir() else []
    if keep_old and (old_dir / "result.json").is_file():
        target = new_dir / HISTORY_DIR
        if (old_dir / HISTORY_DIR).is_dir():
            shutil.copytree(old_dir / HISTORY_DIR, target, symlinks=True, dirs_exist_ok=True)
        target.mkdir(exist_ok=True)
        shutil.copytree(old_dir, stamp_folder(target), symlinks=True,
                        ignore=lambda folder, names: [HISTORY_DIR, LOCK_NAME] if Path(folder) == old_dir else [])
    if history:
        assignment = _read_json(new_dir / "result.json", "result.json").get("assignment")
        _write_json(new_dir / REVIEWS_NAME, {"format": REVIEWS_FORMAT, "assignment": assignment,
                                             "reviews": history})
    result, rebuilt_warnings = reapply(new_dir)
    warnings += rebuilt_warnings
    if history and result.get("status") == "graded":
        checks = {c.get("id"): c for c in result.get("checks") or [] if isinstance(c, dict)}
        for item_id, entry in _latest(history).items():
            check = checks.get(item_id)
            if check is not None and entry.get("answer_sha256") not in (None, answer_sha256(check.get("answer"))):
                warnings.append(f"{item_id}: the answer changed since {entry.get('reviewer')} reviewed it "
                                f"({entry.get('at')}); the review was re-applied: check it again")
    elif history:
        warnings.append(f"the new result is {result.get('status')!r}: the {len(history)} review(s) are kept in "
                        f"{REVIEWS_NAME} but not applied")
    return result, warnings


def _move_history(old_dir: Path, new_dir: Path) -> None:
    old_history = old_dir / HISTORY_DIR
    if old_history.is_dir():
        target = new_dir / HISTORY_DIR
        if target.exists():
            for child in old_history.iterdir():
                os.rename(child, target / child.name)
            shutil.rmtree(old_history, ignore_errors=True)
        else:
            os.rename(old_history, target)


def stamp_folder(base: Path, suffix: str = "") -> Path:
    """A not yet existing base/<UTC time><suffix> (numbered when taken)."""
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, n = base / f"{name}{suffix}", 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}.{n}{suffix}"
    return candidate




# --------------------------------------------------------------------------------------------
# regrade: the same submission (or a new one), the same secret seed and options
# --------------------------------------------------------------------------------------------


@dataclass
class CheckChange:
    """One item whose verdict changed between the old and the new result."""

    id: str
    title: str
    old_status: str | None          # None: the item is new
    old_score: float | None
    new_status: str | None          # None: the item is gone
    new_score: float | None
    max_score: float | None
    message: str                    # the new result's message (the old one when the item is gone)
    why: str

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass
class RegradeOutcome:
    result_dir: Path
    status: str                     # the new result's status: graded | rejected | error
    replaced: bool                  # the new result replaced the old one (only when graded)
    result: dict                    # the new result (with the reviews re-applied)
    old_result: dict
    changes: list[CheckChange]
    reasons: list[str]              # what differs between the two runs' inputs
    warnings: list[str]
    previous: Path | None           # where the old result was kept (or the failed attempt)
    source: str

    @property
    def score_change(self) -> tuple[float | None, float | None]:
        return self.old_result.get("score"), self.result.get("score")


SAME_INPUTS = ("same submission, rubric, grader version and seed: the grader's code changed without a new "
               "version, or the run is not deterministic")


def _short(digest: Any) -> str:
    return str(digest)[:12] if digest else "?"


def _input_reasons(old: dict, old_record: dict, new: dict, new_record: dict) -> list[str]:
    """What differs between the inputs of two runs (the causes a change can have)."""
    reasons = []
    old_sha = old_record.get("sha256") or (old.get("submission") or {}).get("sha256")
    new_sha = new_record.get("sha256") or (new.get("submission") or {}).get("sha256")
    if old_sha != new_sha:
        reasons.append(f"different submission (sha256 {_short(old_sha)} → {_short(new_sha)})")
    if old_record.get("rubric_sha256") != new_record.get("rubric_sha256") and new_record:
        reasons.append(f"different rubric (sha256 {_short(old_record.get('rubric_sha256'))} → "
                       f"{_short(new_record.get('rubric_sha256'))})")
    if old.get("grader_version") != new.get("grader_version"):
        reasons.append(f"different grader version ({old.get('grader_version')} → {new.get('grader_version')})")
    if old.get("judged_with") != new.get("judged_with") and new.get("status") == "graded":
        reasons.append(f"judged against {old.get('judged_with') or '?'} → {new.get('judged_with') or '?'} "
                       "expected values (reference/ available or not)")
    def options(record: dict) -> dict:
        opts = dict(record.get("options") or {})
        if opts.get("assignment") is None:
            opts["assignment"] = record.get("assignment")  # recognised from the name = the same assignment
        return opts

    old_opts, new_opts = options(old_record), options(new_record)
    if new_record and old_opts != new_opts:
        diff = sorted(k for k in set(old_opts) | set(new_opts) if old_opts.get(k) != new_opts.get(k))
        reasons.append("different options (" + ", ".join(diff) + ")")
    return reasons


def _run_note(old: dict, new: dict) -> str | None:
    def status(r: dict) -> str | None:
        ex = r.get("execution")
        return ex.get("status") if isinstance(ex, dict) else None

    a, b = status(old), status(new)
    if a != b and (a or b):
        return f"the notebook run differed ({a or 'not run'} → {b or 'not run'})"
    return None


def compare_results(old: dict, new: dict, reasons: list[str] | None = None) -> list[CheckChange]:
    """The items whose status or score differ between two results, in the new result's order
    (items only in the old one last). `why` names the input differences (`reasons`)."""
    reasons = list(reasons or [])
    note = _run_note(old, new)
    general = "; ".join(reasons + ([note] if note else [])) or SAME_INPUTS
    rubric_changed = any(r.startswith("different rubric") for r in reasons)
    old_checks = {c["id"]: c for c in old.get("checks") or [] if isinstance(c, dict) and "id" in c}
    new_checks = {c["id"]: c for c in new.get("checks") or [] if isinstance(c, dict) and "id" in c}
    order = list(new_checks) + [i for i in old_checks if i not in new_checks]
    changes = []
    for item_id in order:
        o, n = old_checks.get(item_id), new_checks.get(item_id)
        o_status, n_status = (o or {}).get("status"), (n or {}).get("status")
        o_score = float((o or {}).get("score") or 0.0) if o else None
        n_score = float((n or {}).get("score") or 0.0) if n else None
        if o and n and o_status == n_status and abs(o_score - n_score) < 1e-9:
            continue
        if o is None:
            why = "new item" + (" (the rubric changed)" if rubric_changed else "")
        elif n is None:
            why = "no longer graded" + (" (the rubric changed)" if rubric_changed else "")
        elif "review" in o and "review" not in n:
            why = "the TA's review was not re-applied: " + general
        else:
            why = general
        ref = n or o
        changes.append(CheckChange(
            id=item_id, title=str(ref.get("title") or item_id), old_status=o_status, old_score=o_score,
            new_status=n_status, new_score=n_score, max_score=ref.get("max_score"),
            message=str(ref.get("message") or ""), why=why))
    return changes


def _options_from_record(record: dict):
    import dataclasses

    from grader.pipeline import GradeOptions

    names = {f.name for f in dataclasses.fields(GradeOptions)}
    stored = record.get("options") if isinstance(record.get("options"), dict) else {}
    kwargs = {k: v for k, v in stored.items() if k in names and k != "seed"}
    if kwargs.get("data_dir") is not None:
        kwargs["data_dir"] = Path(kwargs["data_dir"])
    options = GradeOptions(**kwargs)
    options.seed = record["seed"]
    if options.assignment is None and record.get("assignment"):
        # The submission was recognised as this assignment: keep it, even if a new file is named otherwise.
        options.assignment = record["assignment"]
    return options


def regrade(result_dir: Path, *, submission: Path | None = None,
            progress: Callable[[str], None] | None = None) -> RegradeOutcome:
    """Grade the submission of `result_dir` again (record.json's source, or `submission`) with
    the same secret seed and options, into a fresh folder; re-apply the TA's reviews to it,
    compare its verdicts with the old result, keep the old result in history/<UTC time>/ and put
    the new one in its place (written to regrade.json too). A new result that is rejected or an
    error does not replace a graded one: it is kept in history/<time>-<status>/ instead.

    Raises ReviewError (a UsageError) when there is nothing to regrade from; UsageError from the
    pipeline for bad options."""
    from grader.pipeline import grade_submission

    result_dir = Path(result_dir)
    if not (result_dir / "result.json").is_file():
        if result_dir.is_dir() and any((c / "result.json").is_file() for c in result_dir.iterdir() if c.is_dir()):
            raise ReviewError(f"{result_dir}: a batch folder; regrade one student's result folder "
                              f"({result_dir}/<student>)")
        raise ReviewError(f"{result_dir}: not a result folder (no result.json)")
    old = _read_json(result_dir / "result.json", "result.json")
    if not (result_dir / "record.json").is_file():
        raise ReviewError(f"{result_dir}: no record.json, so no secret seed to regrade with (a rejected submission, "
                          "or graded without one): grade it again with `grade PATH --out DIR`")
    record = _read_json(result_dir / "record.json", "record.json")
    if not isinstance(record.get("seed"), int) or isinstance(record.get("seed"), bool):
        raise ReviewError(f"{result_dir / 'record.json'}: no seed in it")
    source = Path(submission) if submission is not None else Path(str(record.get("source") or ""))
    if not str(source) or not source.exists():
        raise ReviewError(f"{source}: the submission is not there any more; give it with --submission PATH")
    options = _options_from_record(record)
    if getattr(options, "lang", "unset") is None and old.get("lang"):
        options.lang = old["lang"]  # the messages stay in the language the student had them in
    batch, _ = find_results(result_dir)
    read_history(result_dir)  # an unreadable history stops the regrade before any work
    with _batch_guard(batch), review_lock(result_dir):
        staging = result_dir.parent / f".{result_dir.name}.regrade-{secrets.token_hex(4)}"
        old_moved = False
        try:
            new = grade_submission(source, staging, options, progress=progress)
            staging.mkdir(parents=True, exist_ok=True)
            new_record = _read_json(staging / "record.json", "record.json") if (staging / "record.json").is_file() else {}
            warnings: list[str] = []
            if new.get("status") == "graded":
                if "student" in old and "student" not in new:
                    new["student"] = old["student"]
                    _write_json(staging / "result.json", new)
                new, warnings = carry_over(result_dir, staging, keep_old=False)  # moved below instead
            reasons = _input_reasons(old, record, new, new_record)
            changes = compare_results(old, new, reasons)
            history = result_dir / HISTORY_DIR
            if new.get("status") != "graded" and old.get("status") == "graded":
                # A failed or rejected attempt never replaces a graded result: kept for the record.
                history.mkdir(exist_ok=True)
                previous = stamp_folder(history, suffix=f"-{new.get('status')}")
                os.rename(staging, previous)
                replaced = False
            else:
                if submission is None and (result_dir / ".batch-key").is_file():
                    # Same submission as the batch graded: the batch may keep this result.
                    shutil.copy2(result_dir / ".batch-key", staging / ".batch-key")
                _move_history(result_dir, staging)
                (staging / HISTORY_DIR).mkdir(exist_ok=True)
                kept = stamp_folder(staging / HISTORY_DIR)
                _write_json(staging / REGRADE_NAME, {
                    "at": _now(), "source": str(source), "previous": f"{HISTORY_DIR}/{kept.name}",
                    "old": {"status": old.get("status"), "score": old.get("score"), "bonus": old.get("bonus")},
                    "new": {"status": new.get("status"), "score": new.get("score"), "bonus": new.get("bonus")},
                    "reasons": reasons or [SAME_INPUTS], "changes": [c.to_json() for c in changes],
                    "warnings": warnings})
                os.rename(result_dir, kept)
                old_moved = True  # from here on the staging folder holds the old result too
                os.rename(staging, result_dir)
                (result_dir / HISTORY_DIR / kept.name / LOCK_NAME).unlink(missing_ok=True)
                previous = result_dir / HISTORY_DIR / kept.name
                replaced = True
        finally:
            if staging.exists() and not old_moved:
                shutil.rmtree(staging, ignore_errors=True)
    if batch is not None:
        refresh_gradebook(batch)
    return RegradeOutcome(result_dir=result_dir, status=str(new.get("status")), replaced=replaced, result=new,
                          old_result=old, changes=changes, reasons=reasons, warnings=warnings, previous=previous,
                          source=str(source))
