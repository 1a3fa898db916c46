"""Two distributions: the engine's wheel and every exported student template hold nothing of the
staff's: no file of reference/, no hidden check, no answer key, no function body of the reference
code or of the reference solution notebook.

Function bodies are compared as ASTs with names erased (variables and arguments), so a reference
function pasted into the package under another name, with renamed variables, is still found.
Negative controls plant such a function into a copy of the package (and of a template) and show
that the scan finds it.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader.templates_export import build_engine_wheel, export_template

from tests.conftest import REPO

ASSIGNMENT = "w6-self-attention"
STAFF = REPO / "reference"
PUBLIC = REPO / "student_template"
MIN_NODES = 15        # bodies smaller than this (a `return x`, a `raise`) prove nothing either way
STAFF_PARTS = {"reference", "hidden_checks", "solutions"}
MAGIC = re.compile(r"^\s*[%!]")


# --- reading code -------------------------------------------------------------------------------

def code_units(path: Path) -> list[tuple[str, str]]:
    """(label, source) of every piece of Python in a file: a .py file whole, a notebook per code cell."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text).get("cells", [])
        except json.JSONDecodeError:
            return []
        units = []
        for n, cell in enumerate(cells, start=1):
            if cell.get("cell_type") == "code":
                source = cell.get("source", "")
                source = "".join(source) if isinstance(source, list) else source
                source = "\n".join("# " + l if MAGIC.match(l) else l for l in source.splitlines())
                units.append((f"{path}#cell{n}", source))
        return units
    return [(str(path), text)] if path.suffix in (".py", "") or path.name.endswith(".py.j2") else []


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


class _Erase(ast.NodeTransformer):
    """Erase what renaming changes: variable, argument and local function names; annotations."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id="_", ctx=node.ctx), node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg, node.annotation = "_", None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        node.name, node.returns = "_", None
        return node


def _drop_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def fingerprint(statements: list[ast.stmt]) -> str | None:
    module = _Erase().visit(ast.Module(body=copy.deepcopy(_drop_docstring(statements)), type_ignores=[]))
    if sum(1 for _ in ast.walk(module)) < MIN_NODES:
        return None
    return ast.dump(module)


def function_bodies(tree: ast.Module) -> dict[str, str]:
    """fingerprint -> function name, for every function (nested ones too)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            print_ = fingerprint(node.body)
            if print_:
                found[print_] = node.name
    return found


def top_level_values(tree: ast.Module) -> dict[str, str]:
    """fingerprint -> name, for the values a staff module assigns at top level (CALLS, CHECKS, ...)."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            name = ",".join(ast.unparse(t) for t in targets)
            print_ = fingerprint([ast.Expr(value=node.value)])
            if print_:
                found[print_] = name
    return found


def files_under(root: Path, suffixes=(".py", ".ipynb")) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)


# --- what is secret -----------------------------------------------------------------------------

@dataclass
class Secrets:
    bodies: dict[str, str]                 # fingerprint -> "reference/self_attention.py:chunked_attention"
    answers: dict[str, object]             # answer key -> its value


def answer_keys() -> dict[str, object]:
    keys = {}
    for path in files_under(STAFF / "hidden_checks", (".py",)):
        for node in parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ANSWER_KEYS" for t in node.targets):
                keys.update(ast.literal_eval(node.value))
    return keys


def staff_secrets() -> Secrets:
    public = set()
    for path in files_under(PUBLIC):
        for _, source in code_units(path):
            tree = parse(source)
            if tree:
                public |= set(function_bodies(tree))
    bodies = {}
    for path in files_under(STAFF):
        for label, source in code_units(path):
            tree = parse(source)
            if tree is None:
                continue
            found = function_bodies(tree)
            if "hidden_checks" in path.parts:
                found.update(top_level_values(tree))
            for print_, name in found.items():
                if print_ not in public:  # the template's own helpers are public by definition
                    bodies[print_] = f"{Path(label).relative_to(REPO)}:{name}"
    return Secrets(bodies, answer_keys())


SECRETS = staff_secrets()


def answer_pattern(key: str, value: object) -> re.Pattern:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = f"{value:g}".replace(".", r"\.")
        shown = rf"{number}(?:\.0+)?(?![\d.])"
    else:
        shown = rf"[\"']{re.escape(str(value))}[\"']"
    return re.compile(rf"[\"']?{re.escape(key)}[\"']?\s*[:=]\s*{shown}")


def readable_text(path: Path) -> str:
    """The text of a file as a person reads it (a notebook: its cells' sources, not escaped JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text).get("cells", [])
        except json.JSONDecodeError:
            return text
        return "\n".join("".join(c.get("source", "")) if isinstance(c.get("source"), list) else str(c.get("source", ""))
                         for c in cells)
    return text


def scan(root: Path) -> list[str]:
    """Everything of the staff's found under `root` (an unpacked wheel or a template)."""
    findings = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        if STAFF_PARTS & set(rel.parts):
            findings.append(f"{rel}: a staff path")
        for label, source in code_units(path):
            tree = parse(source)
            if tree is None:
                continue
            for print_, name in function_bodies(tree).items():
                if print_ in SECRETS.bodies:
                    findings.append(f"{label}: {name} has the body of {SECRETS.bodies[print_]}")
            for print_, name in top_level_values(tree).items():
                if print_ in SECRETS.bodies:
                    findings.append(f"{label}: {name} is {SECRETS.bodies[print_]}")
            for node in ast.walk(tree):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign) else []
                if any(getattr(t, "id", None) == "ANSWER_KEYS" for t in targets):
                    findings.append(f"{label}: assigns ANSWER_KEYS")
        text = readable_text(path)
        for key, value in SECRETS.answers.items():
            if answer_pattern(key, value).search(text):
                findings.append(f"{rel}: the answer of {key}")
    return findings


# --- the distributions --------------------------------------------------------------------------

def source_copy(target: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "grade-out", "__pycache__",
                                    ".pytest_cache", "*.pyc")
    shutil.copytree(REPO, target, ignore=ignore)
    return target


def unpack(wheel: Path, target: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # `pip wheel --no-deps` of a clean copy of this checkout (the project's own build configuration).
    tmp = tmp_path_factory.mktemp("wheel")
    return build_engine_wheel(tmp / "dist", source_copy(tmp / "src"))


@pytest.fixture(scope="module")
def templates(tmp_path_factory, wheel) -> list[Path]:
    tmp = tmp_path_factory.mktemp("templates")
    return [export_template(ASSIGNMENT, tmp / "default"),
            export_template(ASSIGNMENT, tmp / "gpu", runner_label="gpu", profile="full",
                            engine_requirement="grader @ git+https://example.org/engine@v1"),
            export_template(ASSIGNMENT, tmp / "vendored", engine_wheel=wheel)]


def test_the_secrets_are_known():
    # The scan is only as good as its list: it must hold the reference functions and the hidden module.
    names = set(SECRETS.bodies.values())
    for expected in ("reference/self_attention.py:chunked_attention", "reference/self_attention.py:flash_attention",
                     "reference/hidden_checks/w6_self_attention.py:make_inputs",
                     "reference/hidden_checks/w6_self_attention.py:CHECKS"):
        assert expected in names
    assert any(name.startswith("reference/solutions/") for name in names)
    assert {"attn_matrix_mib", "fp16_max", "complexity"} <= set(SECRETS.answers)


def test_the_wheel_holds_no_reference_code_no_hidden_check_and_no_answer(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"grader", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                                                + ".dist-info"}
    assert not [n for n in names if STAFF_PARTS & set(n.split("/"))]
    assert scan(unpack(wheel, tmp_path / "unpacked")) == []


def test_the_wheel_carries_every_engine_file(wheel):
    # Package data that does not reach the wheel breaks a student's installation (not a dev checkout).
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {str(p.relative_to(REPO)) for p in (REPO / "grader").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert sorted(source - names) == []
    assert f"grader/assignments/data/{ASSIGNMENT}.expected.safetensors" in names


def test_every_exported_template_holds_nothing_of_the_staffs(templates):
    for folder in templates:
        assert scan(folder) == [], folder.name
        for wheel in (folder / ".grader" / "wheels").glob("*.whl"):
            assert scan(unpack(wheel, folder.parent / f"{folder.name}-wheel")) == []


def plant(target: Path, secret: str) -> str:
    """Append to `target` a copy of the staff function `secret` ("path:name"), renamed, with its
    variables renamed too. Returns the new function's name."""
    path, name = secret.rsplit(":", 1)
    tree = parse((REPO / path).read_text(encoding="utf-8"))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)
    node = copy.deepcopy(node)
    node.name = "_harmless_helper"
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            sub.id = f"renamed_{sub.id}"
        elif isinstance(sub, ast.arg):
            sub.arg = f"renamed_{sub.arg}"
    with target.open("a", encoding="utf-8") as f:
        f.write("\n\n" + ast.unparse(node) + "\n")
    return node.name


def test_negative_control_a_reference_function_added_to_the_package_is_found(tmp_path):
    src = source_copy(tmp_path / "src")
    planted = plant(src / "grader" / "judge" / "quality.py", "reference/self_attention.py:chunked_attention")
    wheel = build_engine_wheel(tmp_path / "dist", src)
    findings = scan(unpack(wheel, tmp_path / "unpacked"))
    assert findings and all("grader/judge/quality.py" in f for f in findings)
    assert any(f"{planted} has the body of reference/self_attention.py:chunked_attention" in f for f in findings)


def test_negative_control_staff_files_and_answers_in_a_template_are_found(templates, tmp_path):
    folder = shutil.copytree(templates[0], tmp_path / "leaky")
    notebook = folder / "self_attention_optimized.ipynb"
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    solution = json.loads((STAFF / "solutions" / ASSIGNMENT / notebook.name).read_text(encoding="utf-8"))
    solved = next(c for c in solution["cells"] if c["cell_type"] == "code"
                  and "def chunked_attention" in "".join(c["source"]))
    nb["cells"].append(solved)
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": ["ANSWERS = {\"attn_matrix_mib\": 768.0, \"complexity\": \"b\"}\n"]})
    notebook.write_text(json.dumps(nb), encoding="utf-8")
    (folder / "tests" / "helpers.py").write_text("ANSWER_KEYS = {}\n", encoding="utf-8")
    (folder / "reference").mkdir()
    (folder / "reference" / "notes.txt").write_text("x", encoding="utf-8")
    findings = "\n".join(scan(folder))
    assert "chunked_attention has the body of reference/solutions/" in findings
    assert "the answer of attn_matrix_mib" in findings and "the answer of complexity" in findings
    assert "assigns ANSWER_KEYS" in findings and "reference/notes.txt: a staff path" in findings
    assert scan(templates[0]) == []
