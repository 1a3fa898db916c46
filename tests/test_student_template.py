"""The student template: no solution inside, and its self-check suite tells a finished notebook
from a blank one (run as a student runs it: `pytest` in the assignment folder)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import nbformat

from tests.conftest import SOLUTION, TEMPLATE

API = ("scaled_dot_product_attention", "chunked_attention", "padding_mask", "causal_mask", "combine_masks",
       "flash_attention", "local_attention_mask", "sparse_attention", "linear_attention")
NOTEBOOK = "self_attention_optimized.ipynb"


def self_check(notebook) -> subprocess.CompletedProcess:
    env = {**os.environ, "SELF_CHECK_NOTEBOOK": str(notebook)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=TEMPLATE, env=env, capture_output=True, text=True, timeout=300)


def _functions(notebook_path) -> dict[str, ast.FunctionDef]:
    nb = nbformat.read(notebook_path, as_version=4)
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "def " in cell.source:
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    found[node.name] = node
    return found


def test_every_api_function_of_the_template_is_a_documented_stub():
    functions = _functions(TEMPLATE / NOTEBOOK)
    for name in API:
        node = functions[name]
        assert ast.get_docstring(node), name
        body = [n for n in node.body if not isinstance(n, ast.Expr)]
        assert len(body) == 1 and isinstance(body[0], ast.Raise), f"{name} is not a stub"
        assert "NotImplementedError" in ast.unparse(body[0])


def test_the_template_has_the_parameters_cell_and_empty_answers():
    nb = nbformat.read(TEMPLATE / NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for name in ("SEED", "DEVICE", "DATA_DIR", "PROFILE"):
        assert f"{name} =" in params[0].source
    answers = next(c.source for c in nb.cells if c.cell_type == "code" and "ANSWERS = {" in c.source)
    assert "None" in answers and "768" not in answers and "65504" not in answers
    tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
    assert {"answer:theory-online-softmax", "answer:theory-fp16-stability", "answer:exp-analysis"} <= tags
    assert (TEMPLATE / "performance_benchmark").is_dir() and (TEMPLATE / "masking_techniques").is_dir()


def test_the_self_check_passes_on_the_reference_solution():
    done = self_check(SOLUTION / NOTEBOOK)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_self_check_fails_the_blank_template_with_what_to_do():
    done = self_check(TEMPLATE / NOTEBOOK)
    assert done.returncode == 1
    assert "not implemented yet" in done.stdout
    assert "scaled_dot_product_attention" in done.stdout and "ANSWERS" in done.stdout
