"""Exceptions of batch grading, under the grader's one root (`grader.errors`).

They are all usage problems of the batch as a whole (exit 2 in the command line): a problem
with *one* submission is never an exception here, it becomes that student's `error` or
`rejected` row and the batch goes on.
"""

from __future__ import annotations

from grader.errors import UsageError


class BatchInputError(UsageError):
    """INPUT cannot be graded as a batch: not a folder, no submissions, or OUT already holds
    folders that are not results. (A student's odd name, or two submissions for one student id,
    is that student's `rejected` row, not this.)"""


class BatchLocked(UsageError):
    """Another `grade batch` is writing to the same output folder right now."""


class EngineUnavailable(UsageError):
    """The engine asked for cannot run: unknown name, Ray not installed, no Ray cluster at the
    address given."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch, raised after every grading process was stopped. What was finished
    is installed in OUT; running the same command again grades the rest."""

    def __init__(self, done: int, total: int):
        self.done = done
        self.total = total
        super().__init__(f"interrupted: {done} of {total} submissions done")
