"""The docker sandbox against a real engine: dockerd is started here on a private socket (root
and Debian's docker.io needed; `.ci/run` installs them), the CPU image is built offline (a
debootstrap base and the torch wheel on disk) and cached in the engine's data root between runs.
Run alone with `pytest -m docker`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from grader.errors import SandboxUnavailable
from grader.pipeline import GradeOptions, grade_submission
from grader.sandbox import SandboxJob, run_notebook

from tests.conftest import REPO, SOLUTION, make_notebook

pytestmark = [pytest.mark.docker, pytest.mark.notebook]
docker = pytest.importorskip("docker", reason="the docker extra is not installed (pip install 'grader[docker]')")
IMAGE = "grader-sandbox:cpu"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "grader-tests" / "dockerd"


def _start_dockerd() -> tuple[subprocess.Popen, Path, str]:
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        pytest.skip("starting a Docker engine needs root and dockerd (apt-get install docker.io)")
    run_dir = Path(tempfile.mkdtemp(prefix="gd-"))  # short: unix socket paths are limited to 108 bytes
    CACHE.mkdir(parents=True, exist_ok=True)
    host = f"unix://{run_dir}/docker.sock"
    log = open(run_dir / "dockerd.log", "wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(CACHE), "--exec-root", str(run_dir / "exec"), "-H", host,
         "--pidfile", str(run_dir / "dockerd.pid"), "--iptables=false", "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    for _ in range(120):
        try:
            docker.DockerClient(base_url=host, timeout=120).ping()
            return proc, run_dir, host
        except Exception:  # noqa: BLE001 - still starting
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    _stop(proc)
    pytest.fail(f"dockerd did not start: {(run_dir / 'dockerd.log').read_text()[-2000:]}")


@pytest.fixture(scope="session")
def engine():
    """DOCKER_HOST for an engine with the sandbox image: ours, started here and stopped after."""
    proc, run_dir, host = _start_dockerd()
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host
    try:
        client = docker.from_env(timeout=600)
        try:
            client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            from grader.sandbox.images import build_image

            build_image(client, "cpu", IMAGE)
        yield client
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        _stop(proc)
        shutil.rmtree(run_dir, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop only the engine we started (by its own pid; it stops its containerd)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_in_docker(tmp_path: Path, *sources: str, cell_timeout_s=20, timeout_s=90, memory_mb=1024, gpus=None):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    job = SandboxJob(notebook=make_notebook(*sources), workdir=work, parameters={"SEED": 0}, probe_source=None,
                     cell_timeout_s=cell_timeout_s, timeout_s=timeout_s, memory_mb=memory_mb, gpus=gpus)
    return run_notebook(job, "docker")


def containers(client) -> list:
    return client.containers.list(all=True, filters={"label": "grader.sandbox"})


def test_the_reference_gets_the_same_grade_in_docker_as_in_the_local_sandbox(engine, tmp_path):
    results = {}
    for sandbox in ("local", "docker"):
        options = GradeOptions(sandbox=sandbox, seed=1234, cell_timeout_s=120, timeout_s=300)
        results[sandbox] = grade_submission(SOLUTION, tmp_path / sandbox, options)
    local, in_docker = results["local"], results["docker"]
    assert in_docker["status"] == "graded", in_docker.get("reason")
    assert in_docker["execution"]["backend"] == "docker" and in_docker["execution"]["network"] is False
    assert (in_docker["score"], in_docker["bonus"]) == (local["score"], local["bonus"])
    assert [(c["id"], c["status"], c["score"]) for c in in_docker["checks"]] == \
           [(c["id"], c["status"], c["score"]) for c in local["checks"]]
    assert containers(engine) == []


def test_a_fork_bomb_is_stopped_by_the_pids_limit(engine, tmp_path):
    result = run_in_docker(tmp_path, "import os\nfor _ in range(100000):\n    os.fork()", "survived = 1",
                           cell_timeout_s=15, timeout_s=60)
    assert result.status != "sandbox_error"
    assert result.duration_s < 60
    assert containers(engine) == []  # the container, and every forked process with it, is gone


def test_a_memory_bomb_is_reported_as_out_of_memory(engine, tmp_path):
    result = run_in_docker(tmp_path, "hog = []\nwhile True:\n    block = bytearray(64 * 2**20)\n"
                                     "    block[::4096] = b'x' * len(block[::4096])\n    hog.append(block)",
                           memory_mb=768)
    assert result.status == "oom"
    assert result.problems[0].cell == 3 and "out of memory" in str(result.problems[0].message)


def test_an_infinite_loop_times_out_and_the_running_cell_is_named(engine, tmp_path):
    per_cell = run_in_docker(tmp_path, "while True:\n    pass", "after = 1", cell_timeout_s=3)
    assert per_cell.status == "cell_timeout" and per_cell.problems[0].cell == 3
    total = run_in_docker(tmp_path, "import time\ntime.sleep(600)", cell_timeout_s=600, timeout_s=8)
    assert total.status == "timeout"
    assert total.problems[0].cell == 3 and "total time limit of 8 s" in str(total.problems[0].message)
    assert containers(engine) == []


def test_no_network_and_no_writes_outside_the_working_copy(engine, tmp_path):
    result = run_in_docker(
        tmp_path,
        "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=3)\n    net = 'open'\n"
        "except OSError as exc:\n    net = str(exc)",
        "import os\nwritable = []\nfor path in ['/etc/x', '/usr/x', '/sandbox/runner.py', '/x']:\n    try:\n"
        "        open(path, 'w').write('x')\n        writable.append(path)\n    except OSError:\n        pass",
        "open('inside.txt', 'w').write('fine')\nopen('/tmp/scratch', 'w').write('fine')",
        "assert net != 'open', net\nassert writable == [], writable",
    )
    assert result.status == "completed", result.problems
    assert result.network is False


def test_the_notebook_cannot_find_the_reference_the_rubrics_or_the_hidden_checks(engine, tmp_path):
    result = run_in_docker(
        tmp_path,
        "import os\nfound = []\nfor root, dirs, files in os.walk('/'):\n"
        "    if root.startswith(('/proc', '/sys', '/dev')):\n        dirs[:] = []\n        continue\n"
        "    found += [os.path.join(root, n) for n in dirs + files\n"
        "              if n in ('hidden_checks', 'solutions', 'rubrics', 'self_attention.py', 'w6-self-attention.yaml')]\n"
        "assert found == [], found",
        "import importlib.util\nassert importlib.util.find_spec('reference') is None\n"
        "assert importlib.util.find_spec('grader') is None",
    )
    assert result.status == "completed", result.problems


def test_a_gpu_request_without_a_gpu_runtime_fails_before_any_container_starts(engine, tmp_path):
    before = len(engine.containers.list(all=True))
    with pytest.raises(SandboxUnavailable, match="no NVIDIA runtime"):
        run_in_docker(tmp_path, "x = 1", gpus="all")
    assert len(engine.containers.list(all=True)) == before


def test_containers_left_by_a_dead_grader_are_removed_on_the_next_start(engine):
    import socket

    from grader.sandbox.docker import DockerBackend

    dead = subprocess.Popen(["true"])
    dead.wait()
    engine.containers.create(IMAGE, command=["true"], labels={
        "grader.sandbox": "1", "grader.pid": str(dead.pid), "grader.host": socket.gethostname()})
    assert len(containers(engine)) == 1
    DockerBackend().client()  # starting the backend sweeps
    assert containers(engine) == []


def test_the_cli_grades_in_docker(engine, tmp_path):
    done = subprocess.run([sys.executable, "-m", "grader.cli", str(SOLUTION), "--sandbox", "docker", "--out",
                           str(tmp_path / "out"), "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["execution"]["isolation"].startswith("docker")


def test_a_cell_that_ignores_signals_and_hangs_gets_the_same_result_in_a_docker_batch(engine, tmp_path):
    """The fourth way of tests/test_batch_signals.py: a docker batch grades the hanging notebook
    as the local sandbox does alone (timed out in the hanging cell, same verdicts and reason)."""
    from tests.test_batch_signals import (EXPECTED_REASON, LIMITS, assert_timed_out_in_the_hanging_cell,
                                          gradebook_row, hanging_submission, verdict)

    inp = tmp_path / "in"
    hanging_submission(inp / "hang")
    runs = {
        "docker": [sys.executable, "-m", "grader.cli", "batch", str(inp), "--out", str(tmp_path / "docker"),
                   "--workers", "1", "-q", "--sandbox", "docker", *LIMITS],
        "alone": [sys.executable, "-m", "grader.cli", "submit", str(inp / "hang"), "--out", str(tmp_path / "alone"),
                  "-q", "--sandbox", "local", *LIMITS],
    }
    procs = {name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, argv in runs.items()}
    outputs = {name: proc.communicate(timeout=300) for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, outputs[name][1])
    in_docker = json.loads((tmp_path / "docker" / "hang" / "result.json").read_text(encoding="utf-8"))
    alone = json.loads((tmp_path / "alone" / "result.json").read_text(encoding="utf-8"))
    assert in_docker["execution"]["backend"] == "docker"
    assert_timed_out_in_the_hanging_cell(in_docker)
    assert verdict(in_docker) == verdict(alone)
    assert gradebook_row(tmp_path / "docker", "hang")["reason"] == EXPECTED_REASON
    assert containers(engine) == []


def test_the_image_holds_every_module_the_reference_notebooks_import(engine, tmp_path):
    """Each assignment's reference grades in the docker sandbox: every top-level module its
    notebook imports is importable in the image (checked in one container for all of them)."""
    import ast

    import nbformat

    modules = set()
    local = set()  # the submission's own code (the midterm's package), copied in with it
    for folder in (REPO / "reference" / "solutions").iterdir():
        local |= {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    for notebook in sorted((REPO / "reference" / "solutions").glob("*/*.ipynb")):
        for cell in nbformat.read(str(notebook), as_version=4).cells:
            if cell.cell_type != "code":
                continue
            source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    modules -= local
    assert {"torch", "numpy", "matplotlib"} <= modules
    probe = "import importlib\nfor name in %r:\n    importlib.import_module(name)\nprint('ALL-IMPORTED')" % sorted(modules)
    execution = run_in_docker(tmp_path, probe, cell_timeout_s=120, timeout_s=240)
    assert execution.status == "completed", [(p.kind, str(p.message)) for p in execution.problems]
    outputs = "".join(o.get("text", "") for cell in execution.notebook["cells"] for o in cell.get("outputs", []))
    assert "ALL-IMPORTED" in outputs
