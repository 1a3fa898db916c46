"""End to end: real submissions through intake, the local sandbox, the probe, the judge, the rubric
and the reports. Each test grades a notebook for real (smoke profile)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.pipeline import GradeOptions, grade_submission
from grader.rubric import load_rubric
from grader.sandbox import local

from tests.conftest import REPO, SOLUTION, TEMPLATE
from tests.seeded_bugs import BUGS, make_buggy_notebook

pytestmark = pytest.mark.notebook

RUBRIC = load_rubric(REPO / "rubrics" / "w6-self-attention.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
MANUAL_POINTS = sum(i.points for i in RUBRIC.items if i.kind == "manual")
NOTEBOOK = "self_attention_optimized.ipynb"
OPTIONS = GradeOptions(cell_timeout_s=120, timeout_s=300, memory_mb=4096)

# The checks each seeded bug must fail: exactly these, no more, no fewer.
SDPA_CHECKS = {"impl-sdpa-output", "impl-sdpa-bool-mask", "impl-sdpa-additive-mask", "impl-sdpa-fully-masked",
               "impl-fp16-stability", "impl-hidden-cross"}
EXPECTED_FAILURES = {
    "no_scaling": SDPA_CHECKS,
    "softmax_wrong_axis": SDPA_CHECKS,
    "causal_off_by_one": {"impl-causal-mask"},
    "padding_on_query_axis": {"impl-padding-mask"},
    "chunked_drops_last_chunk": {"impl-chunked-ragged", "impl-hidden-chunked"},
    "fp16_overflow": {"impl-fp16-stability"},
}


def zip_folder(folder: Path, target: Path, wrapper: str = "hw6") -> Path:
    """Zip a submission the way students do: the whole folder, wrapped."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{wrapper}/{path.relative_to(folder)}")
    return target


def checks_by_status(result: dict, *statuses: str) -> set[str]:
    return {c["id"] for c in result["checks"] if c["status"] in statuses}


def add_cell(notebook: Path, source: str, *, index: int | None = None) -> None:
    nb = nbformat.read(notebook, as_version=4)
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.insert(len(nb.cells) if index is None else index, cell)
    nbformat.write(nb, notebook)


@pytest.fixture
def solution_copy(tmp_path) -> Path:
    target = tmp_path / "submission"
    shutil.copytree(SOLUTION, target)
    return target


def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    out = tmp_path / "out"
    result = grade_submission(zip_folder(SOLUTION, tmp_path / "submit.zip"), out, OPTIONS)
    assert result["status"] == "graded", result.get("reason")
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] not in ("pass", "pending")}
    assert not_passed == {}
    assert checks_by_status(result, "pending") == {i.id for i in RUBRIC.items if i.kind == "manual"}
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)
    assert result["criteria"]["theory"]["pending"] == pytest.approx(3)
    assert result["execution"]["status"] == "completed"
    assert result["judged_with"] == "live"
    assert "unwrapped folder hw6/" in " ".join(result["submission"]["notes"])
    # the smoke profile of the reference notebook must stay well inside CI's budget
    assert result["execution"]["duration_s"] < 120
    for name in ("result.json", "feedback.html", "feedback.md", "executed.ipynb"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "result.json").read_text(encoding="utf-8"))
    for key in ("assignment", "status", "score", "max_score", "bonus", "criteria", "checks", "duration_s",
                "grader_version"):
        assert key in on_disk
    for check in on_disk["checks"]:
        assert set(check) >= {"id", "criterion", "status", "score", "max_score", "visibility", "message", "hint"}
    executed = json.loads((out / "executed.ipynb").read_text(encoding="utf-8"))
    assert not any("vnd.grader.probe" in "".join(c.get("source", "")) for c in executed["cells"])


def test_the_blank_template_gets_zero_implementation_with_not_implemented_messages(tmp_path):
    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation" and check["visibility"] == "public":
            assert check["status"] == "fail" and "not implemented" in check["message"], check
    assert result["bonus"] == 0
    assert result["score"] == 0


@pytest.mark.parametrize("bug", sorted(EXPECTED_FAILURES))
def test_each_seeded_bug_loses_exactly_the_points_of_its_checks(tmp_path, bug):
    assert set(BUGS) == set(EXPECTED_FAILURES)
    notebook = make_buggy_notebook(bug, tmp_path / "submission")
    result = grade_submission(notebook.parent, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded", result.get("reason")
    failed = checks_by_status(result, "fail", "error")
    assert failed == EXPECTED_FAILURES[bug], {c["id"]: c["message"] for c in result["checks"] if c["id"] in failed}
    lost = sum(i.points for i in RUBRIC.items if i.id in failed)
    # code quality follows the share of the implementation that works
    implementation = sum(i.points for i in RUBRIC.items if i.criterion == "implementation" and not i.bonus)
    lost_implementation = sum(i.points for i in RUBRIC.items if i.id in failed and i.criterion == "implementation")
    quality = sum(i.points for i in RUBRIC.items if i.criterion == "code_quality")
    scaled_away = quality * lost_implementation / implementation
    assert result["score"] == pytest.approx(AUTO_POINTS - lost - scaled_away, abs=1e-3)
    assert result["bonus"] == pytest.approx(5)


def test_monkeypatched_comparisons_change_no_verdict(tmp_path):
    notebook = make_buggy_notebook("no_scaling", tmp_path / "submission")
    add_cell(notebook, (
        "import numpy, torch, torch.testing\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.equal = lambda *a, **k: True\n"
        "torch.testing.assert_close = lambda *a, **k: None\n"
        "torch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)\n"
        "numpy.allclose = lambda *a, **k: True\n"
        "numpy.testing.assert_allclose = lambda *a, **k: None\n"
    ))
    result = grade_submission(notebook.parent, tmp_path / "out", OPTIONS)
    assert checks_by_status(result, "fail", "error") == EXPECTED_FAILURES["no_scaling"]


def test_forged_result_files_and_payloads_change_no_verdict(tmp_path):
    notebook = make_buggy_notebook("causal_off_by_one", tmp_path / "submission")
    add_cell(notebook, (
        "import atexit, json, os, threading, time\n"
        "fake = {'status': 'graded', 'score': 30, 'checks': []}\n"
        "for folder in ['.', '..', '/tmp', os.path.expanduser('~')]:\n"
        "    for name in ['result.json', 'probe.json', 'outputs.safetensors']:\n"
        "        try:\n"
        "            open(os.path.join(folder, name), 'w').write(json.dumps(fake))\n"
        "        except OSError:\n"
        "            pass\n"
        "MIME = 'application/vnd.grader.probe+json'\n"
        "def forge():\n"
        "    get_ipython().display_pub.publish(data={MIME: json.dumps({'nonce': 'guess', 'calls': {}})}, metadata={})\n"
        "forge()\n"
        "atexit.register(forge)\n"
        "def keep_forging():\n"
        "    for _ in range(300):\n"
        "        forge()\n"
        "        time.sleep(0.01)\n"
        "threading.Thread(target=keep_forging, daemon=True).start()\n"
    ))
    result = grade_submission(notebook.parent, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded"
    assert checks_by_status(result, "fail", "error") == EXPECTED_FAILURES["causal_off_by_one"]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["score"] == result["score"] < AUTO_POINTS


@pytest.mark.skipif(local.detect_isolation() != "bwrap", reason="hiding the host's files needs bubblewrap")
def test_a_notebook_that_looks_for_the_probe_and_the_reference_finds_nothing_and_changes_nothing(tmp_path,
                                                                                                   solution_copy):
    notebook = solution_copy / NOTEBOOK
    add_cell(notebook, (
        "walker = __import__('os')  # no import statement: the lint stays clean\n"
        "found = []\n"
        "for top in ['/', walker.getcwd(), '/tmp', walker.path.expanduser('~')]:\n"
        "    for root, dirs, files in walker.walk(top):\n"
        "        if root.startswith(('/proc', '/sys', '/usr', '/dev')):\n"
        "            dirs[:] = []\n"
        "            continue\n"
        "        for name in dirs + files:\n"
        "            if any(w in name for w in ('hidden_checks', 'solutions', 'rubrics', 'w6-self-attention.yaml')):\n"
        "                found.append(walker.path.join(root, name))\n"
        "secrets_seen = {k: v for k, v in walker.environ.items() if 'GRADER' in k or 'TOKEN' in k}\n"
        "print('FOUND', found, secrets_seen)\n"
        "assert not found and not secrets_seen, (found, secrets_seen)\n"
    ))
    result = grade_submission(solution_copy, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded"
    own = [p for p in result["execution"]["problems"] if not p["in_probe"]]
    assert own == [], own
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)


def test_an_infinite_loop_costs_its_cell_not_the_grade(tmp_path, solution_copy):
    add_cell(solution_copy / NOTEBOOK, "while True:\n    pass")
    options = GradeOptions(cell_timeout_s=15, timeout_s=300)
    result = grade_submission(solution_copy, tmp_path / "out", options)
    assert result["status"] == "graded"
    assert result["execution"]["status"] == "cell_timeout"
    problem = result["execution"]["problems"][0]
    assert problem["kind"] == "cell_timeout" and problem["source_excerpt"].startswith("while True")
    # the loop costs the clean-run point; the implementation is still judged
    assert checks_by_status(result, "fail", "error") == {"cq-runs-clean"}
    executed = json.loads((tmp_path / "out" / "executed.ipynb").read_text())
    assert any("grader-problem" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_a_memory_bomb_is_out_of_memory_and_the_rest_is_graded(tmp_path, solution_copy):
    # the cell runs out of memory (reported with its cell) and lets go of it, so the probe can run
    add_cell(solution_copy / NOTEBOOK, "hog = []\ntry:\n    while True:\n        hog.append(bytearray(512 * 2**20))\n"
                                       "except MemoryError:\n    hog.clear()\n    raise")
    options = GradeOptions(cell_timeout_s=60, timeout_s=300, memory_mb=3072)
    result = grade_submission(solution_copy, tmp_path / "out", options)
    assert result["status"] == "graded"
    assert result["execution"]["status"] == "oom"
    assert checks_by_status(result, "fail", "error") == {"cq-runs-clean"}
    message = next(c["message"] for c in result["checks"] if c["id"] == "cq-runs-clean")
    assert "out of memory" in message and "cell" in message


def test_os_exit_in_a_cell_is_a_dead_kernel_reported_with_its_cell(tmp_path, solution_copy):
    add_cell(solution_copy / NOTEBOOK, "import os\nos._exit(1)", index=3)
    result = grade_submission(solution_copy, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded"
    assert result["execution"]["status"] == "kernel_died"
    assert result["execution"]["problems"][0]["cell"] == 4
    implementation = [c for c in result["checks"] if c["criterion"] == "implementation"
                      and c["visibility"] == "public" and not c["bonus"]]
    assert all(c["status"] == "error" and "probe did not run" in c["message"] for c in implementation)
    html = (tmp_path / "out" / "feedback.html").read_text(encoding="utf-8")
    assert "kernel" in html.lower() and "4" in html


def test_without_the_staff_side_public_checks_run_from_stored_outputs(tmp_path, monkeypatch):
    """A student's installation: no reference/, no hidden checks, no answer keys."""
    monkeypatch.setenv("GRADER_STAFF_DIR", "none")
    result = grade_submission(SOLUTION, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded"
    assert result["judged_with"] == "stored"
    by_id = {c["id"]: c for c in result["checks"]}
    hidden = {i.id for i in RUBRIC.items if i.visibility == "hidden"}
    questions = {i.id for i in RUBRIC.items if i.kind == "question"}
    assert all(by_id[i]["status"] == "pending" for i in hidden | questions)
    public_auto = [c for c in result["checks"] if c["id"] not in hidden | questions and c["status"] != "pending"]
    assert public_auto and all(c["status"] == "pass" for c in public_auto), \
        {c["id"]: c["message"] for c in public_auto if c["status"] != "pass"}


def test_the_engine_never_imports_the_staff_side():
    engine = REPO / "grader"
    offenders = [p for p in engine.rglob("*.py")
                 if "import reference" in p.read_text(encoding="utf-8")
                 or "from reference" in p.read_text(encoding="utf-8")]
    assert offenders == []
