"""Runs ONE notebook with papermill, inside the sandbox. Started by a sandbox backend.

This file is copied into the sandbox and run by the sandbox's Python; it imports only the standard
library, nbformat and papermill (never the grader, which the sandbox cannot see).

Protocol:
- stdin, line 1: the JSON job `{"notebook": <nbformat JSON>, "probe": bool, "parameters": {...},
  "cell_timeout_s": float, "kernel_name": str, "cwd": str, "max_cell_bytes": int}`;
- stdin, line 2 (when "probe" is true): `{"probe_source": str}`, read only when the probe cell is
  about to run. The grader prepares the probe (secret inputs, reference values) while the
  student's cells run, and the inputs exist in the sandbox only from the moment the probe starts;
- the report channel is the file descriptor given as argv[1], or the process's original stdout
  when argv[1] is "stdout": JSON lines `{"event": ...}`:
  `start` (the parameterised notebook, probe cell left out), `cell_start` / `cell_done` (index, the
  executed cell, and `reply`: the status of the kernel's execute_reply), and finally `done` (how
  the run ended).

Why the reply: error *outputs* are produced by the student's own kernel, which can switch them
off (`get_ipython()._showtraceback = ...`, a replaced `showtraceback`, a hook that clears
outputs). The execute_reply's status is what the kernel answers on the shell channel for every
code cell, so an exception that displayed nothing is still seen here and reported with its cell.

Why private descriptors: the kernel is a child of this process and inherits stdin/stdout/stderr,
so it could read the probe before us or forge a report. We keep non-inheritable duplicates,
point 0 and 1 at /dev/null before the kernel starts, and make this process non-dumpable so the
kernel (same uid) cannot reach our descriptors through /proc or ptrace.
The executed cells travel over the same channel, so the grader never trusts a notebook file that
the student's code could have rewritten.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

PROBE_TAG = "grader-probe"
PROBE_MIME = "application/vnd.grader.probe+json"
MAX_PROBE_BYTES = 64 * 2**20


def _make_private() -> None:
    """Keep the kernel (our child, same uid) out of this process: no ptrace, no /proc/PID/fd."""
    try:
        import ctypes

        PR_SET_DUMPABLE = 4
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the descriptors below are still not inherited


def _private_channels(report_target: str):
    """(job input, report output) that only this process holds.

    The kernel inherits descriptors 0, 1 and 2; so we keep private, non-inheritable duplicates
    and point 0 and 1 at /dev/null before the kernel starts. `report_target` is a descriptor
    number (the local backend passes a pipe) or "stdout" (the docker backend reads the
    container's stdout)."""
    job_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    report_fd = os.dup(1) if report_target == "stdout" else int(report_target)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    return job_in, os.fdopen(report_fd, "w", encoding="utf-8", buffering=1)


def _oom_kills() -> int:
    """OOM kills in this sandbox's memory cgroup (a dead kernel in a container is usually one)."""
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"),
                      ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")):
        try:
            with open(path, encoding="ascii") as handle:
                for line in handle:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def _text(value, limit: int) -> str:
    return (value if isinstance(value, str) else "" if value is None else str(value))[:limit]


def reply_summary(execute_reply) -> dict:
    """status / ename / evalue of an execute_reply, as plain bounded strings (the kernel's code is
    the student's, so nothing in the reply is trusted to have the documented types)."""
    content = execute_reply.get("content") if isinstance(execute_reply, dict) else None
    if not isinstance(content, dict):
        return {"status": "unknown"}
    summary = {"status": _text(content.get("status"), 20)}
    if summary["status"] == "error":
        summary.update(ename=_text(content.get("ename"), 200), evalue=_text(content.get("evalue"), 2000))
    return summary


def main() -> int:
    _make_private()
    job_in, report = _private_channels(sys.argv[1])
    oom_kills_before = _oom_kills()

    def emit(event: str, **payload) -> None:
        report.write(json.dumps({"event": event, **payload}) + "\n")
        report.flush()

    job = json.loads(job_in.readline())
    import nbformat
    import papermill
    from papermill.engines import NotebookExecutionManager
    from papermill.parameterize import parameterize_notebook

    kernel_name = job.get("kernel_name", "python3")
    nb = nbformat.reads(json.dumps(job["notebook"]), as_version=4)
    # Students' notebooks name whatever kernel they had (a conda env, "Python 3 (ipykernel)"):
    # the sandbox has one Python kernel, and that is the one that runs.
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Python 3", "language": "python"}
    # papermill's own record of a run: a submitted value (of any type) is replaced, never trusted,
    # since papermill writes into it and would fail on a list or a number.
    nb.metadata["papermill"] = {"default_parameters": {}, "parameters": {}, "environment_variables": {}}
    for cell in nb.cells:  # what papermill's own loader adds, since we hand it a notebook object
        cell.metadata.setdefault("tags", [])
        cell.metadata["papermill"] = {}
    nb = parameterize_notebook(nb, job["parameters"], kernel_name=kernel_name, language="python")
    public_cells = list(nb.cells)
    emit("start", notebook=json.loads(nbformat.writes(nb)))
    if job.get("probe"):
        probe = nbformat.v4.new_code_cell("")
        probe.metadata["tags"] = [PROBE_TAG]
        nb.cells.append(probe)
    n_public = len(public_cells)
    max_cell_bytes = int(job.get("max_cell_bytes", 5 * 2**20))

    def cell_payload(cell) -> dict:
        data = json.loads(json.dumps(cell))
        if len(json.dumps(data)) > max_cell_bytes:
            # A cell that printed megabytes would flood the grader: keep its source, drop the bulk.
            data["outputs"] = [{"output_type": "stream", "name": "stderr",
                                "text": f"[grader: outputs larger than {max_cell_bytes} bytes were dropped]\n"}]
        return data

    started_at = {}
    replies: dict[int, dict] = {}

    def on_cell_executed(cell=None, cell_index=None, execute_reply=None, **kwargs) -> None:
        # nbclient's public hook, called with the kernel's execute_reply for every code cell that
        # got one (a cell interrupted at the cell timeout gets its KeyboardInterrupt reply; a cell
        # the kernel died under gets none, and the `done` event reports that).
        replies[cell_index] = reply_summary(execute_reply)

    original_start = NotebookExecutionManager.cell_start
    original_complete = NotebookExecutionManager.cell_complete

    def cell_start(self, cell, cell_index=None, **kwargs):
        if cell_index >= n_public:
            line = job_in.readline()
            cell.source = json.loads(line)["probe_source"] if line.strip() else "pass  # no probe"
        started_at[cell_index] = time.monotonic()
        emit("cell_start", index=cell_index, probe=cell_index >= n_public)
        return original_start(self, cell, cell_index, **kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        result = original_complete(self, cell, cell_index, **kwargs)
        duration = time.monotonic() - started_at.get(cell_index, time.monotonic())
        reply = replies.pop(cell_index, None)
        if cell_index < n_public:
            emit("cell_done", index=cell_index, duration_s=round(duration, 3), cell=cell_payload(cell),
                 reply=reply)
        else:
            outputs = cell.get("outputs", [])
            payloads = [o["data"][PROBE_MIME] for o in outputs
                        if o.get("output_type") == "display_data" and PROBE_MIME in o.get("data", {})]
            payloads = [p if isinstance(p, str) else json.dumps(p) for p in payloads]
            errors = [{"ename": _text(o.get("ename"), 200), "evalue": _text(o.get("evalue"), 2000)}
                      for o in outputs if o.get("output_type") == "error"]
            if not errors and reply is not None and reply.get("status") == "error":
                # the probe failed but its traceback was hidden (the student's code patched it away)
                errors = [{"ename": reply["ename"], "evalue": reply["evalue"]}]
            emit("probe_done", duration_s=round(duration, 3),
                 payloads=[p for p in payloads if len(p) <= MAX_PROBE_BYTES], errors=errors)
        return result

    NotebookExecutionManager.cell_start = cell_start
    NotebookExecutionManager.cell_complete = cell_complete
    # Nothing is written by papermill itself: the grader rebuilds the executed notebook from the
    # report channel, so the probe cell (and its inputs) never reach a file.
    NotebookExecutionManager.save = lambda self, **kwargs: None

    outcome = {"error": None}
    try:
        papermill.execute_notebook(
            nb,
            None,
            parameters=None,
            kernel_name=kernel_name,
            execution_timeout=job["cell_timeout_s"],
            progress_bar=False,
            log_output=False,
            cwd=job["cwd"],
            # Keep going after a failing cell (each failure is reported with its cell) so that
            # the probe still runs and the rest of the notebook still earns its points.
            allow_errors=True,
            interrupt_on_timeout=True,
            request_save_on_cell_execute=False,
            on_cell_executed=on_cell_executed,
            # Everything the grader needs has come out by the last cell: the kernel (the student's
            # code) gets no graceful shutdown and no atexit hooks, which took about a second.
            shutdown_kernel="immediate",
        )
    except BaseException as exc:  # noqa: BLE001 - every ending is reported, the grader classifies it
        name = type(exc).__name__
        if name != "PapermillExecutionError":  # cell errors are already in the cells' outputs
            outcome["error"] = {"type": name, "message": str(exc)[:2000],
                                "traceback": traceback.format_exc()[-4000:], "oom_kills": _oom_kills() - oom_kills_before}
    emit("done", **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
