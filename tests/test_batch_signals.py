"""One result however a notebook was graded: alone, in a batch forked from the preload server,
in a batch of fresh interpreters (GRADER_BATCH_PRELOAD=0); the docker batch is in
tests/test_docker.py and uses the same submission and expectations.

The notebook is the case that used to differ: a cell that ignores SIGINT and SIGTERM and sleeps
forever. Graded alone it is "timed out in cell 3"; in a preloaded batch its grading process was
killed by SIGPIPE (the preload child had SIGPIPE at its default, where every Python process
ignores it, and `grade`'s thread that writes the probe into the sandbox's stdin got EPIPE when the
total timeout killed the sandbox), an error row without a result.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from tests.conftest import SOLUTION

NOTEBOOK = "self_attention_optimized.ipynb"
HANG = ("import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True:\n"
        "    time.sleep(1)")
HANG_INDEX = 2          # after the title and the parameters cell: the student's cell 3
HANG_CELL = HANG_INDEX + 1
# Short limits: the cell's per-cell timeout comes first (its interrupt is ignored), then the
# notebook's total timeout stops it. Seconds, not minutes, and no cell before it is slow.
LIMITS = ["--cell-timeout", "4", "--timeout", "12", "--memory", "3072", "--seed", "11", "--lang", "en"]
EXPECTED_REASON = f"the notebook ran past its time limit (notebook timed out in cell {HANG_CELL})"


def hanging_submission(dest: Path) -> Path:
    """The reference solution with the signal-ignoring, sleeping cell as the student's cell 3."""
    shutil.copytree(SOLUTION, dest)
    nb = nbformat.read(str(dest / NOTEBOOK), as_version=4)
    nb.cells.insert(HANG_INDEX, nbformat.v4.new_code_cell(HANG))
    nbformat.write(nb, str(dest / NOTEBOOK))
    return dest


def verdict(result: dict) -> dict:
    """What must not depend on how the submission was graded."""
    execution = result.get("execution") or {}
    return {
        "status": result.get("status"), "reason": result.get("reason"),
        "execution": execution.get("status"),
        "problems": [(p.get("kind"), p.get("cell"), p.get("message")) for p in execution.get("problems") or []],
        "score": result.get("score"), "bonus": result.get("bonus"),
        "checks": [(c.get("id"), c.get("status"), c.get("score")) for c in result.get("checks") or []],
    }


def gradebook_row(out: Path, student: str) -> dict:
    with open(out / "gradebook.csv", encoding="utf-8-sig", newline="") as fh:
        return next(row for row in csv.DictReader(fh) if row["student"] == student)


def assert_timed_out_in_the_hanging_cell(result: dict) -> None:
    assert result["status"] == "graded", result.get("reason")
    assert result["execution"]["status"] == "timeout"
    assert [(p["kind"], p["cell"]) for p in result["execution"]["problems"]] == [("timeout", HANG_CELL)]


def _signal_masks(code: str) -> dict[str, str]:
    """SigIgn and SigCgt (ignored and caught signals) of a fresh interpreter that ran `code`."""
    probe = code + textwrap.dedent("""
        for line in open("/proc/self/status"):
            if line.startswith(("SigIgn:", "SigCgt:")):
                print(line.strip())
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return dict(line.split(":\t") for line in done.stdout.splitlines())


def test_the_preloaded_grading_process_starts_with_a_fresh_interpreters_signals():
    fresh = _signal_masks("")
    # What a server (or what it imported) may have changed, all undone for the child.
    restored = _signal_masks(textwrap.dedent("""
        import signal
        from grader.batch.preload import fresh_interpreter_signals
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)
        fresh_interpreter_signals()
    """))
    assert restored == fresh
    # A fresh interpreter ignores SIGPIPE (bit 13) and SIGXFSZ (bit 25), and catches SIGINT.
    ignored = int(fresh["SigIgn"], 16)
    assert ignored & (1 << 12) and ignored & (1 << 24)


@pytest.mark.notebook
def test_a_cell_that_ignores_signals_and_hangs_gets_the_same_result_alone_and_in_both_batches(tmp_path):
    inp = tmp_path / "in"
    hanging_submission(inp / "hang")
    env = dict(os.environ)
    fresh_env = dict(env, GRADER_BATCH_PRELOAD="0")
    runs = {
        "alone": ([sys.executable, "-m", "grader.cli", "submit", str(inp / "hang"), "--out", str(tmp_path / "alone"),
                   "-q", "--sandbox", "local", *LIMITS], env),
        "preload": ([sys.executable, "-m", "grader.cli", "batch", str(inp), "--out", str(tmp_path / "preload"),
                     "--workers", "1", "-q", "--sandbox", "local", *LIMITS], env),
        "fresh": ([sys.executable, "-m", "grader.cli", "batch", str(inp), "--out", str(tmp_path / "fresh"),
                   "--workers", "1", "-q", "--sandbox", "local", *LIMITS], fresh_env),
    }
    # Side by side: the notebook sleeps, so three of them cost little more than one.
    procs = {name: subprocess.Popen(argv, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (argv, run_env) in runs.items()}
    outputs = {name: proc.communicate(timeout=300) for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, outputs[name][1])

    results = {"alone": json.loads((tmp_path / "alone" / "result.json").read_text(encoding="utf-8"))}
    for name in ("preload", "fresh"):
        results[name] = json.loads((tmp_path / name / "hang" / "result.json").read_text(encoding="utf-8"))
        assert gradebook_row(tmp_path / name, "hang")["reason"] == EXPECTED_REASON
    assert_timed_out_in_the_hanging_cell(results["alone"])
    assert verdict(results["preload"]) == verdict(results["alone"])
    assert verdict(results["fresh"]) == verdict(results["alone"])
    assert (tmp_path / "preload" / "hang" / "feedback.html").is_file()
