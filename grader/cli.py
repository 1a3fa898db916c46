"""`grade`: a thin command line over grader.pipeline. The only place where errors become exit codes:
0 a result was produced (whatever the score); 2 the submission or the usage was rejected (one
line on stderr, no traceback); 3 the grader itself failed."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from grader import __version__
from grader.errors import GraderError, RubricError, UsageError
from grader.batch.command import batch
from grader.formats import FORMATS, error_result, write_format
from grader.formats.command import export_app, template_app
from grader.i18n import msg
from grader.review.command import regrade, review
from grader.similarity.command import similarity
from grader.phase.command import phase

EXIT_OK, EXIT_REJECTED, EXIT_GRADER_FAILED = 0, 2, 3


class _DefaultToSubmit(TyperGroup):
    """`grade PATH ...` means `grade submit PATH ...`; other first words name subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["submit", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_DefaultToSubmit, add_completion=False, no_args_is_help=True,
                  help="Grade deep-learning course notebooks: `grade submit.zip --out DIR`.")
err = Console(stderr=True)


def _fail(code: int, message: str) -> None:
    # One line, no traceback: the reason is for a person.
    err.print(f"grade: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"grade {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                         help="Show the version and exit.")] = None) -> None:
    """Grade deep-learning course notebooks."""


@app.command()
def submit(
    path: Annotated[Path, typer.Argument(help="The submission: a .zip, a folder or a single .ipynb.")],
    assignment: Annotated[Optional[str], typer.Option(help="Assignment id (default: from the notebook's name).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for result.json, feedback.html/.md and executed.ipynb.")] = Path("grade-out"),
    sandbox: Annotated[str, typer.Option(help="auto | local | docker")] = "auto",
    cell_timeout: Annotated[float, typer.Option(help="Seconds one cell may run.", min=1)] = 600.0,
    timeout: Annotated[float, typer.Option(help="Seconds the whole notebook may run.", min=1)] = 1800.0,
    memory: Annotated[int, typer.Option(help="Memory cap of the notebook in MB.", min=256)] = 4096,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the probe's inputs (default: a secret random one).")] = None,
    profile: Annotated[str, typer.Option(help="smoke (fast, CPU, small data) | full (real sizes, GPU runner)")] = "smoke",
    gpus: Annotated[Optional[str], typer.Option(help="GPUs for the notebook: all | N | ID,ID (DEVICE becomes cuda).")] = None,
    device: Annotated[Optional[str], typer.Option(help="DEVICE given to the notebook (default: cuda with --gpus, else cpu).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder mounted read-only as DATA_DIR.")] = None,
    lang: Annotated[Optional[str], typer.Option(help="Language of messages and reports: ko | en "
                                                  "(default: the course's, course.yaml).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Also write: json | classroom | junit | gradescope")] = "json",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on the terminal.")] = False,
) -> None:
    """Grade one submission and write its reports."""
    from grader.pipeline import GradeOptions, grade_submission
    from grader.report import render_summary

    device = device or ("cuda" if gpus else "cpu")
    if device.startswith("cuda") and not gpus:
        gpus = "all"  # --device cuda alone means: whatever GPUs this runner has
    options = GradeOptions(assignment=assignment, sandbox=sandbox, cell_timeout_s=cell_timeout,
                           timeout_s=timeout, memory_mb=memory, seed=seed, profile=profile, device=device,
                           data_dir=data_dir, gpus=gpus, lang=lang)
    if fmt not in FORMATS:
        _fail(EXIT_REJECTED, f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not path.exists():
        write_format(error_result(f"{path}: no such file or folder", assignment=assignment, status="rejected"), fmt, out)
        _fail(EXIT_REJECTED, f"{path}: no such file or folder")
    try:
        if quiet:
            result = grade_submission(path, out, options)
        else:
            with err.status("grading...") as status:
                result = grade_submission(path, out, options, progress=lambda m: status.update(f"{m}..."))
    except RubricError as exc:
        _fail(EXIT_REJECTED, f"{exc.path}: " + "; ".join(exc.problems))
    except UsageError as exc:
        _fail(EXIT_REJECTED, str(exc))
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except Exception as exc:  # noqa: BLE001 - exit 3 with one line; the details are not the user's
        _fail(EXIT_GRADER_FAILED, f"internal error: {type(exc).__name__}: {exc}")
    write_format(result, fmt, out)
    if not quiet:
        render_summary(result, Console(stderr=False))
        Console().print(f"Report: {out / 'feedback.html'}", markup=False, highlight=False)
    if result["status"] == "rejected":
        # result["reason"] is already in the report's language (pipeline); so is the line around it.
        line = msg("intake.rejected", reason=result["reason"]).render(result.get("lang") or "en")
        _fail(EXIT_REJECTED, line)
    if result["status"] == "error":
        _fail(EXIT_GRADER_FAILED, f"grader failure: {result['reason']}")


@app.command()
def expected(
    assignment: Annotated[str, typer.Argument(help="Assignment id.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write (default: the engine's data folder).")] = None,
) -> None:
    """Store the reference's outputs on the public inputs (staff: run with reference/ present)."""
    from grader.assignments import get_spec, load_staff, write_expected

    try:
        spec = get_spec(assignment)
        path = write_expected(spec, load_staff(spec), out)
    except UsageError as exc:
        _fail(EXIT_REJECTED, str(exc))
    typer.echo(f"wrote {path}")


app.command("batch")(batch)
app.command("similarity")(similarity)  # grade similarity BATCH_DIR: pairs that look copied
app.command("phase")(phase)  # grade phase BATCH_DIR... --out DIR: the Phase 2 grade of a class
app.command("review")(review)
app.command("regrade")(regrade)
app.add_typer(template_app, name="template")   # grade template export ID DIR
app.add_typer(export_app, name="export")       # grade export gradescope ID OUT.zip

image_app = typer.Typer(help="The docker sandbox's image.", no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    kind: Annotated[str, typer.Option(help="cpu (offline: debootstrap base + the CPU torch wheel) | cuda")] = "cpu",
    tag: Annotated[Optional[str], typer.Option(help="Image tag (default grader-sandbox:KIND).")] = None,
) -> None:
    """Build the sandbox image on the engine at DOCKER_HOST (one image for the whole course)."""
    from grader.sandbox.docker import _client
    from grader.sandbox.images import build_image

    try:
        with err.status("building the image...") as status:
            built = build_image(_client(), kind, tag, progress=lambda m: status.update(f"{m}..."))
    except UsageError as exc:
        _fail(EXIT_REJECTED, str(exc))
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, str(exc).splitlines()[0])
    typer.echo(f"built {built}; grade with --sandbox docker (GRADER_DOCKER_IMAGE={built})")


@app.command("validate-rubric")
def validate_rubric(path: Annotated[Path, typer.Argument(help="A rubric YAML file.")]) -> None:
    """Check a rubric file; problems are printed as `dotted.path: message`."""
    from grader.rubric import load_rubric

    try:
        rubric = load_rubric(path)
    except RubricError as exc:
        for problem in exc.problems:
            err.print(f"{path}: {problem}", markup=False, highlight=False, soft_wrap=True)  # one problem, one line
        raise typer.Exit(EXIT_REJECTED)
    except UsageError as exc:
        _fail(EXIT_REJECTED, str(exc))
    typer.echo(f"{path}: ok ({len(rubric.items)} items, {rubric.points:g} points + {rubric.bonus_max:g} bonus)")


def run() -> None:
    """Console entry point."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    # Everything is written and closed by now. Skipping the interpreter's teardown saves ~0.6 s
    # per submission (unloading torch), which matters when a batch grades hundreds of them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
