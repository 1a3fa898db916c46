"""Code-quality measures, taken from the notebook as submitted (never from the executed copy,
which the student's code could have rewritten): lint, docstrings, and a clean top-to-bottom run."""

from __future__ import annotations

import ast
import functools
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


@functools.lru_cache(maxsize=8)
def _pyflakes(code: str) -> tuple[tuple[int, str], ...]:
    # Remembered: the pipeline lints the submitted code while the notebook runs (grader.judge.warm_static).
    reporter = _Collect()
    pyflakes_check(code, "notebook", reporter)
    return tuple(reporter.messages)


def lint(notebook: dict) -> list[str]:
    """pyflakes findings as 'cell N, line L: message' (unused imports, undefined names, ...)."""
    code, where = notebook_code(notebook)
    findings = []
    for lineno, message in _pyflakes(code):
        loc = where[lineno - 1] if 0 < lineno <= len(where) else None
        findings.append(f"cell {loc.cell}, line {loc.line}: {message}" if loc else message)
    return findings


def _is_stub(node: ast.FunctionDef) -> bool:
    body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0])


def docstring_coverage(notebook: dict, only: set[str] | None = None) -> tuple[int, int, list[str]]:
    """(documented, total, undocumented names) over the functions and classes the student wrote
    (stubs still raising NotImplementedError are not counted); with `only`, over those names."""
    code, _ = notebook_code(notebook)
    documented, total, missing = 0, 0, []
    for name, has_docstring in _definitions(code):
        if only is not None and name not in only:
            continue
        total += 1
        if has_docstring:
            documented += 1
        else:
            missing.append(name)
    return documented, total, missing


@functools.lru_cache(maxsize=8)
def _definitions(code: str) -> tuple[tuple[str, bool], ...]:
    """(name, has a docstring) of every public function and class the code defines, stubs still
    raising NotImplementedError left out; remembered like `_pyflakes`."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_stub(node):
                continue
            if node.name.startswith("_"):
                continue
            found.append((node.name, bool(ast.get_docstring(node))))
    return tuple(found)


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


def lint_verdict(findings: list[str]):
    """The lint item's verdict: full points without findings, a fifth less for each one."""
    from grader.i18n import msg
    from grader.judge import Verdict

    if not findings:
        return Verdict("pass", msg("cq.lint_clean"))
    fraction = max(0.0, 1.0 - len(findings) / 5)
    shown = "; ".join(findings[:5]) + (f"; … +{len(findings) - 5}" if len(findings) > 5 else "")
    return Verdict("pass" if fraction > 0 else "fail", msg("cq.lint_findings", count=len(findings), shown=shown),
                   fraction=fraction)


# --- the code-quality checks every assignment uses -------------------------------------------
# Each is `proportional`: the judge scales its points by the share of the implementation that
# really works, so that quality is measured on work that is there.

def _checks():
    from grader.i18n import msg
    from grader.judge import CheckDef, Verdict

    def runs_clean(ctx) -> Verdict:
        execution = ctx.execution
        if execution is None:
            return Verdict("error", msg("cq.not_run"))
        own = [p for p in execution.problems if not p.in_probe]
        if own:
            first = own[0]
            where = msg("cq.in_cell", cell=first.cell) if first.cell else msg("cq.in_notebook")
            return Verdict("fail", msg("cq.not_clean", where=where, problem=first.message), cell=first.cell)
        if not any(o.status == "ok" for o in ctx.probe.calls.values()):
            return Verdict("fail", msg("cq.nothing"))
        return Verdict("pass", msg("cq.clean"))

    def lint_check(ctx) -> Verdict:
        if not any(o.status == "ok" for o in ctx.probe.calls.values()):
            return Verdict("fail", msg("cq.nothing"))
        return lint_verdict(lint(ctx.notebook))

    def docstrings_of(functions: tuple[str, ...]):
        def check(ctx) -> Verdict:
            documented, total, missing = docstring_coverage(ctx.notebook, only=set(functions) if functions else None)
            if total == 0 or not any(o.status == "ok" for o in ctx.probe.calls.values()):
                return Verdict("fail", msg("cq.no_functions"))
            share = documented / total
            if share >= 0.9:
                return Verdict("pass", msg("cq.doc_ok", documented=documented, total=total))
            message = msg("cq.doc_missing", documented=documented, total=total, names=", ".join(missing[:8]))
            return Verdict("pass" if share >= 0.5 else "fail", message, fraction=share)
        return check

    return CheckDef, runs_clean, lint_check, docstrings_of


def quality_checks(functions: tuple[str, ...]) -> dict:
    """{"runs-clean", "lint", "docstrings"}: the checks of the code-quality criterion, the
    docstrings counted over the functions and classes the assignment asks for."""
    CheckDef, runs_clean, lint_check, docstrings_of = _checks()
    return {"runs-clean": CheckDef(runs_clean, proportional=True),
            "lint": CheckDef(lint_check, proportional=True),
            "docstrings": CheckDef(docstrings_of(functions), proportional=True)}
