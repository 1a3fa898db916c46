"""자가 점검 / Self-check for w5-attention.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
실행한 뒤, 정답 없이도 확인할 수 있는 성질(공식과의 일치, 가중치 행의 합, 패딩과 창 밖의 가중치 0,
위치 기반 어텐션이 키의 내용을 보지 않는지, 커버리지의 정의, 파라미터 이름과 모양, seq2seq의 출력
모양)을 검사합니다. 통과해도 만점이 보장되지는 않습니다: 채점기는 다른(비공개) 입력과 학습된 모델로
검사합니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) and checks properties that need no reference solution: agreement with the
formulas, weight rows that sum to 1, zero weight on padding and outside the window, location-based
attention that ignores the keys' content, the definition of coverage, parameter names and shapes,
the shapes of the seq2seq model's outputs. Passing does not guarantee full marks: the grader uses
other (private) inputs and your trained model.

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
                or Path(__file__).resolve().parents[1] / "attention_mechanisms.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
FP32 = {"atol": 1e-5, "rtol": 1e-4}
ANSWER_KINDS = {"local_scores_per_step": "number", "global_cost": "choice", "additive_params": "number",
               "coverage_step_max": "number", "location_inputs": "choice"}
B, S, DQ, DK, DA = 3, 9, 5, 7, 6
LENGTHS = (9, 6, 3)


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
                    "(keep attention_mechanisms.ipynb next to the tests/ folder)")
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
    """The student's function or class ``name``; calling it (or what it returns, for a module)
    turns NotImplementedError into a clear failure (or a skip, for the bonus)."""
    target = nb.get(name)
    if not callable(target):
        pytest.fail(f"{name}이(가) 노트북에 없습니다 / no function or class named {name} in the notebook: "
                    "keep the template's names and signatures.")

    def guarded(fn):
        def call(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except NotImplementedError:
                result = NotImplemented  # reported below, outside the except block, without the chained traceback
            if result is NotImplemented:
                if optional:
                    pytest.skip(f"{name}: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
                pytest.fail(f"{name}: 아직 구현되지 않았습니다 (NotImplementedError) — raise 줄을 지우고 구현하세요. / "
                            f"{name} is not implemented yet (NotImplementedError): replace the raise with your code.")
            if isinstance(result, torch.nn.Module):
                module = result
                module_call = guarded(module.__call__)
                module_call.module = module
                for method in ("greedy_decode",):
                    if hasattr(module, method):
                        setattr(module_call, method, guarded(getattr(module, method)))
                return module_call
            return result
        return call

    return guarded(target)


def inputs(seed=0, dq=DQ, dk=DK):
    """query (B, dq), keys (B, S, dk), mask (B, S) with the real lengths LENGTHS."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(S)[None, :] < torch.tensor(LENGTHS)[:, None]
    return torch.randn(B, dq, generator=g), torch.randn(B, S, dk, generator=g), mask


def distribution(mask, seed=1):
    """Random attention rows (B, S) over the real positions of mask."""
    raw = (torch.rand(mask.shape, generator=torch.Generator().manual_seed(seed)) + 0.05) * mask
    return raw / raw.sum(dim=-1, keepdim=True)


def assert_close(actual, expected, what, fix, tol=FP32):
    """torch.testing.assert_close with a bilingual message: what is compared and what to fix."""
    assert isinstance(actual, torch.Tensor), f"{what}: 텐서가 아닙니다 / not a tensor ({type(actual).__name__})"
    assert actual.shape == expected.shape, (
        f"{what}: 모양 {tuple(actual.shape)} != 기대 {tuple(expected.shape)} / shape "
        f"{tuple(actual.shape)} != expected {tuple(expected.shape)}. {fix}")
    try:
        torch.testing.assert_close(actual.float(), expected.float(), equal_nan=False, **tol)
    except AssertionError as err:
        raise AssertionError(f"{what}: 값이 다릅니다 / values differ. {fix}\n{err}") from None


def assert_weights(weights, allowed, what):
    """Attention weights (..., S): finite, exactly 0 where `allowed` is False, rows summing to 1 (0 when nothing is allowed)."""
    assert torch.isfinite(weights).all(), f"{what}: NaN/inf가 있습니다 / contains NaN or inf"
    assert torch.all(weights.masked_select(~allowed.expand_as(weights)) == 0), (
        f"{what}: 막힌 위치(패딩, 창 밖)의 가중치는 정확히 0이어야 합니다 / blocked positions (padding, outside the "
        "window) must get exactly 0: fill their scores with -inf before the softmax")
    expected = allowed.expand_as(weights).any(dim=-1).float()
    assert_close(weights.sum(dim=-1), expected, f"{what}: row sums",
                 "행의 합은 1 (허용된 위치가 없으면 0) / rows sum to 1 (0 when nothing is allowed)")


def parameters(module):
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


# -----------------------------------------------------------------------------
# Content-based scores


def test_dot_score(nb):
    dot = student(nb, "dot_score")
    query, keys, _ = inputs(dq=DK)
    assert_close(dot(query, keys), torch.einsum("bd,bsd->bs", query, keys), "dot_score",
                 "scores[b, s] = query[b] · keys[b, s]")


def test_general_score_layout_and_value(nb):
    general = student(nb, "GeneralScore")(DQ, DK)
    assert parameters(general.module) == {"W.weight": (DQ, DK)}, (
        f"GeneralScore의 파라미터는 W = nn.Linear(key_dim, query_dim, bias=False) 하나 / GeneralScore has exactly "
        f"W = nn.Linear(key_dim, query_dim, bias=False); found {parameters(general.module)}")
    query, keys, _ = inputs()
    W = general.module.W.weight.detach()
    assert_close(general(query, keys), torch.einsum("bq,qk,bsk->bs", query, W, keys), "GeneralScore",
                 "score = q^T W k_s, W.weight (query_dim, key_dim)")


def test_additive_score_layout_and_value(nb):
    additive = student(nb, "AdditiveScore")(DQ, DK, DA)
    assert parameters(additive.module) == {"W_q.weight": (DA, DQ), "W_q.bias": (DA,), "W_k.weight": (DA, DK),
                                           "v.weight": (1, DA)}, (
        "AdditiveScore: W_q = nn.Linear(query_dim, attn_dim) (편향 / with bias), W_k = nn.Linear(key_dim, attn_dim, "
        f"bias=False), v = nn.Linear(attn_dim, 1, bias=False); found {parameters(additive.module)}")
    query, keys, _ = inputs()
    m = additive.module
    hidden = torch.tanh((query @ m.W_q.weight.T + m.W_q.bias)[:, None, :] + keys @ m.W_k.weight.T)  # (B, S, A)
    expected = (hidden @ m.v.weight.T).squeeze(-1)  # (B, S)
    assert_close(additive(query, keys).detach(), expected.detach(), "AdditiveScore",
                 "score = v^T tanh(W_q q + W_k k_s), (B, S)")


# -----------------------------------------------------------------------------
# Masked softmax, global and local attention


def test_masked_softmax(nb):
    softmax = student(nb, "masked_softmax")
    scores = torch.randn(4, S, generator=torch.Generator().manual_seed(3)) * 3
    scores[0, 1] = 1000.0  # exp(1000) overflows unless the row maximum is subtracted
    mask = torch.arange(S)[None, :] < torch.tensor([9, 5, 1, 0])[:, None]  # the last row has nothing to attend to
    assert_close(softmax(scores[1:2]), torch.softmax(scores[1:2], dim=-1), "masked_softmax without a mask",
                 "mask=None: 보통의 softmax / a plain softmax")
    assert_weights(softmax(scores, mask), mask, "masked_softmax")
    expected = torch.softmax(scores[1, :5], dim=-1)
    assert_close(softmax(scores, mask)[1, :5], expected, "masked_softmax on the unmasked positions",
                 "허용된 위치끼리의 softmax / a softmax over the allowed positions only")


def test_global_attention(nb):
    attend = student(nb, "global_attention")
    query, keys, mask = inputs(dq=DK)
    result = attend(query, keys, mask)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        "global_attention은 (context, weights)를 돌려줘야 합니다 / global_attention must return (context, weights)")
    context, weights = result
    assert_weights(weights, mask, "global_attention weights")
    expected = torch.softmax(torch.einsum("bd,bsd->bs", query, keys).masked_fill(~mask, float("-inf")), dim=-1)
    assert_close(weights, expected, "global_attention weights", "masked_softmax(dot_score(query, keys), mask)")
    assert_close(context, torch.einsum("bs,bsd->bd", expected, keys), "global_attention context",
                 "context = sum_s weights_s keys_s")


@pytest.mark.parametrize("gaussian", [False, True])
def test_local_attention_window(nb, gaussian):
    local = student(nb, "local_attention")
    query, keys, mask = inputs(seed=4, dq=DK)
    centre = torch.tensor([2.0, 3.5, 7.0])  # the last one lies past the end of a 3-token source
    window = 2
    context, weights = local(query, keys, mask, centre, window, gaussian=gaussian)
    distance = torch.arange(S)[None, :].float() - centre[:, None]
    allowed = (distance.abs() <= window) & mask
    assert torch.all(weights.masked_select(~allowed) == 0), (
        "창 밖(|s - center| > window)이나 패딩의 가중치는 정확히 0 / no weight outside the window "
        "(|s - center| > window) or on padding")
    plain = torch.softmax(torch.einsum("bd,bsd->bs", query, keys).masked_fill(~allowed, float("-inf")), dim=-1)
    plain = torch.nan_to_num(plain, nan=0.0)
    expected = plain * torch.exp(-distance ** 2 / (2 * (window / 2) ** 2)) if gaussian else plain
    assert_close(weights, expected, f"local_attention(gaussian={gaussian}) weights",
                 "창 안의 softmax (gaussian이면 exp(-(s - p)^2 / (2 (D/2)^2))를 곱함) / softmax over the window "
                 "(times exp(-(s - p)^2 / (2 (D/2)^2)) with gaussian=True)")
    assert_close(context, torch.einsum("bs,bsd->bd", expected, keys), "local_attention context",
                 "context = sum_s weights_s keys_s")


# -----------------------------------------------------------------------------
# Location-aware attention and coverage


@pytest.mark.parametrize("hybrid", [False, True])
def test_location_aware_attention(nb, hybrid):
    layer = student(nb, "LocationAwareAttention")(DQ, DK, DA, n_filters=4, kernel_size=5, hybrid=hybrid)
    assert parameters(layer.module) == {"W_q.weight": (DA, DQ), "W_q.bias": (DA,), "W_k.weight": (DA, DK),
                                        "conv.weight": (4, 1, 5), "W_f.weight": (DA, 4), "v.weight": (1, DA)}, (
        f"LocationAwareAttention의 파라미터 / parameters: see the template; found {parameters(layer.module)}")
    query, keys, mask = inputs(seed=5)
    prev = distribution(mask)
    context, weights = layer(query, keys, prev, mask)
    assert_weights(weights.detach(), mask, "LocationAwareAttention weights")
    _, other_keys, _ = inputs(seed=6)
    _, with_other_keys = layer(query, other_keys, prev, mask)
    changed = not torch.allclose(weights, with_other_keys)
    if hybrid:
        assert changed, "hybrid=True: 키의 내용(W_k k)이 점수에 들어가야 합니다 / the keys' content must enter the scores"
    else:
        assert not changed, ("hybrid=False (위치 기반): 키의 내용이 점수에 들어가면 안 됩니다 / location-based: the keys' "
                             "content must not enter the scores (no W_k k term)")
    _, with_other_prev = layer(query, keys, distribution(mask, seed=7), mask)
    assert not torch.allclose(weights, with_other_prev), (
        "이전 정렬(prev_weights)이 점수에 들어가야 합니다 (conv -> W_f) / the previous alignment must enter the "
        "scores (conv -> W_f)")


def test_coverage_attention_step(nb):
    layer = student(nb, "CoverageAttention")(DQ, DK, DA)
    assert parameters(layer.module) == {"W_q.weight": (DA, DQ), "W_q.bias": (DA,), "W_k.weight": (DA, DK),
                                        "w_c.weight": (DA, 1), "v.weight": (1, DA)}, (
        f"CoverageAttention의 파라미터 / parameters: see the template; found {parameters(layer.module)}")
    query, keys, mask = inputs(seed=8)
    coverage = distribution(mask) + distribution(mask, seed=2)
    result = layer(query, keys, coverage, mask)
    assert isinstance(result, (tuple, list)) and len(result) == 4, (
        "CoverageAttention은 (context, weights, next_coverage, step_loss)를 돌려줘야 합니다 / must return "
        "(context, weights, next_coverage, step_loss)")
    _, weights, next_coverage, step_loss = (r.detach() for r in result)
    assert_weights(weights, mask, "CoverageAttention weights")
    assert_close(next_coverage, coverage + weights, "next coverage",
                 "다음 커버리지 = coverage + weights (갱신하세요) / next coverage = coverage + weights (update it)")
    assert_close(step_loss, torch.minimum(weights, coverage).sum(-1), "step loss",
                 "이번 스텝 전의 커버리지로 sum_s min(a_s, c_s) / sum_s min(a_s, c_s) with the coverage before the step")


def test_coverage_vectors_and_loss(nb):
    vectors, loss = student(nb, "coverage_vectors"), student(nb, "coverage_loss")
    once = torch.eye(4)[None].flip(1)  # each position attended to exactly once (a reversal)
    assert_close(vectors(once), torch.cumsum(once, dim=1) - once, "coverage_vectors",
                 "c_t = sum_{t' < t} a_t' (c_0 = 0)")
    assert_close(loss(once), torch.zeros(1), "coverage_loss of an alignment visiting each position once",
                 "겹침이 없으면 0 / no overlap, no loss")
    same = torch.zeros(1, 5, 4)
    same[..., 2] = 1.0  # five steps on the same position
    assert_close(loss(same), torch.tensor([4.0]), "coverage_loss of five steps on one position",
                 "sum_t sum_s min(a_t,s, c_t,s): 0 + 1 + 1 + 1 + 1")


# -----------------------------------------------------------------------------
# The seq2seq model (untrained here: only shapes and attention properties)


@pytest.mark.parametrize("kind", ["additive", "hybrid", "local"])
def test_seq2seq_shapes_and_attention(nb, kind):
    torch.manual_seed(0)
    model = student(nb, "Seq2Seq")(13, 8, 16, 8, attention=kind)
    src = torch.tensor([[4, 5, 6, 7, 8], [9, 10, 11, 0, 0]])
    lengths = torch.tensor([5, 3])
    tgt_in = torch.tensor([[1, 8, 7, 6, 5, 4], [1, 11, 10, 9, 2, 0]])
    result = model(src, lengths, tgt_in)
    assert isinstance(result, (tuple, list)) and len(result) == 2, "forward -> (logits, attention)"
    logits, attention = result
    assert tuple(logits.shape) == (2, 6, 13) and tuple(attention.shape) == (2, 6, 5), (
        f"forward: logits (B, T, vocab) = (2, 6, 13), attention (B, T, S) = (2, 6, 5); got "
        f"{tuple(logits.shape)}, {tuple(attention.shape)}")
    tokens, attention = model.greedy_decode(src, lengths, 7)
    assert tuple(tokens.shape) == (2, 7) and not tokens.is_floating_point(), (
        f"greedy_decode: tokens (B, max_len) = (2, 7) 정수 / integers; got {tuple(tokens.shape)} {tokens.dtype}")
    assert tuple(attention.shape) == (2, 7, 5), f"greedy_decode: attention (2, 7, 5); got {tuple(attention.shape)}"
    real = (torch.arange(5)[None, :] < lengths[:, None])[:, None, :]
    assert torch.all(attention.masked_select(~real.expand_as(attention)) == 0), (
        "패딩된 소스 토큰에는 어텐션이 없어야 합니다 / no attention on padded source tokens")
    if kind != "local":  # local-p's Gaussian makes its rows sum to at most 1
        assert_close(attention.sum(-1), torch.ones(2, 7), "greedy_decode attention row sums",
                     "각 스텝의 가중치는 실제 소스 토큰에 대해 합이 1 / each step's weights sum to 1 over the real tokens")


# -----------------------------------------------------------------------------
# Theory answers


def test_answers_are_filled(nb):
    answers = nb.get("ANSWERS")
    assert isinstance(answers, dict), "ANSWERS 딕셔너리가 없습니다 / no ANSWERS dict in the notebook"
    for key, kind in ANSWER_KINDS.items():
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


def test_bonus_multihead_matches_pytorch(nb):
    mha = student(nb, "MultiHeadAttention", optional=True)(12, 3)
    module = mha.module
    g = torch.Generator().manual_seed(9)
    query, kv = torch.randn(2, 4, 12, generator=g), torch.randn(2, 6, 12, generator=g)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 4])[:, None]
    output, weights = mha(query, kv, kv, mask)
    # the library's multi-head attention with the same weights, as a yardstick (not in your code!)
    reference = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([module.q_proj.weight, module.k_proj.weight, module.v_proj.weight]))
        reference.in_proj_bias.copy_(torch.cat([module.q_proj.bias, module.k_proj.bias, module.v_proj.bias]))
        reference.out_proj.weight.copy_(module.out_proj.weight)
        reference.out_proj.bias.copy_(module.out_proj.bias)
    expected, expected_weights = reference(query, kv, kv, key_padding_mask=~mask, average_attn_weights=False)
    assert_close(output.detach(), expected.detach(), "MultiHeadAttention output",
                 "헤드로 나누고 sqrt(d_head)로 스케일, 합친 뒤 out_proj / split into heads, scale by sqrt(d_head), merge, out_proj")
    assert_close(weights.detach(), expected_weights.detach(), "MultiHeadAttention weights (B, h, Tq, Tk)",
                 "헤드마다의 가중치 / per-head weights")


def test_bonus_self_attention(nb):
    layer = student(nb, "SelfAttention", optional=True)(12)
    m = layer.module
    x = torch.randn(2, 6, 12, generator=torch.Generator().manual_seed(10))
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2])[:, None]
    output, weights = layer(x, mask)
    q, k, v = x @ m.q_proj.weight.T, x @ m.k_proj.weight.T, x @ m.v_proj.weight.T
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, :])  # a yardstick, not for your code
    assert_close(output.detach(), expected.detach(), "SelfAttention output",
                 "softmax(q k^T / sqrt(d_model)) v, 패딩된 키는 가림 / padded keys hidden")
    assert_weights(weights.detach(), mask[:, None, :], "SelfAttention weights")


@pytest.mark.parametrize("chunk_size", [4, 32])
def test_bonus_chunked_attention(nb, chunk_size):
    chunked = student(nb, "chunked_attention", optional=True)
    g = torch.Generator().manual_seed(11)
    q, k, v = torch.randn(2, 5, 8, generator=g), torch.randn(2, 13, 8, generator=g), torch.randn(2, 13, 3, generator=g)
    mask = torch.arange(13)[None, :] < torch.tensor([13, 6])[:, None]
    scores = (q @ k.transpose(1, 2) / math.sqrt(8)).masked_fill(~mask[:, None, :], float("-inf"))
    assert_close(chunked(q, k, v, mask, chunk_size=chunk_size), torch.softmax(scores, dim=-1) @ v,
                 f"chunked_attention(chunk_size={chunk_size})",
                 "키를 chunk_size씩, 누적 최댓값/합/누적값으로 (마지막 청크는 짧을 수 있음) / chunk the keys with a running "
                 "max, sum and accumulator (the last chunk may be shorter)")
