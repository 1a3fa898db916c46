"""Intake rejections are localized like every other message: result.json (and so the feedback) and
the CLI's one stderr line are in the report's language, while `str(exc)` stays English."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grader.errors import GraderError, SubmissionRejected, UnsafeArchive
from grader.i18n import Message, catalog
from grader.intake import intake
from grader.pipeline import GradeOptions, grade_submission

REPO = Path(__file__).resolve().parents[1]
HANGUL = re.compile("[가-힣]")
NB = "self_attention_optimized.ipynb"


def corrupt_zip(folder: Path) -> Path:
    path = folder / "submit.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    return path


def zip_slip(folder: Path) -> Path:
    path = folder / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(NB, "{}")
        archive.writestr("../../escaped.py", "print('owned')")
    return path


def wrong_notebook_name(folder: Path) -> Path:
    path = folder / "hw.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hw/mine.ipynb", json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                      "nbformat_minor": 5}))
    return path


# builder, the English start of the reason, a Korean fragment, a parameter shown in both languages
CASES = {
    "corrupt zip": (corrupt_zip, "submit.zip looks like a zip but is damaged or incomplete",
                    "손상되었거나 불완전합니다", "submit.zip"),
    "zip slip": (zip_slip, "the zip entry ../../escaped.py points outside the archive (..)",
                 "압축 파일 밖을 가리킵니다", "../../escaped.py"),
    "wrong notebook name": (wrong_notebook_name, "no notebook has an assignment's name (found hw/mine.ipynb",
                            "과제 이름과 일치하는 노트북이 없습니다", "hw/mine.ipynb"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_rejection_reason_is_in_the_reports_language(tmp_path, case):
    build, english, korean, param = CASES[case]
    source = build(tmp_path)
    reasons = {}
    for lang in ("ko", "en"):
        out = tmp_path / f"out-{lang}"
        returned = grade_submission(source, out, GradeOptions(lang=lang))
        result = json.loads((out / "result.json").read_text(encoding="utf-8"))
        assert result["status"] == "rejected" and result["lang"] == lang
        assert returned["reason"] == result["reason"]
        reasons[lang] = result["reason"]
    assert korean in reasons["ko"] and param in reasons["ko"], reasons["ko"]
    assert reasons["en"].startswith(english), reasons["en"]
    assert not HANGUL.search(reasons["en"]), reasons["en"]
    # the student reads it in the feedback page
    assert korean in (tmp_path / "out-ko" / "feedback.html").read_text(encoding="utf-8")


def _grade_cli(*args: str, cwd: Path, lang_env: str = "en") -> subprocess.CompletedProcess:
    env = {**os.environ, "GRADER_LANG": lang_env, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "grader.cli", "submit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def _one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_the_cli_prints_the_rejection_in_the_language_asked_for(tmp_path):
    source = corrupt_zip(tmp_path)
    korean = _one_line(_grade_cli(str(source), "--out", "ko", "-q", "--lang", "ko", cwd=tmp_path))
    assert korean.startswith("grade: 제출물이 거부되었습니다: submit.zip은(는) zip 파일처럼 보이지만 손상"), korean
    english = _one_line(_grade_cli(str(source), "--out", "en", "-q", "--lang", "en", cwd=tmp_path))
    assert english.startswith("grade: rejected: submit.zip looks like a zip but is damaged"), english
    assert not HANGUL.search(english)
    # the stderr line says what result.json says
    reason = json.loads((tmp_path / "ko" / "result.json").read_text(encoding="utf-8"))["reason"]
    assert korean.endswith(reason)


def test_the_cli_uses_the_default_language_without_lang(tmp_path):
    source = zip_slip(tmp_path)
    line = _one_line(_grade_cli(str(source), "--out", "out", "-q", cwd=tmp_path, lang_env="ko"))
    assert line.startswith("grade: 제출물이 거부되었습니다: ") and "압축 파일 밖을 가리킵니다" in line, line
    assert json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))["lang"] == "ko"


def test_str_of_the_exception_stays_english_and_render_localizes(tmp_path):
    with pytest.raises(UnsafeArchive) as caught:
        intake(zip_slip(tmp_path), tmp_path / "dest")
    exc = caught.value
    assert isinstance(exc, SubmissionRejected) and isinstance(exc, GraderError)
    assert str(exc) == ("the zip entry ../../escaped.py points outside the archive (..): zip your "
                        "assignment folder itself, without '..' in any name")
    assert exc.render("en") == str(exc)
    assert isinstance(exc.message, Message) and exc.message.id == "intake.dotdot"
    korean = exc.render("ko")
    assert HANGUL.search(korean) and "../../escaped.py" in korean
    # survives a trip between processes with its Message
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is UnsafeArchive and str(again) == str(exc) and again.render("ko") == korean
    # a plain string is still accepted, the same in every language
    plain = SubmissionRejected("just text")
    assert str(plain) == "just text" and plain.render("ko") == "just text"


def _msg_calls() -> list[tuple[str, str, set[str]]]:
    """(file, id, keyword names) of every msg("intake....", ...) call in the grader."""
    calls = []
    for path in (REPO / "grader").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "msg"
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith("intake.")):
                calls.append((path.name, node.args[0].value, {k.arg for k in node.keywords}))
    return calls


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_every_intake_message_is_in_both_catalogs_with_the_parameters_the_code_passes():
    en, ko = catalog("en"), catalog("ko")
    calls = _msg_calls()
    assert len({msg_id for _, msg_id, _ in calls}) >= 40  # the intake's rejections are all messages
    for where, msg_id, params in calls:
        assert msg_id in en and msg_id in ko, (where, msg_id)
        assert _placeholders(en[msg_id]) == params, (where, msg_id, params)
        assert _placeholders(ko[msg_id]) == params, (where, msg_id, params)
        assert HANGUL.search(ko[msg_id]), msg_id
    intake_ids = {k for k in en if k.startswith("intake.")}
    assert intake_ids == {k for k in ko if k.startswith("intake.")}
    assert intake_ids == {msg_id for _, msg_id, _ in calls}  # no unused or missing entries


def test_the_intake_raises_no_plain_english_text():
    for path in (REPO / "grader" / "intake").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(SubmissionRejected|UnsafeArchive)\(\s*f?\"", text), path.name
        assert not re.search(r"_corrupt\([^,]+,\s*f?\"", text), path.name
