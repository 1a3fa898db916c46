"""One submission graded in its own process: `python -m grader.cli submit PATH --out DIR -q ...`.

Both engines use this: the local pool runs several `GradeProcess`es side by side on this
machine, a Ray task runs one on a cluster node. A process of its own per submission is what
keeps the batch alive whatever the submission does: a crash, a hang or a kill ends that process
only, and becomes that student's error row.

The process starts in a session of its own (so it and its children can be killed as a group,
and a Ctrl-C on the terminal reaches only the batch, which then stops its children in order). It
gets SIGINT when the process that started it dies (Linux `PR_SET_PDEATHSIG`): `grade` turns
SIGINT into a clean stop that also kills its sandbox, so a killed batch or Ray worker leaves no
orphaned notebook behind.

The process is forked from a server that has already imported torch and the grader
(grader.batch.preload; about 3 s of CPU saved per submission), or, with GRADER_BATCH_PRELOAD=0,
started as a fresh interpreter; both behave the same to the batch.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from grader.batch.preload import _PR_SET_PDEATHSIG, PreloadedChild, _prctl, preload_enabled  # one prctl binding
from grader.pipeline import GradeOptions

__all__ = ["GradeProcess", "Outcome", "grade_argv", "wall_clock_limit_s", "describe_failure", "STOP_GRACE_S",
           "cpu_slots", "CoreClaim", "visible_gpus", "gpu_slots"]

STOP_GRACE_S = 10.0         # after SIGINT, how long `grade` gets to stop its sandbox before SIGKILL
STDERR_TAIL_CHARS = 2000



def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    def setup() -> None:
        """Runs in the child between fork and exec: SIGINT when the parent dies; the CPUs."""
        # An ignored signal stays ignored across exec, and Python then installs no Ctrl-C
        # handler: whatever started us (a Ray worker, nohup) must not make `grade` ignore our
        # stop request or the parent-death signal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # Likewise a blocked signal stays blocked (and pending) across exec: Ray's worker threads
        # block SIGINT, which left `grade` deaf to SIGINT (seen: it ran on after its worker died).
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


def available_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def cpu_slots(workers: int) -> list[frozenset[int]] | None:
    """The CPUs of each of `workers` side-by-side grading processes: the available CPUs split
    into `workers` disjoint sets (round-robin when there are more workers than CPUs); None for
    one worker, which keeps them all.

    Why: torch (in the notebook and in the judge) starts as many threads as the CPUs it may use,
    and its threads spin while they wait. Two unpinned notebooks on two cores oversubscribe
    them and grade slower together than one after the other (measured: 27-31 s for two vs 11-15 s
    for one); pinned to one core each, torch starts one thread and two take 15-19 s. The
    affinity is inherited through the sandbox (bwrap, the kernel) without any setting in it."""
    cpus = available_cpus()
    if workers <= 1 or len(cpus) <= 1:
        return None
    if workers >= len(cpus):
        return [frozenset({cpus[k % len(cpus)]}) for k in range(workers)]
    return [frozenset(cpus[k * len(cpus) // workers:(k + 1) * len(cpus) // workers]) for k in range(workers)]


def visible_gpus() -> list[str]:
    """The GPU ids this process may hand out: those of $CUDA_VISIBLE_DEVICES where it is set (a
    runner or a scheduler gave this machine's batch a share of its GPUs), else every GPU the
    NVIDIA driver lists (its index, the order of `nvidia-smi` and of Docker's --gpus)."""
    configured = os.environ.get("CUDA_VISIBLE_DEVICES")
    if configured is not None:
        ids = []
        for entry in (e.strip() for e in configured.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA reads the list up to the first invalid id ("-1" hides every GPU)
            ids.append(entry)
        return ids
    try:
        count = sum(1 for _ in Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        count = 0
    return [str(i) for i in range(count)]


def gpu_slots(workers: int, gpus: list[str] | None = None) -> list[str] | None:
    """The GPU of each of `workers` side-by-side grading processes: one GPU each, so that two
    notebooks never share a GPU's memory while there are GPUs enough (round-robin past that);
    None when there is no GPU to hand out. Without this every notebook would see every GPU and
    take the first one (`cuda` is `cuda:0`)."""
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        return None
    return [gpus[k % len(gpus)] for k in range(workers)]


class CoreClaim:
    """One CPU of this machine claimed for one grading process, among every batch and Ray worker
    on the machine: an exclusive `flock` on a file per CPU (released when the holder ends, even
    by a crash). Used by Ray tasks, which Ray counts as one CPU each but does not pin."""

    def __init__(self, lock_dir: Path | None = None):
        self.lock_dir = Path(lock_dir or Path(tempfile.gettempdir()) / "grader-cpu-claims")
        self.cpu: int | None = None
        self._handle = None

    def __enter__(self) -> "CoreClaim":
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self
        for cpu in available_cpus():
            handle = open(self.lock_dir / f"cpu{cpu}.lock", "a")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self.cpu, self._handle = cpu, handle
            break
        return self

    @property
    def cpus(self) -> frozenset[int] | None:
        return frozenset({self.cpu}) if self.cpu is not None else None

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
            self._handle = None


def wall_clock_limit_s(options: GradeOptions) -> float:
    """The guard around one `grade` process: its notebook may take `timeout_s`; start-up, intake,
    judging and the reports take seconds more (more on a loaded machine), so a generous margin.
    Past this the process is taken as hung and killed."""
    return options.timeout_s + max(60.0, 0.25 * options.timeout_s)


def grade_argv(path: Path, out_dir: Path, options: GradeOptions, *, python: str | None = None) -> list[str]:
    """The `grade submit` command line for one submission with `options` (only what the command
    line can express; `call_timeout_s` keeps its default)."""
    # Absolute paths: the process runs in its own scratch folder, not in the caller's.
    argv = [python or sys.executable, "-m", "grader.cli", "submit", os.path.abspath(path),
            "--out", os.path.abspath(out_dir), "-q",
            "--sandbox", options.sandbox,
            "--cell-timeout", repr(float(options.cell_timeout_s)),
            "--timeout", repr(float(options.timeout_s)),
            "--memory", str(int(options.memory_mb)),
            "--profile", options.profile,
            "--device", options.device]
    if options.assignment is not None:
        argv += ["--assignment", options.assignment]
    if options.seed is not None:
        argv += ["--seed", str(int(options.seed))]
    if options.data_dir is not None:
        argv += ["--data-dir", os.path.abspath(options.data_dir)]
    if options.gpus:
        argv += ["--gpus", options.gpus]
    if options.lang is not None:
        argv += ["--lang", options.lang]
    return argv


@dataclass
class Outcome:
    """How a grading process ended (what the batch needs besides the files it wrote)."""

    returncode: int | None          # None: it never ran (the Ray task failed before starting it)
    wall_s: float
    timed_out: bool = False         # killed by the wall-clock guard
    limit_s: float | None = None
    stderr_tail: str = ""
    error: str | None = None        # a failure outside the process (a lost Ray worker...)
    host: str | None = None         # where it ran (Ray)

    def to_json(self) -> dict:
        return dict(vars(self))


def describe_failure(outcome: Outcome) -> str:
    """One line for a grading process that left no result: why, for the TA."""
    if outcome.error:
        return outcome.error
    if outcome.timed_out:
        return (f"the grading process ran past its wall-clock limit of {outcome.limit_s:g} s and was killed "
                "(the notebook or the grader hung)")
    code = outcome.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory on the host, or killed by hand)" if -code == signal.SIGKILL else ""
        return f"the grading process was killed by {name}{hint}"
    last = next((line.strip() for line in reversed(outcome.stderr_tail.splitlines()) if line.strip()), "")
    if code in (None, 0):
        return "the grading process ended without writing result.json" + (f": {last}" if last else "")
    return f"the grading process failed with exit status {code}" + (f": {last}" if last else "")


class GradeProcess:
    """A running `grade submit`: start it, poll it, stop it. Not thread-safe; one owner."""

    def __init__(self, argv: list[str], *, log_path: Path, limit_s: float, cwd: Path | None = None,
                 env: dict[str, str] | None = None, cpus: frozenset[int] | None = None):
        self.argv = argv
        self.cpus = cpus
        self.log_path = Path(log_path)
        self.limit_s = limit_s
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen | PreloadedChild | None = None
        self.started = 0.0
        self.timed_out = False
        self._stop_sent_at: float | None = None

    def start(self) -> None:
        self.proc = None
        if preload_enabled() and self.argv[0] == sys.executable and self.argv[1:4] == ["-m", "grader.cli", "submit"]:
            try:
                self.proc = PreloadedChild.start(self.argv, log_path=self.log_path, cwd=self.cwd,
                                                 env=self.env, cpus=self.cpus)
            except OSError:
                self.proc = None  # no preload server (it failed to start or to fork): a fresh interpreter
        if self.proc is None:
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    cwd=self.cwd, env=self.env, start_new_session=True, preexec_fn=_child_setup(self.cpus),
                )
        self.started = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def poll(self) -> Outcome | None:
        """None while it runs; its Outcome once it ended. Enforces the wall-clock guard: past the
        limit the process is asked to stop (SIGINT), then killed with its group."""
        assert self.proc is not None, "start() first"
        now = time.monotonic()
        if self.proc.poll() is None:
            if not self.timed_out and now - self.started > self.limit_s:
                self.timed_out = True
                self.stop()
            elif self._stop_sent_at is not None and now - self._stop_sent_at > STOP_GRACE_S:
                self.kill()
            return None
        return Outcome(returncode=self.proc.returncode, wall_s=round(now - self.started, 3),
                       timed_out=self.timed_out, limit_s=self.limit_s, stderr_tail=self._stderr_tail())

    def wait(self, poll_s: float = 0.2) -> Outcome:
        while (outcome := self.poll()) is None:
            time.sleep(poll_s)
        return outcome

    def stop(self) -> None:
        """Ask `grade` to stop: SIGINT is its Ctrl-C, which also kills its sandbox."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            if self._stop_sent_at is None:
                self._stop_sent_at = time.monotonic()

    def kill(self) -> None:
        """SIGKILL the process and everything left in its process group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def stop_and_wait(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop it for good: SIGINT, up to `grace_s` to end, then SIGKILL."""
        if self.proc is None:
            return
        self.stop()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _stderr_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - STDERR_TAIL_CHARS))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
