"""What makes a batch resumable: per-student keys, atomic installs, one writer per output folder.

A student's folder `OUT/<student>/` only ever appears whole: its files are written into a
scratch folder under `OUT/.batch-tmp/` (same file system, so `rename` is atomic) and the folder
is renamed into place once complete, with `.batch-key` written last inside it. A folder without
a readable `.batch-key` and `result.json` is therefore never taken as done; an interrupted run
leaves at worst scratch folders, which the next run deletes.

`.batch-key` records what the result was computed from: the submission's content hash, the
grader's version, the grading options that change a result (not the engine or the number of
workers: a batch started locally can be finished on Ray) and the rubric file's hash of the
assignment the submission turned out to be. A re-run regrades a student when any of these
changed, and always retries `error` rows (a crash or a hang of the grader, a lost worker: worth
another try), never `graded` or `rejected` ones.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import grader
from grader.batch.exceptions import BatchLocked
from grader.intake.archive import JUNK_DIRS, JUNK_FILES

__all__ = ["BatchKey", "content_sha256", "rubric_sha256", "read_key", "is_done", "OutputArea", "KEY_NAME"]

KEY_NAME = ".batch-key"
KEY_FORMAT = 1
TMP_NAME = ".batch-tmp"
LOCK_NAME = ".batch-lock"
_CHUNK = 1 << 20


def _hash_file(h: "hashlib._Hash", path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def content_sha256(path: Path) -> str:
    """SHA-256 of a submission as handed in: a file's bytes, or a folder's sorted relative paths
    (NFC) with each file's bytes and each link's target. Junk that intake ignores (`__MACOSX/`,
    `.ipynb_checkpoints/`, `__pycache__/`, `.DS_Store`) is left out, so opening a notebook in
    Jupyter (which writes a checkpoint) does not force a regrade."""
    path = Path(path)
    h = hashlib.sha256()
    if not path.is_dir():
        h.update(b"file\0")
        _hash_file(h, path)
        return h.hexdigest()
    h.update(b"folder\0")
    items: list[tuple[str, Path]] = []
    for root, dirs, names in os.walk(path, followlinks=False):
        dirs[:] = [d for d in dirs if d.lower() not in JUNK_DIRS]
        base = Path(root)
        for name in names + [d for d in dirs if (base / d).is_symlink()]:
            if name.lower() in JUNK_FILES:
                continue
            p = base / name
            items.append((unicodedata.normalize("NFC", p.relative_to(path).as_posix()), p))
    for rel, p in sorted(items):
        # Names are bytes on disk: one that is not UTF-8 is hashed as its bytes, not a crash.
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        if p.is_symlink():
            h.update(b"link\0" + os.readlink(p).encode("utf-8", "surrogateescape") + b"\0")
        elif p.is_file():
            h.update(b"file\0" + str(p.stat().st_size).encode() + b"\0")
            _hash_file(h, p)
        else:
            h.update(b"other\0")
    return h.hexdigest()


def rubric_sha256(assignment: str | None) -> str | None:
    """SHA-256 of the rubric file the pipeline loads for `assignment` (None: no assignment, or no
    rubric file, as for a rejected submission)."""
    if not assignment:
        return None
    from grader.pipeline import rubrics_dir

    path = rubrics_dir() / f"{assignment}.yaml"
    if not path.is_file():
        return None
    h = hashlib.sha256()
    _hash_file(h, path)
    return h.hexdigest()


@dataclass(frozen=True)
class BatchKey:
    """What one student's stored result was computed from (`OUT/<student>/.batch-key`)."""

    student: str
    content_sha256: str
    grader_version: str
    options: dict[str, Any]         # grading options that change a result (see grader.batch.options_key)
    assignment: str | None = None   # filled in once graded: the assignment the submission turned out to be
    rubric_sha256: str | None = None
    status: str | None = None       # graded | rejected | error
    format: int = KEY_FORMAT

    def to_json(self) -> str:
        # ASCII: an option may hold a path that is not UTF-8 (--data-dir), which JSON then keeps
        # as an escape and reads back as the same string.
        return json.dumps(asdict(self), ensure_ascii=True, indent=1, sort_keys=True)


def read_key(folder: Path) -> BatchKey | None:
    """The `.batch-key` of a student folder, or None when absent or unreadable."""
    try:
        data = json.loads((Path(folder) / KEY_NAME).read_text(encoding="utf-8"))
        return BatchKey(**data) if isinstance(data, dict) and data.get("format") == KEY_FORMAT else None
    except (OSError, ValueError, TypeError):
        return None


def is_done(folder: Path, wanted: BatchKey) -> bool:
    """True when `folder` holds a complete, final result computed from what `wanted` describes:
    same content, grader version and options, the rubric unchanged since, and not an error."""
    stored = read_key(folder)
    if stored is None or stored.status not in ("graded", "rejected"):
        return False
    if (stored.student, stored.content_sha256, stored.grader_version, stored.options) != \
            (wanted.student, wanted.content_sha256, grader.__version__, wanted.options):
        return False
    if stored.rubric_sha256 != rubric_sha256(stored.assignment):
        return False
    try:
        result = json.loads((Path(folder) / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and result.get("status") == stored.status


class OutputArea:
    """OUT: one writer at a time (an advisory lock), a scratch area, atomic installs."""

    def __init__(self, out_dir: Path):
        self.root = Path(out_dir)
        self.tmp = self.root / TMP_NAME
        self._lock: IO[str] | None = None

    def open(self) -> None:
        """Create OUT, take its lock (BatchLocked if another batch holds it) and clear the
        scratch area left by an interrupted run."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK_NAME, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise BatchLocked(f"another `grade batch` is writing to {self.root}: wait for it to end "
                                  "(or stop it) before running this one") from exc
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle
        # Whatever is here was left by a run that was interrupted or killed: never a result.
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "OutputArea":
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def student_dir(self, student: str) -> Path:
        return self.root / student

    def scratch(self, student: str) -> Path:
        """A fresh, empty scratch folder for one grading attempt of `student`."""
        folder = self.tmp / f"{student}.{secrets.token_hex(4)}"
        folder.mkdir()
        return folder

    def install(self, staged: Path, student: str) -> Path:
        """Move the complete folder `staged` to OUT/<student>, replacing an older one.

        Two renames: the old folder moves aside into the scratch area, the new one moves in. A
        crash between them leaves no folder for the student (regraded next time), never a
        half-written one."""
        final = self.student_dir(student)
        old = None
        if final.exists() or final.is_symlink():
            old = self.tmp / f"old.{student}.{secrets.token_hex(4)}"
            os.rename(final, old)
        os.rename(staged, final)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        return final
