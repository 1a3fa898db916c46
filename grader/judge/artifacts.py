"""Experiment artifacts: claims to verify, not facts.

Each artifact has two copies: the one the student submitted, and the one the grader's own run of
the notebook wrote (brought back by the probe as plain, size-limited bytes, before any call). The
helpers here read either copy as untrusted bytes (tables, PNG images) and compare them; the
assignment modules build their experiment checks from them.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path

from grader.i18n import Message, msg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_ARTIFACT_BYTES = 2 * 2**20
MIN_PLOT_PIXELS = 64          # a plot narrower or lower than this is not a plot anyone can read
MAX_PLOT_PIXELS = 10_000


@dataclass(frozen=True)
class Copies:
    """One artifact folder: {relative name inside the folder: bytes} for each copy."""

    folder: str
    submitted: dict[str, bytes] | None   # None: the folder was not submitted
    produced: dict[str, bytes]           # what the grader's run wrote there (may be empty)


def submitted_files(root: Path, folder: str, suffixes: tuple[str, ...]) -> dict[str, bytes] | None:
    """The submitted folder's files (case-insensitive folder name; regular files only)."""
    target = next((c for c in sorted(root.iterdir()) if c.is_dir() and not c.is_symlink()
                   and c.name.lower() == folder.lower()), None) if root.is_dir() else None
    if target is None:
        return None
    files = {}
    for path in sorted(target.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in suffixes:
            if path.stat().st_size <= MAX_ARTIFACT_BYTES:
                files[path.relative_to(target).as_posix()] = path.read_bytes()
    return files


def produced_files(artifacts: dict[str, bytes], folder: str) -> dict[str, bytes]:
    prefix = folder.rstrip("/").lower() + "/"
    return {rel[len(prefix):]: data for rel, data in artifacts.items() if rel.lower().startswith(prefix)}


def copies(ctx, folder: str, suffixes: tuple[str, ...] = (".csv", ".png", ".json", ".txt")) -> Copies:
    return Copies(folder, submitted_files(ctx.submission_root, folder, suffixes),
                  produced_files(ctx.probe.artifacts, folder))


# --- images -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageFacts:
    ok: bool
    reason: Message | str = ""
    width: int = 0
    height: int = 0
    pixels: object = None    # an (H, W, 3) uint8 numpy array, for the report's picture


@functools.lru_cache(maxsize=16)  # a plot's pixels are up to 1600 x 1600 x 3 bytes
def inspect_png(data: bytes) -> ImageFacts:
    """Is this a real plot: a PNG that decodes, of a sensible size, with something drawn on it?

    Remembered by content (the facts are read-only): the submitted plots are inspected while the
    notebook runs (grader.judge.warm_static), and a run that drew the same bytes costs nothing."""
    if not data.startswith(PNG_SIGNATURE):
        return ImageFacts(False, msg("art.not_png"))
    try:
        import numpy as np
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = MAX_PLOT_PIXELS * MAX_PLOT_PIXELS // 4
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            rgb = image.convert("RGB")
            if width > 1600 or height > 1600:
                rgb.thumbnail((1600, 1600))
            pixels = np.asarray(rgb, dtype=np.uint8)
            pixels.setflags(write=False)  # shared by every caller (remembered)
    except Exception:  # noqa: BLE001 - untrusted bytes: any decoding problem is a reason
        return ImageFacts(False, msg("art.undecodable"))
    if min(width, height) < MIN_PLOT_PIXELS or max(width, height) > MAX_PLOT_PIXELS:
        return ImageFacts(False, msg("art.size", width=width, height=height, min=MIN_PLOT_PIXELS), width, height, pixels)
    grey = pixels.astype("float32").mean(axis=2)
    # A plot has ink: a noticeable share of pixels away from the background colour.
    background = float(np.median(grey))
    inked = float((np.abs(grey - background) > 24).mean())
    if inked < 0.005 or float(grey.std()) < 3.0:
        return ImageFacts(False, msg("art.blank"), width, height, pixels)
    return ImageFacts(True, "", width, height, pixels)


def compare_plots(copies_: Copies, *, what: Message | str) -> tuple[bool, Message | str, tuple | None]:
    """Every submitted PNG is a real plot, and the grader's run drew the same file as a real plot
    of a similar shape. Returns (ok, message, figure pair (submitted, produced) to show)."""
    if copies_.submitted is None:
        return False, msg("art.folder_missing", folder=copies_.folder), None
    submitted = {k: v for k, v in copies_.submitted.items() if k.lower().endswith(".png")}
    produced = {k.lower(): v for k, v in copies_.produced.items() if k.lower().endswith(".png")}
    if not submitted:
        return False, msg("art.no_png", folder=copies_.folder, what=what), None
    for name, data in sorted(submitted.items()):
        mine = inspect_png(data)
        if not mine.ok:
            return False, msg("art.bad_png", name=f"{copies_.folder}/{name}", reason=mine.reason), None
        ours_bytes = produced.get(name.lower())
        if ours_bytes is None:
            return False, msg("art.not_produced", name=f"{copies_.folder}/{name}"), None
        ours = inspect_png(ours_bytes)
        if not ours.ok:
            return False, msg("art.produced_bad", name=f"{copies_.folder}/{name}", reason=ours.reason), \
                (mine.pixels, ours.pixels) if ours.pixels is not None else None
        ratio_mine, ratio_ours = mine.width / mine.height, ours.width / ours.height
        if abs(math.log(ratio_mine / ratio_ours)) > math.log(1.5):
            return False, msg("art.plot_differs", name=f"{copies_.folder}/{name}",
                              mine=f"{mine.width}x{mine.height}", ours=f"{ours.width}x{ours.height}"), \
                (mine.pixels, ours.pixels)
    return True, msg("art.plots_ok", count=len(submitted), folder=copies_.folder), None


# --- tables -----------------------------------------------------------------------------------

def read_table(data: bytes | None, columns: dict[str, type], *, name: str) -> tuple[list[dict] | None, Message | None]:
    """Rows of a CSV with the given typed columns (extra columns are ignored)."""
    if data is None:
        return None, msg("art.csv_missing", name=name)
    if len(data) > MAX_ARTIFACT_BYTES:
        return None, msg("art.csv_large", name=name)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8", errors="replace")))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        return None, msg("art.csv_columns", name=name, missing=", ".join(missing), needed=", ".join(columns))
    rows = []
    for number, raw in enumerate(reader, start=2):
        row = {}
        try:
            for column, kind in columns.items():
                text = (raw.get(column) or "").strip()
                row[column] = text if kind is str else (int(float(text)) if kind is int else float(text))
        except (TypeError, ValueError):
            return None, msg("art.csv_not_number", name=name, line=number)
        if any(isinstance(v, float) and not (math.isfinite(v) and v >= 0) for v in row.values()):
            return None, msg("art.csv_negative", name=name, line=number)
        rows.append(row)
        if len(rows) > 10_000:
            break
    return rows, None


def tables(ctx, folder: str, file: str, columns: dict[str, type], name: str):
    """(submitted rows, rows the grader's run wrote, None), or with a failing Verdict third: the
    folder or the submitted table missing or malformed, or the run not writing a valid table."""
    from grader.judge import Verdict

    found = copies(ctx, folder)
    if found.submitted is None:
        return None, None, Verdict("fail", msg("art.folder_missing", folder=folder))
    mine, problem = read_table(found.submitted.get(file), columns, name=name)
    if problem:
        return None, None, Verdict("fail", problem)
    ours, problem = read_table(found.produced.get(file), columns, name=name)
    if problem:
        return mine, None, Verdict("fail", msg("art.run_did_not_write", name=name, detail=problem))
    return mine, ours, None


def compare_tables(submitted: list[dict], produced: list[dict], keys: tuple[str, ...],
                   figures: dict[str, float], *, name: str) -> Message | None:
    """None when the submitted table agrees with the one the grader's run produced: the same rows
    (by `keys`) and every figure within the given factor of the run's; else what differs."""
    def index(rows):
        return {tuple(r[k] for k in keys): r for r in rows}

    mine, ours = index(submitted), index(produced)
    only_mine, only_ours = sorted(set(mine) - set(ours), key=str), sorted(set(ours) - set(mine), key=str)
    if only_mine or only_ours:
        return msg("art.rows_differ", name=name, keys=", ".join(keys),
                   mine=_rows(only_mine) or "-", ours=_rows(only_ours) or "-")
    for key in sorted(mine, key=str):
        for column, factor in figures.items():
            a, b = float(mine[key][column]), float(ours[key][column])
            if a == b:
                continue
            if min(a, b) <= 0 or max(a, b) / min(a, b) > factor:
                return msg("art.figure_differs", name=name, row=_rows([key]), column=column,
                           mine=f"{a:.4g}", ours=f"{b:.4g}", factor=f"{factor:g}")
    return None


def _rows(keys: list[tuple]) -> str:
    shown = "; ".join("(" + ", ".join(str(v) for v in key) + ")" for key in keys[:4])
    return shown + (f"; … +{len(keys) - 4}" if len(keys) > 4 else "")
