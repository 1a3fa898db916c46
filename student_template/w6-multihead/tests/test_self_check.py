"""자가 점검 / Self-check for w6-multihead.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
실행한 뒤, 정답 없이도 확인할 수 있는 성질을 검사합니다: 같은 가중치의 `torch.nn.MultiheadAttention`과의
일치(출력과 헤드별 맵, 마스크 포함), 헤드 가중치와 헤드 마스크(= out_proj의 열을 스케일한 torch 모듈),
torch의 자동 미분으로 따로 계산한 헤드 중요도, 헤드 선택(동점 포함), 상관 행렬의 성질. 통과해도 만점이
보장되지는 않습니다: 채점기는 다른(비공개) 입력으로 검사합니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) and checks properties that need no reference solution: agreement with
`torch.nn.MultiheadAttention` loaded with the same weights (output and per-head maps, masks
included), head weights and head masks (equal to torch's module with the columns of out_proj
scaled), head importance computed separately with torch's autograd, head selection (with ties),
the properties of the correlation matrix. Passing does not guarantee full marks: the grader uses
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
                or Path(__file__).resolve().parents[1] / "multihead_analysis.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
TOL = {"atol": 1e-5, "rtol": 1e-4}
E, H = 12, 3       # dh = 4
ANSWER_KEYS = {"mha_params": "number", "params_vs_heads": "choice", "attn_maps_mib": "number",
               "head_rank": "number", "importance_formula": "choice", "why_heads": "choice"}


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
                    "(keep multihead_analysis.ipynb next to the tests/ folder)")
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    namespace: dict = {"__name__": "__self_check__"}
    os.environ.setdefault("MPLBACKEND", "Agg")
    previous_dir = os.getcwd()
    os.chdir(NOTEBOOK.parent)
    threads = torch.get_num_threads()
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
        torch.set_num_threads(threads)
    return NotebookNamespace(namespace)


def _not_implemented(name: str, optional: bool):
    if optional:
        pytest.skip(f"{name}: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
    pytest.fail(f"{name}: 아직 구현되지 않았습니다 (NotImplementedError) — raise 줄을 지우고 구현하세요. / "
                f"{name} is not implemented yet (NotImplementedError): replace the raise with your code.")


def student(nb: NotebookNamespace, name: str, optional: bool = False):
    """The student's function ``name``; calling it turns NotImplementedError into a clear failure (or a skip)."""
    fn = nb.get(name)
    if not callable(fn):
        pytest.fail(f"함수 {name}이(가) 노트북에 없습니다 / no function named {name} in the notebook: "
                    "keep the template's names and signatures.")

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            pass  # reported below, outside the except block, without the chained traceback
        _not_implemented(name, optional)

    return call


def weights(seed: int = 0, embed_dim: int = E) -> dict[str, torch.Tensor]:
    """Random weights in the template's layout (scaled so that the maps are neither flat nor one-hot)."""
    g = torch.Generator().manual_seed(seed)
    return {"in_proj_weight": torch.randn(3 * embed_dim, embed_dim, generator=g) * 0.4,
            "in_proj_bias": torch.randn(3 * embed_dim, generator=g) * 0.1,
            "out_proj.weight": torch.randn(embed_dim, embed_dim, generator=g) * 0.3,
            "out_proj.bias": torch.randn(embed_dim, generator=g) * 0.1}


def module(nb: NotebookNamespace, state: dict, gates=None, embed_dim: int = E, num_heads: int = H):
    """The student's MultiHeadAttention(embed_dim, num_heads) with ``state`` (and head weights) loaded by name."""
    cls = nb.get("MultiHeadAttention")
    if cls is None:
        pytest.fail("MultiHeadAttention 클래스가 노트북에 없습니다 / no class MultiHeadAttention in the notebook")
    try:
        mha = cls(embed_dim, num_heads)
    except NotImplementedError:
        _not_implemented("MultiHeadAttention.__init__", False)
    own = dict(mha.named_parameters())
    for name, value in {**state, "head_weights": torch.ones(num_heads) if gates is None else gates}.items():
        assert name in own, (f"파라미터 {name}이(가) 없습니다 / your module has no parameter named {name}: keep the "
                             "template's parameter names (in_proj_weight, in_proj_bias, out_proj, head_weights)")
        assert own[name].shape == value.shape, (f"{name}: 모양 {tuple(own[name].shape)} != {tuple(value.shape)} / "
                                                f"shape {tuple(own[name].shape)}, expected {tuple(value.shape)}")
        with torch.no_grad():
            own[name].copy_(value)
    return mha


def forward(mha, *args, **kwargs):
    try:
        result = mha(*args, **kwargs)
    except NotImplementedError:
        _not_implemented("MultiHeadAttention.forward", False)
    assert isinstance(result, (tuple, list)) and len(result) == 2, (
        "forward는 (output, attn) 두 값을 돌려줘야 합니다 / forward must return the pair (output, attn)")
    return result


def torch_reference(state: dict, query, key, value, mask=None, gates=None, num_heads: int = H):
    """torch's own multi-head attention with the same weights: (output, per-head maps). Head weights
    g_h scale head h's columns of out_proj.weight (the same as scaling head h's output); a boolean
    mask (True = may attend) is inverted for torch, whose boolean attn_mask means "blocked"."""
    B, T, embed_dim = query.shape
    dh = embed_dim // num_heads
    w_out = state["out_proj.weight"]
    if gates is not None:
        w_out = w_out * gates.repeat_interleave(dh)[None, :]
    attn_mask = None
    if mask is not None:
        full = mask.expand(B, num_heads, T, key.shape[1]).reshape(B * num_heads, T, key.shape[1])
        attn_mask = ~full if mask.dtype == torch.bool else full
    out, maps = F.multi_head_attention_forward(
        query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), embed_dim, num_heads,
        state["in_proj_weight"], state["in_proj_bias"], None, None, False, 0.0, w_out, state["out_proj.bias"],
        training=False, need_weights=True, attn_mask=attn_mask, average_attn_weights=False)
    return out.transpose(0, 1), maps


def assert_close(actual, expected, what, fix, tol=TOL):
    """torch.testing.assert_close with a bilingual message: what is compared and what to fix."""
    assert isinstance(actual, torch.Tensor), f"{what}: 텐서가 아닙니다 / not a tensor ({type(actual).__name__})"
    assert actual.shape == expected.shape, (
        f"{what}: 모양 {tuple(actual.shape)} != 기대 {tuple(expected.shape)} / shape "
        f"{tuple(actual.shape)} != expected {tuple(expected.shape)}. {fix}")
    try:
        torch.testing.assert_close(actual.detach().float(), expected.detach().float(), **tol)
    except AssertionError as err:
        raise AssertionError(f"{what}: 값이 다릅니다 / values differ. {fix}\n{err}") from None


# -----------------------------------------------------------------------------
# MultiHeadAttention


def test_self_attention_matches_torch(nb):
    state = weights(1)
    x = torch.randn(2, 5, E, generator=torch.Generator().manual_seed(2))
    out, attn = forward(module(nb, state), x)
    expected_out, expected_maps = torch_reference(state, x, x, x)
    assert attn.shape == (2, H, 5, 5), (
        f"attn은 헤드별 맵 (B, H, T, S) = (2, {H}, 5, 5)이어야 합니다 (평균 내지 마세요) / attn must be the per-head maps "
        f"(B, H, T, S) = (2, {H}, 5, 5), not averaged; got {tuple(attn.shape)}")
    assert_close(attn, expected_maps, "per-head maps",
                 "W_q/W_k/W_v는 in_proj_weight의 세 덩어리, E를 H개 헤드로 나누고 1/sqrt(E/H)로 스케일하세요. / "
                 "W_q, W_k, W_v are the three thirds of in_proj_weight; split E into H heads and scale by 1/sqrt(E/H).")
    assert_close(out, expected_out, "output",
                 "헤드를 순서대로 다시 합치세요: (B, H, T, dh) -> transpose(1, 2) -> (B, T, E), 그다음 out_proj. / Merge "
                 "the heads back in order: (B, H, T, dh) -> transpose(1, 2) -> (B, T, E), then out_proj.")


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_cross_attention_with_a_mask_matches_torch(nb, kind):
    state = weights(3)
    g = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(2, 4, E, generator=g), torch.randn(2, 7, E, generator=g), torch.randn(2, 7, E, generator=g)
    allowed = torch.rand(2, 1, 4, 7, generator=g) > 0.4
    allowed[..., 0] = True  # every query keeps a key
    mask = allowed if kind == "bool" else torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    out, attn = forward(module(nb, state), q, k, v, mask=mask)
    expected_out, expected_maps = torch_reference(state, q, k, v, mask=mask)
    assert torch.all(attn.detach().masked_select(~allowed.expand_as(attn)) == 0), (
        "마스크가 막은 키의 가중치는 정확히 0이어야 합니다: 불리언 마스크는 True = 허용 (torch 모듈과 반대). / Keys the mask "
        "blocks must get weight exactly 0: a boolean mask is True where attention is ALLOWED (the opposite of torch's "
        "module).")
    assert_close(attn, expected_maps, f"per-head maps with a {kind} mask",
                 "불리언 False / 실수 -inf인 곳의 점수를 softmax 전에 -inf로 (실수 마스크는 더하기). / Set the scores to -inf "
                 "where a boolean mask is False before the softmax (a float mask is added).")
    assert_close(out, expected_out, f"output with a {kind} mask", "key/value의 길이 S는 query의 T와 다를 수 있습니다 / "
                 "key/value may have a length S different from the query's T.")


def test_head_weights_scale_each_head_and_zero_removes_it(nb):
    state = weights(5)
    x = torch.randn(2, 6, E, generator=torch.Generator().manual_seed(6))
    gates = torch.tensor([0.0, -1.5, 0.7])
    out, _ = forward(module(nb, state, gates), x)
    expected, _ = torch_reference(state, x, x, x, gates=gates)
    fix = ("헤드를 합치기 전에 헤드 h의 출력 (B, H, T, dh)에 head_weights[h]를 곱하세요 (음수 가능). / Multiply head h's output "
           "(B, H, T, dh) by head_weights[h] before merging the heads (weights may be negative).")
    assert_close(out, expected, "output with head weights [0, -1.5, 0.7]", fix)
    noisy = dict(state)
    noisy["in_proj_weight"] = state["in_proj_weight"].clone()
    for block in range(3):  # head 0's rows of W_q, W_k and W_v
        noisy["in_proj_weight"][block * E:block * E + E // H] = 5.0
    moved, _ = forward(module(nb, noisy, gates), x)
    assert_close(moved, out, "output when head 0 (weight 0) gets other q/k/v weights",
                 "가중치 0인 헤드는 출력에 전혀 기여하지 않아야 합니다 / a head of weight 0 must contribute nothing.",
                 tol={"atol": 1e-6, "rtol": 0.0})


def test_head_mask_keeps_heads_per_example(nb):
    state = weights(7)
    x = torch.randn(2, 5, E, generator=torch.Generator().manual_seed(8))
    head_mask = torch.tensor([[True, False, True], [False, True, False]])
    out, _ = forward(module(nb, state), x, head_mask=head_mask)
    for b in range(2):
        expected, _ = torch_reference(state, x[b:b + 1], x[b:b + 1], x[b:b + 1], gates=head_mask[b].float())
        assert_close(out[b:b + 1], expected, f"output of example {b} with head_mask {head_mask[b].tolist()}",
                     "(B, H) 마스크는 예제 b의 헤드 h 출력에 head_mask[b, h]를 곱합니다 / a (B, H) mask multiplies head h's "
                     "output of example b by head_mask[b, h].")


def test_head_importance_is_the_mean_absolute_gradient_per_example(nb):
    state = weights(9)
    g = torch.Generator().manual_seed(10)
    x, target = torch.randn(3, 5, E, generator=g), torch.randn(3, 5, E, generator=g)
    gates = torch.tensor([1.0, 0.5, -0.8])
    mha = module(nb, state, gates)
    with torch.no_grad():  # as the grader calls it
        try:
            importance = mha.head_importance(x, target)
        except NotImplementedError:
            _not_implemented("MultiHeadAttention.head_importance", False)
    expected = []
    for b in range(3):
        leaf = gates.clone().requires_grad_(True)
        output, _ = torch_reference(state, x[b:b + 1], x[b:b + 1], x[b:b + 1], gates=leaf)
        loss = ((output - target[b:b + 1]) ** 2).mean()
        expected.append(torch.autograd.grad(loss, leaf)[0].abs())
    assert_close(importance, torch.stack(expected).mean(dim=0), "head_importance",
                 "예제마다 L_b = mean((output_b - target_b)^2), 중요도_h = mean_b |dL_b/d head_weights[h]| (절댓값 먼저). "
                 "torch.no_grad() 안에서도 되도록 torch.enable_grad()로 감싸세요. / Per example L_b = "
                 "mean((output_b - target_b)^2); importance_h = mean_b |dL_b/d head_weights[h]| (absolute value first). "
                 "Wrap it in torch.enable_grad() so that it works under torch.no_grad().", tol={"atol": 1e-6, "rtol": 1e-4})


# -----------------------------------------------------------------------------
# Head selection and correlation


def test_select_heads_keeps_the_top_k_with_ties_to_the_lower_index(nb):
    select = student(nb, "select_heads")
    chosen = select(torch.tensor([0.5, 0.9, 0.5, 0.1]), 2)
    assert isinstance(chosen, torch.Tensor) and chosen.dtype == torch.bool, (
        "select_heads는 bool 텐서를 돌려줘야 합니다 / select_heads must return a bool tensor")
    assert chosen.tolist() == [True, True, False, False], (
        f"[0.5, 0.9, 0.5, 0.1]에서 k=2: 0.9(인덱스 1)와, 동점 0.5 중 인덱스가 작은 0번 / k=2 keeps 0.9 (index 1) and, of the "
        f"tied 0.5s, the lower index 0; got {chosen.tolist()}. 안정 정렬을 쓰세요 / use a stable sort "
        "(torch.argsort(..., descending=True, stable=True)).")
    layers = select(torch.tensor([[0.2, 0.7, 0.1], [0.7, 0.3, 0.05]]), 3)
    assert layers.shape == (2, 3) and layers.tolist() == [[False, True, False], [True, True, False]], (
        f"(L, H) 점수에서는 모든 층을 함께 보고 상위 k개 / with (L, H) scores, the top k over every layer; got {layers.tolist()}")
    assert select(torch.tensor([0.3, 0.2]), 0).tolist() == [False, False], "k=0: 아무것도 유지하지 않음 / k=0 keeps none"


def test_head_correlation_properties(nb):
    correlation = student(nb, "head_correlation")
    g = torch.Generator().manual_seed(11)
    maps = torch.softmax(torch.randn(2, 4, 5, 6, generator=g), dim=-1)
    maps[:, 2] = 1.0 / 6  # a constant head: no variance
    corr = correlation(maps)
    assert isinstance(corr, torch.Tensor) and corr.shape == (4, 4), (
        f"head_correlation은 (H, H) = (4, 4)를 돌려줘야 합니다 / head_correlation must return (H, H) = (4, 4); got "
        f"{tuple(getattr(corr, 'shape', ()))}")
    assert torch.isfinite(corr).all(), ("상관 행렬에 NaN/inf가 있습니다: 값이 일정한 헤드는 다른 헤드와 0, 자신과 1 / NaN or inf "
                                        "in the matrix: a constant head has correlation 0 with the others, 1 with itself")
    assert_close(corr, corr.T, "symmetry", "상관 행렬은 대칭입니다 / the correlation matrix is symmetric")
    assert_close(torch.diagonal(corr), torch.ones(4), "diagonal", "대각선은 1입니다 / the diagonal is 1")
    flat = maps.transpose(0, 1).reshape(4, -1)
    others = [0, 1, 3]
    expected = torch.corrcoef(flat[others])
    assert_close(corr[others][:, others], expected, "correlation of the non-constant heads",
                 "각 헤드의 맵을 (B, T, S)로 평탄화한 뒤 피어슨 상관 (평균을 빼고 표준편차로 나눔) / Pearson correlation of each "
                 "head's maps flattened over (B, T, S) (centred, divided by the standard deviations)")
    assert_close(corr[2, others], torch.zeros(3), "correlation with the constant head",
                 "값이 일정한 헤드와의 상관은 0 / correlation with a constant head is 0")


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


def test_bonus_init_strategies(nb):
    init = student(nb, "init_in_proj", optional=True)
    embed_dim = 16
    xavier = init(embed_dim, 4, "xavier", seed=1)
    bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))
    assert isinstance(xavier, torch.Tensor) and xavier.shape == (3 * embed_dim, embed_dim), (
        "init_in_proj는 (3E, E) 텐서를 돌려줘야 합니다 / init_in_proj must return a (3E, E) tensor")
    assert float(xavier.abs().max()) <= bound * (1 + 1e-6), f"xavier: |w| <= sqrt(6 / (E + 3E)) = {bound:.4f}"
    assert 0.85 < float(xavier.std()) / (bound / math.sqrt(3)) < 1.15, "xavier: 균등분포 [-a, a] / uniform in [-a, a]"
    assert torch.equal(xavier, init(embed_dim, 4, "xavier", seed=1)), "같은 seed면 같은 값 / the same seed, the same weights"
    orthogonal = init(embed_dim, 4, "orthogonal", seed=1)
    for block in range(3):
        w = orthogonal[block * embed_dim:(block + 1) * embed_dim].double()
        assert_close(w @ w.T, torch.eye(embed_dim, dtype=torch.float64), f"orthogonal block {block} (W W^T)",
                     "W_q, W_k, W_v 각각이 직교 행렬 (가우스 행렬의 QR) / each of W_q, W_k, W_v orthogonal (QR of a "
                     "Gaussian matrix)", tol={"atol": 1e-4, "rtol": 0.0})


def test_bonus_dynamic_heads(nb):
    state = weights(12)
    mha = module(nb, state)
    x = torch.randn(3, 6, E, generator=torch.Generator().manual_seed(13)) * torch.tensor([1.0, 0.3, 2.0]).view(3, 1, 1)
    try:
        with torch.no_grad():
            output, keep = mha.dynamic_heads(x, 0.45)
    except NotImplementedError:
        _not_implemented("MultiHeadAttention.dynamic_heads", True)
    _, maps = torch_reference(state, x, x, x)
    confidence = maps.amax(dim=-1).mean(dim=-1)  # (B, H)
    expected = confidence >= 0.45
    expected[torch.arange(3), confidence.argmax(dim=-1)] = True
    assert isinstance(keep, torch.Tensor) and keep.dtype == torch.bool and torch.equal(keep, expected), (
        f"keep (B, H): confidence = 쿼리별 최대 가중치의 평균 >= threshold, 가장 확신이 큰 헤드는 항상 / confidence = mean "
        f"over queries of the largest weight >= threshold, always the most confident head; expected {expected.tolist()}, "
        f"got {keep.tolist() if isinstance(keep, torch.Tensor) else keep!r}")
    for b in range(3):
        reference, _ = torch_reference(state, x[b:b + 1], x[b:b + 1], x[b:b + 1], gates=expected[b].float())
        assert_close(output[b:b + 1], reference, f"dynamic_heads output of example {b}",
                     "유지한 헤드만으로 출력을 다시 계산하세요 (head_mask=keep) / recompute the output with the kept heads "
                     "only (head_mask=keep)")
