"""The Phase 2 grade of every student of a class, from the results of `grade batch`.

    from grader.phase import grade_phase
    report = grade_phase([Path("out/w5-resnet"), Path("out/w5-lstm"), ...], Path("phase-out"), lang="ko")

`compute_phase(batch_dirs)` reads every student's `result.json` in the batch folders given (one
folder per assignment, as `grade batch --out` writes them; a folder may also hold several
assignments, each result names its own), matches the students across assignments, and computes:

* the weekly part, 70% of the phase: the points earned in the seven weekly assignments (weeks 5
  to 7) out of WEEKLY_POINTS (180, the catalog: 25+25+20+30+30+25+25), plus each assignment's
  bonus, capped at SHEET_BONUS_MAX_POINTS (5) per assignment; bonus makes up for points lost
  elsewhere in the weekly part, which never exceeds its 70%;
* the midterm part, 30%: the midterm's points out of its 100 (the sheet gives the midterm no
  bonus: a midterm bonus is shown, not counted);
* `phase_percent` = weekly part + midterm part, in percent of the phase.

What is not a number is never a silent 0 (grader.rubric.policy): every assignment of every
student has a `state` -- graded, pending (graded, with points awaiting review), missing,
rejected, error (the grader failed), conflict (two results for one assignment) -- and the row a
`status`: complete, pending (only points awaiting review are left) or incomplete (something is
missing, rejected, failed or in conflict). `phase_percent` counts what is not graded as 0 and
pending points as not earned, so a row that is not complete is provisional, and says why in
`notes`; `phase_percent_if_pending_earned` is the grade once every pending point is earned.

Students are matched by the student id that `grade batch` keeps (the name of each student's
folder in OUT), NFC and case-insensitive (GitHub usernames are). A GitHub Classroom download
names repositories `<assignment>-<username>`; `grade batch` strips that prefix when it can tell
it from the folder names, and where it could not (e.g. a single repository of a Classroom
assignment named differently), the `<assignment>-` prefix of the result's own assignment id is
stripped here.

`write_phase(report, out_dir, lang)` writes `phase.csv` (UTF-8 with a byte-order mark; every
cell formula-safe like gradebook.csv; English columns and values: a contract) and `phase.html`
(the class's distribution and every student's row, in `lang`, made safe by
grader.report.safe_html.safe_page). `grade phase BATCH_DIR... --out DIR` (grader/phase/command.py)
is the command line. See docs/phase.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.assignments.catalog import CATALOG
from grader.errors import UsageError
from grader.rubric.policy import SHEET_BONUS_MAX_POINTS, totals

__all__ = ["WEEKLY_IDS", "MIDTERM_ID", "WEEKLY_POINTS", "WEEKLY_WEIGHT_PERCENT", "MIDTERM_WEIGHT_PERCENT",
           "AssignmentCell", "StudentPhase", "PhaseReport", "compute_phase", "phase_csv", "render_phase_html",
           "write_phase", "grade_phase", "CSV_NAME", "HTML_NAME"]

MIDTERM_ID = "w8-midterm"
# The weekly assignments of the sheet (weeks 5 to 7), in the catalog's order.
WEEKLY_IDS: tuple[str, ...] = tuple(a.id for a in CATALOG.values() if 5 <= a.week <= 7)
WEEKLY_POINTS: float = float(sum(CATALOG[a].points for a in WEEKLY_IDS))
PHASE_IDS: tuple[str, ...] = (*WEEKLY_IDS, MIDTERM_ID)
# The sheet's "Phase 2 종합 평가": weekly assignments 70%, midterm project 30%.
WEEKLY_WEIGHT_PERCENT = 70.0
MIDTERM_WEIGHT_PERCENT = 30.0

CSV_NAME = "phase.csv"
HTML_NAME = "phase.html"
STATES = ("graded", "pending", "missing", "rejected", "error", "conflict")
COUNTED_STATES = ("graded", "pending")
HISTOGRAM_BINS = 10
_FOLDER_LIMIT = 20_000_000  # bytes: a result.json larger than this is not a result the grader wrote


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


@dataclass
class AssignmentCell:
    """One assignment of one student."""

    assignment: str
    state: str                      # one of STATES
    points: float | None = None     # earned (graded | pending); None: nothing to count
    max_points: float = 0.0
    bonus: float = 0.0              # counted bonus (capped); 0 for the midterm
    pending: float = 0.0            # points awaiting review (not in `points`)
    bonus_pending: float = 0.0      # bonus points awaiting review (within the cap)
    reason: str = ""                # why it is not graded (rejected, error, conflict, missing)
    source: str = ""                # the result folder it comes from
    note: str = ""                  # anything else worth the TA's eye (a midterm bonus, a max_score)


@dataclass
class StudentPhase:
    """One student's phase grade and what it is made of."""

    student: str
    cells: dict[str, AssignmentCell]
    status: str = "complete"        # complete | pending | incomplete
    weekly_points: float = 0.0
    weekly_bonus: float = 0.0
    weekly_counted: float = 0.0     # min(points + bonus, WEEKLY_POINTS)
    weekly_pending: float = 0.0     # points and bonus points (within each cap) awaiting review
    weekly_percent: float = 0.0     # of the phase (at most WEEKLY_WEIGHT_PERCENT)
    midterm_points: float | None = None
    midterm_pending: float | None = None  # None: no midterm result to count
    midterm_percent: float = 0.0    # of the phase (at most MIDTERM_WEIGHT_PERCENT)
    phase_percent: float = 0.0
    phase_percent_if_pending_earned: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class PhaseReport:
    students: list[StudentPhase]
    batch_dirs: list[str]
    ignored: list[str] = field(default_factory=list)   # results left out, with why
    assignments_found: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# reading the batches
# --------------------------------------------------------------------------------------------


def _key(student: str) -> str:
    return unicodedata.normalize("NFC", student).casefold()


def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _result_folders(batch_dir: Path) -> list[Path]:
    """The student folders of a batch (non-hidden folders with a result.json, no links), or a
    UsageError that says what the folder is instead."""
    if not batch_dir.is_dir():
        raise UsageError(f"{batch_dir}: not a folder (give the folders that `grade batch --out` wrote)")
    if (batch_dir / "result.json").is_file():
        raise UsageError(f"{batch_dir}: one student's result, not a batch (give the folder that "
                         "`grade batch --out` wrote, with one folder per student)")
    try:
        children = sorted(batch_dir.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise UsageError(f"{batch_dir}: cannot list the folder ({exc.strerror or exc})") from None
    folders = [c for c in children if not c.name.startswith(".") and not c.is_symlink() and c.is_dir()
               and (c / "result.json").is_file()]
    if not folders:
        raise UsageError(f"{batch_dir}: no results in it (expected one folder per student with a result.json, "
                         "as `grade batch --out` writes them)")
    return folders


def _read(folder: Path) -> dict | None:
    path = folder / "result.json"
    try:
        if path.stat().st_size > _FOLDER_LIMIT:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _student_name(folder_name: str, assignment: str) -> str:
    name = unicodedata.normalize("NFC", folder_name)
    prefix = f"{assignment}-"
    # A Classroom repository `<assignment>-<username>` whose prefix the batch kept.
    if name.casefold().startswith(prefix.casefold()) and len(name) > len(prefix):
        return name[len(prefix):]
    return name


def _cell(assignment: str, result: dict | None, source: str) -> AssignmentCell:
    info = CATALOG[assignment]
    if result is None:
        return AssignmentCell(assignment, "error", max_points=float(info.points), source=source,
                              reason="result.json could not be read")
    status = result.get("status")
    if status == "graded":
        policy = totals(result)
        max_points = policy.max_score or float(info.points)
        cell = AssignmentCell(assignment, "pending" if policy.pending > 0 or policy.bonus_pending > 0 else "graded",
                              points=policy.score, max_points=max_points, bonus=policy.bonus,
                              pending=policy.pending, bonus_pending=policy.bonus_pending, source=source)
        notes = []
        if not math.isclose(max_points, info.points):
            notes.append(f"graded out of {max_points:g} points, the sheet says {info.points}")
        if assignment == MIDTERM_ID and (cell.bonus or cell.bonus_pending):
            # The sheet gives bonus points to the weekly assignments only.
            notes.append(f"midterm bonus {cell.bonus:g} not counted")
            cell.bonus = cell.bonus_pending = 0.0
        cell.note = "; ".join(notes)
        return cell
    state = "rejected" if status == "rejected" else "error"
    return AssignmentCell(assignment, state, max_points=float(info.points), source=source,
                          reason=_one_line(result.get("reason") or "no reason given"))


def compute_phase(batch_dirs: list[Path]) -> PhaseReport:
    """Every student's phase grade from the batch folders (see the module's docstring). A folder
    that is not a batch is a UsageError; a result that cannot be used is that student's `error`
    or is listed in `ignored`, never a crash."""
    if not batch_dirs:
        raise UsageError("give at least one batch folder (the OUT of `grade batch`)")
    found_cells: dict[str, dict[str, list[AssignmentCell]]] = {}
    names: dict[str, str] = {}
    ignored: list[str] = []
    found: set[str] = set()
    seen_dirs: set[Path] = set()
    for batch_dir in map(Path, batch_dirs):
        resolved = batch_dir.resolve()
        if resolved in seen_dirs:
            raise UsageError(f"{batch_dir}: given twice")
        seen_dirs.add(resolved)
        folders = _result_folders(batch_dir)
        results = {f: _read(f) for f in folders}
        named = {r.get("assignment") for r in results.values() if r and isinstance(r.get("assignment"), str)}
        # A rejected submission may name no assignment (no notebook found): a batch of one
        # assignment says which one it was.
        batch_assignment = next(iter(named)) if len(named) == 1 else None
        for folder, result in results.items():
            assignment = result.get("assignment") if result else None
            if not isinstance(assignment, str) or not assignment:
                assignment = batch_assignment
            where = f"{batch_dir.name}/{folder.name}"
            if assignment is None:
                ignored.append(f"{where}: the result names no assignment")
                continue
            if assignment not in PHASE_IDS:
                ignored.append(f"{where}: {assignment} is not an assignment of Phase 2")
                continue
            found.add(assignment)
            student = _student_name(folder.name, assignment)
            key = _key(student)
            names.setdefault(key, student)
            found_cells.setdefault(key, {}).setdefault(assignment, []).append(_cell(assignment, result, str(folder)))
    cells: dict[str, dict[str, AssignmentCell]] = {}
    for key, by_assignment in found_cells.items():
        mine = cells.setdefault(key, {})
        for assignment, candidates in by_assignment.items():
            if len(candidates) == 1:
                mine[assignment] = candidates[0]
            else:
                # Which one counts is not ours to guess: none does, and the row says why.
                mine[assignment] = AssignmentCell(
                    assignment, "conflict", max_points=candidates[0].max_points, source=candidates[0].source,
                    reason="several results: " + ", ".join(c.source for c in candidates))
    students = []
    for key in sorted(cells, key=lambda k: (k, names[k])):
        row = StudentPhase(student=names[key], cells={})
        for assignment in PHASE_IDS:
            cell = cells[key].get(assignment)
            if cell is None:
                reason = ("no result for this student" if assignment in found
                          else "no batch of this assignment was given")
                cell = AssignmentCell(assignment, "missing", max_points=float(CATALOG[assignment].points),
                                      reason=reason)
            row.cells[assignment] = cell
        _compute(row)
        students.append(row)
    return PhaseReport(students=students, batch_dirs=[str(d) for d in batch_dirs], ignored=ignored,
                       assignments_found=[a for a in PHASE_IDS if a in found])


def _compute(row: StudentPhase) -> None:
    """The numbers of one student's row (the formula of the module's docstring)."""
    weekly = [row.cells[a] for a in WEEKLY_IDS if row.cells[a].state in COUNTED_STATES]
    points = sum(c.points or 0.0 for c in weekly)
    bonus = sum(min(c.bonus, SHEET_BONUS_MAX_POINTS) for c in weekly)
    pending = sum(c.pending for c in weekly)
    bonus_pending = sum(min(c.bonus_pending, max(SHEET_BONUS_MAX_POINTS - c.bonus, 0.0)) for c in weekly)
    counted = min(points + bonus, WEEKLY_POINTS)
    counted_upper = min(points + bonus + pending + bonus_pending, WEEKLY_POINTS)
    row.weekly_points, row.weekly_bonus = round(points, 4), round(bonus, 4)
    row.weekly_counted = round(counted, 4)
    row.weekly_pending = round(pending + bonus_pending, 4)
    row.weekly_percent = round(WEEKLY_WEIGHT_PERCENT * counted / WEEKLY_POINTS, 4)
    weekly_upper = WEEKLY_WEIGHT_PERCENT * counted_upper / WEEKLY_POINTS

    midterm = row.cells[MIDTERM_ID]
    midterm_upper = 0.0
    if midterm.state in COUNTED_STATES:
        top = midterm.max_points or float(CATALOG[MIDTERM_ID].points)
        earned = min(midterm.points or 0.0, top)
        row.midterm_points = round(midterm.points or 0.0, 4)
        row.midterm_pending = round(midterm.pending, 4)
        row.midterm_percent = round(MIDTERM_WEIGHT_PERCENT * earned / top, 4)
        midterm_upper = MIDTERM_WEIGHT_PERCENT * min(earned + midterm.pending, top) / top
    row.phase_percent = round(row.weekly_percent + row.midterm_percent, 4)
    row.phase_percent_if_pending_earned = round(weekly_upper + midterm_upper, 4)

    states = [c.state for c in row.cells.values()]
    if any(s in ("missing", "rejected", "error", "conflict") for s in states):
        row.status = "incomplete"
    elif "pending" in states:
        row.status = "pending"
    else:
        row.status = "complete"
    notes = []
    for cell in row.cells.values():
        if cell.state == "pending":
            waiting = cell.pending + cell.bonus_pending
            notes.append(f"{cell.assignment}: {waiting:g} points pending review")
        elif cell.state not in COUNTED_STATES:
            notes.append(f"{cell.assignment} {cell.state}: {cell.reason}" if cell.reason
                         else f"{cell.assignment} {cell.state}")
        if cell.note:
            notes.append(f"{cell.assignment}: {cell.note}")
    row.notes = notes


# --------------------------------------------------------------------------------------------
# phase.csv
# --------------------------------------------------------------------------------------------

CSV_COLUMNS = ("student", "status", "phase_percent", "phase_percent_if_pending_earned", "weekly_percent",
               "midterm_percent", "weekly_points", "weekly_bonus_points", "weekly_counted_points",
               "weekly_pending_points", "midterm_points", "midterm_pending_points")
CELL_COLUMNS = ("state", "points", "bonus_points", "pending_points")


def phase_csv(report: PhaseReport) -> str:
    """The class's phase grades, one row per student. Cells are formula-safe (the gradebook's
    writer); a number that does not exist (a missing assignment's points) is an empty cell
    beside its state, never a 0."""
    from grader.batch.gradebook import _cell as csv_cell  # the gradebook's formula-safe cells

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"{a}.{c}" for a in PHASE_IDS for c in CELL_COLUMNS), "notes"])
    for row in report.students:
        values: list[Any] = [row.student, row.status, row.phase_percent, row.phase_percent_if_pending_earned,
                             row.weekly_percent, row.midterm_percent, row.weekly_points, row.weekly_bonus,
                             row.weekly_counted, row.weekly_pending, row.midterm_points, row.midterm_pending]
        for assignment in PHASE_IDS:
            cell = row.cells[assignment]
            counted = cell.state in COUNTED_STATES
            values += [cell.state, cell.points if counted else None,
                       cell.bonus if counted and assignment != MIDTERM_ID else None,
                       cell.pending + cell.bonus_pending if counted else None]
        values.append("; ".join(row.notes))
        writer.writerow([csv_cell(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                         for v in values])
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# phase.html
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    from grader.report import fmt_points

    return fmt_points(value)


def _histogram(rows: list[StudentPhase], t) -> dict:
    """HISTOGRAM_BINS bins of the phase grade over [0, 100], the last one closed; each bar split
    into complete rows (solid) and provisional ones (hatched: something pending or missing)."""
    width, height, left, bottom, top = 640, 220, 36, 34, 12
    final = [0] * HISTOGRAM_BINS
    provisional = [0] * HISTOGRAM_BINS
    for row in rows:
        index = min(HISTOGRAM_BINS - 1, max(0, int(row.phase_percent / 100 * HISTOGRAM_BINS)))
        (final if row.status == "complete" else provisional)[index] += 1
    peak = max(f + p for f, p in zip(final, provisional)) or 1
    plot_w, plot_h = width - left - 8, height - bottom - top
    bar_w = plot_w / HISTOGRAM_BINS
    bars = []
    for i in range(HISTOGRAM_BINS):
        lo, hi = 100 * i // HISTOGRAM_BINS, 100 * (i + 1) // HISTOGRAM_BINS
        h_final, h_prov = plot_h * final[i] / peak, plot_h * provisional[i] / peak
        bars.append({
            "x": round(left + i * bar_w + 1, 1), "w": round(bar_w - 2, 1),
            "final_y": round(top + plot_h - h_final, 1), "final_h": round(h_final, 1),
            "prov_y": round(top + plot_h - h_final - h_prov, 1), "prov_h": round(h_prov, 1),
            "final": final[i], "provisional": provisional[i], "label": f"{lo}",
            "label_x": round(left + i * bar_w + bar_w / 2, 1),
            "title": t("phase.bar_title", low=lo, high=hi, complete=final[i], provisional=provisional[i]),
        })
    ticks = sorted({0, peak, peak // 2} if peak > 1 else {0, peak})
    return {"width": width, "height": height, "left": left, "top": top, "axis_y": top + plot_h,
            "plot_w": plot_w, "bars": bars, "end_x": left + plot_w,
            "ticks": [{"value": v, "y": round(top + plot_h - plot_h * v / peak, 1)} for v in ticks]}


def _cell_view(cell: AssignmentCell, t) -> dict:
    counted = cell.state in COUNTED_STATES
    parts = []
    if counted:
        parts.append(f"{_fmt(cell.points)} / {_fmt(cell.max_points)}")
        if cell.bonus:
            parts.append(t("phase.cell_bonus", points=_fmt(cell.bonus)))
        if cell.pending + cell.bonus_pending:
            parts.append(t("phase.cell_pending", points=_fmt(cell.pending + cell.bonus_pending)))
    label = t(f"phase.state.{cell.state}")
    detail = " — ".join(x for x in (label, cell.reason, cell.note) if x)
    return {"state": cell.state, "label": label, "text": " · ".join(parts), "detail": detail}


def build_phase_view(report: PhaseReport, *, lang: str) -> dict:
    from grader.i18n import translate

    def t(text: str, **params: Any) -> str:
        return translate(text, lang, **params)

    rows = report.students
    percents = [r.phase_percent for r in rows]
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("complete", "pending", "incomplete")}
    stats = None
    if percents:
        stats = {"mean": _fmt(statistics.fmean(percents)), "median": _fmt(statistics.median(percents)),
                 "min": _fmt(min(percents)), "max": _fmt(max(percents))}
    return {
        "lang": lang,
        "title": t("phase.title"),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "batch_dirs": report.batch_dirs,
        "formula": t("phase.formula", weekly_points=_fmt(WEEKLY_POINTS), bonus_cap=_fmt(SHEET_BONUS_MAX_POINTS),
                     weekly_weight=_fmt(WEEKLY_WEIGHT_PERCENT), midterm_weight=_fmt(MIDTERM_WEIGHT_PERCENT)),
        "counts": counts,
        "total": len(rows),
        "stats": stats,
        "histogram": _histogram(rows, t) if rows else None,
        "assignments": [{"id": a, "points": CATALOG[a].points} for a in PHASE_IDS],
        "rows": [{
            "student": r.student, "status": r.status, "status_label": t(f"phase.status.{r.status}"),
            "phase": _fmt(r.phase_percent), "upper": _fmt(r.phase_percent_if_pending_earned),
            "show_upper": not math.isclose(r.phase_percent, r.phase_percent_if_pending_earned),
            "weekly": _fmt(r.weekly_percent), "midterm": _fmt(r.midterm_percent),
            "cells": [_cell_view(r.cells[a], t) for a in PHASE_IDS],
        } for r in rows],
        "ignored": report.ignored,
    }


def _environment(lang: str):
    import jinja2

    from grader.i18n import html_gettext_for

    try:
        loader: jinja2.BaseLoader = jinja2.PackageLoader("grader.phase", "templates")
    except (ValueError, ModuleNotFoundError):  # pragma: no cover - unusual import set-ups
        loader = jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["_"] = html_gettext_for(lang)
    return env


def render_phase_html(report: PhaseReport, *, lang: str | None = None) -> str:
    """phase.html in `lang` (ko | en; None: the course's language), inert (safe_page)."""
    from grader.i18n import LANGUAGES, default_language
    from grader.report.safe_html import safe_page

    lang = lang or default_language()
    if lang not in LANGUAGES:
        raise UsageError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    view = build_phase_view(report, lang=lang)
    return safe_page(_environment(lang).get_template("phase.html.j2").render(**view))


def _atomic_write(path: Path, text: str, encoding: str = "utf-8") -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding=encoding, errors="backslashreplace", newline="")
    os.replace(tmp, path)


def write_phase(report: PhaseReport, out_dir: Path, *, lang: str | None = None) -> dict[str, Path]:
    """Write phase.csv and phase.html into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    html = render_phase_html(report, lang=lang)  # an unknown language fails before anything is written
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create the folder ({exc.strerror or exc})") from None
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    _atomic_write(csv_path, phase_csv(report), encoding="utf-8-sig")
    _atomic_write(html_path, html)
    return {"csv": csv_path, "html": html_path}


def grade_phase(batch_dirs: list[Path], out_dir: Path, *, lang: str | None = None) -> PhaseReport:
    """The entry function: compute the class's phase grades and write phase.csv and phase.html."""
    report = compute_phase(batch_dirs)
    write_phase(report, out_dir, lang=lang)
    return report
