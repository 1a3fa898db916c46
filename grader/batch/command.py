"""`grade batch INPUT --out DIR`: the command line over `grader.batch.grade_batch`.

Registered in grader/cli.py with `app.command("batch")(batch)`. Exit status, as for `grade`:
0 the batch produced results (even if some submissions were rejected or failed: they are rows
of the gradebook); 2 a usage error (INPUT is not a folder of submissions, unknown engine, Ray
not installed, another batch writing to the same DIR), one line on stderr; 3 the grader itself
failed; 130 interrupted (what finished is kept: run the same command again to finish).

Only light imports at module level: `grade submit` imports this module too (through cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXIT_OK, EXIT_USAGE, EXIT_GRADER_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130


def _fail(code: int, message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"grade: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def batch(
    input_dir: Annotated[Path, typer.Argument(metavar="INPUT", help=(
        "Folder of submissions: zips, folders or .ipynb notebooks named by student (kim.zip, lee/), "
        "or a GitHub Classroom download (one folder per repository, <assignment>-<username>)."))],
    out: Annotated[Path, typer.Option("--out", help=(
        "Folder for the results: <student>/ (result.json, feedback.html/.md, executed.ipynb), "
        "gradebook.csv, summary.html. Running the same command again resumes."))],
    workers: Annotated[Optional[int], typer.Option(min=1, help=(
        "local: grading processes at once (default: the CPUs available); "
        "ray: tasks in flight (default: twice the cluster's slots)."))] = None,
    engine: Annotated[str, typer.Option(help="local (processes on this machine) | ray (tasks on a Ray cluster)")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help=(
        "HOST:PORT of the Ray cluster (default: RAY_ADDRESS, or the cluster started on this machine)."))] = None,
    assignment: Annotated[Optional[str], typer.Option(help="Assignment id (default: from each notebook's name).")] = None,
    sandbox: Annotated[str, typer.Option(help="auto | local | docker")] = "auto",
    cell_timeout: Annotated[float, typer.Option(help="Seconds one cell may run.", min=1)] = 600.0,
    timeout: Annotated[float, typer.Option(help="Seconds a whole notebook may run.", min=1)] = 1800.0,
    memory: Annotated[int, typer.Option(help="Memory cap of each notebook in MB.", min=256)] = 4096,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the probe's inputs (default: a secret random one per submission).")] = None,
    profile: Annotated[str, typer.Option(help="smoke (fast, CPU, small data) | full (real sizes, GPU runner)")] = "smoke",
    device: Annotated[str, typer.Option(help=(
        "DEVICE given to the notebooks: auto (cuda for the full profile, cpu for smoke) | cpu | cuda. "
        "On a GPU each submission gets one GPU of its own (local: one worker a GPU; ray: one GPU a task)."))] = "auto",
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder mounted read-only as DATA_DIR (on each node for ray).")] = None,
    lang: Annotated[Optional[str], typer.Option(help="Language of the students' feedback and of summary.html: ko | en "
                                                  "(default: the course's, course.yaml).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary on the terminal.")] = False,
    similarity: Annotated[bool, typer.Option("--similarity", help=(
        "Also write similarity.csv and similarity.html: pairs of submissions that look copied "
        "(as `grade similarity OUT`), linked from summary.html."))] = False,
) -> None:
    """Grade a whole class: every submission in INPUT, a gradebook and a class summary."""
    from grader.batch.core import ENGINES, grade_batch
    from grader.batch.exceptions import BatchInterrupted
    from grader.errors import GraderError, RubricError, UsageError
    from grader.pipeline import GradeOptions

    if similarity:
        from grader.similarity.command import check_before_batch

        check_before_batch()  # the similarity extra missing: a usage error before any grading
    if device == "auto":
        device = "cuda" if profile == "full" else "cpu"  # the full profile is the real-size run, on a GPU
    if engine not in ENGINES:
        _fail(EXIT_USAGE, f"unknown engine {engine!r}: choose local or ray")
    if not input_dir.exists():
        _fail(EXIT_USAGE, f"{input_dir}: no such folder")
    options = GradeOptions(assignment=assignment, sandbox=sandbox, cell_timeout_s=cell_timeout, timeout_s=timeout,
                           memory_mb=memory, seed=seed, profile=profile, device=device, data_dir=data_dir,
                           gpus="all" if device.startswith("cuda") else None, lang=lang)
    display = None if quiet else _ProgressDisplay()
    try:
        try:
            summary = grade_batch(input_dir, out, workers=workers, engine=engine, ray_address=ray_address,
                                  options=options, progress=display.event if display else None)
        finally:
            if display is not None:
                display.close()
    except BatchInterrupted as exc:
        _fail(EXIT_INTERRUPTED, f"interrupted: {exc.done} of {exc.total} submissions done and kept in {out}; "
                                "run the same command again to grade the rest")
    except RubricError as exc:
        _fail(EXIT_USAGE, f"{exc.path}: " + "; ".join(exc.problems))
    except UsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except OSError as exc:  # OUT not writable, disk full...
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except Exception as exc:  # noqa: BLE001 - exit 3 with one line; the details are not the user's
        _fail(EXIT_GRADER_FAILED, f"internal error: {type(exc).__name__}: {exc}")
    if not quiet:
        _print_summary(summary)
    if similarity:
        from grader.similarity.command import after_batch

        after_batch(out, summary, input_dir=input_dir, lang=lang, quiet=quiet)


class _ProgressDisplay:
    """A rich progress bar on stderr: done / failed / remaining and an ETA, one line per problem."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self.console = Console(stderr=True, soft_wrap=True)
        self.progress = Progress(
            TextColumn("grading"), BarColumn(), TaskProgressColumn(),
            TextColumn("done {task.fields[done]} · failed {task.fields[failed]} · remaining {task.fields[remaining]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.task = None
        self.done = self.failed = 0

    def event(self, event) -> None:
        from rich.text import Text

        if event.kind == "start":
            if event.reused:
                self.console.print(Text(f"{event.reused} of {event.total} already graded (unchanged): kept"))
            if event.to_grade:
                self.progress.start()
                self.task = self.progress.add_task("grading", total=event.to_grade, done=0, failed=0,
                                                   remaining=event.to_grade)
            return
        self.done += 1
        if event.status != "graded":
            self.failed += 1
        line = Text(f"{event.student}: ")
        if event.status != "graded" or event.problem:
            line.append(event.status if event.status != "graded" else "graded, incomplete run",
                        style="red" if event.status != "graded" else "yellow")
            if event.reason:
                line.append(f" ({event.reason})")
            self.progress.console.print(line)
        self.progress.update(self.task, advance=1, done=self.done, failed=self.failed,
                             remaining=event.to_grade - self.done)

    def close(self) -> None:
        self.progress.stop()


def _print_summary(summary) -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(soft_wrap=True)  # whole lines: scripts grep them
    c = summary.counts
    line = Text(f"{len(summary.rows)} submissions: {c['graded']} graded ({c['incomplete']} with an incomplete run), "
                f"{c['rejected']} rejected, {c['error']} errors; {len(summary.graded_now)} graded now, "
                f"{len(summary.reused)} kept from an earlier run ({summary.duration_s:.0f} s)")
    console.print(line)
    if summary.ignored:
        console.print(Text("left out: " + ", ".join(summary.ignored), style="dim"))
    console.print(Text(f"Gradebook: {summary.gradebook}"))
    console.print(Text(f"Summary:   {summary.summary_html}"))
