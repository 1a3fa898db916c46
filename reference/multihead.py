"""Reference implementation of the w6-multihead assignment (multi-head attention analysis).

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: head selection and head correlation (plain tensor functions), the initialisation
strategies of the input projection, multi-head attention with learnable head weights, head
importance and a dynamic number of heads, then the small transformer and the synthetic task of
the experiments.

Conventions (the template fixes them; the grader loads its own weights by these names):
- ``MultiHeadAttention(embed_dim, num_heads)`` holds exactly the parameters of
  ``torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)``: ``in_proj_weight
  (3E, E)`` (the rows of W_q, then W_k, then W_v), ``in_proj_bias (3E,)``, ``out_proj.weight
  (E, E)``, ``out_proj.bias (E,)``; plus ``head_weights (H,)`` (ones at initialisation). Head h
  owns rows ``h*dh:(h+1)*dh`` of each of W_q, W_k, W_v and columns ``h*dh:(h+1)*dh`` of
  ``out_proj.weight`` (``dh = E // H``). With ``head_weights`` all ones it computes what torch's
  module computes with the same weights (``need_weights=True, average_attn_weights=False``);
  tests/test_w6_multihead.py checks that.
- inputs are batch first: ``query (B, T, E)``, ``key``/``value (B, S, E)``; a boolean mask is
  ``True`` where attention is *allowed* (torch's module uses the opposite), a float mask is added
  to the scores; masks broadcast to ``(B, H, T, S)`` and leave every query at least one key;
- ``forward`` returns ``(output (B, T, E), attn (B, H, T, S))``: the per-head maps, not averaged;
- head h's output is multiplied by ``head_weights[h]`` (and by ``head_mask``, when given) before
  the heads are merged and projected: a zero removes the head's contribution exactly.

References:
- Vaswani et al. 2017, "Attention Is All You Need" (multi-head attention).
- Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?" (head gates xi_h and
  the importance score I_h = E_x |dL(x)/dxi_h|, head pruning).
- Voita et al. 2019, "Analyzing Multi-Head Self-Attention: Specialized Heads Do the Heavy
  Lifting, the Rest Can Be Pruned" (head roles, learnable head gates).
- Clark et al. 2019, "What Does BERT Look At? An Analysis of BERT's Attention" (per-head maps,
  similarity between heads).
- Glorot & Bengio 2010 (xavier initialisation); Saxe et al. 2014 (orthogonal initialisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "select_heads",
    "head_correlation",
    "init_in_proj",
    "MultiHeadAttention",
    "TaskConfig",
    "ModelConfig",
    "task_targets",
    "make_task_batch",
    "Block",
    "TinyTransformer",
]

CONSTANT_SPREAD = 1e-6   # a head map whose entries differ by at most this is constant (no correlation)


# -----------------------------------------------------------------------------
# Head selection and head correlation


def select_heads(scores: Tensor, k: int) -> Tensor:
    """A bool mask of ``scores``' shape, True at the ``k`` largest scores (ties: the lower flat
    index first). ``scores`` may be ``(H,)`` (one layer) or ``(L, H)`` (every layer at once)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    flat = scores.detach().reshape(-1)                                  # (L*H,)
    order = torch.argsort(flat, descending=True, stable=True)           # (L*H,)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=scores.device)
    keep[order[:k]] = True
    return keep.view(scores.shape)                                      # scores' shape


def head_correlation(maps: Tensor) -> Tensor:
    """Pearson correlation between the heads' attention maps: ``maps (B, H, T, S)`` -> ``(H, H)``.

    Each head's maps are flattened over (B, T, S). A head whose entries are all equal (to within
    CONSTANT_SPREAD) has no defined correlation: 0 with every other head, 1 with itself."""
    H = maps.shape[1]
    flat = maps.detach().double().transpose(0, 1).reshape(H, -1)        # (H, B*T*S)
    centred = flat - flat.mean(dim=1, keepdim=True)                     # (H, B*T*S)
    constant = (flat.amax(dim=1) - flat.amin(dim=1)) <= CONSTANT_SPREAD  # (H,)
    norms = centred.norm(dim=1, keepdim=True)                           # (H, 1)
    unit = torch.where(constant[:, None], torch.zeros_like(centred), centred / norms.clamp_min(1e-300))
    corr = (unit @ unit.T).clamp(-1.0, 1.0)                             # (H, B*T*S) @ (B*T*S, H) -> (H, H)
    corr.fill_diagonal_(1.0)
    return corr.to(torch.float32)


# -----------------------------------------------------------------------------
# Initialisation strategies of the input projection (bonus)


def init_in_proj(embed_dim: int, num_heads: int, strategy: str = "xavier", seed: int = 0) -> Tensor:
    """A fresh ``in_proj_weight (3E, E)`` drawn from a generator seeded with ``seed``.

    - ``"xavier"``: uniform in [-a, a], a = sqrt(6 / (E + 3E)) (torch's MultiheadAttention default:
      xavier_uniform_ over the whole (3E, E) matrix);
    - ``"orthogonal"``: each of W_q, W_k, W_v is an orthogonal (E, E) matrix, so the heads start in
      mutually orthogonal subspaces (Saxe et al. 2014).
    """
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    g = torch.Generator().manual_seed(seed)
    E = embed_dim
    if strategy == "xavier":
        bound = math.sqrt(6.0 / (E + 3 * E))
        return (torch.rand(3 * E, E, generator=g) * 2.0 - 1.0) * bound  # (3E, E)
    if strategy == "orthogonal":
        blocks = []
        for _ in range(3):
            q, r = torch.linalg.qr(torch.randn(E, E, generator=g, dtype=torch.float64))  # (E, E), (E, E)
            blocks.append(q * torch.sign(torch.diagonal(r))[None, :])  # sign fix: a uniform (Haar) draw
        return torch.cat(blocks, dim=0).to(torch.float32)             # (3E, E)
    raise ValueError(f"unknown strategy {strategy!r}: 'xavier' or 'orthogonal'")


# -----------------------------------------------------------------------------
# Multi-head attention with learnable head weights


class MultiHeadAttention(nn.Module):
    """Multi-head attention with torch.nn.MultiheadAttention's parameter layout and per-head
    weights ``head_weights (H,)`` (gates xi_h of Michel et al. 2019)."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.head_weights = nn.Parameter(torch.ones(num_heads))
        # torch.nn.MultiheadAttention's initialisation: xavier on the input projection, zero biases
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor, index: int) -> Tensor:
        """Project ``x (B, N, E)`` with the ``index``-th third of in_proj (0: q, 1: k, 2: v) and
        split the heads: ``(B, H, N, dh)``."""
        B, N, E = x.shape
        rows = slice(index * E, (index + 1) * E)
        projected = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])  # (B, N, E)
        return projected.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, N, H, dh) -> (B, H, N, dh)

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                mask: Optional[Tensor] = None, head_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``(output (B, T, E), attn (B, H, T, S))``; key defaults to query, value to key."""
        key = query if key is None else key
        value = key if value is None else value
        B, T, E = query.shape
        q, k, v = self._heads(query, 0), self._heads(key, 1), self._heads(value, 2)  # (B, H, T|S, dh)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, dh) @ (B, H, dh, S) -> (B, H, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        attn = torch.softmax(scores, dim=-1)                          # (B, H, T, S)
        heads = attn @ v                                              # (B, H, T, S) @ (B, H, S, dh) -> (B, H, T, dh)
        gates = self.head_weights.view(1, self.num_heads, 1, 1)       # (1, H, 1, 1)
        if head_mask is not None:
            gates = gates * head_mask.to(heads.dtype).reshape(-1, self.num_heads, 1, 1)  # (1|B, H, 1, 1)
        merged = (heads * gates).transpose(1, 2).reshape(B, T, E)     # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, E)
        return self.out_proj(merged), attn                            # (B, T, E), (B, H, T, S)

    def head_importance(self, x: Tensor, target: Tensor) -> Tensor:
        """Michel et al.'s importance of each head, ``(H,)``: I_h = mean_b |dL_b/d head_weights[h]|
        with L_b = mean over (T, E) of (self-attention output - target)^2 for example b, at the
        current head weights. Works under torch.no_grad() too (gradients are enabled here)."""
        with torch.enable_grad():
            output, _ = self(x)                                       # (B, T, E)
            losses = ((output - target) ** 2).mean(dim=(1, 2))        # (B,)
            grads = [torch.autograd.grad(loss, self.head_weights, retain_graph=True)[0] for loss in losses]
        return torch.stack(grads).abs().mean(dim=0).detach()          # (B, H) -> (H,)

    def dynamic_heads(self, x: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
        """(Bonus) A number of heads chosen per input: head h is kept for example b when its
        confidence, the mean over queries of its largest attention weight, is >= threshold; the
        most confident head (ties: the lower index) is always kept. Returns the self-attention
        ``(output (B, T, E), keep (B, H) bool)``, the output computed with only the kept heads."""
        _, attn = self(x)                                             # (B, H, T, T)
        confidence = attn.amax(dim=-1).mean(dim=-1)                   # (B, H)
        keep = confidence >= threshold                                # (B, H)
        keep[torch.arange(keep.shape[0]), confidence.argmax(dim=-1)] = True
        output, _ = self(x, head_mask=keep)                           # (B, T, E)
        return output, keep


# -----------------------------------------------------------------------------
# The experiments' task and model


@dataclass
class TaskConfig:
    """The synthetic task: y[i] = (x[i - 1] + x[T - 1 - i]) mod V, the positions taken mod T. Each
    output needs two tokens at two different offsets: a job for two heads."""

    vocab_size: int = 10
    seq_len: int = 8


@dataclass
class ModelConfig:
    vocab_size: int = 10
    seq_len: int = 8
    embed_dim: int = 32
    num_heads: int = 4
    n_layers: int = 2
    mlp_ratio: int = 2


def task_targets(tokens: Tensor, vocab_size: int) -> Tensor:
    """The task's answer for ``tokens (N, T)``: ``(N, T)``."""
    T = tokens.shape[1]
    i = torch.arange(T, device=tokens.device)
    return (tokens[:, (i - 1) % T] + tokens[:, T - 1 - i]) % vocab_size  # (N, T)


def make_task_batch(n: int, config: TaskConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` random sequences ``(n, T)`` and their targets ``(n, T)``."""
    tokens = torch.randint(0, config.vocab_size, (n, config.seq_len), generator=generator)
    return tokens, task_targets(tokens, config.vocab_size)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        E = config.embed_dim
        self.ln_1 = nn.LayerNorm(E)
        self.attn = MultiHeadAttention(E, config.num_heads)
        self.ln_2 = nn.LayerNorm(E)
        self.mlp = nn.Sequential(nn.Linear(E, config.mlp_ratio * E), nn.GELU(), nn.Linear(config.mlp_ratio * E, E))

    def forward(self, x: Tensor, head_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        h, attn = self.attn(self.ln_1(x), head_mask=head_mask)       # (B, T, E), (B, H, T, T)
        x = x + h
        return x + self.mlp(self.ln_2(x)), attn


class TinyTransformer(nn.Module):
    """Token and learned position embeddings, ``n_layers`` blocks, a linear read-out per position."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.embed_dim)
        self.pos_emb = nn.Parameter(torch.randn(config.seq_len, config.embed_dim) * 0.1)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.embed_dim)
        self.head = nn.Linear(config.embed_dim, config.vocab_size)

    def forward_with_maps(self, tokens: Tensor, head_masks: Optional[Tensor] = None) -> tuple[Tensor, list[Tensor]]:
        """``(logits (B, T, V), [attn (B, H, T, T) per layer])``; ``head_masks (L, H)`` keeps heads."""
        x = self.tok_emb(tokens) + self.pos_emb[: tokens.shape[1]]   # (B, T, E)
        maps = []
        for layer, block in enumerate(self.blocks):
            x, attn = block(x, None if head_masks is None else head_masks[layer])
            maps.append(attn)
        return self.head(self.ln_f(x)), maps                         # (B, T, V)

    def forward(self, tokens: Tensor, head_masks: Optional[Tensor] = None) -> Tensor:
        return self.forward_with_maps(tokens, head_masks)[0]
