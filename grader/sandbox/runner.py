"""Runs ONE notebook with papermill, inside the sandbox. Started by a sandbox backend.

This file is copied into the sandbox and run by the sandbox's Python; it imports only the standard
library, nbformat and papermill (never the grader, which the sandbox cannot see).

Protocol:
- stdin, line 1: the JSON job `{"notebook": <nbformat JSON>, "probe": bool, "parameters": {...},
  "cell_timeout_s": float, "kernel_name": str, "cwd": str, "max_cell_bytes": int}`;
- stdin, line 2 (when "probe" is true): `{"probe_source": str}`, read only when the probe cell is
  about to run. The grader prepares the probe (secret inputs, reference values) while the
  student's cells run, and the inputs exist in the sandbox only from the moment the probe starts;
- the report channel is the file descriptor given as argv[1]: JSON lines `{"event": ...}`:
  `start` (the parameterised notebook, probe cell left out), `cell_start` / `cell_done` (index, and
  the executed cell), and finally `done` (how the run ended).

Why a private descriptor and not stdout: the kernel is a child of this process and inherits
stdout/stderr, so anything it prints there could forge a report. Python opens descriptors
non-inheritable, and the kernel is started without this one, so only this process can write it.
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


def main() -> int:
    report = os.fdopen(int(sys.argv[1]), "w", encoding="utf-8", buffering=1)

    def emit(event: str, **payload) -> None:
        report.write(json.dumps({"event": event, **payload}) + "\n")
        report.flush()

    job = json.loads(sys.stdin.readline())
    import nbformat
    import papermill
    from papermill.engines import NotebookExecutionManager
    from papermill.parameterize import parameterize_notebook

    kernel_name = job.get("kernel_name", "python3")
    nb = nbformat.reads(json.dumps(job["notebook"]), as_version=4)
    # Students' notebooks name whatever kernel they had (a conda env, "Python 3 (ipykernel)"):
    # the sandbox has one Python kernel, and that is the one that runs.
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("papermill", {"default_parameters": {}, "parameters": {}, "environment_variables": {}})
    for cell in nb.cells:  # what papermill's own loader adds, since we hand it a notebook object
        cell.metadata.setdefault("tags", [])
        cell.metadata.setdefault("papermill", {})
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
    original_start = NotebookExecutionManager.cell_start
    original_complete = NotebookExecutionManager.cell_complete

    def cell_start(self, cell, cell_index=None, **kwargs):
        if cell_index >= n_public:
            line = sys.stdin.readline()
            cell.source = json.loads(line)["probe_source"] if line.strip() else "pass  # no probe"
        started_at[cell_index] = time.monotonic()
        emit("cell_start", index=cell_index, probe=cell_index >= n_public)
        return original_start(self, cell, cell_index, **kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        result = original_complete(self, cell, cell_index, **kwargs)
        duration = time.monotonic() - started_at.get(cell_index, time.monotonic())
        if cell_index < n_public:
            emit("cell_done", index=cell_index, duration_s=round(duration, 3), cell=cell_payload(cell))
        else:
            outputs = cell.get("outputs", [])
            payloads = [o["data"][PROBE_MIME] for o in outputs
                        if o.get("output_type") == "display_data" and PROBE_MIME in o.get("data", {})]
            payloads = [p if isinstance(p, str) else json.dumps(p) for p in payloads]
            emit("probe_done", duration_s=round(duration, 3),
                 payloads=[p for p in payloads if len(p) <= MAX_PROBE_BYTES],
                 errors=[{"ename": o.get("ename"), "evalue": o.get("evalue")}
                         for o in outputs if o.get("output_type") == "error"])
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
        )
    except BaseException as exc:  # noqa: BLE001 - every ending is reported, the grader classifies it
        name = type(exc).__name__
        if name != "PapermillExecutionError":  # cell errors are already in the cells' outputs
            outcome["error"] = {"type": name, "message": str(exc)[:2000],
                                "traceback": traceback.format_exc()[-4000:]}
    emit("done", **outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
