"""One policy for bonus and pending points, in every output (grader.rubric.policy).

The case of the issue: the w6-self-attention reference earns its 25 automatic points and its 5
bonus points while its 5 manual points await a TA. Classroom used to sum that to 30/30 (full
marks, read the student), and a review then lifted it to 35/30. The rules, checked here for the
gradebook, the feedback report, Classroom, Gradescope and JUnit (the phase grade: test_phase.py):

* the total is the assignment's points earned so far, never with the bonus in it;
* the bonus is reported apart, capped as the sheet says (5 points);
* pending points are visible as pending wherever a total is shown.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from grader.batch.gradebook import gradebook_csv, row_from_result
from grader.formats.classroom import to_classroom
from grader.formats.gradescope import to_gradescope
from grader.formats.junit import to_junit_xml
from grader.report import render_html, render_markdown
from grader.review import rebuild
from grader.rubric import load_rubric, score
from grader.rubric.policy import SHEET_BONUS_MAX_POINTS, summary_text, totals

from tests.conftest import REPO
from tests.test_html_safety import assert_inert

RUBRIC = load_rubric(REPO / "rubrics" / "w6-self-attention.yaml")
GROUPS = load_rubric(Path(__file__).resolve().parent / "data" / "rubric-midterm-groups.yaml")
MANUAL = [i for i in RUBRIC.items if i.kind == "manual"]
AUTO = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
PENDING = sum(i.points for i in MANUAL)


def reference_result(lang: str = "en") -> dict:
    """What the pipeline writes for the reference solution: every automatic item and every bonus
    item passes, the free-text answers are pending."""
    checks = []
    for item in RUBRIC.items:
        manual = item.kind == "manual"
        checks.append({"id": item.id, "title": item.id, "criterion": item.criterion,
                       "status": "pending" if manual else "pass", "score": 0.0 if manual else float(item.points),
                       "max_score": float(item.points), "visibility": item.visibility, "bonus": item.bonus,
                       "message": "awaiting review" if manual else "ok", "hint": "", "cell": None,
                       "answer": "my answer" if manual else None, "guidance": "g" if manual else None})
    result = {"assignment": RUBRIC.assignment, "title": RUBRIC.title, "status": "graded", "reason": None,
              "checks": checks, "submission": {"notebook": "self_attention_optimized.ipynb", "notes": []},
              "duration_s": 3.0, "grader_version": "0.1.0", "lang": lang}
    result.update(score(RUBRIC, checks))
    return result


def reviewed(result: dict) -> dict:
    """The same result after a TA gave every manual item its full points (grade review)."""
    history = [{"item": i.id, "score": i.points, "reviewer": "lee-ta", "at": "2026-11-30T00:00:00Z", "comment": ""}
               for i in MANUAL]
    return rebuild(result, history, RUBRIC)[0]


def test_the_reference_case_of_the_issue():
    assert (AUTO, PENDING, RUBRIC.bonus_max, RUBRIC.points) == (25, 5, 5, 30)
    before = totals(reference_result())
    assert (before.score, before.pending, before.bonus, before.bonus_max) == (25, 5, 5, 5)
    after = totals(reviewed(reference_result()))
    assert (after.score, after.pending, after.bonus) == (30, 0, 5)  # full marks, bonus still apart
    assert summary_text(reference_result()) == ("25 / 30 points; 5 points pending review, not in the total; "
                                                "bonus 5 / 5, counted apart from the total")
    assert summary_text(reviewed(reference_result())) == "30 / 30 points; bonus 5 / 5, counted apart from the total"
    korean = summary_text(reference_result(), "ko")
    assert "25 / 30점" in korean and "5점은 검토 대기 중" in korean and "가산점 5 / 5점 (총점과 별도)" in korean


def test_the_bonus_is_capped_as_the_sheet_says_even_when_a_result_claims_more():
    assert SHEET_BONUS_MAX_POINTS == 5
    claimed = {**reference_result(), "bonus": 7.0, "bonus_max": 10.0}  # an older rubric, or an edited file
    assert totals(claimed).bonus == 5 and totals(claimed).bonus_max == 5
    # a pending bonus item counts only up to the cap
    result = reference_result()
    flash = next(c for c in result["checks"] if c["id"] == "bonus-flash")
    flash.update(status="pending", score=0.0)
    result.update(score(RUBRIC, result["checks"]))
    policy = totals(result)
    assert policy.bonus == 5 - flash["max_score"] and policy.bonus_pending == flash["max_score"]
    assert totals({"status": "rejected", "score": 0, "bonus": 3}).graded is False


# --- Classroom ----------------------------------------------------------------------------------

def classroom_points(document: dict) -> float:
    """What the Classroom reporter shows as "Points X/Y": the sum of the tests' scores."""
    return sum(t["score"] for t in document["tests"])


def test_classroom_shows_25_of_30_with_the_pending_and_the_bonus_apart():
    document = to_classroom(reference_result())
    assert (classroom_points(document), document["max_score"]) == (25, 30)
    summary = document["tests"][-1]
    assert summary["name"] == ("summary: 25 / 30 points; 5 points pending review, not in the total; "
                               "bonus 5 / 5, counted apart from the total")
    assert summary["status"] == "pass" and summary["score"] == 0
    names = {t["name"].split(":")[0]: t["name"] for t in document["tests"][:-1]}
    for item in MANUAL:
        assert names[item.id].endswith(f"(pending: {item.points:g} points await review, not in the total)")
    assert names["bonus-flash"].endswith("(bonus: 2 / 2 points, counted apart from the total)")


def test_classroom_after_the_review_is_30_of_30_not_35():
    document = to_classroom(reviewed(reference_result()))
    assert (classroom_points(document), document["max_score"]) == (30, 30)
    assert "pending" not in document["tests"][-1]["name"]
    assert "bonus 5 / 5" in document["tests"][-1]["name"]


# --- Gradescope ---------------------------------------------------------------------------------

def test_gradescope_scores_the_points_and_reports_bonus_and_pending_apart():
    document = to_gradescope(reference_result())
    assert document["score"] == 25
    assert document["extra_data"] == {"max_score": 30.0, "pending": 5.0, "bonus": 5.0, "bonus_max": 5.0,
                                      "bonus_pending": 0.0}
    first = document["output"].splitlines()[0]
    assert "25 / 30 points; 5 points pending review, not in the total; bonus 5 / 5" in first
    assert "Awaiting review (not in this score):" in document["output"]
    bonus = [t for t in document["tests"] if "bonus" in t["tags"]]
    assert len(bonus) == 3 and all("counted apart from the total" in t["name"] for t in bonus)
    assert sum(t["score"] for t in document["tests"] if "bonus" not in t["tags"]) == 25
    assert to_gradescope(reviewed(reference_result()))["score"] == 30  # not 35


# --- JUnit --------------------------------------------------------------------------------------

def junit_properties(result: dict) -> tuple[dict, list[ET.Element]]:
    root = ET.fromstring(to_junit_xml(result).encode("utf-8"))
    suite = root.find("testsuite")
    return {p.get("name"): p.get("value") for p in suite.find("properties")}, suite.findall("testcase")


def test_junit_total_is_the_score_with_pending_and_bonus_as_their_own_properties():
    props, cases = junit_properties(reference_result())
    assert (props["total"], props["score"], props["max_score"]) == ("25", "25", "30")
    assert (props["pending"], props["bonus"], props["bonus_max"], props["bonus_pending"]) == ("5", "5", "5", "0")
    pending = [c for c in cases if c.find("skipped") is not None]
    assert {c.get("name") for c in pending} == {i.id for i in MANUAL}
    for case in pending:
        case_props = {p.get("name"): p.get("value") for p in case.find("properties")}
        assert case_props["pending"] == case_props["max_score"] and case_props["score"] == "0"
    props, _ = junit_properties(reviewed(reference_result()))
    assert (props["total"], props["pending"], props["bonus"]) == ("30", "0", "5")


def test_junit_of_a_rubric_with_groups_has_the_group_view():
    checks = [{"id": i.id, "criterion": i.criterion, "status": "pending" if i.kind == "manual" else "pass",
               "score": 0.0 if i.kind == "manual" else float(i.points), "max_score": float(i.points),
               "visibility": "public", "bonus": False} for i in GROUPS.items]
    result = {"assignment": "w8-midterm", "status": "graded", "checks": checks, **score(GROUPS, checks)}
    props, _ = junit_properties(result)
    assert (props["group.basic.score"], props["group.applied.score"], props["group.analysis.pending"]) == (
        "60", "25", "15")
    assert (props["total"], props["pending"]) == ("85", "15")


# --- the gradebook ------------------------------------------------------------------------------

def test_the_gradebook_keeps_its_columns_and_appends_the_bonus_cap_and_pending_bonus():
    pending_bonus = reference_result()
    flash = next(c for c in pending_bonus["checks"] if c["id"] == "bonus-flash")
    flash.update(status="pending", score=0.0)
    pending_bonus.update(score(RUBRIC, pending_bonus["checks"]))
    rows = [row_from_result("kim", reference_result()), row_from_result("lee", reviewed(reference_result())),
            row_from_result("park", pending_bonus),
            row_from_result("choi", {"status": "rejected", "reason": "bad zip", "max_score": 30.0})]
    table = list(csv.DictReader(io.StringIO(gradebook_csv(rows))))
    header = list(table[0])
    assert header[:13] == ["student", "status", "assignment", "implementation", "theory", "experiments",
                           "code_quality", "score", "max_score", "bonus", "pending", "execution", "reason"]
    assert header[13:] == ["bonus_max", "bonus_pending"]
    kim, lee, park, choi = table
    assert (kim["score"], kim["max_score"], kim["bonus"], kim["pending"], kim["bonus_max"]) == ("25", "30", "5", "5", "5")
    assert (lee["score"], lee["bonus"], lee["pending"]) == ("30", "5", "0")
    assert (park["bonus"], park["bonus_pending"]) == ("3", "2")
    # a rejected submission has no marks at all, not zeros
    assert (choi["score"], choi["bonus"], choi["pending"], choi["bonus_max"]) == ("", "", "", "")


def test_the_gradebook_of_a_midterm_appends_a_column_per_group():
    checks = [{"id": i.id, "status": "pending" if i.kind == "manual" else "pass",
               "score": 0.0 if i.kind == "manual" else float(i.points)} for i in GROUPS.items]
    result = {"assignment": "w8-midterm", "status": "graded", "checks": checks, **score(GROUPS, checks)}
    table = list(csv.DictReader(io.StringIO(gradebook_csv([row_from_result("kim", result)]))))
    assert {k: table[0][k] for k in ("group.basic", "group.applied", "group.analysis", "pending")} == {
        "group.basic": "60", "group.applied": "25", "group.analysis": "0", "pending": "15"}


# --- the feedback report ------------------------------------------------------------------------

def test_the_report_shows_the_total_the_pending_points_and_the_bonus_apart():
    html, md = render_html(reference_result()), render_markdown(reference_result())
    assert '<span class="value">25 <small>/ 30</small></span>' in html
    assert "| **Total** | **25 / 30** |" in md
    assert "| **Awaiting TA review** | 5 pts |" in md and "| **Bonus** | 5 / 5 |" in md
    for doc in (html, md):
        assert "Bonus points are counted apart from the total (at most 5 points)." in doc
    korean = render_markdown(reference_result("ko"))
    assert "가산점은 총점과 별도로 집계됩니다 (최대 5점)." in korean
    after = render_markdown(reviewed(reference_result()))
    assert "| **Total** | **30 / 30** |" in after and "Awaiting TA review" not in after.split("##")[0]


def test_the_report_of_a_rubric_with_groups_shows_both_views():
    checks = []
    for item in GROUPS.items:
        status = "pending" if item.kind == "manual" else ("fail" if item.id == "basic-enc-dec" else "pass")
        checks.append({"id": item.id, "title": item.title.en, "criterion": item.criterion, "status": status,
                       "score": float(item.points) if status == "pass" else 0.0, "max_score": float(item.points),
                       "visibility": "public", "bonus": False, "message": "", "hint": ""})
    result = {"assignment": "w8-midterm", "title": GROUPS.title, "status": "graded", "checks": checks, "lang": "en",
              **score(GROUPS, checks)}
    md = render_markdown(result)
    assert "## Score by part" in md and "## Score by criterion" in md
    assert "| Basic implementation | 40 / 60 | — |" in md and "| Analysis | 0 / 15 | 15 |" in md
    assert re.findall(r"^### (.*)$", md, re.M) == ["Basic implementation — 40 / 60", "Applied work — 25 / 25",
                                                   "Analysis — 0 / 15 · 15 pending"]
    assert "basic-enc-dec · **0 / 20** · Implementation" in md  # each check names its criterion
    html = render_html(result)
    assert_inert(html, local_images=True)
    assert [m for m in re.findall(r'data-part="([^"]+)"', html)] == ["basic", "applied", "analysis"]
    assert len(re.findall(r'data-criterion="', html)) == 4
    korean = render_markdown({**result, "lang": "ko"})
    assert "## 영역별 점수" in korean and "| 기본 구현 | 40 / 60 |" in korean
