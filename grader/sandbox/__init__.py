"""Sandbox stage: run a student notebook (plus the grader's probe cell) somewhere it cannot hurt.

Backends sit behind a small registry (`local` is the embedded default; `docker` plugs in through
`register_backend` without touching the pipeline). Every backend runs the same `runner.py` and
reads the same report channel, so what a run *means* (which cell failed, timed out, ran out of
memory) is decided here, once, by `classify`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from grader.errors import SandboxUnavailable, UsageError
from grader.i18n import Message, msg, render

RUNNER_PATH = Path(__file__).with_name("runner.py")

# Ordered from worst to mildest: the run's status is its worst problem.
PROBLEM_KINDS = ("timeout", "kernel_died", "oom", "cell_timeout", "cell_error")

_OOM_NAMES = {"MemoryError", "_ArrayMemoryError", "OutOfMemoryError"}
_OOM_MARKERS = ("can't allocate memory", "cannot allocate memory", "out of memory", "not enough memory")


@dataclass(frozen=True)
class SandboxPaths:
    """Where the run's folders appear to the code inside the sandbox."""

    work: str
    data: str | None


@dataclass
class SandboxJob:
    notebook: dict                      # the student's notebook (nbformat JSON); never modified
    workdir: Path                       # private working copy of the submission: the kernel's cwd
    parameters: dict                    # papermill parameters (SEED, DEVICE, DATA_DIR, PROFILE...)
    probe_source: Callable[[SandboxPaths], str] | None  # built once the inside paths are known
    cell_timeout_s: float = 120.0
    timeout_s: float = 900.0
    memory_mb: int = 4096
    data_dir: Path | None = None
    gpus: str | None = None             # None: no GPU; "all", "1", "0,1"
    network: bool = False               # the student's code gets no network unless asked
    probe_error: Exception | None = None  # set when building the probe failed (the grader's fault)


@dataclass
class CellProblem:
    kind: str                 # one of PROBLEM_KINDS
    cell: int | None          # 1-based position in the student's notebook (None: not tied to a cell)
    message: Message | str    # rendered in the reader's language by to_json
    source_excerpt: str = ""
    in_probe: bool = False    # the grader's probe cell (the student's functions failed under it)


@dataclass
class ExecutionResult:
    status: str                         # "completed" or the worst problem kind, or "sandbox_error"
    problems: list[CellProblem]
    notebook: dict | None               # the executed notebook (probe cell left out)
    probe_ran: bool
    probe_payloads: list[str]           # what the probe published, as the runner saw it (untrusted data)
    duration_s: float
    backend: str
    isolation: str                      # how the run was contained, e.g. "bwrap", "unshare", "none"
    network: bool                       # whether the student's code could reach a network
    log_tail: str = ""                  # the sandbox's stderr, for the grader's own diagnostics
    extra: dict = field(default_factory=dict)

    def to_json(self, lang: str = "en") -> dict:
        return {
            "status": self.status,
            "backend": self.backend,
            "isolation": self.isolation,
            "network": self.network,
            "duration_s": round(self.duration_s, 3),
            "probe_ran": self.probe_ran,
            "problems": [{**vars(p), "message": render(p.message, lang)} for p in self.problems],
            **self.extra,
        }


class SandboxBackend(Protocol):
    name: str

    def check_available(self, job: SandboxJob) -> None:
        """Raise SandboxUnavailable (with what to install) if this backend cannot run the job here."""

    def run(self, job: SandboxJob) -> ExecutionResult: ...


_REGISTRY: dict[str, Callable[[], SandboxBackend]] = {}


def register_backend(name: str, factory: Callable[[], SandboxBackend]) -> None:
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def get_backend(name: str) -> SandboxBackend:
    """The backend called `name`; "auto" picks docker where it is registered and usable, else local."""
    if name == "auto":
        if "docker" in _REGISTRY:
            backend = _REGISTRY["docker"]()
            try:
                backend.check_available(None)  # type: ignore[arg-type]
                return backend
            except SandboxUnavailable:
                pass
        name = "local"
    if name not in _REGISTRY:
        raise UsageError(f"unknown sandbox {name!r}; choose one of: auto, {', '.join(available_backends())}")
    return _REGISTRY[name]()


def run_notebook(job: SandboxJob, backend: str = "auto") -> ExecutionResult:
    """Stage entry point: run the job in the named backend."""
    chosen = get_backend(backend)
    chosen.check_available(job)
    return chosen.run(job)


# --- reading the runner's report channel -------------------------------------------------------

def _excerpt(source: str, limit: int = 300) -> str:
    text = source.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _student_position(cells: list[dict], index: int) -> int:
    """1-based position of executed cell `index` in the student's own notebook (papermill inserts
    an `injected-parameters` cell, which the student never wrote)."""
    injected = sum(
        1 for c in cells[:index] if "injected-parameters" in c.get("metadata", {}).get("tags", [])
    )
    return index - injected + 1


def _clean_exit(ename: str, evalue: str) -> bool:
    """`sys.exit()` / `sys.exit(0)` in a cell: the notebook chose to stop, not a failure."""
    return ename == "SystemExit" and evalue in ("", "0")


def _error_kind(ename: str, evalue: str, duration_s: float, cell_timeout_s: float) -> str:
    if ename == "KeyboardInterrupt" and duration_s >= 0.95 * cell_timeout_s:
        return "cell_timeout"  # nbclient interrupts a cell that runs past the per-cell limit
    if ename in _OOM_NAMES or any(m in evalue.lower() for m in _OOM_MARKERS):
        return "oom"
    return "cell_error"


def _problem_message(kind: str, ename: str, evalue: str, cell_timeout_s: float) -> Message:
    error = f"{ename}: {evalue}".strip()[:500]
    if kind == "cell_timeout":
        return msg("exec.cell_timeout", seconds=f"{cell_timeout_s:g}")
    if kind == "oom":
        return msg("exec.oom", error=error)
    return msg("exec.cell_error", error=error)


def classify(
    events: list[dict],
    *,
    cell_timeout_s: float,
    timed_out: bool,
    timeout_s: float,
    exit_signal: int | None,
    killed_by_grader: bool,
) -> tuple[str, list[CellProblem], dict | None, list[str] | None]:
    """Turn the runner's events into (status, problems, executed notebook, probe payloads); the
    payloads are None when the probe did not run."""
    start = next((e for e in events if e["event"] == "start"), None)
    if start is None:
        return "sandbox_error", [], None, None
    notebook = start["notebook"]
    cells = notebook["cells"]
    problems: list[CellProblem] = []
    last_started: dict | None = None
    payloads: list[str] | None = None
    done = None
    for event in events:
        kind = event["event"]
        if kind == "cell_start":
            last_started = event
        elif kind == "cell_done":
            index = event["index"]
            cells[index] = event["cell"]
            errors = [(str(o.get("ename", "")), str(o.get("evalue", "")))
                      for o in event["cell"].get("outputs", []) if o.get("output_type") == "error"]
            reply = event.get("reply")
            if isinstance(reply, dict) and reply.get("status") == "error":
                # The kernel's execute_reply says the cell failed. The student's code can hide the
                # error *output* (a patched showtraceback, cleared outputs), which leaves the reply
                # as it is: a failure that displayed no error is still this cell's problem.
                failure = (str(reply.get("ename", "")), str(reply.get("evalue", "")))
                if not any(not _clean_exit(*e) for e in errors):
                    errors.append(failure)
            for ename, evalue in errors:
                if _clean_exit(ename, evalue):
                    continue
                pkind = _error_kind(ename, evalue, event.get("duration_s", 0.0), cell_timeout_s)
                problems.append(CellProblem(
                    pkind, _student_position(cells, index),
                    _problem_message(pkind, ename, evalue, cell_timeout_s),
                    _excerpt("".join(event["cell"].get("source", ""))),
                ))
        elif kind == "probe_done":
            payloads = [p for p in event.get("payloads", []) if isinstance(p, str)]
            for err in event.get("errors", []):
                problems.append(CellProblem("cell_error", None, msg("exec.probe_error",
                                            error=f"{err['ename']}: {err['evalue']}"[:500]), in_probe=True))
        elif kind == "done":
            done = event

    def running_cell() -> tuple[int | None, str, bool]:
        # The last cell that started is the one that was running: papermill reports a cell as
        # done even when the kernel died under it.
        if last_started is None:
            return None, "", False
        if last_started.get("probe"):
            return None, "", True
        index = last_started["index"]
        return (_student_position(cells, index),
                _excerpt("".join(cells[index].get("source", ""))), False)

    if timed_out:
        cell, excerpt, in_probe = running_cell()
        problems.append(CellProblem("timeout", cell, msg("exec.timeout", seconds=f"{timeout_s:g}"), excerpt,
                                    in_probe))
    elif done is not None and done.get("error"):
        etype = done["error"]["type"]
        cell, excerpt, in_probe = running_cell()
        if etype == "DeadKernelError" and done["error"].get("oom_kills", 0) > 0:
            # The memory cgroup's OOM killer took the kernel (docker's --memory).
            problems.append(CellProblem("oom", cell, msg("exec.oom_killed"), excerpt, in_probe))
        elif etype == "DeadKernelError":
            problems.append(CellProblem("kernel_died", cell, msg("exec.kernel_died"), excerpt, in_probe))
        elif etype == "CellTimeoutError":
            problems.append(CellProblem("cell_timeout", cell, msg("exec.cell_timeout", seconds=f"{cell_timeout_s:g}"),
                                        excerpt, in_probe))
        else:
            return "sandbox_error", problems, notebook, payloads
    elif done is None:
        cell, excerpt, in_probe = running_cell()
        if exit_signal == 9 and not killed_by_grader:
            # Killed from outside (the kernel OOM killer or a cgroup limit); rlimits raise
            # MemoryError inside the cell instead, which the cell's error already reports.
            problems.append(CellProblem("oom", cell, msg("exec.killed_memory"), excerpt, in_probe))
        else:
            return "sandbox_error", problems, notebook, payloads

    status = "completed"
    for kind in PROBLEM_KINDS:
        if any(p.kind == kind for p in problems):
            status = kind
            break
    return status, problems, notebook, payloads


def read_events(raw: bytes) -> list[dict]:
    events = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a cut-off last line (the run was killed mid-write)
    return events


def _register_defaults() -> None:
    from grader.sandbox.docker import DockerBackend
    from grader.sandbox.local import LocalBackend

    register_backend("local", LocalBackend)
    # Registered even without the SDK or an engine: check_available says what is missing.
    register_backend("docker", DockerBackend)


_register_defaults()
