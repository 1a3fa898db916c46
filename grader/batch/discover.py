"""Find the submissions of a batch and the student each one belongs to.

INPUT is one folder. Each entry in it is one student's submission:

* `kim.zip`, `lee.ipynb` (a file): the student id is the file name without its extension;
* `park/` (a folder): the student id is the folder's name;
* a GitHub Classroom download: one folder per repository, named `<assignment>-<username>`;
  the student id is the username. The `<assignment>-` prefix is recognised when every folder
  starts with the same known assignment id (or the `--assignment` given), or when every folder
  is a git repository (what `gh classroom clone student-repos` writes) and they share a prefix
  that ends with `-`. Usernames may contain `-` themselves, so a prefix is only ever stripped
  when it is common to *all* folders.

Hidden entries (`.git`, `.DS_Store`), `__MACOSX/` and the output folder (when it lies inside
INPUT) are skipped; links, a hidden zip or notebook and files that are neither `.zip` nor
`.ipynb` are left out and listed in `ignored`.

Names are data (grader.batch.names): whatever bytes a name holds, the student id is printable,
unique and reversible (`bad\\xffname.zip` is `bad%FFname`), NFC-normalised (macOS writes
Korean names decomposed, so the same student gets the same id whichever machine unpacked the
download). A name that cannot be used does not stop the batch: two submissions that give the
same id (`kim.zip` beside `kim/`) are one entry with a `problem`, which the batch turns into
that student's `rejected` row.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignments.catalog import CATALOG
from grader.batch.exceptions import BatchInputError
from grader.batch.names import RESERVED_NAMES, display_path, escape_name, raw_name, student_id

__all__ = ["SubmissionEntry", "Discovery", "discover", "RESERVED_NAMES"]

SUBMISSION_SUFFIXES = (".zip", ".ipynb")
_SKIPPED_DIRS = {"__macosx"}


@dataclass(frozen=True)
class SubmissionEntry:
    """One student's submission as found in INPUT."""

    student: str        # the id kept in every output: OUT/<student>/, gradebook rows, summary
    path: Path          # the zip, notebook or folder, as given in INPUT
    kind: str           # "zip" | "notebook" | "folder"
    problem: str | None = None      # why it cannot be graded (a `rejected` row); None: grade it
    others: tuple[Path, ...] = ()   # further entries of INPUT that gave the same id (see problem)

    @property
    def raw_name(self) -> bytes:
        """The entry's name in INPUT as the file system holds it (the record of what was handed in)."""
        return raw_name(self.path.name)

    @property
    def display_name(self) -> str:
        """The entry's name in INPUT as printable text (for messages)."""
        return escape_name(self.path.name)


@dataclass
class Discovery:
    entries: list[SubmissionEntry]
    layout: str                         # "by-name" | "github-classroom"
    classroom_prefix: str | None = None # the stripped `<assignment>-` prefix, if any
    ignored: list[str] = field(default_factory=list)


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _common_dash_prefix(names: list[str]) -> str | None:
    """The longest prefix that ends with '-' and leaves a non-empty rest in every name."""
    prefix = os.path.commonprefix(names)
    cut = prefix.rfind("-")
    while cut > 0:
        candidate = prefix[: cut + 1]
        if all(len(n) > len(candidate) for n in names):
            return candidate
        cut = prefix.rfind("-", 0, cut)
    return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder we may not look into
        return False


def _classroom_prefix(folders: list[Path], assignment: str | None) -> str | None:
    names = [_nfc(f.name) for f in folders]
    if not names:
        return None
    # A known assignment id is the strongest evidence: it holds even for a single repository.
    known = [assignment] if assignment else []
    known += sorted(CATALOG, key=len, reverse=True)
    for aid in known:
        prefix = f"{aid}-"
        if all(n.startswith(prefix) and len(n) > len(prefix) for n in names):
            return prefix
    # Otherwise only a set of git repositories (a Classroom clone) with a shared prefix.
    if len(names) >= 2 and all(_exists(f / ".git") for f in folders):
        return _common_dash_prefix(names)
    return None


def _entry_kind(child: Path) -> tuple[str | None, str | None]:
    """("folder" | "file", None) for a candidate entry, or (None, why it is left out). Never
    raises: an entry that cannot even be looked at is left out with the reason."""
    try:
        if child.is_symlink():
            # A link could point anywhere (another student's folder, /etc): not followed.
            return None, "a symbolic link"
        if child.is_dir():
            return "folder", None
        if child.is_file() and child.suffix.lower() in SUBMISSION_SUFFIXES:
            return "file", None
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    return None, "not a .zip, .ipynb or folder"


def _is_out_dir(child: Path, out_resolved: Path | None) -> bool:
    if out_resolved is None:
        return False
    try:
        return child.resolve() == out_resolved
    except (OSError, RuntimeError):  # a link loop: not our output folder
        return False


def discover(input_dir: Path, *, out_dir: Path | None = None, assignment: str | None = None) -> Discovery:
    """List the submissions in `input_dir`, one entry per student id, sorted by student id.

    Raises BatchInputError only for what stops the whole batch: INPUT is not a folder, or it
    holds no submission. Several submissions for one id become one entry with a `problem`.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise BatchInputError(f"{display_path(input_dir)}: not a folder (INPUT is a folder of submissions: zips, "
                              "folders or notebooks named by student, or a GitHub Classroom download)")
    try:
        out_resolved = Path(out_dir).resolve() if out_dir is not None else None
    except (OSError, RuntimeError):
        out_resolved = None
    files: list[Path] = []
    folders: list[Path] = []
    ignored: list[str] = []
    try:
        children = sorted(input_dir.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        raise BatchInputError(f"{display_path(input_dir)}: cannot list the folder ({exc.strerror or exc})") from None
    for child in children:
        name = child.name
        if name.lower() in _SKIPPED_DIRS:
            continue
        if name.startswith("."):
            # Hidden: .git, .DS_Store, .ipynb_checkpoints. Only a hidden zip or notebook is worth
            # a line (it looks like a submission).
            if child.suffix.lower() in SUBMISSION_SUFFIXES and _entry_kind(child)[0] == "file":
                ignored.append(f"{escape_name(name)} (a hidden file)")
            continue
        if _is_out_dir(child, out_resolved):
            continue  # OUT inside INPUT: our own results are not a submission
        kind, why = _entry_kind(child)
        if kind == "folder":
            folders.append(child)
        elif kind == "file":
            files.append(child)
        else:
            ignored.append(f"{escape_name(name)} ({why})")

    prefix = _classroom_prefix(folders, assignment) if folders and not files else None
    found: list[SubmissionEntry] = []
    for f in files:
        kind = "zip" if f.suffix.lower() == ".zip" else "notebook"
        found.append(SubmissionEntry(student_id(f.name[: -len(f.suffix)], raw=raw_name(f.name)), f, kind))
    for d in folders:
        name = _nfc(d.name)
        found.append(SubmissionEntry(student_id(name[len(prefix):] if prefix else name, raw=raw_name(d.name)),
                                     d, "folder"))

    if not found:
        raise BatchInputError(f"{display_path(input_dir)}: no submissions found (expected zips, folders or .ipynb "
                              "notebooks named by student)")
    by_student: dict[str, list[SubmissionEntry]] = {}
    for e in found:
        by_student.setdefault(e.student, []).append(e)
    entries: list[SubmissionEntry] = []
    for student, group in by_student.items():
        if len(group) == 1:
            entries.append(group[0])
            continue
        # Which one is the student's? Not ours to guess: none is graded, and the row says why.
        listed = ", ".join(e.display_name + ("/" if e.kind == "folder" else "") for e in group)
        entries.append(SubmissionEntry(
            student, group[0].path, group[0].kind, others=tuple(e.path for e in group[1:]),
            problem=f"several submissions give the student id {student} ({listed}): keep one of them "
                    "in INPUT and run the batch again"))
    entries.sort(key=lambda e: (e.student.casefold(), e.student))
    return Discovery(entries=entries, layout="github-classroom" if prefix else "by-name",
                     classroom_prefix=prefix, ignored=ignored)
