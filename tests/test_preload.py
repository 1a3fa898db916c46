"""The preload server (grader.batch.preload): `grade submit` forked from an interpreter that has
already imported torch and the grader. Fast: the submissions here are rejected at intake, so no
notebook runs; the batch tests (tests/test_batch.py) run real notebooks through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from grader.batch.preload import PreloadedChild, process_alive
from grader.batch.worker import GradeProcess, grade_argv
from grader.pipeline import GradeOptions


def corrupt_zip(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


def test_a_preloaded_grade_runs_with_the_given_folder_environment_and_log(tmp_path):
    submission = corrupt_zip(tmp_path / "kim.zip")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, GRADER_LANG="ko")
    process = GradeProcess(grade_argv(submission, Path("out"), GradeOptions(sandbox="local")),
                           log_path=tmp_path / "grade.log", limit_s=120, cwd=work, env=env)
    # grade_argv makes --out absolute against the caller's folder; give a relative one to see
    # that the child runs in `work`.
    process.argv[process.argv.index("--out") + 1] = "out"
    process.start()
    assert isinstance(process.proc, PreloadedChild)
    outcome = process.wait()
    assert outcome.returncode == 2  # rejected, as `grade submit` exits for a corrupt zip
    result = json.loads((work / "out" / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "rejected" and result["lang"] == "ko"
    assert "kim.zip" in (tmp_path / "grade.log").read_text(encoding="utf-8")  # its stderr line


def test_the_server_and_its_children_end_with_the_process_that_started_them(tmp_path):
    submission = corrupt_zip(tmp_path / "kim.zip")
    client = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from grader.batch import preload
        child = preload.PreloadedChild.start(
            [sys.executable, "-m", "grader.cli", "submit", {str(submission)!r}, "--out", {str(tmp_path / "out")!r}, "-q"],
            log_path=Path({str(tmp_path / "grade.log")!r}), cwd=None, env=None, cpus=None)
        child.wait(timeout=120)
        print(preload._server.proc.pid, child.returncode, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", client], stdout=subprocess.PIPE, text=True)
    try:
        server_pid, returncode = (int(v) for v in proc.stdout.readline().split())
        assert returncode == 2 and process_alive(server_pid)
    finally:
        proc.kill()  # SIGKILL: no clean-up code of the client runs
        proc.wait()
    deadline = time.monotonic() + 20
    while process_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(server_pid), "the preload server outlived its client"


def test_without_preload_each_grade_is_a_fresh_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_BATCH_PRELOAD", "0")
    process = GradeProcess(grade_argv(corrupt_zip(tmp_path / "kim.zip"), tmp_path / "out", GradeOptions()),
                           log_path=tmp_path / "grade.log", limit_s=120)
    process.start()
    assert isinstance(process.proc, subprocess.Popen)
    assert process.wait().returncode == 2
