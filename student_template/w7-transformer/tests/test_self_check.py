"""자가 점검 / Self-check for w7-transformer.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
실행한 뒤, 정답 없이도 확인할 수 있는 성질을 검사합니다: PyTorch의 `nn.MultiheadAttention`,
`nn.TransformerEncoderLayer`, `nn.TransformerDecoderLayer`와 같은 가중치에서의 일치(여러분이 선언한
`NORM_FIRST` 방식으로), 마스크, 미래를 보지 않는 디코더, 패딩에 대한 불변성, 교사 강요와 손실,
탐욕 디코딩과 빔 서치가 여러분 모델 자신의 확률과 맞는지, `ANSWERS`. 통과해도 만점이 보장되지는
않습니다: 채점기는 다른(비공개) 입력과 참조 구현으로 검사하고, 학습된 `TRANSLATOR`의 BLEU를 잽니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) and checks properties that need no reference solution: agreement with
PyTorch's `nn.MultiheadAttention`, `nn.TransformerEncoderLayer` and `nn.TransformerDecoderLayer`
given the same weights (in the `NORM_FIRST` style you declare), the masks, a decoder that does not
see the future, invariance to padding, teacher forcing and the loss, greedy decoding and beam
search consistent with your own model's probabilities, and `ANSWERS`. Passing does not guarantee
full marks: the grader uses other (private) inputs and the reference implementation, and measures
the BLEU of your trained `TRANSLATOR`.

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
from torch import nn

NOTEBOOK = Path(os.environ.get("SELF_CHECK_NOTEBOOK")
                or Path(__file__).resolve().parents[1] / "transformer_enc_dec.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
FP32 = {"atol": 1e-5, "rtol": 1e-4}
PAD, BOS, EOS = 0, 1, 2
E, H, FF = 16, 4, 24
ANSWER_KEYS = {"mha_params": "number", "encoder_layer_params": "number", "teacher_forcing": "choice",
               "beam_calls": "choice", "cache_cost": "choice"}


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
                    "(keep transformer_enc_dec.ipynb next to the tests/ folder)")
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


def call(name: str, fn, *args, optional: bool = False, **kwargs):
    """fn(*args, **kwargs); NotImplementedError becomes a clear failure (or a skip for a bonus)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        pass  # reported below, outside the except block, without the chained traceback
    if optional:
        pytest.skip(f"{name}: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
    pytest.fail(f"{name}: 아직 구현되지 않았습니다 (NotImplementedError) — raise 줄을 지우고 구현하세요. / "
                f"{name} is not implemented yet (NotImplementedError): replace the raise with your code.")


def defined(nb: NotebookNamespace, name: str):
    value = nb.get(name)
    if value is None:
        pytest.fail(f"{name}이(가) 노트북에 없습니다 / no {name} in the notebook: keep the template's names.")
    return value


def norm_first(nb: NotebookNamespace) -> bool:
    declared = nb.get("NORM_FIRST")
    assert isinstance(declared, bool), "NORM_FIRST는 True 또는 False여야 합니다 / NORM_FIRST must be True or False"
    return declared


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


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter drawn anew (LayerNorm weights around 1), so that a swapped parameter shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim > 1:
                p.copy_(noise * 0.3)
            elif ".norm" in f".{name}" and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return module.eval()


def copy_attention(ours, theirs: nn.MultiheadAttention) -> None:
    """torch's packed in_proj (q, k, v rows) and out_proj from our w_q, w_k, w_v, w_o."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        theirs.out_proj.weight.copy_(ours.w_o.weight)
        theirs.out_proj.bias.copy_(ours.w_o.bias)


def copy_common(ours, theirs) -> None:
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(theirs, name).weight.copy_(getattr(ours.feed_forward, name).weight)
            getattr(theirs, name).bias.copy_(getattr(ours.feed_forward, name).bias)
        for name in ("norm1", "norm2", "norm3"):
            if hasattr(ours, name) and hasattr(theirs, name):
                getattr(theirs, name).weight.copy_(getattr(ours, name).weight)
                getattr(theirs, name).bias.copy_(getattr(ours, name).bias)


def tokens(seed: int, *shape: int, vocab: int = 15) -> torch.Tensor:
    return torch.randint(4, vocab, shape, generator=torch.Generator().manual_seed(seed))


def small_model(nb, seed: int, n_layers: int = 2, vocab: tuple[int, int] = (15, 17)):
    model = defined(nb, "Transformer")(vocab[0], vocab[1], E, H, n_layers, FF, 0.0, 32)
    randomise(model, seed)
    with torch.no_grad():
        model.generator.weight.mul_(6.0)          # decisive logits: no near-ties between tokens
        model.generator.bias[PAD] = -30.0         # PAD and BOS are never generated
        model.generator.bias[BOS] = -30.0
    return model.eval()


# -----------------------------------------------------------------------------
# Masks and attention


def test_masks(nb):
    src = torch.tensor([[5, 6, 7, PAD], [5, PAD, PAD, PAD]])
    mask = call("make_src_mask", defined(nb, "make_src_mask"), src)
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool, "make_src_mask: bool 텐서 / a bool tensor"
    expected = (src != PAD)[:, None, None, :]
    assert torch.equal(torch.broadcast_to(mask, expected.shape), expected), (
        "make_src_mask: (B, 1, 1, S), PAD가 아닌 키에서 True / (B, 1, 1, S), True at the keys that are not PAD")
    tgt = torch.tensor([[BOS, 5, 6, EOS], [BOS, 5, PAD, PAD]])
    mask = call("make_tgt_mask", defined(nb, "make_tgt_mask"), tgt)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    expected = causal[None, None] & (tgt != PAD)[:, None, None, :]
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.bool, "make_tgt_mask: bool 텐서 / a bool tensor"
    assert torch.equal(torch.broadcast_to(mask, expected.shape), expected), (
        "make_tgt_mask: (B, 1, T, T), 키 j <= 쿼리 i이고 키가 PAD가 아닐 때 True (대각선 포함) / True where key "
        "j <= query i and the key is not PAD (the diagonal included)")


def test_multi_head_attention_matches_pytorch(nb):
    ours = randomise(defined(nb, "MultiHeadAttention")(E, H), 1)
    theirs = nn.MultiheadAttention(E, H, batch_first=True).eval()
    copy_attention(ours, theirs)
    g = torch.Generator().manual_seed(2)
    query, memory = torch.randn(2, 5, E, generator=g), torch.randn(2, 7, E, generator=g)
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[1, 4:] = False
    out, weights = call("MultiHeadAttention.forward", ours, query, memory, memory, keep[:, None, None, :])
    expected, expected_weights = theirs(query, memory, memory, key_padding_mask=~keep, average_attn_weights=False)
    fix = ("w_q, w_k, w_v로 투영하고 특성을 헤드로 순서대로 나누고 (B, T, E) -> (B, H, T, dh), softmax(QK^T / "
           "sqrt(dh)), 합칠 때는 reshape 전에 transpose, 그다음 w_o. / Project with w_q, w_k, w_v, split the features "
           "into heads in order, softmax(QK^T / sqrt(dh)), transpose before reshaping to merge, then w_o.")
    assert_close(out, expected, "MultiHeadAttention output", fix)
    assert_close(weights, expected_weights, "MultiHeadAttention weights (B, H, T, S)", fix)


def test_encoder_layer_matches_pytorch(nb):
    style = norm_first(nb)
    ours = randomise(defined(nb, "EncoderLayer")(E, H, FF, 0.0, norm_first=style), 3)
    theirs = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True, norm_first=style).eval()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_common(ours, theirs)
    x = torch.randn(2, 6, E, generator=torch.Generator().manual_seed(4))
    out, _ = call("EncoderLayer.forward", ours, x)
    with torch.no_grad():
        expected = theirs(x)
    assert_close(out, expected, f"EncoderLayer (NORM_FIRST={style})",
                 "post-LN: norm1(x + attn(x)), norm2(x + ffn(x)); pre-LN: x + attn(norm1(x)), x + ffn(norm2(x)). "
                 "NORM_FIRST가 여러분의 구현과 맞는지도 확인하세요 / check that NORM_FIRST matches your code.")


def test_decoder_layer_matches_pytorch(nb):
    style = norm_first(nb)
    ours = randomise(defined(nb, "DecoderLayer")(E, H, FF, 0.0, norm_first=style), 5)
    theirs = nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, batch_first=True, norm_first=style).eval()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_attention(ours.cross_attn, theirs.multihead_attn)
    copy_common(ours, theirs)
    g = torch.Generator().manual_seed(6)
    y, memory = torch.randn(2, 5, E, generator=g), torch.randn(2, 7, E, generator=g)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    out, self_weights, cross_weights = call("DecoderLayer.forward", ours, y, memory,
                                            torch.ones(2, 1, 1, 7, dtype=torch.bool), causal[None, None])
    with torch.no_grad():
        expected = theirs(y, memory, tgt_mask=~causal)
    assert_close(out, expected, f"DecoderLayer (NORM_FIRST={style})",
                 "셀프 어텐션(인과 마스크) -> 교차 어텐션(쿼리는 디코더, 키·값은 memory) -> FFN, 각각 잔차와 norm1/2/3. / "
                 "Self-attention (causal mask) -> cross-attention (queries from the decoder, keys and values from "
                 "memory) -> FFN, each with its residual and norm1/2/3.")
    assert self_weights.shape == (2, H, 5, 5) and cross_weights.shape == (2, H, 5, 7), (
        "DecoderLayer는 (y, self_weights (B, H, T, T), cross_weights (B, H, T, S))를 돌려줘야 합니다 / must return "
        "(y, self_weights (B, H, T, T), cross_weights (B, H, T, S))")


# -----------------------------------------------------------------------------
# The model: no look at the future, padding, teacher forcing


def test_decoder_does_not_see_the_future(nb):
    model = small_model(nb, 7)
    src, tgt_in = tokens(8, 2, 6), torch.cat([torch.full((2, 1), BOS), tokens(9, 2, 5, vocab=17)], dim=1)
    with torch.no_grad():
        base = call("Transformer.forward", model, src, tgt_in)
        for j in range(1, 6):
            changed = tgt_in.clone()
            changed[:, j] = (changed[:, j] - 3) % 13 + 4
            moved = (model(src, changed) - base).abs().amax(dim=(0, 2))
            assert bool((moved[:j] < 1e-5).all()), (
                f"목표 토큰 {j}를 바꾸자 그 앞의 출력 {int((moved[:j] >= 1e-5).nonzero()[0])}이(가) 바뀌었습니다: 디코더가 "
                f"미래를 봅니다 / changing target token {j} changed an earlier output: the decoder sees the future "
                "(make_tgt_mask: key j <= query i)")
            assert bool((moved[j:] > 1e-5).all()), (
                f"목표 토큰 {j}를 바꿔도 위치 {j} 이후의 출력이 바뀌지 않았습니다 / changing target token {j} did not "
                f"change the outputs at {j} and after")


def test_padding_changes_nothing(nb):
    model = small_model(nb, 10)
    src = tokens(11, 2, 6)
    src[1, 3:] = PAD
    longer = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    with torch.no_grad():
        memory = call("Transformer.encode", model.encode, src)
        memory_longer = model.encode(longer)
    real = src != PAD
    assert_close(memory_longer[:, :6][real], memory[real], "encode() with 3 more PAD columns",
                 "패딩된 키를 가리세요: encode는 make_src_mask(src)를 모든 인코더 층에 넘겨야 합니다. / Mask the padded "
                 "keys: encode must pass make_src_mask(src) to every encoder layer.")
    layer = randomise(defined(nb, "DecoderLayer")(E, H, FF, 0.0), 12)
    g = torch.Generator().manual_seed(13)
    y, memory = torch.randn(2, 4, E, generator=g), torch.randn(2, 6, E, generator=g)
    keys = (src != PAD)[:, None, None, :]
    causal = torch.ones(4, 4, dtype=torch.bool).tril()[None, None]
    moved = memory.clone()
    moved[1, 3:] += 5.0
    with torch.no_grad():
        out, _, cross = call("DecoderLayer.forward", layer, y, memory, keys, causal)
        out_moved, _, _ = layer(y, moved, keys, causal)
    assert float(cross[1, :, :, 3:].abs().max()) == 0.0, (
        "교차 어텐션이 패딩된 소스 위치에 가중치를 줍니다: src_mask를 cross_attn에 넘기세요 / cross-attention gives "
        "weight to padded source positions: pass src_mask to cross_attn")
    assert_close(out_moved, out, "DecoderLayer with other memory at padded positions",
                 "패딩된 memory는 출력에 영향을 주면 안 됩니다 / memory at padded positions must change nothing")


def test_teacher_forcing_and_loss(nb):
    tgt = torch.tensor([[BOS, 5, 6, 7, EOS], [BOS, 8, EOS, PAD, PAD]])
    result = call("shift_targets", defined(nb, "shift_targets"), tgt)
    assert isinstance(result, (tuple, list)) and len(result) == 2, "shift_targets: (decoder_input, labels)"
    assert torch.equal(result[0], tgt[:, :-1]) and torch.equal(result[1], tgt[:, 1:]), (
        "디코더 입력은 tgt[:, :-1](BOS로 시작), 레이블은 tgt[:, 1:] / the decoder input is tgt[:, :-1] (starting "
        "with BOS), the labels tgt[:, 1:]")
    logits = torch.randn(2, 4, 11, generator=torch.Generator().manual_seed(14))
    loss = defined(nb, "sequence_loss")
    for smoothing in (0.0, 0.1):
        actual = call("sequence_loss", loss, logits, tgt[:, 1:], label_smoothing=smoothing)
        expected = F.cross_entropy(logits.reshape(-1, 11), tgt[:, 1:].reshape(-1), ignore_index=PAD,
                                   label_smoothing=smoothing)
        assert_close(torch.as_tensor(actual).reshape(()), expected, f"sequence_loss(label_smoothing={smoothing})",
                     "PAD 레이블은 빼고 평균하세요 (ignore_index=PAD) / average over the labels that are not PAD")


# -----------------------------------------------------------------------------
# Decoding


def test_greedy_decode_follows_the_model(nb):
    model = small_model(nb, 15, n_layers=1)
    src = tokens(16, 3, 6)
    out = call("Transformer.greedy_decode", model.greedy_decode, src, 8)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.long and out.ndim == 2 and out.shape[0] == 3, (
        "greedy_decode: int64 (B, L) / int64 (B, L)")
    assert out.shape[1] <= 8, "최대 max_len 스텝 / at most max_len steps"
    for r, row in enumerate(out.tolist()):
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:]), (
                f"행 {r}: EOS 뒤는 PAD여야 합니다 / row {r}: PAD after EOS ({row})")
    with torch.no_grad():  # every token is the argmax of the model's own logits given the prefix before it
        tgt_in = torch.cat([torch.full((3, 1), BOS), out[:, :-1]], dim=1)
        best = model(src, tgt_in).argmax(dim=-1)
    for r, row in enumerate(out.tolist()):
        end = row.index(EOS) + 1 if EOS in row else len(row)
        assert row[:end] == best[r, :end].tolist(), (
            f"행 {r}: 각 스텝의 토큰이 그 앞 토큰들이 주어졌을 때의 argmax가 아닙니다 / row {r}: a token is not the "
            f"argmax given the tokens before it ({row[:end]} vs {best[r, :end].tolist()})")


def test_beam_search(nb):
    model = small_model(nb, 17, n_layers=1)
    src = tokens(18, 1, 6)
    greedy = call("Transformer.greedy_decode", model.greedy_decode, src, 8)
    result = call("Transformer.beam_search", model.beam_search, src, beam_size=1, max_len=8, alpha=0.6)
    assert isinstance(result, (tuple, list)) and len(result) == 3, "beam_search: (tokens, scores, log_probs)"
    assert torch.equal(result[0], greedy), (
        f"beam_size=1은 탐욕 디코딩과 같아야 합니다 / one beam must be greedy decoding: {result[0].tolist()} vs "
        f"{greedy.tolist()}")
    with torch.no_grad():
        model.generator.bias[EOS] = 2.0  # EOS likely: hypotheses of different lengths
    alpha = 1.0
    hypotheses, scores, log_probs = model.beam_search(src, beam_size=4, max_len=8, alpha=alpha)
    assert hypotheses.shape[0] == 4 and scores.shape == (4,) and log_probs.shape == (4,), "K = beam_size = 4"
    assert bool((scores[:-1] >= scores[1:] - 1e-6).all()), f"점수가 높은 순이어야 합니다 / best score first: {scores}"
    for k, row in enumerate(hypotheses.tolist()):
        n = sum(t != PAD for t in row)
        if EOS in row:
            assert row.index(EOS) == n - 1, f"가설 {k}: EOS 뒤는 PAD / hypothesis {k}: PAD after EOS ({row})"
        with torch.no_grad():  # the log-probability is the model's own, teacher-forced
            tgt_in = torch.tensor([[BOS] + row[:n - 1]])
            own = torch.log_softmax(model(src, tgt_in)[0].float(), dim=-1)[torch.arange(n), torch.tensor(row[:n])].sum()
        assert_close(log_probs[k].reshape(()), own, f"log_probs[{k}]",
                     "가설의 로그 확률 = 각 토큰의 log-softmax 합 / the sum of each token's log-softmax", tol={"atol": 1e-4,
                                                                                                   "rtol": 1e-4})
        assert_close(scores[k].reshape(()), own / ((5.0 + n) / 6.0) ** alpha, f"scores[{k}]",
                     "점수 = log_prob / ((5 + n) / 6) ** alpha, n = EOS를 포함한 토큰 수 / score = log_prob / "
                     "((5 + n) / 6) ** alpha, n = the tokens including EOS", tol={"atol": 1e-4, "rtol": 1e-4})


def test_length_penalty(nb):
    lengths = torch.tensor([1, 4, 10])
    actual = call("length_penalty", defined(nb, "length_penalty"), lengths, 0.6)
    assert_close(torch.as_tensor(actual, dtype=torch.float32), ((5.0 + lengths.float()) / 6.0) ** 0.6,
                 "length_penalty", "((5 + n) / 6) ** alpha (Wu et al. 2016)")


def test_answers_are_filled(nb):
    answers = nb.get("ANSWERS")
    assert isinstance(answers, dict), "ANSWERS 딕셔너리가 없습니다 / there is no ANSWERS dict"
    for key, kind in ANSWER_KEYS.items():
        value = answers.get(key)
        assert value is not None, f"ANSWERS['{key}']를 채우세요 / fill in ANSWERS['{key}']"
        if kind == "number":
            assert isinstance(value, (int, float)), f"ANSWERS['{key}']는 숫자 / must be a number"
        else:
            assert str(value).strip().lower() in ("a", "b", "c", "d"), f"ANSWERS['{key}']: 'a'..'d'"


# -----------------------------------------------------------------------------
# Bonus


def _dependence(model, ids) -> torch.Tensor:
    with torch.no_grad():
        base = model(ids)
        found = []
        for j in range(ids.shape[1]):
            changed = ids.clone()
            changed[:, j] = (changed[:, j] - 3) % 13 + 4
            found.append((model(changed) - base).abs().amax(dim=(0, 2)) > 1e-5)
    return torch.stack(found, dim=1)   # (i, j): output i moved when input j changed


def test_bonus_bert(nb):
    model = randomise(defined(nb, "BERT")(17, E, H, 2, FF, 32, 0.0), 19)
    ids = tokens(20, 2, 5)
    call("BERT.forward", model, ids, optional=True)
    assert bool(_dependence(model, ids).all()), "BERT: 모든 출력이 모든 위치에 의존해야 합니다 / every output " \
                                                "depends on every position (no causal mask)"
    logits = torch.randn(2, 5, 17, generator=torch.Generator().manual_seed(21))
    masked = torch.tensor([[True, False, False, True, False], [False, False, True, False, False]])
    loss = call("masked_lm_loss", defined(nb, "masked_lm_loss"), logits, ids, masked, optional=True)
    assert_close(torch.as_tensor(loss).reshape(()), F.cross_entropy(logits[masked], ids[masked]), "masked_lm_loss",
                 "가려진 위치에서만 평균하세요 / average over the masked positions only")


def test_bonus_gpt(nb):
    model = randomise(defined(nb, "GPT")(17, E, H, 2, FF, 32, 0.0), 22)
    ids = tokens(23, 2, 5)
    call("GPT.forward", model, ids, optional=True)
    found = _dependence(model, ids)
    assert torch.equal(found, torch.ones(5, 5, dtype=torch.bool).tril()), (
        f"GPT: 출력 i는 위치 j <= i에만 의존해야 합니다 / output i depends on positions j <= i only:\n{found.int()}")


def test_bonus_kv_cache(nb):
    model = small_model(nb, 24)
    src = tokens(25, 3, 6)
    expected = call("Transformer.greedy_decode", model.greedy_decode, src, 10, optional=True)
    cached = call("greedy_decode(use_cache=True)", model.greedy_decode, src, 10, use_cache=True, optional=True)
    assert torch.equal(cached, expected), (
        f"캐시를 쓴 디코딩이 캐시 없는 디코딩과 다릅니다 / cached decoding differs: {cached.tolist()} vs "
        f"{expected.tolist()}")
