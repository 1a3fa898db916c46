"""Nothing student-controlled carries hidden data back: a notebook that spies on every call of its
own functions (shapes, dtypes, first values, mask rows) and tries every way out (ANSWERS, printing,
an exception message of a later call, a file in an artifact folder) finds no hidden input, shape or
value in anything the student receives."""

from __future__ import annotations

import shutil

import pytest

from grader.pipeline import GradeOptions, grade_submission
from tests.conftest import REPO, SOLUTION
from tests.test_pipeline import NOTEBOOK, add_cell

pytestmark = pytest.mark.notebook

SPY = r'''
import json as _json
SPY_LOG = []


def _spy(fn):
    def wrapped(*args, **kwargs):
        entry = {"fn": fn.__name__, "shapes": [tuple(a.shape) for a in args if hasattr(a, "shape")],
                 "dtypes": [str(a.dtype) for a in args if hasattr(a, "dtype")],
                 "first": [float(a.flatten()[0]) for a in args if hasattr(a, "flatten") and a.numel()],
                 "mask": repr(kwargs.get("mask")[..., 0, :].flatten()[:12].tolist()) if kwargs.get("mask") is not None else None}
        SPY_LOG.append(entry)
        print("SPY", _json.dumps(entry))
        with open("performance_benchmark/spy.txt", "a") as handle:
            handle.write(_json.dumps(entry) + "\n")
        return fn(*args, **kwargs)
    wrapped.__name__ = fn.__name__
    return wrapped


scaled_dot_product_attention = _spy(scaled_dot_product_attention)
chunked_attention = _spy(chunked_attention)
ANSWERS["linear_complexity"] = SPY_LOG          # read by the grader: carries whatever was logged by then
_own_linear = linear_attention


def linear_attention(q, k, v):
    """Fails with the whole log in its message."""
    if len(SPY_LOG) > 0:
        raise RuntimeError("LOG " + _json.dumps(SPY_LOG)[-400:])
    return _own_linear(q, k, v)
'''

SEED = 4242


def _hidden_markers() -> list[str]:
    """What the hidden calls' inputs look like when written out: their shapes and first values."""
    import sys

    sys.path.insert(0, str(REPO))
    from reference.hidden_checks import w6_self_attention as hidden

    inputs = hidden.make_inputs(SEED)
    markers = []
    for name in ("h_q", "h_k", "h_v", "h_q16"):
        tensor = inputs[name]
        markers += [str(tuple(tensor.shape)), str(list(tensor.shape)), str(list(tensor.shape)).replace(" ", ""),
                    repr(float(tensor.flatten()[0]))[:8]]
    return markers


def test_a_spy_finds_no_hidden_input_in_anything_the_student_receives(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    add_cell(submission / NOTEBOOK, SPY)
    out = tmp_path / "out"
    result = grade_submission(submission, out, GradeOptions(cell_timeout_s=120, timeout_s=300, seed=SEED, lang="en"))
    assert result["status"] == "graded"
    # the spy worked on the public calls: they are in what it sent out (so the test can fail)
    answer_check = next(c for c in result["checks"] if c["id"] == "theory-linear-complexity")
    assert answer_check["status"] == "fail"
    linear = next(c for c in result["checks"] if c["id"] == "bonus-linear")
    assert "LOG" in linear["message"] and "[2, 3, 40, 16]" in linear["message"]
    received = ["result.json", "feedback.html", "feedback.md", "executed.ipynb", "executed.html"]
    texts = {name: (out / name).read_text(encoding="utf-8") for name in received if (out / name).exists()}
    assert {"result.json", "feedback.html", "feedback.md", "executed.ipynb"} <= set(texts)
    for marker in _hidden_markers():
        leaked = [name for name, text in texts.items() if marker in text]
        assert not leaked, f"hidden marker {marker!r} found in {leaked}"
    # the hidden checks still ran and were judged, by name and verdict only
    hidden = {c["id"]: c for c in result["checks"] if c["visibility"] == "hidden"}
    assert hidden and all(c["message"] == "" for c in hidden.values())
