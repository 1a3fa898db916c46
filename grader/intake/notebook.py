"""The submitted notebook's JSON: parsed, checked field by field, normalised (nbformat 4.5).

`load_notebook()` is the only place that reads the student's .ipynb. Everything after intake (the
sandbox's runner, papermill and nbclient, the judge, the reports, nbconvert) indexes into the
notebook and assumes nbformat's types: a `"metadata": []` or a `"source": 5` there is a crash of
the grader, not a verdict. So every field is checked here, against nbformat's own v4.5 schema in
the end, and a damaged notebook is a `SubmissionRejected` that says what is wrong and where
("cell 3: source must be text ..."), in the student's language.

What can be repaired without changing what the student wrote is repaired, and said in the notes:
an older 4.x minor version (cell ids are added), missing or invalid cell ids, missing empty
metadata or outputs, display metadata of the wrong type, outputs that are not in the format
(outputs are produced again by the run anyway), fields the format does not have. What the grader
reads for a verdict (cell types, sources, tags) is never guessed: a wrong type there is rejected.

Hostile input is bounded before any recursive code sees it: nesting depth, cell count, numbers
(NaN, infinities, thousands of digits) and unpaired surrogates (which no encoder can write back).
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from typing import Any

from grader.errors import SubmissionRejected
from grader.i18n import Message, msg

__all__ = ["MAX_CELLS", "MAX_DEPTH", "load_notebook"]

MAX_DEPTH = 64            # nesting of JSON values; a Jupyter notebook needs about 10
MAX_CELLS = 5000          # a course notebook has a few hundred at most
NBFORMAT, NBFORMAT_MINOR = 4, 5

_CELL_TYPES = ("code", "markdown", "raw")
_CELL_KEYS = {"code": {"id", "cell_type", "metadata", "source", "outputs", "execution_count"},
              "markdown": {"id", "cell_type", "metadata", "source", "attachments"},
              "raw": {"id", "cell_type", "metadata", "source", "attachments"}}
_TOP_KEYS = {"metadata", "nbformat", "nbformat_minor", "cells"}
_OUTPUT_KEYS = {"execute_result": {"output_type", "data", "metadata", "execution_count"},
                "display_data": {"output_type", "data", "metadata"},
                "stream": {"output_type", "name", "text"},
                "error": {"output_type", "ename", "evalue", "traceback"}}
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")       # used with fullmatch: no trailing newline
_JSON_MIME = re.compile(r"^application/(.*\+)?json$")
_TAG = re.compile(r"[^,]+")                          # used with fullmatch
_NAME = re.compile(r"^.+$")                          # the schema's own pattern, as it applies it
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOTED_CELLS = 5          # a note lists at most this many cells


class _Damaged(Exception):
    """What is wrong (`problem`) and where (`where`: "" or a cell / output location)."""

    def __init__(self, problem: Message, where: Message | str = ""):
        super().__init__(problem)
        self.problem, self.where = problem, where


class _NotFinite(ValueError):
    pass


def load_notebook(raw: bytes, path: str) -> tuple[dict, list[str]]:
    """The notebook in `raw` (the bytes of the file at `path`, relative to the submission) as a
    valid nbformat 4.5 dict, sources and multi-line texts joined into strings, and the notes on
    what was repaired. Raises SubmissionRejected for anything that cannot be graded."""
    data = _parse(raw, path)
    try:
        return _Normaliser(path).notebook(data)
    except _Damaged as exc:
        raise SubmissionRejected(msg("intake.nb.damaged", path=path, where=exc.where,
                                     problem=exc.problem)) from None


# --- parsing -------------------------------------------------------------------------------------

def _parse(raw: bytes, path: str) -> Any:
    if not raw.strip():
        raise SubmissionRejected(msg("intake.notebook_empty", path=path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubmissionRejected(msg("intake.notebook_not_utf8", path=path, byte=e.start)) from None

    def damaged(problem: Message) -> SubmissionRejected:
        return SubmissionRejected(msg("intake.nb.damaged", path=path, where="", problem=problem))

    try:
        # NaN and infinities are not JSON, and json.dumps would write them back as invalid JSON.
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise SubmissionRejected(msg("intake.notebook_bad_json", path=path, line=e.lineno, column=e.colno,
                                     error=e.msg)) from None
    except _NotFinite:
        raise damaged(msg("intake.nb.not_finite")) from None
    except RecursionError:
        raise damaged(msg("intake.nb.too_deep", limit=MAX_DEPTH)) from None
    except ValueError:
        # the only other ValueError of json.loads: an integer over the interpreter's digit limit
        raise damaged(msg("intake.nb.number_too_long", digits=_max_digits())) from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise SubmissionRejected(msg("intake.not_a_notebook", path=path))
    if len(data["cells"]) > MAX_CELLS:
        raise SubmissionRejected(msg("intake.nb.too_many_cells", path=path, count=len(data["cells"]),
                                     limit=MAX_CELLS))
    try:
        _check_values(data)
    except _Damaged as exc:
        raise SubmissionRejected(msg("intake.nb.damaged", path=path, where=exc.where,
                                     problem=exc.problem)) from None
    return data


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise _NotFinite(text)
    return value


def _max_digits() -> int:
    getter = getattr(sys, "get_int_max_str_digits", None)
    return getter() if getter else 4300


def _check_values(data: dict) -> None:
    """Depth and unpaired surrogates, without recursion (the value may be thousands deep)."""
    stack: list[tuple[Any, int, int | None]] = [(data, 1, None)]
    while stack:
        value, depth, cell = stack.pop()
        if depth > MAX_DEPTH:
            raise _Damaged(msg("intake.nb.too_deep", limit=MAX_DEPTH), _at(cell))
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                raise _Damaged(msg("intake.nb.surrogate"), _at(cell))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not key.isascii() and _SURROGATE.search(key):
                    raise _Damaged(msg("intake.nb.surrogate"), _at(cell))
                stack.append((item, depth + 1, cell))
        elif isinstance(value, list):
            if value is data.get("cells"):
                stack.extend((item, depth + 1, i + 1) for i, item in enumerate(value))
            else:
                stack.extend((item, depth + 1, cell) for item in value)


# --- field by field --------------------------------------------------------------------------------

def _at(cell: int | None) -> Message | str:
    return "" if cell is None else msg("intake.nb.at_cell", cell=cell)


def _json_type(value: Any, *, items: bool = False) -> Message:
    """What `value` is, in JSON's terms; with `items`, a list names its first item that is not text."""
    if isinstance(value, bool):
        return msg("intake.nb.json.boolean")
    if value is None:
        return msg("intake.nb.json.null")
    if isinstance(value, (int, float)):
        return msg("intake.nb.json.number")
    if isinstance(value, str):
        return msg("intake.nb.json.string")
    if isinstance(value, list):
        for i, item in enumerate(value if items else (), start=1):
            if not isinstance(item, str):
                return msg("intake.nb.json.list_item", item=i, found=_json_type(item))
        return msg("intake.nb.json.list")
    return msg("intake.nb.json.object")


def _wrong(field: str, expected: Message, value: Any, where: Message | str, *, items: bool = False) -> _Damaged:
    return _Damaged(msg("intake.nb.wrong_type", field=field, expected=expected,
                        found=_json_type(value, items=items)), where)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return value is None or (_is_int(value) and value >= 0)


def _text(value: Any) -> str | None:
    """A multi-line string (a string, or a list of strings as Jupyter writes it) joined, or None."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "".join(value)
    return None


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Normaliser:
    def __init__(self, path: str) -> None:
        self.path = path
        self._notes: dict[str, list[int]] = {}   # note -> the cells it is about ([] for the notebook)

    def note(self, text: str, cell: int | None = None) -> None:
        cells = self._notes.setdefault(text, [])
        if cell is not None and cell not in cells:
            cells.append(cell)

    def notes(self) -> list[str]:
        lines = []
        for text, cells in self._notes.items():
            if not cells:
                lines.append(text)
                continue
            shown = ", ".join(str(c) for c in cells[:_NOTED_CELLS])
            more = f" and {len(cells) - _NOTED_CELLS} more" if len(cells) > _NOTED_CELLS else ""
            lines.append(f"{text} (cell{'s' if len(cells) > 1 else ''} {shown}{more})")
        return lines

    # the notebook ----------------------------------------------------------------------------
    def notebook(self, data: dict) -> tuple[dict, list[str]]:
        path = self.path
        version = data.get("nbformat")
        if version is None or (_is_int(version) and version < NBFORMAT):
            raise SubmissionRejected(msg("intake.old_nbformat", path=path, version=_short(version)))
        if not _is_int(version):
            raise _wrong("nbformat", msg("intake.nb.type.integer"), version, "")
        if version > NBFORMAT:
            raise SubmissionRejected(msg("intake.nb.new_nbformat", path=path, version=_short(version)))
        minor = data.get("nbformat_minor")
        if not _is_int(minor) or minor < 0:
            self.note(f"nbformat_minor {'missing' if minor is None else 'invalid'}: read as notebook format 4.5")
        elif minor < NBFORMAT_MINOR:
            self.note(f"notebook format 4.{minor} read as 4.5 (cell ids added)")
        elif minor > NBFORMAT_MINOR:
            self.note(f"notebook format 4.{_short(minor)} is newer than 4.5: read as 4.5")
        for key in sorted(set(data) - _TOP_KEYS):
            self.note(f"top-level field {_short(key)} dropped: the notebook format has no such field")
        metadata = data.get("metadata")
        if metadata is None and "metadata" not in data:
            self.note("the notebook had no metadata: empty metadata added")
            metadata = {}
        if not isinstance(metadata, dict):
            raise _wrong("metadata", msg("intake.nb.type.object"), metadata, "")
        cells = [self.cell(cell, position) for position, cell in enumerate(data["cells"], start=1)]
        self.cell_ids(cells, ids_expected=_is_int(minor) and minor >= NBFORMAT_MINOR)
        notebook = {"cells": cells, "metadata": self.notebook_metadata(metadata),
                    "nbformat": NBFORMAT, "nbformat_minor": NBFORMAT_MINOR}
        _schema_check(notebook)
        return notebook, self.notes()

    def notebook_metadata(self, metadata: dict) -> dict:
        out = dict(metadata)
        checks = {
            "kernelspec": lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
            and isinstance(v.get("display_name"), str),
            "language_info": lambda v: isinstance(v, dict) and isinstance(v.get("name"), str)
            and all(isinstance(v.get(k, ""), str) for k in ("file_extension", "mimetype", "pygments_lexer"))
            and isinstance(v.get("codemirror_mode", ""), (str, dict)),
            "orig_nbformat": lambda v: _is_int(v) and v >= 1,
            "title": lambda v: isinstance(v, str),
            "authors": lambda v: isinstance(v, list),
        }
        for key, valid in checks.items():
            if key in out and not valid(out[key]):
                # display information only (the sandbox names its own kernel): safe to leave out
                del out[key]
                self.note(f"invalid notebook metadata {key!r} dropped")
        return out

    # cells --------------------------------------------------------------------------------------
    def cell(self, cell: Any, position: int) -> dict:
        where = _at(position)
        if not isinstance(cell, dict):
            raise _wrong("cell", msg("intake.nb.type.object"), cell, where)
        cell_type = cell.get("cell_type")
        if cell_type is None:
            raise SubmissionRejected(msg("intake.cell_no_type", path=self.path, cell=position))
        if not isinstance(cell_type, str):
            raise _wrong("cell_type", msg("intake.nb.type.text"), cell_type, where)
        if cell_type not in _CELL_TYPES:
            raise _Damaged(msg("intake.nb.cell_type", value=_short(cell_type)), where)
        if "source" not in cell:
            raise _Damaged(msg("intake.nb.missing", field="source"), where)
        source = _text(cell["source"])
        if source is None:
            raise _wrong("source", msg("intake.nb.type.text_lines"), cell["source"], where, items=True)
        out: dict[str, Any] = {"cell_type": cell_type}
        if "id" in cell:
            out["id"] = cell["id"]  # checked with all the others (ids must be unique)
        metadata = cell.get("metadata")
        if "metadata" not in cell:
            self.note("cell without metadata: empty metadata added", position)
            metadata = {}
        if not isinstance(metadata, dict):
            raise _wrong("metadata", msg("intake.nb.type.object"), metadata, where)
        out["metadata"] = self.cell_metadata(metadata, cell_type, position)
        out["source"] = source
        for key in sorted(set(cell) - _CELL_KEYS[cell_type]):
            self.note(f"field {_short(key)} dropped from {cell_type} cells: the notebook format has no such field",
                      position)
        if cell_type == "code":
            out["outputs"] = self.outputs(cell.get("outputs", []), position, present="outputs" in cell)
            count = cell.get("execution_count")
            if not _is_count(count):
                self.note("invalid execution count cleared", position)
                count = None
            out["execution_count"] = count
        elif "attachments" in cell:
            attachments = cell["attachments"]
            bundles = ({name: _mimebundle(bundle) for name, bundle in attachments.items()}
                       if isinstance(attachments, dict) else {None: None})
            if all(b is not None for b in bundles.values()):
                out["attachments"] = bundles
            else:  # inline images of a markdown cell: the report shows the cell without them
                self.note("invalid attachments dropped", position)
        return out

    def cell_metadata(self, metadata: dict, cell_type: str, position: int) -> dict:
        out = dict(metadata)
        tags = out.get("tags")
        if "tags" in out:
            # read by the grader (parameters, answers, skipped cells): a wrong type is not guessed at
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise _wrong("metadata.tags", msg("intake.nb.type.text_list"), tags, _at(position), items=True)
            kept = list(dict.fromkeys(t for t in tags if _TAG.fullmatch(t)))
            if kept != tags:
                self.note("repeated, empty or comma-holding tags dropped", position)
            out["tags"] = kept
        checks: dict[str, Any] = {
            "name": lambda v: isinstance(v, str) and _NAME.match(v) is not None,
            "jupyter": lambda v: isinstance(v, dict),
        }
        if cell_type == "code":
            checks.update(
                execution=lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
                collapsed=lambda v: isinstance(v, bool),
                scrolled=lambda v: v is True or v is False or v == "auto",
            )
        if cell_type == "raw":
            checks["format"] = lambda v: isinstance(v, str)
        for key, valid in checks.items():
            if key in out and not valid(out[key]):
                # how Jupyter shows the cell, nothing the grader reads: safe to leave out
                del out[key]
                self.note(f"invalid cell metadata {key!r} dropped", position)
        return out

    def cell_ids(self, cells: list[dict], *, ids_expected: bool) -> None:
        """Every cell gets a valid, unique id (nbformat 4.5); deterministic, so a regrade of the
        same file sends the same notebook."""
        seen: set[str] = set()
        for cell in cells:
            cid = cell.get("id")
            if isinstance(cid, str) and _CELL_ID.fullmatch(cid):
                seen.add(cid)
        used: set[str] = set()
        for position, cell in enumerate(cells, start=1):
            cid = cell.get("id")
            if isinstance(cid, str) and _CELL_ID.fullmatch(cid) and cid not in used:
                used.add(cid)
                continue
            if "id" in cell:
                self.note("invalid or repeated cell id replaced", position)
            elif ids_expected:  # a 4.5 notebook without ids (older formats have none: noted above)
                self.note("cell without an id: id added", position)
            new, n = f"cell-{position}", 1
            while new in seen or new in used:
                n += 1
                new = f"cell-{position}-{n}"
            used.add(new)
            # keep the key order nbformat writes: id first
            rest = {k: v for k, v in cell.items() if k != "id"}
            cell.clear()
            cell.update({"id": new, **rest})

    # outputs ------------------------------------------------------------------------------------
    def outputs(self, outputs: Any, position: int, *, present: bool) -> list[dict]:
        # Outputs are the previous run's; the sandbox runs the cell again and replaces them, so a
        # damaged one is dropped rather than rejected.
        if not present:
            self.note("code cell without outputs: empty outputs added", position)
            return []
        if not isinstance(outputs, list):
            self.note("outputs that were not a list dropped", position)
            return []
        kept = []
        for output in outputs:
            normal = _output(output)
            if normal is None:
                known = isinstance(output, dict) and isinstance(output.get("output_type"), str) \
                    and output["output_type"] in _OUTPUT_KEYS
                self.note("outputs not in the notebook format dropped" if known
                          else "outputs of unknown type dropped", position)
                continue
            kept.append(normal)
        return kept


def _mimebundle(bundle: Any) -> dict | None:
    if not isinstance(bundle, dict):
        return None
    out = {}
    for mime, value in bundle.items():
        if _JSON_MIME.match(mime):
            out[mime] = value
            continue
        text = _text(value)
        if text is None:
            return None
        out[mime] = text
    return out


def _output(output: Any) -> dict | None:
    """The output in nbformat's form (multi-line texts joined), or None if it is not one."""
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if not isinstance(kind, str) or kind not in _OUTPUT_KEYS:  # (a list is not even hashable)
        return None
    if kind == "stream":
        text = _text(output.get("text"))
        if not isinstance(output.get("name"), str) or text is None:
            return None
        return {"output_type": kind, "name": output["name"], "text": text}
    if kind == "error":
        traceback = output.get("traceback")
        if not (isinstance(output.get("ename"), str) and isinstance(output.get("evalue"), str)
                and isinstance(traceback, list) and all(isinstance(line, str) for line in traceback)):
            return None
        return {"output_type": kind, "ename": output["ename"], "evalue": output["evalue"], "traceback": traceback}
    data = _mimebundle(output.get("data"))
    metadata = output.get("metadata", {})
    if data is None or not isinstance(metadata, dict):
        return None
    out = {"output_type": kind, "data": data, "metadata": metadata}
    if kind == "execute_result":
        count = output.get("execution_count")
        out["execution_count"] = count if _is_count(count) else None
    return out


# --- nbformat's schema: the last word ------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _schema_validator():
    import importlib.util
    from pathlib import Path

    import fastjsonschema  # nbformat's own validator (a dependency of nbformat)

    # nbformat's schema file, found without importing nbformat (0.2 s, jsonschema with it): the
    # grading process needs only the file.
    spec = importlib.util.find_spec("nbformat")
    package = Path(next(iter(spec.submodule_search_locations)))
    schema_path = package / "v4" / f"nbformat.v{NBFORMAT}.{NBFORMAT_MINOR}.schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    return fastjsonschema.compile(schema)


def _schema_check(notebook: dict) -> None:
    """nbformat's v4.5 schema over the normalised notebook. Everything above should already make
    it valid; this catches what the field checks do not know, in nbformat's own terms."""
    import fastjsonschema

    try:
        _schema_validator()(notebook)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [p for p in exc.path if p != "data"]
        where: Message | str = ""
        if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
            where, path = _at(path[1] + 1), path[2:]
        field = ".".join(str(p) for p in path) or "notebook"
        raise _Damaged(msg("intake.nb.schema", field=_short(field, 60), rule=str(exc.rule or "")), where) from None
