"""Reference implementation of the w5-attention assignment (attention mechanisms).

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: content-based scores (dot, general, additive), the masked softmax, global and local
attention, location-aware (location and hybrid) attention, coverage, the bonus variants
(multi-head, self-attention, chunked attention) and the seq2seq model that uses them.

Conventions (the template fixes them):
- one decoder step attends over a source: ``query (B, dq)``, ``keys (B, S, dk)`` (the encoder
  states, which are also the values), ``mask (B, S)`` boolean, ``True`` at real (not padded)
  source positions; scores and weights are ``(B, S)``, a context is ``(B, dk)``;
- weights are a softmax over the unmasked positions: every row sums to 1 and puts exactly 0 on
  masked positions; a row with no unmasked position is all zeros (never NaN);
- parameters are ``nn.Linear`` layers named as below, so that the grader can load the same
  weights into a student's module; where a sum of projections is followed by ``tanh``, the bias
  is the query projection's (``W_q``), the other projections have none;
- tokens of the seq2seq task: ``PAD = 0``, ``BOS = 1``, ``EOS = 2``, digit ``d`` is ``d + 3``.

References:
- Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to Align and
  Translate" (additive attention; the encoder-decoder with attention).
- Luong, Pham & Manning 2015, "Effective Approaches to Attention-based Neural Machine
  Translation" (dot and general scores; global vs local attention, local-p with a Gaussian of
  sigma = D / 2 around a predicted position; input feeding).
- Chorowski, Bahdanau, Serdyuk, Cho & Bengio 2015, "Attention-Based Models for Speech
  Recognition" (location-aware attention: convolutional features of the previous alignment;
  location-based and hybrid scores).
- Tu, Lu, Liu, Liu & Li 2016, "Modeling Coverage for Neural Machine Translation"; See, Liu &
  Manning 2017, "Get To The Point: Summarization with Pointer-Generator Networks" (coverage vector
  c_t = sum of past attention, coverage loss sum_i min(a_i, c_i)).
- Vaswani et al. 2017, "Attention Is All You Need" (scaled dot-product, multi-head and self-attention).
- Rabe & Staats 2021, "Self-attention Does Not Need O(n^2) Memory" (chunked attention with an
  online softmax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PAD", "BOS", "EOS", "VOCAB_SIZE",
    "dot_score", "GeneralScore", "AdditiveScore",
    "masked_softmax", "global_attention", "local_attention",
    "LocationAwareAttention", "CoverageAttention", "coverage_vectors", "coverage_loss",
    "MultiHeadAttention", "SelfAttention", "chunked_attention",
    "Seq2SeqConfig", "Seq2Seq",
]

PAD, BOS, EOS = 0, 1, 2
VOCAB_SIZE = 13  # PAD, BOS, EOS and the digits 0..9 (token d + 3)


# -----------------------------------------------------------------------------
# Content-based scores: how well each key matches the query


def dot_score(query: Tensor, keys: Tensor) -> Tensor:
    """Luong's dot score ``q . k_s``: ``query (B, d)``, ``keys (B, S, d)`` -> ``(B, S)``."""
    return (keys @ query.unsqueeze(-1)).squeeze(-1)  # (B, S, d) @ (B, d, 1) -> (B, S, 1) -> (B, S)


class GeneralScore(nn.Module):
    """Luong's general score ``q^T W k_s``; ``W.weight`` is ``(query_dim, key_dim)``."""

    def __init__(self, query_dim: int, key_dim: int) -> None:
        super().__init__()
        self.W = nn.Linear(key_dim, query_dim, bias=False)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        projected = self.W(keys)  # (B, S, dk) -> (B, S, dq)
        return (projected @ query.unsqueeze(-1)).squeeze(-1)  # (B, S, dq) @ (B, dq, 1) -> (B, S)


class AdditiveScore(nn.Module):
    """Bahdanau's additive score ``v^T tanh(W_q q + W_k k_s)`` (the bias is ``W_q``'s)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=True)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        hidden = torch.tanh(self.W_q(query).unsqueeze(1) + self.W_k(keys))  # (B, 1, A) + (B, S, A) -> (B, S, A)
        return self.v(hidden).squeeze(-1)  # (B, S, 1) -> (B, S)


# -----------------------------------------------------------------------------
# From scores to weights and contexts


def masked_softmax(scores: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Softmax over the last dim, only where ``mask`` is True (``mask`` broadcasts to ``scores``).

    Masked entries get exactly 0; a row with nothing unmasked gives zeros, not NaN. The row
    maximum is subtracted first, so no ``exp`` overflows.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., S)
    row_max = scores.amax(dim=-1, keepdim=True)  # (..., 1)
    row_max = row_max.masked_fill(torch.isneginf(row_max), 0.0)  # fully masked rows: exp(-inf) = 0
    exp = torch.exp(scores - row_max)  # (..., S), every entry in [0, 1]
    denom = exp.sum(dim=-1, keepdim=True)  # (..., 1)
    return exp / torch.where(denom > 0, denom, torch.ones_like(denom))  # 0 / 1 = 0 on fully masked rows


def _context(weights: Tensor, keys: Tensor) -> Tensor:
    """The weighted sum of the keys (the encoder states are the values): ``(B, S)``, ``(B, S, d)`` -> ``(B, d)``."""
    return (weights.unsqueeze(1) @ keys).squeeze(1)  # (B, 1, S) @ (B, S, d) -> (B, 1, d) -> (B, d)


def global_attention(query: Tensor, keys: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Luong's global attention with the dot score: every source position is a candidate.

    Returns ``(context (B, d), weights (B, S))``. Cost per decoder step: O(S * d).
    """
    weights = masked_softmax(dot_score(query, keys), mask)  # (B, S)
    return _context(weights, keys), weights


def local_attention(query: Tensor, keys: Tensor, mask: Optional[Tensor], center: Tensor, window: int,
                    gaussian: bool = False) -> tuple[Tensor, Tensor]:
    """Luong's local attention: only positions ``s`` with ``|s - center| <= window`` are candidates.

    ``center (B,)`` is a float position (local-m: the decoder step; local-p: predicted). The dot
    scores are soft-maxed over the window (and the mask); with ``gaussian=True`` the weights are
    then multiplied by ``exp(-(s - center)^2 / (2 sigma^2))``, ``sigma = window / 2`` (local-p, not
    renormalised, as in the paper). Returns ``(context (B, d), weights (B, S))``; no weight lies
    outside the window. Cost per decoder step: O(window * d) once the window is sliced out.
    """
    if window < 0 or (gaussian and window < 1):
        raise ValueError(f"window must be >= 0 (>= 1 with the Gaussian), got {window}")
    B, S, _ = keys.shape
    positions = torch.arange(S, device=keys.device, dtype=keys.dtype)  # (S,)
    distance = positions.unsqueeze(0) - center.to(keys.dtype).unsqueeze(1)  # (1, S) - (B, 1) -> (B, S)
    allowed = distance.abs() <= window  # (B, S)
    if mask is not None:
        allowed = allowed & mask  # (B, S)
    weights = masked_softmax(dot_score(query, keys), allowed)  # (B, S)
    if gaussian:
        sigma = window / 2.0
        weights = weights * torch.exp(-distance.pow(2) / (2.0 * sigma * sigma))  # (B, S)
    return _context(weights, keys), weights


# -----------------------------------------------------------------------------
# Location-aware attention: features of the previous alignment


class LocationAwareAttention(nn.Module):
    """Chorowski et al.'s location-aware attention.

    ``f = conv(prev_weights)`` (``n_filters`` features per position, zero-padded so the length is
    kept); scores ``e_s = v^T tanh(W_q q + W_f f_s [+ W_k k_s])``: without the key term
    (``hybrid=False``) the attention is location-based (it never looks at the keys' content), with
    it hybrid (content + location). ``kernel_size`` must be odd.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int, n_filters: int = 4, kernel_size: int = 5,
                 hybrid: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (the output keeps the source length), got {kernel_size}")
        self.hybrid = hybrid
        self.W_q = nn.Linear(query_dim, attn_dim, bias=True)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.conv = nn.Conv1d(1, n_filters, kernel_size, padding=kernel_size // 2, bias=False)
        self.W_f = nn.Linear(n_filters, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor, prev_weights: Tensor,
                mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        features = self.conv(prev_weights.unsqueeze(1))  # (B, 1, S) -> (B, F, S)
        location = self.W_f(features.transpose(1, 2))  # (B, S, F) -> (B, S, A)
        energy = self.W_q(query).unsqueeze(1) + location  # (B, 1, A) + (B, S, A) -> (B, S, A)
        if self.hybrid:
            energy = energy + self.W_k(keys)  # (B, S, A)
        scores = self.v(torch.tanh(energy)).squeeze(-1)  # (B, S, 1) -> (B, S)
        weights = masked_softmax(scores, mask)  # (B, S)
        return _context(weights, keys), weights


# -----------------------------------------------------------------------------
# Coverage: remember where the decoder already looked


class CoverageAttention(nn.Module):
    """Additive attention with a coverage feature (See et al. 2017).

    ``e_s = v^T tanh(W_q q + W_k k_s + w_c c_s)``, with ``c`` the coverage: the sum of the attention
    of every previous step. One call is one decoder step and returns ``(context (B, dk), weights
    (B, S), next coverage = coverage + weights, step loss sum_s min(weights_s, coverage_s) (B,))``.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=True)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.w_c = nn.Linear(1, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor, coverage: Tensor,
                mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        energy = (self.W_q(query).unsqueeze(1)  # (B, 1, A)
                  + self.W_k(keys)  # (B, S, A)
                  + self.w_c(coverage.unsqueeze(-1)))  # (B, S, 1) -> (B, S, A)
        weights = masked_softmax(self.v(torch.tanh(energy)).squeeze(-1), mask)  # (B, S)
        step_loss = torch.minimum(weights, coverage).sum(dim=-1)  # (B,)
        return _context(weights, keys), weights, coverage + weights, step_loss


def coverage_vectors(attentions: Tensor) -> Tensor:
    """``c_t = sum_{t' < t} a_t'`` for every step: ``attentions (B, T, S)`` -> ``(B, T, S)``; ``c_0 = 0``."""
    shifted = F.pad(attentions, (0, 0, 1, 0))[:, :-1]  # (B, T + 1, S) -> (B, T, S): a_{t-1}, zeros first
    return shifted.cumsum(dim=1)  # (B, T, S)


def coverage_loss(attentions: Tensor) -> Tensor:
    """The coverage loss of every sequence, ``sum_t sum_s min(a_t,s, c_t,s)``: ``(B, T, S)`` -> ``(B,)``."""
    return torch.minimum(attentions, coverage_vectors(attentions)).sum(dim=(1, 2))  # (B,)


# -----------------------------------------------------------------------------
# Bonus: multi-head attention, self-attention, memory-efficient attention


def _key_padding(mask: Optional[Tensor]) -> Optional[Tensor]:
    """A key-padding mask ``(B, Tk)`` as ``(B, 1, 1, Tk)``, broadcasting over heads and queries."""
    return None if mask is None else mask[:, None, None, :]  # (B, 1, 1, Tk)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017), ``d_model = n_heads * d_head``.

    ``forward(query (B, Tq, D), key (B, Tk, D), value (B, Tk, D), mask (B, Tk) or None)`` returns
    ``(output (B, Tq, D), weights (B, n_heads, Tq, Tk))``; projections ``q_proj``, ``k_proj``,
    ``v_proj``, ``out_proj`` (with biases).
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, T, D) -> (B, h, T, dh)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        q = self._split(self.q_proj(query))  # (B, h, Tq, dh)
        k = self._split(self.k_proj(key))  # (B, h, Tk, dh)
        v = self._split(self.v_proj(value))  # (B, h, Tk, dh)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)  # (B, h, Tq, dh) @ (B, h, dh, Tk) -> (B, h, Tq, Tk)
        weights = masked_softmax(scores, _key_padding(mask))  # (B, h, Tq, Tk)
        heads = weights @ v  # (B, h, Tq, Tk) @ (B, h, Tk, dh) -> (B, h, Tq, dh)
        B, _, Tq, _ = heads.shape
        merged = heads.transpose(1, 2).reshape(B, Tq, self.n_heads * self.d_head)  # (B, Tq, h, dh) -> (B, Tq, D)
        return self.out_proj(merged), weights


class SelfAttention(nn.Module):
    """Single-head scaled dot-product self-attention: queries, keys and values from the same ``x``.

    ``forward(x (B, T, D), mask (B, T) or None)`` returns ``(output (B, T, D), weights (B, T, T))``;
    projections ``q_proj``, ``k_proj``, ``v_proj`` without biases; scores scaled by ``1 / sqrt(D)``.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)  # (B, T, D) each
        scores = (q @ k.transpose(1, 2)) / math.sqrt(x.shape[-1])  # (B, T, D) @ (B, D, T) -> (B, T, T)
        weights = masked_softmax(scores, None if mask is None else mask[:, None, :])  # (B, T, T)
        return weights @ v, weights  # (B, T, T) @ (B, T, D) -> (B, T, D)


def chunked_attention(query: Tensor, keys: Tensor, values: Tensor, mask: Optional[Tensor] = None,
                      chunk_size: int = 32) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over the keys ``chunk_size`` at a time (online softmax).

    ``query (B, Tq, d)``, ``keys (B, Tk, d)``, ``values (B, Tk, dv)``, ``mask (B, Tk)`` or None.
    Equal to the plain computation (fully masked rows give zeros); only a ``(B, Tq, chunk_size)``
    block of scores exists at a time, so the extra memory is O(Tq * chunk_size), not O(Tq * Tk).
    """
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    B, Tq, d = query.shape
    Tk, dv = values.shape[1], values.shape[2]
    scaled = query * (1.0 / math.sqrt(d))  # (B, Tq, d)
    row_max = query.new_full((B, Tq, 1), float("-inf"))  # (B, Tq, 1)
    denom = query.new_zeros((B, Tq, 1))  # (B, Tq, 1)
    acc = query.new_zeros((B, Tq, dv))  # (B, Tq, dv)
    for start in range(0, Tk, chunk_size):
        stop = min(start + chunk_size, Tk)
        scores = scaled @ keys[:, start:stop].transpose(1, 2)  # (B, Tq, d) @ (B, d, C) -> (B, Tq, C)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, start:stop], float("-inf"))  # (B, Tq, C)
        new_max = torch.maximum(row_max, scores.amax(dim=-1, keepdim=True))  # (B, Tq, 1)
        safe_max = new_max.masked_fill(torch.isneginf(new_max), 0.0)  # rows masked so far stay at 0
        correction = torch.exp(row_max - safe_max)  # (B, Tq, 1); exp(-inf) = 0 on the first chunk
        p = torch.exp(scores - safe_max)  # (B, Tq, C)
        denom = denom * correction + p.sum(dim=-1, keepdim=True)  # (B, Tq, 1)
        acc = acc * correction + p @ values[:, start:stop]  # (B, Tq, C) @ (B, C, dv) -> (B, Tq, dv)
        row_max = new_max
    return acc / torch.where(denom > 0, denom, torch.ones_like(denom))  # (B, Tq, dv)


# -----------------------------------------------------------------------------
# The seq2seq model: GRU encoder, GRU decoder with input feeding and one of the attentions above


@dataclass
class Seq2SeqConfig:
    vocab_size: int = VOCAB_SIZE
    emb_dim: int = 32
    hidden_dim: int = 64
    attn_dim: int = 32
    attention: str = "hybrid"  # "additive" (global, content), "hybrid" (content + location), "local" (local-p)
    n_filters: int = 4
    kernel_size: int = 5
    window: int = 2  # local attention: positions within +-window of the predicted centre


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015's input feeding).

    Encoder: embedding + GRU; its states are the keys. Decoder step: GRUCell over
    ``[embedding of the previous token; previous context]``, then attention with the new state as
    the query, then ``out([state; context])`` -> logits. The decoder starts from the encoder state
    at the last real source position; the previous alignment starts as a one-hot at position 0.
    """

    def __init__(self, vocab_size: int = VOCAB_SIZE, emb_dim: int = 32, hidden_dim: int = 64, attn_dim: int = 32,
                 attention: str = "hybrid", window: int = 2) -> None:
        super().__init__()
        if attention not in ("additive", "hybrid", "local"):
            raise ValueError(f"attention must be 'additive', 'hybrid' or 'local', got {attention!r}")
        # the template's signature; the sizes live in one typed config
        config = Seq2SeqConfig(vocab_size=vocab_size, emb_dim=emb_dim, hidden_dim=hidden_dim, attn_dim=attn_dim,
                               attention=attention, window=window)
        self.config = config
        V, E, H, A = config.vocab_size, config.emb_dim, config.hidden_dim, config.attn_dim
        self.src_embedding = nn.Embedding(V, E, padding_idx=PAD)
        self.encoder = nn.GRU(E, H, batch_first=True)
        self.tgt_embedding = nn.Embedding(V, E, padding_idx=PAD)
        self.decoder = nn.GRUCell(E + H, H)
        if config.attention == "additive":
            self.attention = AdditiveScore(H, H, A)
        elif config.attention == "hybrid":
            self.attention = LocationAwareAttention(H, H, A, config.n_filters, config.kernel_size, hybrid=True)
        else:  # local-p: the centre is predicted from the decoder state
            self.position = nn.Sequential(nn.Linear(H, A), nn.Tanh(), nn.Linear(A, 1))
        self.out = nn.Linear(2 * H, V)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``src (B, S)`` token ids -> ``(keys (B, S, H), initial state (B, H), mask (B, S))``."""
        positions = torch.arange(src.shape[1], device=src.device)  # (S,)
        mask = positions[None, :] < src_lengths[:, None]  # (1, S) < (B, 1) -> (B, S)
        keys, _ = self.encoder(self.src_embedding(src))  # (B, S, E) -> (B, S, H)
        last = (src_lengths - 1).clamp(min=0)  # (B,)
        state = keys[torch.arange(src.shape[0], device=src.device), last]  # (B, H): unidirectional, padding comes after
        return keys, state, mask

    def attend(self, state: Tensor, keys: Tensor, mask: Tensor, prev: Tensor) -> tuple[Tensor, Tensor]:
        """One attention step: ``(context (B, H), weights (B, S))``."""
        if self.config.attention == "additive":
            weights = masked_softmax(self.attention(state, keys), mask)  # (B, S)
            return _context(weights, keys), weights
        if self.config.attention == "hybrid":
            return self.attention(state, keys, prev, mask)
        lengths = mask.sum(dim=1).to(keys.dtype)  # (B,)
        center = (lengths - 1) * torch.sigmoid(self.position(state)).squeeze(-1)  # (B,) in [0, length - 1]
        return local_attention(state, keys, mask, center, self.config.window, gaussian=True)

    def _start(self, src: Tensor, src_lengths: Tensor):
        keys, state, mask = self.encode(src, src_lengths)
        context = keys.new_zeros(keys.shape[0], keys.shape[2])  # (B, H)
        prev = torch.zeros_like(mask, dtype=keys.dtype)  # (B, S)
        prev[:, 0] = 1.0
        return keys, state, mask, context, prev

    def _step(self, token: Tensor, keys: Tensor, state: Tensor, mask: Tensor, context: Tensor, prev: Tensor):
        state = self.decoder(torch.cat([self.tgt_embedding(token), context], dim=-1), state)  # (B, E + H) -> (B, H)
        context, weights = self.attend(state, keys, mask, prev)  # (B, H), (B, S)
        logits = self.out(torch.cat([state, context], dim=-1))  # (B, 2H) -> (B, V)
        return logits, state, context, weights

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: ``tgt_in (B, T)`` starts with BOS. Returns ``(logits (B, T, V), attention (B, T, S))``."""
        keys, state, mask, context, prev = self._start(src, src_lengths)
        logits, attention = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, context, prev = self._step(tgt_in[:, t], keys, state, mask, context, prev)
            logits.append(step_logits)
            attention.append(prev)
        return torch.stack(logits, dim=1), torch.stack(attention, dim=1)  # (B, T, V), (B, T, S)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, src_lengths: Tensor, max_len: int) -> tuple[Tensor, Tensor]:
        """Exactly ``max_len`` greedy steps from BOS (no early stop): ``(tokens (B, max_len) int64,
        attention (B, max_len, S))``."""
        keys, state, mask, context, prev = self._start(src, src_lengths)
        token = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)  # (B,)
        tokens, attention = [], []
        for _ in range(int(max_len)):
            logits, state, context, prev = self._step(token, keys, state, mask, context, prev)
            token = logits.argmax(dim=-1)  # (B,)
            tokens.append(token)
            attention.append(prev)
        return torch.stack(tokens, dim=1), torch.stack(attention, dim=1)  # (B, max_len), (B, max_len, S)
