"""The `docker` sandbox: one locked-down container per submission (the production backend).

The container gets no network, a read-only root file system, a size-capped tmpfs for scratch, a
non-root user, no capabilities, no new privileges, and memory / CPU / pids limits. Nothing is
bind-mounted from the grader's machine (so a remote `DOCKER_HOST` works): the runner and the
submission's working copy are copied into an anonymous volume before the container starts, the
job and the probe go in on the container's stdin, and the report comes back on its stdout through
the Docker API. Reference code, rubrics and hidden checks are never inside. Containers carry a
label and are removed after the run, on Ctrl-C, and (left over from a crashed grader) on the next
start.

Needs the `docker` package (`pip install 'grader[docker]'`) and an image with Python, papermill,
ipykernel and what the notebooks import (`grade image build`, see grader/sandbox/images.py).
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import threading
import time
from pathlib import Path

from grader.errors import SandboxFailure, SandboxUnavailable
from grader.sandbox import RUNNER_PATH, ExecutionResult, SandboxJob, SandboxPaths, classify, read_events

DEFAULT_IMAGE = "grader-sandbox:cpu"
LABEL = "grader.sandbox"
SANDBOX_ROOT = "/sandbox"
SANDBOX_UID = 1000
MAX_REPORT_BYTES = 256 * 2**20
STDOUT = 1


def _image() -> str:
    return os.environ.get("GRADER_DOCKER_IMAGE", DEFAULT_IMAGE)


def _client():
    try:
        import docker
    except ImportError:
        raise SandboxUnavailable(
            "the docker sandbox needs the Docker SDK: pip install 'grader[docker]'") from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any connection problem means "no engine here"
        where = os.environ.get("DOCKER_HOST", "the default socket")
        raise SandboxUnavailable(f"no Docker engine answers at {where}: {exc}") from None
    return client


def parse_gpus(gpus: str | None):
    """`all` | `N` | `ID,ID` -> a docker DeviceRequest (None: no GPU)."""
    if not gpus:
        return None
    from docker.types import DeviceRequest

    if gpus == "all":
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    if gpus.isdigit():
        return DeviceRequest(count=int(gpus), capabilities=[["gpu"]])
    return DeviceRequest(device_ids=[g.strip() for g in gpus.split(",") if g.strip()], capabilities=[["gpu"]])


def _tar_of(runner: Path, workdir: Path) -> bytes:
    """runner.py (read-only, root's) and work/ (the student's, owned by the sandbox user)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tar.gettarinfo(str(runner), arcname="runner.py")
        info.uid = info.gid = 0
        info.mode = 0o444
        with open(runner, "rb") as handle:
            tar.addfile(info, handle)

        def owned(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
            if member.issym() or member.islnk() or not (member.isfile() or member.isdir()):
                return None  # intake already refused links; never ship one into the container
            member.uid = member.gid = SANDBOX_UID
            member.uname = member.gname = ""
            member.mode = 0o755 if member.isdir() else 0o644
            return member

        tar.add(str(workdir), arcname="work", filter=owned)
    return buffer.getvalue()


def sweep_leftovers(client) -> int:
    """Remove containers that a grader on this host left behind (it crashed or was killed)."""
    removed = 0
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        labels = container.labels or {}
        if labels.get("grader.host") != host:
            continue
        try:
            os.kill(int(labels.get("grader.pid", "0")), 0)
            alive = True
        except (ProcessLookupError, ValueError):
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            container.remove(force=True, v=True)
            removed += 1
    return removed


class DockerBackend:
    name = "docker"

    def __init__(self) -> None:
        self._client = None

    def client(self):
        if self._client is None:
            self._client = _client()
            sweep_leftovers(self._client)
        return self._client

    def check_available(self, job: SandboxJob | None) -> None:
        import docker

        client = self.client()
        try:
            client.images.get(_image())
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(
                f"the sandbox image {_image()} is not on this Docker engine: build it with "
                "`grade image build` (or set GRADER_DOCKER_IMAGE)") from None
        if job is not None and job.gpus:
            runtimes = client.info().get("Runtimes", {})
            if "nvidia" not in runtimes:
                raise SandboxUnavailable(
                    f"a GPU was asked for (--gpus {job.gpus}) but this Docker engine has no NVIDIA runtime "
                    f"(runtimes: {', '.join(sorted(runtimes)) or 'none'}); install the NVIDIA Container Toolkit "
                    "or grade on a GPU runner")

    def paths(self, job: SandboxJob) -> SandboxPaths:
        return SandboxPaths(f"{SANDBOX_ROOT}/work", f"{SANDBOX_ROOT}/data" if job.data_dir else None)

    def run(self, job: SandboxJob) -> ExecutionResult:
        from docker.utils.socket import frames_iter

        client = self.client()
        paths = self.paths(job)
        parameters = dict(job.parameters)
        if paths.data is not None:
            parameters["DATA_DIR"] = paths.data
        request = {"notebook": job.notebook, "probe": job.probe_source is not None, "parameters": parameters,
                   "cell_timeout_s": job.cell_timeout_s, "kernel_name": "python3", "cwd": paths.work}
        memory = f"{job.memory_mb}m"
        container = client.containers.create(
            _image(),
            command=["python3", f"{SANDBOX_ROOT}/runner.py", "stdout"],
            labels={LABEL: "1", "grader.pid": str(os.getpid()), "grader.host": socket.gethostname()},
            user=f"{SANDBOX_UID}:{SANDBOX_UID}",
            working_dir=paths.work,
            environment={"HOME": "/tmp", "TMPDIR": "/tmp", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp",
                         "IPYTHONDIR": "/tmp/.ipython", "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter",
                         "JUPYTER_PLATFORM_DIRS": "1", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"},
            stdin_open=True, tty=False,
            network_mode="bridge" if job.network else "none",
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=1g,mode=1777"},
            # An anonymous volume: writable, removed with the container, and filled before start
            # (put_archive) even on a remote engine, where a bind mount would name the wrong disk.
            mounts=[_volume_mount()] + ([_data_mount(job.data_dir, paths.data)] if job.data_dir else []),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=memory, memswap_limit=memory,
            pids_limit=256,
            nano_cpus=int(float(os.environ.get("GRADER_DOCKER_CPUS", os.cpu_count() or 1)) * 1e9),
            ulimits=[_ulimit("core", 0)],
            device_requests=[r for r in [parse_gpus(job.gpus)] if r],
        )
        try:
            return self._run_container(client, container, job, request, paths, frames_iter)
        finally:
            try:
                container.remove(force=True, v=True)
            except Exception:  # noqa: BLE001 - already gone; the next start sweeps leftovers anyway
                pass

    def _run_container(self, client, container, job, request, paths, frames_iter) -> ExecutionResult:
        if not container.put_archive(SANDBOX_ROOT, _tar_of(RUNNER_PATH, job.workdir)):
            raise SandboxFailure("could not copy the submission into the container")
        sock = client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 0, "stream": 1})
        raw = getattr(sock, "_sock", sock)
        chunks: list[bytes] = []

        def read_stdout() -> None:
            total = 0
            try:
                for stream, data in frames_iter(raw, tty=False):
                    if stream == STDOUT:
                        total += len(data)
                        if total <= MAX_REPORT_BYTES:
                            chunks.append(data)
            except OSError:
                pass

        def send(line: str) -> None:
            raw.sendall((line + "\n").encode())

        def feed() -> None:
            try:
                send(json.dumps(request))
                if job.probe_source is not None:
                    try:
                        source = job.probe_source(paths)
                    except Exception as exc:  # noqa: BLE001 - reported by the pipeline
                        job.probe_error = exc
                        source = None
                    send(json.dumps({"probe_source": source}) if source is not None else "")
            except OSError:
                pass  # the container ended before it needed the probe

        started = time.monotonic()
        container.start()
        reader = threading.Thread(target=read_stdout, daemon=True)
        feeder = threading.Thread(target=feed, daemon=True)
        reader.start()
        feeder.start()
        timed_out = False
        exit_code = None
        try:
            while True:
                remaining = job.timeout_s - (time.monotonic() - started)
                if remaining <= 0:
                    timed_out = True
                    container.kill()
                    exit_code = container.wait(timeout=30)["StatusCode"]
                    break
                try:
                    exit_code = container.wait(timeout=min(remaining, 5))["StatusCode"]
                    break
                except Exception:  # noqa: BLE001 - the SDK's wait timeout is a ConnectionError
                    continue
        except BaseException:
            container.kill()  # Ctrl-C or a grader crash: leave nothing running
            raise
        reader.join(timeout=30)
        duration = time.monotonic() - started
        try:
            raw.close()
        except OSError:
            pass
        container.reload()
        state = container.attrs.get("State", {})
        log_tail = container.logs(stdout=False, stderr=True, tail=50).decode("utf-8", errors="replace")
        # 137 that the grader did not cause is the memory limit: the engine's OOMKilled flag is
        # not reliable on every host (it stays false where the hugetlb cgroup is not mounted).
        killed_by_oom = (exit_code == 137 and not timed_out) or bool(state.get("OOMKilled"))
        status, problems, notebook, payloads = classify(
            read_events(b"".join(chunks)), cell_timeout_s=job.cell_timeout_s, timed_out=timed_out,
            timeout_s=job.timeout_s, exit_signal=9 if killed_by_oom else None, killed_by_grader=timed_out,
        )
        if status == "sandbox_error" and not problems:
            raise SandboxFailure(f"the docker sandbox ended without a report (exit {exit_code}): {log_tail[-800:]}")
        return ExecutionResult(
            status=status, problems=problems, notebook=notebook, probe_ran=payloads is not None,
            probe_payloads=payloads or [], duration_s=duration, backend=self.name,
            isolation=f"docker ({_image()})", network=job.network, log_tail=log_tail,
            extra={"memory_cap": f"cgroup {job.memory_mb} MB", "exit_code": exit_code},
        )


def _volume_mount():
    from docker.types import Mount

    return Mount(target=SANDBOX_ROOT, source=None, type="volume")


def _data_mount(data_dir: Path, target: str | None):
    from docker.types import Mount

    return Mount(target=target or f"{SANDBOX_ROOT}/data", source=str(data_dir), type="bind", read_only=True)


def _ulimit(name: str, value: int):
    from docker.types import Ulimit

    return Ulimit(name=name, soft=value, hard=value)
