"""The Ray engine: each submission is a Ray task on an existing cluster.

The task runs the same `grade submit` process as the local pool, on whichever node Ray picks,
and returns what it wrote (result.json and the reports, as bytes) instead of leaving it there:
the submission travels to the node inside the task's arguments and the results travel back in
its return value, so the TA's machine and the GPU runners share no file system. The TA's
machine installs the results exactly as the local pool does.

Ray is optional (`pip install 'grader[ray]'`) and imported only here, only when asked for.

Failure handling, from the inside out:
* the notebook fails, times out, runs out of memory: the sandbox reports it, a graded result;
* the `grade` process hangs: the task's wall-clock guard kills it, an error row;
* the `grade` process dies (a signal, the host's OOM killer): an error row with the signal;
* the Ray worker running the task dies (or its node): Ray retries the task (`MAX_RETRIES`);
  retries spent, an error row. The driver writes a student's folder once, from the one return
  value it receives, so a retry can neither lose nor duplicate a result.

Pinning to loopback: Ray rewrites `127.0.0.1` into the machine's outward address (so that other
nodes could reach it) unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`; for a loopback
`--ray-address` that variable is set before Ray is imported, so a single-machine cluster started
with `--node-ip-address 127.0.0.1` is reached over loopback only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import ipaddress
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

from grader.batch.exceptions import EngineUnavailable
from grader.batch.preload import process_alive
from grader.batch.worker import CoreClaim, GradeProcess, Outcome, grade_argv
from grader.pipeline import GradeOptions

__all__ = ["run_ray", "import_ray", "check_cluster", "pack_submission", "grade_task", "safe_relative_path"]

MAX_RETRIES = 2             # Ray retries of a task whose worker process or node died
WAIT_S = 0.5
INSTALL_HINT = "pip install 'grader[ray]'"
# What a task brings back: the files `grade` writes at the top of its --out folder.
MAX_RETURN_FILE_BYTES = 256 * 2**20
SCRATCH_PREFIX = "grader-ray-"      # a task's scratch folder on its node: grader-ray-<student>-XXXX
OWNER_FILE = ".owner-pid"


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def import_ray(address: str | None = None) -> Any:
    """Import Ray, or raise EngineUnavailable saying what to install."""
    if _is_loopback(address):
        # Must be set before Ray's constants are read (at import): see the module docstring.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise EngineUnavailable(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    if _is_loopback(address) and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        # Ray was imported earlier in this process (before the variable was set): same switch.
        from ray._private import ray_constants

        if getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
            ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def pack_submission(path: Path) -> tuple[str, str, bytes]:
    """(name, kind, bytes) of a submission for the trip to a worker node: a file as it is, a
    folder as an uncompressed tar (links kept as links, so intake judges them as it would here)."""
    path = Path(path)
    if not path.is_dir():
        return path.name, "file", path.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(path, arcname=path.name, recursive=True)
    return path.name, "folder", buffer.getvalue()


def _unpack(name: str, kind: str, data: bytes, dest: Path) -> Path:
    if kind == "file":
        target = dest / name
        target.write_bytes(data)
        return target
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        # The archive was made by pack_submission from a folder walk; "tar" still refuses absolute
        # paths and `..`, and keeps links as links for intake to reject.
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(dest, filter="tar")
        else:  # pragma: no cover - Python without extraction filters
            tar.extractall(dest)
    return dest / name


def _sweep_orphans() -> None:
    """Remove the scratch folders of tasks whose worker process died (a SIGKILL skips their
    clean-up) and whose `grade` process ended too: a node that loses workers must not fill its
    /tmp with copies of submissions."""
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            owners = [int(pid) for pid in (folder / OWNER_FILE).read_text(encoding="ascii").split()]
        except (OSError, ValueError):
            continue  # no owner file yet (just created), or not ours to judge
        if owners and not any(process_alive(pid) for pid in owners):
            shutil.rmtree(folder, ignore_errors=True)


def _collect(out_dir: Path) -> dict[str, bytes]:
    """Everything `grade` wrote, by path relative to its --out folder ("result.json",
    "figures/causal-mask.png"): plain files only, no link followed."""
    files: dict[str, bytes] = {}
    if not out_dir.is_dir():
        return files
    for folder, dirs, names in os.walk(out_dir):  # os.walk does not descend into linked folders
        dirs.sort()
        for name in sorted(names):
            f = Path(folder) / name
            if f.is_file() and not f.is_symlink() and f.stat().st_size <= MAX_RETURN_FILE_BYTES:
                files[f.relative_to(out_dir).as_posix()] = f.read_bytes()
    return files


def safe_relative_path(name: str) -> Path | None:
    """`name` as a path inside a results folder, or None when it could leave it (absolute, `..`,
    empty parts, backslashes): what comes back from a node is data, never a path to trust."""
    parts = name.split("/")
    if not name or "\\" in name or "\x00" in name or any(part in ("", ".", "..") for part in parts):
        return None
    return Path(*parts)


def _task_gpus() -> str | None:
    """The GPUs Ray gave this task, as `--gpus` takes them ("3", "0,1"); None for none. Ray
    sets $CUDA_VISIBLE_DEVICES for the task's worker, but the sandbox builds the notebook's
    environment afresh (and a container sees only the devices it is given), so the grant must be
    handed on explicitly: without it every notebook on the node would see every GPU."""
    import ray

    ids = [str(i) for i in ray.get_gpu_ids()]
    return ",".join(ids) if ids else None


def grade_task(student: str, name: str, kind: str, data: bytes, options: GradeOptions,
               limit_s: float) -> dict:
    """Body of the Ray task (runs on a worker node): unpack, run `grade`, return what it wrote.

    Returns {"files": {name: bytes}, "outcome": Outcome.to_json()}. Never raises for a problem of
    the submission or of the `grade` process: those are data for the driver."""
    started = time.monotonic()
    if options.device.startswith("cuda"):
        options = dataclasses.replace(options, gpus=_task_gpus() or options.gpus)
    _sweep_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{student}-") as tmp:
        scratch = Path(tmp)
        (scratch / OWNER_FILE).write_text(str(os.getpid()), encoding="ascii")
        (scratch / "in").mkdir()
        submission = _unpack(name, kind, data, scratch / "in")
        out_dir = scratch / "out"
        # Ray counts the task as one CPU but does not pin it: claim a core of this node so that
        # torch starts one thread instead of spinning on cores other tasks use (see cpu_slots).
        with CoreClaim() if options.device == "cpu" else contextlib.nullcontext() as claim:
            process = GradeProcess(grade_argv(submission, out_dir, options), log_path=scratch / "grade.log",
                                   limit_s=limit_s, cwd=scratch, cpus=claim.cpus if claim else None)
            try:
                process.start()
                # The worker and its `grade`: the folder is an orphan only once both are gone.
                (scratch / OWNER_FILE).write_text(f"{os.getpid()} {process.pid}", encoding="ascii")
                outcome = process.wait()
            finally:
                process.stop_and_wait(grace_s=5.0)  # a cancelled task leaves no `grade` behind
        files = _collect(out_dir)
    _sweep_orphans()  # again: an orphan still stopping at the start has ended by now
    outcome.host = socket.gethostname()
    outcome.wall_s = round(time.monotonic() - started, 3)
    return {"files": files, "outcome": outcome.to_json()}


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds when nothing listens at HOST:PORT: `ray.init` would retry for minutes."""
    if not address or "://" in address or ":" not in address:
        return  # "auto", a ray:// client address, ...: Ray resolves those itself
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except ValueError:
        raise EngineUnavailable(f"--ray-address {address}: expected HOST:PORT") from None
    except OSError as exc:
        raise EngineUnavailable(f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one with "
                                "`ray start --head` or give its address with --ray-address HOST:PORT") from exc


def check_cluster(address: str | None) -> None:
    """Before any work: Ray is installed and something listens at `address` (EngineUnavailable)."""
    import_ray(address)
    _probe(address)


def _connect(ray: Any, address: str | None) -> bool:
    """Connect the driver; True when this call connected (and so must disconnect)."""
    if ray.is_initialized():
        return False
    _probe(address)
    try:
        ray.init(address=address or "auto", log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "auto (RAY_ADDRESS or the cluster started on this machine)"
        raise EngineUnavailable(f"cannot connect to a Ray cluster at {where}: {exc}. Start one with "
                                "`ray start --head` or give its address with --ray-address HOST:PORT") from exc
    return True


def _ray_failure(exc: BaseException) -> str:
    """One line for a task that returned no value (its worker or node lost, retries spent)."""
    kind = type(exc).__name__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lost = kind in ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "LocalRayletDiedError")
    retried = f" after {MAX_RETRIES} retries" if lost else ""
    return f"the Ray task failed{retried} ({kind})" + (f": {lines[0][:300]}" if lines else "")


def _slots(ray: Any, gpu: bool) -> int:
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU" if gpu else "CPU", 1)))


def run_ray(jobs: Sequence, *, address: str | None, workers: int | None, options: GradeOptions,
            limit_s: float, write_files: Callable[[object, dict[str, bytes]], Path],
            on_done: Callable[[object, Path, Outcome], None],
            on_start: Callable[[object], None] | None = None) -> None:
    """Grade `jobs` as Ray tasks on the cluster at `address` (None: "auto").

    At most `workers` tasks are in flight (default: twice the cluster's CPU or GPU slots), which
    keeps every slot busy while bounding the submissions held in the object store. For each
    finished task `write_files(job, files)` puts the returned files into a fresh local folder and
    `on_done(job, folder, outcome)` takes over, as in the local pool. On KeyboardInterrupt the
    tasks in flight are cancelled (their workers killed, which stops their `grade` processes)."""
    ray = import_ray(address)
    connected = _connect(ray, address)
    try:
        gpu = options.device.startswith("cuda")
        # One GPU per submission when the notebook runs on one; else one CPU.
        remote = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0,
                            max_retries=MAX_RETRIES, retry_exceptions=False)(grade_task)
        cap = workers if workers else 2 * _slots(ray, gpu)
        queue = deque(jobs)
        in_flight: dict[Any, object] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < cap:
                    job = queue.popleft()
                    try:
                        # The path to grade (a staged copy under a UTF-8 name where INPUT's is not).
                        name, kind, data = pack_submission(job.source)
                    except OSError as exc:  # unreadable now: that student's error row, not the batch's
                        on_done(job, write_files(job, {}), Outcome(
                            returncode=None, wall_s=0.0, error=f"the submission could not be packed for Ray: {exc}"))
                        continue
                    ref = remote.options(name=f"grade:{job.entry.student}").remote(
                        job.entry.student, name, kind, data, options, limit_s)
                    in_flight[ref] = job
                    if on_start is not None:
                        on_start(job)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    job = in_flight.pop(ref)
                    try:
                        payload = ray.get(ref)
                        files, outcome = payload["files"], Outcome(**payload["outcome"])
                    except ray.exceptions.RayError as exc:
                        files, outcome = {}, Outcome(returncode=None, wall_s=0.0, error=_ray_failure(exc))
                    on_done(job, write_files(job, files), outcome)
        except BaseException:
            for ref in in_flight:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort while stopping
                    pass
            raise
    finally:
        if connected:
            ray.shutdown()
