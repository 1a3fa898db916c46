"""Typer commands of the platform exports, registered by grader/cli.py:

    grade template export ID DIR [--engine-requirement REQ | --engine-wheel WHL] [--runner-label LABEL]
                                 [--profile smoke|full] [--lang ko|en] [--source DIR] [--force]
    grade export gradescope ID OUT.zip [--engine-requirement REQ | --engine-wheel WHL] [--no-staff]
                                       [--lang ko|en] [--profile smoke|full] [--visibility V] ...

Exit status as everywhere in `grade`: 0 done, 2 usage rejected, 3 the grader failed.
`write_format` (for `grade submit --format`) is grader.formats.write_format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from grader.errors import GraderError, RubricError, UsageError
from grader.formats import FORMATS, error_result, write_format

__all__ = ["template_app", "export_app", "write_format", "error_result", "FORMATS"]

EXIT_REJECTED, EXIT_GRADER_FAILED = 2, 3
_err = Console(stderr=True)

template_app = typer.Typer(help="Student templates (GitHub Classroom).", no_args_is_help=True)
export_app = typer.Typer(help="Autograders for other platforms.", no_args_is_help=True)


# Callbacks keep each a group of subcommands (`template export`, `export gradescope`), also when
# more commands join later or when an app is used on its own.
@template_app.callback()
def _template() -> None:
    """Student templates (GitHub Classroom)."""


@export_app.callback()
def _export() -> None:
    """Autograders for other platforms."""


def _fail(code: int, message: str) -> None:
    _err.print(f"grade: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(action):
    try:
        return action()
    except RubricError as exc:
        _fail(EXIT_REJECTED, f"{exc.path}: " + "; ".join(exc.problems))
    except UsageError as exc:
        _fail(EXIT_REJECTED, str(exc))
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@template_app.command("export")
def template_export(
    assignment: Annotated[str, typer.Argument(help="Assignment id, e.g. w6-self-attention.")],
    dest: Annotated[Path, typer.Argument(help="Folder for the template repository (new or empty).")],
    engine_requirement: Annotated[Optional[str], typer.Option(
        help="How students' repositories install the engine: a pip requirement line "
             "(default: a placeholder 'grader @ git+https://github.com/YOUR-COURSE/grader-engine@vVERSION').")] = None,
    engine_wheel: Annotated[Optional[Path], typer.Option(
        help="Vendor this engine wheel into the template (.grader/wheels/) instead of a requirement.")] = None,
    runner_label: Annotated[Optional[str], typer.Option(
        help="Run the workflow on a self-hosted runner with this label (a GPU runner: adds --gpus all).")] = None,
    profile: Annotated[str, typer.Option(help="Profile of the workflow's run: smoke | full.")] = "smoke",
    source: Annotated[Optional[Path], typer.Option(
        help="The assignment's student template (default: student_template/ID of the staff repository).")] = None,
    lang: Annotated[Optional[str], typer.Option(help="Language of the messages: ko | en (default: the course's).")] = None,
    force: Annotated[bool, typer.Option(help="Write into a folder that is not empty.")] = False,
) -> None:
    """Write a ready GitHub Classroom template repository for an assignment."""
    from grader.templates_export import DEFAULT_ENGINE_REQUIREMENT, export_template

    written = _run(lambda: export_template(assignment, dest, source=source, engine_requirement=engine_requirement,
                                           engine_wheel=engine_wheel, runner_label=runner_label, profile=profile,
                                           lang=lang, force=force))
    typer.echo(f"wrote the Classroom template of {assignment} to {written}")
    if engine_requirement is None and engine_wheel is None:
        _err.print(f"grade: note: requirements.txt installs the engine from the placeholder "
                   f"'{DEFAULT_ENGINE_REQUIREMENT}': edit it, or export again with --engine-requirement",
                   markup=False, highlight=False, soft_wrap=True)


@export_app.command("gradescope")
def export_gradescope(
    assignment: Annotated[str, typer.Argument(help="Assignment id, e.g. w6-self-attention.")],
    out: Annotated[Path, typer.Argument(help="The autograder zip to write (upload it to Gradescope).")],
    engine_requirement: Annotated[Optional[str], typer.Option(
        help="Install the engine from this pip requirement instead of a wheel built from this checkout.")] = None,
    engine_wheel: Annotated[Optional[Path], typer.Option(help="Put this engine wheel into the zip.")] = None,
    staff: Annotated[bool, typer.Option(
        help="Include the staff's reference code and hidden checks (the zip stays on Gradescope).")] = True,
    lang: Annotated[Optional[str], typer.Option(help="Language of the messages: ko | en.")] = None,
    profile: Annotated[str, typer.Option(help="smoke | full (Gradescope has no GPU: smoke).")] = "smoke",
    memory: Annotated[int, typer.Option(help="Memory cap of the notebook in MB.", min=256)] = 4096,
    timeout: Annotated[float, typer.Option(help="Seconds the whole notebook may run.", min=1)] = 1800.0,
    visibility: Annotated[str, typer.Option(
        help="Visibility of the results: hidden | after_due_date | after_published | visible.")] = "visible",
    hidden_visibility: Annotated[str, typer.Option(help="Visibility of the hidden checks.")] = "after_published",
) -> None:
    """Build a Gradescope autograder zip (setup.sh, run_autograder) for an assignment."""
    from grader.formats.gradescope import build_autograder_zip

    if engine_requirement is not None and engine_wheel is not None:
        _fail(EXIT_REJECTED, "give either --engine-requirement or --engine-wheel, not both")
    if not str(out).endswith(".zip"):
        _fail(EXIT_REJECTED, f"{out}: the autograder must be a .zip file")
    written = _run(lambda: build_autograder_zip(
        assignment, out, engine_wheel=engine_wheel, engine_requirement=engine_requirement, include_staff=staff,
        lang=lang, profile=profile, memory_mb=memory, timeout_s=timeout, visibility=visibility,
        hidden_visibility=hidden_visibility))
    typer.echo(f"wrote {written}: upload it as the autograder of {assignment} (Ubuntu base image)")
