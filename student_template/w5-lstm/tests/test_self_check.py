"""자가 점검 / Self-check for w5-lstm.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
실행한 뒤, 정답 없이도 확인할 수 있는 성질을 검사합니다: 같은 가중치에서 PyTorch의
`nn.LSTMCell`/`nn.LSTM`/`nn.GRUCell`과의 일치(그래디언트 포함), 게이트 활성값의 범위,
`clip_grad_norm_`과 같은 클리핑, 예측기의 출력 모양. 통과해도 만점이 보장되지는 않습니다:
채점기는 다른(비공개) 입력과 학습된 모델의 예측 오차를 씁니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) and checks properties that need no reference solution: agreement with
PyTorch's `nn.LSTMCell` / `nn.LSTM` / `nn.GRUCell` given the same weights (gradients included),
gate activations in range, clipping equal to `clip_grad_norm_`, the forecaster's output shapes.
Passing does not guarantee full marks: the grader uses other (private) inputs and measures the
forecasting error of your trained model itself.

Another notebook can be checked with SELF_CHECK_NOTEBOOK=path/to/notebook.ipynb.
"""

from __future__ import annotations

import linecache
import os
import re
from pathlib import Path

import nbformat
import pytest
import torch

NOTEBOOK = Path(os.environ.get("SELF_CHECK_NOTEBOOK")
                or Path(__file__).resolve().parents[1] / "lstm_implementation.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
TOL = {"atol": 1e-5, "rtol": 1e-4}
ANSWER_KEYS = {
    "lstm_cell_params": "number", "gru_cell_params": "number", "bilstm_params": "number", "clip_scale": "number",
    "cell_gradient": "choice", "forget_bias": "choice",
}
I, H = 5, 7


# -----------------------------------------------------------------------------
# Loading the notebook


class NotebookNamespace:
    """The globals left by the notebook's cells, with a short repr for pytest's reports."""

    def __init__(self, namespace: dict) -> None:
        self._namespace = namespace

    def get(self, name: str, default=None):
        return self._namespace.get(name, default)

    def __repr__(self) -> str:
        return f"<globals of {NOTEBOOK.name}>"


@pytest.fixture(scope="module")
def nb() -> NotebookNamespace:
    """The namespace left by running the notebook's non-experiment code cells (PROFILE forced to smoke)."""
    if not NOTEBOOK.is_file():
        pytest.fail(f"노트북이 없습니다: {NOTEBOOK} / notebook not found: {NOTEBOOK} "
                    "(keep lstm_implementation.ipynb next to the tests/ folder)")
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    namespace: dict = {"__name__": "__self_check__"}
    os.environ.setdefault("MPLBACKEND", "Agg")
    previous_dir = os.getcwd()
    os.chdir(NOTEBOOK.parent)
    try:
        for position, cell in enumerate(notebook.cells, start=1):
            if cell.cell_type != "code" or SKIPPED_TAG in cell.metadata.get("tags", []):
                continue
            source = "\n".join("# " + line if MAGIC.match(line) else line for line in cell.source.splitlines())
            filename = f"<notebook cell {position}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # readable tracebacks
            try:
                exec(compile(source, filename, "exec"), namespace)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - any error of the student's cell is reported
                pytest.fail(f"노트북 셀 {position}이(가) 실행 중 오류를 냈습니다 / notebook cell {position} raised "
                            f"{type(exc).__name__}: {exc}. 위에서부터 끝까지 실행되도록 고치세요 / make the notebook "
                            "run top to bottom (experiment cells excluded).")
            if "parameters" in cell.metadata.get("tags", []):
                namespace["PROFILE"] = "smoke"
    finally:
        os.chdir(previous_dir)
    return NotebookNamespace(namespace)


def student(nb: NotebookNamespace, name: str, optional: bool = False):
    """The student's class or function ``name``; calling it (or anything built from it, through
    ``run``) turns NotImplementedError into a clear failure, or a skip for a bonus."""
    target = nb.get(name)
    if not callable(target):
        pytest.fail(f"{name}이(가) 노트북에 없습니다 / no {name} in the notebook: keep the template's names and signatures.")
    return lambda *args, **kwargs: run(name, target, *args, optional=optional, **kwargs)


def run(name: str, fn, *args, optional: bool = False, **kwargs):
    """fn(*args, **kwargs), with NotImplementedError reported as 'not implemented yet' (or skipped)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        pass  # reported below, outside the except block, without the chained traceback
    if optional:
        pytest.skip(f"{name}: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
    pytest.fail(f"{name}: 아직 구현되지 않았습니다 (NotImplementedError) — raise 줄을 지우고 구현하세요. / "
                f"{name} is not implemented yet (NotImplementedError): replace the raise with your code.")


def assert_close(actual, expected, what, fix):
    """torch.testing.assert_close with a bilingual message: what is compared and what to fix."""
    assert isinstance(actual, torch.Tensor), f"{what}: 텐서가 아닙니다 / not a tensor: {type(actual).__name__}"
    assert actual.shape == expected.shape, (
        f"{what}: 모양 {tuple(actual.shape)} != 기대 {tuple(expected.shape)} / shape "
        f"{tuple(actual.shape)} != expected {tuple(expected.shape)}. {fix}")
    try:
        torch.testing.assert_close(actual.detach().double(), expected.detach().double(), **TOL)
    except AssertionError as err:
        raise AssertionError(f"{what}: 값이 다릅니다 / values differ. {fix}\n{err}") from None


def copy_weights(mine, theirs, names):
    """Copy theirs' parameters into mine: {my parameter name: their parameter name}."""
    own, other = dict(mine.named_parameters()), dict(theirs.named_parameters())
    with torch.no_grad():
        for my_name, their_name in names.items():
            assert my_name in own, (f"{type(mine).__name__}에 파라미터 {my_name}이(가) 없습니다 / {type(mine).__name__} "
                                    f"has no parameter {my_name}: keep the template's parameter names")
            assert own[my_name].shape == other[their_name].shape, (
                f"{my_name}: 모양 {tuple(own[my_name].shape)} != {tuple(other[their_name].shape)} / shape "
                f"{tuple(own[my_name].shape)}, expected {tuple(other[their_name].shape)} (the layout of torch)")
            own[my_name].copy_(other[their_name])


CELL = {n: n for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def torch_cell(cls, seed):
    torch.manual_seed(seed)
    cell = cls(I, H)
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-0.8, 0.8)  # larger than the default init: every gate matters
    return cell


def inputs(seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


# -----------------------------------------------------------------------------
# LSTMCell


def test_lstm_cell_matches_pytorch(nb):
    reference = torch_cell(torch.nn.LSTMCell, 0)
    mine = student(nb, "LSTMCell")(I, H)
    copy_weights(mine, reference, CELL)
    x, h, c = inputs(1, (4, I), (4, H), (4, H))
    h_next, c_next = run("LSTMCell.forward", mine, x, h, c)
    h_ref, c_ref = reference(x, (h, c))
    fix = ("게이트 순서 i, f, g, o와 c' = f*c + i*g, h' = o*tanh(c')를 확인하세요. / Check the gate order i, f, g, o, "
           "c' = f*c + i*g and h' = o*tanh(c').")
    assert_close(h_next, h_ref, "LSTMCell h'", fix)
    assert_close(c_next, c_ref, "LSTMCell c'", fix)


def test_lstm_cell_zero_state_by_default(nb):
    reference = torch_cell(torch.nn.LSTMCell, 2)
    mine = student(nb, "LSTMCell")(I, H)
    copy_weights(mine, reference, CELL)
    (x,) = inputs(3, (3, I))
    h_next, c_next = run("LSTMCell.forward", mine, x)
    h_ref, c_ref = reference(x)
    fix = "h, c가 None이면 0으로 시작하세요. / h or c of None means zeros."
    assert_close(h_next, h_ref, "LSTMCell h' (no state given)", fix)
    assert_close(c_next, c_ref, "LSTMCell c' (no state given)", fix)


def test_lstm_cell_gradients_match_pytorch(nb):
    reference = torch_cell(torch.nn.LSTMCell, 4)
    mine = student(nb, "LSTMCell")(I, H)
    copy_weights(mine, reference, CELL)
    x, h, c, wh, wc = inputs(5, (4, I), (4, H), (4, H), (4, H), (4, H))
    mine_in = [t.clone().requires_grad_(True) for t in (x, h, c)]
    ref_in = [t.clone().requires_grad_(True) for t in (x, h, c)]
    h_next, c_next = run("LSTMCell.forward", mine, *mine_in)
    ((h_next * wh).sum() + (c_next * wc).sum()).backward()
    h_ref, c_ref = reference(ref_in[0], (ref_in[1], ref_in[2]))
    ((h_ref * wh).sum() + (c_ref * wc).sum()).backward()
    fix = ("autograd가 전체 계산을 보게 하세요: .detach(), .data, 제자리 수정 금지. / Let autograd see the whole "
           "computation: no .detach(), .data or in-place edits.")
    for name, a, b in zip(("x", "h", "c"), mine_in, ref_in):
        assert a.grad is not None, f"d loss / d {name}: 그래디언트가 없습니다 / no gradient reached {name}. {fix}"
        assert_close(a.grad, b.grad, f"gradient with respect to {name}", fix)
    own = dict(mine.named_parameters())
    for name, p in reference.named_parameters():
        assert own[name].grad is not None, f"{name}: 그래디언트가 없습니다 / no gradient. {fix}"
        assert_close(own[name].grad, p.grad, f"gradient with respect to {name}", fix)


def test_gate_activations_are_in_range_and_consistent_with_forward(nb):
    mine = student(nb, "LSTMCell")(I, H)
    with torch.no_grad():
        for p in mine.parameters():
            p.mul_(8.0)  # large pre-activations: a wrong squashing function leaves its range
    x, h, c = inputs(6, (5, I), (5, H), (5, H))
    with torch.no_grad():
        gates = run("LSTMCell.gate_activations", mine.gate_activations, x, h)
        assert isinstance(gates, (tuple, list)) and len(gates) == 4, (
            "gate_activations는 (i, f, g, o) 네 값을 돌려줘야 합니다 / gate_activations must return (i, f, g, o)")
        i, f, g, o = gates
        for name, value, low in (("i", i, 0.0), ("f", f, 0.0), ("g", g, -1.0), ("o", o, 0.0)):
            assert value.shape == (5, H), f"gate {name}: 모양 / shape {tuple(value.shape)}, expected (5, {H})"
            assert bool(((value >= low) & (value <= 1.0)).all()), (
                f"gate {name}: 값이 [{low:g}, 1] 밖에 있습니다 / values outside [{low:g}, 1]: i, f, o는 sigmoid, g는 tanh. "
                f"/ i, f, o use sigmoid, g uses tanh.")
        h_next, c_next = run("LSTMCell.forward", mine, x, h, c)
        assert_close(c_next, f * c + i * g, "c' from the gates", "c' = f*c + i*g")
        assert_close(h_next, o * torch.tanh(c_next), "h' from the gates", "h' = o*tanh(c')")


# -----------------------------------------------------------------------------
# LSTM (one or two directions)


def torch_lstm(bidirectional, seed):
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(I, H, batch_first=True, bidirectional=bidirectional)
    with torch.no_grad():
        for p in lstm.parameters():
            p.uniform_(-0.8, 0.8)
    names = {f"cell.{n}": f"{n}_l0" for n in CELL}
    if bidirectional:
        names.update({f"cell_reverse.{n}": f"{n}_l0_reverse" for n in CELL})
    return lstm, names


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_matches_pytorch(nb, bidirectional, with_state):
    reference, names = torch_lstm(bidirectional, 7)
    mine = student(nb, "LSTM")(I, H, bidirectional=bidirectional)
    copy_weights(mine, reference, names)
    d = 2 if bidirectional else 1
    x, h0, c0 = inputs(8, (3, 6, I), (d, 3, H), (d, 3, H))
    args = (x, h0, c0) if with_state else (x,)
    result = run("LSTM.forward", mine, *args)
    assert isinstance(result, (tuple, list)) and len(result) == 3, (
        "LSTM.forward는 (output, h_n, c_n)을 돌려줘야 합니다 / LSTM.forward must return (output, h_n, c_n)")
    out_ref, (h_ref, c_ref) = reference(x, (h0, c0)) if with_state else reference(x)
    fix = ("역방향은 T-1..0 순서로 읽고 출력을 원래 순서로 되돌린 뒤 [정방향, 역방향]으로 이어 붙이세요; h0[0]은 정방향, h0[1]은 "
           "역방향. / The reverse direction reads T-1..0; put its outputs back in time order and concatenate "
           "[forward, reverse]; h0[0] starts the forward pass, h0[1] the reverse one.")
    label = f"LSTM(bidirectional={bidirectional}, initial state={'given' if with_state else 'zeros'})"
    assert_close(result[0], out_ref, f"{label} output", fix)
    assert_close(result[1], h_ref, f"{label} h_n", fix)
    assert_close(result[2], c_ref, f"{label} c_n", fix)


# -----------------------------------------------------------------------------
# Gradient clipping


@pytest.mark.parametrize("scale", [1.0, 0.02])
def test_clip_gradients_matches_clip_grad_norm(nb, scale):
    clip = student(nb, "clip_gradients")
    grads = [t * scale for t in inputs(9, (4, 3), (5,), (2, 2, 2))]
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    expected_total = torch.nn.utils.clip_grad_norm_(params, 1.0)
    result = clip(*[g.clone() for g in grads], max_norm=1.0)
    assert isinstance(result, (tuple, list)) and len(result) == 4, (
        "clip_gradients는 (total_norm, *clipped)를 돌려줘야 합니다 / clip_gradients must return (total_norm, *clipped)")
    fix = ("전체 노름 하나로 min(1, max_norm / (total + 1e-6))을 모든 그래디언트에 곱하세요. / Multiply every gradient by "
           "min(1, max_norm / (total + 1e-6)) from one global norm.")
    assert_close(torch.as_tensor(result[0]).reshape(()), expected_total, "total norm (before clipping)", fix)
    for k, (mine, p) in enumerate(zip(result[1:], params)):
        assert_close(mine, p.grad, f"clipped gradient {k}", fix)


# -----------------------------------------------------------------------------
# The forecaster


@pytest.mark.parametrize("bidirectional", [False, True])
def test_forecaster_shapes(nb, bidirectional):
    model = student(nb, "LSTMForecaster")(input_size=1, hidden_size=8, horizon=4, bidirectional=bidirectional)
    assert isinstance(getattr(model, "lstm", None), nb.get("LSTM")), (
        "LSTMForecaster는 여러분의 LSTM을 self.lstm에 두어야 합니다 / keep your LSTM as self.lstm")
    (x,) = inputs(10, (3, 11, 1))
    out = run("LSTMForecaster.forward", model, x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 4), (
        f"LSTMForecaster(horizon=4)(x (3, 11, 1))의 모양은 (3, 4)여야 합니다 / must have shape (3, 4), got "
        f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    changed = x.clone()
    changed[1] += 1.0
    other = run("LSTMForecaster.forward", model, changed)
    assert torch.allclose(out[[0, 2]], other[[0, 2]], atol=1e-6), (
        "한 예제만 바꿨는데 다른 예제의 예측이 바뀌었습니다 / changing one example changed the others' forecasts: "
        "do not mix the batch")


def test_answers_are_filled(nb):
    answers = nb.get("ANSWERS")
    assert isinstance(answers, dict), "ANSWERS 딕셔너리가 없습니다 / no ANSWERS dict in the notebook"
    for key, kind in ANSWER_KEYS.items():
        value = answers.get(key)
        assert value is not None, f"ANSWERS[{key!r}]를 채우세요 / fill in ANSWERS[{key!r}] (it is None)"
        if kind == "number":
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (
                f"ANSWERS[{key!r}]는 숫자여야 합니다 / ANSWERS[{key!r}] must be a number, got {value!r}")
        else:
            assert value in ("a", "b", "c", "d"), (
                f"ANSWERS[{key!r}]는 'a'..'d' 중 하나 / ANSWERS[{key!r}] must be one of 'a'..'d', got {value!r}")


# -----------------------------------------------------------------------------
# Bonus (skipped while they raise NotImplementedError)


def test_bonus_gru_cell_matches_pytorch(nb):
    reference = torch_cell(torch.nn.GRUCell, 11)
    mine = student(nb, "GRUCell")(I, H)
    copy_weights(mine, reference, CELL)
    x, h = inputs(12, (4, I), (4, H))
    h_next = run("GRUCell.forward", mine, x, h, optional=True)
    assert_close(h_next, reference(x, h), "GRUCell h'",
                 "게이트 순서 r, z, n; n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h' = (1-z)*n + z*h. / Gates r, z, n; "
                 "n = tanh(W_in x + b_in + r*(W_hn h + b_hn)); h' = (1-z)*n + z*h.")


def test_bonus_attention_weights_sum_to_one(nb):
    model = student(nb, "AttentionLSTM", optional=True)(input_size=1, hidden_size=8, horizon=4)
    (x,) = inputs(13, (3, 9, 1))
    result = run("AttentionLSTM.forward", model, x, optional=True)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        "AttentionLSTM은 (forecast, weights)를 돌려줘야 합니다 / AttentionLSTM must return (forecast, weights)")
    forecast, weights = result
    assert forecast.shape == (3, 4) and weights.shape == (3, 9), (
        f"모양 / shapes {tuple(forecast.shape)}, {tuple(weights.shape)}; expected (3, 4), (3, 9)")
    assert bool((weights >= 0).all()) and torch.allclose(weights.sum(-1), torch.ones(3), atol=1e-5), (
        "어텐션 가중치는 0 이상이고 예제마다 합이 1이어야 합니다 / attention weights must be >= 0 and sum to 1 per example")


def test_bonus_vae_shapes_and_loss(nb):
    model = student(nb, "LSTMVAE", optional=True)(input_size=1, hidden_size=8, latent_size=3)
    model.eval()
    (x,) = inputs(14, (4, 10, 1))
    recon, mu, logvar = run("LSTMVAE.forward", model, x, optional=True)
    assert recon.shape == (4, 10, 1) and mu.shape == (4, 3) and logvar.shape == (4, 3), (
        "LSTMVAE.forward -> (reconstruction (B, T, I), mu (B, Z), logvar (B, Z))")
    again = run("LSTMVAE.forward", model, x, optional=True)[0]
    assert torch.allclose(recon, again), "eval 모드에서는 z = mu (결정적) / in eval mode z = mu (deterministic)"
    samples = run("LSTMVAE.generate", model.generate, 2, 5, optional=True)
    assert samples.shape == (2, 5, 1), f"generate(2, 5)의 모양 / shape {tuple(samples.shape)}, expected (2, 5, 1)"
    r, t, m, lv = inputs(15, (4, 10, 1), (4, 10, 1), (4, 3), (4, 3))
    loss, reconstruction, kl = run("vae_loss", student(nb, "vae_loss", optional=True), r, t, m, lv, optional=True)
    expected_recon = ((r - t) ** 2).sum() / 4
    expected_kl = -0.5 * (1 + lv - m ** 2 - lv.exp()).sum() / 4
    fix = "제곱 오차 합과 KL, 둘 다 배치 평균. / The summed squared error and the KL, both averaged over the batch."
    assert_close(reconstruction, expected_recon, "vae_loss reconstruction", fix)
    assert_close(kl, expected_kl, "vae_loss kl", fix)
    assert_close(loss, expected_recon + expected_kl, "vae_loss loss", fix)
