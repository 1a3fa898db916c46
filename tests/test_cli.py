"""The `grade` command line: exit codes and one-line reasons (no traceback) for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

GRADE = [sys.executable, "-m", "grader.cli"]


def grade(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*GRADE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_one_line_rejection(done: subprocess.CompletedProcess, *fragments: str) -> str:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_corrupt_zip_is_rejected_with_exit_2_and_a_result_file(tmp_path):
    bad = tmp_path / "submit.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    done = grade(str(bad), "--out", "out", "-q", cwd=tmp_path)
    assert_one_line_rejection(done, "rejected")
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["status"] == "rejected" and result["reason"]
    assert (tmp_path / "out" / "feedback.html").is_file()


def test_a_file_name_that_is_not_utf8_is_graded_or_rejected_never_a_crash(tmp_path):
    """Names from other systems (LMS downloads): the path is written as printable text."""
    bad = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffname.zip"))
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    done = subprocess.run([*GRADE, os.fsencode(str(bad)), "--out", "out", "-q"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert_one_line_rejection(done, "rejected")
    result = json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "rejected"


def test_an_empty_zip_is_rejected(tmp_path):
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    assert_one_line_rejection(grade(str(empty), "-q", cwd=tmp_path), "rejected")


def test_zip_slip_is_rejected_and_writes_nothing_outside(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("self_attention_optimized.ipynb", "{}")
        archive.writestr("../../escaped.py", "print('owned')")
    done = grade(str(evil), "--out", "out", "-q", cwd=tmp_path)
    assert_one_line_rejection(done, "rejected")
    assert not list(tmp_path.parent.glob("escaped.py")) and not (tmp_path / "escaped.py").exists()


def test_a_zip_bomb_is_refused_in_seconds(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("hw/self_attention_optimized.ipynb", "w", force_zip64=True) as handle:
            block = b"\0" * 2**20
            for _ in range(1024):  # 1 GiB of zeros, about 1 MB compressed
                handle.write(block)
    done = grade(str(bomb), "-q", cwd=tmp_path)
    assert_one_line_rejection(done, "rejected")


def test_a_wrong_notebook_name_is_rejected_with_the_expected_name(tmp_path):
    folder = tmp_path / "hw"
    folder.mkdir()
    (folder / "notes.txt").write_text("no notebook here", encoding="utf-8")
    line = assert_one_line_rejection(grade(str(folder), "-q", cwd=tmp_path), "rejected")
    assert ".ipynb" in line


def test_broken_notebook_json_is_rejected(tmp_path):
    nb = tmp_path / "self_attention_optimized.ipynb"
    nb.write_text('{"cells": [', encoding="utf-8")
    assert_one_line_rejection(grade(str(nb), "-q", cwd=tmp_path), "rejected")


@pytest.mark.parametrize("args, fragment", [
    (["--assignment", "w9-nothing"], "unknown assignment"),
    (["--sandbox", "chroot"], "unknown sandbox"),
    (["--profile", "huge"], "unknown profile"),
])
def test_usage_errors_exit_2(tmp_path, args, fragment):
    nb = tmp_path / "self_attention_optimized.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    done = grade(str(nb), "-q", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr.lower() and "Traceback" not in done.stderr


def test_a_missing_path_exits_2(tmp_path):
    assert_one_line_rejection(grade(str(tmp_path / "nope.zip"), cwd=tmp_path), "no such file")


def test_validate_rubric_reports_dotted_paths(tmp_path):
    rubric = Path(__file__).resolve().parents[1] / "rubrics" / "w6-self-attention.yaml"
    text = rubric.read_text(encoding="utf-8").replace('    hint:\n      en: "Where the mask', '    hnt:\n      en: "Where the mask', 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text, encoding="utf-8")
    done = grade("validate-rubric", str(broken), cwd=tmp_path)
    assert done.returncode == 2
    assert "items.1.hnt: Extra inputs are not permitted" in done.stderr
    ok = grade("validate-rubric", str(rubric), cwd=tmp_path)
    assert ok.returncode == 0 and "30 points + 5 bonus" in ok.stdout
