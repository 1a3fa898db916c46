"""The static layer of "forbidden API" requirements: which library APIs the student's required
functions and classes reach, read from the source (never executed).

The course asks for attention, LSTM cells, transformers... written from scratch; a submission
that wraps ``torch.nn.functional.scaled_dot_product_attention`` or ``torch.nn.MultiheadAttention``
must lose the points. The dynamic layer (ATen ops recorded in the probe) sees what actually ran,
obfuscated code included; this layer names the source line, so the feedback can say where.

What it does, in the grader's own process, on the notebook as submitted:

* the code cells are parsed one by one (IPython magics and shell lines commented out); a cell
  that does not parse is cut into top-level chunks and the chunks that parse are kept, so one
  broken cell hides nothing else;
* the module's names are bound in notebook order (imports, ``attn = F.sdpa`` aliases, tuple
  unpacking of aliases, ``def``/``class`` and other assignments): the LAST top-level binding of a
  name is the one that counts, because the probe calls the functions after every cell has run
  (only the last definition is analysed). Two exceptions, both as Python runs them: a value is
  computed where it stands (``attention = torch.compile(attention)`` wraps the ``def`` above),
  and a later plain value does not hide an import (``except ImportError: F = None``);
* from each root the notebook's own definitions are followed by name (calls, references,
  instantiation, base classes, decorators, default values), breadth first so that ``via`` is the
  shortest chain, each definition once per root (recursion safe);
* inside reached code, a name or attribute chain that resolves to a dotted library name (through
  imports at any level, aliases, ``getattr(x, "CONSTANT")``, ``importlib.import_module("...")``,
  ``x.__dict__["CONSTANT"]``) is matched against ``forbidden`` with prefix semantics on dotted
  boundaries. Names are scoped as Python scopes them, so a local ``F = q.shape[-1]`` is not
  ``torch.nn.functional``. Strings are never folded (``"a" + "b"``): obfuscation is the dynamic
  layer's job. Annotations are skipped: naming a type runs nothing.

Not followed on purpose: calls on objects of unknown type (``model(x)`` for a parameter
``model``), ``eval``/``exec``, and code that no root reaches (a benchmark cell comparing with the
library at top level is allowed).
"""

from __future__ import annotations

import ast
import functools
import re
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ApiUse", "canonical", "code_of", "find_forbidden"]

_MAGIC = re.compile(r"^\s*[%!]")
# A line that may start a new top-level statement (used only to salvage a cell that does not
# parse): column 0, not a comment, not a clause that continues the previous statement.
_TOP_START = re.compile(r"^(?!(?:else|elif|except|finally)\b)(?:[^\W\d]|@)")   # a letter, _ or @
_CODE_MAX_CHARS = 200

# The same functions reachable under private names: matched as their public names.
_ALIASES = (
    ("torch._C._nn", "torch.nn.functional"),
    ("torch._C._VariableFunctions", "torch"),
    ("torch._VF", "torch"),
    ("torch._ops.ops", "torch.ops"),
)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class ApiUse:
    root: str                 # the required function/class (as given in `roots`) whose code reaches the API
    api: str                  # the forbidden API matched, as written in `forbidden`
    resolved: str             # what the code referred to, fully qualified
    cell: int | None          # 1-based position of the cell in the notebook (all cells counted); None for a module
    line: int | None          # 1-based line inside that cell (inside the module for plain source)
    code: str                 # that source line, stripped, at most 200 characters
    via: tuple[str, ...]      # the notebook's own definitions from root to the use, root first


def canonical(name: str) -> str:
    """A dotted name with private aliases replaced by the public module they expose, and
    ``torch.nn.modules.<module>.<Class>`` shortened to ``torch.nn.<Class>``."""
    for private, public in _ALIASES:
        if name == private or name.startswith(private + "."):
            return public + name[len(private):]
    if name.startswith("torch.nn.modules."):
        parts = name.split(".")[3:]
        if parts[0][:1].isupper():                    # torch.nn.modules.MultiheadAttention
            return "torch.nn." + ".".join(parts)
        if len(parts) > 1:                            # torch.nn.modules.activation.MultiheadAttention
            return "torch.nn." + ".".join(parts[1:])
    return name


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# ---------------------------------------------------------------------------------------------
# Source -> one module body with a (cell, line) for each of its lines


def _cell_sources(source: dict | str) -> list[tuple[int | None, str]]:
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    if isinstance(source, str):
        return [(None, source)]
    cells = source.get("cells") if isinstance(source, dict) else None
    units: list[tuple[int | None, str]] = []
    for position, cell in enumerate(cells if isinstance(cells, list) else [], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = cell.get("source", "")
        text = "".join(t for t in text if isinstance(t, str)) if isinstance(text, list) else str(text or "")
        units.append((position, "\n".join("# " + l if _MAGIC.match(l) else l for l in _split_lines(text))))
    return units


def _parse(text: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():     # the student's "\q" escapes are no concern of the grader's log
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def _chunks(lines: list[str]) -> list[tuple[int, list[str]]]:
    """A source that does not parse, cut before each line that looks like a new top-level
    statement (a decorator keeps its function): (index of the first line, lines)."""
    starts, previous = [0], ""
    for i, line in enumerate(lines):
        if i and _TOP_START.match(line) and not previous.startswith("@"):
            starts.append(i)
        if line.strip() and not line.lstrip().startswith("#"):
            previous = line
    return [(a, lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)])]


def _split_lines(text: str) -> list[str]:
    """Lines as Python's tokenizer counts them: str.splitlines also splits at form feeds and
    Unicode separators, which would shift every line number after one of them."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _assemble(source: dict | str) -> tuple[list[str], list[tuple[int | None, int]], list[tuple[ast.stmt, int]]]:
    """(lines, where, statements): the parsed code as one module. A statement comes with the
    offset of its piece: its line n is the module's line offset+n, that is lines[offset+n-1],
    written in cell where[offset+n-1][0] at line where[offset+n-1][1]. (Offsets rather than
    ast.increment_lineno, which would walk every node again: most of the time on a notebook.)"""
    return _assemble_units(_cell_sources(source))


def _assemble_units(units) -> tuple[list[str], list[tuple[int | None, int]], list[tuple[ast.stmt, int]]]:
    lines: list[str] = []
    where: list[tuple[int | None, int]] = []
    body: list[tuple[ast.stmt, int]] = []
    for cell, text in units:
        unit = _split_lines(text)
        tree = _parse(text)
        pieces = [(0, unit, tree)] if tree is not None else [
            (first, part, _parse("\n".join(part))) for first, part in _chunks(unit)]
        for first, part, parsed in pieces:
            if parsed is None:
                continue
            body.extend((statement, len(lines)) for statement in parsed.body)
            lines.extend(part)
            where.extend((cell, first + i + 1) for i in range(len(part)))
    return lines, where, body


def code_of(notebook: dict) -> tuple[str, list[tuple[int, int]]]:
    """The notebook's code that parses, as one module text, with (cell, line) for each line."""
    lines, where, _ = _assemble(notebook)
    return "\n".join(lines) + "\n", [(c or 0, n) for c, n in where]


# ---------------------------------------------------------------------------------------------
# Names and scopes


class _Def:
    """A top-level definition of the notebook: a function, a class, or the value of an
    assignment that is not a plain alias (``ops = {"attn": F.sdpa}``, ``mha = nn.MHA(8, 2)``)."""

    __slots__ = ("name", "node", "offset", "scope")

    def __init__(self, name: str, node: ast.AST, offset: int, scope: _Scope | None = None):
        self.name, self.node, self.offset = name, node, offset   # offset: see _assemble
        self.scope = scope      # for a value: the module's names as they were when it was computed


class _Scope:
    """names: name -> dotted library name (str), notebook definition (_Def, module scope only),
    or None (a local/opaque value)."""

    __slots__ = ("names", "parent", "is_class")

    def __init__(self, parent: _Scope | None, is_class: bool = False):
        self.names: dict[str, str | _Def | None] = {}
        self.parent, self.is_class = parent, is_class

    def function_parent(self) -> _Scope:
        """Where names free in a nested function are looked up: class bodies are skipped."""
        scope = self
        while scope.is_class and scope.parent is not None:
            scope = scope.parent
        return scope


def _import_bindings(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for alias in node.names:
        if isinstance(node, ast.Import):        # `import a.b` binds a; `import a.b as x` binds a.b
            out.append((alias.asname, alias.name) if alias.asname else (alias.name.split(".")[0],) * 2)
        elif alias.name != "*":
            local = alias.asname or alias.name
            out.append((local, f"{node.module}.{alias.name}" if node.module and not node.level else None))
    return out


def _pairs(target: ast.AST, value: ast.AST | None) -> list[tuple[str, ast.AST | None]]:
    """Names bound by `target = value`, each with its own part of the value when the tuple
    shapes match (`attn, mha = F.sdpa, nn.MHA`), else with the whole value (or None)."""
    out, stack = [], [(target, value)]
    while stack:
        t, v = stack.pop()
        if isinstance(t, ast.Name):
            out.append((t.id, v))
        elif isinstance(t, ast.Starred):
            stack.append((t.value, None))
        elif isinstance(t, (ast.Tuple, ast.List)):
            same = isinstance(v, (ast.Tuple, ast.List)) and len(v.elts) == len(t.elts) and not any(
                isinstance(e, ast.Starred) for e in t.elts + v.elts)
            stack.extend(zip(t.elts, v.elts if same else [v] * len(t.elts)))
    return out


class _Analyser:
    def __init__(self, body: list[tuple[ast.stmt, int]], forbidden: list[str]):
        self.forbidden = [(f, canonical(f)) for f in forbidden]
        self.stars: list[str] = []
        self.lines_of_alias: dict[str, int] = {}
        self.module = _Scope(None)
        self.memo: dict[int, tuple[list[tuple[str, str, int]], list[_Def]]] = {}
        self.matched: dict[str, tuple[str, ...]] = {}
        self._bind_module(body)

    # -- matching ---------------------------------------------------------------------------
    def match(self, name: str) -> tuple[str, ...]:
        """The forbidden entries that `name` is (or is under), on dotted boundaries, the most
        specific first. All of them: requirements that overlap each see their own finding."""
        if name not in self.matched:
            forms = {name, canonical(name)}
            hits = [w for w, c in self.forbidden if any(_under(n, w) or _under(n, c) for n in forms)]
            self.matched[name] = tuple(sorted(dict.fromkeys(hits), key=len, reverse=True))
        return self.matched[name]

    def _leads(self, name: str) -> bool:
        """Could an attribute of `name` be forbidden (or is it)? Picks a star import's module."""
        canon = canonical(name)
        return any(_under(c, n) or _under(n, c) for _, c in self.forbidden for n in (name, canon))

    # -- module bindings, in notebook order -------------------------------------------------
    def _bind_module(self, body: list[tuple[ast.stmt, int]]) -> None:
        names = self.module.names
        stack = list(reversed(body))
        while stack:
            node, offset = stack.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                    if node.module and not node.level:
                        self.stars.append(node.module)
                for local, dotted in _import_bindings(node):
                    names[local] = dotted
                    self.lines_of_alias[local] = offset + node.lineno
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names[node.name] = _Def(node.name, node, offset)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    for name, value in _pairs(target, node.value):
                        dotted = self.resolve(value, self.module) if value is not None else None
                        if dotted is not None:
                            names[name] = dotted
                            self.lines_of_alias[name] = offset + node.lineno
                        elif not isinstance(names.get(name), str):
                            # A value does not hide an earlier import of the same name
                            # (`try: import ... as F` / `except ImportError: F = None`).
                            names[name] = self._value(name, value, offset)
            else:
                # Compound statements at top level: their blocks bind module names too.
                for field in ("body", "handlers", "orelse", "finalbody", "cases"):
                    stack.extend(reversed([(s, offset) for s in getattr(node, field, []) if isinstance(s, ast.AST)]))
                targets = [node.target] if isinstance(node, (ast.For, ast.AsyncFor)) else []
                targets += [i.optional_vars for i in getattr(node, "items", [])]
                bound = [n for t in targets if t is not None for n, _ in _pairs(t, None)] + _store_names(node)
                for name in bound:
                    if not isinstance(names.get(name), str):
                        names[name] = None

    def _value(self, name: str, value: ast.AST | None, offset: int) -> _Def | None:
        """A module-level value is computed where it stands: `attention = torch.compile(attention)`
        wraps the function defined above, not itself. Its names are looked up as they were then."""
        if value is None:
            return None
        scope = _Scope(self.module)
        for node in ast.walk(value):
            if isinstance(node, ast.Name) and node.id in self.module.names:
                scope.names[node.id] = self.module.names[node.id]
        return _Def(name, value, offset, scope)

    def lookup(self, name: str, scope: _Scope) -> str | _Def | None:
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        for module in reversed(self.stars):                  # `from torch.nn.functional import *`
            if self._leads(f"{module}.{name}"):
                return f"{module}.{name}"
        return name  # unbound: a builtin, or a module imported in a cell that did not parse

    def resolve(self, node: ast.AST, scope: _Scope) -> str | None:
        """The dotted library name an expression stands for, or None."""
        attrs: list[str] = []
        while True:
            if isinstance(node, ast.Attribute):
                attrs.append(node.attr)
                node = node.value
            elif isinstance(node, ast.Call) and self._getattr_name(node, scope):
                attrs.append(node.args[1].value)
                node = node.args[0]
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "__dict__" and _const_str(node.slice):
                attrs.append(node.slice.value)
                node = node.value.value
            elif isinstance(node, ast.Call) and (module := self._imported_module(node, scope)):
                base = module
                break
            elif isinstance(node, ast.Name):
                found = self.lookup(node.id, scope)
                if not isinstance(found, str):
                    return None
                base = found
                break
            else:
                return None
        return ".".join([base, *reversed(attrs)])

    def _getattr_name(self, call: ast.Call, scope: _Scope) -> bool:
        """`getattr(x, "CONSTANT"[, default])`: only a literal name, never a computed one."""
        return (len(call.args) in (2, 3) and not call.keywords and _const_str(call.args[1])
                and isinstance(call.func, (ast.Name, ast.Attribute))
                and self.resolve(call.func, scope) in ("getattr", "builtins.getattr"))

    def _imported_module(self, call: ast.Call, scope: _Scope) -> str | None:
        if not (call.args and _const_str(call.args[0]) and isinstance(call.func, (ast.Name, ast.Attribute))):
            return None
        func = self.resolve(call.func, scope)
        if func == "importlib.import_module":
            return call.args[0].value
        if func in ("__import__", "builtins.__import__"):       # returns the top-level package
            return call.args[0].value.split(".")[0]
        return None

    # -- one definition's code --------------------------------------------------------------
    def analyse(self, definition: _Def) -> tuple[list[tuple[str, str, int]], list[_Def]]:
        """(uses as (api, resolved, line of the module), notebook definitions referenced), memoised."""
        key = id(definition)
        if key not in self.memo:
            uses: list[tuple[str, str, int]] = []
            refs: list[_Def] = []
            try:
                self._walk(definition.node, definition.scope or self.module, uses, refs)
            except (RecursionError, MemoryError):
                pass  # pathological nesting: keep what was found
            self.memo[key] = ([(api, dotted, definition.offset + n) for api, dotted, n in uses], refs)
        return self.memo[key]

    def _use(self, dotted: str, node: ast.AST, uses: list) -> None:
        uses.extend((api, dotted, getattr(node, "lineno", 0)) for api in self.match(dotted))

    def _walk(self, start: ast.AST, start_scope: _Scope, uses: list, refs: list) -> None:
        """Collect uses and references in `start`, in source order (so that the breadth-first
        search meets helpers in the order the code calls them). Iterative: deep code is no risk."""
        stack: list[tuple[ast.AST, _Scope]] = [(start, start_scope)]
        while stack:
            node, scope = stack.pop()
            todo: list[tuple[ast.AST, _Scope]] = []
            if isinstance(node, _FUNCTIONS):
                args = node.args
                defaults = [d for d in args.defaults + args.kw_defaults if d is not None]
                todo += [(n, scope) for n in [*getattr(node, "decorator_list", []), *defaults]]
                inner = self._function_scope(node, scope)
                todo += [(n, inner) for n in (node.body if isinstance(node.body, list) else [node.body])]
            elif isinstance(node, ast.ClassDef):
                todo += [(n, scope) for n in [*node.decorator_list, *node.bases, *node.keywords]]
                inner = self._block_scope(node.body, _Scope(scope, is_class=True))
                todo += [(n, inner) for n in node.body]
            elif isinstance(node, _COMPREHENSIONS):
                # The first iterable is evaluated outside; the rest in the comprehension's scope.
                inner = _Scope(scope)
                for gen in node.generators:
                    for name, _ in _pairs(gen.target, None):
                        inner.names[name] = None
                first, *rest = node.generators
                parts = [*first.ifs, *(n for g in rest for n in (g.iter, *g.ifs))]
                parts += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
                todo += [(first.iter, scope), *((n, inner) for n in parts)]
            elif isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Load):
                    found = self.lookup(node.id, scope)
                    if isinstance(found, _Def):
                        refs.append(found)
                    elif isinstance(found, str):
                        self._use(found, node, uses)
            elif isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
                todo.append((node.value, scope))            # `self.attn = ...` assigns, uses nothing
                if isinstance(node, ast.Subscript):
                    todo.append((node.slice, scope))
            elif isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)) and (
                    dotted := self.resolve(node, scope)) is not None:
                self._use(dotted, node, uses)
                if isinstance(node, ast.Call):          # getattr's default, import_module's package
                    todo += [(n, scope) for n in node.args[2 if self._getattr_name(node, scope) else 1:]]
            elif isinstance(node, ast.Attribute):
                # A chain of plain attributes fails as a whole when its base fails: skip to the base.
                while isinstance(node, ast.Attribute):
                    node = node.value
                todo.append((node, scope))
            elif isinstance(node, ast.AnnAssign):             # the annotation runs nothing
                todo += [(n, scope) for n in (node.target, node.value) if n is not None]
            elif not isinstance(node, (ast.Constant, ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)):
                todo += [(n, scope) for n in ast.iter_child_nodes(node)]
            stack.extend(reversed(todo))

    def _function_scope(self, node: ast.AST, enclosing: _Scope) -> _Scope:
        scope = _Scope(enclosing.function_parent())
        args = node.args
        positional = args.posonlyargs + args.args
        for arg, default in zip(positional[::-1], args.defaults[::-1]):
            # `def f(q, F=torch.nn.functional)`: the default is what F stands for.
            scope.names[arg.arg] = self.resolve(default, enclosing)
        for arg in [*positional, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.arg not in scope.names:
                scope.names[arg.arg] = None
        for arg, default in zip(args.kwonlyargs, args.kw_defaults):
            if default is not None:
                scope.names[arg.arg] = self.resolve(default, enclosing)
        body = node.body if isinstance(node.body, list) else [ast.Expr(node.body)]
        return self._block_scope(body, scope)

    def _block_scope(self, body: list[ast.stmt], scope: _Scope) -> _Scope:
        """Bind the names a function or class body assigns (not those of nested scopes). Every
        bound name is local from the start (Python's rule); imports and aliases then give it a
        dotted name, in source order so that `F = torch.nn.functional; f = F.sdpa` resolves."""
        shared: set[str] = set()
        aliases: list[tuple[str, ast.AST | str | None]] = []
        stack: list[ast.AST] = list(reversed(body))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                shared.update(node.names)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                aliases.extend(_import_bindings(node))
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                for target in getattr(node, "targets", None) or [node.target]:
                    aliases.extend(_pairs(target, node.value))
            if isinstance(node, _SCOPES):
                if not isinstance(node, ast.Lambda):
                    scope.names.setdefault(node.name, None)
                continue                                    # its body is its own scope
            for name in _store_names(node):
                scope.names.setdefault(name, None)
            children = [n for n in ast.iter_child_nodes(node) if not isinstance(n, ast.comprehension)]
            children += [n for g in getattr(node, "generators", []) for n in (g.iter, *g.ifs)]
            stack.extend(reversed(children))
        for name, value in aliases:
            scope.names.setdefault(name, None)
            dotted = value if isinstance(value, str) else self.resolve(value, scope) if value is not None else None
            if dotted is not None:      # a later opaque rebinding does not hide an import
                scope.names[name] = dotted
        for name in shared:
            scope.names.pop(name, None)
        return scope


def _const_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _store_names(node: ast.AST) -> list[str]:
    """Names a single node binds by itself (for/with/except targets, match captures...)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return [node.id]
    if isinstance(node, ast.ExceptHandler) and node.name:
        return [node.name]
    name = getattr(node, "name", None) if isinstance(node, (ast.MatchAs, ast.MatchStar)) else None
    rest = getattr(node, "rest", None) if isinstance(node, ast.MatchMapping) else None
    return [n for n in (name, rest) if n]


# ---------------------------------------------------------------------------------------------


def find_forbidden(source: dict | str, roots: Iterable[str], forbidden: Iterable[str]) -> list[ApiUse]:
    """Every use of a `forbidden` API in the code the `roots` reach, one per (root, api,
    resolved, line). `source` is a notebook dict (nbformat 4) or a module's Python source.
    Never raises: what cannot be parsed or analysed is left out.

    Remembered for the last few notebooks: the pipeline asks once while the notebook runs (the
    submitted code is known before the run) and the judge's question afterwards costs nothing."""
    try:
        forbidden = [forbidden] if isinstance(forbidden, str) else forbidden
        forbidden = tuple(f.strip() for f in forbidden if isinstance(f, str) and f.strip())
        roots = [roots] if isinstance(roots, str) else roots
        roots = tuple(dict.fromkeys(r for r in roots if isinstance(r, str) and r))
        if not forbidden or not roots:
            return []
        return list(_find_forbidden(tuple(_cell_sources(source)), roots, forbidden))
    except Exception:  # noqa: BLE001 - a static hint must never take the grading down
        return []


@functools.lru_cache(maxsize=8)
def _find_forbidden(units: tuple, roots: tuple[str, ...], forbidden: tuple[str, ...]) -> tuple[ApiUse, ...]:
    found: list[ApiUse] = []
    try:
        lines, where, body = _assemble_units(units)
        analyser = _Analyser(body, forbidden)

        def use(root: str, api: str, resolved: str, lineno: int, via: tuple[str, ...]) -> None:
            cell, line = where[lineno - 1] if 0 < lineno <= len(where) else (None, None)
            code = lines[lineno - 1].strip()[:_CODE_MAX_CHARS] if 0 < lineno <= len(lines) else ""
            key = (root, api, resolved, cell, line)
            if key not in seen:
                seen.add(key)
                found.append(ApiUse(root, api, resolved, cell, line, code, via))

        seen: set[tuple] = set()
        for root in roots:
            # "Block.forward": the class's code counts as a whole.
            start = analyser.module.names.get(root, analyser.module.names.get(root.split(".")[0]))
            if isinstance(start, str):          # the root itself is an alias of a library name
                for api in analyser.match(start):
                    use(root, api, start, analyser.lines_of_alias.get(root.split(".")[0], 0), (root,))
                continue
            if not isinstance(start, _Def):
                continue
            queue: deque[tuple[_Def, tuple[str, ...]]] = deque([(start, (root,))])
            visited = {id(start)}
            while queue:                         # breadth first: the shortest chain is reported
                definition, via = queue.popleft()
                uses, refs = analyser.analyse(definition)
                for api, resolved, lineno in sorted(uses, key=lambda u: u[2]):   # stable: source order
                    use(root, api, resolved, lineno, via)
                for ref in refs:
                    if id(ref) not in visited:
                        visited.add(id(ref))
                        queue.append((ref, via + (ref.name,)))
    except Exception:  # noqa: BLE001 - a static hint must never take the grading down
        pass
    return tuple(found)
