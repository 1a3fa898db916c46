"""Batch grading: a whole class at once, on this machine or on a Ray cluster.

    from grader.batch import grade_batch
    summary = grade_batch(Path("submissions"), Path("results"), workers=2)

`grade_batch` (grader/batch/core.py) discovers the submissions (discover.py), skips what an
earlier run already did (state.py), grades the rest, each in its own `grade` process
(worker.py), with the local pool (local_pool.py) or as Ray tasks (ray_engine.py), installs each
result atomically as it finishes, and writes `gradebook.csv` and `summary.html`
(gradebook.py). `grade batch` (command.py) is the command line over it.

(`grader.batch.discover.discover` is not re-exported: the submodule has the same name.)
The names below load on first use: `grader.cli` imports `grader.batch.command` at start-up, and
every `grade submit` must not pay for what only a batch needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["grade_batch", "BatchSummary", "BatchEvent", "GradebookRow", "SubmissionEntry",
           "BatchInputError", "BatchLocked", "EngineUnavailable", "BatchInterrupted"]

_WHERE = {
    "grade_batch": "core", "BatchSummary": "core", "BatchEvent": "core",
    "GradebookRow": "gradebook", "SubmissionEntry": "discover",
    "BatchInputError": "exceptions", "BatchLocked": "exceptions", "EngineUnavailable": "exceptions",
    "BatchInterrupted": "exceptions",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"grader.batch.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'grader.batch' has no attribute {name!r}")
