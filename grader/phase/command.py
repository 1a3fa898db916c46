"""`grade phase BATCH_DIR... --out DIR`: the command line over `grader.phase.grade_phase`.

Registered in grader/cli.py with `app.command("phase")(phase)`. Exit status, as for `grade`:
0 phase.csv and phase.html were written (whatever is missing, rejected or pending: those are
states in the rows, not failures); 2 a usage error (a folder that is not a batch, an unknown
language, an output folder that cannot be made), one line on stderr; 3 the grader itself failed.

Only light imports at module level: `grade submit` imports this module too (through cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXIT_OK, EXIT_USAGE, EXIT_GRADER_FAILED = 0, 2, 3


def _fail(code: int, message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"grade: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def phase(
    batch_dirs: Annotated[list[Path], typer.Argument(metavar="BATCH_DIR", help=(
        "Folders written by `grade batch --out`, one per assignment (weekly assignments and the midterm)."))],
    out: Annotated[Path, typer.Option("--out", help="Folder for phase.csv and phase.html.")],
    lang: Annotated[Optional[str], typer.Option(help="Language of phase.html: ko | en "
                                                  "(default: the course's, course.yaml).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on the terminal.")] = False,
) -> None:
    """Each student's Phase 2 grade: weekly assignments 70% (bonus capped), the midterm 30%."""
    from grader.errors import GraderError, UsageError
    from grader.phase import grade_phase

    try:
        report = grade_phase(batch_dirs, out, lang=lang)
    except UsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except OSError as exc:  # the output folder could not be written: the TA's set-up, not a crash
        _fail(EXIT_USAGE, f"{out}: cannot write ({exc.strerror or exc})")
    if not quiet:
        counts = {s: sum(1 for r in report.students if r.status == s) for s in ("complete", "pending", "incomplete")}
        typer.echo(f"{len(report.students)} students: {counts['complete']} complete, {counts['pending']} with points "
                   f"pending review, {counts['incomplete']} incomplete; wrote {out / 'phase.csv'} and "
                   f"{out / 'phase.html'}")
