"""Gradescope: results.json of an autograder run, and the autograder zip that produces it.

results.json (Gradescope's "Autograder Specifications"):

    {"score": S, "execution_time": seconds, "output": text, "output_format": "md",
     "visibility": ..., "stdout_visibility": ...,
     "tests": [{"score", "max_score", "status": "passed" | "failed", "name", "number", "output",
                "tags", "visibility"}],
     "leaderboard": [{"name", "value", "order"}]}         (only where the assignment has metrics)

Mapping:
* one test per automatically judged rubric item, in rubric order, `number` "<criterion>.<n>"
  (1 implementation, 2 theory, 3 experiments, 4 code quality); bonus items carry the tag "bonus";
* hidden checks have `visibility` "after_published" and show their verdict only; public ones are
  "visible" (both configurable);
* free-text items (and anything else pending) are not tests: a TA scores them in Gradescope
  (a manually graded question); `output` lists them as pending, not in the score;
* the policy on bonus and pending points (grader.rubric.policy): the top-level `score` (which
  Gradescope takes over the tests' sum) is result.json's `score`, bonus apart. A bonus item is
  a test tagged "bonus" that shows what it earned, its name saying it is counted apart from the
  score; so the sum of the other tests' scores is the top-level `score`. `output` starts with
  the policy's line ("25 / 30 points; 5 points pending review, not in the total; bonus 5 / 5,
  counted apart from the total") and `extra_data` carries the numbers (`max_score`,
  `pending`, `bonus`, `bonus_max`, `bonus_pending`);
* `leaderboard`: from result.json's `metrics` (a list of {name, value, order}) when the
  assignment produces one. w6-self-attention has no leaderboard metric (its benchmark numbers are
  the student's own measurements, so ranking by them would rank self-reported values): omitted;
* a rejected submission or a grader failure: score 0, no tests, the reason in `output`.

The autograder zip (`build_autograder_zip`, `grade export gradescope ID OUT.zip`) holds
`setup.sh`, `run_autograder`, `run_gradescope.py`, `autograder.json`, the rubric, the staff's
reference code and hidden checks (the zip goes to Gradescope, never to students; `--no-staff`
leaves them out), and the engine (a wheel under `dist/`, or a pip requirement). Paths default to
Gradescope's (`/autograder/...`) and are overridden by GRADER_AUTOGRADER_ROOT,
GRADER_AUTOGRADER_SOURCE, GRADER_SUBMISSION_DIR, GRADER_RESULTS_DIR and GRADER_PYTHON.
"""

from __future__ import annotations

import json
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from grader.formats._common import CRITERIA, check_text, graded_checks, is_hidden, is_manual, total_score
from grader.rubric.policy import item_note, summary_text, totals

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
FILES = Path(__file__).resolve().parents[1] / "templates_export" / "gradescope"


def _leaderboard(result: dict) -> list[dict] | None:
    metrics = result.get("metrics")
    if not metrics:
        return None
    board = []
    for metric in metrics:
        entry = {"name": str(metric["name"]), "value": metric["value"]}
        if metric.get("order") in ("asc", "desc"):
            entry["order"] = metric["order"]
        board.append(entry)
    return board


def _summary(result: dict, pending: list[dict]) -> str:
    title = result.get("title") or result.get("assignment") or "submission"
    status = result.get("status")
    if status != "graded":
        what = "rejected" if status == "rejected" else "not graded: the grader failed"
        return f"**{title}**: {what}.\n\n{result.get('reason') or ''}".strip()
    lines = [f"**{title}**: {summary_text(result, result.get('lang'))}."]
    if pending:
        lines.append("")
        lines.append("Awaiting review (not in this score):")
        lines += [f"- {c.get('title') or c['id']} ({float(c.get('max_score') or 0):g} points): "
                  f"{c.get('message') or 'pending'}" for c in pending]
    notes = (result.get("submission") or {}).get("notes") or []
    if notes:
        lines.append("")
        lines += [f"- note: {note}" for note in notes]
    return "\n".join(lines)


def to_gradescope(result: dict, *, visibility: str = "visible", stdout_visibility: str = "hidden",
                  public_visibility: str = "visible", hidden_visibility: str = "after_published") -> dict:
    """Gradescope's results.json for one result.json."""
    for value in (visibility, stdout_visibility, public_visibility, hidden_visibility):
        if value not in VISIBILITIES:
            raise ValueError(f"unknown Gradescope visibility {value!r}: one of {', '.join(VISIBILITIES)}")
    tests, pending = [], []
    numbers = {criterion: 0 for criterion in CRITERIA}
    for check in graded_checks(result):
        criterion = check.get("criterion")
        numbers[criterion] = numbers.get(criterion, 0) + 1
        if is_manual(check) or check.get("status") == "pending":
            pending.append(check)
            continue
        hidden = is_hidden(check)
        tags = [str(criterion)] + (["bonus"] if check.get("bonus") else []) + (["hidden"] if hidden else [])
        number = f"{(CRITERIA.index(criterion) + 1) if criterion in CRITERIA else 9}.{numbers[criterion]}"
        tests.append({
            "score": float(check.get("score") or 0.0),
            "max_score": float(check.get("max_score") or 0.0),
            "status": "passed" if check.get("status") == "pass" else "failed",
            "name": f"{check.get('title') or check['id']}" + (f" ({item_note(check, result.get('lang'))})"
                                                              if check.get("bonus") else ""),
            "number": number,
            "output": check_text(check, lang=result.get("lang")) if not hidden else f"hidden check: {check.get('status')}",
            "tags": tags,
            "visibility": hidden_visibility if hidden else public_visibility,
        })
    document = {
        "score": total_score(result) if result.get("status") == "graded" else 0.0,
        "execution_time": int(round(float(result.get("duration_s") or 0.0))),
        "output": _summary(result, pending),
        "output_format": "md",
        "visibility": visibility,
        "stdout_visibility": stdout_visibility,
        "tests": tests,
    }
    if result.get("status") == "graded":
        policy = totals(result)
        document["extra_data"] = {"max_score": policy.max_score, "pending": policy.pending, "bonus": policy.bonus,
                                  "bonus_max": policy.bonus_max, "bonus_pending": policy.bonus_pending}
    board = _leaderboard(result)
    if board:
        document["leaderboard"] = board
    return document


def failure_document(reason: str, *, execution_time: float = 0.0) -> dict:
    """results.json when there is no result at all (the engine could not even start)."""
    return {"score": 0.0, "execution_time": int(round(execution_time)),
            "output": f"The autograder failed, so this submission is not graded yet: {reason}",
            "output_format": "md", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}


# --- the autograder zip -----------------------------------------------------------------------

def build_autograder_zip(assignment: str, target: Path, *, engine_wheel: Path | None = None,
                         engine_requirement: str | None = None, include_staff: bool = True,
                         lang: str | None = None, profile: str = "smoke", memory_mb: int = 4096,
                         timeout_s: float = 1800.0, cell_timeout_s: float = 600.0,
                         visibility: str = "visible", hidden_visibility: str = "after_published",
                         stdout_visibility: str = "hidden") -> Path:
    """Write Gradescope's autograder zip for `assignment` to `target`.

    The engine: `engine_wheel` (copied into `dist/`), else `engine_requirement` (a pip
    requirement line), else a wheel built from this engine's source checkout.
    """
    from grader.assignments import check_gradable, get_spec, staff_dir
    from grader.errors import UsageError
    from grader.pipeline import rubrics_dir
    from grader.rubric import load_rubric

    check_gradable(assignment)
    rubric_path = rubrics_dir() / f"{assignment}.yaml"
    load_rubric(rubric_path)  # a broken rubric fails here, not on Gradescope
    for value in (visibility, hidden_visibility, stdout_visibility):
        if value not in VISIBILITIES:
            raise UsageError(f"unknown Gradescope visibility {value!r}: one of {', '.join(VISIBILITIES)}")
    staff = staff_dir() if include_staff else None
    if include_staff and staff is None:
        raise UsageError("the staff's reference/ is not available here (set GRADER_STAFF_DIR, or use --no-staff: "
                         "hidden checks and answer keys are then pending on Gradescope)")
    spec = get_spec(assignment)
    with tempfile.TemporaryDirectory(prefix="grader-gradescope-") as tmp:
        root = Path(tmp) / "zip"
        root.mkdir()
        for name in ("setup.sh", "run_autograder", "run_gradescope.py"):
            shutil.copy2(FILES / name, root / name)
        (root / "rubrics").mkdir()
        shutil.copy2(rubric_path, root / "rubrics" / rubric_path.name)
        if staff is not None:
            _copy_staff(staff, root / "staff", [spec.reference_module, spec.hidden_module])
        if engine_wheel is None and engine_requirement is None:
            from grader.templates_export import build_engine_wheel

            engine_wheel = build_engine_wheel(Path(tmp) / "wheel")
        if engine_wheel is not None:
            (root / "dist").mkdir()
            shutil.copy2(engine_wheel, root / "dist" / Path(engine_wheel).name)
            requirement = f"./dist/{Path(engine_wheel).name}"
        else:
            requirement = str(engine_requirement)
        (root / "requirements.txt").write_text(
            "# The grading engine (installed by setup.sh from this folder)\n" + requirement + "\n", encoding="utf-8")
        options = {"assignment": assignment, "profile": profile, "memory_mb": memory_mb, "timeout_s": timeout_s,
                   "cell_timeout_s": cell_timeout_s, "sandbox": "local"}
        # The course's language as configured here (course.yaml / GRADER_LANG): an installed engine
        # on Gradescope has no course.yaml of its own.
        from grader.i18n import default_language

        options["lang"] = lang or default_language()
        config = {"options": options, "visibility": visibility, "hidden_visibility": hidden_visibility,
                  "stdout_visibility": stdout_visibility, "staff": staff is not None}
        (root / "autograder.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=(2020, 1, 1, 0, 0, 0))
                    executable = path.name in ("setup.sh", "run_autograder")
                    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    return target


def _copy_staff(staff: Path, dest: Path, modules: list[str | None]) -> None:
    """The staff's modules the assignment needs (reference code, hidden checks), with the
    `__init__.py` of every package on the way; never the solutions."""
    for module in filter(None, modules):
        parts = module.split(".")
        for depth in range(1, len(parts)):
            init = staff.joinpath(*parts[:depth], "__init__.py")
            if init.is_file():
                (dest.joinpath(*parts[:depth])).mkdir(parents=True, exist_ok=True)
                shutil.copy2(init, dest.joinpath(*parts[:depth], "__init__.py"))
        source = staff.joinpath(*parts).with_suffix(".py")
        package = staff.joinpath(*parts)
        if source.is_file():
            shutil.copy2(source, dest.joinpath(*parts).with_suffix(".py"))
        elif package.is_dir():
            shutil.copytree(package, dest.joinpath(*parts), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
