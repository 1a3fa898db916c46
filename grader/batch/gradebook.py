"""The class view of a batch: `gradebook.csv` (one row per student) and `summary.html`.

Both are built from the students' `result.json` files only, so they can be rebuilt at any time
from OUT, and a resumed batch gives the same gradebook as one that ran in one go.

`summary.html` is for the staff (it names hidden checks): the score distribution as an inline
SVG histogram, the mean of every criterion, the pass rate of every check (weakest first: the
concepts the class missed), and the submissions that were rejected, failed, or whose notebook
did not run to completion, with the reason. It is self-contained (inline CSS and SVG, no
JavaScript, no external resource) and rendered with autoescaping: student ids, reasons and
messages come from submissions and are untrusted.

The page is localized (ko | en) like the student feedback: its texts come from the message
catalogs (grader/i18n, the English text is the id). `gradebook.csv` is a contract read by other
tools: its columns, `status` and `execution` values and `reason` stay English whatever the
language; only the HTML view translates (the reason of an incomplete run is rebuilt from the
result's execution record in the page's language).
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import jinja2

from grader.batch.names import printable
from grader.i18n import LANGUAGES, default_language, html_gettext_for, translate
from grader.report import finite_number, fmt_points  # one number formatting for the reports and the gradebook


__all__ = ["GradebookRow", "row_from_result", "write_gradebook", "render_summary_html", "write_summary",
           "CRITERIA_ORDER"]

CRITERIA_ORDER = ("implementation", "theory", "experiments", "code_quality")
# The sandbox's run statuses and problem kinds (grader.sandbox), for the staff's views. The English
# text is also the message id of the summary page's translation (grader/i18n/*.yaml).
EXECUTION_LABELS = {
    "cell_error": "a cell raised an exception", "cell_timeout": "a cell ran past its time limit",
    "timeout": "the notebook ran past its time limit", "oom": "the notebook ran out of memory",
    "kernel_died": "the kernel died", "not_run": "the notebook was not run",
}
PROBLEM_LABELS = {
    "cell_error": "exception", "cell_timeout": "cell timed out", "timeout": "notebook timed out",
    "oom": "out of memory", "kernel_died": "kernel died", "not_run": "not run",
}
HISTOGRAM_BINS = 10
# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _one_line(text: Any, limit: int = 400) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


@dataclass
class GradebookRow:
    """One student's line of the gradebook."""

    student: str
    status: str                                  # graded | rejected | error
    assignment: str | None = None
    criteria: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    max_score: float | None = None
    bonus: float | None = None
    pending: float | None = None                 # points of manual items awaiting a TA
    execution: str = ""                          # the notebook run's status (graded rows)
    reason: str = ""
    result: dict = field(default_factory=dict, repr=False)
    # The bonus and pending policy (grader.rubric.policy); columns appended after `reason`.
    bonus_max: float | None = None               # the bonus cap (at most the sheet's 5 points)
    bonus_pending: float | None = None           # bonus points awaiting a decision
    groups: dict[str, float] = field(default_factory=dict)  # score per rubric group (the midterm)

    @property
    def problem(self) -> bool:
        """Worth the TA's look: not graded, or graded from a run that did not complete."""
        return self.status != "graded" or self.execution not in ("", "completed")


def _english(text: str, **params: Any) -> str:
    """The identity translation: the gradebook's texts are English (a contract for other tools)."""
    return text.format(**params) if params else text


def _execution_reason(result: dict, t=_english) -> tuple[str, str]:
    """(the run's status, why it did not complete). `t` translates the labels: English for the
    gradebook, the page's language for summary.html. Unknown kinds and statuses are shown as
    they are."""
    ex = result.get("execution") if isinstance(result.get("execution"), dict) else {}
    status = str(ex.get("status") or "")
    if not status or status == "completed":
        return status, ""
    parts = []
    for p in ex.get("problems") or []:
        if not isinstance(p, dict):
            continue
        kind = str(p.get("kind"))
        label = t(PROBLEM_LABELS[kind]) if kind in PROBLEM_LABELS else str(p.get("kind") or t("problem"))
        cell = p.get("cell")
        parts.append(t("{problem} in cell {cell}", problem=label, cell=cell)
                     if isinstance(cell, int) and not isinstance(cell, bool) else label)
    summary = t(EXECUTION_LABELS[status]) if status in EXECUTION_LABELS else status.replace("_", " ")
    return status, summary + (f" ({'; '.join(dict.fromkeys(parts))})" if parts else "")


def row_from_result(student: str, result: dict) -> GradebookRow:
    """The gradebook row of one result.json. Only graded rows carry scores: a rejected or failed
    submission has not been graded yet (its 0 would read as a mark)."""
    status = str(result.get("status") or "error")
    row = GradebookRow(student=student, status=status, assignment=result.get("assignment"),
                       max_score=finite_number(result.get("max_score")) or None, result=result)
    if status == "graded":
        criteria = result.get("criteria") if isinstance(result.get("criteria"), dict) else {}
        row.criteria = {name: finite_number(c.get("score")) or 0.0 for name, c in criteria.items() if isinstance(c, dict)}
        row.score = finite_number(result.get("score"))
        row.bonus = finite_number(result.get("bonus"))
        row.pending = sum(finite_number(c.get("pending")) or 0.0 for c in criteria.values() if isinstance(c, dict))
        row.execution, row.reason = _execution_reason(result)
        from grader.rubric.policy import totals

        policy = totals(result)
        row.bonus_max, row.bonus_pending = policy.bonus_max, policy.bonus_pending
        groups = result.get("groups") if isinstance(result.get("groups"), dict) else {}
        row.groups = {str(g): finite_number(v.get("score")) or 0.0 for g, v in groups.items() if isinstance(v, dict)}
    else:
        row.reason = _one_line(result.get("reason") or "no reason given")
    return row


def _criteria_columns(rows: Iterable[GradebookRow]) -> list[str]:
    seen = list(CRITERIA_ORDER)
    for row in rows:
        for name in row.criteria:
            if name not in seen:
                seen.append(name)
    return seen


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    # Controls (a NUL ends a cell in several spreadsheet programs) and undecodable bytes, which
    # a reason may quote from a student's zip, as visible escapes; student ids hold none.
    text = printable(str(value))
    # A leading quote makes spreadsheets show the text instead of running it.
    return "'" + text if text.startswith(_FORMULA_START) else text


def gradebook_csv(rows: list[GradebookRow]) -> str:
    criteria = _criteria_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    groups = list(dict.fromkeys(g for row in rows for g in row.groups))
    # bonus_max .. group.<id>: appended after the original columns (a contract: those stay as they are).
    writer.writerow(["student", "status", "assignment", *criteria, "score", "max_score", "bonus", "pending",
                     "execution", "reason", "bonus_max", "bonus_pending", *(f"group.{g}" for g in groups)])
    for row in rows:
        writer.writerow([_cell(row.student), row.status, _cell(row.assignment),
                         *(_cell(row.criteria.get(c)) if row.status == "graded" else "" for c in criteria),
                         _cell(row.score), _cell(row.max_score), _cell(row.bonus), _cell(row.pending),
                         row.execution, _cell(row.reason), _cell(row.bonus_max), _cell(row.bonus_pending),
                         *(_cell(row.groups.get(g)) if row.status == "graded" else "" for g in groups)])
    return buffer.getvalue()


def _atomic_write(path: Path, text: str, encoding: str = "utf-8") -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # backslashreplace: a stray surrogate (an undecodable byte in some text) is shown, not fatal.
    tmp.write_text(text, encoding=encoding, errors="backslashreplace", newline="")
    os.replace(tmp, path)


def write_gradebook(rows: list[GradebookRow], path: Path) -> Path:
    """Write the gradebook (UTF-8 with a byte-order mark, so that spreadsheet programs read
    Korean names right; Python reads it with encoding="utf-8-sig")."""
    _atomic_write(Path(path), gradebook_csv(rows), encoding="utf-8-sig")
    return Path(path)


# --------------------------------------------------------------------------------------------
# summary.html
# --------------------------------------------------------------------------------------------


def _histogram(scores: list[float], max_score: float, t=_english) -> dict:
    """Bars of an SVG histogram: HISTOGRAM_BINS equal bins over [0, max_score], the last one
    closed (a full score counts in the top bin). `t` translates the bars' tooltips."""
    width, height, left, bottom, top = 640, 220, 36, 34, 12
    bins = [0] * HISTOGRAM_BINS
    span = max_score if max_score > 0 else (max(scores) if scores else 1.0) or 1.0
    for s in scores:
        index = min(HISTOGRAM_BINS - 1, max(0, int(s / span * HISTOGRAM_BINS)))
        bins[index] += 1
    peak = max(bins) or 1
    plot_w, plot_h = width - left - 8, height - bottom - top
    bar_w = plot_w / HISTOGRAM_BINS
    bars = []
    for i, count in enumerate(bins):
        h = plot_h * count / peak
        lo, hi = span * i / HISTOGRAM_BINS, span * (i + 1) / HISTOGRAM_BINS
        bars.append({
            "x": round(left + i * bar_w + 1, 1), "y": round(top + plot_h - h, 1), "w": round(bar_w - 2, 1),
            "h": round(h, 1), "count": count, "label": f"{fmt_points(lo)}–{fmt_points(hi)}",
            "label_x": round(left + i * bar_w + bar_w / 2, 1),
            "range": (t("{low} to {high} (inclusive)", low=fmt_points(lo), high=fmt_points(hi))
                      if i == HISTOGRAM_BINS - 1 else t("{low} to {high}", low=fmt_points(lo), high=fmt_points(hi))),
        })
    ticks = sorted({0, peak, peak // 2} if peak > 1 else {0, peak})
    return {"width": width, "height": height, "left": left, "top": top, "plot_h": plot_h, "plot_w": plot_w,
            "axis_y": top + plot_h, "bars": bars,
            "ticks": [{"value": t, "y": round(top + plot_h - plot_h * t / peak, 1)} for t in ticks]}


def _criterion_label(name: str, t=_english) -> str:
    """The criterion's name as the feedback report shows it ("code_quality" -> "Code quality",
    translated by the catalogs; a criterion they do not know is shown as it is)."""
    return t(name.replace("_", " ").capitalize()) if name else ""


def _check_rates(graded: list[GradebookRow], t=_english) -> list[dict]:
    checks: dict[str, dict] = {}
    for row in graded:
        for check in row.result.get("checks") or []:
            if not isinstance(check, dict) or not check.get("id"):
                continue
            entry = checks.setdefault(str(check["id"]), {
                "id": str(check["id"]), "title": str(check.get("title") or check["id"]),
                "criterion": str(check.get("criterion") or ""),
                "criterion_label": _criterion_label(str(check.get("criterion") or ""), t),
                "hidden": check.get("visibility") == "hidden",
                "bonus": bool(check.get("bonus")), "pass": 0, "fail": 0, "error": 0, "pending": 0,
            })
            status = str(check.get("status"))
            if status in ("pass", "fail", "error", "pending"):
                entry[status] += 1
    out = []
    for entry in checks.values():
        decided = entry["pass"] + entry["fail"] + entry["error"]
        entry["decided"] = decided
        entry["rate"] = entry["pass"] / decided if decided else None
        entry["pct"] = round(100 * entry["rate"], 1) if decided else None
        out.append(entry)
    # Weakest first; manual-only items (no decided verdict) last.
    out.sort(key=lambda e: (e["rate"] is None, e["rate"] if e["rate"] is not None else 0, e["id"]))
    return out


def _assignment_view(assignment: str | None, rows: list[GradebookRow], t=_english) -> dict:
    graded = [r for r in rows if r.status == "graded"]
    scores = [r.score for r in graded if r.score is not None]
    max_score = next((r.max_score for r in rows if r.max_score), 0.0) or 0.0
    title = next((str(r.result.get("title")) for r in rows if r.result.get("title")),
                 assignment or t("unknown assignment"))
    criteria = []
    for name in _criteria_columns(graded):
        values = [r.criteria[name] for r in graded if name in r.criteria]
        maxima = [finite_number((r.result.get("criteria") or {}).get(name, {}).get("max_score")) for r in graded]
        maxima = [m for m in maxima if m]
        if values:
            mean, top = statistics.fmean(values), maxima[0] if maxima else 0.0
            criteria.append({"name": name, "label": _criterion_label(name, t), "mean": mean,
                             "max": top, "pct": round(100 * mean / top, 1) if top else 0.0})
    stats = None
    if scores:
        stats = {"mean": statistics.fmean(scores), "median": statistics.median(scores), "min": min(scores),
                 "max": max(scores), "pass_count": sum(1 for s in scores if max_score and s >= 0.5 * max_score)}
    return {
        "assignment": assignment or "", "title": title, "count": len(rows),
        "graded": len(graded), "max_score": max_score, "stats": stats,
        "histogram": _histogram(scores, max_score, t) if scores else None,
        "criteria": criteria, "checks": _check_rates(graded, t),
        "pending_total": sum(r.pending or 0.0 for r in graded),
        "pending_students": sum(1 for r in graded if r.pending),
    }


def _language(lang: str | None) -> str:
    lang = lang or default_language()
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    return lang


def _text_gettext(lang: str):
    """Plain-text translation (for the view's strings; the template escapes them)."""

    def t(text: str, **params: Any) -> str:
        return translate(text, lang, **params)

    return t


def _problem_reason(row: GradebookRow, t) -> str:
    """The reason shown on the page, in its language: an incomplete run's reason is rebuilt from
    the result's execution record; a rejection's or error's reason is the result's own text (in
    the language the feedback was written in), as in the gradebook."""
    if row.status == "graded":
        if isinstance(row.result.get("execution"), dict):
            return _execution_reason(row.result, t)[1] or row.reason
        return row.reason
    if row.result and not row.result.get("reason"):
        return t("no reason given")
    return row.reason


def build_summary_view(rows: list[GradebookRow], *, input_dir: str = "", engine: str = "",
                       ignored: list[str] | None = None, grader_version: str = "",
                       lang: str | None = None, similarity: dict | None = None) -> dict:
    """The template's data. `lang` (ko | en) is the page's language; None: default_language().
    `similarity`: the link to the batch's similarity report (grader.similarity.summary_link)."""
    lang = _language(lang)
    t = _text_gettext(lang)
    groups: dict[str | None, list[GradebookRow]] = {}
    for row in rows:
        if row.status == "graded" or row.assignment:
            groups.setdefault(row.assignment, []).append(row)
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("graded", "rejected", "error")}
    counts["incomplete"] = sum(1 for r in rows if r.status == "graded" and r.problem)
    status_labels = {"rejected": t("rejected"), "error": t("error"), "incomplete": t("incomplete run")}
    problems = []
    for r in rows:
        if not r.problem:
            continue
        kind = r.status if r.status != "graded" else "incomplete"
        problems.append({"student": r.student, "status": status_labels.get(kind, r.status), "kind": kind,
                         "assignment": r.assignment or "", "reason": _problem_reason(r, t) or "—",
                         "score": fmt_points(r.score) if r.score is not None else ""})
    return {
        "lang": lang,
        "title": t("Batch summary"),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "input_dir": input_dir, "engine": engine, "grader_version": grader_version,
        "total": len(rows), "counts": counts,
        "assignments": [_assignment_view(a, rs, t) for a, rs in sorted(groups.items(), key=lambda kv: str(kv[0]))],
        "problems": problems, "ignored": list(ignored or []),
        "similarity": similarity,
    }


def _environment(lang: str) -> jinja2.Environment:
    try:
        loader: jinja2.BaseLoader = jinja2.PackageLoader("grader.batch", "templates")
    except (ValueError, ModuleNotFoundError):  # pragma: no cover - unusual import set-ups
        loader = jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["points"] = fmt_points
    env.globals["_"] = html_gettext_for(lang)  # texts from the message catalogs (grader/i18n)
    return env


def render_summary_html(rows: list[GradebookRow], *, lang: str | None = None, **meta: Any) -> str:
    """summary.html in `lang` (ko | en; None: default_language())."""
    view = build_summary_view(rows, lang=lang, **meta)
    return _environment(view["lang"]).get_template("summary.html.j2").render(**view)


def write_summary(rows: list[GradebookRow], path: Path, *, lang: str | None = None, **meta: Any) -> Path:
    from grader.report.safe_html import safe_page  # the file a person opens: no script, no remote load
    from grader.similarity import summary_link

    meta.setdefault("similarity", summary_link(Path(path).parent))  # every rewrite keeps the report's link
    _atomic_write(Path(path), safe_page(render_summary_html(rows, lang=lang, **meta)))
    return Path(path)
