"""The report in a real browser: headless Chromium (Debian's `chromium`, Korean glyphs from
`fonts-noto-cjk`) opens feedback.html, every image loads, and Korean text is drawn with real
glyphs, not missing-glyph boxes. A screenshot is kept next to the report."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from grader.pipeline import GradeOptions, grade_submission

from tests.seeded_bugs import make_buggy_notebook

pytestmark = pytest.mark.notebook
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")

# Flags for a headless run as root on a machine with no outside network (see the env notes).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def korean_report(tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium fonts-noto-cjk; scripts/setup.sh does)")
    tmp = tmp_path_factory.mktemp("browser")
    notebook = make_buggy_notebook("softmax_wrong_axis", tmp / "submission")
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from IPython.display import HTML, display\n"
        "display(HTML('<script>window.studentScriptRan = 1</script><b>student html</b>'))\n"
        # seen: nbconvert wrote this width unquoted, and the handler ran (tests/test_html_safety.py
        # has the whole corpus)
        "display({'image/png': 'AAAA'}, raw=True, metadata={'image/png': {'width': '1 onerror=alert(document.domain)'}})"))
    nbformat.write(nb, notebook)
    out = tmp / "out"
    result = grade_submission(notebook.parent, out, GradeOptions(lang="ko", cell_timeout_s=120, timeout_s=300))
    assert result["status"] == "graded" and result["lang"] == "ko"
    assert any(c.get("figure") for c in result["checks"]), "a failed attention check should come with a picture"
    return out / "feedback.html"


def test_the_report_renders_with_every_image_and_korean_glyphs(korean_report):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(korean_report.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images, "the report of a failing attention check shows pictures"
        broken = [src for src, complete, width in images if not complete or width == 0]
        assert broken == []
        assert page.evaluate("document.documentElement.lang") == "ko"
        assert "평가 기준별 점수" in page.inner_text("body")
        page.screenshot(path=str(korean_report.with_name("feedback.png")), full_page=True)
        # Missing glyphs are all drawn as the same box, so two different Korean words would look
        # alike; real glyphs make them differ. Same length, same font as the report's body text.
        shots = []
        for word in ("평가기준", "점수통과"):
            page.evaluate("""word => {
                const span = document.createElement('span');
                span.id = 'probe-text'; span.textContent = word; span.style.fontSize = '32px';
                document.getElementById('probe-text')?.remove();
                document.body.prepend(span);
            }""", word)
            shots.append(page.locator("#probe-text").screenshot())
        browser.close()
    assert korean_report.with_name("feedback.png").stat().st_size > 10_000
    assert shots[0] != shots[1], "Korean text is drawn as missing-glyph boxes: install fonts-noto-cjk"


def test_the_executed_notebook_html_is_linked_and_the_students_scripts_do_not_run(korean_report):
    html = korean_report.read_text(encoding="utf-8")
    assert 'href="executed.html"' in html
    executed = korean_report.with_name("executed.html")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        dialogs, requests = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(executed.as_uri())
        page.wait_for_load_state("load")
        text = page.inner_text("body")
        ran = page.evaluate("window.studentScriptRan === 1")
        handlers = page.evaluate("[...document.querySelectorAll('*')].flatMap(e => [...e.attributes])"
                                 ".filter(a => a.name.startsWith('on')).length")
        browser.close()
    assert "scaled_dot_product_attention" in text and "student html" in text  # the outputs are shown...
    assert ran is False  # ...but a script the student's notebook emitted does not run
    assert dialogs == [] and handlers == 0  # nor an event handler hidden in an image's metadata
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # and nothing is fetched (no CDN)
