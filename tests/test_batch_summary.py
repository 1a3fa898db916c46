"""The class summary of `grade batch` (summary.html) in Korean and English, and the gradebook that
stays the same whatever the language. Built from result dicts: nothing is graded here."""

from __future__ import annotations

import csv
import html as htmllib
import re

import pytest

from grader.batch.gradebook import (EXECUTION_LABELS, PROBLEM_LABELS, GradebookRow, build_summary_view,
                                    render_summary_html, row_from_result, write_gradebook, write_summary)
from grader.i18n import catalog

HANGUL = re.compile(r"[\uac00-\ud7a3]")
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [A-Za-z][A-Za-z0-9+\-]*)?")
EVIL_ID = "<script>alert(1)</script>"
EVIL_REASON = "<img src=x onerror=alert(1)>"


def result(score: float, checks: dict[str, str], execution: dict | None = None) -> dict:
    return {
        "assignment": "w6-self-attention", "title": "Optimised self-attention", "status": "graded",
        "score": score, "max_score": 30.0, "bonus": 1.5, "bonus_max": 5.0,
        "criteria": {"implementation": {"score": score - 10, "max_score": 12.0, "pending": 0.0},
                     "theory": {"score": 6.0, "max_score": 9.0, "pending": 3.0},
                     "experiments": {"score": 3.0, "max_score": 6.0, "pending": 0.0},
                     "code_quality": {"score": 1.0, "max_score": 3.0, "pending": 0.0}},
        "checks": [{"id": cid, "title": cid.replace("-", " "), "criterion": "implementation", "status": st,
                    "score": 0.0, "max_score": 1.0, "visibility": "hidden" if "hidden" in cid else "public",
                    "bonus": "bonus" in cid}
                   for cid, st in checks.items()],
        "execution": execution or {"status": "completed", "problems": []},
    }


CELL_4 = {"status": "cell_error", "problems": [{"kind": "cell_error", "cell": 4, "message": "ValueError"}]}


def class_rows() -> list[GradebookRow]:
    rows = [row_from_result(f"s{i}", result(10.0 + 2 * i, {
        "impl-easy": "pass", "impl-hard": "pass" if i == 0 else "fail", "impl-hidden-x": "pass",
        "impl-bonus-y": "fail", "theory-manual": "pending"})) for i in range(4)]
    rows.append(row_from_result("choi", result(12.0, {"impl-easy": "pass"}, CELL_4)))
    rows.append(row_from_result(EVIL_ID, {"status": "rejected", "reason": EVIL_REASON}))
    rows.append(row_from_result("lee", {"status": "error", "reason": "the grading process was killed by SIGKILL",
                                        "max_score": 30.0}))
    return rows


def page(lang: str | None, rows: list[GradebookRow] | None = None) -> str:
    return render_summary_html(class_rows() if rows is None else rows, input_dir="in", engine="local",
                               ignored=["notes.txt"], grader_version="0.1.0", lang=lang)


def visible_words(html: str, *data: str) -> list[str]:
    """The page's visible text (tags and CSS stripped) less the given data (ids, titles: they are
    not the page's own text) and the time stamp, as a list of Latin words."""
    text = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    text = htmllib.unescape(re.sub(r"<[^>]+>", " ", text))
    text = STAMP.sub(" ", text)
    for value in sorted(data, key=len, reverse=True):
        text = text.replace(value, " ")
    return re.findall(r"[A-Za-z]{2,}", text)


DATA = ("Optimised self-attention", "w6-self-attention", "impl-easy", "impl easy", "impl-hard", "impl hard",
        "impl-hidden-x", "impl hidden x", "impl-bonus-y", "impl bonus y", "theory-manual", "theory manual",
        "choi", "lee", "the grading process was killed by SIGKILL", "notes.txt", "local", "in", "s0", "s1",
        "s2", "s3", EVIL_ID, EVIL_REASON)

ENGLISH_HEADINGS = ("Batch summary", "Score distribution", "Criteria", "Pass rate of every check",
                    "Submissions to look at", "Left out of the batch", "Implementation", "Code quality",
                    "manual item", "incomplete run", "score (points)")
KOREAN_HEADINGS = ("일괄 채점 요약", "점수 분포", "평가 기준별 평균", "검사별 통과율",
                   "확인이 필요한 제출물", "일괄 채점에서 제외된 항목", "구현 완성도", "코드 품질",
                   "수동 채점 항목", "실행 미완료")


def test_the_korean_page_is_korean():
    html = page("ko")
    assert '<html lang="ko">' in html and "<title>일괄 채점 요약</title>" in html
    for heading in KOREAN_HEADINGS:
        assert heading in html, heading
    assert '<span class="tag">비공개</span>' in html and '<span class="tag">가산점</span>' in html
    assert '<span class="l">채점 완료</span>' in html and '<span class="l">거부됨</span>' in html
    assert "제출물 7개" in html and "5개 중 5개 채점 완료" in html
    assert 'aria-label="Optimised self-attention 점수 히스토그램"' in html
    assert "27점 이상 30점 이하" in html  # the top bin's tooltip, closed
    # Nothing of the page's own text is left in English (what is left is data: ids, titles, reasons).
    assert visible_words(html, *DATA) == []
    for heading in ENGLISH_HEADINGS:
        assert f">{heading}<" not in html, heading


def test_the_english_page_is_english():
    html = page("en")
    assert '<html lang="en">' in html and "<title>Batch summary</title>" in html
    for heading in ENGLISH_HEADINGS:
        assert heading in html, heading
    assert '<span class="tag">hidden</span>' in html and '<span class="tag">bonus</span>' in html
    assert "7 submissions from <code>in</code>" in html and "5 of 5 graded: mean" in html
    assert "27 to 30 (inclusive)" in html
    assert not HANGUL.search(html)


def test_english_plurals_and_korean_counters():
    one = [row_from_result("kim", result(20.0, {"impl-easy": "pass"}))]
    english, korean = page("en", one), page("ko", one)
    assert "1 submission from" in english and "1 submissions" not in english
    assert "<title>1 submission scored 18 to 21</title>" in english
    assert "3 points of manual items await a TA across 1 submission." in english
    assert "제출물 1개" in korean and "<title>18점 이상 21점 미만: 제출물 1개</title>" in korean
    two = [row_from_result(s, result(20.0, {"impl-easy": "pass"})) for s in ("kim", "lee")]
    english = page("en", two)
    assert "2 submissions from" in english and "<title>2 submissions scored 18 to 21</title>" in english
    assert "across 2 submissions." in english


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_untrusted_ids_reasons_and_names_stay_escaped(lang):
    rows = class_rows()
    rows.append(row_from_result("<b>kang</b>", result(11.0, {"impl-easy": "pass"}, {
        "status": "kernel_died", "problems": [{"kind": "<svg onload=alert(2)>", "cell": 7}]})))
    evil_title = {**result(15.0, {"impl-easy": "pass"}), "assignment": "w7", "title": '"><b>title</b>'}
    rows.append(row_from_result("yoon", evil_title))
    html = render_summary_html(rows, input_dir="<i>in</i>", engine="<u>local</u>", grader_version="<s>1</s>",
                               ignored=["<script>x</script>.zip"], lang=lang)
    assert f'<html lang="{lang}">' in html
    assert "<script" not in html and "<img" not in html and "<b>" not in html and "<i>" not in html
    assert "<u>" not in html and "<s>" not in html and '"><b>' not in html
    # the assignment's title, also inside the histogram's aria-label (an attribute)
    assert html.count("&#34;&gt;&lt;b&gt;title&lt;/b&gt;") >= 2
    assert "<svg onload" not in html and html.count("<svg") == 2  # the two assignments' histograms
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<code>&lt;i&gt;in&lt;/i&gt;</code>" in html  # the folder is escaped inside the translated text
    assert "&lt;script&gt;x&lt;/script&gt;.zip" in html
    assert "&lt;svg onload=alert(2)&gt;" in html  # an unknown problem kind, shown as it is, escaped


def test_the_incomplete_run_reason_is_translated_on_the_korean_page_only():
    rows = class_rows()
    korean, english = page("ko", rows), page("en", rows)
    row = next(r for r in rows if r.student == "choi")
    assert row.reason == "a cell raised an exception (exception in cell 4)"  # the gradebook's, unchanged
    looked_at = korean[korean.index("확인이 필요한 제출물"):]
    assert "<td>셀에서 예외가 발생했습니다 (셀 4에서 예외 발생)</td>" in looked_at
    assert "exception in cell 4" not in korean and "a cell raised an exception" not in korean
    assert '<td class="status-incomplete">실행 미완료</td>' in looked_at
    assert '<td class="status-rejected">거부됨</td>' in looked_at and '<td class="status-error">오류</td>' in looked_at
    assert "<td>a cell raised an exception (exception in cell 4)</td>" in english
    assert '<td class="status-incomplete">incomplete run</td>' in english


def test_every_run_status_and_problem_kind_is_translated():
    for kind, status_label in EXECUTION_LABELS.items():
        execution = {"status": kind, "problems": [{"kind": kind, "cell": 3}]}
        rows = [row_from_result("kim", result(20.0, {"impl-easy": "pass"}, execution))]
        view = build_summary_view(rows, lang="ko")
        reason = view["problems"][0]["reason"]
        assert reason == f"{catalog('ko')[status_label]} (셀 3에서 {catalog('ko')[PROBLEM_LABELS[kind]]})"
        assert not re.search(r"[A-Za-z]", reason), reason
        assert build_summary_view(rows, lang="en")["problems"][0]["reason"] == rows[0].reason
    # tests/test_i18n.py reads the report's label tables only: the gradebook's are checked here.
    for label in (*EXECUTION_LABELS.values(), *PROBLEM_LABELS.values()):
        assert catalog("en").get(label) == label and HANGUL.search(catalog("ko").get(label, "")), label


def test_the_gradebook_does_not_depend_on_the_language(tmp_path, monkeypatch):
    written = {}
    for lang in ("ko", "en"):
        monkeypatch.setenv("GRADER_LANG", lang)
        rows = class_rows()
        write_summary(rows, tmp_path / f"summary-{lang}.html", input_dir="in", engine="local", lang=lang)
        render_summary_html(rows)  # the default language too: rendering leaves the rows as they were
        written[lang] = write_gradebook(rows, tmp_path / f"gradebook-{lang}.csv").read_bytes()
    assert written["ko"] == written["en"]
    assert '<html lang="ko">' in (tmp_path / "summary-ko.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in (tmp_path / "summary-en.html").read_text(encoding="utf-8")
    text = written["ko"].decode("utf-8-sig")
    assert not HANGUL.search(text)
    lines = {line[0]: line for line in csv.reader(text.splitlines())}
    at = lines["student"].index("execution")  # columns appended after `reason` (bonus_max, ...) are English too
    assert lines["student"][1] == "status" and lines["student"][at:at + 2] == ["execution", "reason"]
    assert lines["choi"][1] == "graded"
    assert lines["choi"][at:at + 2] == ["cell_error", "a cell raised an exception (exception in cell 4)"]
    assert lines[EVIL_ID][1] == "rejected" and lines["lee"][1] == "error"


def test_the_language_defaults_to_the_course_one_and_must_be_known(monkeypatch):
    monkeypatch.setenv("GRADER_LANG", "ko")
    assert '<html lang="ko">' in page(None) and build_summary_view(class_rows())["lang"] == "ko"
    monkeypatch.setenv("GRADER_LANG", "en")
    assert '<html lang="en">' in page(None)
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        page("fr")
