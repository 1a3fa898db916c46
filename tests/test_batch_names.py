"""Names are data: student ids from file and folder names of any bytes (grader.batch.names).

Property-based (Hypothesis, a bounded number of examples, derandomized so CI sees the same
cases every run): names from arbitrary bytes and Unicode, with controls, line and paragraph
separators, bidirectional overrides, look-alikes, `..`, leading dashes and very long names.
Every name gets a printable, unique, reversible id; discovery gives every submission a row; the
writers (gradebook.csv, summary.html, the review file, result.json) stay valid for any id and the
exported review file parses and applies. These run on discover() and on synthetic result folders;
two real batches (rejected-in-a-second zips, and one real notebook) run end to end.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
import os
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from grader.batch import grade_batch
from grader.batch import core as batch_core
from grader.batch import local_pool
from grader.batch.discover import discover
from grader.batch.gradebook import _cell, gradebook_csv, render_summary_html, row_from_result
from grader.batch.names import MAX_ID_BYTES, RESERVED_NAMES, escape_name, student_id, unescape
from grader.pipeline import GradeOptions, rubrics_dir
from grader.review import apply_batch_reviews, parse_scores, template_text
from grader.rubric import load_rubric, score

from tests.conftest import SOLUTION

ASSIGNMENT = "w6-self-attention"
FAST_OPTIONS = GradeOptions(sandbox="local", cell_timeout_s=15, timeout_s=120, memory_mb=3072, seed=11, lang="en")
NAME_SETTINGS = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
# Slower examples (files on disk, reports rendered): fewer of them.
FOLDER_SETTINGS = settings(max_examples=15, derandomize=True, deadline=None, database=None,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# What a hostile name is made of, beside arbitrary bytes and text.
HOSTILE_PIECES = ["\x7f", "\x85", "\x9b", "\u2028", "\u2029", "\u202e", "\u200b", "\ufeff", "\x00", "\n", "\r",
                  "\t", "\x1b[31m", "%", "%41", "..", ".", "-", "--rf", " ", "\xa0", "\u3000", "а", "ｋ", "k\u0301",
                  "=HYPERLINK(1)", "<script>", "\"", "'", "\\", ":", "#", "? ", "- ", "null", "yes", "1e3",
                  "gradebook.csv", "summary.html", "김민수", "\U0001f600", "~", "*", "&amp;"]
hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=6)),
                        min_size=1, max_size=8).map("".join)
long_text = st.builds(lambda piece, n: piece * n, st.sampled_from(["a", "김", "\x7f", "%", " a", "\u2028"]),
                      st.integers(min_value=60, max_value=260))
any_name = st.one_of(st.binary(min_size=1, max_size=255), hostile_text.filter(bool), long_text)


def nfc_bytes(name: str | bytes) -> bytes:
    text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
    return unicodedata.normalize("NFC", text).encode("utf-8", "surrogateescape")


def assert_usable_id(student: str) -> None:
    encoded = student.encode("utf-8")  # never a surrogate: UTF-8 holds it (JSON, CSV, HTML, YAML)
    assert 0 < len(encoded) <= MAX_ID_BYTES
    assert not student.startswith((".", " ")) and not student.endswith(" ") and "/" not in student
    assert student.casefold() not in RESERVED_NAMES
    for ch in student:
        assert ch == " " or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"), \
            (student, ch)


# ------------------------------------------------------------------------------------------
# the id mapping
# ------------------------------------------------------------------------------------------


@NAME_SETTINGS
@given(any_name)
@example(b"bad\xffname")
@example("..")
@example("-rf")
@example("gradebook.csv")
@example("x\u2028y\x85z\x7f")
@example(b"\xff" * 255)
def test_every_name_gets_a_printable_bounded_reversible_id(name):
    student = student_id(name)
    assert_usable_id(student)
    assert student_id(name) == student  # the same name, the same id: results are keyed by it
    if len(escape_name(name).encode("utf-8")) <= MAX_ID_BYTES:
        assert unescape(student) == nfc_bytes(name)  # reversible
    else:
        assert student[-13] == "~"  # cut, with a hash of the name; the record keeps the raw name


@NAME_SETTINGS
@given(any_name, any_name)
@example("kim", "kim ")
@example("kim%20", "kim ")
@example("gradebook.csv", "gradebook%2Ecsv")
@example(".x", "%2Ex")
@example("a" * 300, "a" * 301)
@example(b"bad\xffname", "bad\udcffname")
@example("k\u0301im", "k\u0301im\u200b")
def test_different_names_get_different_ids(a, b):
    if nfc_bytes(a) != nfc_bytes(b):
        assert student_id(a) != student_id(b)
    else:
        assert student_id(a) == student_id(b)  # NFC: the same student whichever machine unpacked it


# ------------------------------------------------------------------------------------------
# discovery
# ------------------------------------------------------------------------------------------

# File names (bytes, no "/" or NUL) with what makes them a submission.
entry_name = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda b: b"/" not in b and b"\0" not in b),
    hostile_text.map(lambda s: s.replace("/", "").replace("\0", "").encode("utf-8", "surrogateescape")[:200])
    .filter(bool),
)
entry = st.tuples(entry_name, st.sampled_from([b".zip", b".ipynb", b".ZIP", b"", b".txt"]))


@FOLDER_SETTINGS
@given(st.lists(entry, min_size=1, max_size=7, unique_by=lambda e: e[0] + e[1]))
@example([(b"bad\xffname", b".zip"), (b"kim", b".zip"), (b"kim", b""), (b"-rf", b".ipynb"), (b".hidden", b".zip")])
def test_discovery_gives_every_submission_a_row_with_a_folder_of_its_own(entries):
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        made = set()
        for stem, suffix in entries:
            path = os.path.join(os.fsencode(inp), stem + suffix)
            if (stem + suffix) in (b".", b"..") or stem + suffix in made:
                continue
            made.add(stem + suffix)
            if suffix:
                with open(path, "wb") as fh:
                    fh.write(b"PK\x03\x04 not a zip")
            else:
                os.mkdir(path)
        submissions = {n for n in made if not n.startswith(b".") and n.lower() != b"__macosx"
                       and (n.lower().endswith((b".zip", b".ipynb")) or os.path.isdir(os.path.join(os.fsencode(inp), n)))}
        if not submissions:
            with pytest.raises(Exception, match="no submissions found"):
                discover(inp)
            return
        found = discover(inp)
        students = [e.student for e in found.entries]
        assert len(set(students)) == len(students)
        covered = [os.fsencode(p.name) for e in found.entries for p in (e.path, *e.others)]
        assert sorted(covered) == sorted(submissions)  # every submission is one student's row
        out = Path(tmp) / "out"
        out.mkdir()
        for e in found.entries:
            assert_usable_id(e.student)
            (out / e.student).mkdir()  # usable as a folder name, each its own
            assert (e.problem is not None) == bool(e.others)
        # Everything else is left out with a line that names it printably.
        for line in found.ignored:
            line.encode("utf-8")


# ------------------------------------------------------------------------------------------
# the writers, on synthetic results
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def rubric():
    return load_rubric(rubrics_dir() / f"{ASSIGNMENT}.yaml")


def graded_result(student: str) -> dict:
    """A graded result of the real rubric: automatic items passed, manual items pending."""
    rubric_ = rubric()
    checks = []
    for item in rubric_.items:
        manual = item.kind == "manual"
        checks.append({
            "id": item.id, "title": item.id, "criterion": item.criterion,
            "status": "pending" if manual else "pass", "score": 0.0 if manual else float(item.points),
            "max_score": float(item.points), "visibility": item.visibility, "bonus": item.bonus,
            "message": "ok", "hint": "", "cell": None,
            "answer": f"the answer of {student}\u2028with a separator\x85and a NEL" if manual else None,
            "guidance": "full marks when right" if manual else None,
        })
    result = {"assignment": ASSIGNMENT, "title": "Optimised self-attention", "status": "graded", "reason": None,
              "checks": checks, "student": student, "lang": "en",
              "submission": {"source": "x", "sha256": "abc", "notebook": "n.ipynb", "notes": []},
              "execution": {"status": "completed", "problems": []}, "duration_s": 1.0, "grader_version": "0.1.0"}
    result.update(score(rubric_, checks))
    return result


def manual_items() -> list[str]:
    return [item.id for item in rubric().items if item.kind == "manual"]


def fill_every_score(text: str, points: float) -> str:
    return "\n".join(line.replace("score: null", f"score: {points}") if line.strip() == "score: null" else line
                     for line in text.splitlines()) + "\n"


def review_round_trip(out: Path, folders: list[str]) -> None:
    """Export the review file of batch `out`, fill it in as a TA would, apply it: every folder's
    manual items are reviewed."""
    text, count = template_text(out)
    assert count == len(folders) * len(manual_items())
    data = yaml.safe_load(text)
    assert sorted(data["results"]) == sorted(folders)
    scores_file = out.parent / "scores.yaml"
    scores_file.write_text(fill_every_score(text, 1), encoding="utf-8")
    reviewer, scores = parse_scores(scores_file)
    assert sorted(scores) == sorted(folders)
    done = apply_batch_reviews(out, scores, "lee-ta", via="file")
    assert sorted(done) == sorted(folders)
    for folder in folders:
        result = json.loads((out / folder / "result.json").read_text(encoding="utf-8"))
        reviewed = [c for c in result["checks"] if c["id"] in manual_items()]
        assert reviewed and all(c["status"] == "pass" and c["score"] == 1 for c in reviewed)


@FOLDER_SETTINGS
@given(st.lists(any_name, min_size=1, max_size=3))
@example([b"bad\xffname", "a\x7fb", "x\u2028y", "\x85", "-rf", "=1+1", "null"])
def test_gradebook_summary_json_and_review_file_stay_valid_for_any_id(names):
    students = sorted({student_id(n) for n in names})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        rows = []
        for i, student in enumerate(students):
            folder = out / student
            folder.mkdir(parents=True)
            if i % 2 == 0:
                result = graded_result(student)
            else:  # a rejected row: the summary lists it by name
                result = {"status": "rejected", "reason": f"{student}.zip is damaged", "student": student}
            batch_core._write_json(folder / "result.json", result)
            assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["student"] == student
            rows.append(row_from_result(student, result))

        # CSV: one row per student, the id as it is (a formula-like one behind a quote).
        parsed = list(csv.DictReader(io.StringIO(gradebook_csv(rows))))
        assert [r["student"] for r in parsed] == [_cell(s) for s in students]
        assert all(_cell(s) == s or _cell(s) == "'" + s for s in students)

        # HTML: every listed id escaped, nothing active.
        html = render_summary_html(rows, input_dir="in", engine="local", lang="en")
        assert "<script" not in html
        for row in rows:
            if row.status != "graded":
                assert str(escape(row.student)) in html

        # YAML: the review file parses, names exactly the graded folders, and applies.
        graded = [s for i, s in enumerate(students) if i % 2 == 0]
        review_round_trip(out, graded)


@FOLDER_SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=120).filter(
    lambda b: b"/" not in b and b"\0" not in b and not b.startswith(b".")), min_size=1, max_size=3, unique=True))
@example([b"a\x7fb", b"x\xe2\x80\xa8y", b"\xc2\x85", b"bad\xffname", b"\xef\xbb\xbfbom"])
def test_a_review_file_of_folders_with_raw_hostile_names_round_trips(raw_names):
    """Result folders named by an older batch (the raw names, not ids): still one valid file."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        folders = []
        for raw in raw_names:
            name = os.fsdecode(raw)
            (out / name).mkdir()
            (out / name / "result.json").write_text(json.dumps(graded_result("x"), ensure_ascii=True),
                                                    encoding="utf-8")
            folders.append(name)
        review_round_trip(out, folders)


# ------------------------------------------------------------------------------------------
# real batches with hostile names
# ------------------------------------------------------------------------------------------

HOSTILE_ZIPS = [b"bad\xffname.zip", b"a\x7fb.zip", "x\u2028y.zip".encode(), b"\xc2\x85nel.zip", b"-rf.zip",
                b"gradebook.csv.zip", b"=HYPERLINK(1).zip", "김민수.zip".encode(), b"w" * 250 + b".zip",
                b"kim.zip"]


def make_input(inp: Path, names: list[bytes]) -> None:
    inp.mkdir(parents=True)
    for raw in names:
        with open(os.path.join(os.fsencode(inp), raw), "wb") as fh:
            fh.write(b"PK\x03\x04 not really a zip: " + raw)
    os.mkdir(os.path.join(os.fsencode(inp), b"kim"))  # a second submission for kim


def test_a_batch_of_hostile_names_finishes_with_a_row_for_every_student(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_input(inp, HOSTILE_ZIPS)
    summary = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    expected = sorted({student_id(raw[:-4], raw=raw) for raw in HOSTILE_ZIPS}, key=lambda s: (s.casefold(), s))
    assert [r.student for r in summary.rows] == expected
    rows = {r.student: r for r in summary.rows}
    assert rows["bad%FFname"].status == "rejected" and "bad%FFname.zip" in rows["bad%FFname"].reason
    assert rows["kim"].status == "rejected" and "several submissions give the student id kim" in rows["kim"].reason
    assert all(r.status == "rejected" for r in summary.rows)
    # Every output format holds every id: CSV and the result of each student.
    with open(out / "gradebook.csv", encoding="utf-8-sig", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(expected)
    for student in expected:
        result = json.loads((out / student / "result.json").read_text(encoding="utf-8"))
        assert result["student"] == student
        assert result["status"] == "rejected"
    result = json.loads((out / "bad%FFname" / "result.json").read_text(encoding="utf-8"))
    assert base64.b64decode(result["student_name_b64"]) == b"bad\xffname.zip"  # the raw name, for the record
    assert (out / "summary.html").is_file()
    # The same command again: every row kept as it is, nothing crashes.
    again = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    assert sorted(again.reused) == sorted(expected) and again.graded_now == []
    assert [r.student for r in again.rows] == expected


def test_whatever_goes_wrong_with_one_student_is_that_students_row(tmp_path, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_input(inp, [b"ann.zip", b"bob.zip", b"cho.zip", b"dan.zip"])
    real_hash, real_start, real_read = batch_core.content_sha256, local_pool.GradeProcess.start, batch_core._read_result

    def content_sha256(path):
        if path.name == "ann.zip":
            raise PermissionError(13, "Permission denied")
        return real_hash(path)

    def start(self):
        if "bob.zip" in self.argv[4]:
            raise OSError(24, "Too many open files")
        return real_start(self)

    def read_result(folder):
        if folder.parent.name.startswith("cho."):
            raise RuntimeError("a result that cannot be taken in")
        return real_read(folder)

    monkeypatch.setattr(batch_core, "content_sha256", content_sha256)
    monkeypatch.setattr(local_pool.GradeProcess, "start", start)
    monkeypatch.setattr(batch_core, "_read_result", read_result)
    summary = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    rows = {r.student: r for r in summary.rows}
    assert sorted(rows) == ["ann", "bob", "cho", "dan", "kim"]
    assert rows["ann"].status == "error" and "could not be read: Permission denied" in rows["ann"].reason
    assert rows["bob"].status == "error" and "could not be started" in rows["bob"].reason
    assert rows["cho"].status == "error" and "could not store the result" in rows["cho"].reason
    assert rows["dan"].status == "rejected"  # graded as usual: dan.zip is damaged
    assert (out / "gradebook.csv").is_file() and (out / "summary.html").is_file()


@pytest.mark.notebook
def test_a_real_submission_under_a_name_that_is_not_utf8_is_graded_and_reviewable(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    archive = os.path.join(os.fsencode(inp), b"bad\xffname.zip")
    with zipfile.ZipFile(os.fsdecode(archive), "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(SOLUTION.rglob("*")):
            zf.write(p, Path("hw6") / p.relative_to(SOLUTION))
    for raw in (b"a\x7fb.zip", "x\u2028y.zip".encode(), b"-rf.zip", b"ok.zip"):
        with open(os.path.join(os.fsencode(inp), raw), "wb") as fh:
            fh.write(b"PK\x03\x04 damaged")
    summary = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    rows = {r.student: r for r in summary.rows}
    assert sorted(rows) == sorted(["bad%FFname", "a%7Fb", "x%E2%80%A8y", "-rf", "ok"])
    assert rows["bad%FFname"].status == "graded" and rows["bad%FFname"].execution == "completed"
    result = json.loads((out / "bad%FFname" / "result.json").read_text(encoding="utf-8"))
    assert result["submission"]["source"].endswith("bad\\xffname.zip")  # printable; the bytes beside it
    assert base64.b64decode(result["submission"]["source_b64"]).endswith(b"bad\xffname.zip")
    record = json.loads((out / "bad%FFname" / "record.json").read_text(encoding="utf-8"))
    assert os.fsencode(record["source"]) == archive  # the regrade record finds the original
    review_round_trip(out, ["bad%FFname"])
