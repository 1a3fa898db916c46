"""`grade review DIR` and `grade regrade DIR`: the command line over grader.review.

Registered in grader/cli.py with

    from grader.review.command import regrade, review
    app.command("review")(review)
    app.command("regrade")(regrade)

Exit status, as for `grade`: 0 done (a result was produced); 2 a usage error (unknown item,
score out of range, no such folder, nothing to regrade from...), one line per problem on stderr,
nothing applied; 3 the grader itself failed; 130 interrupted.

Only light imports at module level: cli.py imports this module for every `grade` command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from grader.review import PendingItem, RegradeOutcome

EXIT_OK, EXIT_USAGE, EXIT_GRADER_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130

Ask = Callable[[str], str]


def _err():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _fail(code: int, *messages: str) -> None:
    err = _err()
    for message in messages:
        err.print(f"grade: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _pts(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------
# interactive review
# --------------------------------------------------------------------------------------------


def _show_item(console: "Console", item: "PendingItem", index: int, total: int) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from grader.review import _CONTROL

    head = Text()
    head.append(f"[{index}/{total}] ", style="dim")
    if item.student != ".":
        head.append(item.student, style="bold cyan")
        head.append(" · ")
    head.append(_CONTROL.sub(" ", item.title), style="bold")
    head.append(f"  ({item.item}, {item.criterion}{', bonus' if item.bonus else ''})", style="dim")
    table = Table(expand=True, show_lines=False)
    table.add_column("Student's answer", ratio=3)
    table.add_column("Guidance (rubric)", ratio=2)
    answer = _CONTROL.sub(" ", item.answer).strip() or "(no answer)"
    guidance = Text(_CONTROL.sub(" ", item.guidance).strip() or "(no guidance in the rubric)")
    guidance.append(f"\n\nMax points: {_pts(item.max_score)}", style="bold")
    if item.reviews:
        last = item.reviews[-1]
        guidance.append(f"\nNow {_pts(float(last['score']))} points, by {last.get('reviewer')} at {last.get('at')}",
                        style="yellow")
    table.add_row(Text(answer, style="" if item.answer.strip() else "dim italic"), guidance)
    console.print(Panel(table, title=head, title_align="left"))


def _rich_ask(console: "Console") -> Ask:
    from rich.prompt import Prompt
    from rich.text import Text

    def ask(prompt: str) -> str:
        return Prompt.ask(Text(prompt), console=console, default="", show_default=False)

    return ask


def interactive_review(directory: Path, reviewer: str, *, console: "Console", ask: Ask | None = None,
                       include_reviewed: bool = False) -> dict[str, int]:
    """Walk the TA through the pending manual items of `directory` (one result or a batch):
    each item shows the answer beside the guidance, then asks for points (0..max, decimals
    allowed; `s` skips, `q` stops) and an optional comment. The scores of one student are
    applied when that student's items are done (and on `q`, end of input or Ctrl-C, what was
    scored so far); the gradebook is rebuilt at the end. Returns counts: reviewed, skipped."""
    from rich.text import Text

    from grader.review import apply_reviews, find_results, pending_items, refresh_gradebook

    ask = ask or _rich_ask(console)
    batch, _ = find_results(directory)
    items = pending_items(directory, include_reviewed=include_reviewed)
    counts = {"reviewed": 0, "skipped": 0}
    if not items:
        console.print(Text(f"Nothing awaits review in {directory}.", style="green"))
        return counts
    console.print(Text(f"{len(items)} item(s) to review in {directory}, as {reviewer}. "
                       "Points 0..max (decimals allowed), s = skip, q = stop.", style="bold"))
    collected: dict[Path, dict[str, dict]] = {}
    applied_any = False

    def flush(path: Path) -> None:
        nonlocal applied_any
        scores = collected.pop(path, None)
        if scores:
            result = apply_reviews(path, scores, reviewer, via="interactive", gradebook=False)
            applied_any = True
            line = Text(f"saved {len(scores)} review(s)")
            if path != Path(directory):
                line.append(f" of {path.name}")
            line.append(f": {_pts(result.get('score'))} / {_pts(result.get('max_score'))}")
            console.print(line, style="green")

    stop = False
    try:
        for index, item in enumerate(items, 1):
            if collected and item.path not in collected:
                for path in list(collected):
                    flush(path)
            _show_item(console, item, index, len(items))
            while True:
                try:
                    raw = ask(f"Points 0–{_pts(item.max_score)} (s skip, q stop)").strip()
                except EOFError:
                    raw = "q"
                if raw.lower() in ("s", "skip"):
                    counts["skipped"] += 1
                    break
                if raw.lower() in ("q", "quit"):
                    stop = True
                    break
                try:
                    points = float(raw.replace(",", "."))
                except ValueError:
                    console.print(Text(f"{raw!r} is not a number: give 0–{_pts(item.max_score)}, s or q", style="red"))
                    continue
                if not (0 <= points <= item.max_score + 1e-9) or points != points:
                    console.print(Text(f"{_pts(points)} is out of range 0–{_pts(item.max_score)}", style="red"))
                    continue
                try:
                    comment = ask("Comment (optional, shown to the student)")
                except EOFError:
                    comment, stop = "", True
                collected.setdefault(item.path, {})[item.item] = {"score": points, "comment": comment.strip()}
                counts["reviewed"] += 1
                break
            if stop:
                break
    finally:
        for path in list(collected):
            flush(path)
        if applied_any and batch is not None:
            refresh_gradebook(batch)
    if stop:
        console.print(Text("Stopped; the reviews above are saved. Run the same command to go on.", style="yellow"))
    return counts


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------


def review(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help=(
        "A result folder (with result.json) or a batch folder (one subfolder per student)."))],
    scores: Annotated[Optional[Path], typer.Option("--scores", help=(
        "A YAML file of scores to apply instead of asking (see --export-template)."))] = None,
    reviewer: Annotated[Optional[str], typer.Option("--reviewer", help=(
        "Who reviews (default: the scores file's reviewer, $GRADER_REVIEWER, or the login name)."))] = None,
    export_template: Annotated[Optional[Path], typer.Option("--export-template", help=(
        "Write the pending items (answers and guidance as comments) to this YAML file to fill in offline."))] = None,
    include_reviewed: Annotated[bool, typer.Option("--all", help=(
        "Also the manual items reviewed already (to review them again; the history keeps every review)."))] = False,
    web: Annotated[bool, typer.Option("--web", help=(
        "Serve a local review page (127.0.0.1 only; open the URL with the token it prints): question by "
        "question, answer groups, keyboard scoring. Ctrl-C stops it; every score is saved when given."))] = False,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help=(
        "The --web page's port on 127.0.0.1 (0: any free one)."))] = 0,
    lang: Annotated[Optional[str], typer.Option("--lang", help=(
        "Language of the --web page and the rubric's guidance on it: ko | en (default: the course's)."))] = None,
) -> None:
    """TA review of the free-text answers: score the pending manual items, interactively, from a file or on a local web page."""
    from rich.console import Console

    from grader.errors import GraderError, RubricError, UsageError
    from grader.review import ReviewError, apply_batch_reviews, default_reviewer, parse_scores, write_template

    if scores is not None and export_template is not None:
        _fail(EXIT_USAGE, "--scores and --export-template do not go together: export first, fill in, then apply")
    if web and (scores is not None or export_template is not None):
        _fail(EXIT_USAGE, "--web does not go with --scores or --export-template: the page saves each score itself")
    if not web and (port or lang is not None):
        _fail(EXIT_USAGE, "--port and --lang are options of --web")
    if lang is not None and lang not in ("ko", "en"):
        _fail(EXIT_USAGE, f"--lang {lang}: choose ko or en")
    out = Console(highlight=False)
    try:
        if web:
            from grader.review.web import serve

            who = reviewer or default_reviewer()

            def announce(url: str) -> None:
                # Plain print (no rich wrapping): the URL must stay one line to copy or click.
                print(f"Review page for {directory}, as {who} (Ctrl-C stops it):\n    {url}", flush=True)

            try:
                serve(directory, who, port=port, lang=lang, announce=announce)
            except KeyboardInterrupt:
                pass
            out.print("stopped; every score given on the page is saved", markup=False)
            return
        if export_template is not None:
            count = write_template(directory, export_template, include_reviewed=include_reviewed)
            out.print(f"wrote {count} item(s) to {export_template}; fill in the scores, then: "
                      f"grade review {directory} --scores {export_template}", markup=False)
            return
        if scores is not None:
            file_reviewer, results = parse_scores(scores)
            who = reviewer or file_reviewer or default_reviewer()
            done = apply_batch_reviews(directory, results, who, via=f"file:{scores.name}")
            _print_applied(out, done, who, directory)
            return
        who = reviewer or default_reviewer()
        interactive_review(directory, who, console=out, include_reviewed=include_reviewed)
    except ReviewError as exc:
        _fail(EXIT_USAGE, *exc.problems)
    except RubricError as exc:
        _fail(EXIT_USAGE, f"{exc.path}: " + "; ".join(exc.problems))
    except UsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "interrupted; the reviews entered so far are saved")
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except Exception as exc:  # noqa: BLE001 - exit 3 with one line
        _fail(EXIT_GRADER_FAILED, f"internal error: {type(exc).__name__}: {exc}")


def _print_applied(out: "Console", done: dict[str, dict], reviewer: str, directory: Path) -> None:
    from rich.table import Table
    from rich.text import Text

    if not done:
        out.print("no scores to apply (every entry was left empty)", markup=False)
        return
    table = Table(title=f"Reviewed by {reviewer}", title_justify="left")
    table.add_column("Student")
    table.add_column("Score", justify="right")
    table.add_column("Bonus", justify="right")
    table.add_column("Still pending", justify="right")
    for student, result in done.items():
        pending = sum(float(c.get("pending") or 0) for c in (result.get("criteria") or {}).values())
        table.add_row(Text(str(directory) if student == "." else student), Text(f"{_pts(result.get('score'))} / {_pts(result.get('max_score'))}"),
                      Text(_pts(result.get("bonus"))), Text(_pts(pending) if pending else "—"))
    out.print(table)


def _status_text(status: str | None, score: float | None):
    from rich.text import Text

    if status is None:
        return Text("—", style="dim")
    style = {"pass": "green", "fail": "red", "error": "bold red", "pending": "yellow"}.get(status, "")
    return Text(f"{status} {_pts(score)}", style=style)


def print_regrade(out: "Console", outcome: "RegradeOutcome") -> None:
    from rich.table import Table
    from rich.text import Text

    from grader.review import SAME_INPUTS

    old, new = outcome.old_result, outcome.result
    head = Text("Regrade of ", style="bold")
    head.append(str(outcome.result_dir))
    head.append(f"  ({outcome.source})", style="dim")
    out.print(head)
    out.print(Text("Inputs: " + ("; ".join(outcome.reasons) if outcome.reasons else SAME_INPUTS)))
    if outcome.changes:
        table = Table(title=f"{len(outcome.changes)} verdict(s) changed", title_justify="left")
        table.add_column("Check", overflow="fold")
        table.add_column("Old", no_wrap=True)
        table.add_column("New", no_wrap=True)
        table.add_column("New message")
        table.add_column("Why")
        for c in outcome.changes:
            name = Text(c.title)
            if c.id != c.title:
                name.append(f" [{c.id}]", style="dim")
            table.add_row(name, _status_text(c.old_status, c.old_score), _status_text(c.new_status, c.new_score),
                          Text(c.message.split("\n")[-1] if c.message else ""), Text(c.why))
        out.print(table)
    else:
        out.print(Text("No verdict changed.", style="green"))
    total = Text("Total: ", style="bold")
    total.append(f"{_pts(old.get('score'))} → {_pts(new.get('score'))} / {_pts(new.get('max_score'))}")
    total.append(f"   Bonus: {_pts(old.get('bonus'))} → {_pts(new.get('bonus'))}")
    if old.get("status") != new.get("status"):
        total.append(f"   Status: {old.get('status')} → {new.get('status')}", style="yellow")
    out.print(total)
    for warning in outcome.warnings:
        out.print(Text("Warning: " + warning, style="yellow"))
    if outcome.replaced:
        out.print(Text(f"The old result is kept in {outcome.previous}.", style="dim"))
    else:
        out.print(Text(f"The new result ({outcome.status}) did not replace the old one; it is kept in "
                       f"{outcome.previous}.", style="yellow"))


def regrade(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A result folder written by `grade` (with record.json).")],
    submission: Annotated[Optional[Path], typer.Option("--submission", help=(
        "Grade this submission instead of the one recorded (e.g. a student's corrected file)."))] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table on the terminal.")] = False,
) -> None:
    """Grade a submission again with the same secret seed and options; show which verdicts changed and why."""
    from rich.console import Console

    from grader.errors import GraderError, RubricError, UsageError
    from grader.review import ReviewError
    from grader.review import regrade as run_regrade

    if submission is not None and not submission.exists():
        _fail(EXIT_USAGE, f"{submission}: no such file or folder")
    err = _err()
    try:
        if quiet:
            outcome = run_regrade(directory, submission=submission)
        else:
            with err.status("regrading...") as status:
                outcome = run_regrade(directory, submission=submission,
                                      progress=lambda m: status.update(f"{m}..."))
    except ReviewError as exc:
        _fail(EXIT_USAGE, *exc.problems)
    except RubricError as exc:
        _fail(EXIT_USAGE, f"{exc.path}: " + "; ".join(exc.problems))
    except UsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "interrupted; the old result is unchanged")
    except GraderError as exc:
        _fail(EXIT_GRADER_FAILED, f"grader failure: {exc}")
    except Exception as exc:  # noqa: BLE001
        _fail(EXIT_GRADER_FAILED, f"internal error: {type(exc).__name__}: {exc}")
    if not quiet:
        print_regrade(Console(highlight=False), outcome)
    if outcome.status == "rejected":
        _fail(EXIT_USAGE, f"rejected: {outcome.result.get('reason')}")
    if outcome.status == "error":
        _fail(EXIT_GRADER_FAILED, f"grader failure: {outcome.result.get('reason')}")
