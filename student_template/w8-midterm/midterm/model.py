"""The midterm's model: an encoder-decoder Transformer written from scratch (your code).

The names, signatures, parameter names and return values below are fixed (the grader loads its own
weights into your modules by these names): see docs/w8-midterm.md. Do not use torch's attention or
transformer modules (nn.MultiheadAttention, nn.Transformer*, F.scaled_dot_product_attention).
Token ids: PAD 0, BOS 1, EOS 2, UNK 3. Masks are bool, True = may attend.
"""

from __future__ import annotations

from torch import Tensor, nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...): float32 (max_len, d_model)."""
    raise NotImplementedError


def make_src_mask(src: Tensor, pad_id: int = PAD) -> Tensor:
    """Source mask: bool (B, 1, 1, S), True at the keys that are not PAD."""
    raise NotImplementedError


def make_tgt_mask(tgt: Tensor, pad_id: int = PAD) -> Tensor:
    """Target mask: bool (B, 1, T, T), True where key j <= query i and key j is not PAD."""
    raise NotImplementedError


def shift_targets(tgt: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher forcing: (decoder input tgt[:, :-1], labels tgt[:, 1:])."""
    raise NotImplementedError


def sequence_loss(logits: Tensor, labels: Tensor, pad_id: int = PAD, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy averaged over the labels that are not PAD (0-d)."""
    raise NotImplementedError


def length_penalty(length: Tensor, alpha: float) -> Tensor:
    """GNMT's length penalty ((5 + length) / 6) ** alpha, elementwise."""
    raise NotImplementedError


class MultiHeadAttention(nn.Module):
    """Multi-head attention: w_q, w_k, w_v, w_o (nn.Linear(d_model, d_model)); forward(query, key,
    value, mask=None) -> (output (B, T, E), weights (B, H, T, S))."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        raise NotImplementedError


class PositionwiseFeedForward(nn.Module):
    """linear2(relu(linear1(x)))."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        raise NotImplementedError


class EncoderLayer(nn.Module):
    """self_attn, feed_forward, norm1, norm2; forward(x, mask=None) -> (output, self-attention weights)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        raise NotImplementedError


class DecoderLayer(nn.Module):
    """self_attn, cross_attn, feed_forward, norm1..3; forward(y, memory, src_mask=None, tgt_mask=None)
    -> (output, self weights, cross weights)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        raise NotImplementedError


class Encoder(nn.Module):
    """layers (nn.ModuleList of EncoderLayer), norm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        raise NotImplementedError


class Decoder(nn.Module):
    """layers (nn.ModuleList of DecoderLayer), norm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        raise NotImplementedError


class Transformer(nn.Module):
    """src_embed, tgt_embed, encoder, decoder, generator; encode(src), forward(src, tgt_in) -> logits,
    greedy_decode(src, max_len=50) -> tokens, beam_search(src, beam_size=4, max_len=50, alpha=0.6)
    -> (tokens, scores, log_probs), cross_attention(src, tgt_in) -> the last decoder layer's
    cross-attention weights (B, H, T, S), teacher-forced (the grader redraws your map with it)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 d_ff: int = 128, dropout: float = 0.1, max_len: int = 128, norm_first: bool = False):
        super().__init__()
        raise NotImplementedError
