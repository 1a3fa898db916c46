"""자가 점검 / Self-check for w8-midterm.

이 폴더에서 `pytest`를 실행하세요. 패키지 `midterm/`을 불러와 정답 없이도 확인할 수 있는 성질(모양,
템플릿이 정한 파라미터 이름, 어텐션 가중치의 합, 마스크, 디코더가 미래를 보지 않음, 빔 하나의 빔
서치 = 그리디 디코딩, 사인파 공식)을 검사합니다. 통과해도 만점이 보장되지는 않습니다.

Run `pytest` in this folder. It imports the package `midterm/` and checks properties that need no
reference solution: shapes, the parameter names the template fixes, attention weights summing to 1,
the masks, a decoder that does not see the future, beam search with one beam = greedy decoding, the
sinusoidal formula. Passing does not guarantee full marks: the grader uses other (private) inputs.

Another package folder can be checked with SELF_CHECK_PACKAGE_DIR=path/to/folder (the folder that
holds midterm/).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(os.environ.get("SELF_CHECK_PACKAGE_DIR") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))
midterm = pytest.importorskip("midterm")

E, H, F, B, S, T = 24, 4, 40, 2, 7, 6


def _build(factory):
    try:
        return factory()
    except NotImplementedError:
        pytest.fail("not implemented yet: fill in midterm/model.py")


def test_multi_head_attention_shapes_names_and_weights():
    torch.manual_seed(0)
    mha = _build(lambda: midterm.MultiHeadAttention(E, H))
    assert {n for n, _ in mha.named_parameters()} == {f"{w}.{p}" for w in ("w_q", "w_k", "w_v", "w_o")
                                                       for p in ("weight", "bias")}
    q, kv = torch.randn(B, T, E), torch.randn(B, S, E)
    out, weights = mha(q, kv, kv)
    assert out.shape == (B, T, E) and weights.shape == (B, H, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, T), atol=1e-5, rtol=1e-5)


def test_masks():
    src = torch.tensor([[5, 6, 7, 0, 0]])
    src_mask = _build(lambda: midterm.make_src_mask(src))
    assert src_mask.dtype == torch.bool and src_mask.shape == (1, 1, 1, 5)
    assert src_mask.reshape(-1).tolist() == [True, True, True, False, False]
    tgt_mask = _build(lambda: midterm.make_tgt_mask(torch.tensor([[1, 5, 6, 0]])))
    assert tgt_mask.shape == (1, 1, 4, 4)
    expected = torch.ones(4, 4).tril().bool() & torch.tensor([True, True, True, False])
    assert torch.equal(tgt_mask.reshape(4, 4), expected)


def test_sinusoidal_table_formula():
    table = _build(lambda: midterm.sinusoidal_table(16, 8))
    assert table.shape == (16, 8)
    pos, i = 5, 1
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-5)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-5)


def _model():
    torch.manual_seed(0)
    model = _build(lambda: midterm.Transformer(19, 23, d_model=E, n_heads=H, n_layers=1, d_ff=F, dropout=0.0,
                                               max_len=32, norm_first=midterm.NORM_FIRST))
    return model.eval()


def test_the_decoder_does_not_see_the_future():
    model = _model()
    src = torch.randint(4, 19, (2, S))
    tgt = torch.cat([torch.ones(2, 1, dtype=torch.long), torch.randint(4, 23, (2, 5))], dim=1)
    changed = tgt.clone()
    changed[:, 4] = (changed[:, 4] - 3) % 19 + 4
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4], atol=1e-5, rtol=1e-5)
    assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-6


def test_beam_search_with_one_beam_is_greedy():
    model = _model()
    src = torch.randint(4, 19, (1, S))
    greedy = model.greedy_decode(src, max_len=8)
    tokens, scores, log_probs = model.beam_search(src, beam_size=1, max_len=8, alpha=0.6)
    assert torch.equal(tokens[:1, :greedy.shape[1]], greedy)
