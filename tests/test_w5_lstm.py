"""w5-lstm: the reference gets every automatic point; seeded bugs lose exactly the points of the
checks aimed at them; correct work in other styles keeps every point; shortcuts through torch's
recurrent layers or clipping lose the points of the requirement they dodge; the forecasting check
measures the trained model itself; the stored expected outputs are the reference's.

Variants are judged in-process (tests/probe_harness.py: the real probe, requirements and judge,
no sandbox); three whole sandboxed runs are marked `notebook`.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from grader.assignments import get_spec, load_staff, prepare_probe
from grader.data import make_series_smoke, series_config
from grader.i18n import catalog
from grader.rubric import load_rubric
from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w5-lstm"
TEMPLATE = REPO / "student_template" / "w5-lstm"
NOTEBOOK = "lstm_implementation.ipynb"
RUBRIC = load_rubric(REPO / "rubrics" / "w5-lstm.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)

CELL = {"impl-lstm-cell", "impl-lstm-cell-grads", "impl-gates", "impl-hidden-cell"}
SEQUENCE = {"impl-lstm-sequence", "impl-bidirectional", "impl-hidden-bidirectional"}
IMPLEMENTATION = CELL | SEQUENCE | {"impl-grad-clipping", "impl-multistep"}
BONUS = {"bonus-gru", "bonus-attention", "bonus-vae"}
EXPERIMENT_CHECKS = {"exp-forecast-skill", "exp-forecast-table", "exp-forecast-plot", "exp-gate-stats",
                     "exp-gradient-flow", "exp-gate-plots"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models here are tiny and run one time step at a time: on a loaded 2-core machine, torch's
    intra-op threads only wait on each other (seconds per call instead of milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    """The smoke profile's DATA_DIR, made once (the in-process runs mount it as the pipeline would)."""
    folder = tmp_path_factory.mktemp("w5-lstm-data")
    make_series_smoke(folder)
    return folder


def _variant(tmp_path: Path, *, replace: tuple[tuple[str, str], ...] = (), append: str | None = None,
             base: Path = SOLUTION) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(base, submission)
    edit_cells(submission / NOTEBOOK, list(replace), append=[append] if append else [])
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path, data_dir: Path, **kwargs) -> dict:
    kwargs.setdefault("skip_tags", ("experiment",))
    return judge_in_process(notebook, "w5-lstm", tmp_path / "work", data_dir=data_dir, **kwargs)


def _not_passed(result: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in result["checks"]
            if c["id"] in IMPLEMENTATION | BONUS and c["status"] != "pass"}


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory, smoke_data):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK, smoke_data)


def test_the_reference_passes_every_implementation_check_and_meets_every_requirement(reference_result):
    assert _not_passed(reference_result) == {}
    assert reference_result["criteria"]["implementation"]["score"] == pytest.approx(10.0)
    assert reference_result["bonus"] == pytest.approx(5.0)
    theory = [c for c in reference_result["checks"] if c["criterion"] == "theory" and c["status"] != "pending"]
    assert theory and all(c["status"] == "pass" for c in theory)
    # without the experiment cells no FORECASTER is left, and the check says what to do
    skill = reference_result["by_id"]["exp-forecast-skill"]
    assert skill["status"] == "fail" and "FORECASTER = ScaledForecaster" in skill["message"]


# --- seeded bugs: one line of the reference changed, exactly the checks aimed at it fail ---------

BUGS: dict[str, tuple[str, str, set[str]]] = {
    # the forget gate squashed with tanh: f leaves [0, 1], everything built on the cell is wrong
    "forget_gate_tanh": (
        "        return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)",
        "        return torch.sigmoid(i), torch.tanh(f), torch.tanh(g), torch.sigmoid(o)",
        (CELL | SEQUENCE) - {"impl-hidden-cell"}),   # the hidden call starts from c = 0, where f does not matter
    # the row blocks read as i, f, o, g (Keras' order) instead of torch's i, f, g, o
    "gates_wrong_order": (
        "        i, f, g, o = pre.chunk(4, dim=-1)  # the gate order of torch.nn.LSTMCell: 4 x (B, H)",
        "        i, f, o, g = pre.chunk(4, dim=-1)  # the gate order of torch.nn.LSTMCell: 4 x (B, H)",
        CELL | SEQUENCE),
    # the previous cell state detached: right values, no gradient along the cell path
    "cell_state_detached": (
        "        c_next = f * c + i * g  # the additive cell path: d c_next / d c = f",
        "        c_next = f * c.detach() + i * g  # the additive cell path: d c_next / d c = f",
        {"impl-lstm-cell-grads", "impl-bidirectional"}),
    # truncated backpropagation: the states are detached between time steps
    "truncated_bptt": (
        "                h, c = cell(x[:, t], h, c)  # (B, I) -> (B, H), (B, H)",
        "                h, c = cell(x[:, t], h.detach(), c.detach())  # (B, I) -> (B, H), (B, H)",
        {"impl-bidirectional"}),
    # the reverse direction's outputs left in reading order (T-1..0)
    "reverse_outputs_not_restored": (
        "                states = states[::-1]  # the reverse pass read T-1..0: back to the original time order",
        "                pass  # the reverse pass read T-1..0",
        {"impl-bidirectional", "impl-hidden-bidirectional"}),
    # the given initial state ignored (zeros always)
    "initial_state_ignored": (
        "            h, c = h0[d], c0[d]",
        "            h, c = torch.zeros_like(h0[d]), torch.zeros_like(c0[d])",
        {"impl-lstm-sequence", "impl-hidden-bidirectional"}),
    # each gradient clipped on its own norm instead of the global one
    "clip_per_tensor": (
        "    clipped = tuple(g * scale.to(g.dtype) for g in grads)",
        "    clipped = tuple(g * torch.clamp(max_norm / (g.norm() + 1e-6), max=1.0) for g in grads)",
        {"impl-grad-clipping"}),
    # gradients below the bound scaled up to it
    "clip_scales_up": (
        "    scale = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)  # never scales a gradient up",
        "    scale = max_norm / (total_norm + 1e-6)  # never scales a gradient up",
        {"impl-grad-clipping"}),
    # forecasts (B, horizon, 1) instead of (B, horizon)
    "forecast_wrong_shape": (
        "        return self.head(last)  # (B, horizon)",
        "        return self.head(last).unsqueeze(-1)  # (B, horizon)",
        {"impl-multistep"}),
    # the GRU's update gate used the other way round
    "gru_update_swapped": (
        "        h_next = (1 - z) * n + z * h",
        "        h_next = z * n + (1 - z) * h",
        {"bonus-gru"}),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_seeded_bug_loses_exactly_the_points_of_its_checks(tmp_path, smoke_data, bug):
    original, replacement, failing = BUGS[bug]
    result = _judge(tmp_path, _variant(tmp_path, replace=((original, replacement),)), smoke_data)
    assert _not_passed(result) == {c: "fail" for c in failing}, {c["id"]: c["message"] for c in result["checks"]
                                                                  if c["id"] in IMPLEMENTATION | BONUS}
    lost = sum(c["max_score"] for c in result["checks"] if c["id"] in failing and not c["bonus"])
    assert result["criteria"]["implementation"]["score"] == pytest.approx(10.0 - lost)


def test_the_forget_gate_out_of_range_is_named_and_wrong_states_are_pictured(tmp_path, smoke_data):
    original, replacement, _ = BUGS["forget_gate_tanh"]
    checks = _raw_checks(tmp_path / "work", _variant(tmp_path, replace=((original, replacement),)), smoke_data)
    message = checks["impl-gates"]["message"]
    assert "forget gate f of LSTMCell" in message and "outside [0, 1]" in message, message
    # the report draws the student's (B, H) state beside the expected one
    figure = checks["impl-lstm-cell"]["_figure"]
    assert figure is not None and figure[0].shape == figure[1].shape == (4, 7)


def _raw_checks(workdir: Path, notebook: Path, data_dir: Path) -> dict:
    """The judge's entries with their figures (judge_in_process drops them)."""
    import tests.probe_harness as harness

    kept: dict = {}
    original = harness.judge

    def keep(*args, **kwargs):
        checks = original(*args, **kwargs)
        kept.update({c["id"]: dict(c) for c in checks})
        return checks

    harness.judge = keep
    try:
        judge_in_process(notebook, "w5-lstm", workdir, data_dir=data_dir, skip_tags=("experiment",))
    finally:
        harness.judge = original
    return kept


# --- correct work written differently keeps every point --------------------------------------------

ALTERNATIVE_FUSED_CELL = '''
class LSTMCell(nn.Module):
    """One fused product [x, h] @ [W_ih, W_hh]^T, gates taken by slicing."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.1)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))

    def gate_activations(self, x, h=None):
        """(i, f, g, o) from one matrix product."""
        h = torch.zeros(x.shape[0], self.hidden_size) if h is None else h
        weight = torch.cat([self.weight_ih, self.weight_hh], dim=1)
        pre = torch.cat([x, h], dim=1) @ weight.T + (self.bias_ih + self.bias_hh)
        H = self.hidden_size
        return (1 / (1 + torch.exp(-pre[:, :H])), 1 / (1 + torch.exp(-pre[:, H:2 * H])),
                torch.tanh(pre[:, 2 * H:3 * H]), 1 / (1 + torch.exp(-pre[:, 3 * H:])))

    def forward(self, x, h=None, c=None):
        """One step."""
        i, f, g, o = self.gate_activations(x, h)
        c = torch.zeros_like(i) if c is None else c
        c = torch.addcmul(i * g, f, c)
        return o * torch.tanh(c), c
'''

ALTERNATIVE_FLIPPED_LSTM = '''
class LSTM(nn.Module):
    """The reverse direction as the forward loop over the time-flipped input."""

    def __init__(self, input_size, hidden_size, bidirectional=False):
        super().__init__()
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.cell = LSTMCell(input_size, hidden_size)
        self.cell_reverse = LSTMCell(input_size, hidden_size) if bidirectional else None

    def _scan(self, cell, x, h, c):
        out = x.new_empty(x.shape[0], x.shape[1], self.hidden_size)
        for t in range(x.shape[1]):
            h, c = cell(x[:, t], h, c)
            out[:, t] = h
        return out, h, c

    def forward(self, x, h0=None, c0=None):
        """Both directions, the reverse one on torch.flip(x)."""
        D = 2 if self.bidirectional else 1
        zeros = x.new_zeros(D, x.shape[0], self.hidden_size)
        h0 = zeros if h0 is None else h0
        c0 = zeros if c0 is None else c0
        out, h, c = self._scan(self.cell, x, h0[0], c0[0])
        if not self.bidirectional:
            return out, h[None], c[None]
        back, hb, cb = self._scan(self.cell_reverse, torch.flip(x, dims=[1]), h0[1], c0[1])
        return torch.cat([out, torch.flip(back, dims=[1])], dim=2), torch.stack([h, hb]), torch.stack([c, cb])
'''

ALTERNATIVE_CLIP = '''
def clip_gradients(*grads, max_norm):
    """Global norm from one flattened vector; torch.where instead of a clamp."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    total = torch.linalg.vector_norm(flat)
    factor = torch.where(total > max_norm, max_norm / (total + 1e-6), torch.ones_like(total))
    return (total, *[g * factor for g in grads])
'''

ALTERNATIVE_GRU = '''
import torch.nn.functional as F


class GRUCell(nn.Module):
    """Per-gate slices of the weights and F.linear."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.randn(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))

    def forward(self, x, h=None):
        """One step, gate by gate."""
        h = torch.zeros(x.shape[0], self.hidden_size) if h is None else h
        H = self.hidden_size
        part = [slice(k * H, (k + 1) * H) for k in range(3)]
        r = torch.sigmoid(F.linear(x, self.weight_ih[part[0]], self.bias_ih[part[0]])
                          + F.linear(h, self.weight_hh[part[0]], self.bias_hh[part[0]]))
        z = torch.sigmoid(F.linear(x, self.weight_ih[part[1]], self.bias_ih[part[1]])
                          + F.linear(h, self.weight_hh[part[1]], self.bias_hh[part[1]]))
        n = torch.tanh(F.linear(x, self.weight_ih[part[2]], self.bias_ih[part[2]])
                       + r * F.linear(h, self.weight_hh[part[2]], self.bias_hh[part[2]]))
        return h + (1 - z) * (n - h)
'''


@pytest.mark.parametrize("name,cell", [("fused-cell", ALTERNATIVE_FUSED_CELL),
                                       ("flipped-lstm", ALTERNATIVE_FLIPPED_LSTM),
                                       ("flat-clip", ALTERNATIVE_CLIP), ("linear-gru", ALTERNATIVE_GRU)])
def test_correct_work_in_another_style_keeps_every_point(tmp_path, smoke_data, name, cell):
    result = _judge(tmp_path, _variant(tmp_path, append=cell), smoke_data)
    assert _not_passed(result) == {}, {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass"}
    assert result["criteria"]["implementation"]["score"] == pytest.approx(10.0)
    assert result["bonus"] == pytest.approx(5.0)


# --- shortcuts: torch's recurrent layers or clipping, wrapped ----------------------------------------

SHORTCUT_CELL = '''
class LSTMCell(nn.Module):
    """The template's parameters, torch's fused cell."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))

    def gate_activations(self, x, h=None):
        """The gates, by hand (the only part written)."""
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h
        i, f, g, o = (x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh).chunk(4, 1)
        return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)

    def forward(self, x, h=None, c=None):
        """torch.lstm_cell does the step."""
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        state = (zeros if h is None else h, zeros if c is None else c)
        return torch.lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
'''

SHORTCUT_SEQUENCE = '''
class LSTM(nn.Module):
    """The template's cells as parameters, torch's fused LSTM kernel as the loop."""

    def __init__(self, input_size, hidden_size, bidirectional=False):
        super().__init__()
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.cell = LSTMCell(input_size, hidden_size)
        self.cell_reverse = LSTMCell(input_size, hidden_size) if bidirectional else None

    def forward(self, x, h0=None, c0=None):
        """torch._VF.lstm with the cells' weights."""
        cells = [self.cell] + ([self.cell_reverse] if self.bidirectional else [])
        weights = [w for cell in cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        zeros = x.new_zeros(len(cells), x.shape[0], self.hidden_size)
        state = (zeros if h0 is None else h0, zeros if c0 is None else c0)
        output, h_n, c_n = torch._VF.lstm(x, state, weights, True, 1, 0.0, self.training, self.bidirectional, True)
        return output, h_n, c_n
'''

SHORTCUT_CLIP = '''
def clip_gradients(*grads, max_norm):
    """torch's clip_grad_norm_ on stand-in parameters."""
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return (total, *[p.grad for p in params])
'''

HIDDEN_GRU = '''
class GRUCell(nn.Module):
    """torch's GRU cell, its name assembled at run time."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.randn(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))

    def forward(self, x, h=None):
        """One step."""
        h = x.new_zeros(x.shape[0], self.hidden_size) if h is None else h
        step = getattr(torch, "gru" + "_cell")
        return step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
'''


def _appended_cell() -> int:
    return len(nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4).cells) + 1


def test_a_cell_that_wraps_torch_lstm_cell_loses_everything_built_on_it(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=SHORTCUT_CELL), smoke_data)
    built_on_the_cell = IMPLEMENTATION - {"impl-grad-clipping"} | {"bonus-attention", "bonus-vae"}
    assert _not_passed(result) == {c: "fail" for c in built_on_the_cell}
    message = result["by_id"]["impl-lstm-cell"]["message"]
    assert "torch.lstm_cell" in message and f"cell {_appended_cell()}" in message, message
    # the sequence LSTM is caught through the cell it uses, and says so
    assert "reached through LSTM -> LSTMCell" in result["by_id"]["impl-lstm-sequence"]["message"]


def test_a_sequence_lstm_on_torchs_fused_kernel_loses_the_sequence_points(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=SHORTCUT_SEQUENCE), smoke_data)
    assert _not_passed(result) == {c: "fail" for c in SEQUENCE | {"impl-multistep", "bonus-attention", "bonus-vae"}}
    assert "uses torch._VF.lstm" in result["by_id"]["impl-bidirectional"]["message"]
    assert result["criteria"]["implementation"]["score"] == pytest.approx(10.0 - 1 - 1.5 - 0.5 - 0.5)


def test_clipping_through_clip_grad_norm_loses_the_clipping_points(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=SHORTCUT_CLIP), smoke_data)
    assert _not_passed(result) == {"impl-grad-clipping": "fail"}
    assert "torch.nn.utils.clip_grad_norm_" in result["by_id"]["impl-grad-clipping"]["message"]


def test_a_gru_cell_hidden_behind_getattr_goes_to_a_ta_with_the_evidence(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=HIDDEN_GRU), smoke_data)
    assert _not_passed(result) == {"bonus-gru": "pending"}
    check = result["by_id"]["bonus-gru"]
    evidence = check["measured"]["own-recurrence"]
    assert evidence["static"] == [] and "torch:gru_cell" in evidence["dynamic"], evidence
    assert check["score"] == 0 and "torch:gru_cell" in check["message"]


# --- forecasting: measured by the judge on its own held-out windows ---------------------------------

PERSISTENCE_FORECASTER = '''
class LastValue(nn.Module):
    """Repeats the last observed value."""

    def forward(self, windows):
        """(N, WINDOW) -> (N, HORIZON)."""
        return windows[:, -1:].repeat(1, HORIZON)


FORECASTER = LastValue()
'''

SEASONAL_ON_TORCH_LSTM = '''
class Seasonal(nn.Module):
    """Repeats the value one 11-step cycle earlier (it beats persistence on sunspots), holding a
    torch LSTM it does not even need."""

    def __init__(self):
        super().__init__()
        self.unused = nn.LSTM(1, 4, batch_first=True)

    def forward(self, windows):
        """(N, WINDOW) -> (N, HORIZON)."""
        return windows[:, -11:-11 + HORIZON]


FORECASTER = Seasonal()
'''


def test_a_forecaster_no_better_than_persistence_gets_no_forecasting_point(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=PERSISTENCE_FORECASTER), smoke_data)
    check = result["by_id"]["exp-forecast-skill"]
    assert check["status"] == "fail" and "ratio 1.000" in check["message"], check["message"]
    assert "does not beat repeating the last value" in check["message"]


def test_a_forecaster_built_on_torchs_lstm_gets_no_forecasting_point(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=SEASONAL_ON_TORCH_LSTM), smoke_data)
    check = result["by_id"]["exp-forecast-skill"]
    assert check["status"] == "fail" and "FORECASTER uses torch.nn.LSTM" in check["message"], check["message"]
    # the same forecaster without the torch LSTM passes: the skill was there, the requirement failed
    honest = SEASONAL_ON_TORCH_LSTM.replace("        self.unused = nn.LSTM(1, 4, batch_first=True)\n", "")
    again = _judge(tmp_path / "honest", _variant(tmp_path / "honest", append=honest), smoke_data)
    assert again["by_id"]["exp-forecast-skill"]["status"] == "pass", again["by_id"]["exp-forecast-skill"]["message"]


# --- made-up artifacts -------------------------------------------------------------------------------

def test_the_blank_template_with_made_up_artifacts_gets_no_experiment_points(tmp_path, smoke_data):
    submission = tmp_path / "submission"
    shutil.copytree(TEMPLATE, submission, ignore=shutil.ignore_patterns("tests", "README.md"))
    for folder in ("gate_analysis", "time_series_forecasting"):
        shutil.rmtree(submission / folder)
        shutil.copytree(SOLUTION / folder, submission / folder)   # the reference's files, claimed as one's own
    result = judge_in_process(submission / NOTEBOOK, "w5-lstm", tmp_path / "work", data_dir=smoke_data)
    assert result["criteria"]["experiments"]["score"] == 0
    assert {result["by_id"][c]["status"] for c in EXPERIMENT_CHECKS} == {"fail"}
    assert "did not produce" in result["by_id"]["exp-gate-stats"]["message"]
    assert "did not draw it" in result["by_id"]["exp-gate-plots"]["message"]
    assert result["criteria"]["code_quality"]["score"] == 0


# --- stored expected outputs, messages, template -----------------------------------------------------

def test_the_stored_expected_outputs_are_the_references_at_the_checks_tolerances():
    from safetensors.torch import load_file

    spec = get_spec("w5-lstm")
    stored = load_file(str(spec.expected_path))
    live = prepare_probe(spec, load_staff(spec), spec.public_seed).expected
    # every call whose module gets the judge's weights, or a plain function: deterministic
    exact = [c.id for c in spec.calls if (c.kind == "module" and c.state) or c.kind == "function"]
    compared = 0
    for key, values in live.items():
        if key.split("/")[0] not in exact:
            continue
        for i, value in enumerate(values):
            assert f"{key}/{i}" in stored, key
            torch.testing.assert_close(stored[f"{key}/{i}"], value, atol=1e-5, rtol=1e-4)
            compared += 1
    assert compared >= 30


def test_without_the_staff_side_public_checks_run_from_the_stored_outputs(tmp_path, smoke_data, monkeypatch):
    """A student's installation: no reference/, no hidden checks, no answer keys."""
    monkeypatch.setenv("GRADER_STAFF_DIR", "none")
    shutil.copytree(SOLUTION, tmp_path / "submission")
    result = _judge(tmp_path, tmp_path / "submission" / NOTEBOOK, smoke_data)
    hidden = {i.id for i in RUBRIC.items if i.visibility == "hidden"}
    questions = {i.id for i in RUBRIC.items if i.kind == "question"}
    assert all(result["by_id"][i]["status"] == "pending" for i in hidden | questions)
    public = (IMPLEMENTATION | BONUS) - hidden
    assert {c: result["by_id"][c]["status"] for c in public} == {c: "pass" for c in public}


def test_every_message_of_the_assignment_is_in_both_catalogs():
    source = (REPO / "grader" / "assignments" / "w5_lstm.py").read_text(encoding="utf-8")
    source += (REPO / "grader" / "judge" / "properties.py").read_text(encoding="utf-8")
    source += (REPO / "reference" / "hidden_checks" / "w5_lstm.py").read_text(encoding="utf-8")
    names = {f"name.{n}" for n in re.findall(r'"(w5l_[a-z_]+)"', source)}
    ids = set(re.findall(r'"(w5l\.[a-z_.]+)"', source)) | {"w5l.what.forecast_plot", "w5l.what.gate_plots"}
    assert len(names) >= 15 and len(ids) >= 25
    for lang in ("en", "ko"):
        assert sorted((names | ids) - set(catalog(lang))) == [], lang


def test_the_template_fixes_the_api_as_documented_stubs():
    notebook = nbformat.read(str(TEMPLATE / NOTEBOOK), as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for name in ("class LSTMCell(nn.Module)", "def gate_activations(self, x, h=None)",
                 "def forward(self, x, h=None, c=None)", "class LSTM(nn.Module)",
                 "def forward(self, x, h0=None, c0=None)", "def clip_gradients(*grads, max_norm)",
                 "class LSTMForecaster(nn.Module)", "class ScaledForecaster(nn.Module)", "class GRUCell(nn.Module)",
                 "class AttentionLSTM(nn.Module)", "class LSTMVAE(nn.Module)", "def vae_loss(recon, x, mu, logvar)",
                 "WINDOW = 24", "HORIZON = 6", "TRAIN_FRACTION = 0.8"):
        assert name in code, name
    assert code.count("raise NotImplementedError") == 13
    params = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(f"{n} =" in params[0].source for n in ("SEED", "DEVICE", "DATA_DIR", "PROFILE"))
    answers = next(c.source for c in notebook.cells if c.cell_type == "code" and "ANSWERS = {" in c.source)
    assert "2560" not in answers and answers.count("None") == 6
    tags = {t for c in notebook.cells for t in c.metadata.get("tags", [])}
    assert {f"answer:{i.id}" for i in RUBRIC.items if i.kind == "manual"} <= tags
    assert (TEMPLATE / "gate_analysis").is_dir() and (TEMPLATE / "time_series_forecasting").is_dir()


def _self_check(notebook: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SELF_CHECK_NOTEBOOK": str(notebook), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=TEMPLATE, env=env, capture_output=True, text=True, timeout=600)


def test_the_self_check_passes_the_reference_and_fails_the_blank_template_with_what_to_do():
    done = _self_check(SOLUTION / NOTEBOOK)
    assert done.returncode == 0 and "16 passed" in done.stdout, done.stdout[-3000:]
    blank = _self_check(TEMPLATE / NOTEBOOK)
    assert blank.returncode == 1 and "not implemented yet" in blank.stdout and "ANSWERS" in blank.stdout
    assert "3 skipped" in blank.stdout   # the bonus parts


# --- whole sandboxed runs ------------------------------------------------------------------------------

def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"hw5/{path.relative_to(folder)}")
    return target


def _options(**kwargs):
    from grader.pipeline import GradeOptions

    return GradeOptions(cell_timeout_s=300, timeout_s=600, memory_mb=4096, **kwargs)


@pytest.mark.notebook
def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    from grader.pipeline import grade_submission

    result = grade_submission(_zip(SOLUTION, tmp_path / "submit.zip"), tmp_path / "out", _options())
    assert result["status"] == "graded", result.get("reason")
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass" and c["id"] not in
                  {i.id for i in RUBRIC.items if i.kind == "manual"}}
    assert not_passed == {}
    assert {c["id"] for c in result["checks"] if c["status"] == "pending"} == {i.id for i in RUBRIC.items
                                                                               if i.kind == "manual"}
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)
    assert result["judged_with"] == "live" and result["execution"]["status"] == "completed"
    skill = next(c for c in result["checks"] if c["id"] == "exp-forecast-skill")
    assert "on 57 held-out windows" in skill["message"], skill["message"]
    # the smoke profile of the reference notebook must stay well inside CI's budget
    assert result["execution"]["duration_s"] < 120


@pytest.mark.notebook
def test_the_blank_template_gets_zero_implementation_with_not_implemented_messages(tmp_path):
    from grader.pipeline import grade_submission

    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out", _options())
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation" and check["visibility"] == "public":
            assert check["status"] == "fail" and "not implemented" in check["message"], check
    assert result["bonus"] == 0 and result["score"] == 0


def _miniature_series(folder: Path, rows: int = 90) -> Path:
    """A seasonal series (period 12, noise) in the course's layout: timeseries.csv with date,value."""
    file, date_column, value_column = series_config()
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(rows, generator=generator)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / file, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([date_column, value_column])
        for t in range(rows):
            value = 50 + 30 * math.sin(2 * math.pi * t / 12) + 3 * float(noise[t])
            writer.writerow([f"2020-{t // 28 + 1:02d}-{t % 28 + 1:02d}", f"{value:.3f}"])
    return folder


@pytest.mark.notebook
def test_the_full_profile_reads_a_mounted_data_dir_in_the_real_layout(tmp_path):
    from grader.pipeline import grade_submission

    data = _miniature_series(tmp_path / "data")
    result = grade_submission(SOLUTION, tmp_path / "out", _options(profile="full", data_dir=data))
    assert result["status"] == "graded", result.get("reason")
    by_id = {c["id"]: c for c in result["checks"]}
    assert {c: by_id[c]["status"] for c in IMPLEMENTATION | BONUS} == {c: "pass" for c in IMPLEMENTATION | BONUS}
    # the judge's own windows come from the mounted series (90 rows: 13 held-out windows), with the full
    # profile's threshold
    skill = by_id["exp-forecast-skill"]
    assert skill["status"] == "pass", skill["message"]
    assert "on 13 held-out windows" in skill["message"] and "< 0.95" in skill["message"], skill["message"]
    # the submitted tables were made with the smoke profile on the sunspots: not what this run wrote
    assert by_id["exp-forecast-table"]["status"] == "fail"
    assert "does not match the grader's run" in by_id["exp-gradient-flow"]["message"]
