"""Every HTML page a TA or student opens is safe by construction (grader/report/safe_html.py).

A corpus of injection vectors (tests/data/html_vectors.json: notebook outputs, Markdown, SVG,
image metadata, attachments, raw cells, metadata, tracebacks, file and student names) goes
through the real page builders: executed.html (grader.report.notebook_html), feedback.html
(grader.report.write_reports) and summary.html (grader.batch.gradebook.write_summary).

- Without a browser: the pages, and safe_page / safe_fragment on each vector alone, hold no
  script, no event-handler attribute, no javascript: URL, no remote URL in a loading attribute or
  in CSS, no iframe/object/embed/form/base/meta refresh.
- In headless Chromium (Debian's chromium through Playwright, as tests/test_browser.py): no
  handler runs (no dialog opens, `window.pwned` stays unset, even when every event is dispatched
  to every element), and no request leaves the file: every request is file: or data:. Each page
  is opened twice: as written, and with its Content-Security-Policy removed, so that the
  sanitiser is shown to hold on its own, not only behind the CSP.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.batch.gradebook import row_from_result, write_summary
from grader.report import write_reports
from grader.report.notebook_html import (MAX_MARKDOWN_CHARS, MAX_OUTPUT_CHARS, ansi_html, executed_notebook_html, markdown_html,
                                         render_notebook_page, warm_up)
from grader.report.safe_html import csp, safe_css, safe_fragment, safe_page

CORPUS = json.loads((Path(__file__).resolve().parent / "data" / "html_vectors.json").read_text(encoding="utf-8"))
PNG = CORPUS["png"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a headless run as root on a machine with no outside network (as tests/test_browser.py).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


# --------------------------------------------------------------------------------------------
# the corpus as pages
# --------------------------------------------------------------------------------------------


def _code(source: str, outputs: list, metadata: dict | None = None, count: int | None = 1) -> dict:
    return {"cell_type": "code", "metadata": metadata or {}, "execution_count": count, "source": source,
            "outputs": outputs}


def _display(data: dict, metadata: dict | None = None) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


def corpus_notebook() -> dict:
    """An executed notebook (nbformat 4, as the sandbox returns it and _mark_problems marks it)
    that carries every vector of the corpus."""
    cells = [
        {"cell_type": "markdown", "metadata": {},
         "source": "# 코퍼스 노트북 / corpus notebook\n\n한국어 본문입니다."},
        _code('SEED = 0\nDEVICE = "cpu"', [], {"tags": ["parameters"]}),
        _code("SEED = 0", [], {"tags": ["injected-parameters"]}, 2),
        # the pipeline's marker before a failing cell (cell 3 counted as the pipeline counts)
        {"cell_type": "markdown", "metadata": {"tags": ["grader-problem"]},
         "source": '<span id="grader-problem-3"></span>\n**⚠ 셀 3에서 예외** <img src=x onerror="top.pwned=1">'},
        _code("x = 1/0", [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                           "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]}],
              {"grader": {"problem": "cell_error", "message": "ZeroDivisionError"}}, 3),
    ]
    for v in CORPUS["html"]:
        cells.append(_code(f"# {v['id']}", [_display({"text/html": v["html"], "text/plain": "<HTML>"})]))
    for v in CORPUS["svg"]:
        cells.append(_code(f"# {v['id']}", [_display({"image/svg+xml": v["svg"], "text/plain": "<SVG>"})]))
    for v in CORPUS["markdown"]:
        cells.append({"cell_type": "markdown", "metadata": {}, "source": v["markdown"]})
        cells.append(_code(f"# {v['id']}", [_display({"text/markdown": v["markdown"]})]))
    for v in CORPUS["image_metadata"]:
        cells.append(_code(f"# {v['id']}", [_display({v["mime"]: v["data"], "text/plain": "<Figure>"}, v["metadata"])]))
    for v in CORPUS["attachments"]:
        cells.append({"cell_type": "markdown", "metadata": {}, "source": v["source"], "attachments": v["attachments"]})
    for v in CORPUS["raw_cells"]:
        cells.append({"cell_type": "raw", "metadata": v["metadata"], "source": v["source"]})
    for v in CORPUS["cell_metadata"]:
        cells.append(_code(f"# {v['id']}", [], v["metadata"]))
        cells.append({"cell_type": "markdown", "metadata": v["metadata"], "source": "metadata"})
    for v in CORPUS["errors"]:
        cells.append(_code(f"# {v['id']}", [{"output_type": "error", "ename": v["ename"], "evalue": v["evalue"],
                                              "traceback": v["traceback"]}]))
    for v in CORPUS["streams"]:
        cells.append(_code(f"# {v['id']}", [{"output_type": "stream", "name": v["name"], "text": v["text"]}]))
    for v in CORPUS["other_outputs"]:
        cells.append(_code(f"# {v['id']}", [{"output_type": "execute_result", "execution_count": 1,
                                               "data": v["data"], "metadata": {}}]))
    return {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
            "metadata": {"title": CORPUS["names"][1],
                         "kernelspec": {"name": "python3", "language": "python", "display_name": CORPUS["names"][0]},
                         "language_info": {"name": "python"}}}


def hostile_result(name: str, lang: str = "en") -> dict:
    """A graded result whose every student-influenced text is a vector."""
    names = CORPUS["names"]
    return {
        "assignment": "w6-self-attention", "title": names[3], "status": "graded", "lang": lang,
        "score": 3.0, "max_score": 30.0, "bonus": 0.0, "bonus_max": 5.0,
        "criteria": {"implementation": {"score": 3.0, "max_score": 12.0, "pending": 0.0},
                     names[0]: {"score": 0.0, "max_score": 1.0, "pending": 0.0}},
        "checks": [
            {"id": "impl-sdpa-output", "criterion": "implementation", "status": "fail", "score": 0.0,
             "max_score": 1.5, "visibility": "public", "title": names[1], "message": "\n".join(names),
             "hint": names[0], "cell": 3, "figure": "figures/ok.png"},
            {"id": names[2], "criterion": "implementation", "status": "error", "score": 0.0, "max_score": 1.0,
             "visibility": "public", "title": names[0], "message": names[4], "figure": f"javascript:{names[0]}"},
            {"id": "remote-figure", "criterion": names[0], "status": "fail", "score": 0.0, "max_score": 1.0,
             "visibility": "public", "title": "remote", "figure": names[4]},
            {"id": "theory-free", "criterion": "theory", "status": "pending", "score": 0.0, "max_score": 2.0,
             "visibility": "public", "title": "free text", "answer": "\n".join(names), "guidance": names[1]},
        ],
        "submission": {"source": name, "notebook": names[3], "sha256": "ab" * 32, "notes": names},
        "execution": {"status": "cell_error", "backend": names[0], "isolation": "bwrap", "network": False,
                      "problems": [{"kind": names[0], "cell": 3, "message": names[1], "source_excerpt": names[3]}]},
        "executed_notebook": "executed.ipynb", "executed_notebook_html": "executed.html",
        "reason": names[1], "duration_s": 1.0, "grader_version": names[0],
    }


def hostile_rows() -> list:
    rows = [row_from_result(name, hostile_result(name)) for name in CORPUS["names"]]
    rejected = hostile_result("x.zip")
    rejected.update(status="rejected", reason=CORPUS["names"][0])
    rows.append(row_from_result(CORPUS["names"][1] + "-rejected", rejected))
    return rows


def _png_bytes() -> bytes:
    import base64

    return base64.b64decode(PNG)


def build_pages(out: Path) -> dict[str, Path]:
    """executed.html, feedback.html and summary.html of the corpus, written by the real builders."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "ok.png").write_bytes(_png_bytes())
    assert executed_notebook_html(corpus_notebook(), out / "executed.html", lang="ko") == "executed.html"
    write_reports(hostile_result(CORPUS["names"][0], lang="ko"), out)
    write_summary(hostile_rows(), out / "summary.html", lang="ko", input_dir=CORPUS["names"][0],
                  engine=CORPUS["names"][1], grader_version=CORPUS["names"][3])
    return {"executed": out / "executed.html", "feedback": out / "feedback.html", "summary": out / "summary.html"}


# --------------------------------------------------------------------------------------------
# inert HTML, checked without a browser
# --------------------------------------------------------------------------------------------

FORBIDDEN_TAGS = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input", "button",
                  "select", "textarea", "base", "link", "noscript", "template", "foreignobject", "use", "image",
                  "feimage", "animate", "set", "audio", "video", "source", "math", "xmp", "plaintext", "marquee"}
LOADING_ATTRS = {"srcset", "action", "formaction", "background", "poster", "ping", "xlink:href", "data", "codebase"}
HEAD_METAS = [{"charset": "utf-8"}, {"http-equiv": "Content-Security-Policy"}, {"name": "referrer"},
              {"name": "viewport"}, {"name": "color-scheme"}]


class _Doc(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def _css_is_local(css: str) -> None:
    lowered = css.lower()
    assert "@import" not in lowered
    assert "image-set(" not in lowered.replace("blocked-image-set(", "")
    assert "\\" not in css
    for m in re.finditer(r"(?<![\w-])url\(\s*['\"]?\s*([^'\")\s]*)", lowered):
        assert m.group(1).startswith(("#", "data:")), css


def assert_inert(page: str, *, local_images: bool = False, fragment: bool = False) -> None:
    """No script, handler, javascript: URL, remote load or dangerous element anywhere in `page`."""
    doc = _Doc()
    doc.feed(page)
    doc.close()
    assert "<script" not in page.lower()
    assert not re.search(r"<[^>]*(?:java|vb)script:", page, re.I)  # `<` in text is escaped: a tag
    assert [t for t, _ in doc.tags if t in FORBIDDEN_TAGS] == []
    for tag, attrs in doc.tags:
        for name, value in attrs.items():
            squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
            assert not name.startswith("on"), (tag, name, value)
            assert name not in LOADING_ATTRS, (tag, name)
            assert "javascript:" not in squeezed and "vbscript:" not in squeezed, (tag, name, value)
            if name != "style" and "url(" not in squeezed:  # CSS: a remote url() is renamed, see below
                assert "attacker.invalid" not in squeezed, (tag, name, value)
            if name == "src":
                assert tag == "img" and (squeezed.startswith("data:image/") or (
                    local_images and not re.match(r"[a-z][a-z0-9+.-]*:|/|\\", squeezed) and ".." not in squeezed))
                if squeezed.startswith("data:"):
                    assert re.fullmatch(r"data:image/[a-z+]+;base64,[a-z0-9+/]*={0,2}", squeezed)
            if name == "href":
                assert tag == "a" and not squeezed.startswith(("data:", "//", "\\"))
            if name in ("width", "height"):
                assert re.fullmatch(r"\d+(\.\d+)?(px|%|em)?", value.strip()), (tag, name, value)
            if name == "style" or "url(" in squeezed:
                _css_is_local(value)
        if tag == "meta":
            assert not fragment
            assert attrs.get("http-equiv", "").lower() in ("", "content-security-policy")
    for css in doc.styles:
        _css_is_local(css)
    if not fragment:
        metas = [a for t, a in doc.tags if t == "meta"]
        assert [{k: v for k, v in m.items() if k in ("charset", "http-equiv", "name")} for m in metas] == HEAD_METAS
        assert metas[1]["content"] == csp(local_images)
        assert page.startswith("<!DOCTYPE html>\n<html lang=")


@pytest.mark.parametrize("vector", CORPUS["html"], ids=lambda v: v["id"])
def test_safe_page_and_fragment_on_each_html_vector(vector):
    for wrapped in (vector["html"], f"<!DOCTYPE html><html lang=\"en\"><head><title>t</title></head><body>"
                                    f"<p>before</p>{vector['html']}<p>after</p></body></html>"):
        page = safe_page(wrapped)
        assert_inert(page)
        assert "<body>" in page and page.rstrip().endswith("</html>")
        assert_inert(safe_fragment(wrapped), fragment=True)


@pytest.mark.parametrize("vector", CORPUS["markdown"], ids=lambda v: v["id"])
def test_markdown_vectors_render_inert(vector):
    assert_inert(markdown_html(vector["markdown"]), fragment=True)


def test_the_three_pages_of_the_corpus_are_inert(tmp_path):
    pages = build_pages(tmp_path)
    assert_inert(pages["executed"].read_text(encoding="utf-8"))
    assert_inert(pages["feedback"].read_text(encoding="utf-8"), local_images=True)
    assert_inert(pages["summary"].read_text(encoding="utf-8"))


def test_safe_page_keeps_the_page_and_adds_the_policy():
    page = safe_page('<!DOCTYPE html>\n<html lang="ko">\n<head><meta charset="utf-8"><title>제목 &lt;b&gt;</title>'
                     "<style>body { color: red; background: url(data:image/png;base64,AAAA) }</style></head>"
                     '<body><main><h1 id="top">평가</h1><a href="#top">up</a> <a href="executed.html">nb</a>'
                     '<svg viewBox="0 0 10 10"><defs><pattern id="hatch"></pattern></defs>'
                     '<rect width="5" height="5" fill="url(#hatch)"></rect></svg></main></body></html>')
    assert page.startswith('<!DOCTYPE html>\n<html lang="ko">\n<head>\n<meta charset="utf-8">\n'
                           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';')
    assert "<title>제목 &lt;b&gt;</title>" in page
    assert "body { color: red; background: url(data:image/png;base64,AAAA) }" in page
    assert '<h1 id="top">평가</h1><a href="#top">up</a> <a href="executed.html">nb</a>' in page
    assert 'fill="url(#hatch)"' in page and 'viewBox="0 0 10 10"' in page
    assert "img-src data:;" in csp() and "img-src 'self' data:;" in csp(local_images=True)
    for part in ("default-src 'none'", "base-uri 'none'", "form-action 'none'", "style-src 'unsafe-inline'"):
        assert part in csp()
    # a relative image only where the page asked for it (the feedback's figures)
    assert '<img src="figures/a.png">' in safe_page('<img src="figures/a.png">', local_images=True)
    assert "figures/a.png" not in safe_page('<img src="figures/a.png">')
    for path in ("../x.png", "/etc/x.png", "file:///etc/x.png", "http://h/x.png", "//h/x.png", "a\\..\\x.png",
                 "figures/%2e%2e/%2E%2E/x.png", "javascript:alert(1)", " /x.png"):
        assert "src=" not in safe_page(f'<img src="{path}">', local_images=True), path


def test_safe_css_neutralises_every_remote_load():
    css = ("@import url(http://a/x.css); @IMPORT 'http://a/y.css'; a { background: URL( 'http://a/b.png' ) }"
           " b { background: u\\72 l(http://a/c.png) } c { background: image-set('http://a/d.png' 1x) }"
           " d { fill: url(#ok); background: url(data:image/png;base64,AAAA) } e { x: expression(alert(1)) }"
           " f { background: ur/**/l(http://a/e.png) } </style><script>alert(1)</script>")
    out = safe_css(css)
    _css_is_local(out)
    assert "url(#ok)" in out and "url(data:image/png;base64,AAAA)" in out
    assert "<" not in out and "expression(" not in out.replace("blocked-expression(", "")


def test_executed_notebook_page_keeps_what_a_ta_needs(tmp_path):
    page = render_notebook_page(corpus_notebook(), lang="ko")
    doc = _Doc()
    doc.feed(page)
    ids = [a["id"] for _, a in doc.tags if "id" in a]
    # the failing-cell marker keeps its anchor (on the marker itself), every counted cell has one
    assert "grader-problem-3" in ids and "cell-3" in ids and "cell-1" in ids
    assert ids.count("grader-problem-3") == 1
    # ids from the notebook's own HTML cannot take the page's anchors
    assert all(i.startswith(("cell-", "grader-problem-", "user-")) for i in ids), ids
    marker = re.search(r'<div class="cell markdown-cell grader-problem" id="grader-problem-3">.*?</div>', page, re.S)
    assert marker and "셀 3에서 예외" in marker.group(0)
    assert 'class="cell code-cell cell-problem" id="cell-3"' in page
    assert '<html lang="ko">' in page and "한국어 본문입니다." in page and "코퍼스 노트북" in page
    # the vectors are shown as text where they were text
    assert "&lt;script&gt;top.pwned=1;alert(1)&lt;/script&gt;" in page  # stream, plain, traceback
    assert "html link" in page and "js link" in page
    # images: valid base64 with numeric sizes kept; the injected sizes dropped; bad payloads not shown
    imgs = [{"src": "", **a} for t, a in doc.tags if t == "img"]
    assert {"src": f"data:image/png;base64,{PNG}", "alt": "", "width": "32", "height": "24"} in imgs
    assert all(a["src"] == "" or a["src"].startswith("data:image/") for a in imgs)
    assert sum(1 for a in imgs if a["src"] == f"data:image/png;base64,{PNG}" and "width" not in a) >= 2
    assert any(a["src"].startswith("data:image/svg+xml;base64,") for a in imgs)  # SVG only as an image
    assert any(a.get("alt") == "good" and a["src"] == f"data:image/png;base64,{PNG}" for a in imgs)  # attachment
    assert "not valid base64" in render_notebook_page(corpus_notebook(), lang="en")
    # math stays TeX source: not emphasis, not HTML
    assert "$a_i * b_i$" in page and "$&lt;img src=x onerror=top.pwned=1;alert(1)&gt;$" in page
    # ANSI colours become classes; other escape sequences vanish
    assert '<span class="ansi-red">ZeroDivisionError</span>' in page
    assert "\x1b" not in page and "]8;;" not in page


def test_long_outputs_are_cut_and_odd_notebooks_still_make_a_page(tmp_path):
    long = _code("print('y' * 10**6)",
                 [{"output_type": "stream", "name": "stdout", "text": "y" * (MAX_OUTPUT_CHARS + 7)}])
    page = render_notebook_page({"cells": [long]}, lang="en")
    assert "y" * MAX_OUTPUT_CHARS in page and "y" * (MAX_OUTPUT_CHARS + 1) not in page
    assert "7 more characters" in page
    # Markdown is rendered up to a budget a page; past it, a cell shows its source as text
    chunk = "*em* " * (MAX_MARKDOWN_CHARS // 5 // 2 - 1)
    cells = [{"cell_type": "markdown", "metadata": {}, "source": chunk} for _ in range(3)]
    page = render_notebook_page({"cells": cells}, lang="en")
    assert page.count("<em>em</em>") == 2 * chunk.count("*em*")
    assert page.count('<pre class="markdown-source">*em* *em*') == 1 and "longer than the" in page
    for odd in ({}, {"cells": None}, {"cells": [None, 3, "x", {"cell_type": "code", "source": 5, "outputs": "no"}]},
                {"cells": [{"cell_type": "code", "outputs": [None, {"output_type": "display_data", "data": None}]}]},
                {"cells": [{"cell_type": "markdown", "source": ["a", 1, None], "attachments": []}]}):
        assert executed_notebook_html(odd, tmp_path / "odd.html") == "odd.html"
        assert_inert((tmp_path / "odd.html").read_text(encoding="utf-8"))
    warm_up()


def test_lone_surrogates_do_not_stop_a_page(tmp_path):
    # an undecodable byte of a zip's file name, or "\udcff" in a notebook's JSON
    name = "bad\udcffname.zip"
    assert "bad\\udcffname.zip" in safe_page(f"<p>{name}</p>") and safe_fragment(name) == "bad\\udcffname.zip"
    notebook = {"cells": [{"cell_type": "markdown", "source": name},
                          _code(name, [{"output_type": "stream", "name": "stdout", "text": name}])]}
    assert executed_notebook_html(notebook, tmp_path / "executed.html") == "executed.html"
    assert (tmp_path / "executed.html").read_text(encoding="utf-8").count("bad\\udcffname.zip") == 3
    write_reports(hostile_result(name), tmp_path)
    assert "bad\\udcffname.zip" in (tmp_path / "feedback.html").read_text(encoding="utf-8")
    write_summary([row_from_result(name, hostile_result(name))], tmp_path / "summary.html", lang="en")
    assert "bad\\udcffname.zip" in (tmp_path / "summary.html").read_text(encoding="utf-8")


def test_ansi_html_escapes_and_colours():
    assert ansi_html("\x1b[1;31m<b>\x1b[0m plain\x1b[2K\rdone") == "done"
    assert ansi_html("\x1b[1;31m<b>\x1b[0m &") == '<span class="ansi-red ansi-bold">&lt;b&gt;</span> &amp;'
    assert ansi_html("\x1b[38;5;196mx\x1b[42my") == 'x<span class="ansi-bg-green">y</span>'


_PIECES = [v["html"] for v in CORPUS["html"]] + ["<", ">", '"', "'", "<svg>", "</svg>", "<style>", "</style>",
                                                  "<math>", "<table>", "<!--", "-->", "<title>", "&"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=6), st.booleans())
def test_any_mix_of_vectors_stays_inert(pieces, local_images):
    html = "".join(pieces)
    assert_inert(safe_page(html, local_images=local_images), local_images=local_images)
    assert_inert(safe_fragment(html), fragment=True)


# --------------------------------------------------------------------------------------------
# in headless Chromium
# --------------------------------------------------------------------------------------------

# Every event an inline handler of the corpus listens for, dispatched to every element: a handler
# that survived would run even though no one moves a mouse.
_DISPATCH_EVERY_EVENT = """() => {
  const types = ['load', 'error', 'focus', 'blur', 'mouseover', 'click', 'toggle', 'start', 'animationstart'];
  for (const el of document.querySelectorAll('*')) for (const type of types) el.dispatchEvent(new Event(type));
  return [...document.querySelectorAll('*')].flatMap(el => [...el.attributes].map(a => [el.tagName, a.name, a.value]))
    .filter(([tag, name, value]) => name.startsWith('on') || /^\\s*(java|vb)script:/i.test(value));
}"""


@pytest.fixture(scope="module")
def corpus_pages(tmp_path_factory) -> dict[str, Path]:
    pages = build_pages(tmp_path_factory.mktemp("corpus"))
    for name, path in list(pages.items()):
        text = path.read_text(encoding="utf-8")
        stripped = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>\n', "", text)
        assert stripped != text
        bare = path.with_name(f"{path.stem}-no-csp.html")
        bare.write_text(stripped, encoding="utf-8")
        pages[f"{name}-no-csp"] = bare
    return pages


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium fonts-noto-cjk; scripts/setup.sh does)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def open_inert(browser, path: Path) -> dict:
    """Open `path`, provoke every handler, and report what ran and what was requested."""
    page = browser.new_page()
    dialogs, requests, navigations = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.on("framenavigated", lambda f: navigations.append(f.url))
    # anything that is not the file itself or inline data is recorded (above) and never sent
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
               else route.abort())
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    live = page.evaluate(_DISPATCH_EVERY_EVENT)
    for selector in ("input", "details", "a"):
        if page.locator(selector).count():
            page.locator(selector).first.focus()
    state = page.evaluate("""() => ({
        pwned: window.pwned === undefined ? null : String(window.pwned),
        scripts: document.scripts.length,
        frames: window.frames.length,
        url: location.href,
        images: [...document.images].map(i => [(i.getAttribute('src') || '').slice(0, 40), i.complete, i.naturalWidth]),
        text: document.body.innerText,
        ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    })""")
    page.close()
    return {**state, "live": live, "dialogs": dialogs, "navigations": navigations,
            "requests": [u for u in requests if not u.startswith(("file:", "data:"))]}


@pytest.mark.parametrize("name", ["executed", "executed-no-csp", "feedback", "feedback-no-csp", "summary",
                                  "summary-no-csp"])
def test_in_chromium_no_handler_runs_and_nothing_leaves_the_page(chromium, corpus_pages, name):
    seen = open_inert(chromium, corpus_pages[name])
    assert seen["dialogs"] == []
    assert seen["pwned"] is None
    assert seen["live"] == []
    assert seen["scripts"] == 0 and seen["frames"] == 0
    assert seen["requests"] == []
    assert seen["url"] == corpus_pages[name].as_uri() and set(seen["navigations"]) <= {corpus_pages[name].as_uri()}
    if name.startswith("executed"):
        # the page still shows what a TA needs: the marker's anchor, Korean text, the valid images
        assert "grader-problem-3" in seen["ids"] and "cell-3" in seen["ids"]
        assert "한국어 본문입니다." in seen["text"] and "셀 3에서 예외" in seen["text"]
        good = [img for img in seen["images"] if img[0].startswith(f"data:image/png;base64,{PNG[:18]}")]
        assert len(good) >= 4 and all(complete and width > 0 for _, complete, width in good)
    if name.startswith("feedback"):
        figures = [img for img in seen["images"] if img[0] == "figures/ok.png"]
        assert figures and all(complete and width > 0 for _, complete, width in figures)
        assert seen["images"] == figures  # the javascript: and remote figures are not images at all


@pytest.mark.notebook
def test_a_real_kernels_outputs_are_inert_in_chromium(run_cells, chromium, tmp_path):
    """The dishonest student's display() calls, run by a real kernel in the sandbox, then the page."""
    vectors = [
        'display({"image/png": "AAAA"}, raw=True, metadata={"image/png": {"width": "1 onerror=top.pwned=1;alert(1)"}})',
        'display({"image/png": "AAAA"}, raw=True, metadata={"image/png": {"height": "1 onerror=top.pwned=1;alert(1)"}})',
        'display({"image/jpeg": "AAAA"}, raw=True, metadata={"image/jpeg": {"width": "1 onerror=top.pwned=1;alert(1)"}})',
        "display(HTML('<img src=x onerror=\"top.pwned=1;alert(1)\"><iframe src=\"http://attacker.invalid/f\"></iframe>'))",
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"top.pwned=1\"><script>top.pwned=1</script></svg>'))",
        "display(Markdown('[x](javascript:top.pwned=1) ![r](http://attacker.invalid/r.png)'))",
        "display(Javascript('top.pwned=1;alert(1)'))",
        "raise ValueError('<img src=x onerror=top.pwned=1;alert(1)>')",
    ]
    execution = run_cells("from IPython.display import display, HTML, SVG, Markdown, Javascript", *vectors)
    notebook = copy.deepcopy(execution.notebook)
    outputs = [o for c in notebook["cells"] for o in c.get("outputs", [])]
    assert any(o.get("metadata", {}).get("image/png", {}).get("width", "").startswith("1 onerror") for o in outputs)
    assert executed_notebook_html(notebook, tmp_path / "executed.html") == "executed.html"
    page = (tmp_path / "executed.html").read_text(encoding="utf-8")
    assert_inert(page)
    bare = tmp_path / "executed-no-csp.html"
    bare.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>\n', "", page), encoding="utf-8")
    for path in (tmp_path / "executed.html", bare):
        seen = open_inert(chromium, path)
        assert seen["dialogs"] == [] and seen["pwned"] is None and seen["live"] == []
        assert seen["requests"] == [] and seen["scripts"] == 0
        assert "ValueError" in seen["text"]
