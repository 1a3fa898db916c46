"""Positional encodings: the judge's own formulas, and what a wrong encoding gets wrong, in words.

A failed encoding check says more than "values differ": the helpers here recompute the public
formulas (sinusoidal table, rotary embedding) in float64 in the grader's process, and the usual
mistakes beside them (sin and cos swapped, the frequency of dimension j instead of pair j // 2,
[sin | cos] halves instead of interleaved pairs, RoPE's half-split layout or reversed rotation,
a relative bias that reads i - j), and name the first position and dimension where the
student's encoding goes wrong and which mistake it matches. Nothing here needs the staff's
reference: the formulas are the papers'.

Used by grader/assignments/w7_positional.py; the factories there are parameterised by function
and class name, so a later assignment (the midterm, the encoder-decoder) can reuse them.
"""

from __future__ import annotations

import math

import torch

from grader.i18n import Message, msg

# --- sinusoidal (Vaswani et al. 2017, section 3.5) -----------------------------------------------


def sinusoid_frequencies(d_model: int, base: float = 10000.0, *, per_dimension: bool = False) -> torch.Tensor:
    """w_i = base^(-2i/d) for each pair i (float64, (d/2,)); with `per_dimension` the frequency of
    each dimension j as its pair's (d,), or, as a common mistake, base^(-j/d) per dimension
    (`per_dimension="index"`)."""
    if per_dimension == "index":
        return base ** (-torch.arange(d_model, dtype=torch.float64) / d_model)
    pairs = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    return pairs.repeat_interleave(2)[:d_model] if per_dimension else pairs


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0, *, layout: str = "interleaved",
                     swapped: bool = False, frequency: str = "pair") -> torch.Tensor:
    """The (max_len, d_model) float64 table, and its usual mistakes: `layout` "interleaved" (sin at
    2i, cos at 2i+1, the paper's) or "halves" ([sin ... | cos ...]); `swapped` puts cos where sin
    belongs; `frequency` "pair" (w_i for dimensions 2i and 2i+1) or "index" (base^(-j/d) for j)."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]                          # (L, 1)
    first, second = (torch.cos, torch.sin) if swapped else (torch.sin, torch.cos)
    if layout == "halves":
        w = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)           # (d/2,)
        angle = position * w[None, :]                                                        # (L, d/2)
        return torch.cat((first(angle), second(angle)), dim=-1)[:, :d_model]                # (L, d)
    w = sinusoid_frequencies(d_model, base, per_dimension="index" if frequency == "index" else True)   # (d,)
    angle = position * w[None, :]                                                            # (L, d)
    even = torch.arange(d_model) % 2 == 0                                                    # (d,)
    return torch.where(even, first(angle), second(angle))                                    # (L, d)


def _first_difference(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> tuple[int, int] | None:
    bad = ((actual.double() - expected.double()).abs() > atol) | ~torch.isfinite(actual.double())
    if not bad.any():
        return None
    row, col = (int(i) for i in bad.nonzero()[0])
    return row, col


def describe_sinusoid(actual: torch.Tensor, max_len: int, d_model: int, base: float = 10000.0,
                      *, atol: float = 1e-4) -> Message | None:
    """In words, what is wrong with a sinusoidal table (None when it is right or when no known
    mistake explains it): names the first position and dimension that differ."""
    if actual is None or tuple(actual.shape) != (max_len, d_model) or not actual.is_floating_point():
        return None
    expected = sinusoidal_table(max_len, d_model, base)
    where = _first_difference(actual, expected, atol)
    if where is None:
        return None
    pos, dim = where
    got, want = float(actual[pos, dim]), float(expected[pos, dim])
    names = {True: "sin", False: "cos"}
    candidates = (("swapped", dict(swapped=True)), ("halves", dict(layout="halves")),
                  ("frequency", dict(frequency="index")))
    for mistake, options in candidates:
        if _first_difference(actual, sinusoidal_table(max_len, d_model, base, **options), atol) is not None:
            continue
        if mistake == "halves":
            return msg("w7p.sin_halves", pos=pos, dim=dim, got=f"{got:.4g}", expected=f"{want:.4g}")
        if mistake == "swapped":
            return msg("w7p.sin_swapped", pos=pos, dim=dim, got=names[dim % 2 == 1], expected=names[dim % 2 == 0],
                       got_value=f"{got:.4g}", expected_value=f"{want:.4g}")
        return msg("w7p.sin_frequency", pos=pos, dim=dim, got=f"{got:.4g}", expected=f"{want:.4g}",
                   exponent=f"{2 * (dim // 2)}/{d_model}", wrong=f"{dim}/{d_model}")
    # No known mistake: say what this entry should be.
    trig = "sin" if dim % 2 == 0 else "cos"
    return msg("w7p.sin_entry", pos=pos, dim=dim, got=f"{got:.4g}", expected=f"{want:.4g}", trig=trig,
               exponent=f"{2 * (dim // 2)}/{d_model}")


# --- relative position bias: a function of j - i only ---------------------------------------------


def toeplitz_break(bias: torch.Tensor, atol: float = 1e-5) -> tuple[int, int, int] | None:
    """(head, i, j) of the first entry whose value differs from (i + 1, j + 1)'s, the same offset
    j - i: a bias that depends on more than the offset. None when every diagonal is constant."""
    b = bias.double()
    if b.ndim == 2:
        b = b[None]
    differs = (b[:, :-1, :-1] - b[:, 1:, 1:]).abs() > atol * (1 + b[:, :-1, :-1].abs())
    if not differs.any():
        return None
    h, i, j = (int(x) for x in differs.nonzero()[0])
    return h, i, j


def relative_bias_table(table: torch.Tensor, q_len: int, k_len: int, *, sign: int = 1,
                        clip: bool = True) -> torch.Tensor:
    """bias[h, clip(sign * (j - i)) + D] (H, q_len, k_len) from a (H, 2D + 1) table; without `clip`,
    offsets beyond D wrap around (what negative indexing does)."""
    d_max = (table.shape[-1] - 1) // 2
    offset = sign * (torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None])            # (q_len, k_len)
    index = offset.clamp(-d_max, d_max) + d_max if clip else (offset + d_max) % table.shape[-1]
    return table[:, index]                                                                   # (H, q_len, k_len)


def describe_relative_bias(actual: torch.Tensor, table: torch.Tensor, *, atol: float = 1e-4) -> Message | None:
    """In words, what is wrong with a relative bias (H, q_len, k_len) computed from `table`: an
    absolute dependence (the first broken diagonal), the offset read as i - j, or no clipping."""
    if actual is None or actual.ndim != 3 or not actual.is_floating_point():
        return None
    broken = toeplitz_break(actual, atol)
    if broken is not None:
        h, i, j = broken
        return msg("w7p.rel_not_shift_invariant", head=h, i=i, j=j, i1=i + 1, j1=j + 1, offset=j - i,
                   a=f"{float(actual[h, i, j]):.4g}", b=f"{float(actual[h, i + 1, j + 1]):.4g}")
    _, q_len, k_len = actual.shape
    if tuple(actual.shape) != (table.shape[0], q_len, k_len):
        return None
    d_max = (table.shape[-1] - 1) // 2
    expected = relative_bias_table(table, q_len, k_len)
    where = _first_difference(actual.reshape(-1, k_len), expected.reshape(-1, k_len), atol)
    if where is None:
        return None
    row, j = where
    i = row % q_len
    reversed_offsets = relative_bias_table(table, q_len, k_len, sign=-1).reshape(-1, k_len)
    if _first_difference(actual.reshape(-1, k_len), reversed_offsets, atol) is None:
        return msg("w7p.rel_sign", i=i, j=j, offset=j - i, reversed=i - j)
    if abs(j - i) > d_max:
        return msg("w7p.rel_clip", i=i, j=j, offset=j - i, max_distance=d_max,
                   edge=2 * d_max if j > i else 0)
    return None


# --- rotary position embedding (Su et al. 2021) -------------------------------------------------


def rope_rotate(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0, *,
                layout: str = "interleaved", sign: int = 1, frequency: str = "pair") -> torch.Tensor:
    """RoPE in float64: pairs (2i, 2i+1) ("interleaved", the paper's) or (i, i + d/2) ("half",
    GPT-NeoX's) rotated by sign * m * theta_i, theta_i = base^(-2i/d) ("pair") or base^(-i/d)
    ("index", a common mistake)."""
    *_, T, d = x.shape
    pos = torch.arange(T, dtype=torch.float64) if positions is None else positions.double()
    i = torch.arange(d // 2, dtype=torch.float64)
    theta = base ** (-(2 * i if frequency == "pair" else i) / d)                              # (d/2,)
    angle = sign * pos[:, None] * theta[None, :]                                             # (T, d/2)
    cos, sin = angle.cos(), angle.sin()
    x = x.double()
    if layout == "half":
        a, b = x[..., : d // 2], x[..., d // 2:]
        return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).reshape(x.shape)


def describe_rope(actual: torch.Tensor, x: torch.Tensor, positions: torch.Tensor | None, base: float = 10000.0,
                  *, atol: float = 1e-4) -> Message | None:
    """In words, which known mistake a wrong RoPE output matches (None: none of them)."""
    if actual is None or tuple(actual.shape) != tuple(x.shape) or not actual.is_floating_point():
        return None
    expected = rope_rotate(x, positions, base)
    flat = actual.reshape(-1, x.shape[-1])
    where = _first_difference(flat, expected.reshape(-1, x.shape[-1]), atol)
    if where is None:
        return None
    row, dim = where
    pos = row % x.shape[-2]
    position = int(positions[pos]) if positions is not None else pos
    candidates = (
        (dict(layout="half"), lambda: msg("w7p.rope_half", pos=position, dim=dim)),
        (dict(sign=-1), lambda: msg("w7p.rope_direction", pos=position, dim=dim)),
        (dict(frequency="index"), lambda: msg("w7p.rope_frequency", pos=position, dim=dim)),
    )
    for options, words in candidates:
        if _first_difference(flat, rope_rotate(x, positions, base, **options).reshape(flat.shape), atol) is None:
            return words()
    if positions is not None and _first_difference(flat, rope_rotate(x, None, base).reshape(flat.shape), atol) is None:
        return msg("w7p.rope_positions_ignored", pos=position)
    if _first_difference(flat, x.reshape(flat.shape), atol) is None:
        return msg("w7p.rope_identity")
    return None


def norm_change(rotated: torch.Tensor, original: torch.Tensor, rtol: float = 1e-4) -> tuple[int, float, float] | None:
    """(row, norm before, norm after) of the first vector (last axis) whose norm changed."""
    before = original.double().reshape(-1, original.shape[-1]).norm(dim=-1)
    after = rotated.double().reshape(-1, rotated.shape[-1]).norm(dim=-1)
    changed = (after - before).abs() > rtol * (1 + before)
    if not changed.any():
        return None
    row = int(changed.nonzero()[0])
    return row, float(before[row]), float(after[row])


def offset_groups(pos_q: torch.Tensor, pos_k: torch.Tensor) -> dict[int, list[int]]:
    """Row indices grouped by the offset m - n of their (query, key) positions."""
    groups: dict[int, list[int]] = {}
    for row, (m, n) in enumerate(zip(pos_q.tolist(), pos_k.tolist())):
        groups.setdefault(int(m) - int(n), []).append(row)
    return groups


def relative_dot_problem(rq: torch.Tensor, rk: torch.Tensor, pos_q: torch.Tensor, pos_k: torch.Tensor,
                         *, tol: float) -> Message | None:
    """The rotated copies of one query (rq, rows at positions pos_q) and one key (rk, at pos_k):
    q.k must be the same for every pair with the same offset m - n, and must change with the
    offset (else no position information is left). None when both hold."""
    dots = (rq.double().reshape(-1, rq.shape[-1]) * rk.double().reshape(-1, rk.shape[-1])).sum(-1)
    groups = offset_groups(pos_q, pos_k)
    for offset, rows in sorted(groups.items()):
        values = dots[rows]
        spread = float(values.max() - values.min())
        if not math.isfinite(spread) or spread > tol:
            a, b = rows[int(values.argmin())], rows[int(values.argmax())]
            return msg("w7p.rope_offset", offset=offset, m1=int(pos_q[a]), n1=int(pos_k[a]), m2=int(pos_q[b]),
                       n2=int(pos_k[b]), a=f"{float(dots[a]):.5g}", b=f"{float(dots[b]):.5g}")
    means = sorted(float(dots[rows].mean()) for rows in groups.values())
    if len(means) > 1 and means[-1] - means[0] <= tol:
        return msg("w7p.rope_no_position", count=len(groups), value=f"{means[0]:.5g}")
    return None
