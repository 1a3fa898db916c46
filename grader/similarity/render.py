"""similarity.csv and similarity.html of a report (grader.similarity.core.SimilarityReport).

similarity.csv is for other tools: one row per flagged pair, English column names and evidence
kinds whatever the language, every text cell formula-safe (a leading quote before = + - @ tab
and carriage return, as gradebook.csv does), UTF-8 with a byte-order mark.

similarity.html is for the staff: the ranked pairs, each with its evidence and a side-by-side
view of the two submissions' code, the matching slices highlighted. It is rendered with Jinja's
autoescaping (student ids, code, answers and file names come from submissions) and then passes
through grader.report.safe_html.safe_page: no script, no remote load, a Content-Security-Policy.
Figures are shown as small PNG thumbnails that Pillow re-encoded, inlined as data: URIs.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import jinja2

from grader.i18n import LANGUAGES, default_language, html_gettext_for, render, translate
from grader.similarity import CSV_NAME, HTML_NAME
from grader.similarity.collect import IMAGE_HASH_SIZE

__all__ = ["write_report", "report_csv", "render_html"]

# Spreadsheet programs run a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CSV_COLUMNS = ["rank", "student_a", "student_b", "b_origin", "assignment", "evidence", "score",
               "code_similarity_a", "code_similarity_b", "code_matched_tokens", "answers", "images",
               "shared_numbers"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    # Control characters (a NUL ends a cell in several spreadsheet programs) as visible escapes:
    # file names and answer tags come from submissions.
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    # A leading quote makes spreadsheets show the text instead of running it.
    return "'" + text if text.startswith(_FORMULA_START) else text


def report_csv(report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rank, pair in enumerate(report.pairs, start=1):
        code = pair.code
        writer.writerow([
            rank, _cell(pair.a.key), _cell(pair.b.key), pair.b.origin, _cell(pair.a.assignment or pair.b.assignment),
            ";".join(pair.kinds), _cell(round(pair.score, 4)),
            _cell(round(code.similarity_a, 4)) if code else "", _cell(round(code.similarity_b, 4)) if code else "",
            code.tokens if code else "",
            _cell(" | ".join(sorted({f"{a['tag_a']}={a['tag_b']}" if a["tag_a"] != a["tag_b"] else a["tag_a"]
                                     for a in pair.answers}))),
            _cell(" | ".join(f"{i['a']}={i['b']}" for i in pair.images)),
            len(pair.numbers),
        ])
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------


_CELL_MARKER = re.compile(r"(?m)^# %% cell (\d+)\n")


def _segments(text: str, slices: list[tuple[int, int]], start: int, end: int) -> list[tuple[str, bool]]:
    """text[start:end] cut into (piece, highlighted) runs along the matching slices."""
    out, pos = [], start
    for s, e in slices:
        s, e = max(s, start), min(e, end)
        if e <= s:
            continue
        if s > pos:
            out.append((text[pos:s], False))
        out.append((text[s:e], True))
        pos = e
    if pos < end:
        out.append((text[pos:end], False))
    return out


def _cells(text: str, slices: list[tuple[int, int]]) -> list[dict]:
    """The code cut into its notebook cells (the `# %% cell N` markers), each with its runs and
    whether anything in it matches: the page opens the matching cells and folds the others."""
    starts = [m.start() for m in _CELL_MARKER.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    cells = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        marker = _CELL_MARKER.match(text, start)
        runs = _segments(text, slices, start, end)
        if not text[start:end].strip():
            continue
        cells.append({"cell": marker.group(1) if marker else "", "runs": runs,
                      "matched": any(hl for _, hl in runs), "lines": text[start:end].count("\n") or 1})
    return cells


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _thumb(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii") if data else ""


def _pair_view(rank: int, pair, show_code: bool) -> dict:
    code = pair.code
    return {
        "rank": rank, "anchor": f"pair-{rank}", "a": pair.a.label, "b": pair.b.label,
        "b_archive": pair.b.origin == "archive", "kinds": pair.kinds,
        "score": _percent(pair.score) if code else "—",
        "sim_a": _percent(code.similarity_a) if code else "—", "sim_b": _percent(code.similarity_b) if code else "—",
        "tokens": code.tokens if code else 0, "flagged_code": pair.flagged_code,
        "answers": pair.answers, "numbers": pair.numbers,
        "images": [{**i, "thumb_a": _thumb(i["thumb_a"]), "thumb_b": _thumb(i["thumb_b"])} for i in pair.images],
        "show_code": show_code,
        "code_a": _cells(pair.a.code, code.slices_a if code else []) if show_code else [],
        "code_b": _cells(pair.b.code, code.slices_b if code else []) if show_code else [],
    }


def build_view(report, lang: str) -> dict:
    settings = report.settings
    shown = settings.max_pairs_shown
    pairs = [_pair_view(rank, pair, rank <= shown) for rank, pair in enumerate(report.pairs, start=1)]
    counts = {kind: sum(1 for p in report.pairs if kind in p.kinds) for kind in ("code", "answer", "image", "numbers")}
    notes = [{"who": d.label, "notes": [render(n, lang) for n in d.notes]}
             for d in [*report.documents, *report.archive] if d.notes]
    other = "en" if lang == "ko" else "ko"
    return {
        "lang": lang, "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "batch_dir": str(report.batch_dir), "students": len(report.documents), "archive": len(report.archive),
        "compared": report.compared_pairs, "threshold": _percent(settings.threshold),
        "image_distance": settings.image_distance_max, "image_bits": IMAGE_HASH_SIZE ** 2,
        "min_numbers": settings.min_shared_numbers, "k": settings.noise_t, "window": settings.window,
        "templates": [str(t.path) for t in report.templates], "missing_templates": report.missing_templates,
        "pairs": pairs, "shown": min(shown, len(pairs)), "counts": counts, "notes": notes,
        "notice_other": translate("sim.notice", other), "other_lang": other,
        "duration_s": f"{report.duration_s:.1f}",
    }



def _environment(lang: str) -> jinja2.Environment:
    try:
        loader: jinja2.BaseLoader = jinja2.PackageLoader("grader.similarity", "templates")
    except (ValueError, ModuleNotFoundError):  # pragma: no cover - unusual import set-ups
        loader = jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["_"] = html_gettext_for(lang)
    return env


def render_html(report, lang: str | None = None) -> str:
    from grader.report.safe_html import safe_page

    lang = lang or default_language()
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    view = build_view(report, lang)
    page = _environment(lang).get_template("similarity.html.j2").render(**view)
    return safe_page(page, lang=lang)


def _atomic_write(path: Path, text: str, encoding: str = "utf-8") -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # backslashreplace: an undecodable byte of a name (a surrogate) is shown, not fatal.
    tmp.write_text(text, encoding=encoding, errors="backslashreplace", newline="")
    os.replace(tmp, path)


def write_report(report, lang: str | None = None) -> None:
    """similarity.html first, then similarity.csv: summary.html's link counts the CSV's rows and
    shows only when both are there."""
    html_path, csv_path = report.batch_dir / HTML_NAME, report.batch_dir / CSV_NAME
    _atomic_write(html_path, render_html(report, lang))
    _atomic_write(csv_path, report_csv(report), encoding="utf-8-sig")
    report.html_path, report.csv_path = html_path, csv_path
