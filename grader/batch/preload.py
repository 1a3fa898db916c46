"""A fork server for grading processes: `grade submit` without paying its imports every time.

Every `grade submit` imports torch, numpy, nbformat, the page renderer and the grader: about 3 s of CPU
of the about 15 s a smoke submission takes (2 cores). In a batch that CPU is taken from the
notebooks running beside it. The server (`python -m grader.batch.preload`, one per process that
grades: the batch, each Ray worker) imports them once, then forks one process per submission,
which runs `grade submit` in the already-loaded interpreter. Each submission still has a process
of its own: a crash, a hang or a kill ends that process only.

Why not multiprocessing's forkserver: its children re-import the caller's `__main__` (a Ray
worker's, a script's), which must not run again. This one runs nothing but `grade`.

Fork safety: the server is a fresh interpreter (started by exec, never forked from the caller,
which may hold threads: a Ray worker does) and stays single-threaded; importing torch runs no
operator, so no thread pool exists yet that a fork would break.

Protocol (one JSON object a line): the client writes {"id", "argv", "log", "cwd", "env", "cpus"}
on the server's stdin; the server answers {"id", "pid"} once forked (or {"id", "error"}), and
{"pid", "status"} when that child ended (its exit status; -N: killed by signal N). The server
exits when its stdin closes (the client ended): its children get SIGINT then (parent-death
signal), which `grade` takes as Ctrl-C and stops its sandbox.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["PRELOAD_MODULES", "PRELOAD_ENV", "preload_enabled", "PreloadedChild", "process_alive",
           "fresh_interpreter_signals"]

# What every `grade submit` imports, loaded once into the server.
PRELOAD_MODULES = ("torch", "numpy", "sympy", "safetensors.torch", "nbformat", "nh3", "markdown_it", "matplotlib",
                   "matplotlib.figure", "matplotlib.backends.backend_agg", "pyflakes.api", "grader.cli",
                   "grader.pipeline", "grader.judge", "grader.report", "grader.assignments", "grader.probe",
                   "grader.sandbox")
PRELOAD_ENV = "GRADER_BATCH_PRELOAD"    # "0": start each `grade` as a fresh interpreter instead
START_TIMEOUT_S = 120.0                  # the imports, on a loaded machine

_PR_SET_PDEATHSIG, _PR_SET_NAME = 1, 15
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def preload_enabled() -> bool:
    return os.environ.get(PRELOAD_ENV, "1") != "0" and sys.platform.startswith("linux")


# --------------------------------------------------------------------------------------------
# the server (its own process)
# --------------------------------------------------------------------------------------------


def _dispositions() -> dict[int, object]:
    """Every signal's Python-level handler (SIG_DFL, SIG_IGN or a Python function)."""
    found = {}
    for sig in signal.valid_signals():
        try:
            found[sig] = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
    return found


# What this interpreter started with, taken before any import can change it: a fresh `python`
# keeps the dispositions it was started with where they are SIG_IGN (`nohup` ignores SIGHUP, and
# so does every `grade` started under it), and otherwise has every signal at its default except
# SIGPIPE and SIGXFSZ ignored and SIGINT raising KeyboardInterrupt.
_AT_START = _dispositions()


def fresh_interpreter_signals() -> None:
    """Give this process the signal dispositions a fresh `python` started like this one starts
    with (`_AT_START`): every signal at its default, except SIGPIPE and SIGXFSZ ignored, SIGINT
    raising KeyboardInterrupt, and what the parent had ignored still ignored.

    Why it matters: `grade` writes the probe into its sandbox's stdin from a thread, a write
    that blocks while the notebook runs (the pipe holds 64 KiB and the runner reads the probe
    only when the probe cell starts). When the total timeout kills the sandbox, that write fails
    with EPIPE. With SIGPIPE ignored, as in any Python process, that is the BrokenPipeError the
    feeder expects; with SIGPIPE at its default (what this child used to set) the kernel killed
    the whole grading process, and a timed-out notebook became an error row without a result."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        ignored = _AT_START.get(sig) is signal.SIG_IGN
        try:
            signal.signal(sig, signal.SIG_IGN if ignored else signal.SIG_DFL)
        except (OSError, ValueError):  # real-time signals the C library keeps for itself
            pass
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_IGN)
    if _AT_START.get(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # SIGINT is `grade`'s Ctrl-C


def _grade_in_child(request: dict) -> None:
    """In the forked child: what a fresh `grade` process would get (its own session, signals,
    CPUs, files, folder, environment), then `grade submit`. Never returns."""
    code = 3
    try:
        os.setsid()  # its own session: it and its sandbox can be killed as a group
        fresh_interpreter_signals()  # whatever the server or its imports changed
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)  # the server (so the client) died
            _prctl(_PR_SET_NAME, b"grade", 0, 0, 0)
        if request.get("cpus"):
            os.sched_setaffinity(0, request["cpus"])
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDWR)
        for target, source in ((0, null), (1, null), (2, log)):
            os.dup2(source, target)
        # Nothing of the server's: above all not its pipe to the client, which must see the
        # server's end when the server ends, not when its last child does.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]  # python -m grader.cli submit PATH ...
        sys.argv = ["grade", *argv[3:]]
        from grader.cli import run

        run()  # ends the process with `grade`'s exit status
    except BaseException as exc:  # noqa: BLE001 - end with a status and a line in the log, whatever happened
        try:
            os.write(2, f"grade: the preloaded grading process failed: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    os._exit(code)


def serve() -> None:
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # first: the terminal's Ctrl-C is the client's to handle
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional module is imported (or not) by `grade` itself
            pass
    try:
        from grader.pipeline import warm_up

        warm_up()  # compiled report templates, inherited by every child
    except Exception:  # noqa: BLE001 - only a head start: each child does it itself otherwise
        pass
    out = os.fdopen(os.dup(1), "w", buffering=1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wakeup fd hears of it
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "requests")
    selector.register(wake_r, selectors.EVENT_READ, "children")
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.data == "children":
                os.read(wake_r, 4096)
                _reap(out)
                continue
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:
                return  # the client is gone: our children get their parent-death signal
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    out.write(json.dumps({"id": request["id"], "error": str(exc)}) + "\n")
                    continue
                if pid == 0:
                    selector.close()
                    _grade_in_child(request)
                out.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")
        _reap(out)


def _reap(out) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        out.write(json.dumps({"pid": pid, "status": os.waitstatus_to_exitcode(status)}) + "\n")


# --------------------------------------------------------------------------------------------
# the client (the batch, a Ray worker)
# --------------------------------------------------------------------------------------------


class _Server:
    """The running server, seen from the client: requests go in, pids and statuses come back
    (read by a thread of the client)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "grader.batch.preload"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                                     start_new_session=True)
        self.changed = threading.Condition()
        self.pids: dict[int, int | str] = {}          # request id -> pid (or the error)
        self.statuses: dict[int, int] = {}            # pid -> exit status
        self.alive = True
        self.next_id = 0
        threading.Thread(target=self._read, name="grade-preload-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.changed:
                if "status" in message:
                    self.statuses[message["pid"]] = message["status"]
                else:
                    self.pids[message["id"]] = message.get("pid") or message.get("error") or "no pid"
                self.changed.notify_all()
        with self.changed:
            # The server died (its children got SIGINT and end soon): nobody will report their
            # statuses. Each is taken as killed once it is gone (see PreloadedChild.poll).
            self.alive = False
            self.changed.notify_all()

    def fork(self, request: dict) -> int:
        assert self.proc.stdin is not None
        with self.changed:  # one request at a time, whichever thread asks
            self.next_id += 1
            request_id = self.next_id
            self.proc.stdin.write((json.dumps({"id": request_id, **request}) + "\n").encode())
            self.proc.stdin.flush()
            if not self.changed.wait_for(lambda: request_id in self.pids or not self.alive, timeout=START_TIMEOUT_S):
                raise OSError(f"the preloaded grading server did not answer in {START_TIMEOUT_S:g} s")
            answer = self.pids.pop(request_id, "the preloaded grading server ended")
            if isinstance(answer, str):
                raise OSError(answer)
            return answer


_server: _Server | None = None
_server_lock = threading.Lock()


def _get_server() -> _Server:
    global _server
    with _server_lock:
        if _server is None or not _server.alive or _server.proc.poll() is not None:
            _server = _Server()
        return _server


class PreloadedChild:
    """One `grade submit` forked by the server, behind the part of Popen's interface that
    grader.batch.worker.GradeProcess uses: pid, poll(), wait(), returncode."""

    def __init__(self, server: _Server, pid: int) -> None:
        self._server = server
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def start(cls, argv: list[str], *, log_path: Path, cwd: Path | None, env: dict[str, str] | None,
              cpus: frozenset[int] | None) -> "PreloadedChild":
        server = _get_server()
        pid = server.fork({"argv": list(argv), "log": str(log_path), "cwd": str(cwd) if cwd is not None else None,
                           "env": dict(env if env is not None else os.environ),
                           "cpus": sorted(cpus) if cpus else None})
        return cls(server, pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            with self._server.changed:
                if self.pid in self._server.statuses:
                    self.returncode = self._server.statuses.pop(self.pid)
                elif not self._server.alive and not process_alive(self.pid):
                    self.returncode = -signal.SIGKILL  # ended with its server: its status is lost
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("grade", timeout or 0.0)
            with self._server.changed:
                # Woken by the server's report; polled while the server is gone (an orphan ends
                # unreported).
                self._server.changed.wait(timeout=0.1 if left is None else min(left, 0.1))
        return self.returncode


def process_alive(pid: int) -> bool:
    """True while process `pid` runs (ours or not); a zombie, waiting to be reaped, is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie waiting for its new parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":
    serve()
