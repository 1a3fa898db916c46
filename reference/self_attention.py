"""Reference implementation of the w6-self-attention assignment (memory-efficient attention).

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: masks, the numerically stable softmax and its online (streaming) form, plain attention,
chunked attention, the bonus variants (flash, sparse/local, linear), and a small benchmark helper.

Conventions (identical to ``torch.nn.functional.scaled_dot_product_attention``):
- ``q (B, H, Tq, d)``, ``k (B, H, Tk, d)``, ``v (B, H, Tk, dv)``; scores are scaled by ``1/sqrt(d)``;
- a boolean mask is ``True`` where attention is *allowed*; a float mask is *added* to the scores
  (``0`` keeps, ``-inf`` blocks); masks broadcast to ``(B, H, Tq, Tk)``;
- scores, softmax and accumulation are computed in float32 whatever the input dtype (so fp16/bf16
  inputs whose scores exceed the fp16 range, 65504, stay finite); outputs come back in ``q.dtype``;
- a query row whose keys are all blocked (boolean ``False`` or ``-inf``) gives zeros, never NaN. A
  *finite* large negative (e.g. ``-1e9``) is an ordinary, tiny weight: a row that is ``-1e9``
  everywhere is a uniform softmax, exactly as in PyTorch.

Peak memory on CPU (``measure_peak_memory_bytes``) is *measured*, not estimated: the function runs
under ``torch.profiler.profile(profile_memory=True)`` and the per-allocation ``[memory]`` events
(``nbytes`` > 0 allocates, < 0 frees) are replayed in time order; the peak of the running sum is the
peak extra memory of the call. This counts every tensor allocated through PyTorch's CPU allocator
on the profiled thread (inputs allocated before the call are excluded); scratch buffers that BLAS /
oneDNN allocate internally are not seen. It was checked on torch 2.13 (CPU): plain attention's
peak grows 4x per doubling of T (the T x T scores), chunked attention's 2x. On CUDA the same helper
uses ``torch.cuda.reset_peak_memory_stats`` / ``torch.cuda.max_memory_allocated``.
``attention_memory_bytes`` is the analytic size of one score matrix, for the theory questions.

References:
- Vaswani et al. 2017, "Attention Is All You Need" (scaled dot-product attention).
- Milakov & Gimelshein 2018, "Online normalizer calculation for softmax" (the running max / sum).
- Rabe & Staats 2021, "Self-attention Does Not Need O(n^2) Memory" (chunked attention over keys).
- Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness"
  (tiling over queries and keys with the online softmax).
- Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive Transformers with Linear
  Attention" (feature map elu(x) + 1, O(T) attention).
- Child et al. 2019, "Generating Long Sequences with Sparse Transformers" (local and strided
  attention patterns).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "padding_mask",
    "causal_mask",
    "local_attention_mask",
    "strided_attention_mask",
    "combine_masks",
    "scaled_dot_product_attention",
    "chunked_attention",
    "flash_attention",
    "sparse_attention",
    "linear_attention",
    "attention_memory_bytes",
    "measure_peak_memory_bytes",
    "BenchmarkConfig",
    "benchmark_attention",
]

# Scores, softmax and accumulators always live in this dtype (fp16 overflows above 65504).
COMPUTE_DTYPE = torch.float32

DeviceLike = Union[str, torch.device, None]


# -----------------------------------------------------------------------------
# Masks (True = attention allowed)


def padding_mask(lengths: Union[Tensor, Sequence[int]], max_len: int) -> Tensor:
    """Key-padding mask: bool ``(B, 1, 1, max_len)``, ``True`` at key positions ``< lengths[b]``."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    positions = torch.arange(max_len, device=lengths.device)  # (max_len,)
    mask = positions[None, :] < lengths[:, None]  # (1, max_len) < (B, 1) -> (B, max_len)
    return mask.view(lengths.shape[0], 1, 1, max_len)  # (B, 1, 1, max_len)


def causal_mask(T: int, device: DeviceLike = None) -> Tensor:
    """Causal mask: bool ``(T, T)``, ``True`` where key index ``j <= i`` (query index)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


def local_attention_mask(T: int, window: int, device: DeviceLike = None) -> Tensor:
    """Local (banded) mask: bool ``(T, T)``, ``True`` where ``abs(i - j) <= window``."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    idx = torch.arange(T, device=device)  # (T,)
    return (idx[:, None] - idx[None, :]).abs() <= window  # (T, 1) - (1, T) -> (T, T)


def strided_attention_mask(T: int, stride: int, device: DeviceLike = None) -> Tensor:
    """Strided sparse mask of Child et al. 2019 (their "strided" pattern), bool ``(T, T)``.

    Causal (``j <= i``) and the union of the two heads' patterns of the paper: the previous
    ``stride`` positions (``i - j < stride``, a sliding window including ``i``) or every
    ``stride``-th position before ``i`` (``(i - j) % stride == 0``). This is the sliding-window
    form of the local part, not the "fixed" pattern's aligned blocks (``i // stride == j // stride``).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    idx = torch.arange(T, device=device)  # (T,)
    offset = idx[:, None] - idx[None, :]  # (T, 1) - (1, T) -> (T, T), i - j
    return (offset >= 0) & ((offset < stride) | (offset % stride == 0))  # (T, T)


def combine_masks(*masks: Optional[Tensor]) -> Optional[Tensor]:
    """Combine masks into one; ``None`` entries are ignored (all ``None`` -> ``None``).

    All boolean -> boolean AND (broadcast). Any float -> float additive sum (broadcast), booleans
    converted to ``0`` (allowed) / ``-inf`` (blocked), in the promoted dtype of the float masks.
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    device = present[0].device
    present = [m.to(device) for m in present]
    for m in present:
        if m.dtype != torch.bool and not m.is_floating_point():
            raise TypeError(f"masks must be bool or floating point, got {m.dtype}")
    floats = [m for m in present if m.is_floating_point()]
    if not floats:
        combined = present[0]
        for m in present[1:]:
            combined = combined & m  # broadcast AND
        return combined
    dtype = floats[0].dtype
    for m in floats[1:]:
        dtype = torch.promote_types(dtype, m.dtype)
    combined = None
    for m in present:
        if m.dtype == torch.bool:
            m = torch.zeros(m.shape, dtype=dtype, device=device).masked_fill(~m, float("-inf"))
        else:
            m = m.to(dtype)
        combined = m if combined is None else combined + m  # broadcast sum
    return combined


# -----------------------------------------------------------------------------
# Building blocks: input checks, mask application, stable softmax, online softmax


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "expected q (B, H, Tq, d), k (B, H, Tk, d), v (B, H, Tk, dv); got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(f"batch/head dims differ: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k head dims differ: {q.shape[-1]} vs {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v lengths differ: {k.shape[-2]} vs {v.shape[-2]}")


def _check_positive(value: int, name: str) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _broadcast_mask(mask: Tensor, shape: tuple[int, int, int, int], device: torch.device) -> Tensor:
    """Broadcast a bool/float mask to ``shape`` (B, H, Tq, Tk) as a view (no copy)."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask must be bool or floating point, got {mask.dtype}")
    try:
        return mask.to(device).expand(shape)  # (B, H, Tq, Tk), stride-0 view where broadcast
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {shape}") from err


def _apply_mask(scores: Tensor, mask: Tensor) -> Tensor:
    """Bool mask: blocked -> ``-inf``; float mask: added. ``scores`` is float32."""
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask.to(scores.dtype)


def _masked_softmax(scores: Tensor) -> Tensor:
    """Softmax over the last dim, max-subtracted; a row that is all ``-inf`` gives zeros."""
    row_max = scores.amax(dim=-1, keepdim=True)  # (..., Tq, 1)
    row_max = row_max.masked_fill(torch.isneginf(row_max), 0.0)  # all-blocked rows: exp(-inf) = 0
    exp = torch.exp(scores - row_max)  # (..., Tq, Tk), every entry <= 1: no overflow
    denom = exp.sum(dim=-1, keepdim=True)  # (..., Tq, 1)
    return exp / torch.where(denom > 0, denom, torch.ones_like(denom))  # 0 / 1 = 0 for blocked rows


def _online_softmax_init(q32: Tensor, dv: int) -> tuple[Tensor, Tensor, Tensor]:
    """Empty running state for queries ``q32 (B, H, Tq, d)``: (row max, denominator, accumulator)."""
    B, H, Tq, _ = q32.shape
    row_max = q32.new_full((B, H, Tq, 1), float("-inf"))  # (B, H, Tq, 1)
    denom = q32.new_zeros((B, H, Tq, 1))  # (B, H, Tq, 1)
    acc = q32.new_zeros((B, H, Tq, dv))  # (B, H, Tq, dv)
    return row_max, denom, acc


def _online_softmax_step(
    row_max: Tensor, denom: Tensor, acc: Tensor, scores: Tensor, v_blk: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Fold one block of (masked, scaled) scores and its values into the running softmax state.

    With ``m`` the running max, ``l`` the running sum of ``exp(s - m)`` and ``acc`` the running
    ``sum exp(s - m) v``: when the max grows to ``m'``, both are rescaled by ``exp(m - m')``.
    """
    new_max = torch.maximum(row_max, scores.amax(dim=-1, keepdim=True))  # (B, H, Tq, 1)
    safe_max = new_max.masked_fill(torch.isneginf(new_max), 0.0)  # rows blocked so far stay at 0
    correction = torch.exp(row_max - safe_max)  # (B, H, Tq, 1); exp(-inf) = 0 on the first block
    p = torch.exp(scores - safe_max)  # (B, H, Tq, C)
    denom = denom * correction + p.sum(dim=-1, keepdim=True)  # (B, H, Tq, 1)
    acc = acc * correction + p @ v_blk  # (B, H, Tq, C) @ (B, H, C, dv) -> (B, H, Tq, dv)
    return new_max, denom, acc


def _online_softmax_finish(denom: Tensor, acc: Tensor) -> Tensor:
    """Normalise the accumulator; fully blocked rows (denominator 0, accumulator 0) give zeros."""
    return acc / torch.where(denom > 0, denom, torch.ones_like(denom))  # (B, H, Tq, dv)


# -----------------------------------------------------------------------------
# Attention


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None
) -> tuple[Tensor, Tensor]:
    """Plain attention ``softmax(q k^T / sqrt(d) + mask) v`` (Vaswani et al. 2017).

    Returns ``(output (B, H, Tq, dv) in q.dtype, weights (B, H, Tq, Tk) in float32)``. Materialises
    the full ``(B, H, Tq, Tk)`` score matrix: memory O(Tq * Tk).
    """
    _check_qkv(q, k, v)
    B, H, Tq, d = q.shape
    Tk = k.shape[-2]
    q32 = q.to(COMPUTE_DTYPE) * (1.0 / math.sqrt(d))  # (B, H, Tq, d)
    scores = q32 @ k.to(COMPUTE_DTYPE).transpose(-2, -1)  # (B, H, Tq, d) @ (B, H, d, Tk) -> (B, H, Tq, Tk)
    if mask is not None:
        scores = _apply_mask(scores, _broadcast_mask(mask, (B, H, Tq, Tk), q.device))  # (B, H, Tq, Tk)
    weights = _masked_softmax(scores)  # (B, H, Tq, Tk), float32
    out = weights @ v.to(COMPUTE_DTYPE)  # (B, H, Tq, Tk) @ (B, H, Tk, dv) -> (B, H, Tq, dv)
    return out.to(q.dtype), weights


def chunked_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None, chunk_size: int = 128
) -> Tensor:
    """Attention over keys ``chunk_size`` at a time with an online softmax (Rabe & Staats 2021).

    Exactly equal (up to float rounding) to ``scaled_dot_product_attention(...)[0]``. The mask is
    broadcast to ``(B, H, Tq, Tk)`` as a view and sliced along its last dim per chunk, so the
    extra memory is O(Tq * chunk_size) per (batch, head), not O(Tq * Tk). The last chunk may be
    shorter (``Tk`` need not be a multiple of ``chunk_size``).
    """
    _check_qkv(q, k, v)
    _check_positive(chunk_size, "chunk_size")
    B, H, Tq, d = q.shape
    Tk, dv = v.shape[-2], v.shape[-1]
    q32 = q.to(COMPUTE_DTYPE) * (1.0 / math.sqrt(d))  # (B, H, Tq, d)
    full_mask = None if mask is None else _broadcast_mask(mask, (B, H, Tq, Tk), q.device)  # view
    row_max, denom, acc = _online_softmax_init(q32, dv)
    for start in range(0, Tk, chunk_size):
        stop = min(start + chunk_size, Tk)
        k_blk = k[:, :, start:stop].to(COMPUTE_DTYPE)  # (B, H, C, d)
        v_blk = v[:, :, start:stop].to(COMPUTE_DTYPE)  # (B, H, C, dv)
        scores = q32 @ k_blk.transpose(-2, -1)  # (B, H, Tq, d) @ (B, H, d, C) -> (B, H, Tq, C)
        if full_mask is not None:
            scores = _apply_mask(scores, full_mask[..., start:stop])  # (B, H, Tq, C)
        row_max, denom, acc = _online_softmax_step(row_max, denom, acc, scores, v_blk)
    return _online_softmax_finish(denom, acc).to(q.dtype)  # (B, H, Tq, dv)


def flash_attention(
    q: Tensor, k: Tensor, v: Tensor, causal: bool = False, block_size: int = 64
) -> Tensor:
    """FlashAttention's algorithm (Dao et al. 2022): tiles of ``block_size`` queries x keys.

    For each query block, key blocks are folded in with the online softmax, so only a
    ``(block_size, block_size)`` score tile per (batch, head) is alive at once. ``causal=True`` means
    key ``j`` is allowed for query ``i`` iff ``j <= i`` (top-left aligned, like ``is_causal`` of
    ``torch.nn.functional.scaled_dot_product_attention`` when ``Tq != Tk``); key blocks entirely
    above the diagonal are skipped and only tiles straddling it are masked. This is the algorithm,
    in PyTorch ops; it has none of the fused-kernel speed of the real FlashAttention.
    """
    _check_qkv(q, k, v)
    _check_positive(block_size, "block_size")
    B, H, Tq, d = q.shape
    Tk, dv = v.shape[-2], v.shape[-1]
    q32 = q.to(COMPUTE_DTYPE) * (1.0 / math.sqrt(d))  # (B, H, Tq, d)
    out = q.new_empty((B, H, Tq, dv))  # (B, H, Tq, dv)
    for q_start in range(0, Tq, block_size):
        q_stop = min(q_start + block_size, Tq)
        q_blk = q32[:, :, q_start:q_stop]  # (B, H, Bq, d)
        k_end = min(Tk, q_stop) if causal else Tk  # causal: keys j > q_stop - 1 are never allowed
        row_max, denom, acc = _online_softmax_init(q_blk, dv)
        for k_start in range(0, k_end, block_size):
            k_stop = min(k_start + block_size, k_end)
            k_blk = k[:, :, k_start:k_stop].to(COMPUTE_DTYPE)  # (B, H, Bk, d)
            v_blk = v[:, :, k_start:k_stop].to(COMPUTE_DTYPE)  # (B, H, Bk, dv)
            scores = q_blk @ k_blk.transpose(-2, -1)  # (B, H, Bq, d) @ (B, H, d, Bk) -> (B, H, Bq, Bk)
            if causal and k_stop - 1 > q_start:  # tile straddles the diagonal
                q_idx = torch.arange(q_start, q_stop, device=q.device)  # (Bq,)
                k_idx = torch.arange(k_start, k_stop, device=q.device)  # (Bk,)
                blocked = k_idx[None, :] > q_idx[:, None]  # (1, Bk) > (Bq, 1) -> (Bq, Bk)
                scores = scores.masked_fill(blocked, float("-inf"))  # (B, H, Bq, Bk)
            row_max, denom, acc = _online_softmax_step(row_max, denom, acc, scores, v_blk)
        out[:, :, q_start:q_stop] = _online_softmax_finish(denom, acc).to(q.dtype)  # (B, H, Bq, dv)
    return out


def sparse_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Local (banded) attention: equal to plain attention under ``local_attention_mask(T, window)``.

    Only the band is computed (Child et al. 2019, local pattern). Queries are cut into blocks of
    ``S = max(window, 1)`` rows; block ``b`` (queries ``b*S .. b*S + S - 1``) can only see keys
    ``b*S - window .. b*S + S - 1 + window``, a slab of ``S + 2 * window`` keys taken from the keys
    zero-padded by ``window`` on both sides. Inside each ``(S, S + 2 * window)`` tile the band and
    the sequence ends are masked. Time and memory are O(T * window) scores plus O(T * d) copies
    of the key/value slabs, instead of O(T^2). Self-attention only: ``Tq == Tk``.
    """
    _check_qkv(q, k, v)
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    B, H, T, d = q.shape
    if k.shape[-2] != T:
        raise ValueError(f"sparse_attention needs Tq == Tk, got {T} and {k.shape[-2]}")
    dv = v.shape[-1]
    w = min(int(window), max(T - 1, 0))  # |i - j| <= T - 1 always: a wider band changes nothing
    S = max(w, 1)  # queries per block
    n_blocks = -(-T // S)
    T_pad = n_blocks * S
    L = S + 2 * w  # keys visible to one query block
    q32 = q.to(COMPUTE_DTYPE) * (1.0 / math.sqrt(d))  # (B, H, T, d)
    q_blk = F.pad(q32, (0, 0, 0, T_pad - T)).view(B, H, n_blocks, S, d)  # (B, H, nb, S, d)
    k_pad = F.pad(k.to(COMPUTE_DTYPE), (0, 0, w, T_pad - T + w))  # (B, H, T_pad + 2w, d)
    v_pad = F.pad(v.to(COMPUTE_DTYPE), (0, 0, w, T_pad - T + w))  # (B, H, T_pad + 2w, dv)
    k_slab = k_pad.unfold(2, L, S)  # (B, H, nb, d, L) view: k_slab[.., b, :, c] = k[b*S - w + c]
    v_slab = v_pad.unfold(2, L, S).transpose(-2, -1)  # (B, H, nb, dv, L) -> (B, H, nb, L, dv)
    scores = q_blk @ k_slab  # (B, H, nb, S, d) @ (B, H, nb, d, L) -> (B, H, nb, S, L)
    row = torch.arange(S, device=q.device)[:, None]  # (S, 1): query i = b*S + row
    col = torch.arange(L, device=q.device)[None, :]  # (1, L): key j = b*S - w + col
    in_band = (col >= row) & (col - row <= 2 * w)  # (S, L): |i - j| <= w
    key_idx = torch.arange(n_blocks, device=q.device)[:, None] * S - w + col  # (nb, 1) + (1, L) -> (nb, L)
    in_seq = (key_idx >= 0) & (key_idx < T)  # (nb, L): not a padded slot
    allowed = in_band[None, :, :] & in_seq[:, None, :]  # (1, S, L) & (nb, 1, L) -> (nb, S, L)
    weights = _masked_softmax(scores.masked_fill(~allowed, float("-inf")))  # (B, H, nb, S, L)
    out = weights @ v_slab  # (B, H, nb, S, L) @ (B, H, nb, L, dv) -> (B, H, nb, S, dv)
    out = out.reshape(B, H, T_pad, dv)[:, :, :T]  # (B, H, T, dv), padded query rows dropped
    return out.to(q.dtype)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, eps: float = 1e-6) -> Tensor:
    """Non-causal linear attention (Katharopoulos et al. 2020), O(T) in the sequence length.

    ``out_i = phi(q_i) @ (phi(K)^T V) / (phi(q_i) @ sum_j phi(k_j) + eps)`` with
    ``phi(x) = elu(x) + 1`` (positive, so the denominator is > 0). No ``1/sqrt(d)`` scaling and
    no masks: the kernel replaces the softmax.
    """
    _check_qkv(q, k, v)
    phi_q = F.elu(q.to(COMPUTE_DTYPE)) + 1.0  # (B, H, Tq, d)
    phi_k = F.elu(k.to(COMPUTE_DTYPE)) + 1.0  # (B, H, Tk, d)
    kv = phi_k.transpose(-2, -1) @ v.to(COMPUTE_DTYPE)  # (B, H, d, Tk) @ (B, H, Tk, dv) -> (B, H, d, dv)
    k_sum = phi_k.sum(dim=-2).unsqueeze(-1)  # (B, H, d, 1)
    num = phi_q @ kv  # (B, H, Tq, d) @ (B, H, d, dv) -> (B, H, Tq, dv)
    den = phi_q @ k_sum  # (B, H, Tq, d) @ (B, H, d, 1) -> (B, H, Tq, 1)
    return (num / (den + eps)).to(q.dtype)  # (B, H, Tq, dv)


# -----------------------------------------------------------------------------
# Memory


def attention_memory_bytes(B: int, H: int, Tq: int, Tk: int, dtype: torch.dtype) -> int:
    """Bytes of one ``(B, H, Tq, Tk)`` score matrix in ``dtype`` (e.g. 8, 12, 2048, 2048, fp16 -> 768 MiB)."""
    return B * H * Tq * Tk * torch.empty(0, dtype=dtype).element_size()


def measure_peak_memory_bytes(fn: Callable[[], object], device: DeviceLike = "cpu") -> int:
    """Peak memory (bytes) allocated while running ``fn()``, above what was allocated before.

    CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``max_memory_allocated - memory_allocated``.
    CPU: ``torch.profiler`` with ``profile_memory=True``; the per-allocation ``[memory]`` events
    are replayed in time order and the maximum of the running sum is returned (see the module
    docstring for what this does and does not count).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return max(torch.cuda.max_memory_allocated(device) - baseline, 0)
    if device.type != "cpu":
        raise ValueError(f"peak memory is measured on 'cpu' and 'cuda' devices only, got {device}")
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()  # > 0: allocation, < 0: free
        peak = max(peak, current)
    return peak


# -----------------------------------------------------------------------------
# Benchmark


@dataclass(frozen=True)
class BenchmarkConfig:
    """The grid and the input shapes of one benchmark run."""

    seq_lens: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    heads: int = 4
    head_dim: int = 32
    dtype: torch.dtype = torch.float32
    device: str = "cpu"
    repeats: int = 3  # timed calls per cell; the median is reported
    warmup: int = 1  # untimed calls before timing
    seed: int = 0  # the same inputs for every method at a given (seq_len, batch_size)

    def __post_init__(self) -> None:
        if not self.seq_lens or not self.batch_sizes:
            raise ValueError("seq_lens and batch_sizes must not be empty")
        for value in (*self.seq_lens, *self.batch_sizes, self.heads, self.head_dim, self.repeats):
            _check_positive(value, "benchmark sizes and repeats")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _benchmark_inputs(config: BenchmarkConfig, batch_size: int, seq_len: int) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(config.seed)
    shape = (batch_size, config.heads, seq_len, config.head_dim)  # (B, H, T, d)
    q, k, v = (torch.randn(shape, generator=generator) for _ in range(3))
    return tuple(t.to(device=config.device, dtype=config.dtype) for t in (q, k, v))


def _median_time_ms(call: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def benchmark_attention(
    fns: Mapping[str, Callable[[Tensor, Tensor, Tensor], object]],
    seq_lens: Sequence[int],
    batch_sizes: Sequence[int],
    heads: int = 4,
    head_dim: int = 32,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    repeats: int = 3,
) -> list[dict]:
    """Time and measure each ``fns[name](q, k, v)`` on a grid of sequence lengths x batch sizes.

    Returns one row per (method, seq_len, batch_size), in that nesting order:
    ``{"method": str, "seq_len": int, "batch_size": int, "time_ms": float, "peak_mem_mb": float}``
    with ``time_ms`` the median of ``repeats`` timed calls (after one warm-up call) and
    ``peak_mem_mb`` the peak extra memory of one more call, in MiB, from
    ``measure_peak_memory_bytes`` (CUDA allocator statistics, or the CPU profiler). Self-attention
    inputs ``q, k, v`` of shape ``(B, heads, T, head_dim)`` are drawn from a fixed seed.
    """
    config = BenchmarkConfig(
        seq_lens=tuple(int(t) for t in seq_lens),
        batch_sizes=tuple(int(b) for b in batch_sizes),
        heads=heads,
        head_dim=head_dim,
        dtype=dtype,
        device=str(device),
        repeats=repeats,
    )
    dev = torch.device(config.device)
    rows = []
    with torch.no_grad():
        for name, fn in fns.items():
            for seq_len in config.seq_lens:
                for batch_size in config.batch_sizes:
                    q, k, v = _benchmark_inputs(config, batch_size, seq_len)
                    call = lambda: fn(q, k, v)  # noqa: E731
                    time_ms = _median_time_ms(call, dev, config.repeats, config.warmup)
                    peak_bytes = measure_peak_memory_bytes(call, dev)
                    rows.append(
                        {
                            "method": str(name),
                            "seq_len": seq_len,
                            "batch_size": batch_size,
                            "time_ms": float(time_ms),
                            "peak_mem_mb": peak_bytes / 2**20,
                        }
                    )
    return rows
