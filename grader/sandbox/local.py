"""The `local` sandbox: a separate process tree on this machine (the embedded default).

Containment, strongest available first:
- bubblewrap (`bwrap`, Debian's `bubblewrap`): new user/pid/net/ipc/uts namespaces, a read-only
  view of the system and of the Python environment only (not the grader's repository, so neither
  the reference solutions nor hidden checks nor rubrics are reachable), a private /tmp, the
  working copy as the only writable place (plus a private /tmp), no network (loopback only);
- `unshare -n` (root only): no network, but the file system is shared;
- nothing: a plain child process (reported as `isolation: none`, `network: true`).
Everywhere: a scrubbed environment (none of the grader's variables, tokens or secrets), rlimits
(address space = the memory cap, no core dumps, bounded file size), a total timeout that kills the
whole process group, and the per-cell timeout enforced by papermill.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from grader.errors import SandboxFailure
from grader.sandbox import RUNNER_PATH, ExecutionResult, SandboxJob, SandboxPaths, classify, read_events

INSIDE_ROOT = "/sandbox"
MAX_REPORT_BYTES = 256 * 2**20
MAX_FILE_BYTES = 2 * 2**30


def _bwrap_works() -> bool:
    exe = shutil.which("bwrap")
    if not exe:
        return False
    probe = subprocess.run(
        [exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
        capture_output=True, timeout=20,
    )
    return probe.returncode == 0


def _unshare_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=20)
    return probe.returncode == 0


_ISOLATION_CACHE: str | None = None


def detect_isolation() -> str:
    """The strongest containment this machine allows (cached: it does not change during a run)."""
    global _ISOLATION_CACHE
    if _ISOLATION_CACHE is None:
        forced = os.environ.get("GRADER_LOCAL_ISOLATION")  # for tests of the weaker fallbacks
        if forced in ("bwrap", "unshare", "none"):
            _ISOLATION_CACHE = forced
        elif _bwrap_works():
            _ISOLATION_CACHE = "bwrap"
        elif _unshare_works():
            _ISOLATION_CACHE = "unshare"
        else:
            _ISOLATION_CACHE = "none"
    return _ISOLATION_CACHE


def _python_roots() -> list[str]:
    """Folders the sandbox's Python needs: the environment and the interpreter it is built on."""
    roots = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    return sorted(roots)


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _gpu_binds() -> list[str]:
    args: list[str] = []
    for dev in sorted(Path("/dev").glob("nvidia*")):
        args += ["--dev-bind", str(dev), str(dev)]
    return args


class LocalBackend:
    name = "local"

    def check_available(self, job: SandboxJob | None) -> None:
        # Always available: the weakest isolation is a plain process, reported as such.
        return None

    def paths(self, job: SandboxJob, isolation: str) -> SandboxPaths:
        if isolation == "bwrap":
            return SandboxPaths(f"{INSIDE_ROOT}/work", f"{INSIDE_ROOT}/data" if job.data_dir else None)
        return SandboxPaths(str(job.workdir), str(job.data_dir) if job.data_dir else None)

    def _environment(self, home: str, job: SandboxJob) -> dict[str, str]:
        env = {
            "PATH": f"{os.path.join(sys.prefix, 'bin')}:/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": home,
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": home,
            "IPYTHONDIR": os.path.join(home, ".ipython"),
            "JUPYTER_RUNTIME_DIR": os.path.join(home, ".jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
        if job.gpus is None:
            env["CUDA_VISIBLE_DEVICES"] = ""
        elif job.gpus != "all":
            env["CUDA_VISIBLE_DEVICES"] = job.gpus
            # Ids in the driver's (nvidia-smi's, Docker's) order, not CUDA's fastest-first one.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        return env

    def run(self, job: SandboxJob) -> ExecutionResult:
        isolation = detect_isolation()
        paths = self.paths(job, isolation)
        parameters = dict(job.parameters)
        if paths.data is not None:
            parameters["DATA_DIR"] = paths.data
        request = {
            "notebook": job.notebook,
            "probe": job.probe_source is not None,
            "parameters": parameters,
            "cell_timeout_s": job.cell_timeout_s,
            "kernel_name": "python3",
            "cwd": paths.work,
        }
        with tempfile.TemporaryDirectory(prefix="grader-local-") as scratch:
            runner_copy = Path(scratch) / "runner.py"
            shutil.copyfile(RUNNER_PATH, runner_copy)
            home_outside = Path(scratch) / "home"
            home_outside.mkdir()
            read_fd, write_fd = os.pipe()
            if isolation == "bwrap":
                home = "/tmp/home"
                argv = [
                    shutil.which("bwrap") or "bwrap",
                    "--unshare-all", "--die-with-parent", "--new-session",
                    # The private /tmp first: later binds may live under /tmp (a venv there).
                    "--proc", "/proc", "--dev", "/dev",
                    "--tmpfs", "/tmp", "--dir", home,
                    *_system_binds(),
                    *sum((["--ro-bind", root, root] for root in _python_roots()), []),
                    "--bind", str(job.workdir), paths.work,
                    "--ro-bind", str(runner_copy), f"{INSIDE_ROOT}/runner.py",
                    *(["--ro-bind", str(job.data_dir), paths.data] if job.data_dir and paths.data else []),
                    *(_gpu_binds() if job.gpus else []),
                    "--chdir", paths.work,
                    "--uid", "1000", "--gid", "1000",
                    "--cap-drop", "ALL",
                    sys.executable, f"{INSIDE_ROOT}/runner.py", str(write_fd),
                ]
                # bwrap's --share-net re-enables the network; we never give it by default.
                if job.network:
                    argv.insert(2, "--share-net")
            else:
                home = str(home_outside)
                argv = [sys.executable, str(runner_copy), str(write_fd)]
                if isolation == "unshare" and not job.network:
                    argv = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
            env = self._environment(home, job)
            memory_bytes = job.memory_mb * 2**20

            # The CUDA driver reserves tens of GB of address space, so an address-space cap would
            # break any GPU run: with a GPU the cap is the container's (docker), not an rlimit.
            cap_address_space = not job.gpus

            def limit_resources() -> None:
                if cap_address_space:
                    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))

            log_path = Path(scratch) / "sandbox.log"
            started = time.monotonic()
            with open(log_path, "wb") as log:
                try:
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
                        cwd=str(job.workdir), pass_fds=(write_fd,), start_new_session=True,
                        preexec_fn=limit_resources,
                    )
                except OSError as exc:
                    os.close(read_fd)
                    os.close(write_fd)
                    raise SandboxFailure(f"could not start the local sandbox: {exc}") from exc
                os.close(write_fd)
                chunks: list[bytes] = []
                reader = threading.Thread(target=_drain, args=(read_fd, chunks), daemon=True)
                reader.start()
                feeder = threading.Thread(target=feed_stdin, args=(proc, request, job, paths), daemon=True)
                feeder.start()
                timed_out = False
                try:
                    proc.wait(timeout=job.timeout_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill_group(proc)
                except BaseException:
                    _kill_group(proc)  # Ctrl-C or a grader crash: leave no sandbox behind
                    raise
                reader.join(timeout=30)
                feeder.join(timeout=30)
            duration = time.monotonic() - started
            exit_signal = -proc.returncode if proc.returncode and proc.returncode < 0 else None
            events = read_events(b"".join(chunks))
            log_tail = log_path.read_bytes()[-4000:].decode("utf-8", errors="replace")
        status, problems, notebook, payloads = classify(
            events, cell_timeout_s=job.cell_timeout_s, timed_out=timed_out, timeout_s=job.timeout_s,
            exit_signal=exit_signal, killed_by_grader=timed_out,
        )
        if status == "sandbox_error" and not problems:
            raise SandboxFailure(f"the local sandbox ({isolation}) ended without a report "
                                 f"(exit {proc.returncode}): {log_tail[-800:]}")
        return ExecutionResult(
            status=status, problems=problems, notebook=notebook, probe_ran=payloads is not None,
            probe_payloads=payloads or [],
            duration_s=duration, backend=self.name, isolation=isolation,
            network=job.network or isolation == "none", log_tail=log_tail,
            extra={"memory_cap": "address space" if cap_address_space else "none (GPU run)"},
        )


def feed_stdin(proc: subprocess.Popen, request: dict, job: SandboxJob, paths: SandboxPaths) -> None:
    """Send the job, then the probe once it is ready: it is built here, while the notebook runs, so
    the grader's own start-up (torch, the reference values) hides behind the student's cells."""
    try:
        proc.stdin.write((json.dumps(request) + "\n").encode())
        proc.stdin.flush()
        if job.probe_source is not None:
            try:
                source = job.probe_source(paths)
            except Exception as exc:  # noqa: BLE001 - reported by the pipeline; the run goes on
                job.probe_error = exc
                source = None
            line = json.dumps({"probe_source": source}) if source is not None else ""
            proc.stdin.write((line + "\n").encode())
        proc.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the run ended (or was killed) before it needed the probe


def _drain(fd: int, chunks: list[bytes]) -> None:
    total = 0
    with os.fdopen(fd, "rb") as stream:
        while True:
            block = stream.read(1 << 16)
            if not block:
                return
            total += len(block)
            if total <= MAX_REPORT_BYTES:
                chunks.append(block)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
