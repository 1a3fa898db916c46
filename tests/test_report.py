"""Tests of the report stage: feedback.html / feedback.md and the terminal summary."""

from __future__ import annotations

import copy
import importlib.resources
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from grader.report import build_view, md_fence, md_inline, md_quote, render_summary, write_reports

SECRET = "SECRET-EXPECTED-0.8137"
SECRET_HINT = "SECRET-HINT-use-the-staff-trick"
XSS = "<script>alert(1)</script>"
SHA = "3f" * 32


def graded_result() -> dict:
    return {
        "assignment": "w6-self-attention",
        "title": "Optimised self-attention",
        "status": "graded",
        "reason": None,
        "score": 24.5,
        "max_score": 30.0,
        "bonus": 2.0,
        "bonus_max": 5.0,
        "criteria": {
            "implementation": {"score": 10.0, "max_score": 12.0, "pending": 0.0},
            "theory": {"score": 5.0, "max_score": 9.0, "pending": 4.0},
            "experiments": {"score": 6.0, "max_score": 6.0, "pending": 0.0},
            "code_quality": {"score": 3.5, "max_score": 3.0, "pending": 0.0},
        },
        "checks": [
            {
                "id": "impl-sdpa-output",
                "title": "Scaled dot-product attention output",
                "criterion": "implementation",
                "status": "fail",
                "score": 0.0,
                "max_score": 1.5,
                "visibility": "public",
                "bonus": False,
                "message": "max abs error 0.31 exceeds tolerance 1e-4 | shape (2, 4)",
                "hint": "divide by sqrt(d) before the softmax",
                "cell": 7,
                "answer": None,
                "guidance": None,
            },
            {
                "id": "impl-masked-rows-hidden",
                "title": "Fully masked rows",
                "criterion": "implementation",
                "status": "fail",
                "score": 0.0,
                "max_score": 2.0,
                "visibility": "hidden",
                "bonus": False,
                "message": f"expected {SECRET} got nan",
                "hint": SECRET_HINT,
                "cell": 9,
                "answer": None,
                "guidance": None,
            },
            {
                "id": "impl-causal-mask",
                "title": "Causal mask",
                "criterion": "implementation",
                "status": "pass",
                "score": 1.0,
                "max_score": 1.0,
                "visibility": "public",
                "bonus": False,
                "message": "",
                "hint": "",
                "cell": None,
                "answer": None,
                "guidance": None,
            },
            {
                "id": "theory-online-softmax",
                "title": "Online softmax 설명",
                "criterion": "theory",
                "status": "pending",
                "score": 0.0,
                "max_score": 4.0,
                "visibility": "public",
                "bonus": False,
                "message": None,
                "hint": None,
                "cell": None,
                "answer": f"The running max {XSS} keeps exp() finite.\n\n| a | b |\n```\n# not a heading\n- 한국어 답변입니다",
                "guidance": "STAFF-GUIDANCE full marks if rescaling is mentioned",
            },
            {
                "id": "bonus-flash-attention",
                "title": "FlashAttention",
                "criterion": "implementation",
                "status": "error",
                "score": 0.0,
                "max_score": 2.0,
                "visibility": "public",
                "bonus": True,
                "message": 'Traceback (most recent call last):\n  File "<cell>", line 3\nNotImplementedError',
                "hint": None,
                "cell": 20,
                "answer": None,
                "guidance": None,
            },
        ],
        "submission": {
            "source": "submit.zip",
            "sha256": SHA,
            "notebook": "self_attention_optimized.ipynb",
            "notes": ["unwrapped folder hw6/"],
        },
        "execution": {
            "status": "cell_error",
            "backend": "local",
            "isolation": "bwrap",
            "network": False,
            "duration_s": 12.3,
            "problems": [
                {
                    "kind": "cell_error",
                    "cell": 12,
                    "message": "ZeroDivisionError: division by zero",
                    "source_excerpt": "x = 1/0\n```\nprint('after the fence')",
                }
            ],
        },
        "executed_notebook": "executed.ipynb",
        "duration_s": 14.2,
        "grader_version": "0.1.0",
    }


def rejected_result() -> dict:
    # a rejected result carries few keys: everything optional must be tolerated
    return {
        "assignment": "w6-self-attention",
        "title": "Optimised self-attention",
        "status": "rejected",
        "reason": "no notebook named self_attention_optimized.ipynb in submit.zip <b>",
        "submission": {"source": "submit.zip", "sha256": SHA},
        "grader_version": "0.1.0",
    }


def error_result() -> dict:
    return {
        "assignment": "w6-self-attention",
        "title": "Optimised self-attention",
        "status": "error",
        "reason": "sandbox failed to start: bwrap: No permissions to create new namespace",
        "score": None,
        "max_score": 30.0,
        "criteria": {},
        "checks": [],
        "submission": {"source": "submit.zip", "sha256": SHA, "notebook": "self_attention_optimized.ipynb"},
        "execution": {"status": "not_run", "problems": []},
        "executed_notebook": None,
        "duration_s": 0.4,
        "grader_version": "0.1.0",
    }


def _write(result: dict, tmp_path: Path) -> tuple[str, str]:
    paths = write_reports(result, tmp_path / "out")
    assert set(paths) == {"html", "md"}
    assert paths["html"] == tmp_path / "out" / "feedback.html"
    assert paths["md"] == tmp_path / "out" / "feedback.md"
    return paths["html"].read_text(encoding="utf-8"), paths["md"].read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Collects start tags (with attributes) and the text of the document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse_html(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    p.close()
    return p


def _md_tokens(md: str):
    return MarkdownIt("commonmark").enable("table").parse(md)


def _flatten(tokens):
    for t in tokens:
        yield t
        if t.children:
            yield from _flatten(t.children)


# --------------------------------------------------------------------------------------------
# graded result
# --------------------------------------------------------------------------------------------


def test_graded_header_scores_and_pending(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    for doc in (html, md):
        assert "Optimised self-attention" in doc
        assert "w6-self-attention" in doc
        assert "Graded" in doc
        assert "24.5" in doc and "/ 30" in doc
        assert re.search(r"Bonus.*?2\b.*?/ 5", doc, re.S)
        assert "Awaiting TA review" in doc
        # pending manual points are called out, never shown as a 0 score or a failure
        assert "4 pts pending" in doc
        assert "0 / 4" not in doc
    assert '<span class="value">24.5 <small>/ 30</small></span>' in html
    assert "| **Total** | **24.5 / 30** |" in md
    assert "| **Awaiting TA review** | 4 pts |" in md
    # the pending item carries the pending badge, not a failure badge
    tags = _parse_html(html).tags
    art = [a for t, a in tags if t == "article" and a.get("id") == "check-theory-online-softmax"]
    assert art and "check-pending" in art[0]["class"]
    assert "⏳ AWAITING TA REVIEW · Online softmax 설명" in md


def test_hidden_check_never_leaks_message_or_hint(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    for doc in (html, md):
        assert SECRET not in doc
        assert SECRET_HINT not in doc
        # but the check itself is listed with its title/id, verdict and points
        assert "Fully masked rows" in doc
        assert "impl-masked-rows-hidden" in doc
        assert "hidden test" in doc
    assert re.search(
        r'id="check-impl-masked-rows-hidden".*?badge-fail">fail<.*?0 / 2.*?</article>', html, re.S
    )
    hidden_block = html.split('id="check-impl-masked-rows-hidden"')[1].split("</article>")[0]
    assert "Result:" not in hidden_block and "Hint:" not in hidden_block and "cell 9" not in hidden_block
    md_block = md.split("Fully masked rows")[1].split("####")[0]
    assert "**0 / 2**" in md_block and "Result" not in md_block and "Hint" not in md_block
    # the view model itself is already stripped
    hidden = [c for c in build_view(graded_result())["checks"] if c["hidden"]][0]
    assert hidden["message"] == "" and hidden["hint"] == "" and hidden["cell"] is None


def test_public_check_message_hint_and_cell(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    assert "max abs error 0.31 exceeds tolerance 1e-4 | shape (2, 4)" in html
    assert "divide by sqrt(d) before the softmax" in html
    assert "Notebook cell 7" in html and "Notebook cell 7" in md
    # a pipe in student-influenced text is escaped in Markdown
    assert r"max abs error 0.31 exceeds tolerance 1e-4 \| shape (2, 4)" in md
    # a multi-line message (traceback) keeps its lines: <pre> in HTML, a fence in Markdown
    # (the page is re-serialised by safe_html.safe_page: a quote in text is written as it is)
    assert "<pre class=\"message\">Traceback (most recent call last):\n  File \"&lt;cell&gt;\", line 3" in html
    fences = [t for t in _md_tokens(md) if t.type == "fence"]
    assert any(t.content.startswith("Traceback") and "NotImplementedError" in t.content for t in fences)


def test_manual_answer_escaped(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    # HTML: the answer is there, escaped, in a quote block; no script element anywhere
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS not in html
    assert "<script" not in html.lower()
    assert re.search(r'<blockquote class="answer">The running max &lt;script&gt;', html)
    assert "한국어 답변입니다" in html
    # Markdown: no raw HTML survives; the answer sits in a block quote, its lines intact as text
    assert "<script" not in md.lower()
    tokens = _md_tokens(md)
    assert not [t for t in _flatten(tokens) if t.type in ("html_inline", "html_block")]
    quoted, depth = [], 0
    for t in tokens:
        depth += t.type == "blockquote_open"
        depth -= t.type == "blockquote_close"
        if depth and t.type == "inline":
            quoted.append(t.content)
    quoted_text = "\n".join(quoted)
    assert "The running max" in quoted_text and "한국어 답변입니다" in quoted_text
    # the student's fence, heading and list markers did not become structure
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<h1>not a heading</h1>" not in rendered
    assert "# not a heading" in rendered
    assert "<li>한국어" not in rendered
    # the TA's rubric guidance is not in the student's copy
    assert "STAFF-GUIDANCE" not in html and "STAFF-GUIDANCE" not in md


def test_guidance_only_in_staff_copy(tmp_path):
    paths = write_reports(graded_result(), tmp_path / "staff", include_guidance=True)
    assert "STAFF-GUIDANCE" in paths["html"].read_text(encoding="utf-8")
    assert "STAFF-GUIDANCE" in paths["md"].read_text(encoding="utf-8")


def test_execution_problem_near_top_with_cell(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    for doc in (html, md):
        assert "Problems while running your notebook" in doc
        assert "cell 12" in doc
        assert "ZeroDivisionError: division by zero" in doc
        assert "cell_error" in doc.replace("\\_", "_")
        # before the criteria chart and the checks
        assert doc.index("ZeroDivisionError") < doc.index("Score by criterion") < doc.index("Scaled dot-product")
    assert "x = 1/0" in html
    # the excerpt is one fenced block in Markdown, not closed early by the ``` inside it
    fences = [t for t in _md_tokens(md) if t.type == "fence" and "x = 1/0" in t.content]
    assert len(fences) == 1
    assert fences[0].content == "x = 1/0\n```\nprint('after the fence')\n"
    assert fences[0].info == "python"
    # and the run did not complete: a warning box says so
    assert "did not run to completion" in html and "did not run to completion" in md


def test_criterion_chart_one_bar_per_criterion(tmp_path):
    result = graded_result()
    html, md = _write(result, tmp_path)
    tags = _parse_html(html).tags
    bars = [a for t, a in tags if t == "g" and a.get("class") == "bar"]
    assert [b["data-criterion"] for b in bars] == list(result["criteria"])
    assert len([a for t, a in tags if t == "rect" and a.get("class") == "bar-max"]) == 4
    # the pending part of theory is drawn hatched, and only there
    pending = [a for t, a in tags if t == "rect" and a.get("class") == "bar-pending"]
    assert len(pending) == 1 and pending[0]["fill"] == "url(#hatch)"
    assert any(t == "pattern" and a.get("id") == "hatch" for t, a in tags)
    # score widths are proportional: implementation 10/12 of the 440 px bar
    impl = html.split('data-criterion="implementation"')[1].split("</g>")[0]
    assert 'class="bar-score" x="170" y="6" width="366.7"' in impl
    # Markdown: one table row per criterion, with a text bar
    tables = [t for t in _md_tokens(md) if t.type == "table_open"]
    assert tables
    rows = [line for line in md.splitlines() if re.match(r"^\| .* \| `[█▒░]+` \|$", line)]
    assert len(rows) == 4
    assert "| Theory | 5 / 9 | 4 | `███████████▒▒▒▒▒▒▒▒▒` |" in rows
    assert "| Implementation | 10 / 12 | — | `█████████████████░░░` |" in rows


def test_html_is_self_contained_and_korean_ready(tmp_path):
    html, _ = _write(graded_result(), tmp_path)
    assert html.startswith("<!DOCTYPE html>")
    tags = _parse_html(html).tags
    assert ("html", {"lang": "en"}) in tags
    assert ("meta", {"charset": "utf-8"}) in tags
    assert '"Noto Sans CJK KR"' in html and "sans-serif" in html
    assert "Online softmax 설명" in html
    # no JavaScript, no external resources (the SVG namespace is not a fetch)
    assert not [t for t, _ in tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, a in tags if any(k.startswith("on") for k in a)]
    assert "@import" not in html and "url(http" not in html
    assert re.findall(r"https?://[^\s\"']*", html) == ["http://www.w3.org/2000/svg"]
    assert "@media print" in html


def test_executed_notebook_link_and_footer(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    assert '<a href="executed.ipynb">executed.ipynb</a>' in html
    assert "[executed.ipynb](<executed.ipynb>)" in md
    for doc in (html, md):
        assert "0.1.0" in doc
        assert "14.2 s" in doc
        assert "submit.zip" in doc
        assert "self" in doc and "ipynb" in doc


def test_untrusted_file_names_and_link(tmp_path):
    result = graded_result()
    result["submission"]["source"] = '<img src=x onerror="alert(1)">|.zip'
    result["submission"]["notes"] = ["](javascript:alert(1))"]
    result["executed_notebook"] = "javascript:alert(1)"
    html, md = _write(result, tmp_path)
    tags = _parse_html(html).tags
    assert not [t for t, _ in tags if t == "img"]
    assert not [a for t, a in tags if t == "a"]  # a link with a scheme is shown as text, not linked
    assert '&lt;img src=x onerror="alert(1)"&gt;|.zip' in html
    assert "<img" not in md
    rendered = MarkdownIt("commonmark").render(md)
    assert "href=\"javascript" not in rendered


def test_no_executed_notebook_no_link(tmp_path):
    result = graded_result()
    result["executed_notebook"] = None
    html, md = _write(result, tmp_path)
    assert "<a " not in html
    assert "Executed notebook" not in md


def test_check_groups_and_bonus_group(tmp_path):
    html, md = _write(graded_result(), tmp_path)
    headings = re.findall(r"^### (.*)$", md, re.M)
    assert headings == ["Implementation — 10 / 12", "Theory — 5 / 9 · 4 pending", "Bonus — 2 / 5"]
    bonus_part = md.split("### Bonus")[1]
    assert "FlashAttention" in bonus_part and "Causal mask" not in bonus_part
    assert "⚠️ ERROR · FlashAttention" in bonus_part
    assert 'class="group group-bonus"' in html
    assert "1 passed · 2 failed · 1 error(s) · 1 awaiting TA review" in md


# --------------------------------------------------------------------------------------------
# rejected / error results, missing keys
# --------------------------------------------------------------------------------------------


def test_rejected_result(tmp_path):
    html, md = _write(rejected_result(), tmp_path)
    for doc in (html, md):
        assert "Submission rejected" in doc
        assert "rejected and could not be graded" in doc
        assert "no notebook named self" in doc
        assert "What to do" in doc
        assert "submit again" in doc
        assert "Score by criterion" not in doc
    assert 'class="notice notice-rejected" role="alert"' in html
    assert "in submit.zip &lt;b&gt;</p>" in html
    assert "<svg" not in html
    assert "> **⛔ Your submission was rejected and could not be graded**" in md
    assert r"no notebook named self\_attention\_optimized.ipynb in submit.zip &lt;b&gt;" in md


def test_error_result(tmp_path):
    html, md = _write(error_result(), tmp_path)
    for doc in (html, md):
        assert "Grading error" in doc
        assert "The grader failed on this submission" in doc
        assert "bwrap: No permissions to create new namespace" in doc
        assert "do not need to resubmit" in doc
        assert SHA[:12] in doc  # the checksum to quote to the staff
        assert "0.4 s" in doc
    assert 'class="notice notice-error" role="alert"' in html
    # a null score is not invented as 0
    assert "— <small>/ 30</small>" in html
    assert "| **Total** | **— / 30** |" in md


@pytest.mark.parametrize("result", [{}, {"status": "graded"}, {"status": "rejected", "reason": None}])
def test_minimal_results_render(tmp_path, result):
    html, md = _write(result, tmp_path)
    assert "</html>" in html and md.endswith("\n")
    console = Console(record=True, width=120)
    render_summary(result, console)


def test_templates_are_package_data():
    templates = importlib.resources.files("grader.report") / "templates"
    assert (templates / "feedback.html.j2").is_file()
    assert (templates / "feedback.md.j2").is_file()


# --------------------------------------------------------------------------------------------
# terminal summary
# --------------------------------------------------------------------------------------------


def test_render_summary_graded():
    result = graded_result()
    result["checks"][0]["message"] = "[bold red]not markup[/] " + result["checks"][0]["message"]
    console = Console(record=True, width=120)
    render_summary(result, console)
    out = console.export_text()
    assert "Total: 24.5 / 30" in out
    assert "Bonus: 2 / 5" in out
    assert "4 pts awaiting TA review" in out
    for label in ("Implementation", "Theory", "Experiments", "Code quality"):
        assert label in out
    assert re.search(r"Theory\s*│\s*5\s*│\s*9\s*│\s*4\s*│", out)
    # failed/error checks, hidden one without its message
    assert "Scaled dot-product attention output" in out
    assert "[bold red]not markup[/]" in out  # student text is not parsed as console markup
    assert "Fully masked rows" in out and "hidden check" in out
    assert SECRET not in out and SECRET_HINT not in out
    assert "NotImplementedError" in out and "FlashAttention" in out
    assert "Causal mask" not in out  # passing checks are not listed
    assert "Online softmax" not in out  # pending is not a failure
    assert "cell 12" in out and "ZeroDivisionError" in out


def test_render_summary_rejected_and_error():
    for result, words in ((rejected_result(), "no notebook named"), (error_result(), "bwrap: No permissions")):
        console = Console(record=True, width=120)
        render_summary(result, console)
        out = console.export_text()
        assert words in out
        assert ("Submission rejected" if result["status"] == "rejected" else "Grading error") in out


# --------------------------------------------------------------------------------------------
# Markdown escaping helpers
# --------------------------------------------------------------------------------------------


def test_md_helpers():
    assert md_inline("a | b\nc") == r"a \| b c"
    assert md_inline("<b>x</b> & *y*") == r"&lt;b&gt;x&lt;/b&gt; &amp; \*y\*"
    assert md_inline("1. item") == r"1\. item"
    assert md_inline("- item") == r"\- item"
    assert md_inline("version 0.1.0") == "version 0.1.0"
    fenced = md_fence("a\n````\nb", "text")
    assert fenced.startswith("`````text\n") and fenced.endswith("\n`````")
    assert md_quote("one\ntwo\n\nthree") == "> one\\\n> two\n>\n> three"


def test_input_not_mutated(tmp_path):
    result = graded_result()
    before = copy.deepcopy(result)
    write_reports(result, tmp_path)
    render_summary(result, Console(record=True, width=120))
    assert result == before


def test_a_figures_axes_say_what_its_rows_and_columns_are(tmp_path, monkeypatch):
    """Attention maps are labelled query/key, encodings position/dimension, anything else row and
    column, in the report's language; plots from artifact folders (RGB pictures) have no axes."""
    import numpy as np

    import grader.report.figures as figures
    from grader.pipeline import _draw_figures

    drawn = {}

    def capture(actual, expected, path, *, labels, title, axes=None):
        drawn[path.name] = axes
        return path

    monkeypatch.setattr(figures, "render_comparison", capture)
    square = np.zeros((3, 3))
    checks = [{"id": "maps", "title": "t", "_figure": (square, square, "attention")},
              {"id": "table", "title": "t", "_figure": (square, square, "encoding")},
              {"id": "plain", "title": "t", "_figure": (square, square)}]
    _draw_figures(checks, tmp_path, "en")
    assert drawn == {"maps.png": ("key j", "query i"), "table.png": ("dimension", "position"),
                     "plain.png": ("column", "row")}
    assert [c["figure"] for c in checks] == ["figures/maps.png", "figures/table.png", "figures/plain.png"]
    _draw_figures([{"id": "maps", "title": "t", "_figure": (square, square, "attention")}], tmp_path, "ko")
    assert drawn["maps.png"] == ("키 j", "쿼리 i")
    monkeypatch.undo()

    picture = np.full((40, 60, 3), 255, dtype=np.uint8)
    picture[10:30, 10:50] = 0
    path = figures.render_comparison(picture, picture, tmp_path / "plots.png", labels=("a", "b"), title="p",
                                     axes=("column", "row"))
    assert path.read_bytes().startswith(b"\x89PNG")
