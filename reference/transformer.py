"""Reference implementation of the w7-transformer assignment: the encoder-decoder Transformer.

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: the sinusoidal position table and the masks, multi-head attention, the position-wise
feed-forward network, the encoder and decoder layers (post-LN as in the paper, or pre-LN), their
stacks, the full translation model with teacher forcing, greedy decoding (with or without a
key/value cache) and beam search with the GNMT length penalty; then the bonus models, a BERT-style
encoder with its masked-LM loss and a GPT-style decoder.

Conventions (the student template fixes them, so the same weights give the same numbers):
- token ids: PAD = 0, BOS = 1, EOS = 2, UNK = 3; a sentence is ``[BOS] + tokens + [EOS]``;
- masks are boolean, ``True`` where attention is allowed, broadcast to ``(B, H, T, S)``: the source
  mask ``(B, 1, 1, S)`` hides PAD keys, the target mask ``(B, 1, T, T)`` is causal (key ``j <= i``)
  and hides PAD keys;
- ``MultiHeadAttention``: ``w_q, w_k, w_v, w_o`` (``nn.Linear(d_model, d_model)`` each); heads split
  the feature axis in order (head ``h`` owns features ``h*dh .. (h+1)*dh - 1``); scores scaled by
  ``1/sqrt(dh)``; returns ``(output (B, T, E), weights (B, H, T, S))``;
- ``PositionwiseFeedForward``: ``linear2(relu(linear1(x)))``;
- post-LN (``norm_first=False``, the paper): ``x = LN(x + Sublayer(x))``; pre-LN
  (``norm_first=True``): ``x = x + Sublayer(LN(x))`` and the stack ends with its own ``norm``
  (which post-LN stacks hold but do not use);
- embeddings are multiplied by ``sqrt(d_model)`` and the sinusoidal table (sin at even, cos at odd
  features) is added; dropout (identity in eval mode) follows the embeddings and every sublayer;
- greedy decoding stops a row at its EOS (PAD after it) and the batch when every row has stopped;
- beam search keeps the ``beam_size`` best extensions (summed log-probabilities) at each step; an
  extension ending in EOS is finished; the search stops once ``beam_size`` hypotheses are finished,
  none is live, or after ``max_len`` steps (live ones fill the list when fewer finished); a
  hypothesis of ``n`` tokens (EOS included) scores ``log_prob / ((5 + n) / 6) ** alpha``.

References:
- Vaswani et al. 2017, "Attention Is All You Need" (the architecture, sinusoidal positions,
  post-LN residual blocks, label smoothing, teacher forcing with shifted targets).
- Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture" (pre-LN).
- Wu et al. 2016, "Google's Neural Machine Translation System" (the length penalty of beam search).
- Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
  Understanding" (encoder-only, masked-LM loss on the masked positions only).
- Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training" (decoder-only).
- Pope et al. 2023, "Efficiently Scaling Transformer Inference" (key/value caching).
- Papineni et al. 2002, "BLEU"; Post 2018, "A Call for Clarity in Reporting BLEU Scores" (sacreBLEU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PAD", "BOS", "EOS", "UNK",
    "TransformerConfig",
    "sinusoidal_table", "make_src_mask", "make_tgt_mask", "shift_targets", "sequence_loss",
    "length_penalty", "masked_lm_loss",
    "MultiHeadAttention", "PositionwiseFeedForward", "EncoderLayer", "DecoderLayer", "Encoder", "Decoder",
    "Transformer", "BERT", "GPT",
]

PAD, BOS, EOS, UNK = 0, 1, 2, 3


@dataclass
class TransformerConfig:
    """Sizes of a translation model (the template's smoke defaults)."""

    src_vocab: int
    tgt_vocab: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    max_len: int = 128
    norm_first: bool = False


# -----------------------------------------------------------------------------
# Positions, masks, targets, losses


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...): float32 (max_len, d_model)."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (L, 1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))  # (d/2,)
    table = torch.zeros(max_len, d_model)  # (L, d)
    table[:, 0::2] = torch.sin(position * frequency)  # (L, 1) * (d/2,) -> (L, d/2)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]  # (L, d/2)
    return table


def make_src_mask(src: Tensor, pad_id: int = PAD) -> Tensor:
    """Source mask: bool (B, 1, 1, S), True at the keys that are not PAD."""
    return (src != pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)


def make_tgt_mask(tgt: Tensor, pad_id: int = PAD) -> Tensor:
    """Target mask: bool (B, 1, T, T), True where key j <= query i and key j is not PAD."""
    T = tgt.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=tgt.device).tril()  # (T, T)
    return causal[None, None] & (tgt != pad_id)[:, None, None, :]  # (1, 1, T, T) & (B, 1, 1, T) -> (B, 1, T, T)


def shift_targets(tgt: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher forcing: (decoder input tgt[:, :-1], labels tgt[:, 1:]), each (B, T-1)."""
    return tgt[:, :-1], tgt[:, 1:]


def sequence_loss(logits: Tensor, labels: Tensor, pad_id: int = PAD, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy averaged over the labels that are not PAD (0-d), with torch's label smoothing
    (target = (1 - eps) one-hot + eps / V uniform)."""
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V).float(), labels.reshape(-1), ignore_index=pad_id,
                           label_smoothing=label_smoothing)  # (B*T, V), (B*T,) -> ()


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT's length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016), elementwise, float32."""
    return ((5.0 + length.float()) / 6.0) ** alpha


def masked_lm_loss(logits: Tensor, targets: Tensor, masked: Tensor) -> Tensor:
    """BERT's masked-LM loss: cross-entropy averaged over the masked positions only (0-d).

    logits (B, T, V), targets (B, T) (the original tokens), masked (B, T) bool."""
    return F.cross_entropy(logits[masked].float(), targets[masked])  # (M, V), (M,) -> ()


# -----------------------------------------------------------------------------
# Building blocks


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with separate q, k, v and output projections."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be a multiple of n_heads"
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, T, E) -> (B, H, T, dh)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
                cache: dict | None = None, static: bool = False) -> tuple[Tensor, Tensor]:
        """query (B, T, E), key and value (B, S, E), mask bool broadcastable to (B, H, T, S).

        With `cache` (a dict), the projected keys and values are kept there: `static` ones
        (cross-attention: the memory) are computed once, the others (self-attention while
        decoding) grow by the new positions. Returns (output (B, T, E), weights (B, H, T, S))."""
        q = self._split(self.w_q(query))  # (B, H, T, dh)
        if cache is not None and static and "k" in cache:
            k, v = cache["k"], cache["v"]  # (B, H, S, dh)
        else:
            k, v = self._split(self.w_k(key)), self._split(self.w_v(value))  # (B, H, S_new, dh)
            if cache is not None:
                if not static and "k" in cache:
                    k = torch.cat([cache["k"], k], dim=2)  # (B, H, S_old + S_new, dh)
                    v = torch.cat([cache["v"], v], dim=2)  # (B, H, S_old + S_new, dh)
                cache["k"], cache["v"] = k, v
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, dh) @ (B, H, dh, S) -> (B, H, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))  # (B, H, T, S)
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, S)
        out = self.dropout(weights) @ v  # (B, H, T, S) @ (B, H, S, dh) -> (B, H, T, dh)
        B, _, T, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T, self.d_model)  # (B, H, T, dh) -> (B, T, E)
        return self.w_o(out), weights


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = linear2(relu(linear1(x))), applied at every position alike."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))  # (B, T, E) -> (B, T, F) -> (B, T, E)


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward sublayers, each with a residual connection and LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, S, E), mask bool broadcastable to (B, 1, S, S) -> (x (B, S, E), weights (B, H, S, S))."""
        if self.norm_first:
            h = self.norm1(x)  # (B, S, E)
            attended, weights = self.self_attn(h, h, h, mask)  # (B, S, E), (B, H, S, S)
            x = x + self.dropout(attended)
            return x + self.dropout(self.feed_forward(self.norm2(x))), weights
        attended, weights = self.self_attn(x, x, x, mask)  # (B, S, E), (B, H, S, S)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.feed_forward(x))), weights


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder-decoder (cross) attention and feed-forward sublayers."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, y: Tensor, memory: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                cache: dict | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """y (B, T, E), memory (B, S, E), src_mask (B, 1, 1, S), tgt_mask (B, 1, T, T).

        Returns (y (B, T, E), self-attention weights (B, H, T, T), cross-attention weights
        (B, H, T, S)). With `cache` ({"self": {}, "cross": {}}), y holds only the new positions."""
        self_cache = cache["self"] if cache is not None else None
        cross_cache = cache["cross"] if cache is not None else None
        if self.norm_first:
            h = self.norm1(y)  # (B, T, E)
            attended, self_weights = self.self_attn(h, h, h, tgt_mask, cache=self_cache)
            y = y + self.dropout(attended)
            h = self.norm2(y)  # (B, T, E)
            attended, cross_weights = self.cross_attn(h, memory, memory, src_mask, cache=cross_cache, static=True)
            y = y + self.dropout(attended)
            return y + self.dropout(self.feed_forward(self.norm3(y))), self_weights, cross_weights
        attended, self_weights = self.self_attn(y, y, y, tgt_mask, cache=self_cache)  # (B, T, E), (B, H, T, T)
        y = self.norm1(y + self.dropout(attended))
        attended, cross_weights = self.cross_attn(y, memory, memory, src_mask, cache=cross_cache, static=True)
        y = self.norm2(y + self.dropout(attended))
        return self.norm3(y + self.dropout(self.feed_forward(y))), self_weights, cross_weights


class Encoder(nn.Module):
    """A stack of encoder layers; pre-LN stacks end with their own LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x, _ = layer(x, mask)  # (B, S, E)
        return self.norm(x) if self.norm_first else x


class Decoder(nn.Module):
    """A stack of decoder layers; pre-LN stacks end with their own LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, y: Tensor, memory: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                caches: list | None = None) -> Tensor:
        for i, layer in enumerate(self.layers):
            y, _, _ = layer(y, memory, src_mask, tgt_mask, cache=caches[i] if caches is not None else None)  # (B, T, E)
        return self.norm(y) if self.norm_first else y


# -----------------------------------------------------------------------------
# The translation model


class Transformer(nn.Module):
    """Encoder-decoder Transformer for translation, with greedy decoding and beam search."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int = 128, dropout: float = 0.1, max_len: int = 128, norm_first: bool = False):
        super().__init__()
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)  # (L, E)
        self.encoder = Encoder(n_layers, d_model, n_heads, d_ff, dropout, norm_first)
        self.decoder = Decoder(n_layers, d_model, n_heads, d_ff, dropout, norm_first)
        self.generator = nn.Linear(d_model, tgt_vocab)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, config: TransformerConfig) -> "Transformer":
        return cls(config.src_vocab, config.tgt_vocab, config.d_model, config.n_heads, config.n_layers,
                   config.d_ff, config.dropout, config.max_len, config.norm_first)

    def _embed(self, embedding: nn.Embedding, ids: Tensor, start: int = 0) -> Tensor:
        T = ids.shape[1]
        return self.dropout(embedding(ids) * math.sqrt(self.d_model) + self.pe[start:start + T])  # (B, T, E)

    def encode(self, src: Tensor) -> Tensor:
        """src (B, S) token ids -> memory (B, S, E)."""
        return self.encoder(self._embed(self.src_embed, src), make_src_mask(src))

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """tgt_in (B, T), memory (B, S, E), src_mask (B, 1, 1, S) -> hidden states (B, T, E)."""
        return self.decoder(self._embed(self.tgt_embed, tgt_in), memory, src_mask, make_tgt_mask(tgt_in))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """src (B, S), tgt_in (B, T) (teacher forcing: the shifted targets) -> logits (B, T, V)."""
        return self.generator(self.decode(tgt_in, self.encode(src), make_src_mask(src)))

    def _next_logits(self, ys: Tensor, memory: Tensor, src_mask: Tensor, caches: list | None) -> Tensor:
        """Logits (B, V) of the token after ys (B, t); with caches, only ys' last token is run."""
        if caches is None:
            return self.generator(self.decode(ys, memory, src_mask)[:, -1])  # (B, t, E) -> (B, V)
        t = ys.shape[1]
        y = self._embed(self.tgt_embed, ys[:, -1:], start=t - 1)  # (B, 1, E) at position t - 1
        # The new query may see every cached key: no mask is needed for it (PAD only follows EOS).
        hidden = self.decoder(y, memory, src_mask, None, caches=caches)  # (B, 1, E)
        return self.generator(hidden[:, -1])  # (B, V)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, max_len: int = 50, use_cache: bool = False) -> Tensor:
        """The argmax token at each step: (B, L) int64 after BOS, EOS included, PAD after it;
        L = the steps until every row has its EOS, at most max_len."""
        memory, src_mask = self.encode(src), make_src_mask(src)  # (B, S, E), (B, 1, 1, S)
        B = src.shape[0]
        caches = [{"self": {}, "cross": {}} for _ in self.decoder.layers] if use_cache else None
        ys = torch.full((B, 1), BOS, dtype=torch.long, device=src.device)  # (B, 1)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
        for _ in range(max_len):
            token = self._next_logits(ys, memory, src_mask, caches).argmax(dim=-1)  # (B,)
            token = token.masked_fill(done, PAD)
            ys = torch.cat([ys, token[:, None]], dim=1)  # (B, t + 1)
            done = done | (token == EOS)
            if bool(done.all()):
                break
        return ys[:, 1:]

    @torch.no_grad()
    def beam_search(self, src: Tensor, beam_size: int = 4, max_len: int = 50, alpha: float = 0.6
                    ) -> tuple[Tensor, Tensor, Tensor]:
        """Beam search for one sentence src (1, S).

        Returns (tokens (K, L) int64 after BOS, EOS included, PAD after a shorter hypothesis;
        scores (K,) = log_probs / length_penalty(n, alpha); log_probs (K,)), best score first."""
        memory, src_mask = self.encode(src), make_src_mask(src)  # (1, S, E), (1, 1, 1, S)
        live: list[tuple[list[int], float]] = [([], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_len):
            n = len(live)
            ys = torch.tensor([[BOS] + tokens for tokens, _ in live], dtype=torch.long, device=src.device)  # (n, t)
            logits = self._next_logits(ys, memory.expand(n, -1, -1), src_mask.expand(n, -1, -1, -1), None)  # (n, V)
            total = torch.log_softmax(logits.float(), dim=-1) + torch.tensor([s for _, s in live],
                                                                             device=src.device)[:, None]  # (n, V)
            V = total.shape[1]
            values, indices = total.flatten().topk(min(beam_size, total.numel()))  # (k,), best first
            live = []
            for value, index in zip(values.tolist(), indices.tolist()):
                beam, token = divmod(index, V)
                hypothesis = (ys[beam, 1:].tolist() + [token], value)
                (finished if token == EOS else live).append(hypothesis)
            if len(finished) >= beam_size or not live:
                break
        pool = finished if len(finished) >= beam_size else finished + live
        lengths = torch.tensor([len(tokens) for tokens, _ in pool])  # (P,)
        log_probs = torch.tensor([s for _, s in pool], dtype=torch.float32)  # (P,)
        scores = log_probs / length_penalty(lengths, alpha)  # (P,)
        order = sorted(range(len(pool)), key=lambda i: -float(scores[i]))[:beam_size]
        width = max(len(pool[i][0]) for i in order)
        tokens = torch.full((len(order), width), PAD, dtype=torch.long)  # (K, L)
        for row, i in enumerate(order):
            tokens[row, :len(pool[i][0])] = torch.tensor(pool[i][0])
        return tokens.to(src.device), scores[order].to(src.device), log_probs[order].to(src.device)


# -----------------------------------------------------------------------------
# Bonus: encoder-only (BERT-style) and decoder-only (GPT-style) models


class _TokenStack(nn.Module):
    """Token embeddings, sinusoidal positions and a stack of EncoderLayer blocks (shared by BERT and GPT)."""

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, max_len: int,
                 dropout: float, norm_first: bool):
        super().__init__()
        self.d_model, self.norm_first = d_model, norm_first
        self.tok_embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)  # (L, E)
        self.blocks = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, norm_first) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def hidden(self, ids: Tensor, mask: Tensor) -> Tensor:
        T = ids.shape[1]
        x = self.dropout(self.tok_embed(ids) * math.sqrt(self.d_model) + self.pe[:T])  # (B, T, E)
        for block in self.blocks:
            x, _ = block(x, mask)  # (B, T, E)
        return self.norm(x) if self.norm_first else x


class BERT(_TokenStack):
    """Encoder-only model: bidirectional self-attention (PAD keys hidden) and a masked-LM head."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, d_ff: int = 128,
                 max_len: int = 128, dropout: float = 0.1, norm_first: bool = False):
        super().__init__(vocab_size, d_model, n_heads, n_layers, d_ff, max_len, dropout, norm_first)
        self.mlm_head = nn.Linear(d_model, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, T) -> masked-LM logits (B, T, V)."""
        return self.mlm_head(self.hidden(ids, make_src_mask(ids)))


class GPT(_TokenStack):
    """Decoder-only model: causal self-attention (PAD keys hidden) and a next-token head."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, d_ff: int = 128,
                 max_len: int = 128, dropout: float = 0.1, norm_first: bool = False):
        super().__init__(vocab_size, d_model, n_heads, n_layers, d_ff, max_len, dropout, norm_first)
        self.lm_head = nn.Linear(d_model, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, T) -> next-token logits (B, T, V)."""
        return self.lm_head(self.hidden(ids, make_tgt_mask(ids)))
