"""The local sandbox backend, run for real: each failure kind is told apart and tied to its cell."""

from __future__ import annotations

import os

import pytest

from grader.errors import SandboxUnavailable, UsageError
from grader.sandbox import get_backend, local

pytestmark = pytest.mark.notebook


def test_a_clean_run_completes_and_returns_the_executed_notebook(run_cells):
    result = run_cells("x = 6 * 7\nprint(x)")
    assert result.status == "completed" and result.problems == []
    outputs = result.notebook["cells"][-1]["outputs"]
    assert any("42" in "".join(o.get("text", "")) for o in outputs)
    # papermill's injected parameters cell is in the executed notebook
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in result.notebook["cells"])


PUBLISH = ("get_ipython().display_pub.publish(data={'application/vnd.grader.probe+json': str(z)}, metadata={})\n"
           "print('an ordinary print is not a payload')")


def test_an_error_names_its_cell_and_later_cells_and_the_probe_still_run(run_cells):
    result = run_cells("y = 1", "1 / 0", "z = y + 1", probe=PUBLISH)
    assert result.status == "cell_error"
    [problem] = result.problems
    # cell 4 of the student's notebook: markdown, parameters, "y = 1", then "1 / 0"
    assert (problem.kind, problem.cell) == ("cell_error", 4)
    assert str(problem.message).startswith("ZeroDivisionError") and problem.source_excerpt == "1 / 0"
    assert result.probe_ran and result.probe_payloads == ["2"]
    # the probe cell (and so its secret inputs) is not part of the executed notebook
    assert all("vnd.grader.probe" not in "".join(c.get("source", "")) for c in result.notebook["cells"])


def test_an_infinite_loop_is_interrupted_by_the_cell_timeout(run_cells):
    result = run_cells("a = 1", "while True:\n    pass", "b = 2", cell_timeout_s=2)
    assert result.status == "cell_timeout"
    [problem] = result.problems
    assert problem.cell == 4 and "per-cell limit of 2 s" in str(problem.message)


def test_the_total_timeout_kills_the_run_and_names_the_running_cell(run_cells):
    result = run_cells("import time", "time.sleep(30)", cell_timeout_s=60, timeout_s=4)
    assert result.status == "timeout"
    [problem] = result.problems
    assert problem.cell == 4 and "total time limit of 4 s" in str(problem.message)
    assert result.duration_s < 15


def test_a_memory_bomb_is_reported_as_out_of_memory(run_cells):
    result = run_cells("blocks = []\nwhile True:\n    blocks.append(bytearray(256 * 2**20))", memory_mb=1024)
    assert result.status == "oom"
    assert result.problems[0].cell == 3 and str(result.problems[0].message).startswith("out of memory")


def test_a_torch_allocation_over_the_cap_is_out_of_memory_too(run_cells):
    result = run_cells("import torch\nx = torch.empty(2**31, dtype=torch.float32)\nx.fill_(1)", memory_mb=1536)
    assert result.status == "oom"


def test_os_exit_is_a_dead_kernel_at_its_cell(run_cells):
    result = run_cells("a = 1", "import os\nos._exit(3)", "b = 2")
    assert result.status == "kernel_died"
    assert result.problems[0].cell == 4
    assert not result.probe_ran


@pytest.mark.skipif(local.detect_isolation() == "none", reason="this machine offers no network namespace")
def test_the_network_is_unreachable(run_cells):
    result = run_cells("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=3)")
    assert result.status == "cell_error"
    assert result.network is False
    assert "OSError" in str(result.problems[0].message) or "unreachable" in str(result.problems[0].message)


def test_the_grader_environment_does_not_leak_into_the_sandbox(run_cells, monkeypatch):
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "s3cr3t")
    result = run_cells("import os\nassert 'GRADER_SECRET_TOKEN' not in os.environ, 'leak'\nprint(sorted(os.environ))")
    assert result.status == "completed", result.problems


@pytest.mark.skipif(local.detect_isolation() != "bwrap", reason="file-system isolation needs bubblewrap")
def test_the_repository_reference_and_rubrics_are_invisible(run_cells):
    from tests.conftest import REPO

    result = run_cells(
        "import os\n"
        f"assert not os.path.exists({str(REPO / 'reference')!r})\n"
        f"assert not os.path.exists({str(REPO / 'rubrics')!r})\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('reference') is None\n"
        "assert importlib.util.find_spec('grader') is None or 'site-packages' in importlib.util.find_spec('grader').origin\n"
        "open('/usr/evil', 'w')"
    )
    assert result.status == "cell_error"
    assert "Read-only file system" in str(result.problems[0].message) or "Permission" in str(result.problems[0].message)


def test_writes_outside_the_working_copy_do_not_reach_the_host(run_cells, tmp_path):
    marker = tmp_path / "escaped.txt"
    result = run_cells(f"open({str(marker)!r}, 'w').write('x')")
    if local.detect_isolation() == "bwrap":
        assert not marker.exists()
    else:
        assert result.status in ("completed", "cell_error")


def test_the_registry_knows_local_and_explains_missing_backends():
    assert get_backend("local").name == "local"
    assert get_backend("auto").name in ("local", "docker")
    with pytest.raises(UsageError, match="unknown sandbox 'chroot'"):
        get_backend("chroot")
    assert get_backend("docker").name == "docker"


def test_docker_without_an_engine_is_a_clear_error_before_anything_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(SandboxUnavailable, match="no Docker engine answers at unix://"):
        get_backend("docker").check_available(None)
    assert get_backend("auto").name == "local"


def test_the_plain_process_fallback_still_runs_and_says_it_is_not_isolated(run_cells, monkeypatch):
    monkeypatch.setattr(local, "_ISOLATION_CACHE", "none")
    result = run_cells("print('hello')")
    assert result.status == "completed"
    assert (result.isolation, result.network) == ("none", True)
    assert os.environ.get("GRADER_LOCAL_ISOLATION") is None


HIDE_TRACEBACKS = [
    ("get_ipython()._showtraceback = lambda *a, **k: None", "_showtraceback"),
    ("get_ipython().showtraceback = lambda *a, **k: None", "showtraceback"),
    ("from IPython.display import clear_output\n"
     "get_ipython().events.register('post_run_cell', lambda result: clear_output())", "cleared outputs"),
    ("import sys\nsys.excepthook = lambda *a: None\n"
     "get_ipython().set_custom_exc((Exception,), lambda *a, **k: None)", "excepthook and custom_exc"),
]


@pytest.mark.parametrize("hide", [h for h, _ in HIDE_TRACEBACKS], ids=[i for _, i in HIDE_TRACEBACKS])
def test_hidden_tracebacks_do_not_hide_failures(run_cells, hide):
    # Issue 11.4: with error outputs switched off, a failing cell still fails (the kernel's
    # execute_reply says so), and each failure is tied to its own cell.
    result = run_cells(hide, "raise RuntimeError('hidden')", "x = 1", "1 / 0", "print('done')")
    assert result.status == "cell_error"
    failures = sorted((p.cell, str(p.message)) for p in result.problems)
    # cells: markdown 1, parameters 2, the hiding cell 3, the raise 4, x = 1 5, 1 / 0 6
    assert [cell for cell, _ in failures] == [4, 6]
    assert failures[0][1].startswith("RuntimeError: hidden")
    assert failures[1][1].startswith("ZeroDivisionError")
    # the hiding did work on the outputs: no cell displays an error, so only the replies tell
    assert not any(o.get("output_type") == "error" for c in result.notebook["cells"] for o in c.get("outputs", []))


def test_a_hidden_probe_failure_is_still_a_probe_error(run_cells):
    result = run_cells("get_ipython()._showtraceback = lambda *a, **k: None",
                       probe="raise ValueError('probe broke')")
    assert result.probe_ran
    [problem] = result.problems
    assert problem.in_probe and "ValueError: probe broke" in str(problem.message)


def test_sys_exit_zero_is_not_a_failure_even_from_the_reply(run_cells):
    result = run_cells("import sys\nsys.exit(0)", "print('after')")
    assert result.status == "completed", result.problems
