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

Hidden entries (`.git`, `.DS_Store`), `__MACOSX/`, the output folder (when it lies inside
INPUT) and files that are neither `.zip` nor `.ipynb` are left out and listed in `ignored`.
Names are NFC-normalised (macOS writes Korean names decomposed), so the same student gets the
same id whichever machine unpacked the download.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignments.catalog import CATALOG
from grader.batch.exceptions import BatchInputError

__all__ = ["SubmissionEntry", "Discovery", "discover", "RESERVED_NAMES"]

# What the batch itself writes at the top of OUT: no student folder may take these names.
RESERVED_NAMES = frozenset({"gradebook.csv", "summary.html"})
SUBMISSION_SUFFIXES = (".zip", ".ipynb")
_SKIPPED_DIRS = {"__macosx"}


@dataclass(frozen=True)
class SubmissionEntry:
    """One student's submission as found in INPUT."""

    student: str        # the id kept in every output: OUT/<student>/, gradebook rows, summary
    path: Path          # the zip, notebook or folder, as given in INPUT
    kind: str           # "zip" | "notebook" | "folder"


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
    if len(names) >= 2 and all((f / ".git").exists() for f in folders):
        return _common_dash_prefix(names)
    return None


def discover(input_dir: Path, *, out_dir: Path | None = None, assignment: str | None = None) -> Discovery:
    """List the submissions in `input_dir`, one per student, sorted by student id.

    Raises BatchInputError when INPUT is not a folder, holds no submission, two entries give the
    same student id (`kim.zip` next to `kim/`), or an id clashes with the batch's own files.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise BatchInputError(f"{input_dir}: not a folder (INPUT is a folder of submissions: zips, "
                              "folders or notebooks named by student, or a GitHub Classroom download)")
    out_resolved = Path(out_dir).resolve() if out_dir is not None else None
    files: list[Path] = []
    folders: list[Path] = []
    ignored: list[str] = []
    for child in sorted(input_dir.iterdir(), key=lambda p: p.name):
        name = child.name
        if name.startswith(".") or name.lower() in _SKIPPED_DIRS:
            continue
        if out_resolved is not None and child.resolve() == out_resolved:
            continue  # OUT inside INPUT: our own results are not a submission
        if child.is_symlink():
            # A link could point anywhere (another student's folder, /etc): not followed.
            ignored.append(f"{name} (a symbolic link)")
        elif child.is_dir():
            folders.append(child)
        elif child.is_file() and child.suffix.lower() in SUBMISSION_SUFFIXES:
            files.append(child)
        else:
            ignored.append(f"{name} (not a .zip, .ipynb or folder)")

    prefix = _classroom_prefix(folders, assignment) if folders and not files else None
    entries: list[SubmissionEntry] = []
    for f in files:
        kind = "zip" if f.suffix.lower() == ".zip" else "notebook"
        entries.append(SubmissionEntry(_nfc(f.stem), f, kind))
    for d in folders:
        name = _nfc(d.name)
        entries.append(SubmissionEntry(name[len(prefix):] if prefix else name, d, "folder"))

    if not entries:
        raise BatchInputError(f"{input_dir}: no submissions found (expected zips, folders or .ipynb "
                              "notebooks named by student)")
    by_student: dict[str, list[SubmissionEntry]] = {}
    for e in entries:
        by_student.setdefault(e.student, []).append(e)
    clashes = {s: es for s, es in by_student.items() if len(es) > 1}
    if clashes:
        listed = "; ".join(f"{s}: " + ", ".join(e.path.name for e in es) for s, es in sorted(clashes.items()))
        raise BatchInputError(f"several submissions for the same student ({listed}): keep one per student")
    bad = sorted(e.student for e in entries
                 if e.student.lower() in RESERVED_NAMES or e.student in ("", ".", "..") or "/" in e.student)
    if bad:
        raise BatchInputError(f"student id(s) {', '.join(bad)} clash with the batch's own output files: "
                              "rename those submissions")
    entries.sort(key=lambda e: (e.student.casefold(), e.student))
    return Discovery(entries=entries, layout="github-classroom" if prefix else "by-name",
                     classroom_prefix=prefix, ignored=ignored)
