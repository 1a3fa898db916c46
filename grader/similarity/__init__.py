"""Copying between students: a similarity report for a batch (`grade similarity`, `grade batch --similarity`).

What it compares, per pair of submissions of the same assignment (and each submission against
the archives of earlier terms given with `--against`):

* **code**: the student's code cells (from `executed.ipynb`, without the parameters cell
  papermill injected) as one `.py` file with cell markers, fingerprinted once per submission with
  copydetect (winnowing over Pygments tokens, as MOSS does: renamed variables, rewritten
  comments and reordered cells do not hide a copy). The assignment's student template is
  copydetect's boilerplate: code that only fills in the template matches nothing.
* **free-text answers**: markdown cells tagged `answer:*`, identical once whitespace is
  normalised and the template's own lines (headers, placeholders) are removed.
* **figures**: PNG files of the submission (read from the zip or folder the batch graded, never
  extracted), identical or near-identical by perceptual hash. Figures that a large part of the
  class shares (what the template's plotting code draws the same for everybody, such as the mask
  pictures) are not evidence.
* **measured numbers**: decimal numbers with at least four significant digits in what the
  student handed in (the stored outputs of the submitted notebook, its CSV files). Timings
  measured on two machines, or in two runs, never agree to four digits; the same table of timings
  in two submissions means the numbers were copied, whatever the code. Numbers of the template,
  "round" numbers (0.25, 64, 2.38e-07) and numbers shared by a large part of the class are left
  out: those come from the same deterministic computation, not from a copy.

The batch's results are never changed: similarity is evidence for a person to weigh, not a
verdict, and no score depends on it.

Outputs in the batch folder: `similarity.csv` (one row per flagged pair, formula-safe like
`gradebook.csv`) and `similarity.html` (ranked pairs with a side-by-side view of the matching
code; inert: no script, no remote loads). `summary.html` links the report with its count.

This module stays light (the batch summary imports it): copydetect and imagehash are imported by
`grader.similarity.core` only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

__all__ = ["CSV_NAME", "HTML_NAME", "summary_link", "similarity_report"]

CSV_NAME = "similarity.csv"
HTML_NAME = "similarity.html"
_MAX_CSV_BYTES = 64 * 2**20  # a report of pairs, never this large: anything bigger is not ours


def summary_link(batch_dir: Path) -> dict | None:
    """What summary.html shows about the similarity report of `batch_dir`: {"href", "pairs"},
    or None when the batch has no (readable) report. The count is read from similarity.csv, so it
    is always the count of the report next to it."""
    batch_dir = Path(batch_dir)
    html, table = batch_dir / HTML_NAME, batch_dir / CSV_NAME
    try:
        if not (html.is_file() and table.is_file()) or table.stat().st_size > _MAX_CSV_BYTES:
            return None
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        return None
    if not rows or not rows[0] or rows[0][0] != "rank":
        return None
    return {"href": HTML_NAME, "pairs": len([r for r in rows[1:] if r])}


def similarity_report(batch_dir: Path, **options):
    """Write similarity.csv and similarity.html into `batch_dir` (see grader.similarity.core)."""
    from grader.similarity.core import similarity_report as run

    return run(batch_dir, **options)
