"""자가 점검 / Self-check for w6-self-attention.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
실행한 뒤, 정답 없이도 확인할 수 있는 성질(PyTorch 내장 함수와의 일치, 가중치 행의 합, 마스크의
모양과 값, FP16 안정성, 청크 어텐션과 여러분의 기본 어텐션의 일치)을 검사합니다. 통과해도 만점이
보장되지는 않습니다: 채점기는 다른(비공개) 입력으로 검사합니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) and checks properties that need no reference solution: agreement with
PyTorch's built-in attention, weights that sum to 1, mask shapes and values, fp16 stability,
chunked attention equal to your own plain attention. Passing does not guarantee full marks: the
grader uses other (private) inputs.

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
import torch.nn.functional as F

NOTEBOOK = Path(os.environ.get("SELF_CHECK_NOTEBOOK")
                or Path(__file__).resolve().parents[1] / "self_attention_optimized.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
FP32 = {"atol": 1e-5, "rtol": 1e-4}
FP16 = {"atol": 3e-2, "rtol": 3e-2}
ANSWER_KEYS = {
    "attn_matrix_mib": "number", "chunk_scores_mib": "number", "fp16_max": "number",
    "complexity": "choice", "scale_reason": "choice", "linear_complexity": "choice",
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
                    "(keep self_attention_optimized.ipynb next to the tests/ folder)")
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
    """The student's function ``name``; calling it turns NotImplementedError into a clear failure (or a skip)."""
    fn = nb.get(name)
    if not callable(fn):
        pytest.fail(f"함수 {name}이(가) 노트북에 없습니다 / no function named {name} in the notebook: "
                    "keep the template's function names and signatures.")

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


def qkv(B=2, H=3, Tq=7, Tk=11, d=16, dv=12, scale=1.0, dtype=torch.float32, seed=0):
    """Random q (B, H, Tq, d), k (B, H, Tk, d), v (B, H, Tk, dv)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Tq, d, generator=g) * scale
    k = torch.randn(B, H, Tk, d, generator=g) * scale
    v = torch.randn(B, H, Tk, dv, generator=g)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def attention_pair(result, name="scaled_dot_product_attention"):
    """Check that ``result`` is ``(output, weights)`` and return it."""
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        f"{name}는 (output, weights) 두 값을 돌려줘야 합니다 / {name} must return the pair (output, weights)")
    return result


def assert_close(actual, expected, what, fix, tol=FP32):
    """torch.testing.assert_close with a bilingual message: what is compared and what to fix."""
    assert actual.shape == expected.shape, (
        f"{what}: 모양 {tuple(actual.shape)} != 기대 {tuple(expected.shape)} / shape "
        f"{tuple(actual.shape)} != expected {tuple(expected.shape)}. {fix}")
    try:
        torch.testing.assert_close(actual.float(), expected.float(), equal_nan=False, **tol)
    except AssertionError as err:
        raise AssertionError(f"{what}: 값이 다릅니다 / values differ. {fix}\n{err}") from None


# -----------------------------------------------------------------------------
# scaled_dot_product_attention


def test_sdpa_matches_pytorch_without_mask(nb):
    sdpa = student(nb, "scaled_dot_product_attention")
    q, k, v = qkv()
    out, weights = attention_pair(sdpa(q, k, v))
    assert_close(out, F.scaled_dot_product_attention(q, k, v), "output (no mask)",
                 "softmax(QK^T / sqrt(d)) V 를 확인하세요: sqrt(d)로 나누기, 키 축(마지막 축)에 대한 softmax. / "
                 "Check softmax(QK^T / sqrt(d)) V: divide by sqrt(d) and take the softmax over the key axis (the last one).")
    assert weights.shape == (2, 3, 7, 11), (
        f"weights 모양은 (B, H, Tq, Tk)여야 합니다 / weights must have shape (B, H, Tq, Tk) = (2, 3, 7, 11), "
        f"got {tuple(weights.shape)}")
    assert weights.dtype == torch.float32, "weights는 float32로 돌려주세요 / return the weights in float32"
    assert out.dtype == q.dtype, "출력은 q.dtype으로 돌려주세요 / return the output in q.dtype"


def test_sdpa_matches_pytorch_with_bool_mask(nb):
    sdpa = student(nb, "scaled_dot_product_attention")
    q, k, v = qkv(seed=1)
    mask = torch.rand(2, 1, 7, 11, generator=torch.Generator().manual_seed(2)) > 0.3
    mask[..., 0] = True  # no fully masked row here
    out, weights = attention_pair(sdpa(q, k, v, mask=mask))
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "output with a bool mask",
                 "불리언 마스크는 True = 허용: False인 곳의 점수를 softmax 전에 -inf로. / A bool mask is True where "
                 "attention is allowed: set the scores where it is False to -inf before the softmax.")
    assert torch.all(weights.masked_select(~mask.expand_as(weights)) == 0), (
        "마스킹된 위치의 가중치는 정확히 0이어야 합니다 / masked positions must get weight exactly 0")


def test_sdpa_matches_pytorch_with_additive_mask(nb):
    sdpa = student(nb, "scaled_dot_product_attention")
    q, k, v = qkv(seed=3)
    g = torch.Generator().manual_seed(4)
    additive = torch.rand(2, 3, 7, 11, generator=g) * -4.0
    additive[torch.rand(2, 3, 7, 11, generator=g) < 0.2] = float("-inf")
    additive[..., 0] = 0.0
    out, _ = attention_pair(sdpa(q, k, v, mask=additive))
    assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=additive), "output with a float mask",
                 "실수 마스크는 스케일된 점수에 더하세요 (-inf 포함). / Add a float mask to the scaled scores "
                 "(it may contain -inf).")


def test_sdpa_weights_rows_sum_to_one(nb):
    sdpa = student(nb, "scaled_dot_product_attention")
    q, k, v = qkv(seed=5)
    mask = torch.ones(7, 11, dtype=torch.bool).tril()
    _, weights = attention_pair(sdpa(q, k, v, mask=mask))
    sums = weights.float().sum(dim=-1)
    assert_close(sums, torch.ones_like(sums), "sum of each weights row",
                 "각 쿼리의 가중치(마지막 축)의 합은 1이어야 합니다: softmax 축을 확인하세요. / Each query's weights "
                 "(last axis) must sum to 1: check the softmax axis.")
    assert bool((weights >= 0).all()), "가중치는 음수가 될 수 없습니다 / weights cannot be negative"


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_fully_masked_row_gives_zeros(nb, kind):
    sdpa = student(nb, "scaled_dot_product_attention")
    q, k, v = qkv(seed=6)
    allowed = torch.ones(2, 1, 7, 11, dtype=torch.bool)
    allowed[:, :, 0] = False  # query 0 sees no key
    allowed[1, :, 4, 3:] = False  # query 4 of batch 1 sees keys 0..2 only
    mask = allowed if kind == "bool" else torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    out, weights = attention_pair(sdpa(q, k, v, mask=mask))
    fix = ("모든 키가 막힌 행은 NaN이 아니라 0을 돌려주세요 (-inf 행의 softmax는 NaN). / A query whose keys are all "
           "masked must give zeros, not NaN (softmax of a row of -inf is NaN).")
    assert torch.isfinite(out.float()).all() and torch.isfinite(weights.float()).all(), f"NaN/inf in the result. {fix}"
    assert_close(out[:, :, 0], torch.zeros_like(out[:, :, 0]), "output of the fully masked row", fix)
    assert_close(weights[:, :, 0], torch.zeros_like(weights[:, :, 0]), "weights of the fully masked row", fix)
    assert_close(out[:, :, 1:], F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)[:, :, 1:],
                 "the other rows", "나머지 행은 평소대로 계산되어야 합니다 / the other rows must be ordinary attention.")


def test_sdpa_fp16_large_inputs_stay_finite(nb):
    sdpa = student(nb, "scaled_dot_product_attention")
    q, k, v = qkv(B=1, H=2, Tq=24, Tk=24, d=16, dv=16, scale=6.0, dtype=torch.float16, seed=7)
    out, _ = attention_pair(sdpa(q, k, v))
    fix = ("점수와 softmax를 float32로 계산하고 행의 최댓값을 빼세요 (FP16에서는 exp가 금방 inf가 됩니다). / Compute "
           "the scores and the softmax in float32 and subtract the row maximum (in fp16, exp quickly overflows to inf).")
    assert torch.isfinite(out.float()).all(), f"FP16 입력에서 NaN/inf가 나왔습니다 / NaN/inf on fp16 inputs. {fix}"
    assert out.dtype == torch.float16, "FP16 입력이면 출력도 float16이어야 합니다 / fp16 inputs: return a float16 output"
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert_close(out, expected, "output on fp16 inputs", fix, tol=FP16)


# -----------------------------------------------------------------------------
# chunked_attention


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 11, 64])
def test_chunked_equals_own_attention(nb, chunk_size):
    sdpa = student(nb, "scaled_dot_product_attention")
    chunked = student(nb, "chunked_attention")
    q, k, v = qkv(seed=8)  # Tk = 11: chunk sizes 4 and 5 leave a shorter last chunk
    out = chunked(q, k, v, chunk_size=chunk_size)
    expected, _ = attention_pair(sdpa(q, k, v))
    assert_close(out, expected, f"chunked_attention(chunk_size={chunk_size}) vs your scaled_dot_product_attention",
                 "온라인 소프트맥스: 최댓값이 바뀔 때 합과 누적값을 exp(m_old - m_new)로 다시 스케일하고, Tk가 "
                 "chunk_size의 배수가 아니면 마지막 짧은 청크도 처리하세요 (range(0, Tk, chunk_size)). / Online softmax: "
                 "rescale the sum and the accumulator by exp(m_old - m_new) when the max grows, and keep the shorter last "
                 "chunk when Tk is not a multiple of chunk_size (range(0, Tk, chunk_size)).")


def test_chunked_with_mask_equals_own_attention(nb):
    sdpa = student(nb, "scaled_dot_product_attention")
    chunked = student(nb, "chunked_attention")
    q, k, v = qkv(seed=9)
    mask = torch.rand(2, 1, 7, 11, generator=torch.Generator().manual_seed(10)) > 0.4
    mask[:, :, 2] = False  # a fully masked row
    out = chunked(q, k, v, mask=mask, chunk_size=4)
    expected, _ = attention_pair(sdpa(q, k, v, mask=mask))
    assert torch.isfinite(out).all(), ("모든 키가 막힌 행에서 NaN이 나옵니다 / NaN on a fully masked row: a row that saw "
                                       "no allowed key must give zeros.")
    assert_close(out, expected, "chunked_attention with a mask vs your scaled_dot_product_attention",
                 "마스크를 (B, H, Tq, Tk)로 브로드캐스트한 뒤 청크마다 키 축을 잘라 쓰세요. / Broadcast the mask to "
                 "(B, H, Tq, Tk) and slice its key axis for each chunk.")


def test_chunked_fp16_stays_finite(nb):
    chunked = student(nb, "chunked_attention")
    q, k, v = qkv(B=1, H=2, Tq=20, Tk=20, d=16, dv=16, scale=6.0, dtype=torch.float16, seed=11)
    out = chunked(q, k, v, chunk_size=8)
    assert torch.isfinite(out.float()).all() and out.dtype == torch.float16, (
        "FP16 입력에서도 유한한 float16 출력을 내야 합니다: 누적은 float32로. / fp16 inputs must give a finite float16 "
        "output: accumulate in float32.")
    assert_close(out, F.scaled_dot_product_attention(q.float(), k.float(), v.float()), "chunked output on fp16 inputs",
                 "float32로 계산하고 마지막에 q.dtype으로 캐스팅하세요 / compute in float32, cast to q.dtype at the end",
                 tol=FP16)


# -----------------------------------------------------------------------------
# Masks


def test_causal_mask(nb):
    mask = student(nb, "causal_mask")(6)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.shape == (6, 6), (
        "causal_mask(T)는 bool 텐서 (T, T)를 돌려줘야 합니다 / causal_mask(T) must return a bool tensor of shape (T, T)")
    i, j = torch.arange(6)[:, None], torch.arange(6)[None, :]
    assert torch.equal(mask, j <= i), (
        "쿼리 i는 키 j <= i만 볼 수 있습니다 (대각선 포함, torch.tril). / Query i may attend to keys j <= i "
        "(the diagonal included, torch.tril).")


@pytest.mark.parametrize("as_list", [False, True])
def test_padding_mask(nb, as_list):
    lengths = [3, 0, 5] if as_list else torch.tensor([3, 0, 5])
    mask = student(nb, "padding_mask")(lengths, 5)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool, (
        "padding_mask는 bool 텐서를 돌려줘야 합니다 / padding_mask must return a bool tensor")
    assert tuple(mask.shape) == (3, 1, 1, 5), (
        f"모양은 (B, 1, 1, max_len)이어야 합니다 (패딩은 키를 가림) / shape must be (B, 1, 1, max_len) = (3, 1, 1, 5): "
        f"padding hides KEYS; got {tuple(mask.shape)}")
    expected = (torch.arange(5)[None, :] < torch.tensor([3, 0, 5])[:, None]).view(3, 1, 1, 5)
    assert torch.equal(mask, expected), "위치 < lengths[b]에서 True / True at positions < lengths[b]"


def test_combine_masks_boolean(nb):
    combine = student(nb, "combine_masks")
    pad = (torch.arange(5)[None, :] < torch.tensor([5, 3])[:, None]).view(2, 1, 1, 5)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    combined = combine(pad, None, causal)
    assert isinstance(combined, torch.Tensor) and combined.dtype == torch.bool, (
        "불리언 마스크만 결합하면 bool 텐서여야 합니다 (None은 무시) / combining only boolean masks gives a bool "
        "tensor (None entries are ignored)")
    assert torch.equal(combined.expand(2, 1, 5, 5), pad & causal), (
        "불리언 마스크는 AND(브로드캐스트)로 결합합니다 / boolean masks combine with a broadcast AND")
    assert combine(None, None) is None, "모두 None이면 None을 돌려주세요 / all None -> return None"


def test_combine_masks_with_float(nb):
    combine = student(nb, "combine_masks")
    allowed = torch.ones(4, 4, dtype=torch.bool).tril()
    bias = -0.5 * torch.arange(4.0)[None, :].expand(4, 4)
    combined = combine(allowed, bias)
    assert isinstance(combined, torch.Tensor) and combined.is_floating_point(), (
        "실수 마스크가 하나라도 있으면 결과는 실수(가산) 마스크입니다 / with any float mask the result is a float "
        "(additive) mask")
    expected = bias.masked_fill(~allowed, float("-inf"))
    assert torch.equal(torch.isneginf(combined), torch.isneginf(expected)), (
        "불리언의 False는 -inf가 되어야 합니다 / the booleans' False entries must become -inf")
    assert_close(combined[allowed], expected[allowed], "float combination",
                 "불리언의 True는 0으로 바꾼 뒤 모두 더하세요 / turn the booleans' True into 0 and add everything")


# -----------------------------------------------------------------------------
# Theory answers


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


@pytest.mark.parametrize("causal", [False, True])
def test_bonus_flash_matches_pytorch(nb, causal):
    flash = student(nb, "flash_attention", optional=True)
    q, k, v = qkv(Tq=13, Tk=13, seed=12)
    out = flash(q, k, v, causal=causal, block_size=4)
    assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal), f"flash_attention(causal={causal})",
                 "쿼리 블록마다 (max, sum, acc)를 유지하고, causal이면 j > i를 가리세요. / Keep (max, sum, acc) per query "
                 "block; with causal=True, block keys j > i.")


def test_bonus_local_mask_and_sparse(nb):
    local = student(nb, "local_attention_mask", optional=True)
    mask = local(9, 2)
    i, j = torch.arange(9)[:, None], torch.arange(9)[None, :]
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and torch.equal(mask, (i - j).abs() <= 2), (
        "local_attention_mask(T, window): bool (T, T), |i - j| <= window에서 True / True where |i - j| <= window")
    sparse = student(nb, "sparse_attention", optional=True)
    q, k, v = qkv(Tq=41, Tk=41, seed=13)
    band = (torch.arange(41)[:, None] - torch.arange(41)[None, :]).abs() <= 3
    assert_close(sparse(q, k, v, window=3), F.scaled_dot_product_attention(q, k, v, attn_mask=band),
                 "sparse_attention(window=3)", "|i - j| <= window인 키만 보세요 / attend only to keys with |i - j| <= window")


def test_bonus_linear_attention(nb):
    linear = student(nb, "linear_attention", optional=True)
    q, k, v = qkv(seed=14)
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    similarity = phi_q @ phi_k.transpose(-2, -1)  # (B, H, Tq, Tk): the O(T^2) form of the same formula
    expected = (similarity @ v) / similarity.sum(dim=-1, keepdim=True)
    assert_close(linear(q, k, v), expected, "linear_attention vs its O(T^2) form",
                 "phi(x) = elu(x) + 1; out_i = phi(q_i)(phi(K)^T V) / (phi(q_i) · sum_j phi(k_j)).",
                 tol={"atol": 1e-4, "rtol": 1e-4})
