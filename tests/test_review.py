"""TA review (`grade review`) and regrade (`grade regrade`).

Most tests review synthetic results built from the real rubric (fast); the ones marked
`notebook` grade the reference solution once per module (a module-scoped fixture) and copy that
folder per test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from grader.pipeline import GradeOptions, grade_submission, rubrics_dir
from grader.report import render_html, render_markdown, write_reports
from grader.review import (
    REVIEWS_NAME, ReviewError, apply_batch_reviews, apply_reviews, carry_over, compare_results, parse_scores,
    pending_items, read_history, reapply, rebuild, refresh_gradebook, review_message, template_text,
)
from grader.review.command import interactive_review, regrade, review
from grader.rubric import load_rubric, score
from tests.seeded_bugs import SOLUTION_DIR, make_buggy_notebook

ASSIGNMENT = "w6-self-attention"
MANUAL = {"theory-online-softmax": 1.5, "theory-fp16-stability": 1.5, "exp-analysis": 2.0}
SEED = 20240611

app = typer.Typer()
app.command("review")(review)
app.command("regrade")(regrade)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env={"COLUMNS": "200"})


def load(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text(encoding="utf-8"))


def checks(result: dict) -> dict[str, dict]:
    return {c["id"]: c for c in result["checks"]}


def gradebook(batch: Path) -> dict[str, dict]:
    """The gradebook's rows by student, numbers as floats."""
    def value(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    with open(batch / "gradebook.csv", encoding="utf-8-sig", newline="") as fh:
        return {row["student"]: {k: value(v) for k, v in row.items()} for row in csv.DictReader(fh)}


def snapshot(root: Path) -> dict[str, str]:
    """Every file's content hash (the lock files a review takes are empty and left out)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (".review-lock", ".batch-lock")}


# --------------------------------------------------------------------------------------------
# synthetic results (no notebook run)
# --------------------------------------------------------------------------------------------


def synthetic_result(answers: dict[str, str] | None = None) -> dict:
    """A graded result of the real rubric: every automatic item passed, manual items pending."""
    rubric = load_rubric(rubrics_dir() / f"{ASSIGNMENT}.yaml")
    entries = []
    for item in rubric.items:
        manual = item.kind == "manual"
        entries.append({
            "id": item.id, "title": item.id, "criterion": item.criterion,
            "status": "pending" if manual else "pass", "score": 0.0 if manual else float(item.points),
            "max_score": float(item.points), "visibility": item.visibility, "bonus": item.bonus,
            "message": "awaiting review by a TA" if manual else "ok", "hint": "", "cell": None,
            "answer": (answers or {}).get(item.id, f"my answer to {item.id}") if manual else None,
            "guidance": "full marks when right" if manual else None,
        })
    result = {"assignment": ASSIGNMENT, "title": "Optimised self-attention", "status": "graded", "reason": None,
              "checks": entries, "submission": {"source": "x", "sha256": "abc", "notebook": "n.ipynb", "notes": []},
              "execution": {"status": "completed", "problems": []}, "duration_s": 1.0, "grader_version": "0.1.0",
              "lang": "en"}
    result.update(score(rubric, entries))
    return result


def make_result(folder: Path, result: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    result = result or synthetic_result()
    (folder / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    write_reports(result, folder)
    return folder


@pytest.fixture
def batch(tmp_path) -> Path:
    out = tmp_path / "out"
    make_result(out / "kim")
    make_result(out / "lee")
    refresh_gradebook(out)
    return out


def fill_template(text: str, values: list[tuple[float, str]]) -> str:
    """Fill the first `score: null` / `comment: ""` pairs of the template, in order."""
    values = list(values)
    lines, comment = [], None
    for line in text.splitlines():
        if line.strip() == "score: null" and values:
            points, comment = values.pop(0)
            line = line.replace("null", str(points))
        elif line.strip() == 'comment: ""' and comment is not None:
            line = line.replace('""', json.dumps(comment, ensure_ascii=False))
            comment = None
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_a_template_filled_in_offline_reviews_a_batch_and_updates_results_reports_and_gradebook(batch, tmp_path):
    assert gradebook(batch)["kim"]["pending"] == 5
    template = tmp_path / "scores.yaml"
    done = run("review", batch, "--export-template", template)
    assert done.exit_code == 0, done.output
    text = template.read_text(encoding="utf-8")
    assert "my answer to exp-analysis" in text and "full marks when right" in text and "max 2 points" in text
    # kim: all three items; lee: one scored, the other two left empty (skipped)
    filled = fill_template(text, [(1.5, "complete"), (0.75, "half: no fp32 accumulation"), (2, ""),
                                  (1, "정확성 논증이 부족합니다")])
    template.write_text(filled, encoding="utf-8")
    done = run("review", batch, "--scores", template, "--reviewer", "park-ta")
    assert done.exit_code == 0, done.output

    kim, lee = load(batch / "kim"), load(batch / "lee")
    k = checks(kim)
    assert (k["theory-online-softmax"]["status"], k["theory-online-softmax"]["score"]) == ("pass", 1.5)
    assert k["theory-online-softmax"]["message"] == "reviewed by park-ta: complete"
    assert k["theory-fp16-stability"]["score"] == 0.75
    assert k["exp-analysis"]["message"] == "reviewed by park-ta"
    assert kim["criteria"]["theory"] == {"score": 8.25, "max_score": 9.0, "pending": 0.0}
    assert kim["criteria"]["experiments"]["pending"] == 0.0
    assert kim["score"] == 30 - 0.75
    l = checks(lee)
    assert (l["theory-online-softmax"]["status"], l["theory-online-softmax"]["score"]) == ("pass", 1.0)
    assert l["exp-analysis"]["status"] == "pending" and lee["criteria"]["experiments"]["pending"] == 2.0

    md = (batch / "kim" / "feedback.md").read_text(encoding="utf-8")
    assert "reviewed by park-ta: complete" in md and md == render_markdown(kim)
    assert (batch / "kim" / "feedback.html").read_text(encoding="utf-8") == render_html(kim)
    assert "정확성 논증이 부족합니다" in (batch / "lee" / "feedback.html").read_text(encoding="utf-8")
    rows = gradebook(batch)
    assert (rows["kim"]["score"], rows["kim"]["pending"]) == (29.25, 0)
    assert (rows["lee"]["score"], rows["lee"]["pending"]) == (26, 3.5)

    history = read_history(batch / "kim")
    assert [(e["item"], e["score"], e["reviewer"]) for e in history] == [
        ("theory-online-softmax", 1.5, "park-ta"), ("theory-fp16-stability", 0.75, "park-ta"),
        ("exp-analysis", 2.0, "park-ta")]
    assert all(e["at"].endswith("Z") and e["via"] == "file:scores.yaml" for e in history)
    assert [p.item for p in pending_items(batch)] == ["theory-fp16-stability", "exp-analysis"]  # lee's


def test_a_second_review_of_an_item_is_kept_in_the_history_and_the_latest_one_counts(tmp_path):
    folder = make_result(tmp_path / "kim")
    apply_reviews(folder, {"exp-analysis": {"score": 1, "comment": "no numbers"}}, "park")
    result = apply_reviews(folder, {"exp-analysis": {"score": 2, "comment": "numbers added in the appeal"}}, "choi")
    c = checks(result)["exp-analysis"]
    assert (c["status"], c["score"], c["message"]) == ("pass", 2.0, "reviewed by choi: numbers added in the appeal")
    assert c["review"]["reviews"] == 2
    assert result["criteria"]["experiments"] == {"score": 6.0, "max_score": 6.0, "pending": 0.0}
    history = read_history(folder)
    assert [(e["reviewer"], e["score"], e["comment"]) for e in history] == [
        ("park", 1.0, "no numbers"), ("choi", 2.0, "numbers added in the appeal")]
    # a zero is a failed item, not a pending one
    result = apply_reviews(folder, {"exp-analysis": 0}, "choi")
    assert checks(result)["exp-analysis"]["status"] == "fail" and result["criteria"]["experiments"]["pending"] == 0
    assert len(read_history(folder)) == 3
    assert load(folder) == result


def test_reapplying_the_history_is_idempotent(tmp_path):
    folder = make_result(tmp_path / "kim")
    apply_reviews(folder, {"exp-analysis": 1.5, "theory-online-softmax": {"score": 1, "comment": "ok"}}, "park")
    before = load(folder)
    for _ in range(2):
        again, warnings = reapply(folder)
        assert again == before and warnings == []
    rubric = load_rubric(rubrics_dir() / f"{ASSIGNMENT}.yaml")
    once, _ = rebuild(synthetic_result(), read_history(folder), rubric)
    twice, _ = rebuild(once, read_history(folder), rubric)
    assert once == twice == before
    assert len(read_history(folder)) == 2


@pytest.mark.parametrize("scores, fragment", [
    ({"kim": {"no-such-item": 1}}, "kim: no-such-item: unknown item"),
    ({"kim": {"impl-causal-mask": 1}}, "kim: impl-causal-mask: not a manual item"),
    ({"kim": {"exp-analysis": 2.5}}, "kim: exp-analysis: score 2.5 out of range 0..2"),
    ({"kim": {"exp-analysis": -1}}, "out of range"),
    ({"kim": {"exp-analysis": {"score": "lots"}}}, "score must be a number"),
    ({"kim": {"exp-analysis": {"score": 1, "coment": "typo"}}}, "unknown key(s) coment"),
    ({"park": {"exp-analysis": 1}}, "park: no such result"),
])
def test_an_invalid_entry_is_a_clear_error_and_nothing_is_applied(batch, tmp_path, scores, fragment):
    # Valid entries for both students, plus one bad one: none may be applied.
    scores = {"lee": {"exp-analysis": 2}, **{s: {"theory-online-softmax": 1.5, **items} for s, items in scores.items()}}
    path = tmp_path / "scores.yaml"
    path.write_text(yaml.safe_dump({"reviewer": "park", "results": scores}, allow_unicode=True), encoding="utf-8")
    before = snapshot(batch)
    done = run("review", batch, "--scores", path)
    assert done.exit_code == 2, done.output
    assert fragment in done.output and "Traceback" not in done.output
    assert snapshot(batch) == before
    assert not (batch / "kim" / REVIEWS_NAME).exists()


def test_a_result_graded_with_another_rubric_must_be_regraded_before_review(tmp_path):
    result = synthetic_result()
    result["checks"].append({**result["checks"][0], "id": "impl-retired-check"})
    folder = make_result(tmp_path / "kim", result)
    before = snapshot(folder)
    done = run("review", folder, "--scores", _scores(tmp_path, {".": {"exp-analysis": 1}}))
    assert done.exit_code == 2 and "impl-retired-check" in done.output and "regrade" in done.output
    assert snapshot(folder) == before


def test_a_malformed_scores_file_is_a_usage_error(batch, tmp_path):
    path = tmp_path / "scores.yaml"
    for text, fragment in [("results: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "expected a mapping"),
                           ("reviewer: x\nresults: {}\nextra: 1\n", "unknown top-level key(s) extra"),
                           ("results:\n  kim: 3\n", "expected a mapping of item ids")]:
        path.write_text(text, encoding="utf-8")
        before = snapshot(batch)
        done = run("review", batch, "--scores", path)
        assert done.exit_code == 2 and fragment in done.output, (text, done.output)
        assert snapshot(batch) == before
    done = run("review", batch, "--scores", tmp_path / "missing.yaml")
    assert done.exit_code == 2 and "no such file" in done.output


def test_the_scores_file_accepts_a_bare_mapping_shorthand_points_and_the_folder_itself(tmp_path):
    folder = make_result(tmp_path / "kim")
    path = tmp_path / "s.yaml"
    path.write_text('".":\n  exp-analysis: 1.5\n  theory-online-softmax: {score: 1, comment: ok}\n'
                    "  theory-fp16-stability: {score: null}\n", encoding="utf-8")
    assert parse_scores(path) == (None, {".": {"exp-analysis": 1.5, "theory-online-softmax": {"score": 1, "comment": "ok"},
                                                "theory-fp16-stability": {"score": None}}})
    done = run("review", folder, "--scores", path, "--reviewer", "park")
    assert done.exit_code == 0, done.output
    c = checks(load(folder))
    assert c["exp-analysis"]["score"] == 1.5 and c["theory-fp16-stability"]["status"] == "pending"
    # the folder's own name works as well as "."
    result = apply_batch_reviews(folder, {"kim": {"theory-fp16-stability": 1.5}}, "park")["."]
    assert result["criteria"]["theory"]["pending"] == 0


def test_the_reviewer_comes_from_the_option_then_the_file_then_the_environment(tmp_path, monkeypatch):
    folder = make_result(tmp_path / "kim")
    path = tmp_path / "s.yaml"
    path.write_text("reviewer: from-file\nresults:\n  .:\n    exp-analysis: 1\n", encoding="utf-8")
    monkeypatch.setenv("GRADER_REVIEWER", "from-env")
    assert run("review", folder, "--scores", path).exit_code == 0
    assert run("review", folder, "--scores", path, "--reviewer", "from-option").exit_code == 0
    path.write_text("results:\n  .:\n    exp-analysis: 1\n", encoding="utf-8")
    assert run("review", folder, "--scores", path).exit_code == 0
    assert [e["reviewer"] for e in read_history(folder)] == ["from-file", "from-option", "from-env"]


def test_answers_in_the_template_are_comments_and_cannot_inject_yaml(tmp_path):
    nasty = "line one\nscore: 99\r\ncomment: injected\u2028reviewer: evil\x85x: 1\x1b[31m\n\n  - item"
    folder = make_result(tmp_path / "kim", synthetic_result({"exp-analysis": nasty}))
    text, count = template_text(folder)
    assert count == 3
    data = yaml.safe_load(text)
    assert data == {"reviewer": None, "results": {".": {i: {"score": None, "comment": ""} for i in MANUAL}}}
    assert "\x1b" not in text and "#   score: 99" in text


def test_a_reviewed_item_is_not_pending_but_can_be_exported_again_with_all(tmp_path):
    folder = make_result(tmp_path / "kim")
    apply_reviews(folder, {"exp-analysis": 1}, "park")
    assert [p.item for p in pending_items(folder)] == ["theory-online-softmax", "theory-fp16-stability"]
    text, count = template_text(folder, include_reviewed=True)
    assert count == 3 and "Now 1 points, reviewed by park" in text


def test_interactive_review_with_an_injected_prompt(tmp_path):
    from rich.console import Console

    out = make_result(tmp_path / "out" / "kim").parent
    make_result(out / "lee")
    refresh_gradebook(out)
    answers = iter(["1.5", "good", "abc", "9", "1", "", "s",   # kim: two scored (one after two bad tries), one skipped
                    "0.5", "thin", "q"])                            # lee: one scored, then stop
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    console = Console(record=True, width=120)
    counts = interactive_review(out, "park", console=console, ask=ask)
    assert counts == {"reviewed": 3, "skipped": 1}
    shown = console.export_text()
    assert "my answer to theory-online-softmax" in shown and "full marks when right" in shown
    assert "Max points: 1.5" in shown and "not a number" in shown and "out of range" in shown
    assert asked[0] == "Points 0–1.5 (s skip, q stop)"
    kim, lee = checks(load(out / "kim")), checks(load(out / "lee"))
    assert (kim["theory-online-softmax"]["score"], kim["theory-fp16-stability"]["score"]) == (1.5, 1.0)
    assert kim["exp-analysis"]["status"] == "pending"
    assert lee["theory-online-softmax"]["message"] == "reviewed by park: thin"
    assert lee["theory-fp16-stability"]["status"] == "pending"
    assert all(e["via"] == "interactive" for e in read_history(out / "kim"))
    assert gradebook(out)["lee"]["pending"] == 3.5


def test_interactive_review_reads_answers_from_stdin(tmp_path):
    folder = make_result(tmp_path / "kim")
    done = run("review", folder, "--reviewer", "park", input="1.25\ngood\ns\n2\n\n")
    assert done.exit_code == 0, done.output
    c = checks(load(folder))
    assert (c["theory-online-softmax"]["score"], c["theory-online-softmax"]["message"]) == (1.25, "reviewed by park: good")
    assert c["theory-fp16-stability"]["status"] == "pending" and c["exp-analysis"]["score"] == 2.0
    # end of input part-way: what was entered is kept
    done = run("review", folder, "--reviewer", "park", input="1\n")
    assert done.exit_code == 0, done.output
    assert checks(load(folder))["theory-fp16-stability"]["score"] == 1.0
    done = run("review", folder, "--reviewer", "park")
    assert done.exit_code == 0 and "Nothing awaits review" in done.output


def test_the_message_of_a_reviewed_item_is_in_the_results_language():
    for lang in ("en", "ko"):
        assert "park" in review_message("park", "", lang)
        text = review_message("park", "설명이 정확합니다", lang)
        assert "park" in text and "설명이 정확합니다" in text
    assert review_message("park", "good", "en") == "reviewed by park: good"


def test_one_writer_at_a_time(tmp_path):
    import fcntl

    from grader.review import review_lock

    out = make_result(tmp_path / "out" / "kim").parent
    refresh_gradebook(out)
    with review_lock(out / "kim"):
        with pytest.raises(ReviewError, match="another review or regrade"):
            apply_reviews(out / "kim", {"exp-analysis": 1}, "park")
    with open(out / ".batch-lock", "a+") as handle:  # what a running `grade batch` holds
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ReviewError, match="grade batch"):
            apply_reviews(out / "kim", {"exp-analysis": 1}, "park")
    assert read_history(out / "kim") == []
    assert apply_reviews(out / "kim", {"exp-analysis": 1}, "park")["criteria"]["experiments"]["pending"] == 0


def test_a_corrupt_history_is_never_overwritten(tmp_path):
    folder = make_result(tmp_path / "kim")
    (folder / REVIEWS_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(ReviewError, match="unreadable review history"):
        apply_reviews(folder, {"exp-analysis": 1}, "park")
    assert (folder / REVIEWS_NAME).read_text(encoding="utf-8") == "{not json"


def test_results_that_were_not_graded_cannot_be_reviewed_or_regraded(tmp_path):
    rejected = {"assignment": None, "status": "rejected", "reason": "corrupt zip", "score": 0.0, "max_score": 0.0,
                "checks": [], "criteria": {}}
    folder = make_result(tmp_path / "kim", rejected)
    done = run("review", folder, "--scores", _scores(tmp_path, {".": {"exp-analysis": 1}}))
    assert done.exit_code == 2 and "not graded" in done.output
    done = run("regrade", folder, "-q")
    assert done.exit_code == 2 and "no record.json" in done.output
    assert run("review", tmp_path / "nowhere").exit_code == 2
    assert run("regrade", tmp_path / "nowhere").exit_code == 2


def test_a_rejected_regrade_keeps_the_graded_result_and_a_missing_submission_is_a_usage_error(tmp_path):
    folder = make_result(tmp_path / "kim")
    apply_reviews(folder, {"exp-analysis": 2}, "park")
    record = {"seed": 7, "source": str(tmp_path / "gone.zip"), "sha256": "abc", "assignment": ASSIGNMENT,
              "rubric_sha256": "", "options": {"sandbox": "local", "profile": "smoke"}}
    (folder / "record.json").write_text(json.dumps(record), encoding="utf-8")
    before = snapshot(folder)
    done = run("regrade", folder, "-q")
    assert done.exit_code == 2 and "not there any more" in done.output and "--submission" in done.output
    assert snapshot(folder) == before
    bad = tmp_path / "appeal.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    done = run("regrade", folder, "--submission", bad)
    assert done.exit_code == 2 and "rejected" in done.output, done.output
    assert "did not replace" in done.output
    assert {k: v for k, v in snapshot(folder).items() if not k.startswith("history/")} == before
    (attempt,) = (folder / "history").iterdir()
    assert attempt.name.endswith("-rejected") and load(attempt)["status"] == "rejected"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kim")]


def _scores(tmp_path: Path, results: dict) -> Path:
    path = tmp_path / "scores.yaml"
    path.write_text(yaml.safe_dump({"results": results}), encoding="utf-8")
    return path


def test_carry_over_reapplies_reviews_to_a_new_result_and_flags_changed_answers(tmp_path):
    old = make_result(tmp_path / "old")
    apply_reviews(old, {"exp-analysis": 1.5, "theory-online-softmax": 1}, "park")
    new = make_result(tmp_path / "new", synthetic_result({"exp-analysis": "a rewritten analysis"}))
    result, warnings = carry_over(old, new)
    c = checks(result)
    assert (c["exp-analysis"]["score"], c["theory-online-softmax"]["score"]) == (1.5, 1.0)
    assert len(warnings) == 1 and "exp-analysis: the answer changed" in warnings[0]
    assert read_history(new) == read_history(old)
    (kept,) = (new / "history").iterdir()  # the old result, for the record
    assert load(kept) == load(old) and (kept / REVIEWS_NAME).is_file()
    assert (old / "result.json").is_file() and not (old / "history").exists()  # the old folder is only read


def test_compare_results_names_the_changed_checks_and_why():
    old, new = synthetic_result(), synthetic_result()
    for c in new["checks"]:
        if c["id"] == "impl-causal-mask":
            c.update(status="fail", score=0.0, message="mask differs")
    changes = compare_results(old, new, ["different submission (sha256 a → b)"])
    assert [(c.id, c.old_status, c.new_status, c.message, c.why) for c in changes] == [
        ("impl-causal-mask", "pass", "fail", "mask differs", "different submission (sha256 a → b)")]
    assert compare_results(old, old, []) == []
    assert "grader" in compare_results(old, new, [])[0].why


# --------------------------------------------------------------------------------------------
# real graded submissions (one grading of the reference solution per module)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("graded") / "reference"
    result = grade_submission(SOLUTION_DIR, out, GradeOptions(seed=SEED, sandbox="local"))
    assert result["status"] == "graded", result.get("reason")
    return out


@pytest.fixture
def graded_copy(graded, tmp_path) -> Path:
    folder = tmp_path / "out" / "kim"
    shutil.copytree(graded, folder)
    return folder


@pytest.mark.notebook
def test_review_round_trip_on_a_graded_batch(graded, tmp_path):
    out = tmp_path / "out"
    for student in ("kim", "lee"):
        shutil.copytree(graded, out / student)
    refresh_gradebook(out)
    assert gradebook(out)["kim"]["pending"] == 5
    template = tmp_path / "scores.yaml"
    assert run("review", out, "--export-template", template).exit_code == 0
    text = template.read_text(encoding="utf-8")
    assert text.count("score: null") == 6 and "online softmax" in text.lower()
    template.write_text(fill_template(text, [(1.5, "exact"), (1.5, ""), (2, "clear numbers")]), encoding="utf-8")
    done = run("review", out, "--scores", template, "--reviewer", "park")
    assert done.exit_code == 0, done.output
    kim = load(out / "kim")
    assert all(kim["criteria"][c]["pending"] == 0 for c in kim["criteria"])
    assert kim["score"] == 30.0
    assert checks(kim)["exp-analysis"]["message"] == review_message("park", "clear numbers", kim["lang"])
    assert "clear numbers" in (out / "kim" / "feedback.html").read_text(encoding="utf-8")
    rows = gradebook(out)
    assert (rows["kim"]["score"], rows["kim"]["pending"], rows["lee"]["pending"]) == (30, 0, 5)
    # a second review of one item: history keeps both, the score is the latest
    apply_reviews(out / "kim", {"exp-analysis": {"score": 1, "comment": "on second reading"}}, "choi")
    assert [e["score"] for e in read_history(out / "kim") if e["item"] == "exp-analysis"] == [2.0, 1.0]
    assert load(out / "kim")["score"] == 29.0 and gradebook(out)["kim"]["score"] == 29


@pytest.mark.notebook
def test_regrade_with_the_same_seed_changes_no_verdict_and_keeps_the_reviews(graded_copy):
    # kim is one student of a batch: the batch's gradebook follows the regrade
    out = graded_copy.parent
    shutil.copytree(graded_copy, out / "lee")
    (graded_copy / ".batch-key").write_text("{}", encoding="utf-8")
    refresh_gradebook(out)
    apply_reviews(graded_copy, {"exp-analysis": {"score": 1.5, "comment": "good"}}, "park")
    assert gradebook(out)["kim"]["pending"] == 3
    before = load(graded_copy)
    done = run("regrade", graded_copy)
    assert done.exit_code == 0, done.output
    assert "No verdict changed" in done.output
    after = load(graded_copy)
    assert {i: (c["status"], c["score"]) for i, c in checks(after).items()} == \
           {i: (c["status"], c["score"]) for i, c in checks(before).items()}
    assert checks(after)["exp-analysis"]["message"] == review_message("park", "good", after["lang"])
    assert after["score"] == before["score"]
    history = sorted((graded_copy / "history").iterdir())
    assert len(history) == 1 and load(history[0]) == before
    regrade_record = json.loads((graded_copy / "regrade.json").read_text(encoding="utf-8"))
    assert regrade_record["changes"] == [] and regrade_record["previous"] == f"history/{history[0].name}"
    assert json.loads((graded_copy / "record.json").read_text())["seed"] == SEED
    assert len(read_history(graded_copy)) == 1
    assert (graded_copy / ".batch-key").is_file()  # same submission: the batch may keep this result
    assert gradebook(out)["kim"]["pending"] == 3 and gradebook(out)["kim"]["score"] == after["score"]
    assert not [p for p in out.iterdir() if p.name.startswith(".kim")]  # no staging folder left behind


@pytest.mark.notebook
def test_regrade_of_a_changed_submission_reports_exactly_the_changed_checks(graded_copy, tmp_path):
    apply_reviews(graded_copy, {"theory-online-softmax": 1.5}, "park")
    buggy = make_buggy_notebook("causal_off_by_one", tmp_path / "appeal").parent
    done = run("regrade", graded_copy, "--submission", buggy)
    assert done.exit_code == 0, done.output
    assert "verdict(s) changed" in done.output and "impl-causal-mask" in done.output
    assert "different submission" in done.output
    regrade_record = json.loads((graded_copy / "regrade.json").read_text(encoding="utf-8"))
    # the causal mask fails; code quality follows the implementation share (11 of 12 points)
    status_changes = [(c["id"], c["old_status"], c["new_status"]) for c in regrade_record["changes"]
                      if c["old_status"] != c["new_status"]]
    assert status_changes == [("impl-causal-mask", "pass", "fail")]
    assert {c["id"] for c in regrade_record["changes"]} - {"impl-causal-mask"} <= {"cq-runs-clean", "cq-lint",
                                                                                  "cq-docstrings"}
    assert regrade_record["changes"][0]["why"].startswith("different submission")
    result = load(graded_copy)
    assert checks(result)["theory-online-softmax"]["status"] == "pass"  # the review survived
    assert result["score"] == pytest.approx(25.0 + 1.5 - 1.0 - 3.0 / 12, abs=1e-3)
    record = json.loads((graded_copy / "record.json").read_text())
    assert record["seed"] == SEED and Path(record["source"]) == buggy.resolve()
    # a second regrade (of the recorded, buggy submission) keeps the first one's history too
    done = run("regrade", graded_copy, "-q")
    assert done.exit_code == 0, done.output
    assert len(list((graded_copy / "history").iterdir())) == 2
