"""Judge, probe decoding and code-quality measures, without running a notebook."""

from __future__ import annotations

import base64
import json

import torch
from safetensors.torch import save

from grader.judge import Verdict, tagged_answer
from grader.judge import compare_tensors as compare_message
from grader.judge.quality import docstring_coverage, function_cells, lint
from grader.probe import ProbeCall, read_probe
from grader.rubric.models import Tolerance

from tests.conftest import make_notebook

TOL = Tolerance(atol=1e-4, rtol=1e-4)


def compare_tensors(*args, **kwargs) -> str | None:
    """The comparison's message in English (None when the tensors match)."""
    message = compare_message(*args, **kwargs)
    return None if message is None else str(message)
CALLS = [ProbeCall("a", "f", ("x",)), ProbeCall("b", "g", ())]


def payload(nonce: str, tensors: dict, calls: dict, answers=None) -> str:
    return json.dumps({"nonce": nonce, "calls": calls, "answers": answers,
                       "tensors": base64.b64encode(save(tensors)).decode()})


def test_compare_reports_shape_nan_and_the_largest_difference():
    expected = torch.zeros(2, 3)
    assert compare_tensors(torch.zeros(2, 3), expected, TOL, "out") is None
    assert "shape (3, 2), expected (2, 3)" in compare_tensors(torch.zeros(3, 2), expected, TOL, "out")
    nan = torch.zeros(2, 3)
    nan[1, 2] = float("nan")
    assert "1 NaN values (first at index (1, 2))" in compare_tensors(nan, expected, TOL, "out")
    off = torch.zeros(2, 3)
    off[0, 1] = 0.5
    message = compare_tensors(off, expected, TOL, "out")
    assert "largest difference 0.5 at index (0, 1)" in message and "atol=0.0001" in message


def test_compare_masks_with_broadcasting_and_infinities():
    expected = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    expected[0, ..., 4] = False
    query_axis = expected.transpose(-1, -2)  # the "padding mask on the query axis" bug
    assert "does not broadcast" in compare_tensors(query_axis, expected, Tolerance(atol=0, rtol=0), "mask",
                                                   broadcast=True)
    assert "expected a boolean mask" in compare_tensors(expected.float(), expected, TOL, "mask")
    additive = torch.tensor([0.0, float("-inf")])
    assert compare_tensors(additive.clone(), additive, TOL, "m") is None
    assert "infinite values" in compare_tensors(torch.tensor([0.0, -1e9]), additive, TOL, "m")


def test_read_probe_accepts_exactly_one_payload_with_this_runs_nonce():
    good = payload("n1", {"a/0": torch.ones(2)}, {"a": {"status": "ok", "n_outputs": 1, "types": ["Tensor"]},
                                                   "b": {"status": "not_implemented", "message": "todo"}},
                   answers={"x": 1})
    report = read_probe([good, "not json", payload("other-run", {}, {})], CALLS, "n1")
    assert report.ran and report.answers == {"x": 1}
    assert torch.equal(report.calls["a"].outputs[0], torch.ones(2))
    assert report.calls["b"].status == "not_implemented"
    # a forged second payload with the right nonce makes the report unusable: it cannot add points
    forged = read_probe([good, good], CALLS, "n1")
    assert not forged.ran and "more than one probe result" in str(forged.problem)
    assert all(o.status == "not_run" for o in forged.calls.values())
    assert "no result from the probe" in str(read_probe([payload("guess", {}, {})], CALLS, "n1").problem)
    assert not read_probe(None, CALLS, "n1").ran


def test_read_probe_survives_garbage_in_every_field():
    garbage = json.dumps({"nonce": "n1", "calls": {"a": {"status": "ok", "n_outputs": "many"}, "b": 7},
                          "tensors": base64.b64encode(save({})).decode(), "answers": [1, 2]})
    report = read_probe([garbage], CALLS, "n1")
    assert report.ran and report.calls["a"].outputs == [] and report.calls["b"].status == "not_run"
    assert report.answers is None
    broken = json.dumps({"nonce": "n1", "calls": {}, "tensors": "%%%"})
    assert not read_probe([broken], CALLS, "n1").ran


def test_lint_maps_findings_to_cells_and_ignores_magics():
    nb = make_notebook("import os\n%matplotlib inline\nx = 1", "print(y)")
    findings = lint(nb)
    assert "cell 3, line 1: 'os' imported but unused" in findings
    assert "cell 4, line 1: undefined name 'y'" in findings
    assert len(findings) == 2


def test_docstring_coverage_skips_unimplemented_stubs():
    nb = make_notebook(
        'def done(x):\n    """Doubles."""\n    return 2 * x',
        "def bare(x):\n    return x",
        'def todo(x):\n    """Later."""\n    raise NotImplementedError("write me")',
    )
    assert docstring_coverage(nb) == (1, 2, ["bare"])
    assert function_cells(nb) == {"done": 3, "bare": 4, "todo": 5}


def test_tagged_answers_are_found_by_tag():
    nb = make_notebook()
    nb["cells"].append({"cell_type": "markdown", "metadata": {"tags": ["answer:theory-x"]}, "source": ["My ", "answer"]})
    assert tagged_answer(nb, "answer:theory-x") == "My answer"
    assert tagged_answer(nb, "answer:other") is None


def test_verdict_defaults_to_full_credit():
    assert Verdict("pass").fraction == 1.0


def test_the_stored_expected_outputs_match_the_reference(tmp_path):
    """The student engine judges from stored outputs: they must be what the reference computes now
    (after changing the reference or the inputs, run `grade expected w6-self-attention`)."""
    from safetensors.torch import load_file

    from grader.assignments import get_spec, load_staff, write_expected

    from grader.assignments import expected_mismatches

    spec = get_spec("w6-self-attention")
    fresh = load_file(str(write_expected(spec, load_staff(spec), tmp_path / "fresh.safetensors")))
    stored = load_file(str(spec.expected_path))
    assert expected_mismatches(fresh, stored) == []


def test_stored_outputs_are_compared_at_the_checks_tolerances_not_bit_for_bit():
    """Another CPU moves float32 results in the last bits (seen: 3e-8 on an AVX-512 machine)."""
    from grader.assignments import expected_mismatches

    g = torch.Generator().manual_seed(0)
    stored = {"chunked/0": torch.randn(2, 3, 37, 16, generator=g), "causal/0": torch.ones(4, 4).tril().bool(),
              "sdpa_fp16/0": torch.randn(5, generator=g).half()}
    nudged = {k: (v + 1e-6 if v.is_floating_point() else v.clone()) for k, v in stored.items()}
    assert expected_mismatches(nudged, stored) == []
    moved = dict(nudged)
    moved["chunked/0"] = stored["chunked/0"].clone()
    moved["chunked/0"][0, 0, 0, 0] += 1e-3  # beyond atol 1e-4 + rtol 1e-4 * |x|
    assert expected_mismatches(moved, stored) == ["chunked/0: differs from the stored value beyond the checks' tolerance"]
    flipped = dict(nudged)
    flipped["causal/0"] = ~stored["causal/0"]
    assert expected_mismatches(flipped, stored) == ["causal/0: differs from the stored value beyond the checks' tolerance"]
    assert expected_mismatches({"x/0": torch.zeros(1)}, {}) == ["x/0: only in the fresh outputs"]
