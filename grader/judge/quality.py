"""Code-quality measures, taken from the notebook as submitted (never from the executed copy,
which the student's code could have rewritten): lint, docstrings, and a clean top-to-bottom run."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from pyflakes.api import check as pyflakes_check
from pyflakes.reporter import Reporter

_MAGIC = re.compile(r"^\s*[%!]")


@dataclass(frozen=True)
class CodeLine:
    cell: int   # 1-based position of the cell in the notebook
    line: int   # 1-based line inside the cell


def notebook_code(notebook: dict, *, skip_tags: tuple[str, ...] = ()) -> tuple[str, list[CodeLine]]:
    """The code cells joined into one module (IPython magics commented out), with a map from each
    line of the module back to its cell."""
    lines: list[str] = []
    where: list[CodeLine] = []
    for position, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if any(t in tags for t in skip_tags):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        for number, line in enumerate(source.splitlines(), start=1):
            lines.append("# " + line if _MAGIC.match(line) else line)
            where.append(CodeLine(position, number))
        lines.append("")
        where.append(CodeLine(position, 0))
    return "\n".join(lines) + "\n", where


class _Collect(Reporter):
    def __init__(self) -> None:
        self.messages: list[tuple[int, str]] = []

    def unexpectedError(self, filename, msg):  # noqa: N802 - pyflakes' API
        self.messages.append((0, str(msg)))

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802
        self.messages.append((lineno or 0, f"syntax error: {msg}"))

    def flake(self, message):
        self.messages.append((message.lineno, message.message % message.message_args))


def lint(notebook: dict) -> list[str]:
    """pyflakes findings as 'cell N, line L: message' (unused imports, undefined names, ...)."""
    code, where = notebook_code(notebook)
    reporter = _Collect()
    pyflakes_check(code, "notebook", reporter)
    findings = []
    for lineno, message in reporter.messages:
        loc = where[lineno - 1] if 0 < lineno <= len(where) else None
        findings.append(f"cell {loc.cell}, line {loc.line}: {message}" if loc else message)
    return findings


def _is_stub(node: ast.FunctionDef) -> bool:
    body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0])


def docstring_coverage(notebook: dict) -> tuple[int, int, list[str]]:
    """(documented, total, undocumented names) over the functions and classes the student wrote
    (stubs still raising NotImplementedError are not counted)."""
    code, _ = notebook_code(notebook)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return 0, 0, []
    documented, total, missing = 0, 0, []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_stub(node):
                continue
            if node.name.startswith("_"):
                continue
            total += 1
            if ast.get_docstring(node):
                documented += 1
            else:
                missing.append(node.name)
    return documented, total, missing


def function_cells(notebook: dict) -> dict[str, int]:
    """Top-level function name -> 1-based cell position where it is (last) defined."""
    found: dict[str, int] = {}
    for position, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        for match in re.finditer(r"^def\s+([A-Za-z_]\w*)\s*\(", source, flags=re.M):
            found[match.group(1)] = position
    return found
