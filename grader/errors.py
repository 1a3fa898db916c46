"""The grader's exceptions: one root, structured subclasses.

`cli.py` is the only place that turns these into exit codes:
- `SubmissionRejected` (bad input: corrupt zip, wrong notebook name, zip bomb...) -> exit 2;
- `UsageError` (bad options, unknown assignment, invalid rubric) -> exit 2;
- any other `GraderError` -> exit 3 (the grader itself failed).

Failures of the *student's* code (an exception in a cell, a timeout, out of memory, a dead
kernel) are not exceptions at this level: the sandbox reports them as data and they become
scored, explained results.
"""

from __future__ import annotations

from typing import Any


class GraderError(Exception):
    """Root of every error the grader raises on purpose."""


class UsageError(GraderError):
    """The command line or the course configuration is wrong (unknown assignment, bad option)."""


class RubricError(UsageError):
    """A rubric file is invalid. `problems` holds `dotted.path: message` lines."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"invalid rubric {path}: " + "; ".join(problems))


class SubmissionRejected(GraderError):
    """The submission cannot be graded at all (corrupt archive, unsafe entry, no notebook...).

    The reason is a `grader.i18n.Message` (or a plain string): `str(exc)` is its English text,
    `exc.render(lang)` its text in the student's language (ko | en)."""

    def __init__(self, message: Any):
        # The Message itself is the exception's argument: str(exc) renders it in English, and the
        # exception pickles (and re-raises across processes) with its Message intact.
        super().__init__(message)
        self.message = message

    def render(self, lang: str) -> str:
        from grader.i18n import render

        return render(self.message, lang)


class UnsafeArchive(SubmissionRejected):
    """The archive tries to escape its folder (absolute path, `..`, link) or is a zip bomb."""


class SandboxUnavailable(GraderError):
    """The requested sandbox backend cannot run on this machine (missing tool or package)."""


class SandboxFailure(GraderError):
    """The sandbox itself broke (not the student's code): the runner crashed or said nothing."""


class SubmissionTimeout(GraderError, TimeoutError):
    """The whole run exceeded its time budget (raised only where a caller wants an exception)."""


class KernelDied(GraderError):
    """The notebook kernel died (os._exit, a signal, the OOM killer)."""
