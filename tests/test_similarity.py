"""`grade similarity` / `grade batch --similarity`: pairs of submissions that look copied.

Synthetic batch folders (tests/similarity_cases.py), no notebook runs: independent solutions,
one copy with every name changed, comments rewritten and cells reordered, students who only
handed in the template, a shared answer and figure, copied timings.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("copydetect", reason="the similarity extra (copydetect, imagehash) is a dev dependency")
pytest.importorskip("imagehash", reason="the similarity extra (copydetect, imagehash) is a dev dependency")

from grader.similarity import CSV_NAME, HTML_NAME, summary_link  # noqa: E402
from grader.similarity.collect import measured_numbers, read_batch  # noqa: E402
from grader.similarity.core import Settings, compare_documents, similarity_report  # noqa: E402

from tests.similarity_cases import (ANSWER_TAGS, OWN_WORDS, build_class, png, results_csv,  # noqa: E402
                                    student_notebook, write_student)

GRADE = [sys.executable, "-m", "grader.cli"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def pair_kinds(report) -> dict[tuple[str, str], list[str]]:
    return {tuple(sorted((p.a.key, p.b.key))): p.kinds for p in report.pairs}


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    root = tmp_path_factory.mktemp("similarity")
    batch, inputs = build_class(root)
    results = {p.name: (p / "result.json").read_bytes() for p in batch.iterdir() if (p / "result.json").is_file()}
    report = similarity_report(batch, lang="en")
    return batch, inputs, report, results


def test_only_the_disguised_copy_is_flagged_for_code(klass):
    _, _, report, _ = klass
    code_pairs = {pair for pair, kinds in pair_kinds(report).items() if "code" in kinds}
    assert code_pairs == {("copier", "indep-b")}
    copy = next(p for p in report.pairs if "code" in p.kinds)
    # Renamed variables, rewritten comments and reordered cells: nearly all of it still matches.
    assert copy.code.similarity_a >= 0.9 and copy.code.similarity_b >= 0.9
    assert copy.code.slices_a and copy.code.slices_b  # where, for the side-by-side view


def test_independent_solutions_stay_well_below_the_threshold(klass):
    batch, _, report, _ = klass
    docs = read_batch(batch)
    every, _ = compare_documents(docs, len(docs), report.templates, Settings(threshold=0.01))
    scores = {tuple(sorted((p.a.key, p.b.key))): p.score for p in every if p.code}
    independent = {pair: s for pair, s in scores.items() if pair != ("copier", "indep-b")}
    assert independent, "independent solutions share some idioms: they are compared, not skipped"
    assert max(independent.values()) < 0.3
    assert scores[("copier", "indep-b")] > 0.9


def test_fingerprinting_in_worker_processes_gives_the_same_pairs(klass):
    batch, _, report, _ = klass
    docs = read_batch(batch)
    # A class of 48 or more is fingerprinted by a pool of processes; this one is forced to.
    pooled, _ = compare_documents(docs, len(docs), report.templates, Settings(), workers=2)
    assert [(p.a.key, p.b.key, p.kinds, p.score, p.code and p.code.slices_a) for p in pooled] == \
        [(p.a.key, p.b.key, p.kinds, p.score, p.code and p.code.slices_a) for p in report.pairs]


def test_students_who_only_filled_in_the_template_are_not_flagged(klass):
    batch, _, report, _ = klass
    assert ("template-1", "template-2") not in pair_kinds(report)
    assert report.templates and report.templates[0].path.name == "self_attention_optimized.ipynb"
    # What keeps them apart is the template as copydetect's boilerplate: without it they are identical.
    docs = read_batch(batch)
    without, _ = compare_documents(docs, len(docs), [], Settings())
    assert "code" in pair_kinds_of(without)[("template-1", "template-2")]


def pair_kinds_of(pairs) -> dict[tuple[str, str], list[str]]:
    return {tuple(sorted((p.a.key, p.b.key))): p.kinds for p in pairs}


def test_the_same_answer_and_figure_are_flagged_with_that_evidence(klass):
    _, _, report, _ = klass
    pair = next(p for p in report.pairs if {p.a.key, p.b.key} == {"share-e", "share-f"})
    assert pair.kinds == ["answer", "image"]
    assert [a["tag_a"] for a in pair.answers] == ["answer:theory-online-softmax"]
    assert "normalise by the same total" in pair.answers[0]["text"]
    [image] = pair.images
    assert image["a"].endswith("time_memory_vs_seq_len.png") and not image["identical"]  # resized, not the same bytes
    assert image["distance"] <= Settings().image_distance_max


def test_copied_timings_are_evidence_and_the_templates_common_figure_is_not(klass):
    _, _, report, _ = klass
    kinds = pair_kinds(report)
    assert kinds[("indep-c", "indep-d")] == ["numbers"]
    pair = next(p for p in report.pairs if {p.a.key, p.b.key} == {"indep-c", "indep-d"})
    assert len(pair.numbers) == 12  # every timing of the table; the analytic memory column is not measured
    # Every student has the same mask picture (the template's code draws it): no pair is flagged for it.
    assert [pair for pair, k in kinds.items() if "image" in k] == [("share-e", "share-f")]
    assert set(kinds) == {("copier", "indep-b"), ("indep-c", "indep-d"), ("share-e", "share-f")}


def test_measured_numbers_are_the_ones_with_four_significant_digits():
    text = "time 12.3450 ms, 0.2500 MiB, T=256, 2.38e-07, T^2.03, v1.2.3, x86_64, -0.004321 and 1.5e-03"
    assert measured_numbers(text) == {"12.345", "-0.004321"}


def test_the_csv_lists_the_pairs_formula_safe(klass):
    batch, _, report, _ = klass
    with open(batch / CSV_NAME, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["student_a"], r["student_b"]) for r in rows] == [(p.a.key, p.b.key) for p in report.pairs]
    by_pair = {(r["student_a"], r["student_b"]): r for r in rows}
    copy = by_pair[("copier", "indep-b")]
    assert copy["evidence"] == "code" and float(copy["score"]) > 0.9
    assert by_pair[("indep-c", "indep-d")]["shared_numbers"] == "12"
    assert by_pair[("share-e", "share-f")]["evidence"] == "answer;image"
    assert summary_link(batch) == {"href": HTML_NAME, "pairs": 3}


def test_results_are_never_changed(klass):
    batch, _, _, results = klass
    assert {name: (batch / name / "result.json").read_bytes() for name in results} == results


def test_the_report_is_the_same_every_run(klass):
    batch, _, report, _ = klass
    # copydetect's own k-gram hash is Python's hash(), salted per process; ours is not: another
    # process (another salt) finds the same fingerprints, hence the same numbers.
    script = ("import sys\nfrom grader.similarity.core import similarity_report\n"
              "r = similarity_report(sys.argv[1], write=False)\n"
              "print([(p.a.key, p.b.key, p.kinds, p.score) for p in r.pairs])\n")
    done = subprocess.run([sys.executable, "-c", script, str(batch)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([(p.a.key, p.b.key, p.kinds, p.score) for p in report.pairs])


def test_the_page_is_inert_and_says_it_is_not_a_verdict(klass):
    batch, _, _, _ = klass
    html = (batch / HTML_NAME).read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "not a verdict" in html and "판정이 아닙니다" in html  # in both languages
    assert 'href="#pair-1"' in html and "<mark>" in html  # ranked pairs open a side-by-side view
    assert html.count('<img src="data:image/png;base64,') == 2  # the shared figure, both sides


def test_hostile_names_and_files_are_shown_escaped_and_noted(tmp_path):
    batch, inputs = tmp_path / "out", tmp_path / "in"
    hostile = '=HYPERLINK("x")<img src=x onerror=alert(1)>'
    notebook = student_notebook("A", answers=dict(zip(ANSWER_TAGS, OWN_WORDS["A"])))
    bomb = bytearray(png(1))
    bomb[16:24] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")  # a header claiming 3.6 G pixels
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")  # with a valid checksum: a real header
    files = {"performance_benchmark/results.csv": results_csv(1), "performance_benchmark/plot.png": png(5),
             "a/bomb.png": bytes(bomb), "a/fake.png": b"not a png at all"}
    write_student(batch, inputs, hostile, notebook, files)
    write_student(batch, inputs, "copy", student_notebook("A", answers=dict(zip(ANSWER_TAGS, OWN_WORDS["A"]))),
                  {"performance_benchmark/plot.png": png(5)})
    gone = tmp_path / "gone"
    write_student(batch, gone, "moved", student_notebook("C"), {})
    shutil.rmtree(gone)  # the submission is no longer where the batch found it
    (batch / "broken").mkdir()
    (batch / "broken" / "result.json").write_text('{"status": "graded", "assignment": "w6-self-attention"}')
    (batch / "broken" / "executed.ipynb").write_text("{not json")
    report = similarity_report(batch, lang="en")
    notes = {d.key: [str(n) for n in d.notes] for d in report.documents}
    assert any("bomb.png" in n and "pixels" in n for n in notes[hostile])
    assert any("fake.png" in n for n in notes[hostile])
    assert any("no longer where the batch found it" in n for n in notes["moved"])
    assert any("not a readable notebook" in n for n in notes["broken"])
    assert pair_kinds(report)[tuple(sorted((hostile, "copy")))] == ["code", "answer", "image"]
    with open(batch / CSV_NAME, encoding="utf-8-sig", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert hostile in (row["student_a"].lstrip("'"), row["student_b"].lstrip("'"))
    assert row["student_a"].startswith("'=") or row["student_b"].startswith("'=")  # not a formula
    html = (batch / HTML_NAME).read_text(encoding="utf-8")
    assert "<img src=x" not in html and "onerror" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_archives_of_earlier_terms_are_compared_with_the_class_not_with_each_other(klass, tmp_path):
    batch, _, _, _ = klass
    archive = tmp_path / "2025-fall"
    (archive / "kim").mkdir(parents=True)
    old = student_notebook("A")  # indep-a handed in last year's solution
    (archive / "kim" / "self_attention_optimized.ipynb").write_text(json.dumps(old), encoding="utf-8")
    (archive / "lee").mkdir()
    (archive / "lee" / "self_attention_optimized.ipynb").write_text(json.dumps(old), encoding="utf-8")
    from tests.similarity_cases import SOLUTIONS

    helpers, body = SOLUTIONS["D"]["chunked_attention"]
    (archive / "snippets.py").write_text(helpers + "def chunked(q, k, v, mask=None, chunk_size=128):\n" + body,
                                         encoding="utf-8")
    report = similarity_report(batch, against=[archive], lang="en", write=False)
    kinds = pair_kinds(report)
    assert kinds[("2025-fall/kim/self_attention_optimized.ipynb", "indep-a")] == ["code"]
    assert kinds[("2025-fall/lee/self_attention_optimized.ipynb", "indep-a")] == ["code"]
    assert ("2025-fall/snippets.py", "indep-d") in kinds  # a .py file: D's chunked attention is in it
    assert ("2025-fall/kim/self_attention_optimized.ipynb", "2025-fall/lee/self_attention_optimized.ipynb") \
        not in kinds  # the archive is not compared with itself
    assert all(p.b.origin == "archive" for p in report.pairs if p.b.key.startswith("2025-fall/"))


def test_a_batch_folder_of_an_earlier_term_is_an_archive_too(klass, tmp_path):
    batch, _, _, _ = klass
    older = tmp_path / "older-batch"
    older.mkdir()
    shutil.copytree(batch / "indep-c", older / "park")
    report = similarity_report(batch, against=[older], write=False)
    assert pair_kinds(report)[("indep-c", "older-batch/park")][0] == "code"


def test_a_batch_still_writing_its_folder_is_not_reported_on(klass, tmp_path):
    from grader.batch.exceptions import BatchLocked
    from grader.batch.state import OutputArea

    batch, _, _, _ = klass
    work = tmp_path / "batch"
    shutil.copytree(batch, work)
    with OutputArea(work):  # what a running `grade batch` holds
        with pytest.raises(BatchLocked):
            similarity_report(work)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


def grade(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*GRADE, *args], cwd=cwd, capture_output=True, text=True, timeout=180)


def assert_usage_error(done: subprocess.CompletedProcess, fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    assert any(fragment in line for line in lines), done.stderr


def test_cli_writes_the_report_and_rejects_bad_input(klass, tmp_path):
    from typer.testing import CliRunner

    from grader.batch.gradebook import row_from_result, write_summary
    from grader.cli import app

    batch, _, _, _ = klass
    work = tmp_path / "batch"
    shutil.copytree(batch, work)
    for name in (CSV_NAME, HTML_NAME):
        (work / name).unlink()
    rows = [row_from_result(p.name, json.loads((p / "result.json").read_text(encoding="utf-8")))
            for p in sorted(work.iterdir()) if (p / "result.json").is_file()]
    write_summary(rows, work / "summary.html", input_dir="in", engine="local", lang="ko")
    assert "similarity.html" not in (work / "summary.html").read_text(encoding="utf-8")
    done = grade("similarity", str(work), "--lang", "ko", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 pairs to look at" in done.stdout
    assert '<html lang="ko">' in (work / HTML_NAME).read_text(encoding="utf-8")
    # Rebuilt from the results as `grade review` does (in the language the results were written in),
    # now with the link and the count.
    summary = (work / "summary.html").read_text(encoding="utf-8")
    assert 'href="similarity.html"' in summary and "Similarity report" in summary and "pairs to look at: 3" in summary
    (tmp_path / "empty").mkdir()
    assert_usage_error(grade("similarity", str(tmp_path / "empty"), "-q", cwd=tmp_path), "not a batch folder")
    runner = CliRunner()
    for args, fragment in ((["nowhere"], "no such folder"), ([str(work), "--against", "nowhere"], "--against"),
                           ([str(work), "--lang", "fr"], "unknown language"), ([str(work), "--threshold", "7"], "")):
        result = runner.invoke(app, ["similarity", *args, "-q"])
        assert result.exit_code == 2 and fragment in result.output, (args, result.output)


def test_grade_batch_similarity_links_the_report_from_the_summary(klass, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import grader.batch.core
    from grader.batch.core import BatchSummary
    from grader.batch.gradebook import row_from_result, write_summary
    from grader.cli import app

    source, _, _, _ = klass
    out, given = tmp_path / "out", tmp_path / "in"
    given.mkdir()

    def fake_grade_batch(input_dir, out_dir, **kwargs):
        # What grade_batch leaves (without running notebooks): the class's results and a summary.
        shutil.copytree(source, out_dir, ignore=shutil.ignore_patterns("similarity.*", "summary.html"))
        rows = [row_from_result(p.name, json.loads((p / "result.json").read_text(encoding="utf-8")))
                for p in sorted(Path(out_dir).iterdir()) if (p / "result.json").is_file()]
        summary = write_summary(rows, Path(out_dir) / "summary.html", input_dir=str(input_dir), engine="local",
                                lang="en")
        assert "similarity.html" not in summary.read_text(encoding="utf-8")
        return BatchSummary(out_dir=Path(out_dir), engine="local", rows=rows, graded_now=[r.student for r in rows],
                            reused=[], ignored=["notes.txt (not a .zip, .ipynb or folder)"], layout="by-name",
                            gradebook=Path(out_dir) / "gradebook.csv", summary_html=summary, duration_s=1.0,
                            counts={"graded": len(rows), "rejected": 0, "error": 0, "incomplete": 0})

    monkeypatch.setattr(grader.batch.core, "grade_batch", fake_grade_batch)
    done = CliRunner().invoke(app, ["batch", str(given), "--out", str(out), "--similarity", "--lang", "en", "-q"])
    assert done.exit_code == 0, done.output
    summary = (out / "summary.html").read_text(encoding="utf-8")
    assert 'href="similarity.html"' in summary and "pairs to look at: 3" in summary
    assert "notes.txt" in summary  # the batch's own data (what it left out) is kept
    assert (out / CSV_NAME).is_file() and (out / HTML_NAME).is_file()


# --------------------------------------------------------------------------------------------
# in a browser
# --------------------------------------------------------------------------------------------


def test_the_report_opens_in_chromium_with_korean_text_and_no_request_leaving_it(klass, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium fonts-noto-cjk; scripts/setup.sh does)")
    batch, _, report, _ = klass
    page_path = tmp_path / HTML_NAME
    from grader.similarity.render import render_html

    page_path.write_text(render_html(report, "ko"), encoding="utf-8")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.lang") == "ko"
        text = page.inner_text("body")
        assert "유사도 보고서" in text and "판정이 아닙니다" in text and "copier" in text
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert images and all(complete and width > 0 for complete, width in images)
        page.click('a[href="#pair-2"]')  # the side-by-side view of a pair, without script
        assert page.evaluate("location.hash") == "#pair-2"
        assert page.locator("#pair-2 mark").count() > 0
        page.screenshot(path=str(tmp_path / "similarity.png"), full_page=False)
        shots = []
        for word in ("유사도표", "판정근거"):  # missing glyphs would all be the same box
            page.evaluate("""word => {
                const span = document.createElement('span');
                span.id = 'probe-text'; span.textContent = word; span.style.fontSize = '32px';
                document.getElementById('probe-text')?.remove();
                document.body.prepend(span);
            }""", word)
            shots.append(page.locator("#probe-text").screenshot())
        browser.close()
    assert requests == [page_path.as_uri()], requests  # nothing but the page itself
    assert shots[0] != shots[1], "Korean text is drawn as missing-glyph boxes: install fonts-noto-cjk"
