"""`grade phase`: the Phase 2 grade of a small synthetic class, against numbers worked out by hand
here. The batch folders are built from result.json files directly (nothing is graded).

The formula (grader/phase, docs/phase.md): weekly part = 70 x min(points + bonus, 180) / 180,
each assignment's bonus capped at 5; midterm part = 30 x points / 100; what is not graded counts
0 and is shown as such; pending points are not earned (the "if pending earned" column adds them).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.assignments.catalog import CATALOG
from grader.cli import app
from grader.phase import (MIDTERM_ID, WEEKLY_IDS, WEEKLY_POINTS, compute_phase, grade_phase, phase_csv,
                          render_phase_html)

from tests.test_html_safety import assert_inert

POINTS = {a: CATALOG[a].points for a in (*WEEKLY_IDS, MIDTERM_ID)}
EVIL = "<img src=x onerror=alert(1)>"
FORMULA = "=HYPERLINK(x)"


def result(assignment: str, score: float, *, bonus: float = 0.0, pending: float = 0.0,
           bonus_pending: float = 0.0, bonus_max: float = 5.0) -> dict:
    """A graded result.json as the pipeline writes it (only what the phase grade reads)."""
    checks = []
    if bonus_pending:
        checks.append({"id": "bonus-pending", "criterion": "implementation", "status": "pending", "score": 0.0,
                       "max_score": bonus_pending, "bonus": True})
    return {"assignment": assignment, "title": CATALOG[assignment].title, "status": "graded", "score": score,
            "max_score": float(POINTS[assignment]), "bonus": bonus, "bonus_max": bonus_max,
            "criteria": {"implementation": {"score": score, "max_score": float(POINTS[assignment]) - pending,
                                            "pending": 0.0},
                         "theory": {"score": 0.0, "max_score": pending, "pending": pending}},
            "checks": checks}


def not_graded(assignment: str | None, status: str, reason: str) -> dict:
    return {"assignment": assignment, "status": status, "reason": reason, "score": 0.0,
            "max_score": float(POINTS.get(assignment or "", 0)), "bonus": 0.0, "bonus_max": 0.0, "criteria": {},
            "checks": []}


def write(batch: Path, folder: str, data: dict) -> None:
    (batch / folder).mkdir(parents=True)
    (batch / folder / "result.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


# kim: every weekly point and 8 bonus points (5 + 3): the weekly part is capped at 70%.
KIM = {a: POINTS[a] for a in WEEKLY_IDS}
# lee: no w5-resnet result at all; the midterm was rejected.
LEE = {"w5-lstm": 20, "w5-attention": 15, "w6-self-attention": 24, "w6-multihead": 27, "w7-positional": 20,
       "w7-transformer": 19}
# park: 5 manual points pending in w6-self-attention, 2 bonus points pending in w6-multihead, 15
# manual points pending in the midterm.
PARK = {"w5-resnet": 20, "w5-lstm": 22, "w5-attention": 18, "w6-self-attention": 25, "w6-multihead": 26,
        "w7-positional": 21, "w7-transformer": 23}
# choi: 10 points in each weekly assignment; a w5-resnet result claiming 7 bonus points (bonus_max 10:
# an older rubric), counted as 5; the midterm's grading failed. Classroom repositories in one batch.
CHOI = {a: 10 for a in WEEKLY_IDS}


@pytest.fixture
def batches(tmp_path) -> list[Path]:
    dirs = []
    for assignment in WEEKLY_IDS:
        batch = tmp_path / "out" / assignment
        batch.mkdir(parents=True)
        dirs.append(batch)
        write(batch, "kim", result(assignment, KIM[assignment],
                                   bonus={"w5-resnet": 5.0, "w5-lstm": 3.0}.get(assignment, 0.0)))
        if assignment in LEE:
            write(batch, "lee", result(assignment, LEE[assignment],
                                       bonus=4.0 if assignment == "w6-self-attention" else 0.0))
        extra = {"w6-self-attention": {"pending": 5.0, "bonus": 5.0},
                 "w6-multihead": {"bonus": 1.0, "bonus_pending": 2.0}}.get(assignment, {})
        write(batch, "park", result(assignment, PARK[assignment], **extra))
        # w7-transformer came from a Classroom download whose `<assignment>-` prefix the batch kept
        choi = "w7-transformer-Choi" if assignment == "w7-transformer" else "choi"
        write(batch, choi, result(assignment, CHOI[assignment], **({"bonus": 7.0, "bonus_max": 10.0}
                                                                    if assignment == "w5-resnet" else {})))
    write(tmp_path / "out" / "w5-lstm", "jung", result("w5-lstm", 25))
    write(tmp_path / "out" / "w5-resnet", FORMULA, result("w5-resnet", 12))
    midterm = tmp_path / "out" / MIDTERM_ID
    write(midterm, "kim", result(MIDTERM_ID, 90, bonus_max=0.0))
    # a rejection before the assignment was known: the batch's other results say it is the midterm
    write(midterm, "lee", not_graded(None, "rejected", "no notebook (.ipynb) found in the submission"))
    write(midterm, "park", result(MIDTERM_ID, 70, pending=15.0, bonus_max=0.0))
    write(midterm, "choi", not_graded(MIDTERM_ID, "error", "internal error: RuntimeError: boom"))
    write(midterm, EVIL, not_graded(MIDTERM_ID, "rejected", EVIL))
    late = tmp_path / "out" / "late"
    write(late, "jung", result("w5-lstm", 20))                    # a second w5-lstm result: a conflict
    write(late, "kim-rl", {**result("w5-lstm", 1), "assignment": "w9-rl"})  # not a Phase 2 assignment
    return [*dirs, midterm, late]


def by_student(report) -> dict:
    return {row.student: row for row in report.students}


def test_the_catalog_gives_180_weekly_points():
    assert WEEKLY_POINTS == 25 + 25 + 20 + 30 + 30 + 25 + 25 == 180


def test_phase_grades_of_a_synthetic_class_against_hand_computed_numbers(batches):
    rows = by_student(compute_phase(batches))
    assert sorted(rows) == sorted(["kim", "lee", "park", "choi", "jung", FORMULA, EVIL])

    # kim: 180 weekly points + 8 bonus = 188, capped at 180 -> 70; midterm 90/100 -> 27.
    kim = rows["kim"]
    assert (kim.weekly_points, kim.weekly_bonus, kim.weekly_counted) == (180, 8, 180)
    assert kim.weekly_percent == pytest.approx(70.0, abs=1e-9)
    assert kim.midterm_percent == pytest.approx(27.0, abs=1e-9)
    assert kim.phase_percent == pytest.approx(97.0, abs=1e-9)
    assert kim.status == "complete" and kim.notes == []

    # lee: 20+15+24+27+20+19 = 125 points + 4 bonus = 129 -> 70 * 129/180 = 50.1667; w5-resnet
    # missing and the midterm rejected: shown as such, counted 0.
    lee = rows["lee"]
    assert (lee.weekly_points, lee.weekly_bonus) == (125, 4)
    assert lee.weekly_percent == pytest.approx(70 * 129 / 180, abs=1e-4)
    assert lee.midterm_percent == 0 and lee.midterm_points is None
    assert lee.phase_percent == pytest.approx(50.1667, abs=1e-4)
    assert lee.status == "incomplete"
    assert lee.cells["w5-resnet"].state == "missing" and lee.cells["w5-resnet"].points is None
    assert lee.cells[MIDTERM_ID].state == "rejected" and "no notebook" in lee.cells[MIDTERM_ID].reason
    assert "w5-resnet missing: no result for this student" in lee.notes
    assert lee.phase_percent_if_pending_earned == pytest.approx(lee.phase_percent, abs=1e-9)

    # park: 20+22+18+25+26+21+23 = 155 points + bonus 5 + 1 = 161 -> 70 * 161/180 = 62.6111;
    # pending: 5 points (w6-self-attention) + 2 bonus points (w6-multihead) -> 168 -> 65.3333;
    # midterm 70 -> 21, with its 15 pending points 85 -> 25.5.
    park = rows["park"]
    assert (park.weekly_points, park.weekly_bonus, park.weekly_pending) == (155, 6, 7)
    assert park.weekly_percent == pytest.approx(70 * 161 / 180, abs=1e-4)
    assert park.midterm_percent == pytest.approx(21.0, abs=1e-9) and park.midterm_pending == 15
    assert park.phase_percent == pytest.approx(62.6111 + 21, abs=1e-4)
    assert park.phase_percent_if_pending_earned == pytest.approx(70 * 168 / 180 + 25.5, abs=1e-4)
    assert park.status == "pending"
    assert park.cells["w6-self-attention"].state == "pending"
    assert park.cells["w6-multihead"].state == "pending" and park.cells["w6-multihead"].bonus_pending == 2
    assert "w6-self-attention: 5 points pending review" in park.notes
    assert "w8-midterm: 15 points pending review" in park.notes

    # choi: 7 x 10 = 70 points + bonus 7 capped at 5 = 75 -> 70 * 75/180 = 29.1667; the midterm
    # failed (error). The Classroom folder `w7-transformer-Choi` is the same student.
    choi = rows["choi"]
    assert choi.cells["w7-transformer"].state == "graded" and choi.cells["w7-transformer"].points == 10
    assert choi.cells["w5-resnet"].bonus == 5
    assert (choi.weekly_points, choi.weekly_bonus) == (70, 5)
    assert choi.phase_percent == pytest.approx(70 * 75 / 180, abs=1e-4) == pytest.approx(29.1667, abs=1e-4)
    assert choi.cells[MIDTERM_ID].state == "error" and choi.status == "incomplete"

    # jung: two w5-lstm results -> neither counts, and the row says why; everything else missing.
    jung = rows["jung"]
    assert jung.cells["w5-lstm"].state == "conflict" and "several results" in jung.cells["w5-lstm"].reason
    assert jung.phase_percent == 0 and jung.status == "incomplete"
    assert all(jung.cells[a].state == "missing" for a in (*WEEKLY_IDS, MIDTERM_ID) if a != "w5-lstm")


def test_a_result_of_another_assignment_is_left_out_with_the_reason(batches):
    report = compute_phase(batches)
    assert report.ignored == ["late/kim-rl: w9-rl is not an assignment of Phase 2"]
    assert "kim-rl" not in by_student(report) and "rl" not in by_student(report)


def test_phase_csv_shows_states_not_zeros_and_is_formula_safe(batches, tmp_path):
    grade_phase(batches, tmp_path / "phase", lang="en")
    with open(tmp_path / "phase" / "phase.csv", encoding="utf-8-sig", newline="") as fh:
        rows = {row["student"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {"kim", "lee", "park", "choi", "jung", "'" + FORMULA, EVIL}
    lee = rows["lee"]
    assert lee["status"] == "incomplete" and float(lee["phase_percent"]) == pytest.approx(50.1667, abs=1e-4)
    assert (lee["w5-resnet.state"], lee["w5-resnet.points"]) == ("missing", "")  # never a silent 0
    assert (lee["w8-midterm.state"], lee["w8-midterm.points"], lee["midterm_points"]) == ("rejected", "", "")
    park = rows["park"]
    assert park["w6-self-attention.state"] == "pending" and park["w6-self-attention.pending_points"] == "5"
    assert park["w6-multihead.bonus_points"] == "1" and park["w6-multihead.pending_points"] == "2"
    assert float(park["phase_percent_if_pending_earned"]) == pytest.approx(70 * 168 / 180 + 25.5, abs=1e-4)
    assert park["midterm_pending_points"] == "15" and park["w8-midterm.bonus_points"] == ""
    kim = rows["kim"]
    assert (kim["weekly_points"], kim["weekly_bonus_points"], kim["weekly_counted_points"]) == ("180", "8", "180")
    assert kim["phase_percent"] == "97" and kim["status"] == "complete"
    assert rows["'" + FORMULA]["w5-resnet.state"] == "graded"


def test_phase_html_is_inert_localized_and_shows_the_distribution(batches, tmp_path):
    report = compute_phase(batches)
    for lang, heading in (("en", "Distribution of the phase grade"), ("ko", "종합 성적 분포")):
        page = render_phase_html(report, lang=lang)
        assert heading in page and f'<html lang="{lang}">' in page
        assert_inert(page)  # no script, handler, remote load; the CSP in the head
        assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    page = render_phase_html(report, lang="en")
    # the histogram: kim 97 (complete) in the top bin; park 83.6 (pending) in 80-90; lee 50.2
    # in 50-60; choi 29.2 in 20-30; jung, the formula student and the evil one 0 in 0-10.
    bins = {int(low): (int(done), int(prov)) for low, done, prov in
            re.findall(r'data-low="(\d+)" data-complete="(\d+)" data-provisional="(\d+)"', page)}
    assert bins[90] == (1, 0) and bins[80] == (0, 1) and bins[50] == (0, 1) and bins[20] == (0, 1)
    assert bins[0] == (0, 3) and sum(d + p for d, p in bins.values()) == 7
    assert "missing" in page and "rejected" in page and "5 pending" in page
    assert "late/kim-rl: w9-rl is not an assignment of Phase 2" in page


def test_the_phase_command(batches, tmp_path):
    runner = CliRunner()
    out = tmp_path / "phase"
    done = runner.invoke(app, ["phase", *map(str, batches), "--out", str(out), "--lang", "ko"])
    assert done.exit_code == 0, done.output
    assert "7 students: 1 complete, 1 with points pending review, 5 incomplete" in " ".join(done.output.split())
    assert (out / "phase.csv").is_file() and "종합 성적" in (out / "phase.html").read_text(encoding="utf-8")
    # usage errors: exit 2 with one line, no traceback
    single = batches[0] / "kim"
    for args, words in (([str(single)], "one student's result"), ([str(tmp_path / "nope")], "not a folder"),
                        ([str(batches[0]), str(batches[0])], "given twice"),
                        ([str(batches[0]), "--lang", "fr"], "unknown language")):
        bad = runner.invoke(app, ["phase", *args, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and words in bad.output and "Traceback" not in bad.output, (args, bad.output)
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = runner.invoke(app, ["phase", str(empty), "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "no results" in bad.output
    assert not (tmp_path / "bad" / "phase.csv").exists()


def test_a_corrupt_result_is_that_students_error_not_a_crash(tmp_path):
    batch = tmp_path / "w5-lstm"
    write(batch, "kim", result("w5-lstm", 25))
    (batch / "lee").mkdir()
    (batch / "lee" / "result.json").write_text("{not json", encoding="utf-8")
    rows = by_student(compute_phase([batch]))
    assert rows["lee"].cells["w5-lstm"].state == "error"
    assert rows["lee"].cells["w5-lstm"].reason == "result.json could not be read"
    # no batch of the other assignments was given: each is missing, and says so
    assert rows["kim"].cells["w5-resnet"].reason == "no batch of this assignment was given"
    assert rows["kim"].weekly_percent == pytest.approx(70 * 25 / 180, abs=1e-4)
    assert "kim" in phase_csv(compute_phase([batch]))
