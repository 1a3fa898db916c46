"""`grade similarity BATCH_DIR`: the command line over `grader.similarity.similarity_report`,
and the step `grade batch --similarity` runs after grading.

Registered in grader/cli.py with `app.command("similarity")(similarity)`. Exit status, as for
`grade`: 0 the report was written (whatever it found); 2 a usage error (not a batch folder, an
archive that is not there, a bad threshold or language, the similarity extra not installed), one
line on stderr; 3 the grader itself failed.

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


def _check_lang(lang: Optional[str]) -> None:
    from grader.i18n import LANGUAGES

    if lang is not None and lang not in LANGUAGES:
        _fail(EXIT_USAGE, f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")


def _run(batch_dir: Path, *, against: list[Path], threshold: float, lang: Optional[str],
         template: Optional[Path], quiet: bool, meta: Optional[dict] = None):
    """Write the report and refresh summary.html's link; every failure becomes an exit code."""
    from grader.errors import GraderError, UsageError
    from grader.similarity.core import Settings, similarity_report

    try:
        settings = Settings(threshold=threshold)
        if quiet:
            report = similarity_report(batch_dir, against=against, settings=settings, lang=lang, template=template)
        else:
            from rich.console import Console

            with Console(stderr=True).status("similarity...") as status:
                report = similarity_report(batch_dir, against=against, settings=settings, lang=lang,
                                           template=template, progress=lambda m: status.update(f"similarity: {m}..."))
        refresh_summary(batch_dir, meta)
    except UsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except OSError as exc:  # the batch folder not writable, disk full...
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except Exception as exc:  # noqa: BLE001 - exit 3 with one line; the details are not the user's
        _fail(EXIT_GRADER_FAILED, f"internal error: {type(exc).__name__}: {exc}")
    if not quiet:
        from rich.console import Console
        from rich.text import Text

        console = Console(soft_wrap=True)
        console.print(Text(f"{len(report.documents)} students, {len(report.archive)} archive documents, "
                           f"{report.compared_pairs} pairs compared: {len(report.pairs)} pairs to look at "
                           f"({report.duration_s:.1f} s)"))
        for assignment in report.missing_templates:
            console.print(Text(f"note: no student template for {assignment}: template code is not left out",
                               style="yellow"))
        console.print(Text(f"Similarity: {report.html_path}"))
    return report


def refresh_summary(batch_dir: Path, meta: Optional[dict] = None) -> None:
    """Rewrite summary.html (where the batch has one) so that it links the similarity report.
    `meta`: the batch's own summary data (grade batch --similarity); without it, the summary is
    rebuilt from the results as `grade review` does."""
    batch_dir = Path(batch_dir)
    if not (batch_dir / "summary.html").is_file():
        return
    if meta is not None:
        from grader.batch.gradebook import write_summary

        write_summary(meta["rows"], batch_dir / "summary.html",
                      **{k: v for k, v in meta.items() if k != "rows"})
    else:
        from grader.review import refresh_gradebook

        refresh_gradebook(batch_dir)


def similarity(
    batch_dir: Annotated[Path, typer.Argument(metavar="BATCH_DIR", help=(
        "The --out folder of `grade batch`: one folder per student with result.json and executed.ipynb."))],
    against: Annotated[Optional[list[Path]], typer.Option("--against", help=(
        "An archive of earlier terms to compare with too (repeatable): a batch folder, or a folder of "
        ".ipynb / .py files and submission zips."))] = None,
    threshold: Annotated[float, typer.Option(min=0.01, max=1.0, help=(
        "Code: flag a pair when at least this share of one side's code is found in the other "
        "(copydetect similarity, 0-1)."))] = 0.5,
    template: Annotated[Optional[Path], typer.Option(help=(
        "The student template whose code is left out (a notebook or its folder; default: "
        "student_template/<assignment>/ of the staff repository)."))] = None,
    lang: Annotated[Optional[str], typer.Option(help="Language of similarity.html: ko | en "
                                                  "(default: the course's, course.yaml).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on the terminal.")] = False,
) -> None:
    """Pairs of submissions that look copied: similarity.csv and similarity.html in BATCH_DIR."""
    _check_lang(lang)
    _run(batch_dir, against=list(against or []), threshold=threshold, lang=lang, template=template, quiet=quiet)


def check_before_batch() -> None:
    """`grade batch --similarity`: fail before any grading when the report could not be made."""
    from grader.errors import UsageError
    from grader.similarity.core import check_available

    try:
        check_available()
    except UsageError as exc:
        _fail(EXIT_USAGE, str(exc))


def after_batch(out: Path, summary, *, input_dir: Path, lang: Optional[str], quiet: bool) -> None:
    """`grade batch --similarity`: the report of the batch just graded (`summary`, what
    grade_batch returned), linked from its summary.html, which is rewritten with the batch's own data."""
    import grader

    meta = {"rows": summary.rows, "input_dir": str(input_dir), "engine": summary.engine, "ignored": summary.ignored,
            "grader_version": grader.__version__, "lang": lang}
    from grader.similarity.core import Settings

    _run(out, against=[], threshold=Settings().threshold, lang=lang, template=None, quiet=quiet, meta=meta)
