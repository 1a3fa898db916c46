"""Safe copies of a submission into a private working folder: zip, folder or single notebook.

Every zip entry is checked *before* anything is written (paths, links, sizes, ratios, overlaps);
extraction then streams each entry through our own inflater with a running byte counter, so a
zip whose declared sizes lie is stopped after at most one chunk past what it declared.

All three copiers share the same rules: junk (`__MACOSX/`, `.ipynb_checkpoints/`,
`__pycache__/`, `.DS_Store`) is left out and noted, names are NFC-normalised, no link is ever
created, and the limits of `IntakeLimits` hold for the bytes actually written.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from grader.errors import SubmissionRejected, UnsafeArchive, UsageError
from grader.i18n import Message, msg

if TYPE_CHECKING:  # pragma: no cover
    from grader.intake import IntakeLimits

CHUNK = 256 * 1024

# Folder names (any path component) and file names left out of the working copy, by lower case.
JUNK_DIRS = {"__macosx": "__MACOSX/", ".ipynb_checkpoints": ".ipynb_checkpoints/",
             "__pycache__": "__pycache__/"}
JUNK_FILES = {".ds_store": ".DS_Store"}

_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")       # zipfile.structFileHeader
_LOCAL_SIG = b"PK\x03\x04"
_EOCD = struct.Struct("<4s4H2LH")                   # end of central directory
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_UNICODE_PATH_EXTRA = 0x7075                          # Info-ZIP Unicode Path extra field
_DRIVE = re.compile(r"^[A-Za-z]:")
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
            zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 9: "Deflate64"}


def fmt_size(n: int) -> str:
    """`n` bytes for people: 512 bytes, 3.2 KB, 1.0 GB (powers of 1024)."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _size(n: int) -> Message | str:
    """`fmt_size(n)` for messages: "512 bytes" is localized, "3.2 KB" is the same everywhere."""
    return msg("intake.bytes", count=n) if n < 1024 else fmt_size(n)


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def junk_label(parts: tuple[str, ...]) -> str | None:
    """The junk kind of a relative path (its label for notes), or None for a real file."""
    for part in parts:
        label = JUNK_DIRS.get(part.lower())
        if label:
            return label
    return JUNK_FILES.get(parts[-1].lower()) if parts else None


class _Junk:
    """Counts what was left out, for one note per kind."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, label: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1

    def notes(self) -> list[str]:
        out = []
        for label, n in self.counts.items():
            what = "entry" if n == 1 else "entries"
            out.append(f"ignored {label} ({n} {what})")
        return out


def _too_many(n: int, limits: IntakeLimits) -> SubmissionRejected:
    return SubmissionRejected(msg("intake.too_many", count=n, limit=limits.max_entries))


def _file_too_big(rel: str, size: int, limits: IntakeLimits) -> SubmissionRejected:
    return SubmissionRejected(msg("intake.file_too_big", path=rel, size=_size(size),
                                  limit=_size(limits.max_file_bytes)))


def _too_big(size: int, limits: IntakeLimits) -> SubmissionRejected:
    return SubmissionRejected(msg("intake.too_big", size=_size(size), limit=_size(limits.max_total_bytes)))


class _Budget:
    """Running counters over the bytes and entries actually written."""

    def __init__(self, limits: IntakeLimits) -> None:
        self.limits = limits
        self.total = 0
        self.entries = 0

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise _too_many(self.entries, self.limits)

    def spend(self, n: int, rel: str, file_total: int) -> None:
        self.total += n
        if file_total > self.limits.max_file_bytes:
            raise _file_too_big(rel, file_total, self.limits)
        if self.total > self.limits.max_total_bytes:
            raise _too_big(self.total, self.limits)


def _target(dest: Path, parts: tuple[str, ...]) -> Path:
    target = dest.joinpath(*parts)
    # Belt and braces: parts are already free of "..", absolute and empty components.
    if os.path.commonpath([dest, target]) != str(dest):
        raise UnsafeArchive(msg("intake.outside_target", path="/".join(parts)))
    return target


def _check_part_lengths(parts: tuple[str, ...], shown: str) -> None:
    for part in parts:
        if len(part.encode("utf-8")) > 255:
            raise SubmissionRejected(msg("intake.name_too_long", name=shown[:80]))


def _claim(parts: tuple[str, ...], is_dir: bool, files: set, dirs: set, shown: str) -> None:
    """Record a path, refusing duplicates and file/folder clashes (case-sensitive, after NFC)."""
    for i in range(1, len(parts)):
        prefix = parts[:i]
        if prefix in files:
            raise SubmissionRejected(msg("intake.file_and_folder", path="/".join(prefix)))
        dirs.add(prefix)
    if is_dir:
        if parts in files:
            raise SubmissionRejected(msg("intake.file_and_folder", path=shown))
        dirs.add(parts)
    else:
        if parts in files:
            raise SubmissionRejected(msg("intake.duplicate_entry", path=shown))
        if parts in dirs:
            raise SubmissionRejected(msg("intake.file_and_folder", path=shown))
        files.add(parts)


# ----------------------------------------------------------------------------------------- zip


@dataclass
class _ZipEntry:
    info: zipfile.ZipInfo
    name: str                 # decoded, NFC, "/" separators, as shown in messages
    parts: tuple[str, ...]
    is_dir: bool
    junk: str | None
    data_offset: int = 0


def _declared_entry_count(fh: BinaryIO, file_size: int) -> int | None:
    """Entry count from the end-of-central-directory record (zip64 aware), read before
    `zipfile` loads the whole central directory; None if it cannot be found (zipfile decides)."""
    tail_len = min(file_size, _EOCD.size + 65535)
    fh.seek(file_size - tail_len)
    tail = fh.read(tail_len)
    pos = tail.rfind(_EOCD_SIG)
    if pos < 0 or pos + _EOCD.size > len(tail):
        return None
    count = _EOCD.unpack_from(tail, pos)[4]
    if count != 0xFFFF:
        return count
    loc = pos - _ZIP64_LOCATOR.size
    if loc < 0 or tail[loc:loc + 4] != _ZIP64_LOCATOR_SIG:
        return None
    offset = _ZIP64_LOCATOR.unpack_from(tail, loc)[2]
    if offset + _ZIP64_EOCD.size > file_size:
        return None
    fh.seek(offset)
    record = fh.read(_ZIP64_EOCD.size)
    if len(record) < _ZIP64_EOCD.size or record[:4] != _ZIP64_EOCD_SIG:
        return None
    return _ZIP64_EOCD.unpack(record)[6]


def _unicode_path_extra(info: zipfile.ZipInfo, raw: bytes) -> str | None:
    """The UTF-8 name of an Info-ZIP Unicode Path extra field (0x7075), if valid for `raw`."""
    extra = info.extra
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        body = extra[i + 4:i + 4 + size]
        if tag == _UNICODE_PATH_EXTRA and len(body) >= 5 and body[0] == 1:
            if struct.unpack_from("<L", body, 1)[0] == zlib.crc32(raw):
                try:
                    return body[5:].decode("utf-8")
                except UnicodeDecodeError:
                    return None
        i += 4 + size
    return None


def _decode_names(infos: list[zipfile.ZipInfo]) -> tuple[list[str], list[str]]:
    """Names as the student meant them. Python decodes names without the UTF-8 flag as cp437;
    tools on Windows and macOS write UTF-8 (or, on Korean Windows, cp949) bytes without the
    flag. One encoding is chosen for the whole archive so a folder never splits in two."""
    names: list[str | None] = []
    raws: dict[int, bytes] = {}
    for i, info in enumerate(infos):
        if info.flag_bits & _UTF8_FLAG or info.orig_filename.isascii():
            names.append(info.orig_filename)
            continue
        raw = info.orig_filename.encode("cp437")
        unicode_name = _unicode_path_extra(info, raw)
        if unicode_name is not None:
            names.append(unicode_name)
            continue
        names.append(None)
        raws[i] = raw
    notes = []
    if raws:
        chosen = None
        for encoding in ("utf-8", "cp949"):
            try:
                decoded = {i: raw.decode(encoding) for i, raw in raws.items()}
            except UnicodeDecodeError:
                continue
            chosen = encoding
            break
        if chosen is None:  # mixed: decide entry by entry, cp437 as the last resort
            decoded = {}
            for i, raw in raws.items():
                for encoding in ("utf-8", "cp949", "cp437"):
                    try:
                        decoded[i] = raw.decode(encoding)
                        break
                    except UnicodeDecodeError:
                        continue
            notes.append("file names without a declared encoding were decoded entry by entry "
                         "(utf-8, cp949, cp437): some names may look wrong")
        elif chosen != "utf-8":
            notes.append(f"file names were decoded as {chosen} (the zip did not declare an encoding)")
        for i, name in decoded.items():
            names[i] = name
    return [n for n in names if n is not None], notes


def _parse_entry(info: zipfile.ZipInfo, name: str) -> _ZipEntry:
    """Path and type checks of one entry (UnsafeArchive on anything that could escape)."""
    shown = name.replace("\x00", "\\0")
    if "\x00" in name:
        raise UnsafeArchive(msg("intake.nul_in_name", name=repr(shown)))
    name = name.replace("\\", "/")
    if name.startswith("/"):
        raise UnsafeArchive(msg("intake.absolute_path", name=shown))
    if _DRIVE.match(name):
        raise UnsafeArchive(msg("intake.drive", name=shown, drive=name[:2]))
    raw_parts = name.split("/")
    if ".." in raw_parts:
        raise UnsafeArchive(msg("intake.dotdot", name=shown))
    parts = tuple(nfc(p) for p in raw_parts if p not in ("", "."))
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(msg("intake.symlink", name=shown))
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(msg("intake.special_file", name=shown))
    is_dir = name.endswith("/") or kind == stat.S_IFDIR
    shown = "/".join(parts) + ("/" if is_dir and parts else "")
    _check_part_lengths(parts, shown)
    return _ZipEntry(info, shown, parts, is_dir, junk_label(parts) if parts else None)


def _local_data_offset(fh: BinaryIO, info: zipfile.ZipInfo, zip_name: str) -> int:
    fh.seek(info.header_offset)
    header = fh.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIG:
        raise _corrupt(zip_name, msg("intake.damage.header"))
    fields = _LOCAL_HEADER.unpack(header)
    return info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]


def _corrupt(zip_name: str, what: Message) -> SubmissionRejected:
    return SubmissionRejected(msg("intake.corrupt_zip", zip=zip_name, what=what))


def _open_zip(path: Path) -> zipfile.ZipFile:
    name = path.name
    size = path.stat().st_size
    if size == 0:
        raise SubmissionRejected(msg("intake.empty_zip_file", zip=name))
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise SubmissionRejected(msg("intake.cannot_read", path=name, error=e.strerror)) from e
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError,
            UnicodeDecodeError) as e:
        if head == _LOCAL_SIG:
            raise SubmissionRejected(msg("intake.damaged_zip", zip=name, error=str(e))) from e
        raise SubmissionRejected(msg("intake.not_zip", zip=name, error=str(e))) from e


def extract_zip(path: Path, dest: Path, limits: IntakeLimits) -> list[str]:
    """Check every entry of the zip at `path`, then extract it into `dest`. Returns notes."""
    zip_name = path.name
    zip_size = path.stat().st_size
    if zip_size > limits.max_total_bytes + limits.max_entries * 1024:
        raise SubmissionRejected(msg("intake.zip_too_big", zip=zip_name, size=_size(zip_size),
                                     limit=_size(limits.max_total_bytes)))
    try:
        with path.open("rb") as fh:
            count = _declared_entry_count(fh, zip_size)
    except OSError as e:
        raise SubmissionRejected(msg("intake.cannot_read", path=zip_name, error=e.strerror)) from e
    if count is not None and count > limits.max_entries:
        raise _too_many(count, limits)

    with _open_zip(path) as zf:
        infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _too_many(len(infos), limits)
    names, notes = _decode_names(infos)

    # 1. Every entry, before anything is written.
    entries = [_parse_entry(info, name) for info, name in zip(infos, names)]
    junk = _Junk()
    files: set = set()
    dirs: set = set()
    declared_total = 0
    keep: list[_ZipEntry] = []
    for e in entries:
        if not e.parts:
            continue
        if e.junk:
            junk.add(e.junk)
            continue
        info = e.info
        if not e.is_dir:
            if info.flag_bits & _ENCRYPTED_FLAG:
                raise SubmissionRejected(msg("intake.encrypted", entry=e.name, zip=zip_name))
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                method = _METHODS.get(info.compress_type) or msg("intake.compression_method",
                                                                 number=info.compress_type)
                raise SubmissionRejected(msg("intake.compression", entry=e.name, zip=zip_name, method=method))
            size = info.file_size
            if size > limits.ratio_min_bytes and size / max(info.compress_size, 1) > limits.max_ratio:
                raise UnsafeArchive(msg("intake.entry_bomb", entry=e.name, zip=zip_name,
                                        packed=_size(info.compress_size), size=_size(size),
                                        ratio=f"{limits.max_ratio:g}"))
            if size > limits.max_file_bytes:
                raise _file_too_big(e.name, size, limits)
            declared_total += size
        _claim(e.parts, e.is_dir, files, dirs, e.name)
        keep.append(e)
    if declared_total > limits.max_total_bytes:
        if declared_total / max(zip_size, 1) > limits.max_ratio:
            raise UnsafeArchive(msg("intake.zip_bomb", zip=zip_name, packed=_size(zip_size),
                                    size=_size(declared_total)))
        raise _too_big(declared_total, limits)
    if not any(not e.is_dir for e in keep):
        if junk.counts:
            raise SubmissionRejected(msg("intake.only_junk", zip=zip_name, junk=", ".join(junk.counts)))
        raise SubmissionRejected(msg("intake.no_files", zip=zip_name))

    # 2. Local headers: present, and no two entries share bytes (overlap bombs).
    with path.open("rb") as fh:
        spans = []
        for e in entries:
            e.data_offset = _local_data_offset(fh, e.info, zip_name)
            end = e.data_offset + e.info.compress_size
            if end > zip_size:
                raise _corrupt(zip_name, msg("intake.damage.cut_off", entry=e.name or msg("intake.an_entry")))
            spans.append((e.info.header_offset, end, e.name))
        spans.sort()
        for (_, end, name), (start, _, _) in zip(spans, spans[1:]):
            if end > start:
                raise UnsafeArchive(msg("intake.overlap", zip=zip_name, entry=name))

        # 3. Write, streaming, with running counters.
        budget = _Budget(limits)
        for e in keep:
            target = _target(dest, e.parts)
            if e.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _extract_one(fh, e, target, budget, zip_name)
    return notes + junk.notes()


def _extract_one(fh: BinaryIO, e: _ZipEntry, target: Path, budget: _Budget, zip_name: str) -> None:
    info = e.info
    declared = info.file_size
    written = 0
    crc = 0
    remaining = info.compress_size
    fh.seek(e.data_offset)

    def read_compressed() -> bytes:
        nonlocal remaining
        chunk = fh.read(min(CHUNK, remaining))
        if not chunk:
            raise _corrupt(zip_name, msg("intake.damage.cut_off", entry=e.name))
        remaining -= len(chunk)
        return chunk

    with target.open("xb") as out:
        def emit(data: bytes) -> None:
            nonlocal written, crc
            if not data:
                return
            written += len(data)
            if written > declared:
                raise UnsafeArchive(msg("intake.size_lie", entry=e.name, zip=zip_name,
                                        declared=_size(declared)))
            budget.spend(len(data), e.name, written)
            crc = zlib.crc32(data, crc)
            out.write(data)

        if info.compress_type == zipfile.ZIP_STORED:
            while remaining > 0:
                emit(read_compressed())
        else:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            pending = b""
            try:
                while not inflater.eof:
                    if not pending and remaining > 0:
                        pending = read_compressed()
                    before = len(pending)
                    produced = inflater.decompress(pending, CHUNK)
                    pending = inflater.unconsumed_tail
                    emit(produced)
                    if inflater.eof:
                        break
                    if not produced and not pending and remaining == 0:
                        raise _corrupt(zip_name, msg("intake.damage.ends_early", entry=e.name))
                    if not produced and pending and len(pending) == before:
                        raise _corrupt(zip_name, msg("intake.damage.no_inflate", entry=e.name))
            except zlib.error as exc:
                raise _corrupt(zip_name, msg("intake.damage.inflate_error", entry=e.name,
                                             error=str(exc))) from exc
    if written != declared:
        raise _corrupt(zip_name, msg("intake.damage.size", entry=e.name, written=written, declared=declared))
    if crc != info.CRC:
        raise _corrupt(zip_name, msg("intake.damage.checksum", entry=e.name))


# -------------------------------------------------------------------------------------- folder


def _copy_file(src: Path, target: Path, rel: str, budget: _Budget) -> None:
    written = 0
    try:
        fh = src.open("rb")
    except OSError as e:
        raise SubmissionRejected(msg("intake.cannot_read", path=rel, error=e.strerror or str(e))) from e
    with fh, target.open("xb") as out:
        while chunk := fh.read(CHUNK):
            written += len(chunk)
            budget.spend(len(chunk), rel, written)
            out.write(chunk)


def copy_folder(src: Path, dest: Path, limits: IntakeLimits) -> list[str]:
    """Copy the folder `src` into `dest` (links are never followed out of `src`). Returns notes."""
    src = src.resolve()
    if dest == src or src in dest.parents:
        raise UsageError(f"the working folder {dest} must not be inside the submission folder {src}")
    junk = _Junk()
    notes: list[str] = []
    plan_dirs: list[tuple[str, ...]] = []
    plan_files: list[tuple[Path, tuple[str, ...]]] = []
    files: set = set()
    dirs: set = set()
    entries = 0
    declared = 0
    stack: list[tuple[Path, tuple[str, ...]]] = [(src, ())]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda d: d.name)
        except OSError as e:
            raise SubmissionRejected(msg("intake.cannot_read_folder", path="/".join(prefix) or src.name,
                                         error=e.strerror)) from e
        for child in children:
            parts = prefix + (nfc(child.name),)
            rel = "/".join(parts)
            label = junk_label(parts)
            if label:
                junk.add(label)
                continue
            source_file: Path | None = None
            if child.is_symlink():
                try:
                    real = Path(child.path).resolve(strict=True)
                except (OSError, RuntimeError):
                    notes.append(f"skipped the link {rel} (its target does not exist)")
                    continue
                if real.is_file() and real.is_relative_to(src) and junk_label(real.relative_to(src).parts) is None:
                    source_file = real
                    notes.append(f"copied the link {rel} as a regular file")
                else:
                    where = "outside the submission" if not real.is_relative_to(src) else "to a folder or junk"
                    notes.append(f"skipped the link {rel} (it points {where})")
                    continue
            elif child.is_dir(follow_symlinks=False):
                entries += 1
                if entries > limits.max_entries:
                    raise _too_many(entries, limits)
                _check_part_lengths(parts, rel)
                _claim(parts, True, files, dirs, rel)
                plan_dirs.append(parts)
                stack.append((Path(child.path), parts))
                continue
            elif child.is_file(follow_symlinks=False):
                source_file = Path(child.path)
            else:
                notes.append(f"skipped {rel} (not a regular file)")
                continue
            entries += 1
            if entries > limits.max_entries:
                raise _too_many(entries, limits)
            size = source_file.stat().st_size
            if size > limits.max_file_bytes:
                raise _file_too_big(rel, size, limits)
            declared += size
            if declared > limits.max_total_bytes:
                raise _too_big(declared, limits)
            _check_part_lengths(parts, rel)
            _claim(parts, False, files, dirs, rel)
            plan_files.append((source_file, parts))

    budget = _Budget(limits)
    for parts in plan_dirs:
        _target(dest, parts).mkdir(parents=True, exist_ok=True)
    for source_file, parts in plan_files:
        target = _target(dest, parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_file(source_file, target, "/".join(parts), budget)
    return notes + junk.notes()


def copy_notebook(src: Path, dest: Path, limits: IntakeLimits) -> list[str]:
    """Copy a single notebook file into `dest`. Returns notes."""
    name = nfc(src.name)
    size = src.stat().st_size
    if size > limits.max_file_bytes:
        raise _file_too_big(name, size, limits)
    _check_part_lengths((name,), name)
    _copy_file(src, _target(dest, (name,)), name, _Budget(limits))
    return ["a single notebook was submitted: folders of results can only come in a zip of the whole folder"]
