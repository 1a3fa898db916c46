"""자가 점검 / Self-check for w7-positional.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
실행한 뒤, 정답 없이도 확인할 수 있는 성질(논문의 공식, 파라미터 이름과 모양, 이동 불변성, 회전의
노름 보존과 상대 위치 성질, PyTorch 내장 어텐션과의 일치)을 검사합니다. 통과해도 만점이 보장되지는
않습니다: 채점기는 다른(비공개) 입력으로 검사합니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) and checks properties that need no reference solution: the papers' formulas,
parameter names and shapes, shift invariance, RoPE's norm preservation and relative property,
agreement with PyTorch's built-in attention. Passing does not guarantee full marks: the grader uses
other (private) inputs.

Another notebook can be checked with SELF_CHECK_NOTEBOOK=path/to/notebook.ipynb.
"""

from __future__ import annotations

import linecache
import math
import os
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

NOTEBOOK = Path(os.environ.get("SELF_CHECK_NOTEBOOK")
                or Path(__file__).resolve().parents[1] / "positional_encoding_comparison.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
FP32 = {"atol": 1e-5, "rtol": 1e-4}
ANSWER_KINDS = {
    "pe_value": "number", "learned_params": "number", "relative_params": "number",
    "rope_dot": "choice", "extrapolation": "choice", "sin_linear": "choice",
}


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
                    "(keep positional_encoding_comparison.ipynb next to the tests/ folder)")
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
    """The student's function or class ``name``; NotImplementedError becomes a clear failure (or a skip)."""
    fn = nb.get(name)
    if not callable(fn):
        pytest.fail(f"{name}이(가) 노트북에 없습니다 / no function or class named {name} in the notebook: "
                    "keep the template's names and signatures.")

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            pass  # reported below, outside the except block, without the chained traceback
        if optional:
            pytest.skip(f"{name}: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
        pytest.fail(f"{name}: 아직 구현되지 않았습니다 (NotImplementedError) — raise 줄을 지우고 구현하세요. / "
                    f"{name} is not implemented yet (NotImplementedError): replace the raise with your code.")

    return call


def module(nb: NotebookNamespace, name: str, *args, optional: bool = False, **kwargs):
    """An instance of the student's nn.Module ``name``; its forward is wrapped the same way as a function."""
    instance = student(nb, name, optional)(*args, **kwargs)
    assert isinstance(instance, torch.nn.Module), f"{name}은(는) nn.Module이어야 합니다 / {name} must be an nn.Module"
    forward = instance.forward

    def guarded(*a, **k):
        try:
            return forward(*a, **k)
        except NotImplementedError:
            pass
        if optional:
            pytest.skip(f"{name}.forward: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
        pytest.fail(f"{name}.forward: 아직 구현되지 않았습니다 / not implemented yet (NotImplementedError)")

    instance.forward = guarded
    return instance


def assert_close(actual, expected, what, fix, tol=FP32):
    """torch.testing.assert_close with a bilingual message: what is compared and what to fix."""
    assert isinstance(actual, torch.Tensor), f"{what}: 텐서가 아닙니다 / not a tensor ({type(actual).__name__}). {fix}"
    assert actual.shape == expected.shape, (
        f"{what}: 모양 {tuple(actual.shape)} != 기대 {tuple(expected.shape)} / shape "
        f"{tuple(actual.shape)} != expected {tuple(expected.shape)}. {fix}")
    try:
        torch.testing.assert_close(actual.double(), expected.double(), equal_nan=False, **tol)
    except AssertionError as err:
        raise AssertionError(f"{what}: 값이 다릅니다 / values differ. {fix}\n{err}") from None


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def paper_sinusoid(max_len, d_model):
    """The paper's formula, in float64 (PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i), w_i = 10000^(-2i/d))."""
    p = torch.arange(max_len, dtype=torch.float64)[:, None]
    j = torch.arange(d_model)
    w = 10000.0 ** (-(2 * (j // 2)).double() / d_model)
    return torch.where(j % 2 == 0, torch.sin(p * w), torch.cos(p * w))


# -----------------------------------------------------------------------------
# Sinusoidal


@pytest.mark.parametrize("max_len,d_model", [(50, 16), (7, 4), (200, 10)])
def test_sinusoidal_is_the_papers_formula(nb, max_len, d_model):
    table = student(nb, "sinusoidal_encoding")(max_len, d_model)
    assert isinstance(table, torch.Tensor) and table.dtype == torch.float32, (
        "sinusoidal_encoding은 float32 텐서를 돌려줘야 합니다 / sinusoidal_encoding must return a float32 tensor")
    assert_close(table, paper_sinusoid(max_len, d_model), f"sinusoidal_encoding({max_len}, {d_model})",
                 "짝수 차원 2i에 sin, 홀수 차원 2i+1에 cos, 쌍 i의 주파수 10000^(-2i/d). / sin at even dimensions 2i, "
                 "cos at odd 2i+1, pair i's frequency 10000^(-2i/d).", tol={"atol": 1e-5, "rtol": 1e-5})


def test_sinusoidal_position_zero(nb):
    row = student(nb, "sinusoidal_encoding")(3, 8)[0]
    assert torch.equal(row, torch.tensor([0.0, 1.0] * 4)), (
        f"위치 0은 [sin 0, cos 0, ...] = [0, 1, 0, 1, ...]이어야 합니다 / position 0 must be [0, 1, 0, 1, ...] "
        f"(sin 0 = 0 at even, cos 0 = 1 at odd dimensions), got {row.tolist()}: sin과 cos이 바뀌지 않았나요? / "
        "are sin and cos swapped?")


# -----------------------------------------------------------------------------
# Learned


def test_learned_layout_and_forward(nb):
    layer = module(nb, "LearnedPositionalEncoding", 12, 6)
    params = dict(layer.named_parameters())
    assert set(params) == {"weight"} and tuple(params["weight"].shape) == (12, 6), (
        f"파라미터는 weight (max_len, d_model) = (12, 6) 하나여야 합니다 / exactly one parameter weight of shape "
        f"(12, 6); found {[(n, tuple(p.shape)) for n, p in params.items()]}")
    with torch.no_grad():
        params["weight"].copy_(randn(12, 6, seed=1))
    x = randn(3, 10, 6, seed=2)
    assert_close(layer(x), x + params["weight"][:10].detach(), "LearnedPositionalEncoding(x)",
                 "위치 t에 weight[t]를 더하세요 / add weight[t] at position t.")


def test_learned_beyond_max_len_reuses_the_last_row(nb):
    layer = module(nb, "LearnedPositionalEncoding", 5, 4)
    with torch.no_grad():
        layer.weight.copy_(randn(5, 4, seed=3))
    x = torch.zeros(2, 9, 4)
    try:
        out = layer(x)
    except (IndexError, RuntimeError) as exc:
        pytest.fail(f"T > max_len에서 예외: {exc} / raised for T > max_len: positions past the table must reuse its "
                    "last row (clamp the index), not raise.")
    expected = layer.weight.detach()[torch.arange(9).clamp(max=4)].expand(2, 9, 4)
    assert_close(out, expected, "LearnedPositionalEncoding past max_len",
                 "위치 t >= max_len은 weight[max_len - 1]을 씁니다 (clamp, wrap 아님). / position t >= max_len uses "
                 "weight[max_len - 1] (clamp, not wrap-around).")


# -----------------------------------------------------------------------------
# Relative


def test_relative_bias_layout_and_values(nb):
    layer = module(nb, "RelativePositionBias", 3, 4)
    params = dict(layer.named_parameters())
    assert set(params) == {"bias"} and tuple(params["bias"].shape) == (3, 9), (
        f"파라미터는 bias (num_heads, 2*max_distance + 1) = (3, 9) 하나여야 합니다 / exactly one parameter bias of "
        f"shape (3, 9); found {[(n, tuple(p.shape)) for n, p in params.items()]}")
    table = randn(3, 9, seed=4)
    with torch.no_grad():
        params["bias"].copy_(table)
    out = layer(5, 13)  # rectangular, with offsets beyond max_distance
    offset = (torch.arange(13)[None, :] - torch.arange(5)[:, None]).clamp(-4, 4) + 4
    assert_close(out, table[:, offset], "RelativePositionBias(5, 13)",
                 "out[h, i, j] = bias[h, clip(j - i, -D, D) + D]: 오프셋은 j - i (키 - 쿼리), D를 넘으면 가장자리 값. / "
                 "the offset is j - i (key minus query); beyond D use the edge values.")


def test_relative_bias_depends_on_the_offset_only(nb):
    layer = module(nb, "RelativePositionBias", 2, 6)
    with torch.no_grad():
        layer.bias.copy_(randn(2, 13, seed=5))
    out = layer(9, 9).detach()
    assert torch.equal(out[:, :-1, :-1], out[:, 1:, 1:]), (
        "편향은 j - i에만 의존해야 합니다: (i, j)와 (i+1, j+1)의 값이 같아야 합니다 / the bias must depend on j - i "
        "only: (i, j) and (i+1, j+1) must have the same value (shift invariance).")


def test_relative_attention_matches_pytorch(nb):
    attend = student(nb, "relative_attention")
    q, k, v = randn(2, 3, 7, 16, seed=6), randn(2, 3, 11, 16, seed=7), randn(2, 3, 11, 12, seed=8)
    bias = randn(3, 7, 11, seed=9) * 2
    result = attend(q, k, v, bias)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        "relative_attention은 (output, weights)를 돌려줘야 합니다 / relative_attention must return (output, weights)")
    out, weights = result
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), "relative_attention output",
                 "편향은 스케일한 점수에 softmax 전에 더합니다 / add the bias to the scaled scores, before the softmax.")
    assert_close(weights.sum(-1), torch.ones(2, 3, 7), "sum of each weights row",
                 "가중치 행의 합은 1 / each row of weights sums to 1 (softmax over the keys).")


# -----------------------------------------------------------------------------
# RoPE


def test_rope_keeps_shape_dtype_and_norms(nb):
    rope = student(nb, "apply_rope")
    x = randn(2, 3, 20, 8, seed=10)
    positions = torch.randint(0, 500, (20,), generator=torch.Generator().manual_seed(11))
    out = rope(x, positions=positions)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == x.dtype, (
        "apply_rope는 x와 같은 모양과 dtype을 돌려줘야 합니다 / apply_rope must return x's shape and dtype")
    assert_close(out.norm(dim=-1), x.norm(dim=-1), "norms after apply_rope",
                 "회전은 노름을 바꾸지 않습니다: 각 쌍에 같은 각도의 cos, sin을 쓰세요. / a rotation keeps norms: use the "
                 "cos and sin of the same angle for each pair.", tol={"atol": 1e-4, "rtol": 1e-4})


def test_rope_rotates_neighbouring_pairs(nb):
    rope = student(nb, "apply_rope")
    x = torch.zeros(1, 3, 4)
    x[..., 0] = 1.0  # e_0 at positions 0, 1, 2: pair 0 turns by m radians (theta_0 = 1), pair 1 stays 0
    out = rope(x)
    m = torch.arange(3.0)
    expected = torch.stack([m.cos(), m.sin(), torch.zeros(3), torch.zeros(3)], dim=-1)[None]
    assert_close(out, expected, "apply_rope(e_0) at positions 0, 1, 2",
                 "쌍은 이웃한 (2i, 2i+1)이고, 위치 m의 쌍 0은 m 라디안 회전: e_0 -> (cos m, sin m, 0, 0). / pairs are "
                 "neighbours (2i, 2i+1); pair 0 turns by m radians at position m: e_0 -> (cos m, sin m, 0, 0).")
    default = rope(randn(2, 6, 8, seed=12))
    assert_close(default, rope(randn(2, 6, 8, seed=12), positions=torch.arange(6)), "default positions",
                 "positions=None이면 0..T-1 / positions=None means 0..T-1.")


def test_rope_dot_product_depends_on_the_offset_only(nb):
    rope = student(nb, "apply_rope")
    q, k = randn(16, seed=13), randn(16, seed=14)
    n = torch.tensor([3, 40, 257, 3, 40, 257])
    m = n + torch.tensor([5, 5, 5, -2, -2, -2])
    dots = (rope(q.expand(6, 16).contiguous(), positions=m) * rope(k.expand(6, 16).contiguous(), positions=n)).sum(-1)
    fix = ("<R_m q, R_n k>는 m - n에만 의존합니다: 각 위치의 행을 그 위치의 각도로 회전하세요. / <R_m q, R_n k> "
           "depends on m - n only: rotate each row by its own position's angle.")
    loose = {"atol": 1e-3, "rtol": 1e-3}
    assert_close(dots[:3], dots[0].expand(3), "q.k at offset 5, three absolute positions", fix, tol=loose)
    assert_close(dots[3:], dots[3].expand(3), "q.k at offset -2, three absolute positions", fix, tol=loose)
    assert abs(float(dots[0] - dots[3])) > 1e-3, (
        "오프셋이 다르면 q.k도 달라야 합니다 (위치 정보) / different offsets must give different q.k (position "
        "information): is anything rotated?")


@pytest.mark.parametrize("causal", [False, True])
def test_rope_attention_rotates_queries_and_keys_only(nb, causal):
    rope = student(nb, "apply_rope")
    attend = student(nb, "rope_attention")
    q, k, v = randn(2, 2, 9, 16, seed=15), randn(2, 2, 9, 16, seed=16), randn(2, 2, 9, 12, seed=17)
    result = attend(q, k, v, causal=causal)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        "rope_attention은 (output, weights)를 돌려줘야 합니다 / rope_attention must return (output, weights)")
    expected = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=causal)
    what = f"rope_attention(causal={causal}) vs attention on your apply_rope(q), apply_rope(k)"
    assert_close(result[0], expected, what,
                 "q와 k만 회전하고 v는 그대로 두세요; causal이면 키 j <= i. / rotate q and k only, never v; with "
                 "causal=True, keys j <= i.", tol={"atol": 1e-4, "rtol": 1e-4})


# -----------------------------------------------------------------------------
# Theory answers


def test_answers_are_filled(nb):
    answers = nb.get("ANSWERS")
    assert isinstance(answers, dict), "ANSWERS 딕셔너리가 없습니다 / no ANSWERS dict in the notebook"
    for key, kind in ANSWER_KINDS.items():
        value = answers.get(key)
        assert value is not None, f"ANSWERS[{key!r}]를 채우세요 / fill in ANSWERS[{key!r}] (it is None)"
        if kind == "number":
            assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (
                f"ANSWERS[{key!r}]는 숫자여야 합니다 / ANSWERS[{key!r}] must be a number, got {value!r}")
        else:
            assert value in ("a", "b", "c", "d"), (
                f"ANSWERS[{key!r}]는 'a'..'d' 중 하나 / ANSWERS[{key!r}] must be one of 'a'..'d', got {value!r}")


# -----------------------------------------------------------------------------
# Bonus (skipped while they raise NotImplementedError)


def test_bonus_adaptive_encoding(nb):
    layer = module(nb, "AdaptivePositionalEncoding", 8, optional=True)
    params = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert params == {"gate.weight": (8, 8), "gate.bias": (8,)}, (
        f"파라미터는 gate = nn.Linear(d_model, d_model)이어야 합니다 / the parameters must be gate = "
        f"nn.Linear(d_model, d_model); found {params}")
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.bias.zero_()
    x = randn(2, 5, 8, seed=18)
    table = student(nb, "sinusoidal_encoding")(5, 8)
    assert_close(layer(x), x + 0.5 * table, "AdaptivePositionalEncoding with a zero gate",
                 "x + sigmoid(gate(x)) * PE: 게이트가 0이면 sigmoid(0) = 0.5 / with a zero gate, sigmoid(0) = 0.5.")


def test_bonus_compressed_encoding(nb):
    compress = student(nb, "compress_encoding", optional=True)
    table = randn(30, 12, seed=19)
    a, b = compress(table, 4)
    assert tuple(a.shape) == (30, 4) and tuple(b.shape) == (4, 12), (
        f"A (max_len, rank), B (rank, d)를 돌려주세요 / return A (max_len, rank) and B (rank, d); got "
        f"{tuple(a.shape)}, {tuple(b.shape)}")
    u, s, vh = torch.linalg.svd(table.double(), full_matrices=False)
    best = (u[:, :4] * s[:4]) @ vh[:4]
    assert_close(a.double() @ b.double(), best, "A @ B", "A @ B는 최적의 랭크 4 근사(잘린 SVD)여야 합니다 / A @ B "
                 "must be the best rank-4 approximation (truncated SVD).", tol={"atol": 1e-4, "rtol": 1e-4})
