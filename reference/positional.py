"""Reference implementation of the w7-positional assignment (positional encodings compared).

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: the sinusoidal table, a learned table, a relative position bias, rotary embeddings
(RoPE), attention with each of the last two, the bonus encodings (adaptive, compressed), and the
small model and task of the length-generalisation experiment.

Conventions (the template fixes them; the grader loads its own weights by these names):
- ``sinusoidal_encoding(max_len, d_model)`` is (max_len, d_model) float32 with sines at even and
  cosines at odd dimensions (interleaved, as in the paper): ``PE[p, 2i] = sin(p * w_i)``,
  ``PE[p, 2i + 1] = cos(p * w_i)``, ``w_i = base ** (-2i / d_model)``; d_model must be even.
- ``LearnedPositionalEncoding`` holds one parameter ``weight`` (max_len, d_model). Beyond its
  table, a position reuses the last row: position ``p`` gets ``weight[min(p, max_len - 1)]``
  (clamping: defined, never an index error, and plainly unable to tell those positions apart).
- ``RelativePositionBias`` holds ``bias`` (num_heads, 2 * max_distance + 1); the bias of query
  ``i`` and key ``j`` is ``bias[h, clip(j - i, -max_distance, max_distance) + max_distance]``:
  a function of ``j - i`` only (Shaw et al. 2018's clipping, as one scalar per head).
- ``apply_rope`` rotates the pairs ``(x[..., 2i], x[..., 2i + 1])`` by the angle ``m * theta_i``,
  ``theta_i = base ** (-2i / d)``, for the position ``m`` of each row (interleaved pairs, eq. 34 of
  the RoFormer paper; not the half-split layout of GPT-NeoX). Rotations keep norms, and
  ``<R_m q, R_n k> = <q, R_(n - m) k>`` depends on the offset only.
- Attention takes ``q (B, H, Tq, d)``, ``k (B, H, Tk, d)``, ``v (B, H, Tk, dv)`` and returns
  ``(output (B, H, Tq, dv), weights (B, H, Tq, Tk))``; scores are scaled by ``1 / sqrt(d)``; a bias
  is added to the scaled scores before the softmax; RoPE rotates queries and keys, never values.

References:
- Vaswani et al. 2017, "Attention Is All You Need" (sinusoidal encodings, section 3.5).
- Gehring et al. 2017, "Convolutional Sequence to Sequence Learning" (learned position embeddings).
- Shaw, Uszkoreit & Vaswani 2018, "Self-Attention with Relative Position Representations" (clipped
  relative positions); Raffel et al. 2020 (T5: one scalar bias per head and relative position).
- Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding" (RoPE).
- Press, Smith & Lewis 2022, "Train Short, Test Long" (length extrapolation, ALiBi).
- Eckart & Young 1936 (the best low-rank approximation is the truncated SVD; compressed table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

__all__ = [
    "PositionalConfig",
    "ENCODINGS",
    "sinusoidal_encoding",
    "LearnedPositionalEncoding",
    "RelativePositionBias",
    "relative_attention",
    "apply_rope",
    "rope_attention",
    "AdaptivePositionalEncoding",
    "compress_encoding",
    "lag_copy_batch",
    "PositionalModel",
    "accuracy",
]

ENCODINGS = ("sinusoidal", "learned", "relative", "rope")
IGNORE_INDEX = -100  # targets of the first `lag` positions: nothing to copy there


@dataclass
class PositionalConfig:
    """The length-generalisation experiment's model and task (the template's constants)."""

    encoding: str = "rope"       # one of ENCODINGS
    vocab_size: int = 10
    d_model: int = 32
    n_heads: int = 2
    train_len: int = 16          # L: trained at L, evaluated at L, 2L and 4L
    lag: int = 3                 # the task: y[t] = x[t - lag]
    max_distance: int = 8        # relative bias: offsets beyond it share the edge bias
    base: float = 10000.0        # sinusoidal and RoPE frequencies


# -----------------------------------------------------------------------------
# Absolute encodings


def sinusoidal_encoding(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(max_len, d_model) float32: ``PE[p, 2i] = sin(p w_i)``, ``PE[p, 2i+1] = cos(p w_i)``, ``w_i = base^(-2i/d)``."""
    if d_model % 2:
        raise ValueError(f"d_model must be even, got {d_model}")
    # Angles in float64, rounded to float32 once at the end: large positions keep exact angles.
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    frequency = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d_model/2,)
    angle = position * frequency[None, :]  # (max_len, 1) * (1, d/2) -> (max_len, d/2)
    table = torch.stack((angle.sin(), angle.cos()), dim=-1).float()  # (max_len, d/2, 2): sin, cos of pair i
    return table.reshape(max_len, d_model)  # (max_len, d): sin at 2i, cos at 2i + 1


class LearnedPositionalEncoding(nn.Module):
    """A learned table ``weight`` (max_len, d_model) added to the input; positions past the table reuse its last row."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_model) -> x + weight[min(t, max_len - 1)] for every position t."""
        T = x.shape[-2]
        index = torch.arange(T, device=x.device).clamp(max=self.max_len - 1)  # (T,)
        return x + self.weight[index]  # (B, T, d) + (T, d) -> (B, T, d)


# -----------------------------------------------------------------------------
# Relative position bias


class RelativePositionBias(nn.Module):
    """One learned scalar per head and clipped offset ``j - i``: ``bias`` (num_heads, 2 * max_distance + 1)."""

    def __init__(self, num_heads: int, max_distance: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Parameter(torch.zeros(num_heads, 2 * max_distance + 1))

    def forward(self, q_len: int, k_len: int) -> Tensor:
        """The bias (num_heads, q_len, k_len) of query i and key j: ``bias[h, clip(j - i) + max_distance]``."""
        i = torch.arange(q_len, device=self.bias.device)  # (q_len,)
        j = torch.arange(k_len, device=self.bias.device)  # (k_len,)
        offset = j[None, :] - i[:, None]  # (1, k_len) - (q_len, 1) -> (q_len, k_len)
        index = offset.clamp(-self.max_distance, self.max_distance) + self.max_distance  # (q_len, k_len)
        return self.bias[:, index]  # (H, 2D+1)[:, (q_len, k_len)] -> (H, q_len, k_len)


def _attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, causal: bool) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d) + bias) v, in float32; returns (output in q.dtype, float32 weights)."""
    scores = q.float() @ k.float().transpose(-2, -1)  # (B, H, Tq, d) @ (B, H, d, Tk) -> (B, H, Tq, Tk)
    scores = scores / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias.float()  # (B, H, Tq, Tk) + (H, Tq, Tk) -> (B, H, Tq, Tk)
    if causal:
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()  # (Tq, Tk)
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, Tq, Tk)
    return (weights @ v.float()).to(q.dtype), weights  # (B, H, Tq, Tk) @ (B, H, Tk, dv) -> (B, H, Tq, dv)


def relative_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """Attention with a relative position bias (num_heads, Tq, Tk) added to the scaled scores before the softmax."""
    return _attention(q, k, v, bias, causal=False)


# -----------------------------------------------------------------------------
# Rotary position embedding (RoPE)


def apply_rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """Rotate the pairs (x[..., 2i], x[..., 2i+1]) of each row by ``m * base^(-2i/d)``, m its position.

    x (..., T, d) with d even; positions (T,) (default ``arange(T)``). Returns x's shape and dtype.
    """
    T, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"the last dimension must be even, got {d}")
    if positions is None:
        positions = torch.arange(T, device=x.device)
    # Angles and the rotation in float64 (cast back to x's dtype): positions in the thousands keep
    # their angles exact, so the result is the formula's, rounded once.
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)  # (d/2,)
    angle = positions.to(x.device, torch.float64)[:, None] * theta[None, :]  # (T, 1) * (1, d/2) -> (T, d/2)
    cos, sin = angle.cos(), angle.sin()  # (T, d/2)
    pairs = x.double().reshape(*x.shape[:-1], d // 2, 2)  # (..., T, d) -> (..., T, d/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., T, d/2) each
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (..., T, d/2, 2)
    return rotated.reshape(x.shape).to(x.dtype)  # (..., T, d/2, 2) -> (..., T, d)


def rope_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, base: float = 10000.0
                   ) -> tuple[Tensor, Tensor]:
    """Attention with RoPE on the queries and keys (positions 0..T-1), never on the values."""
    return _attention(apply_rope(q, base=base), apply_rope(k, base=base), v, None, causal)


# -----------------------------------------------------------------------------
# Bonus: an adaptive encoding and a compressed table


class AdaptivePositionalEncoding(nn.Module):
    """Sinusoidal positions scaled per input: ``x + sigmoid(gate(x)) * PE``, ``gate`` a Linear(d_model, d_model)."""

    def __init__(self, d_model: int, base: float = 10000.0) -> None:
        super().__init__()
        self.base = base
        self.gate = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d_model) -> x + sigmoid(gate(x)) * sinusoidal_encoding(T, d_model)."""
        table = sinusoidal_encoding(x.shape[-2], x.shape[-1], self.base).to(x.device, x.dtype)  # (T, d)
        return x + torch.sigmoid(self.gate(x)) * table  # (B, T, d) * (T, d) -> (B, T, d)


def compress_encoding(table: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """The best rank-``rank`` factorisation (A (max_len, rank), B (rank, d)) of ``table`` (truncated SVD)."""
    u, s, vh = torch.linalg.svd(table.double(), full_matrices=False)  # (L, r0), (r0,), (r0, d)
    a = u[:, :rank] * s[:rank]  # (L, rank) * (rank,) -> (L, rank)
    return a.to(table.dtype), vh[:rank].to(table.dtype)  # (L, rank), (rank, d)


# -----------------------------------------------------------------------------
# The length-generalisation experiment: the task and the model


def lag_copy_batch(n: int, length: int, generator: torch.Generator, vocab_size: int = 10, lag: int = 3
                   ) -> tuple[Tensor, Tensor]:
    """Random tokens x (n, length) and targets y with ``y[:, t] = x[:, t - lag]`` (IGNORE_INDEX for t < lag)."""
    x = torch.randint(0, vocab_size, (n, length), generator=generator)  # (n, length)
    y = torch.full_like(x, IGNORE_INDEX)  # (n, length)
    y[:, lag:] = x[:, :-lag]
    return x, y


class PositionalModel(nn.Module):
    """Token embedding, one attention layer with the chosen positional encoding, a linear read-out."""

    def __init__(self, config: PositionalConfig) -> None:
        super().__init__()
        if config.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {config.encoding!r}")
        self.config = config
        d, h = config.d_model, config.n_heads
        self.embed = nn.Embedding(config.vocab_size, d)
        self.learned = LearnedPositionalEncoding(config.train_len, d) if config.encoding == "learned" else None
        self.relative = RelativePositionBias(h, config.max_distance) if config.encoding == "relative" else None
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) int64 -> logits (B, T, vocab_size); any T (longer than train_len too)."""
        c = self.config
        B, T = tokens.shape
        x = self.embed(tokens)  # (B, T, d)
        if c.encoding == "sinusoidal":
            x = x + sinusoidal_encoding(T, c.d_model, c.base).to(x.device)  # (B, T, d) + (T, d)
        elif c.encoding == "learned":
            x = self.learned(x)  # (B, T, d)
        q, k, v = self.qkv(x).split(c.d_model, dim=-1)  # (B, T, 3d) -> 3 x (B, T, d)
        q, k, v = (t.view(B, T, c.n_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d/H) each
        if c.encoding == "rope":
            attended, _ = rope_attention(q, k, v, base=c.base)  # (B, H, T, d/H)
        else:
            bias = self.relative(T, T) if c.encoding == "relative" else None  # (H, T, T) or None
            attended, _ = _attention(q, k, v, bias, causal=False)  # (B, H, T, d/H)
        merged = attended.transpose(1, 2).reshape(B, T, c.d_model)  # (B, H, T, d/H) -> (B, T, d)
        return self.head(self.norm(x + self.out(merged)))  # (B, T, d) -> (B, T, vocab)


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Share of the positions with a target (not IGNORE_INDEX) whose argmax is the target."""
    keep = targets != IGNORE_INDEX  # (B, T)
    return float((logits.argmax(-1)[keep] == targets[keep]).float().mean())

