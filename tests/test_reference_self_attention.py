"""Tests of the w6-self-attention reference (reference/self_attention.py)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from reference.self_attention import (
    BenchmarkConfig,
    attention_memory_bytes,
    benchmark_attention,
    causal_mask,
    chunked_attention,
    combine_masks,
    flash_attention,
    linear_attention,
    local_attention_mask,
    measure_peak_memory_bytes,
    padding_mask,
    scaled_dot_product_attention,
    sparse_attention,
    strided_attention_mask,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ATOL = 1e-5
RTOL = 1e-5


def _qkv(B=2, H=3, Tq=9, Tk=9, d=8, dv=None, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    dv = d if dv is None else dv
    q = torch.randn(B, H, Tq, d, generator=g)
    k = torch.randn(B, H, Tk, d, generator=g)
    v = torch.randn(B, H, Tk, dv, generator=g)
    return tuple(t.to(device=device, dtype=dtype) for t in (q, k, v))


def _random_bool_mask(shape, seed=1, p_keep=0.7):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < p_keep
    mask[..., 0] = True  # no fully blocked rows here
    return mask


# -----------------------------------------------------------------------------
# Masks


def test_padding_mask_shape_and_values():
    mask = padding_mask(torch.tensor([3, 0, 5]), 5)
    assert mask.dtype == torch.bool
    assert mask.shape == (3, 1, 1, 5)
    expected = torch.tensor(
        [[True, True, True, False, False], [False] * 5, [True] * 5]
    ).view(3, 1, 1, 5)
    assert torch.equal(mask, expected)
    assert torch.equal(padding_mask([2], 3), torch.tensor([True, True, False]).view(1, 1, 1, 3))


def test_causal_mask_shape_and_values():
    mask = causal_mask(4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert bool(mask[i, j]) == (j <= i)
    assert causal_mask(3, device="cpu").device.type == "cpu"


def test_local_attention_mask_values():
    T, window = 7, 2
    mask = local_attention_mask(T, window)
    assert mask.dtype == torch.bool and mask.shape == (T, T)
    expected = torch.tensor([[abs(i - j) <= window for j in range(T)] for i in range(T)])
    assert torch.equal(mask, expected)
    assert torch.equal(local_attention_mask(4, 0), torch.eye(4, dtype=torch.bool))


def test_strided_attention_mask_values():
    T, stride = 10, 3
    mask = strided_attention_mask(T, stride)
    assert mask.dtype == torch.bool and mask.shape == (T, T)
    expected = torch.tensor(
        [[j <= i and (i - j < stride or (i - j) % stride == 0) for j in range(T)] for i in range(T)]
    )
    assert torch.equal(mask, expected)
    assert not mask.triu(1).any()  # causal
    assert bool(mask[9, 0]) and bool(mask[9, 3]) and not bool(mask[9, 5])


def test_combine_masks_all_bool_is_and():
    T = 5
    combined = combine_masks(causal_mask(T), None, padding_mask([3, 5], T))
    assert combined.dtype == torch.bool
    assert combined.shape == (2, 1, T, T)
    assert torch.equal(combined, causal_mask(T) & padding_mask([3, 5], T))
    assert combine_masks(None, None) is None
    assert combine_masks() is None


def test_combine_masks_bool_and_float_is_additive():
    T = 4
    bias = torch.arange(T * T, dtype=torch.float32).view(T, T) / 10
    combined = combine_masks(causal_mask(T), bias, None)
    assert combined.dtype == torch.float32 and combined.shape == (T, T)
    for i in range(T):
        for j in range(T):
            if j <= i:
                assert combined[i, j].item() == pytest.approx(bias[i, j].item())
            else:
                assert combined[i, j].item() == float("-inf")
    # broadcasting with a padding mask; used as an additive mask it equals the boolean combination
    q, k, v = _qkv(B=2, H=2, Tq=T, Tk=T)
    pad = padding_mask([2, 4], T)
    additive = combine_masks(pad, causal_mask(T), torch.zeros(T, T))
    assert additive.shape == (2, 1, T, T) and additive.is_floating_point()
    out_float, _ = scaled_dot_product_attention(q, k, v, additive)
    out_bool, _ = scaled_dot_product_attention(q, k, v, combine_masks(pad, causal_mask(T)))
    torch.testing.assert_close(out_float, out_bool, atol=ATOL, rtol=RTOL)


# -----------------------------------------------------------------------------
# Plain attention


def test_sdpa_matches_torch_no_mask_tq_ne_tk_dv_ne_d():
    q, k, v = _qkv(Tq=7, Tk=11, d=8, dv=5)
    out, weights = scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 7, 5) and out.dtype == torch.float32
    assert weights.shape == (2, 3, 7, 11) and weights.dtype == torch.float32
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7), atol=ATOL, rtol=RTOL)
    expected_w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(weights, expected_w, atol=ATOL, rtol=RTOL)


def test_sdpa_matches_torch_bool_mask_broadcast():
    q, k, v = _qkv(Tq=6, Tk=10, dv=4)
    mask = _random_bool_mask((2, 1, 6, 10))
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)
    assert torch.all(weights[~mask.expand(2, 3, 6, 10)] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6), atol=ATOL, rtol=RTOL)


def test_sdpa_matches_torch_additive_mask():
    q, k, v = _qkv(Tq=5, Tk=8)
    g = torch.Generator().manual_seed(3)
    additive = torch.randn(5, 8, generator=g)
    additive[:, 3] = float("-inf")
    additive[:, 5] = -1e9
    out, weights = scaled_dot_product_attention(q, k, v, additive)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=ATOL, rtol=RTOL
    )
    assert torch.all(weights[..., 3] == 0)


def test_sdpa_causal_matches_is_causal():
    q, k, v = _qkv(Tq=12, Tk=12)
    out, weights = scaled_dot_product_attention(q, k, v, causal_mask(12))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)
    assert torch.all(weights.triu(1) == 0)


def test_sdpa_fully_masked_rows_give_zeros():
    q, k, v = _qkv(B=2, H=2, Tq=4, Tk=6)
    bool_mask = torch.ones(2, 1, 4, 6, dtype=torch.bool)
    bool_mask[0, 0, 1] = False  # one query row with no key
    bool_mask[1] = False  # a whole sequence with no key (padding length 0)
    float_mask = torch.zeros(2, 1, 4, 6).masked_fill(~bool_mask, float("-inf"))
    for mask in (bool_mask, float_mask, padding_mask([0, 6], 6)):
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        assert torch.isfinite(out).all() and torch.isfinite(weights).all()
        blocked_rows = ~mask.expand(2, 2, 4, 6).any(-1) if mask.dtype == torch.bool else torch.isneginf(
            mask.expand(2, 2, 4, 6)
        ).all(-1)
        assert blocked_rows.any()
        assert torch.all(out[blocked_rows] == 0) and torch.all(weights[blocked_rows] == 0)
        live = ~blocked_rows
        torch.testing.assert_close(weights.sum(-1)[live], torch.ones(int(live.sum())), atol=ATOL, rtol=RTOL)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.expand(2, 2, 4, 6))
        torch.testing.assert_close(out[live], ref[live], atol=ATOL, rtol=RTOL)


def _naive_fp16_attention(q, k, v):
    """What a student might write: everything in fp16, exp without subtracting the row max."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # fp16
    exp = torch.exp(scores)
    return (exp / exp.sum(-1, keepdim=True)) @ v


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_scores_are_stable(dtype):
    q, k, v = _qkv(B=1, H=2, Tq=16, Tk=16, d=64, seed=5)
    q, k = q * 60, k * 60
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    raw_scores = q.double() @ k.double().transpose(-2, -1)
    assert raw_scores.abs().max() > 65504  # beyond the fp16 range before scaling
    assert (raw_scores / 8).abs().max() > 100  # exp() of these overflows fp16, bf16 and fp32 alike
    naive = _naive_fp16_attention(q, k, v)
    assert not torch.isfinite(naive).all()  # the naive version overflows -> inf / NaN
    ref32 = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    for out in (
        scaled_dot_product_attention(q, k, v)[0],
        chunked_attention(q, k, v, chunk_size=5),
        flash_attention(q, k, v, block_size=5),
    ):
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), ref32, atol=2e-2, rtol=2e-2)
    _, weights = scaled_dot_product_attention(q, k, v)
    assert weights.dtype == torch.float32 and torch.isfinite(weights).all()


# -----------------------------------------------------------------------------
# Chunked attention


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 7, 13, 64])
def test_chunked_matches_plain(chunk_size):
    q, k, v = _qkv(Tq=10, Tk=13, dv=6)
    expected, _ = scaled_dot_product_attention(q, k, v)
    out = chunked_attention(q, k, v, chunk_size=chunk_size)
    assert out.shape == expected.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("chunk_size", [2, 5, 16])
def test_chunked_matches_plain_with_masks(chunk_size):
    q, k, v = _qkv(B=2, Tq=11, Tk=11)
    bool_mask = combine_masks(causal_mask(11), padding_mask([7, 11], 11))  # (2, 1, 11, 11)
    additive = torch.randn(3, 11, 11, generator=torch.Generator().manual_seed(4))  # (H, Tq, Tk)
    for mask in (bool_mask, additive, combine_masks(bool_mask, additive)):
        expected, _ = scaled_dot_product_attention(q, k, v, mask)
        torch.testing.assert_close(chunked_attention(q, k, v, mask, chunk_size), expected, atol=ATOL, rtol=RTOL)


def test_chunked_fully_masked_rows_give_zeros():
    q, k, v = _qkv(B=2, H=1, Tq=5, Tk=9)
    mask = torch.ones(2, 1, 5, 9, dtype=torch.bool)
    mask[0, 0, 2] = False
    mask[1, 0, 3, :4] = False  # blocked in the first chunks only: must not poison later chunks
    mask[1, 0, 4, 4:] = False  # blocked in the last chunks only
    for m in (mask, torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))):
        out = chunked_attention(q, k, v, m, chunk_size=4)
        assert torch.isfinite(out).all()
        assert torch.all(out[0, 0, 2] == 0)
        torch.testing.assert_close(out, scaled_dot_product_attention(q, k, v, m)[0], atol=ATOL, rtol=RTOL)


def test_rejects_bad_arguments():
    q, k, v = _qkv()
    with pytest.raises(ValueError):
        chunked_attention(q, k, v, chunk_size=0)
    with pytest.raises(ValueError):
        scaled_dot_product_attention(q[0], k[0], v[0])
    with pytest.raises(ValueError):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError):
        scaled_dot_product_attention(q, k, v, torch.ones(9, 9, dtype=torch.int64))


# -----------------------------------------------------------------------------
# Bonus: flash, sparse, linear


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_size", [1, 4, 5, 64])
def test_flash_matches_plain(causal, block_size):
    q, k, v = _qkv(Tq=13, Tk=13, dv=6)
    mask = causal_mask(13) if causal else None
    expected, _ = scaled_dot_product_attention(q, k, v, mask)
    out = flash_attention(q, k, v, causal=causal, block_size=block_size)
    assert out.shape == expected.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("Tq,Tk", [(5, 12), (12, 5)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_rectangular_matches_torch(Tq, Tk, causal):
    q, k, v = _qkv(Tq=Tq, Tk=Tk, dv=3)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # top-left aligned when causal
    torch.testing.assert_close(flash_attention(q, k, v, causal=causal, block_size=3), ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("T,window", [(11, 0), (11, 1), (11, 3), (12, 3), (11, 4), (11, 10), (11, 20), (1, 2)])
def test_sparse_matches_dense_under_local_mask(T, window):
    q, k, v = _qkv(Tq=T, Tk=T, dv=5)
    expected, _ = scaled_dot_product_attention(q, k, v, local_attention_mask(T, window))
    out = sparse_attention(q, k, v, window)
    assert out.shape == expected.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=RTOL)


def test_linear_attention_matches_quadratic_formula():
    q, k, v = _qkv(Tq=7, Tk=10, d=8, dv=5)
    out = linear_attention(q, k, v)
    assert out.shape == (2, 3, 7, 5) and out.dtype == q.dtype
    phi_q = F.elu(q.double()) + 1
    phi_k = F.elu(k.double()) + 1
    similarity = phi_q @ phi_k.transpose(-2, -1)  # (B, H, Tq, Tk), the O(T^2) form
    expected = (similarity @ v.double()) / (similarity.sum(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


# -----------------------------------------------------------------------------
# Memory and benchmark


def test_attention_memory_bytes():
    assert attention_memory_bytes(8, 12, 2048, 2048, torch.float16) == 768 * 2**20
    assert attention_memory_bytes(8, 12, 2048, 256, torch.float16) == 96 * 2**20
    assert attention_memory_bytes(1, 1, 3, 5, torch.float32) == 60


def test_measure_peak_memory_bytes_sees_a_transient_allocation():
    n = 1 << 20

    def allocate_and_free():
        big = torch.ones(n, dtype=torch.float32)  # 4 MiB, freed before returning
        return float(big[0])

    peak = measure_peak_memory_bytes(allocate_and_free, "cpu")
    assert 4 * n <= peak < 4 * n + (1 << 20)
    assert measure_peak_memory_bytes(lambda: None, "cpu") == 0


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_and_sparse_peak_memory_grow_slower_than_plain(device):
    B, H, d, chunk = 1, 2, 16, 32
    plain, chunked, banded = [], [], []
    seq_lens = [128, 256, 512]
    for T in seq_lens:
        q, k, v = _qkv(B=B, H=H, Tq=T, Tk=T, d=d, device=device)
        plain.append(measure_peak_memory_bytes(lambda: scaled_dot_product_attention(q, k, v), device))
        chunked.append(measure_peak_memory_bytes(lambda: chunked_attention(q, k, v, chunk_size=chunk), device))
        banded.append(measure_peak_memory_bytes(lambda: sparse_attention(q, k, v, window=8), device))
    for T, p in zip(seq_lens, plain):
        assert p >= attention_memory_bytes(B, H, T, T, torch.float32)  # the score matrix is materialised
    # doubling T: the T x T scores quadruple; chunked memory (Tq x chunk + O(T d)) only doubles
    for i in (1, 2):
        assert plain[i] / plain[i - 1] > 3.0
        assert chunked[i] / chunked[i - 1] < 2.5
        assert banded[i] / banded[i - 1] < 2.5  # sparse_attention computes only the band
        assert chunked[i] < plain[i] and banded[i] < plain[i]
    assert chunked[-1] * 4 < plain[-1]


def test_benchmark_attention_rows():
    fns = {
        "naive": lambda q, k, v: scaled_dot_product_attention(q, k, v)[0],
        "chunked": functools.partial(chunked_attention, chunk_size=16),
    }
    rows = benchmark_attention(fns, seq_lens=[16, 32], batch_sizes=[1, 2], heads=2, head_dim=8, repeats=2)
    assert len(rows) == 2 * 2 * 2
    assert {(r["method"], r["seq_len"], r["batch_size"]) for r in rows} == {
        (m, t, b) for m in fns for t in (16, 32) for b in (1, 2)
    }
    for row in rows:
        assert set(row) == {"method", "seq_len", "batch_size", "time_ms", "peak_mem_mb"}
        assert isinstance(row["method"], str)
        assert isinstance(row["seq_len"], int) and isinstance(row["batch_size"], int)
        assert isinstance(row["time_ms"], float) and row["time_ms"] > 0
        assert isinstance(row["peak_mem_mb"], float) and row["peak_mem_mb"] > 0
    naive_32 = next(r for r in rows if r["method"] == "naive" and r["seq_len"] == 32 and r["batch_size"] == 2)
    naive_16 = next(r for r in rows if r["method"] == "naive" and r["seq_len"] == 16 and r["batch_size"] == 2)
    assert naive_32["peak_mem_mb"] > naive_16["peak_mem_mb"]


def test_benchmark_config_validates():
    config = BenchmarkConfig(seq_lens=(8,), batch_sizes=(1,))
    assert config.repeats == 3 and config.dtype == torch.float32 and config.device == "cpu"
    with pytest.raises(ValueError):
        BenchmarkConfig(seq_lens=(), batch_sizes=(1,))
    with pytest.raises(ValueError):
        benchmark_attention({}, seq_lens=[8], batch_sizes=[0])
