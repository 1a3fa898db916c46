"""The local engine: N `grade` processes side by side on this machine.

One thread (the caller's) starts, polls and finishes the processes: no thread pool, so Ctrl-C
arrives where the processes are known and each one is stopped in order (SIGINT, a grace period,
then SIGKILL of its group) before the interrupt goes on. Results are handed to `on_done` in the
same thread, one at a time, as each process ends.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

from grader.batch.worker import GradeProcess, Outcome, cpu_slots, gpu_slots, grade_argv
from grader.pipeline import GradeOptions

__all__ = ["run_local"]

POLL_S = 0.1


def run_local(jobs: Sequence, *, workers: int, options: GradeOptions, limit_s: float,
              scratch: Callable[[str], Path], on_done: Callable[[object, Path, Outcome], None],
              on_start: Callable[[object], None] | None = None) -> None:
    """Grade `jobs` (each with `.entry.student` and `.source`, the path to grade) with at most
    `workers` processes at once. A process that cannot even be started is reported to `on_done`
    like one that failed (an error row), not raised. `scratch(student)` gives a fresh folder for one attempt; the process
    writes its reports there (`out/`) and its stderr next to them; `on_done(job, out_dir,
    outcome)` takes it from there. On KeyboardInterrupt every running process is stopped before
    the interrupt propagates; nothing is reported for them."""
    queue = deque(jobs)
    # CPU sets per worker slot (see cpu_slots): only for notebooks on the CPU; a GPU run keeps
    # every core for its data loading.
    slots = cpu_slots(workers) if options.device == "cpu" else None
    # A GPU per worker slot for notebooks on a GPU, unless the GPUs were chosen by hand.
    gpus = gpu_slots(workers) if options.device.startswith("cuda") and options.gpus in (None, "all") else None
    free_slots = deque(range(workers))
    running: list[tuple[object, GradeProcess, Path, int]] = []
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.popleft()
                slot = free_slots.popleft()
                folder = scratch(job.entry.student)
                out_dir = folder / "out"
                slot_options = dataclasses.replace(options, gpus=gpus[slot]) if gpus else options
                process = GradeProcess(grade_argv(job.source, out_dir, slot_options),
                                       log_path=folder / "grade.log", limit_s=limit_s, cwd=folder,
                                       cpus=slots[slot] if slots else None)
                try:
                    process.start()
                except (OSError, subprocess.SubprocessError) as exc:
                    free_slots.append(slot)
                    on_done(job, out_dir, Outcome(returncode=None, wall_s=0.0,
                                                  error=f"the grading process could not be started: {exc}"))
                    continue
                running.append((job, process, out_dir, slot))
                if on_start is not None:
                    on_start(job)
            still: list[tuple[object, GradeProcess, Path, int]] = []
            for job, process, out_dir, slot in running:
                outcome = process.poll()
                if outcome is None:
                    still.append((job, process, out_dir, slot))
                else:
                    free_slots.append(slot)
                    on_done(job, out_dir, outcome)
            running = still
            if running:
                time.sleep(POLL_S)
    except BaseException:
        # Ctrl-C (or a failure in on_done): leave no grading process behind. SIGINT to all at
        # once first, so they stop in parallel, then wait for each.
        for _, process, _, _ in running:
            process.stop()
        for _, process, _, _ in running:
            process.stop_and_wait()
        raise
