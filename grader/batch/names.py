"""Student ids from file and folder names: any bytes in, a printable, unique, reversible id out.

A batch takes its student ids from the names in INPUT (`kim.zip`, `lee/`), which are whatever
the students or the LMS wrote: bytes that are not UTF-8, control characters, line and paragraph
separators, bidirectional overrides, very long names. The id is what every output uses (the
folder OUT/<id>/, gradebook.csv, summary.html, the review file, Ray task names), so it must be
safe in all of them. It is the name itself, NFC-normalised (macOS writes Korean names
decomposed), with these characters percent-escaped as the `%XX` bytes of their UTF-8 form:

* a byte that is not part of valid UTF-8 (`bad\\xffname` -> `bad%FFname`);
* `%` itself (so that every `%` in an id starts an escape and the id decodes unambiguously);
* control, format, private-use, unassigned and surrogate code points, line and paragraph
  separators, and every space except the plain one (U+0020);
* a space at either end and a `.` at the start (a hidden folder, `.`, `..`);
* the `.` of a name the batch writes itself (`gradebook.csv` -> `gradebook%2Ecsv`).

`unescape(id)` gives back the (NFC) name's bytes. An id longer than MAX_ID_BYTES (a file name
may have 255 bytes, three times as many once escaped, and OUT/<id> is a file name too) is cut
and ends with `~` and 12 hex digits of the raw name's SHA-256: unique still, and reversible
through the record (the result keeps the raw name, see `raw_b64`).

Ordinary ids (`kim`, `lee-jh`, `김민수`) are unchanged by all this.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import unicodedata

__all__ = ["student_id", "escape_name", "unescape", "raw_name", "raw_b64", "display_path", "is_utf8_path",
           "printable", "MAX_ID_BYTES", "RESERVED_NAMES"]

# What the batch itself writes at the top of OUT: no student folder may take these names.
RESERVED_NAMES = frozenset({"gradebook.csv", "summary.html"})
# The longest id in UTF-8 bytes: OUT/<id> and the scratch folders `<id>.<8 hex>`,
# `old.<id>.<8 hex>` and `grader-ray-<id>-<8 chars>` stay well inside a file name's 255 bytes.
MAX_ID_BYTES = 160
_HASH_CHARS = 12
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp", "Zs"})
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
# In free text (a reason, a message): controls (a terminal takes ESC as a command, a NUL ends a
# spreadsheet cell), line separators, bidirectional overrides and the surrogates that stand for
# undecodable bytes (which UTF-8 cannot hold).
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e"
                        "\u2066-\u2069\ud800-\udfff]")


def raw_name(name: str | bytes | os.PathLike) -> bytes:
    """The bytes of a name as the file system holds them (str names carry undecodable bytes as
    surrogate escapes, which os.fsencode turns back)."""
    if isinstance(name, bytes):
        return name
    return os.fsencode(os.fspath(name))


def raw_b64(name: str | bytes | os.PathLike) -> str:
    """The raw bytes of a name (or path), base64: JSON holds it whatever the bytes are."""
    return base64.b64encode(raw_name(name)).decode("ascii")


def _text(name: str | bytes) -> str:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    return unicodedata.normalize("NFC", name)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as os.fsdecode carries it
        return f"%{code - 0xDC00:02X}"
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def _unsafe(ch: str) -> bool:
    # "/": a name from a file system never holds one, but an id from elsewhere (a username, a
    # record) must still never name a path below the batch folder.
    return ch in "%/" or (ch != " " and unicodedata.category(ch) in _UNSAFE_CATEGORIES)


def escape_name(name: str | bytes) -> str:
    """The name (str or bytes) as printable text, NFC, with the unsafe characters escaped (see
    the module's docstring); no length limit and no reserved names (for messages that quote a
    name, e.g. the list of what a batch left out)."""
    text = _text(name)
    last = len(text) - 1
    out = []
    for i, ch in enumerate(text):
        if _unsafe(ch) or (ch == " " and i in (0, last)) or (ch == "." and i == 0):
            out.append(_escaped(ch))
        else:
            out.append(ch)
    return "".join(out)


def student_id(name: str | bytes, *, raw: bytes | None = None) -> str:
    """The id of a student whose name (a file's stem, a folder's name, a username) is `name`.
    `raw`: the bytes the hash of a cut id is taken from (default: the name's own bytes).
    ValueError for an empty name (discovery never makes one: `.zip` is a hidden file)."""
    if not name:
        raise ValueError("a student id needs a name")
    escaped = escape_name(name)
    if escaped.casefold() in RESERVED_NAMES:
        escaped = escaped.replace(".", "%2E")
    if len(escaped.encode("utf-8")) <= MAX_ID_BYTES:
        return escaped
    source = raw if raw is not None else _text(name).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(source).hexdigest()[:_HASH_CHARS]
    budget = MAX_ID_BYTES - 1 - _HASH_CHARS
    cut, size = 0, 0
    while cut < len(escaped):
        # An escape `%XX` is never split: it is kept whole or left out whole.
        step = 3 if escaped[cut] == "%" else 1
        width = len(escaped[cut:cut + step].encode("utf-8"))
        if size + width > budget:
            break
        cut, size = cut + step, size + width
    # No invisible space right before the hash (the head never starts with one: escaped).
    head = escaped[:cut].rstrip(" ")
    return f"{head}~{digest}"


def unescape(student: str) -> bytes:
    """The bytes of the name an (uncut) id stands for: every `%XX` back to its byte."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(student):
        out += student[pos:match.start()].encode("utf-8", "surrogatepass")
        out.append(int(match.group(1), 16))
        pos = match.end()
    out += student[pos:].encode("utf-8", "surrogatepass")
    return bytes(out)


def is_utf8_path(path: str | os.PathLike) -> bool:
    """True when the path's bytes are valid UTF-8 (it can be written into JSON, a command line
    that other tools read, a report); False when it carries undecodable bytes."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str | os.PathLike) -> str:
    """A path as printable UTF-8 text: an undecodable byte shows as `\\xff`."""
    return raw_name(path).decode("utf-8", "backslashreplace")


def _visible_escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Free text with its invisible and dangerous characters as visible escapes (`\\x1b`,
    `\\u2028`); tabs and line breaks are kept (a CSV writer quotes them, a one-line view
    collapses them)."""
    return _INVISIBLE.sub(_visible_escape, text)
