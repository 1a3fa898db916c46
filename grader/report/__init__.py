"""Report stage: turn the grader's `result.json` dict into student feedback.

- `write_reports(result, out_dir)` writes `feedback.html` (self-contained: inline CSS and SVG,
  no JavaScript, no network; made safe by `grader.report.safe_html.safe_page`) and
  `feedback.md` (UTF-8) and returns their paths.
- `render_summary(result, console)` prints a compact summary with `rich` for the terminal.

Everything the student (or a student's code) can influence -- answers, error messages, file
names, source excerpts -- is untrusted. The HTML template is rendered with autoescaping on; the
Markdown template only ever inserts such text through the `md_*` filters below, which escape it
(or fence it) so that it cannot inject HTML or break the document's structure. Hidden checks are
stripped of their message and hint *here*, before any template sees them.

The templates live in `grader/report/templates/` and must be shipped as package data.
"""

from __future__ import annotations

import functools

import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from grader.i18n import gettext_for, render as render_text
from grader.report.safe_html import safe_page

__all__ = ["write_reports", "render_summary", "build_view"]

HTML_NAME = "feedback.html"
MD_NAME = "feedback.md"

BAR_WIDTH = 20  # characters of the Markdown text bar

STATUS_LABELS = {"graded": "Graded", "rejected": "Submission rejected", "error": "Grading error"}

VERDICT_LABELS = {
    "pass": "pass",
    "fail": "fail",
    "error": "error",
    "pending": "awaiting TA review",
}
VERDICT_ICONS = {"pass": "✅", "fail": "❌", "error": "⚠️", "pending": "⏳"}

EXECUTION_LABELS = {
    "completed": "all cells ran",
    "cell_error": "a cell raised an exception",
    "cell_timeout": "a cell ran past its time limit",
    "timeout": "the notebook ran past its time limit",
    "oom": "the notebook ran out of memory",
    "kernel_died": "the kernel died",
    "not_run": "the notebook was not run",
}

PROBLEM_LABELS = {
    "cell_error": "Exception in a cell",
    "cell_timeout": "Cell timed out",
    "timeout": "Notebook timed out",
    "oom": "Out of memory",
    "kernel_died": "Kernel died",
    "not_run": "Not run",
}

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def finite_number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, a string...)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt_points(value: Any) -> str:
    """24.5 -> '24.5', 30.0 -> '30', 0.125 -> '0.13', None -> '—'."""
    f = finite_number(value)
    if f is None:
        return "—"
    if abs(f) >= 1e6:
        return f"{f:.6g}"
    text = f"{f:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _text(value: Any) -> str:
    """Untrusted value -> str without control characters (keeps newlines and tabs)."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_CHARS.sub("", s)


def _humanize(key: str) -> str:
    s = key.replace("_", " ").replace("-", " ").strip()
    return s[:1].upper() + s[1:] if s else key


def _ratio(part: float | None, whole: float | None) -> float:
    if part is None or whole is None or whole <= 0:
        return 0.0
    return max(0.0, min(1.0, part / whole))


def _safe_href(path: Any) -> str | None:
    """A relative link to a file the grader wrote; None for anything with a scheme or odd form."""
    s = _text(path).strip()
    if not s or "\n" in s or s.startswith(("/", "\\")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", s):
        return None
    return quote(s.replace("\\", "/"), safe="/._-~")


# --------------------------------------------------------------------------------------------
# Markdown escaping (untrusted text -> inert Markdown)
# --------------------------------------------------------------------------------------------

# Backslash-escape the characters that make inline Markdown structure (emphasis, code spans,
# links/images, tables, strikethrough, math is left alone); `&`, `<`, `>` become entities so
# that no raw HTML (or autolink) survives.
_MD_INLINE = re.compile(r"([\\`*_\[\]|~#])")
# at the start of a line: bullets, setext underlines / thematic breaks, ordered-list markers
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d{1,9}[.)](?=\s|$))")


def _md_escape_line(line: str) -> str:
    line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    line = _MD_INLINE.sub(r"\\\1", line)
    # things that only matter at the start of a line: list markers, setext underlines, ordered lists
    line = line.lstrip()
    m = _MD_LINE_START.match(line)
    if m:
        marker = m.group(2)
        line = (marker[:-1] + "\\" + marker[-1]) + line[m.end():]
    return line


def md_inline(value: Any) -> str:
    """One line of inert Markdown (newlines and runs of whitespace collapse to one space)."""
    return _md_escape_line(" ".join(_text(value).split()))


def md_block(value: Any) -> str:
    """A paragraph of inert Markdown: short single-line text is escaped inline, anything with
    line structure (tracebacks...) goes into a fenced block so its layout survives."""
    s = _text(value).strip("\n")
    if "\n" in s:
        return md_fence(s, "text")
    return md_inline(s)


def md_fence(value: Any, lang: str = "") -> str:
    """A fenced code block that its content cannot close (the fence is longer than any run of
    backticks inside)."""
    s = _text(value).strip("\n")
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{s}\n{fence}"


def md_quote(value: Any) -> str:
    """A block quote of escaped text; every line keeps its own line (hard breaks)."""
    lines = [_md_escape_line(line) if line.strip() else "" for line in _text(value).strip("\n").split("\n")]
    out = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line and nxt:
            line += "\\"  # CommonMark hard line break
        out.append(f"> {line}" if line else ">")
    return "\n".join(out) if out else ">"


def text_bar(score: float | None, pending: float | None, max_score: float | None, width: int = BAR_WIDTH) -> str:
    """'██████▒▒░░░░' : earned, pending (awaiting review), missing."""
    done = round(_ratio(score, max_score) * width)
    with_pending = round(_ratio((score or 0.0) + (pending or 0.0), max_score) * width)
    pend = max(0, with_pending - done)
    return "█" * done + "▒" * pend + "░" * max(0, width - done - pend)


# --------------------------------------------------------------------------------------------
# the view model: every template reads this, never the raw result
# --------------------------------------------------------------------------------------------


def _check_view(raw: dict[str, Any], *, include_guidance: bool, t) -> dict[str, Any]:
    status = _text(raw.get("status")).strip().lower() or "unknown"
    hidden = _text(raw.get("visibility")).strip().lower() == "hidden"
    cid = _text(raw.get("id")).strip()
    title = _text(raw.get("title")).strip() or cid or t("(untitled check)")
    answer = raw.get("answer")
    guidance = raw.get("guidance")
    manual = answer is not None or guidance is not None
    score = finite_number(raw.get("score"))
    max_score = finite_number(raw.get("max_score"))
    pending = status == "pending"
    if pending:
        points = t("{points} pts pending", points=fmt_points(max_score))
    else:
        points = f"{fmt_points(score)} / {fmt_points(max_score)}"
    cell = raw.get("cell")
    cell = cell if isinstance(cell, int) and not isinstance(cell, bool) else None
    view = {
        "id": cid,
        "anchor": "check-" + re.sub(r"[^A-Za-z0-9_-]", "-", cid) if cid else "",
        "title": title,
        "criterion": _text(raw.get("criterion")).strip(),
        "criterion_label": t(_humanize(_text(raw.get("criterion")).strip())) if raw.get("criterion") else "",
        "status": status if status in VERDICT_LABELS else "unknown",
        "verdict": t(VERDICT_LABELS[status]) if status in VERDICT_LABELS else status,
        "icon": VERDICT_ICONS.get(status, "❔"),
        "score": score,
        "max_score": max_score,
        "points": points,
        "pending": pending,
        "hidden": hidden,
        "bonus": bool(raw.get("bonus")),
        "manual": manual,
        # never let a hidden check's details reach a template
        "message": "" if hidden else _text(raw.get("message")).strip("\n"),
        "hint": "" if hidden else _text(raw.get("hint")).strip("\n"),
        "cell": None if hidden else cell,
        "figure": None if hidden else _safe_href(raw.get("figure")),
        "answer": None if (hidden or answer is None) else _text(answer),
        "guidance": _text(guidance) if (include_guidance and not hidden and guidance is not None) else None,
    }
    return view


def _score_row(key: str, label: str, c: dict[str, Any]) -> dict[str, Any]:
    """One bar of a score chart (a criterion, or a part of a rubric with groups): earned,
    pending (awaiting review), not earned."""
    score, max_score, pending = finite_number(c.get("score")), finite_number(c.get("max_score")), finite_number(c.get("pending"))
    score_ratio = _ratio(score, max_score)
    pending_ratio = max(0.0, _ratio((score or 0.0) + (pending or 0.0), max_score) - score_ratio)
    return {
        "key": key,
        "label": label,
        "score": score,
        "max_score": max_score,
        "pending": pending or 0.0,
        "score_text": fmt_points(score),
        "max_text": fmt_points(max_score),
        "pending_text": fmt_points(pending) if pending else "",
        "score_pct": round(score_ratio * 100, 2),
        "pending_pct": round(pending_ratio * 100, 2),
        "bar": text_bar(score, pending, max_score),
    }


def _row_summary(row: dict[str, Any], t) -> str:
    return f"{row['score_text']} / {row['max_text']}" + (
        " · " + t("{points} pending", points=row["pending_text"]) if row["pending_text"] else "")


def build_view(result: dict[str, Any], *, include_guidance: bool = False, lang: str | None = None) -> dict[str, Any]:
    """Normalise a result dict (optional keys may be absent) into what the templates render, with
    every label in `lang` (default: the result's own `lang`, else English)."""
    result = result if isinstance(result, dict) else {}
    lang = lang or (result.get("lang") if result.get("lang") in ("ko", "en") else "en")
    t = gettext_for(lang)
    status = _text(result.get("status")).strip().lower() or "graded"

    raw_checks = [c for c in (result.get("checks") or []) if isinstance(c, dict)]
    checks = [_check_view(c, include_guidance=include_guidance, t=t) for c in raw_checks]

    # criteria, in the result's order
    criteria = []
    raw_criteria = result.get("criteria") or {}
    if isinstance(raw_criteria, dict):
        for key, c in raw_criteria.items():
            c = c if isinstance(c, dict) else {}
            criteria.append(_score_row(_text(key), _text(c.get("title")).strip() or t(_humanize(_text(key))), c))
    by_key = {c["key"]: c for c in criteria}

    # parts: the rubric's groups (the midterm's basic / applied / analysis), in the result's order
    parts = []
    raw_parts = result.get("groups") or {}
    if isinstance(raw_parts, dict):
        for key, g in raw_parts.items():
            g = g if isinstance(g, dict) else {}
            row = _score_row(_text(key), _text(render_text(g.get("title"), lang)).strip() or t(_humanize(_text(key))), g)
            row["items"] = [_text(i) for i in g.get("items") or [] if isinstance(i, str)]
            parts.append(row)

    groups: list[dict[str, Any]] = []
    if parts:
        # A rubric with groups: the checks by part (each check names its criterion), so the
        # feedback shows both views; checks of no part (a rubric changed since) come last.
        placed: set[str] = set()
        for part in parts:
            members = [ch for ch in checks if not ch["bonus"] and ch["id"] in part["items"]]
            placed.update(ch["id"] for ch in members)
            if members:
                groups.append({"key": "part-" + part["key"], "label": part["label"],
                               "summary": _row_summary(part, t), "checks": members})
        rest = [ch for ch in checks if not ch["bonus"] and ch["id"] not in placed]
        if rest:
            groups.append({"key": "other", "label": t("Other checks"), "summary": "", "checks": rest})
    else:
        # groups: one per criterion (result order, then any others the checks name), bonus last
        keys = [c["key"] for c in criteria]
        for ch in checks:
            if not ch["bonus"] and ch["criterion"] not in keys:
                keys.append(ch["criterion"])
        for key in keys:
            members = [ch for ch in checks if not ch["bonus"] and ch["criterion"] == key]
            if not members:
                continue
            crit = by_key.get(key)
            groups.append(
                {
                    "key": key or "other",
                    "label": crit["label"] if crit else (t(_humanize(key)) if key else t("Other checks")),
                    "summary": _row_summary(crit, t) if crit else "",
                    "checks": members,
                }
            )
    bonus_checks = [ch for ch in checks if ch["bonus"]]

    bonus, bonus_max = finite_number(result.get("bonus")), finite_number(result.get("bonus_max"))
    if bonus_checks:
        groups.append(
            {
                "key": "bonus",
                "label": t("Bonus"),
                "summary": f"{fmt_points(bonus)} / {fmt_points(bonus_max)}" if bonus_max else "",
                "checks": bonus_checks,
            }
        )

    # pending manual points: from the criteria when given, else from the pending checks
    if criteria:
        pending_total = sum(c["pending"] for c in criteria)
    else:
        pending_total = sum(ch["max_score"] or 0.0 for ch in checks if ch["pending"] and not ch["bonus"])
    bonus_pending = sum(ch["max_score"] or 0.0 for ch in bonus_checks if ch["pending"])

    counts = {k: sum(1 for ch in checks if ch["status"] == k) for k in ("pass", "fail", "error", "pending")}

    # execution
    ex = result.get("execution") if isinstance(result.get("execution"), dict) else {}
    ex_status = _text(ex.get("status")).strip()
    problems = []
    for p in ex.get("problems") or []:
        if not isinstance(p, dict):
            continue
        kind = _text(p.get("kind")).strip() or "problem"
        cell = p.get("cell")
        problems.append(
            {
                "kind": kind,
                "label": t(PROBLEM_LABELS[kind]) if kind in PROBLEM_LABELS else _humanize(kind),
                "cell": cell if isinstance(cell, int) and not isinstance(cell, bool) else None,
                "message": _text(p.get("message")).strip("\n"),
                "source_excerpt": _text(p.get("source_excerpt")).strip("\n"),
            }
        )
    network = ex.get("network")
    execution = {
        "present": bool(ex),
        "status": ex_status,
        "label": t(EXECUTION_LABELS[ex_status]) if ex_status in EXECUTION_LABELS else _humanize(ex_status),
        "ok": ex_status == "completed",
        "backend": _text(ex.get("backend")).strip(),
        "isolation": _text(ex.get("isolation")).strip(),
        "network": "" if network is None else (t("on") if network else t("off")),
        "duration": fmt_points(ex.get("duration_s")) + " s" if finite_number(ex.get("duration_s")) is not None else "",
        "problems": problems,
    }

    sub = result.get("submission") if isinstance(result.get("submission"), dict) else {}
    notes = sub.get("notes") or []
    sha = _text(sub.get("sha256")).strip()
    submission = {
        "present": bool(sub),
        "source": _text(sub.get("source")).strip(),
        "notebook": _text(sub.get("notebook")).strip(),
        "sha256": sha,
        "sha_short": sha[:12],
        "notes": [_text(n) for n in notes] if isinstance(notes, list) else [_text(notes)],
    }

    nb = result.get("executed_notebook")
    executed_notebook = None
    if nb:
        html_copy = result.get("executed_notebook_html")
        executed_notebook = {"name": _text(nb).strip(), "href": _safe_href(nb),
                             "html_href": _safe_href(html_copy) if html_copy else None}

    reason = _text(result.get("reason")).strip()
    notice = None
    if status == "rejected":
        notice = {
            "kind": "rejected",
            "title": t("Your submission was rejected and could not be graded"),
            "reason": reason or t("No reason was given."),
            "todo": [
                t("Fix the problem described above and submit again: nothing was graded yet, so no points were lost."),
                t("Submit the course notebook “{notebook}”, either on its own or in a .zip archive.",
                  notebook=submission["notebook"]) if submission["notebook"]
                else t("Submit the course notebook, either on its own or in a .zip archive."),
                t("Make sure the notebook opens in Jupyter (valid .ipynb) and that the archive has no links "
                  "and no paths outside its folder."),
            ],
        }
    elif status == "error":
        notice = {
            "kind": "error",
            "title": t("The grader failed on this submission"),
            "reason": reason or t("No reason was given."),
            "todo": [
                t("This is a problem of the grading system, not necessarily of your work: your submission was "
                  "received and you do not need to resubmit."),
                t("Contact the course staff (TAs) and quote the assignment id and the submission checksum "
                  "{checksum}.", checksum=submission["sha_short"]) if sha
                else t("Contact the course staff (TAs) and quote the assignment id."),
            ],
        }
    elif execution["present"] and ex_status and not execution["ok"]:
        notice = {
            "kind": "warning",
            "title": t("Your notebook did not run to completion: {problem}", problem=execution["label"]),
            "reason": reason,
            "todo": [
                t("Checks that depend on cells after the problem below may have failed because of it. "
                  "Run the notebook top to bottom (Restart & Run All) before submitting."),
            ],
        }

    return {
        "lang": lang,
        "assignment": _text(result.get("assignment")).strip(),
        "title": _text(result.get("title")).strip() or _text(result.get("assignment")).strip() or t("Feedback"),
        "status": status,
        "status_label": t(STATUS_LABELS[status]) if status in STATUS_LABELS else _humanize(status),
        "reason": reason,
        "notice": notice,
        "has_score": finite_number(result.get("score")) is not None or finite_number(result.get("max_score")) is not None,
        "score": fmt_points(result.get("score")),
        "max_score": fmt_points(result.get("max_score")),
        "score_pct": round(_ratio(finite_number(result.get("score")), finite_number(result.get("max_score"))) * 100, 1),
        "has_bonus": bonus_max is not None and bonus_max > 0 or bonus is not None and bonus > 0,
        "bonus": fmt_points(bonus),
        "bonus_max": fmt_points(bonus_max),
        "pending_total": pending_total,
        "pending_text": fmt_points(pending_total) if pending_total > 0 else "",
        "bonus_pending_text": fmt_points(bonus_pending) if bonus_pending > 0 else "",
        "criteria": criteria,
        "parts": parts,
        "groups": groups,
        "checks": checks,
        "counts": counts,
        "execution": execution,
        "submission": submission,
        "executed_notebook": executed_notebook,
        "duration": fmt_points(result.get("duration_s")) + " s" if finite_number(result.get("duration_s")) is not None else "",
        "grader_version": _text(result.get("grader_version")).strip(),
    }


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _loader() -> jinja2.BaseLoader:
    # Package data next to this module; PackageLoader also copes with zip imports.
    try:
        return jinja2.PackageLoader(__name__, "templates")
    except (ValueError, ModuleNotFoundError):  # pragma: no cover - e.g. unusual import setups
        return jinja2.FileSystemLoader(str(_TEMPLATES))


@functools.lru_cache(maxsize=None)
def _environment(*, html: bool, lang: str) -> jinja2.Environment:
    """One environment per (kind, language) and process: compiling the templates is most of a
    report's cost (a review of a group of answers rewrites many reports)."""
    env = jinja2.Environment(
        loader=_loader(),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["points"] = fmt_points
    env.globals["_"] = gettext_for(lang)  # headings from the message catalogs (grader/i18n)
    if not html:
        env.filters.update(md_inline=md_inline, md_block=md_block, md_fence=md_fence, md_quote=md_quote)
    return env


def warm_up(lang: str) -> None:
    """Compile the report templates for `lang` (the pipeline does it while the notebook runs)."""
    _environment(html=True, lang=lang).get_template("feedback.html.j2")
    _environment(html=False, lang=lang).get_template("feedback.md.j2")


def render_html(result: dict[str, Any], *, include_guidance: bool = False) -> str:
    """The feedback page as written to feedback.html: whatever the template let through, the
    page runs no script and loads nothing from elsewhere (local_images: the figures beside it)."""
    view = build_view(result, include_guidance=include_guidance)
    page = _environment(html=True, lang=view["lang"]).get_template("feedback.html.j2").render(**view)
    return safe_page(page, local_images=True)


def render_markdown(result: dict[str, Any], *, include_guidance: bool = False) -> str:
    view = build_view(result, include_guidance=include_guidance)
    text = _environment(html=False, lang=view["lang"]).get_template("feedback.md.j2").render(**view)
    return text.rstrip("\n") + "\n"


def write_reports(result: dict, out_dir: Path, *, include_guidance: bool = False) -> dict[str, Path]:
    """Write `feedback.html` and `feedback.md` (UTF-8) into `out_dir`; return their paths.

    `include_guidance` adds the rubric's TA guidance to manual items (for a staff copy); the
    student-facing default leaves it out.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / HTML_NAME, out_dir / MD_NAME
    page = render_html(result, include_guidance=include_guidance)
    html_path.write_text(page, encoding="utf-8", newline="\n")
    # backslashreplace: a lone surrogate (an undecodable byte of a file name) is shown, not fatal
    md_path.write_text(render_markdown(result, include_guidance=include_guidance), encoding="utf-8",
                       errors="backslashreplace", newline="\n")
    return {"html": html_path, "md": md_path}


_VERDICT_STYLES = {"pass": "green", "fail": "red", "error": "bold red", "pending": "yellow", "unknown": "dim"}


def render_summary(result: dict, console: Console) -> None:
    """Print a terminal summary: criteria table, failed/error checks, total and bonus.

    Every value from the result goes in as `rich.text.Text`, so no student text is parsed as
    console markup.
    """
    v = build_view(result)
    t = gettext_for(v["lang"])
    header = Text()
    header.append(v["title"], style="bold")
    if v["assignment"] and v["assignment"] != v["title"]:
        header.append(f"  ({v['assignment']})", style="dim")
    header.append("  ")
    header.append(v["status_label"], style={"graded": "green", "rejected": "red", "error": "bold red"}.get(v["status"], ""))
    console.print(header)

    if v["status"] in ("rejected", "error"):
        console.print(
            Panel(
                Text(v["reason"] or t("No reason was given.")),
                title=Text(v["status_label"]),
                border_style="red",
                expand=False,
            )
        )

    charts = [(v["parts"], t("policy.parts_heading"), t("policy.part")),
              (v["criteria"], t("Score by criterion"), t("Criterion"))]
    for rows, heading, column in charts:
        if not rows:
            continue
        table = Table(title=heading, title_justify="left")
        table.add_column(column)
        table.add_column(t("Score"), justify="right")
        table.add_column(t("Max"), justify="right")
        table.add_column(t("Awaiting TA review"), justify="right")
        table.add_column("", no_wrap=True)
        for c in rows:
            table.add_row(
                Text(c["label"]),
                Text(c["score_text"]),
                Text(c["max_text"]),
                Text(c["pending_text"] or "—", style="yellow" if c["pending_text"] else "dim"),
                Text(c["bar"]),
            )
        console.print(table)

    bad = [ch for ch in v["checks"] if ch["status"] in ("fail", "error")]
    if bad:
        table = Table(title=t("Failed checks"), title_justify="left")
        table.add_column(t("Verdict"), no_wrap=True)
        table.add_column(t("Check"))
        table.add_column(t("Points"), justify="right", no_wrap=True)
        table.add_column(t("Message"))
        for ch in bad:
            name = Text(ch["title"])
            if ch["id"] and ch["id"] != ch["title"]:
                name.append(f" [{ch['id']}]", style="dim")
            if ch["hidden"]:
                msg = Text(t("hidden check"), style="dim italic")
            else:
                first = ch["message"].split("\n")[-1] if ch["message"] else ""
                msg = Text(first)
                if ch["cell"] is not None:
                    msg.append(f" ({t('cell')} {ch['cell']})", style="dim")
            table.add_row(Text(ch["verdict"], style=_VERDICT_STYLES[ch["status"]]), name, Text(ch["points"]), msg)
        console.print(table)

    for p in v["execution"]["problems"]:
        line = Text(t("Execution") + ": ", style="bold yellow")
        line.append(p["label"])
        if p["cell"] is not None:
            line.append(f" ({t('cell')} {p['cell']})")
        if p["message"]:
            line.append(": " + p["message"].split("\n")[-1])
        console.print(line)

    total = Text()
    if v["has_score"]:
        total.append(t("Total") + ": ", style="bold")
        total.append(f"{v['score']} / {v['max_score']}", style="bold")
    if v["has_bonus"]:
        total.append("   " + t("Bonus") + ": ", style="bold")
        total.append(f"{v['bonus']} / {v['bonus_max']}")
    if v["pending_text"]:
        total.append("   + " + t("{points} pts awaiting TA review", points=v["pending_text"]), style="yellow")
    if v["bonus_pending_text"]:
        total.append("   + " + t("{points} bonus pts awaiting TA review", points=v["bonus_pending_text"]),
                     style="yellow")
    if total.plain:
        console.print(total)
