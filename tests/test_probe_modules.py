"""The probe's support for classes and for objects the notebook made, on a two-layer MLP, before
any assignment uses it: parameters loaded by name, outputs and gradients equal to a reference
module with the same weights, perturbed inputs, parameter names/shapes/count, loading errors as
"parameter X: expected shape ..., yours ...", and a trained model called on the judge's inputs."""

from __future__ import annotations

import json

import pytest
import torch

from grader.assignments import _run_reference_module
from grader.probe import ProbeCall
from grader.sandbox import SandboxJob, run_notebook
from tests.probe_harness import run_probe

STUDENT = '''
import torch
from torch import nn


class MLP(nn.Module):
    """Two layers, as the template fixes: fc1 (hidden, inputs), fc2 (outputs, hidden)."""

    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.fc1 = nn.Linear(n_in, n_hidden)
        self.fc2 = nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class WrongMLP(MLP):
    """fc1 with its input and output sizes swapped."""

    def __init__(self, n_in, n_hidden, n_out):
        super().__init__(n_in, n_hidden, n_out)
        self.fc1 = nn.Linear(n_hidden, n_in)


torch.manual_seed(0)
model = MLP(4, 8, 3)
optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
for _ in range(50):
    optimiser.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimiser.step()
'''


class ReferenceMLP(torch.nn.Module):
    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.fc1 = torch.nn.Linear(n_in, n_hidden)
        self.fc2 = torch.nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 4, generator=g)
    x_changed = x.clone()
    x_changed[2] += 1.0  # only row 2 differs: rows are independent, so only output row 2 may change
    return {"w1": torch.randn(8, 4, generator=g), "b1": torch.randn(8, generator=g),
            "w2": torch.randn(3, 8, generator=g), "b2": torch.randn(3, generator=g),
            "x": x, "x_changed": x_changed, "weights": torch.randn(5, 3, generator=g)}


STATE = {"fc1.weight": "w1", "fc1.bias": "b1", "fc2.weight": "w2", "fc2.bias": "b2"}
CALLS = [
    ProbeCall("mlp", "MLP", ("x",), kind="module", init_kwargs={"n_in": 4, "n_hidden": 8, "n_out": 3},
              state=STATE, backward={"weights": {"0": "weights"}}, perturb=({"args": ("x_changed",)},)),
    ProbeCall("wrong", "WrongMLP", ("x",), kind="module", init_kwargs={"n_in": 4, "n_hidden": 8, "n_out": 3},
              state=STATE),
    ProbeCall("trained", "model", ("x",), kind="object"),
    ProbeCall("absent", "no_such_model", ("x",), kind="object"),
]


@pytest.fixture(scope="module")
def report():
    namespace: dict = {"__name__": "__main__"}
    exec(compile(STUDENT, "<cell 1>", "exec"), namespace)  # noqa: S102 - our own test code
    return run_probe(namespace, CALLS, _inputs())


def test_outputs_and_gradients_equal_the_reference_with_the_same_weights(report):
    outcome = report.calls["mlp"]
    assert outcome.status == "ok", outcome.message
    expected = _run_reference_module(ReferenceMLP, CALLS[0], _inputs(), {})
    torch.testing.assert_close(outcome.outputs[0], expected["mlp"][0], atol=1e-6, rtol=1e-5)
    assert set(outcome.grads) == {"arg0", "param/fc1.weight", "param/fc1.bias", "param/fc2.weight", "param/fc2.bias"}
    for name, grad in outcome.grads.items():
        torch.testing.assert_close(grad, expected[f"mlp/grad/{name}"][0], atol=1e-6, rtol=1e-5)
    assert outcome.params == [("fc1.weight", (8, 4)), ("fc1.bias", (8,)), ("fc2.weight", (3, 8)), ("fc2.bias", (3,))]
    assert outcome.n_params == 8 * 4 + 8 + 3 * 8 + 3


def test_outputs_on_changed_inputs_come_back_for_property_checks(report):
    base, changed = report.calls["mlp"].outputs[0], report.calls["mlp"].variants[0][0]
    moved = (base - changed).abs().amax(dim=1) > 1e-6
    assert moved.tolist() == [False, False, True, False, False]


def test_a_parameter_of_the_wrong_shape_is_named_with_both_shapes(report):
    outcome = report.calls["wrong"]
    assert outcome.status == "state"
    assert outcome.problems == ["parameter fc1.weight: expected shape (8, 4), yours (4, 8)",
                                "parameter fc1.bias: expected shape (8,), yours (4,)"]


def test_a_trained_model_left_by_the_notebook_is_called_on_the_judges_inputs(report):
    outcome = report.calls["trained"]
    assert outcome.status == "ok" and outcome.outputs[0].shape == (5, 3)
    assert report.calls["absent"].status == "missing"


@pytest.mark.notebook
def test_the_module_probe_runs_in_the_real_sandbox(tmp_path):
    """The same calls in a sandboxed kernel: the kernel-side code runs there unchanged."""
    import nbformat

    from grader.probe import build_probe_source, read_probe

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(STUDENT)])
    nonce = "0123456789abcdef"
    job = SandboxJob(notebook=json.loads(nbformat.writes(notebook)),
                     workdir=tmp_path, parameters={},
                     probe_source=lambda paths: build_probe_source(CALLS, _inputs(), paths, device="cpu", nonce=nonce,
                                                                   call_timeout_s=30),
                     cell_timeout_s=120, timeout_s=300)
    execution = run_notebook(job, "local")
    report = read_probe(execution.probe_payloads if execution.probe_ran else None, CALLS, nonce)
    assert report.ran, report.problem
    assert report.calls["mlp"].status == "ok" and len(report.calls["mlp"].grads) == 5
    assert report.calls["wrong"].status == "state" and report.calls["trained"].status == "ok"


def test_module_check_compares_outputs_gradients_and_variants_and_names_loading_problems(report):
    from grader.judge import CheckContext, module_check
    from grader.rubric.models import Tolerance

    inputs = _inputs()
    expected = _run_reference_module(ReferenceMLP, CALLS[0], inputs, {})
    expected["wrong"] = [None]  # never reached: loading fails first
    ctx = CheckContext(notebook={}, submission_root=None, deliverables=[], execution=None, probe=report,
                       inputs=inputs, expected=expected)
    tol = Tolerance(atol=1e-5, rtol=1e-5)
    good = module_check("mlp", "MLP", {0: "output"}, default_tol=tol, grads=True, variants=True).fn(ctx)
    assert good.status == "pass", good.message
    bad = module_check("wrong", "WrongMLP", {0: "output"}, default_tol=tol).fn(ctx)
    assert bad.status == "fail" and "expected shape (8, 4), yours (4, 8)" in str(bad.message.params["problems"])
    # a wrong gradient is caught: the reference's gradient of fc2.bias, changed
    expected["mlp/grad/param/fc2.bias"] = [expected["mlp/grad/param/fc2.bias"][0] + 0.5]
    wrong_grad = module_check("mlp", "MLP", {0: "output"}, default_tol=tol, grads=True).fn(ctx)
    assert wrong_grad.status == "fail" and "fc2.bias" in str(wrong_grad.message.params["what"].params["name"])


WORK = '''
import torch
import torch.nn.functional as F


def work(x, w, images, kernels):
    """Matmuls of several kinds, a linear layer, a convolution and an einsum."""
    a = torch.tanh(x @ w)                                  # mm
    b = torch.bmm(a.unsqueeze(0), a.T.unsqueeze(0))        # bmm
    c = F.linear(a, w[:6], torch.ones(6))                  # addmm
    d = F.conv2d(images, kernels, padding=1)               # convolution
    e = torch.einsum("ij,kj->ik", c, c)                    # bmm through einsum
    return b.sum() + d.sum() + e.sum()
'''


def test_measured_flops_are_those_of_torchs_flop_counter():
    """The probe counts FLOPs in its own dispatch mode (FlopCounterMode's inner mode would import
    torch._dynamo, 1.5 s, on its first use); the counts must be FlopCounterMode's, op for op."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(3)
    inputs = {"x": torch.randn(12, 10, generator=g), "w": torch.randn(10, 9, generator=g),
              "images": torch.randn(2, 3, 8, 8, generator=g), "kernels": torch.randn(4, 3, 3, 3, generator=g)}
    namespace: dict = {"__name__": "__main__"}
    exec(compile(WORK, "<cell 1>", "exec"), namespace)  # noqa: S102 - our own test code
    report = run_probe(namespace, [ProbeCall("m", "work", ("x", "w", "images", "kernels"), measure=True)], inputs)
    counter = FlopCounterMode(display=False)
    with counter:
        namespace["work"](*(inputs[k].clone() for k in ("x", "w", "images", "kernels")))
    expected = counter.get_total_flops()
    assert expected > 2 * 12 * 10 * 9  # the convolution and the matmuls are all in it
    assert report.calls["m"].measured["flops"] == expected
