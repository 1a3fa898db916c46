"""Intake: turn what a student handed in (zip, folder or notebook) into a checked private copy.

`intake()` copies or extracts the submission into `dest` (never touching the original), finds
the notebook, decides the assignment, validates the notebook's JSON field by field (see
`grader.intake.notebook`: the validated, normalised notebook is `Submission.notebook_data`, which
the later stages use instead of reading the file again) and lists the deliverables.
Anything that makes grading impossible raises `SubmissionRejected` (or `UnsafeArchive` for
archives that try to escape or explode); a missing results folder is *not* an error here, it is
a `Deliverable` with `present=False` that becomes a failed check later.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignments.catalog import CATALOG, AssignmentInfo, assignment_for_notebook
from grader.errors import SubmissionRejected, UsageError
from grader.i18n import Message, msg
from grader.intake.archive import copy_folder, copy_notebook, extract_zip, nfc
from grader.intake.notebook import load_notebook

__all__ = ["IntakeLimits", "Deliverable", "Submission", "intake", "resolve_assignment"]


@dataclass(frozen=True)
class IntakeLimits:
    max_total_bytes: int = 200 * 2**20      # total uncompressed size
    max_entries: int = 2000                 # files and folders
    max_file_bytes: int = 100 * 2**20       # one file, uncompressed
    max_ratio: float = 200.0                # per-entry compression ratio (zip bomb)
    ratio_min_bytes: int = 2**20            # the ratio is only checked above this size


@dataclass
class Deliverable:
    name: str          # "self_attention_optimized.ipynb" or "performance_benchmark/"
    kind: str          # "notebook" | "folder" | "package" | "file"
    present: bool
    detail: str        # "3 files", "missing: create the folder ... next to the notebook"


@dataclass
class Submission:
    assignment: AssignmentInfo
    root: Path                  # folder inside dest that holds the notebook (after unwrapping)
    notebook: Path              # absolute path of the notebook in the working copy
    deliverables: list[Deliverable]
    source: Path                # the original path given
    sha256: str                 # over sorted paths (relative to root) + bytes of the working copy
    notes: list[str] = field(default_factory=list)
    # The notebook as validated nbformat 4.5 JSON (sources joined into strings, repairs made):
    # what the sandbox runs and the judge reads. The file itself stays as submitted. intake()
    # always sets it; None only for a Submission built by hand.
    notebook_data: dict | None = None


def resolve_assignment(assignment: str) -> AssignmentInfo:
    """The catalog entry for an id; UsageError if unknown or not gradable automatically."""
    info = CATALOG.get(assignment)
    if info is None:
        known = ", ".join(CATALOG)
        raise UsageError(f"unknown assignment {assignment!r}: known assignments are {known}")
    if info.notebook is None:
        raise UsageError(f"{info.id} ({info.title}) cannot be graded automatically yet")
    return info


def intake(path: Path, dest: Path, *, assignment: str | None = None,
           limits: IntakeLimits = IntakeLimits()) -> Submission:
    """Copy the submission at `path` (.zip, folder or .ipynb) into the empty folder `dest` and
    check it. On any error `dest` is emptied again and the exception propagates."""
    info = resolve_assignment(assignment) if assignment is not None else None
    source = Path(path)
    if not source.exists():
        raise UsageError(f"the submission {source} does not exist")
    dest = Path(dest).resolve()
    if source.is_dir() and (dest == source.resolve() or source.resolve() in dest.parents):
        raise UsageError(f"the working folder {dest} must not be inside the submission folder {source}")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise UsageError(f"the working folder {dest} must be empty")
    try:
        notes = _copy_in(source, dest, limits)
        return _examine(source, dest, info, notes)
    except BaseException:
        _empty(dest)
        raise


def _copy_in(source: Path, dest: Path, limits: IntakeLimits) -> list[str]:
    if source.is_dir():
        return copy_folder(source, dest, limits)
    suffix = source.suffix.lower()
    if suffix == ".ipynb":
        return copy_notebook(source, dest, limits)
    if suffix == ".zip":
        return extract_zip(source, dest, limits)
    if zipfile.is_zipfile(source):
        return [f"{source.name} has no .zip extension but is a zip: read as a zip"] + \
            extract_zip(source, dest, limits)
    raise SubmissionRejected(msg("intake.not_a_submission", name=source.name))


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _rel(p: Path, dest: Path) -> str:
    return p.relative_to(dest).as_posix()


def _examine(source: Path, dest: Path, info: AssignmentInfo | None, notes: list[str]) -> Submission:
    notebooks = sorted((p for p in dest.rglob("*") if p.is_file() and p.suffix.lower() == ".ipynb"),
                       key=lambda p: (len(p.relative_to(dest).parts), _rel(p, dest)))
    if info is None:
        info = _detect(notebooks, dest)
    notebook, expected_found = _pick_notebook(notebooks, info, dest, notes)
    notebook_data, repairs = load_notebook(notebook.read_bytes(), _rel(notebook, dest))
    notes.extend(repairs)
    root = notebook.parent
    if root != dest:
        notes.append(f"unwrapped folder {_rel(root, dest)}/")
    if expected_found:
        nb_detail = f"found at {_rel(notebook, dest)}"
    else:
        nb_detail = f"graded {_rel(notebook, dest)} (expected the name {info.notebook})"
    deliverables = [Deliverable(info.notebook, "notebook", True, nb_detail)]
    deliverables += [_folder_deliverable(d, root, dest, notebook.name) for d in info.artifact_dirs]
    if info.package:
        deliverables.append(_package_deliverable(info.package, root))
    deliverables += [_file_deliverable(f, root) for f in info.files]
    return Submission(assignment=info, root=root, notebook=notebook, deliverables=deliverables,
                      source=source, sha256=content_sha256(dest, root), notes=notes,
                      notebook_data=notebook_data)


def _nested_zip_hint(dest: Path) -> Message | str:
    zips = sorted(_rel(p, dest) for p in dest.rglob("*") if p.is_file() and p.suffix.lower() == ".zip")
    if zips:
        return msg("intake.nested_zip_hint", zip=zips[0])
    return ""


def _detect(notebooks: list[Path], dest: Path) -> AssignmentInfo:
    matches: dict[str, list[Path]] = {}
    for nb in notebooks:
        owner = assignment_for_notebook(nb.name)
        if owner is not None:
            matches.setdefault(owner.id, []).append(nb)
    if len(matches) == 1:
        return CATALOG[next(iter(matches))]
    if len(matches) > 1:
        listed = ", ".join(f"{paths[0].name} ({aid})" for aid, paths in matches.items())
        raise SubmissionRejected(msg("intake.several_assignments", listed=listed))
    expected = ", ".join(i.notebook for i in CATALOG.values() if i.notebook)
    if notebooks:
        found = ", ".join(_rel(nb, dest) for nb in notebooks[:5])
        raise SubmissionRejected(msg("intake.no_assignment_name", found=found, expected=expected))
    raise SubmissionRejected(msg("intake.no_notebook_any", expected=expected, hint=_nested_zip_hint(dest)))


def _pick_notebook(notebooks: list[Path], info: AssignmentInfo, dest: Path,
                   notes: list[str]) -> tuple[Path, bool]:
    """The notebook to grade and whether it has the expected name (notebooks are sorted
    shallowest first)."""
    expected = info.notebook
    assert expected is not None
    named = [nb for nb in notebooks if nb.name.lower() == expected.lower()]
    if named:
        best = named[0]
        depth = len(best.relative_to(dest).parts)
        ties = [nb for nb in named if len(nb.relative_to(dest).parts) == depth]
        if len(ties) > 1:
            listed = ", ".join(_rel(nb, dest) for nb in ties)
            raise SubmissionRejected(msg("intake.notebook_copies", count=len(ties), expected=expected,
                                         listed=listed))
        if len(named) > 1:
            others = ", ".join(_rel(nb, dest) for nb in named[1:])
            notes.append(f"graded {_rel(best, dest)}; other copies ignored: {others}")
        if best.name != expected:
            notes.append(f"the notebook is named {best.name} instead of {expected} (case differs)")
        return best, True
    if not notebooks:
        raise SubmissionRejected(msg("intake.no_notebook", expected=expected, hint=_nested_zip_hint(dest)))
    if len(notebooks) == 1:
        only = notebooks[0]
        owner = assignment_for_notebook(only.name)
        if owner is not None and owner.id != info.id:
            raise SubmissionRejected(msg("intake.wrong_assignment", expected=expected, assignment=info.id,
                                         found=only.name, owner=owner.id))
        notes.append(f"expected {expected}, graded {_rel(only, dest)}: please keep the notebook name "
                     "from the assignment sheet")
        return only, False
    listed = ", ".join(_rel(nb, dest) for nb in notebooks[:5])
    raise SubmissionRejected(msg("intake.notebook_not_found", expected=expected, listed=listed))


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def _folder_deliverable(dir_name: str, root: Path, dest: Path, notebook_name: str) -> Deliverable:
    name = dir_name.strip("/")
    label = f"{name}/"
    wanted = nfc(name).casefold()
    candidates = sorted(p for p in root.iterdir() if nfc(p.name).casefold() == wanted)
    folders = [p for p in candidates if p.is_dir()]
    if folders:
        folder = next((p for p in folders if p.name == name), folders[0])
        n = _count_files(folder)
        if n == 0:
            return Deliverable(label, "folder", False,
                               f"empty: put your results into {label} next to the notebook "
                               "(an empty folder counts as missing)")
        detail = f"{n} file" + ("" if n == 1 else "s")
        if folder.name != name:
            detail += f" (folder named {folder.name}/)"
        return Deliverable(label, "folder", True, detail)
    if candidates:
        return Deliverable(label, "folder", False,
                           f"missing: {candidates[0].name} is a file; create the folder {label} next to the notebook")
    elsewhere = sorted((p for p in dest.rglob("*") if p.is_dir() and nfc(p.name).casefold() == wanted),
                       key=lambda p: (len(p.parts), str(p)))
    if elsewhere:
        return Deliverable(label, "folder", False,
                           f"missing next to the notebook: found {_rel(elsewhere[0], dest)}/; move it next "
                           f"to {notebook_name}")
    return Deliverable(label, "folder", False, f"missing: create the folder {label} next to the notebook")


def _package_deliverable(name: str, root: Path) -> Deliverable:
    """The Python package the report notebook imports (kind "package": unlike an artifact folder it
    stays in the run's working copy)."""
    folder = root / name
    if not folder.is_dir():
        return Deliverable(f"{name}/", "package", False, f"missing: put the package {name}/ next to the notebook")
    if not (folder / "__init__.py").is_file():
        return Deliverable(f"{name}/", "package", False, f"not a package: {name}/__init__.py is missing")
    count = sum(1 for p in folder.rglob("*.py") if p.is_file())
    return Deliverable(f"{name}/", "package", True, f"{count} Python file" + ("" if count == 1 else "s"))


def _file_deliverable(name: str, root: Path) -> Deliverable:
    found = next((p for p in root.iterdir() if p.is_file() and nfc(p.name).casefold() == nfc(name).casefold()), None)
    if found is None:
        return Deliverable(name, "file", False, f"missing: put {name} next to the notebook")
    return Deliverable(name, "file", True, f"{found.stat().st_size} bytes" + (
        "" if found.name == name else f" (named {found.name})"))


def content_sha256(dest: Path, root: Path) -> str:
    """SHA-256 over every file of the working copy: sorted paths relative to `root` (so the same
    content gives the same hash whether it came zipped, wrapped in folders, or as a folder), each
    followed by its size and bytes."""
    files = []
    for p in dest.rglob("*"):
        if p.is_file():
            files.append((Path(os.path.relpath(p, root)).as_posix(), p))
    files.sort()
    h = hashlib.sha256()
    for rel, p in files:
        h.update(rel.encode("utf-8") + b"\0" + str(p.stat().st_size).encode() + b"\0")
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()
