"""What a similarity report compares, read from a batch folder, an archive or a submission.

Everything here reads untrusted files (the students' notebooks and submissions) and never
executes or unpickles anything: notebooks are JSON, submissions are read as zips or folders
without extracting them, images are decoded by Pillow with a pixel limit checked before any
decoding. Every limit is a plain size; a file over it is skipped and named in the document's
notes, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import struct
import unicodedata
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Iterator

from grader.i18n import Message, msg

__all__ = ["Document", "ImageItem", "Template", "read_batch", "read_archive", "load_template",
           "notebook_code", "notebook_answers", "measured_numbers", "normalise_answer"]

MAX_NOTEBOOK_BYTES = 64 * 2**20       # an executed notebook with its outputs; larger: not read
MAX_CODE_CHARS = 1_000_000            # code of one submission fingerprinted; the rest is cut (noted)
MAX_MEMBER_BYTES = 32 * 2**20         # one file read out of a submission (a PNG, a CSV, the notebook)
MAX_MEMBERS = 5_000                   # entries of a submission looked at
MAX_READ_BYTES = 256 * 2**20          # bytes read out of one submission in all
MAX_IMAGES = 64                       # PNG files hashed per submission
MAX_IMAGE_PIXELS = 40_000_000         # checked from the PNG header, before decoding (no pixel bombs)
MAX_ARCHIVE_FILES = 20_000            # notebooks / .py / .zip files taken from one --against folder
IMAGE_HASH_SIZE = 16                  # 256-bit perceptual hash: 64 bits put independent plots of the
                                      # template's own plotting code 4 bits apart (seen), 256 bits >= 30
MIN_SIGNIFICANT_DIGITS = 4            # a "measured" number: at least this many significant digits
SKIPPED_DIRS = {"__macosx", ".ipynb_checkpoints", "__pycache__", ".git"}
# Cells that are not the student's: papermill's injected parameters, the grader's probe and its
# problem markers (grader.sandbox.runner, grader.pipeline._mark_problems).
NOT_STUDENT_TAGS = {"injected-parameters", "grader-probe", "grader-problem"}
# A number in text: not part of a word, a version or a path ("v1.2.3", "x86_64").
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")


@dataclass
class ImageItem:
    """One PNG of a submission: its name there, the bytes' hash and the perceptual hash."""

    name: str
    sha256: str
    phash: bytes          # IMAGE_HASH_SIZE**2 bits, packed
    width: int
    height: int
    thumbnail: bytes = b""  # a small PNG for the report (re-encoded by Pillow, at most 240 px)


@dataclass
class Document:
    """One submission (or one file of an archive) as the report compares it."""

    key: str                        # unique: the student id, or "<archive>/<path>"
    label: str                      # what the report shows
    origin: str                     # "batch" | "archive"
    assignment: str | None = None   # None: compared with every assignment
    code: str = ""                  # the .py file compared: "".join(pieces)
    pieces: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)   # tag -> the answer as written
    images: list[ImageItem] = field(default_factory=list)
    numbers: dict[str, str] = field(default_factory=dict)   # normalised number -> where it was seen
    notes: list[Message] = field(default_factory=list)      # what could not be read or compared


@dataclass
class Template:
    """The assignment's student template: its code is boilerplate, its answer cells' lines,
    pictures and numbers are nobody's evidence."""

    assignment: str
    path: Path | None
    code: str = ""
    pieces: list[str] = field(default_factory=list)
    answer_lines: set[str] = field(default_factory=set)
    image_hashes: list[bytes] = field(default_factory=list)
    numbers: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------------------------
# notebooks
# --------------------------------------------------------------------------------------------


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _tags(cell: dict) -> list[str]:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _cells(notebook: dict) -> list[dict]:
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def parse_notebook(data: bytes) -> dict | None:
    """A notebook's JSON (a dict with a list of cells), or None when it is not one."""
    try:
        notebook = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return notebook if isinstance(notebook, dict) and isinstance(notebook.get("cells"), list) else None


def _python_line(line: str) -> str:
    # IPython magics and shell escapes are not Python: as comments they neither break the
    # tokenizer nor count as code (`%matplotlib inline` is nobody's work).
    stripped = line.lstrip()
    return f"# {line}" if stripped.startswith(("%", "!")) else line


def notebook_code_pieces(notebook: dict) -> list[str]:
    """The student's code cells as the pieces of one .py file: each cell after a `# %% cell N`
    marker (N: its position among the notebook's own cells, as the executed notebook's problem
    markers count). Cells stay separate pieces so that a cell every student has unchanged (the
    template's) is tokenised once for the whole class."""
    pieces: list[str] = []
    position = 0
    for cell in _cells(notebook):
        tags = set(_tags(cell))
        if tags & NOT_STUDENT_TAGS:
            continue
        position += 1
        if cell.get("cell_type") != "code":
            continue
        source = "\n".join(_python_line(line) for line in _source(cell).splitlines())
        if source.strip():
            if pieces:
                pieces.append("\n")
            pieces.extend((f"# %% cell {position}\n", f"{source}\n"))
    return pieces


def notebook_code(notebook: dict) -> str:
    """The student's code cells as one .py file (see notebook_code_pieces)."""
    return "".join(notebook_code_pieces(notebook))


def notebook_answers(notebook: dict) -> dict[str, str]:
    """Free-text answers: markdown cells tagged `answer:<id>`, by tag (the first cell of a tag)."""
    answers: dict[str, str] = {}
    for cell in _cells(notebook):
        if cell.get("cell_type") != "markdown":
            continue
        for tag in _tags(cell):
            if tag.startswith("answer:") and tag not in answers:
                answers[tag] = _source(cell)
    return answers


def notebook_outputs_text(notebook: dict) -> str:
    """The text the code cells printed or displayed (streams, text/plain), as the notebook stores it."""
    pieces: list[str] = []
    for cell in _cells(notebook):
        if cell.get("cell_type") != "code" or set(_tags(cell)) & NOT_STUDENT_TAGS:
            continue
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            if not isinstance(output, dict):
                continue
            texts = [output.get("text")]
            data = output.get("data")
            if isinstance(data, dict):
                texts.append(data.get("text/plain"))
            for text in texts:
                if isinstance(text, list):
                    text = "".join(t for t in text if isinstance(t, str))
                if isinstance(text, str):
                    pieces.append(text)
    return "\n".join(pieces)


def _line_key(line: str) -> str:
    return " ".join(unicodedata.normalize("NFC", line).split())


def normalise_answer(text: str, template_lines: set[str] = frozenset()) -> str:
    """An answer as compared: NFC, the template's own lines (the "Answer:" header, the
    placeholder) removed, whitespace runs made one space."""
    kept = [key for key in (_line_key(line) for line in text.splitlines()) if key and key not in template_lines]
    return " ".join(kept)


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------


def _significant_digits(value: float) -> int:
    mantissa = repr(abs(value)).split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


def measured_numbers(text: str) -> set[str]:
    """Decimal numbers that look measured: not integers, and at least MIN_SIGNIFICANT_DIGITS
    significant digits once trailing zeros are dropped (12.345 yes; 0.2500, 64, 2.38e-07 no).
    Normalised by their shortest float repr, so 12.3450 and 12.345 are the same number."""
    found: set[str] = set()
    for match in _NUMBER.finditer(text):
        try:
            value = float(match.group())
        except ValueError:  # pragma: no cover - the pattern only matches floats
            continue
        if not math.isfinite(value) or value == 0 or value == int(value):
            continue
        if _significant_digits(value) >= MIN_SIGNIFICANT_DIGITS:
            found.add(repr(value))
    return found


# --------------------------------------------------------------------------------------------
# submissions: zips, folders, notebooks (read in place, never extracted)
# --------------------------------------------------------------------------------------------


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _skipped(parts: list[str]) -> bool:
    return any(p.casefold() in SKIPPED_DIRS or p.startswith("._") for p in parts)


class _Budget:
    """Bytes read out of one submission in all."""

    def __init__(self, limit: int = MAX_READ_BYTES):
        self.left = limit

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True


def _zip_members(path: Path, wanted, notes: list[Message]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the zip's regular members whose name `wanted` accepts, read with their
    declared size checked first and the actual size bounded (a lying header reads no further)."""
    budget = _Budget()
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                notes.append(msg("sim.note.too_many_files", limit=MAX_MEMBERS))
            for info in infos[:MAX_MEMBERS]:
                name = _nfc(info.filename.replace("\\", "/"))
                parts = [p for p in name.split("/") if p]
                if info.is_dir() or not parts or _skipped(parts[:-1]) or not wanted(name):
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    continue  # a link inside a zip points somewhere else: not the student's file
                if info.flag_bits & 0x1:
                    notes.append(msg("sim.note.encrypted", name=name))
                    continue
                if info.file_size > MAX_MEMBER_BYTES or not budget.take(info.file_size):
                    notes.append(msg("sim.note.too_large", name=name, size=info.file_size))
                    continue
                try:
                    with archive.open(info) as handle:
                        data = handle.read(info.file_size + 1)
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError,
                        zlib.error, ValueError) as exc:
                    notes.append(msg("sim.note.unreadable", name=name, error=type(exc).__name__))
                    continue
                if len(data) > info.file_size:
                    notes.append(msg("sim.note.size_lie", name=name))
                    continue
                yield name, data
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        notes.append(msg("sim.note.unreadable", name=path.name, error=type(exc).__name__))


def _folder_members(root: Path, wanted, notes: list[Message]) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of the regular files under `root` (links are not followed)."""
    budget, seen = _Budget(), 0
    for base, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d.casefold() not in SKIPPED_DIRS)
        for file in sorted(files):
            seen += 1
            if seen > MAX_MEMBERS:
                notes.append(msg("sim.note.too_many_files", limit=MAX_MEMBERS))
                return
            full = Path(base) / file
            name = _nfc(full.relative_to(root).as_posix())
            if file.startswith("._") or not wanted(name):
                continue
            try:
                info = full.lstat()
                if not stat.S_ISREG(info.st_mode):
                    continue  # links, fifos, devices: never opened
                if info.st_size > MAX_MEMBER_BYTES or not budget.take(info.st_size):
                    notes.append(msg("sim.note.too_large", name=name, size=info.st_size))
                    continue
                with open(full, "rb") as handle:
                    data = handle.read(MAX_MEMBER_BYTES + 1)
            except OSError as exc:
                notes.append(msg("sim.note.unreadable", name=name, error=exc.strerror or type(exc).__name__))
                continue
            if len(data) > MAX_MEMBER_BYTES:
                continue
            yield name, data


def submission_members(source: Path, wanted, notes: list[Message]) -> Iterator[tuple[str, bytes]]:
    """The files of a submission as handed in: a zip, a folder, or a single notebook."""
    try:
        if source.is_symlink():
            notes.append(msg("sim.note.link", name=source.name))
            return
        if source.is_dir():
            yield from _folder_members(source, wanted, notes)
        elif source.is_file() and zipfile.is_zipfile(source):
            yield from _zip_members(source, wanted, notes)
        elif source.is_file() and wanted(source.name):
            if source.stat().st_size > MAX_NOTEBOOK_BYTES:
                notes.append(msg("sim.note.too_large", name=source.name, size=source.stat().st_size))
                return
            yield source.name, source.read_bytes()
    except OSError as exc:
        notes.append(msg("sim.note.unreadable", name=source.name, error=exc.strerror or type(exc).__name__))


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_item(name: str, data: bytes, notes: list[Message]) -> ImageItem | None:
    import imagehash
    from PIL import Image

    # The size from the PNG header itself, before Pillow sees the file: a few bytes can claim
    # billions of pixels (a decompression bomb).
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 24:
        notes.append(msg("sim.note.not_png", name=name))
        return None
    width, height = struct.unpack(">II", data[16:24])
    if width * height > MAX_IMAGE_PIXELS or width < 8 or height < 8:
        notes.append(msg("sim.note.image_size", name=name, width=width, height=height))
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                if image.format != "PNG":
                    notes.append(msg("sim.note.not_png", name=name))
                    return None
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS or width < 8 or height < 8:
                    notes.append(msg("sim.note.image_size", name=name, width=width, height=height))
                    return None
                image.load()
                if image.mode not in ("RGB", "L"):
                    # Transparent pixels on white, as a viewer shows them.
                    rgba = image.convert("RGBA")
                    flat = Image.new("RGB", rgba.size, (255, 255, 255))
                    flat.paste(rgba, mask=rgba.getchannel("A"))
                    image = flat
                phash = imagehash.phash(image, hash_size=IMAGE_HASH_SIZE)
                thumb = image.convert("RGB")
                thumb.thumbnail((240, 240))
                buffer = BytesIO()
                thumb.save(buffer, format="PNG")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            MemoryError, zlib.error) as exc:
        notes.append(msg("sim.note.bad_image", name=name, error=type(exc).__name__))
        return None
    bits = phash.hash.flatten()
    if bits.all() or not bits.any():
        return None  # a blank picture: its hash says nothing
    import numpy as np

    return ImageItem(name=name, sha256=hashlib.sha256(data).hexdigest(), phash=np.packbits(bits).tobytes(),
                     width=width, height=height, thumbnail=buffer.getvalue())


def _pick_notebook(candidates: dict[str, bytes], notebook_name: str | None) -> tuple[str, bytes] | None:
    if notebook_name:
        for name, data in candidates.items():
            if name.rsplit("/", 1)[-1].casefold() == notebook_name.casefold():
                return name, data
    if len(candidates) == 1:
        return next(iter(candidates.items()))
    return None


def read_submission(source: Path, notebook_name: str | None, notes: list[Message], *,
                    want_notebook: bool = False) -> tuple[list[ImageItem], str, dict | None]:
    """(PNG images, text that may hold measured numbers, the submitted notebook if asked) of a
    submission. The text is the submitted notebook's stored outputs and its CSV files."""

    def wanted(name: str) -> bool:
        lowered = name.casefold()
        return lowered.endswith((".png", ".csv", ".ipynb"))

    images: list[ImageItem] = []
    texts: list[str] = []
    notebooks: dict[str, bytes] = {}
    too_many = False
    for name, data in submission_members(source, wanted, notes):
        lowered = name.casefold()
        if lowered.endswith(".png"):
            if len(images) >= MAX_IMAGES:
                too_many = True
                continue
            item = _png_item(name, data, notes)
            if item is not None:
                images.append(item)
        elif lowered.endswith(".csv"):
            texts.append(data.decode("utf-8", "replace"))
        elif len(data) <= MAX_NOTEBOOK_BYTES:
            notebooks[name] = data
    if too_many:
        notes.append(msg("sim.note.too_many_images", limit=MAX_IMAGES))
    picked = _pick_notebook(notebooks, notebook_name)
    notebook = parse_notebook(picked[1]) if picked else None
    if notebook is not None:
        texts.append(notebook_outputs_text(notebook))
    return images, "\n".join(texts), (notebook if want_notebook else None)


# --------------------------------------------------------------------------------------------
# batch folders and archives
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_batch_folder(path: Path) -> bool:
    """A folder `grade batch` wrote: subfolders with a result.json (or its gradebook)."""
    if (path / "gradebook.csv").is_file():
        return True
    return bool(_student_folders(path))


def _student_folders(batch_dir: Path) -> list[Path]:
    try:
        children = sorted(batch_dir.iterdir(), key=lambda p: (p.name.casefold(), p.name))
    except OSError:
        return []
    return [c for c in children if not c.name.startswith(".") and not c.is_symlink() and c.is_dir()
            and (c / "result.json").is_file()]


def _set_code(doc: Document, pieces: list[str]) -> None:
    """The document's code from its pieces, cut at MAX_CODE_CHARS (noted)."""
    kept, size = [], 0
    for piece in pieces:
        if size + len(piece) > MAX_CODE_CHARS:
            kept.append(piece[: MAX_CODE_CHARS - size])
            doc.notes.append(msg("sim.note.code_cut", limit=MAX_CODE_CHARS))
            break
        kept.append(piece)
        size += len(piece)
    doc.pieces = kept
    doc.code = "".join(kept)


def _student_document(folder: Path, key: str, label: str, origin: str) -> Document:
    from grader.assignments.catalog import CATALOG

    result = _read_json(folder / "result.json") or {}
    record = _read_json(folder / "record.json") or {}
    assignment = result.get("assignment") if isinstance(result.get("assignment"), str) else None
    doc = Document(key=key, label=label, origin=origin, assignment=assignment)
    info = CATALOG.get(assignment or "")
    notebook_name = info.notebook if info else None
    executed = folder / "executed.ipynb"
    notebook = None
    if executed.is_file() and not executed.is_symlink():
        try:
            data = executed.read_bytes() if executed.stat().st_size <= MAX_NOTEBOOK_BYTES else b""
        except OSError:
            data = b""
        notebook = parse_notebook(data)
        if notebook is None:
            doc.notes.append(msg("sim.note.bad_notebook", name="executed.ipynb"))
    submission = result.get("submission") if isinstance(result.get("submission"), dict) else {}
    source_text = record.get("source") or submission.get("source")
    source = Path(source_text) if isinstance(source_text, str) and source_text else None
    if source is not None and not source.is_absolute():
        source = None  # relative to wherever the grader ran: not something to guess
    if source is not None and (source.exists() or source.is_symlink()):
        images, text, submitted = read_submission(source, notebook_name, doc.notes, want_notebook=notebook is None)
        doc.images = images
        doc.numbers = {n: "submission" for n in measured_numbers(text)}
        if notebook is None and submitted is not None:
            notebook = submitted  # no executed notebook (rejected, failed): what was handed in
    else:
        doc.notes.append(msg("sim.note.source_missing"))
    if notebook is not None:
        _set_code(doc, notebook_code_pieces(notebook))
        doc.answers = notebook_answers(notebook)
    elif not any(n.id == "sim.note.bad_notebook" for n in doc.notes):
        doc.notes.append(msg("sim.note.no_notebook"))
    return doc


def read_batch(batch_dir: Path, *, prefix: str = "", origin: str = "batch") -> list[Document]:
    """One document per student folder of a batch folder (the id the batch keeps)."""
    docs = []
    for folder in _student_folders(batch_dir):
        student = _nfc(folder.name)
        key = f"{prefix}{student}"
        docs.append(_student_document(folder, key, key, origin))
    return docs


def _file_document(path: Path, key: str) -> Document:
    from grader.assignments.catalog import assignment_for_notebook

    doc = Document(key=key, label=key, origin="archive")
    lowered = path.name.casefold()
    if lowered.endswith(".py"):
        try:
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                doc.notes.append(msg("sim.note.too_large", name=path.name, size=path.stat().st_size))
                return doc
            _set_code(doc, [path.read_bytes().decode("utf-8", "replace")])
        except OSError as exc:
            doc.notes.append(msg("sim.note.unreadable", name=path.name, error=exc.strerror or type(exc).__name__))
        return doc
    if lowered.endswith(".ipynb"):
        info = assignment_for_notebook(path.name)
        doc.assignment = info.id if info else None
        images, text, notebook = read_submission(path, path.name, doc.notes, want_notebook=True)
    else:  # a zip: a submission of an earlier term
        images, text, notebook = read_submission(path, None, doc.notes, want_notebook=True)
        if notebook is None:
            # The course's notebook by its name, whichever assignment it is.
            from grader.assignments.catalog import CATALOG

            for info in CATALOG.values():
                if info.notebook:
                    images, text, notebook = read_submission(path, info.notebook, [], want_notebook=True)
                    if notebook is not None:
                        doc.assignment = info.id
                        break
    doc.images = images
    doc.numbers = {n: "submission" for n in measured_numbers(text)}
    if notebook is None:
        doc.notes.append(msg("sim.note.no_notebook"))
    else:
        _set_code(doc, notebook_code_pieces(notebook))
        doc.answers = notebook_answers(notebook)
    return doc


def read_archive(archive: Path, name: str | None = None) -> list[Document]:
    """Documents of an archive of earlier terms: a batch folder, or a folder of notebooks, .py
    files, submission zips and batch folders (each batch folder's students one document each).
    Keys are "<archive name>/<path inside it>"."""
    archive = Path(archive)
    name = name or _nfc(archive.resolve().name or str(archive))
    docs: list[Document] = []

    def walk(folder: Path, rel: str) -> None:
        if len(docs) >= MAX_ARCHIVE_FILES:
            return
        if is_batch_folder(folder):
            docs.extend(read_batch(folder, prefix=f"{name}/{rel}" if rel else f"{name}/", origin="archive"))
            return
        try:
            children = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            return
        for child in children:
            if child.name.startswith(".") or child.name.casefold() in SKIPPED_DIRS or child.is_symlink():
                continue
            child_rel = f"{rel}{_nfc(child.name)}"
            if child.is_dir():
                walk(child, child_rel + "/")
            elif child.suffix.casefold() in (".ipynb", ".py", ".zip") and child.is_file():
                if len(docs) >= MAX_ARCHIVE_FILES:
                    return
                docs.append(_file_document(child, f"{name}/{child_rel}"))

    walk(archive, "")
    return docs


def load_template(assignment: str, path: Path | None = None) -> Template:
    """The student template of `assignment`: `path` (a notebook, or a folder holding the
    assignment's notebook), else student_template/<assignment>/ of the staff repository."""
    from grader.assignments import REPO_ROOT
    from grader.assignments.catalog import CATALOG

    info = CATALOG.get(assignment)
    notebook_name = info.notebook if info else None
    folder = path if path is not None else REPO_ROOT / "student_template" / assignment
    template = Template(assignment=assignment, path=None)
    notes: list[Message] = []
    if folder.is_file():
        notebook_path = folder
        root = folder.parent
    else:
        notebook_path = folder / notebook_name if notebook_name else None
        root = folder
        if notebook_path is None or not notebook_path.is_file():
            found = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
            notebook_path = found[0] if len(found) == 1 else None
    if notebook_path is None or not notebook_path.is_file():
        return template
    data = notebook_path.read_bytes() if notebook_path.stat().st_size <= MAX_NOTEBOOK_BYTES else b""
    notebook = parse_notebook(data)
    if notebook is None:
        return template
    template.path = notebook_path
    template.pieces = notebook_code_pieces(notebook)
    template.code = "".join(template.pieces)
    template.answer_lines = {_line_key(line) for text in notebook_answers(notebook).values()
                             for line in text.splitlines() if line.strip()}
    text_parts = [json.dumps(notebook, ensure_ascii=False)]  # its sources and stored outputs alike
    if not folder.is_file() and root.is_dir():  # the template's folder: its pictures and files too
        images, text, _ = read_submission(root, notebook_name, notes)
        template.image_hashes = [i.phash for i in images]
        text_parts.append(text)
    template.numbers = measured_numbers("\n".join(text_parts))
    return template

