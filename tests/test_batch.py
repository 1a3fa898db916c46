"""`grade batch`: discovery, resumable results, the gradebook and summary, the local pool and Ray.

Fast tests (no notebook run) come first. The `notebook` tests grade real submissions (copies of
the reference solution, some with a bad cell appended) in small batches; the `ray` tests also
start a real Ray cluster on loopback (grader.batch.ray_local), which only they stop.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.batch import BatchInputError, grade_batch
from grader.batch.core import default_workers, options_key
from grader.batch.discover import discover
from grader.batch.gradebook import gradebook_csv, render_summary_html, row_from_result
from grader.batch.preload import PRELOAD_ENV, process_alive
from grader.batch.ray_engine import safe_relative_path
from grader.batch.state import KEY_NAME, TMP_NAME, content_sha256, read_key
from grader.batch.worker import gpu_slots, grade_argv, visible_gpus
from grader.pipeline import GradeOptions

from tests.conftest import SOLUTION
from tests.seeded_bugs import make_buggy_notebook

NOTEBOOK = "self_attention_optimized.ipynb"
# The command as the lead registers it (`app.command("batch")(batch)`), on an app of our own.
LAUNCHER = ("import typer\nfrom grader.batch.command import batch\n"
            "app = typer.Typer(add_completion=False)\napp.command('batch')(batch)\n"
            "@app.callback()\ndef main() -> None:\n    pass\napp()\n")
# Small limits: a loop or a bomb costs seconds, not minutes. --seed: identical probe inputs.
FAST = ["--sandbox", "local", "--cell-timeout", "15", "--timeout", "120", "--memory", "3072", "--seed", "11"]
FAST_OPTIONS = GradeOptions(sandbox="local", cell_timeout_s=15, timeout_s=120, memory_mb=3072, seed=11)


def run_batch(*args: str, cwd: Path, timeout_s: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCHER, "batch", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout_s)


def read_gradebook(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def solution_copy(dest: Path, extra_cell: str | None = None) -> Path:
    """The reference solution copied to `dest`, with `extra_cell` appended as a code cell."""
    shutil.copytree(SOLUTION, dest)
    if extra_cell is not None:
        nb = nbformat.read(str(dest / NOTEBOOK), as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(extra_cell))
        nbformat.write(nb, str(dest / NOTEBOOK))
    return dest


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, Path(folder.name) / p.relative_to(folder))
    return archive


def corrupt_zip(path: Path, text: str = "not really a zip") -> Path:
    path.write_bytes(b"PK\x03\x04 " + text.encode())
    return path


def grade_processes(fragment: str) -> list[int]:
    """Pids of grading processes whose command line or working folder contains `fragment`: a
    `grader.cli submit` interpreter, or one forked by the preload server (named `grade`, in the
    attempt's scratch folder: OUT/.tmp/<student>.<hex>, or grader-ray-<student>-* on a Ray node)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if (("grader.cli" in text and " submit " in text) or comm == "grade") and (fragment in text or fragment in cwd):
            found.append(int(entry))
    return found


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def ray_worker_of(pid: int) -> int:
    """The Ray worker process above `pid` (its parent, or its preload server's parent)."""
    while pid > 1:
        pid = parent_pid(pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
    raise AssertionError("no Ray worker above the grading process")


# ------------------------------------------------------------------------------------------
# discovery
# ------------------------------------------------------------------------------------------


def test_discovery_takes_zips_folders_and_notebooks_named_by_student(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip")
    (inp / "lee").mkdir()
    (inp / "park.ipynb").write_text("{}", encoding="utf-8")
    (inp / "roster.csv").write_text("kim,lee\n", encoding="utf-8")
    (inp / ".DS_Store").write_bytes(b"\0")
    (inp / "__MACOSX").mkdir()
    (inp / "김민수.zip").write_bytes(b"x")  # a Korean name, NFC
    found = discover(inp)
    assert [(e.student, e.kind) for e in found.entries] == [
        ("kim", "zip"), ("lee", "folder"), ("park", "notebook"), ("김민수", "zip")]
    assert found.layout == "by-name"
    assert found.ignored == ["roster.csv (not a .zip, .ipynb or folder)"]


def test_discovery_of_a_github_classroom_download_keeps_the_username(tmp_path):
    by_id = tmp_path / "by-id"
    for user in ("kim", "lee-jh"):
        (by_id / f"w6-self-attention-{user}").mkdir(parents=True)
    found = discover(by_id)
    assert [e.student for e in found.entries] == ["kim", "lee-jh"]
    assert found.layout == "github-classroom" and found.classroom_prefix == "w6-self-attention-"

    # A slug the catalogue does not know: recognised because every folder is a git repository.
    clones = tmp_path / "clones"
    for user in ("alice", "bob-k"):
        (clones / f"hw6-attn-{user}" / ".git").mkdir(parents=True)
    assert [e.student for e in discover(clones).entries] == ["alice", "bob-k"]

    # Plain folders that merely share a prefix are students' folders, left as they are.
    plain = tmp_path / "plain"
    for name in ("team-a", "team-b"):
        (plain / name).mkdir(parents=True)
    assert [e.student for e in discover(plain).entries] == ["team-a", "team-b"]


def test_discovery_refuses_what_cannot_be_a_batch(tmp_path):
    with pytest.raises(BatchInputError, match="not a folder"):
        discover(corrupt_zip(tmp_path / "one.zip"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BatchInputError, match="no submissions found"):
        discover(empty)


def test_one_students_odd_name_is_that_students_problem_not_the_batchs(tmp_path):
    twice = tmp_path / "twice"
    (twice / "kim").mkdir(parents=True)
    corrupt_zip(twice / "kim.zip")
    corrupt_zip(twice / "lee.zip")
    found = discover(twice)
    # Two submissions for one id: one entry that says why it cannot be graded; lee is untouched.
    assert [(e.student, e.problem is not None) for e in found.entries] == [("kim", True), ("lee", False)]
    assert "several submissions give the student id kim (kim.zip, kim/)" in found.entries[0].problem
    # A name the batch writes itself, or a hidden one, is escaped into an id of its own.
    clash = tmp_path / "clash"
    clash.mkdir()
    corrupt_zip(clash / "summary.html.zip")
    corrupt_zip(clash / "Gradebook.CSV.zip")
    assert [e.student for e in discover(clash).entries] == ["Gradebook%2ECSV", "summary%2Ehtml"]
    classroom = tmp_path / "classroom"
    for name in ("w6-self-attention-.x", "w6-self-attention-kim"):
        (classroom / name).mkdir(parents=True)
    assert [e.student for e in discover(classroom).entries] == ["%2Ex", "kim"]


def test_the_content_hash_follows_the_files_not_the_junk(tmp_path):
    sub = tmp_path / "kim"
    (sub / "results").mkdir(parents=True)
    (sub / NOTEBOOK).write_text('{"cells": []}', encoding="utf-8")
    (sub / "results" / "a.csv").write_text("1\n", encoding="utf-8")
    before = content_sha256(sub)
    (sub / ".ipynb_checkpoints").mkdir()
    (sub / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}", encoding="utf-8")
    (sub / ".DS_Store").write_bytes(b"\0")
    assert content_sha256(sub) == before
    (sub / "results" / "a.csv").write_text("2\n", encoding="utf-8")
    assert content_sha256(sub) != before
    (sub / "results" / "a.csv").rename(sub / "results" / "b.csv")
    assert content_sha256(sub) != before


# ------------------------------------------------------------------------------------------
# gradebook and summary (from results, no grading)
# ------------------------------------------------------------------------------------------


def graded_result(score: float, checks: dict[str, str], execution: dict | None = None) -> dict:
    return {
        "assignment": "w6-self-attention", "title": "Optimised self-attention", "status": "graded",
        "score": score, "max_score": 30.0, "bonus": 1.5, "bonus_max": 5.0,
        "criteria": {"implementation": {"score": score - 10, "max_score": 12.0, "pending": 0.0},
                     "theory": {"score": 6.0, "max_score": 9.0, "pending": 3.0},
                     "experiments": {"score": 3.0, "max_score": 6.0, "pending": 2.0},
                     "code_quality": {"score": 1.0, "max_score": 3.0, "pending": 0.0}},
        "checks": [{"id": cid, "title": cid.replace("-", " "), "criterion": "implementation", "status": st,
                    "score": 0.0, "max_score": 1.0, "visibility": "hidden" if "hidden" in cid else "public"}
                   for cid, st in checks.items()],
        "execution": execution or {"status": "completed", "problems": []},
    }


def test_gradebook_rows_scores_only_for_graded_and_no_formula_injection():
    rows = [
        row_from_result("kim", graded_result(20.5, {"impl-a": "pass"})),
        row_from_result("=HYPERLINK(\"x\")", {"status": "rejected", "reason": "-broken zip\nsecond line"}),
        row_from_result("lee", {"status": "error", "reason": "the grading process was killed by SIGKILL",
                                "max_score": 30.0}),
        row_from_result("choi", graded_result(12.0, {"impl-a": "fail"}, {
            "status": "oom", "problems": [{"kind": "oom", "cell": 31, "message": "MemoryError"}]})),
    ]
    lines = list(csv.reader(gradebook_csv(rows).splitlines()))
    assert lines[0][:13] == ["student", "status", "assignment", "implementation", "theory", "experiments", "code_quality",
                        "score", "max_score", "bonus", "pending", "execution", "reason"]
    assert lines[1][:13] == ["kim", "graded", "w6-self-attention", "10.5", "6", "3", "1", "20.5", "30", "1.5", "5",
                        "completed", ""]
    # Untrusted text starting like a formula is quoted; a rejected row has no marks.
    assert lines[2][0] == "'=HYPERLINK(\"x\")" and lines[2][1] == "rejected"
    assert lines[2][3:11] == [""] * 8 and lines[2][12] == "'-broken zip second line"
    assert lines[3][1:2] == ["error"] and lines[3][7] == "" and lines[3][8] == "30"
    assert lines[4][11] == "oom" and lines[4][12] == "the notebook ran out of memory (out of memory in cell 31)"


def test_summary_is_self_contained_escaped_and_puts_the_weakest_check_first():
    rows = [row_from_result(f"s{i}", graded_result(10.0 + 2 * i, {
        "impl-easy": "pass", "impl-hard": "pass" if i == 0 else "fail", "impl-hidden-x": "pass",
        "theory-manual": "pending"})) for i in range(5)]
    rows.append(row_from_result("<script>alert(1)</script>", {"status": "rejected",
                                                               "reason": "<img src=x onerror=alert(1)>"}))
    html = render_summary_html(rows, input_dir="in", engine="local")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("<svg") == 1 and html.count('class="bar"') == 10
    # Pass rates, weakest first: impl-hard (1 of 5) before impl-easy (5 of 5); manual items last.
    assert html.index("impl-hard") < html.index("impl-easy") < html.index("theory-manual")
    assert "20.0%" in html and "100.0%" in html and "manual item" in html
    assert ">hidden<" in html
    assert "5 of 5 graded" in html


# ------------------------------------------------------------------------------------------
# the command line: usage errors
# ------------------------------------------------------------------------------------------


def assert_one_line(done: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_usage_errors_exit_2_with_one_line(tmp_path):
    assert_one_line(run_batch("missing", "--out", "out", cwd=tmp_path), 2, "missing: no such folder")
    inp = tmp_path / "in"
    inp.mkdir()
    assert_one_line(run_batch("in", "--out", "out", cwd=tmp_path), 2, "no submissions found")
    corrupt_zip(inp / "kim.zip")
    assert_one_line(run_batch("in", "--out", "out", "--engine", "spark", cwd=tmp_path), 2,
                    "unknown engine 'spark'", "local or ray")
    assert_one_line(run_batch("in", "--out", "out", "--sandbox", "vm", cwd=tmp_path), 2, "unknown sandbox 'vm'")
    assert_one_line(run_batch("in", "--out", "out", "--assignment", "w99-nothing", cwd=tmp_path), 2, "w99-nothing")
    assert_one_line(run_batch("in", "--out", "out", "--lang", "fr", cwd=tmp_path), 2, "unknown language 'fr'")
    assert not (tmp_path / "out").exists()  # nothing was started


def test_results_never_replace_what_is_not_a_result(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip")
    home = tmp_path / "home"
    (home / "kim").mkdir(parents=True)
    (home / "kim" / "thesis.tex").write_text("years of work", encoding="utf-8")
    assert_one_line(run_batch("in", "--out", "home", cwd=tmp_path), 2, "already holds kim", "not a result folder")
    assert (home / "kim" / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert_one_line(run_batch("in", "--out", "in", cwd=tmp_path), 2, "is INPUT itself")
    assert sorted(p.name for p in inp.iterdir()) == ["kim.zip"]


def test_each_worker_gets_its_own_gpu_from_the_gpus_this_machine_may_use(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == ["2", "5"]
    assert gpu_slots(2) == ["2", "5"] and gpu_slots(3) == ["2", "5", "2"] and gpu_slots(1) == ["2"]
    assert default_workers("cuda") == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,3")  # CUDA stops reading at the first invalid id
    assert visible_gpus() == ["0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == [] and gpu_slots(2) is None and default_workers("cuda") == 1


def test_the_grading_command_carries_the_gpus_and_the_language(tmp_path):
    options = GradeOptions(device="cuda", gpus="3", lang="ko", seed=5)
    argv = grade_argv(tmp_path / "kim.zip", tmp_path / "out", options)
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--gpus"] == "3" and pairs["--device"] == "cuda" and pairs["--lang"] == "ko"
    assert "--gpus" not in grade_argv(tmp_path / "kim.zip", tmp_path / "out", GradeOptions())
    # The language is part of a result's key: feedback in another language is another run.
    assert options_key(GradeOptions(lang="en")) != options_key(GradeOptions(lang="ko"))


def test_device_auto_puts_the_full_profile_on_a_gpu_and_smoke_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU here: the rejected zip needs none
    inp = tmp_path / "in"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip")  # rejected at intake: seconds, no notebook run
    for profile, device in (("smoke", "cpu"), ("full", "cuda")):
        done = run_batch("in", "--out", f"out-{profile}", "--profile", profile, "--lang", "en", "-q", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        options = read_key(tmp_path / f"out-{profile}" / "kim").options
        assert (options["profile"], options["device"], options["lang"]) == (profile, device, "en")


def test_files_coming_back_from_a_node_stay_inside_the_results_folder():
    assert safe_relative_path("result.json") == Path("result.json")
    assert safe_relative_path("figures/causal-mask.png") == Path("figures", "causal-mask.png")
    for name in ("", "/etc/passwd", "../kim/result.json", "figures/../../x", "a//b", "./a", "a\\..\\b", "a\x00b"):
        assert safe_relative_path(name) is None, name


def test_engine_ray_without_ray_says_what_to_install(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip")
    no_ray = "import sys\nsys.modules['ray'] = None  # as if not installed\n" + LAUNCHER
    done = subprocess.run([sys.executable, "-c", no_ray, "batch", "in", "--out", "out", "--engine", "ray"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert_one_line(done, 2, "needs Ray", "pip install 'grader[ray]'")


def test_engine_ray_with_no_cluster_at_the_address_fails_in_seconds(tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'grader[ray]'")
    from grader.batch.ray_local import free_port

    inp = tmp_path / "in"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    done = run_batch("in", "--out", "out", "--engine", "ray", "--ray-address", address, cwd=tmp_path, timeout_s=60)
    assert_one_line(done, 2, f"no Ray cluster answers at {address}", "--ray-address")
    assert time.monotonic() - started < 30 and not (tmp_path / "out").exists()


def test_a_second_batch_on_the_same_output_is_refused(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip")
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / ".batch-lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert_one_line(run_batch("in", "--out", "out", cwd=tmp_path), 2, "another `grade batch` is writing")
    assert not (tmp_path / "out" / "kim").exists()


# ------------------------------------------------------------------------------------------
# resume (real `grade` processes on submissions that are rejected in a second)
# ------------------------------------------------------------------------------------------


def test_results_are_keyed_reused_and_redone_when_the_submission_changes(tmp_path, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    corrupt_zip(inp / "kim.zip", "kim's")
    corrupt_zip(inp / "lee.zip", "lee's")
    first = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    assert sorted(first.graded_now) == ["kim", "lee"] and first.reused == []
    assert first.counts == {"graded": 0, "rejected": 2, "error": 0, "incomplete": 0}
    for student in ("kim", "lee"):
        folder = out / student
        assert {"result.json", "feedback.html", "feedback.md", KEY_NAME} <= {p.name for p in folder.iterdir()}
        result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        assert result["student"] == student and result["status"] == "rejected" and f"{student}.zip" in result["reason"]
        key = read_key(folder)
        assert key.content_sha256 == content_sha256(inp / f"{student}.zip") and key.status == "rejected"
        assert key.options["seed"] == 11 and key.grader_version
    assert not (out / ".batch-tmp").exists()

    again = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    assert again.graded_now == [] and sorted(again.reused) == ["kim", "lee"]

    corrupt_zip(inp / "lee.zip", "lee's second upload")
    changed = grade_batch(inp, out, workers=2, options=FAST_OPTIONS)
    assert changed.graded_now == ["lee"] and changed.reused == ["kim"]

    # Other grading options: a different result, so everything is redone.
    reseeded = GradeOptions(**{**vars(FAST_OPTIONS), "seed": 12})
    other = grade_batch(inp, out, workers=2, options=reseeded)
    assert sorted(other.graded_now) == ["kim", "lee"]

    # A folder without its key (a crash mid-install) is not done; leftovers of a killed run go.
    (out / "kim" / KEY_NAME).unlink()
    (out / ".batch-tmp" / "lee.dead").mkdir(parents=True)
    repaired = grade_batch(inp, out, workers=2, options=reseeded)
    assert repaired.graded_now == ["kim"] and repaired.reused == ["lee"]
    assert not (out / ".batch-tmp").exists()
    rows = read_gradebook(out)
    assert [r["student"] for r in rows] == ["kim", "lee"] and {r["status"] for r in rows} == {"rejected"}

    # An error row (here: a guard so short that every grading process is killed) is kept in the
    # gradebook, and retried by the next run. A fresh interpreter, so that the process cannot end
    # (a preloaded one rejects a corrupt zip in milliseconds) before the guard kills it.
    corrupt_zip(inp / "lee.zip", "lee's third upload")
    monkeypatch.setenv(PRELOAD_ENV, "0")
    hung = grade_batch(inp, out, workers=2, options=reseeded, wall_clock_limit_s=0.01)
    assert hung.graded_now == ["lee"] and hung.counts["error"] == 1
    lee = next(r for r in hung.rows if r.student == "lee")
    assert lee.reason.startswith("the grading process ran past its wall-clock limit of 0.01 s")
    monkeypatch.delenv(PRELOAD_ENV)
    retried = grade_batch(inp, out, workers=2, options=reseeded)
    assert retried.graded_now == ["lee"] and retried.reused == ["kim"] and retried.counts["rejected"] == 2


# ------------------------------------------------------------------------------------------
# real notebooks
# ------------------------------------------------------------------------------------------


@pytest.mark.notebook
def test_bad_submissions_become_rows_with_reasons_and_the_good_ones_are_graded(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    solution_copy(inp / "kim")
    zip_folder(solution_copy(tmp_path / "lee-src" / "hw6"), inp / "lee.zip")
    corrupt_zip(inp / "park.zip")
    solution_copy(inp / "choi", "while True:\n    pass")
    solution_copy(inp / "jung", "hog = []\nwhile True:\n    hog.append(bytearray(512 * 2**20))")
    done = run_batch("in", "--out", "out", "--workers", "2", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "5 submissions: 4 graded (2 with an incomplete run), 1 rejected, 0 errors" in done.stdout

    rows = {r["student"]: r for r in read_gradebook(out)}
    assert sorted(rows) == ["choi", "jung", "kim", "lee", "park"]
    for good in ("kim", "lee"):
        assert rows[good]["status"] == "graded" and rows[good]["execution"] == "completed"
        assert float(rows[good]["score"]) == 25.0 and rows[good]["reason"] == ""
    assert rows["park"]["status"] == "rejected" and "park.zip" in rows["park"]["reason"]
    assert rows["choi"]["status"] == "graded" and rows["choi"]["execution"] == "cell_timeout"
    assert "time limit" in rows["choi"]["reason"]
    # The memory bomb hits the memory cap; on a heavily loaded machine the per-cell limit can
    # come first. Either way it is a graded row with its reason, not a crash.
    assert rows["jung"]["status"] == "graded" and rows["jung"]["execution"] in ("oom", "cell_timeout")
    assert "out of memory" in rows["jung"]["reason"] or "time limit" in rows["jung"]["reason"]
    for student in rows:
        names = {p.name for p in (out / student).iterdir()}
        assert {"result.json", "feedback.html", "feedback.md", KEY_NAME} <= names
        assert json.loads((out / student / "result.json").read_text(encoding="utf-8"))["student"] == student
    assert (out / "kim" / "executed.ipynb").is_file()

    html = (out / "summary.html").read_text(encoding="utf-8")
    looked_at = html[html.index("Submissions to look at"):]
    for student in ("park", "choi", "jung"):
        assert f"<td>{student}</td>" in looked_at
    assert "<td>kim</td>" not in looked_at and "<svg" in html and "<script" not in html

    # The same command again: everything is kept, nothing regraded, the gradebook unchanged.
    gradebook_before = (out / "gradebook.csv").read_text(encoding="utf-8-sig")
    again = run_batch("in", "--out", "out", "--workers", "2", *FAST, cwd=tmp_path, timeout_s=60)
    assert again.returncode == 0 and "0 graded now, 5 kept from an earlier run" in again.stdout
    assert (out / "gradebook.csv").read_text(encoding="utf-8-sig") == gradebook_before


@pytest.mark.notebook
def test_a_hung_grading_process_is_killed_and_becomes_an_error_row(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    # The notebook sleeps far past the guard: the grading process is taken as hung.
    solution_copy(inp / "kim", "import time\ntime.sleep(600)")
    corrupt_zip(inp / "park.zip")
    options = GradeOptions(sandbox="local", cell_timeout_s=900, timeout_s=900, memory_mb=3072, seed=11)
    started = time.monotonic()
    summary = grade_batch(inp, out, workers=2, options=options, wall_clock_limit_s=6)
    assert time.monotonic() - started < 60
    rows = {r.student: r for r in summary.rows}
    assert rows["kim"].status == "error"
    assert rows["kim"].reason.startswith("the grading process ran past its wall-clock limit of 6 s and was killed")
    assert rows["park"].status == "rejected"
    assert grade_processes(str(out / TMP_NAME / "kim.")) == []
    assert read_key(out / "kim").status == "error"  # kept, but retried by the next run


@pytest.mark.notebook
def test_ctrl_c_half_way_then_the_same_command_finishes_with_every_result_once(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    corrupt_zip(inp / "ann.zip")  # done in a second: the first result
    for student in ("bob", "cho"):
        solution_copy(inp / student)
    argv = [sys.executable, "-c", LAUNCHER, "batch", "in", "--out", "out", "--workers", "2", "-q", *FAST]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # Ctrl-C once the first result is in and bob's notebook has been running for a while.
    while not ((out / "ann" / "result.json").exists() and grade_processes(str(out / TMP_NAME / "bob."))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "nothing started in 120 s"
        time.sleep(0.1)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: 1 of 3 submissions done" in stderr and "run the same command again" in stderr
    # Nothing half-written: only ann's complete folder; no grading process left behind.
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ann"] and read_key(out / "ann") is not None
    assert grade_processes(str(out)) == []
    key_before = (out / "ann" / KEY_NAME).stat().st_mtime_ns

    done = run_batch("in", "--out", "out", "--workers", "2", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 graded now, 1 kept from an earlier run" in done.stdout
    rows = read_gradebook(out)
    assert [r["student"] for r in rows] == ["ann", "bob", "cho"]  # every result, once
    assert [r["status"] for r in rows] == ["rejected", "graded", "graded"]
    assert float(rows[1]["score"]) == float(rows[2]["score"]) == 25.0
    assert (out / "ann" / KEY_NAME).stat().st_mtime_ns == key_before


# ------------------------------------------------------------------------------------------
# Ray: a real cluster on loopback
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'grader[ray]'")
    from grader.batch.ray_local import LoopbackRayCluster

    # 2 GPUs declared (this machine has none): GPU tasks get scheduled and given GPU ids.
    cluster = LoopbackRayCluster(num_cpus=2, num_gpus=2).start()
    try:
        yield cluster
    finally:
        pids = cluster.pids()
        cluster.stop()
        assert [p for p in pids if process_alive(p)] == []


def files_of(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def comparable(out: Path, student: str) -> dict:
    result = json.loads((out / student / "result.json").read_text(encoding="utf-8"))
    return {k: result.get(k) for k in ("status", "assignment", "score", "max_score", "bonus", "criteria", "student")} | {
        "checks": [(c["id"], c["status"], c["score"]) for c in result.get("checks", [])],
        "source": (result.get("submission") or {}).get("source")}


@pytest.mark.ray
@pytest.mark.notebook
def test_a_batch_through_ray_equals_the_same_batch_graded_locally(tmp_path, ray_cluster):
    inp = tmp_path / "in"
    inp.mkdir()
    solution_copy(inp / "kim")
    make_buggy_notebook("no_scaling", tmp_path / "lee-src" / "hw6")
    zip_folder(tmp_path / "lee-src" / "hw6", inp / "lee.zip")
    corrupt_zip(inp / "park.zip")
    local = grade_batch(inp, tmp_path / "local", workers=2, options=FAST_OPTIONS)
    ray = grade_batch(inp, tmp_path / "ray", engine="ray", ray_address=ray_cluster.address, options=FAST_OPTIONS)
    assert sorted(ray.graded_now) == sorted(local.graded_now) == ["kim", "lee", "park"]
    for student in ("kim", "lee", "park"):
        assert comparable(tmp_path / "ray", student) == comparable(tmp_path / "local", student), student
    scores = {r.student: (r.status, r.score) for r in ray.rows}
    assert scores["kim"] == ("graded", 25.0) and scores["lee"][0] == "graded" and scores["lee"][1] < 25.0
    assert scores["park"] == ("rejected", None)
    assert read_gradebook(tmp_path / "ray") == read_gradebook(tmp_path / "local")
    for student in ("kim", "lee", "park"):  # every file comes back from the node, figures included
        assert files_of(tmp_path / "ray" / student) == files_of(tmp_path / "local" / student), student
    assert [p.name for p in (tmp_path / "ray" / "lee" / "figures").iterdir()]
    ray_result = json.loads((tmp_path / "ray" / "kim" / "result.json").read_text(encoding="utf-8"))
    assert ray_result["batch"]["engine"] == "ray" and ray_result["batch"]["host"]

    # Keys do not depend on the engine: the local results are complete for a Ray run.
    resumed = grade_batch(inp, tmp_path / "local", engine="ray", ray_address=ray_cluster.address,
                          options=FAST_OPTIONS)
    assert resumed.graded_now == [] and sorted(resumed.reused) == ["kim", "lee", "park"]


@pytest.mark.ray
@pytest.mark.notebook
def test_killed_ray_worker_and_killed_grade_process_lose_and_duplicate_nothing(tmp_path, ray_cluster):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for student in ("ann", "bob", "cho"):
        solution_copy(inp / student)
    killed: dict[str, str] = {}
    stop = threading.Event()

    def killer() -> None:
        """Mid-task: SIGKILL the Ray worker of the first student seen running (Ray retries the
        task), then the `grade` process of another (an error row)."""
        while not stop.is_set() and len(killed) < 2:
            for student in ("ann", "bob", "cho"):
                if student in killed:
                    continue
                pids = grade_processes(f"grader-ray-{student}-")
                if not pids:
                    continue
                time.sleep(2.0)  # well inside the task
                try:
                    if not killed:
                        os.kill(ray_worker_of(pids[0]), signal.SIGKILL)
                        killed[student] = "worker"
                    else:
                        os.kill(pids[0], signal.SIGKILL)
                        killed[student] = "grade"
                except (ProcessLookupError, FileNotFoundError):
                    continue  # it ended meanwhile: try the next one
                break
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        summary = grade_batch(inp, out, engine="ray", ray_address=ray_cluster.address, options=FAST_OPTIONS)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sorted(killed.values()) == ["grade", "worker"], killed
    by_kill = {how: student for student, how in killed.items()}
    rows = read_gradebook(out)
    assert sorted(r["student"] for r in rows) == ["ann", "bob", "cho"]  # each exactly once
    status = {r["student"]: r for r in rows}
    retried = status[by_kill["worker"]]
    assert retried["status"] == "graded" and float(retried["score"]) == 25.0
    failed = status[by_kill["grade"]]
    assert failed["status"] == "error" and "killed by SIGKILL" in failed["reason"]
    assert sorted(summary.graded_now) == ["ann", "bob", "cho"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["ann", "bob", "cho"]
    # The killed worker's scratch copy was swept by the retry; the others cleaned up after themselves.
    assert [p for s in ("ann", "bob", "cho") for p in Path("/tmp").glob(f"grader-ray-{s}-*")] == []


# A first cell that shows which GPUs the notebook's own environment names (the notebook then
# fails on this CPU-only machine with DEVICE=cuda, which is a graded result like any other).
SHOW_GPUS = "import os\nprint('CUDA_VISIBLE_DEVICES=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"


def gpu_submission(dest: Path) -> Path:
    solution_copy(dest)
    nb = nbformat.read(str(dest / NOTEBOOK), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SHOW_GPUS))
    nbformat.write(nb, str(dest / NOTEBOOK))
    return dest


def gpus_seen(out: Path, student: str) -> tuple[str | None, str]:
    """(the GPUs result.json says the notebook was given, what its first cell printed)."""
    result = json.loads((out / student / "result.json").read_text(encoding="utf-8"))
    executed = json.loads((out / student / "executed.ipynb").read_text(encoding="utf-8"))
    printed = [line for cell in executed["cells"] if cell["cell_type"] == "code"
               for o in cell.get("outputs", []) if o.get("output_type") == "stream"
               for line in "".join(o.get("text", "")).splitlines() if line.startswith("CUDA_VISIBLE_DEVICES=")]
    assert result["status"] == "graded" and len(printed) == 1, (result.get("reason"), printed)
    return result["execution"]["gpus"], printed[0]


GPU_OPTIONS = GradeOptions(sandbox="local", cell_timeout_s=15, timeout_s=120, memory_mb=3072, seed=11,
                           device="cuda", gpus="all")


@pytest.mark.notebook
def test_local_workers_on_gpus_get_one_gpu_each(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")  # the GPUs this runner may use
    inp = tmp_path / "in"
    inp.mkdir()
    for student in ("kim", "lee"):
        gpu_submission(inp / student)
    grade_batch(inp, tmp_path / "out", workers=2, options=GPU_OPTIONS)
    seen = {student: gpus_seen(tmp_path / "out", student) for student in ("kim", "lee")}
    assert sorted(gpus for gpus, _ in seen.values()) == ["4", "7"], seen
    for gpus, printed in seen.values():
        assert printed == f"CUDA_VISIBLE_DEVICES={gpus!r}"


@pytest.mark.ray
@pytest.mark.notebook
def test_each_ray_task_on_a_gpu_hands_its_own_gpu_to_the_notebook(tmp_path, ray_cluster):
    inp = tmp_path / "in"
    inp.mkdir()
    for student in ("kim", "lee"):
        gpu_submission(inp / student)
    grade_batch(inp, tmp_path / "out", engine="ray", ray_address=ray_cluster.address, options=GPU_OPTIONS)
    seen = {student: gpus_seen(tmp_path / "out", student) for student in ("kim", "lee")}
    # The cluster declares 2 GPUs and 2 CPUs: both tasks hold a GPU at the same time, so Ray gave
    # them different ones, and each notebook sees only its own (not every GPU of the node).
    assert sorted(gpus for gpus, _ in seen.values()) == ["0", "1"], seen
    for gpus, printed in seen.values():
        assert printed == f"CUDA_VISIBLE_DEVICES={gpus!r}"
