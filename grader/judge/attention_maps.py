"""Attention maps and masks: what a wrong pattern gets wrong, in words, and the picture to show.

A failed attention-map check says more than "values differ": the helpers here compare the
student's maps `(..., T, S)` with the expected ones and name the first mistake a reader can act
on, in this order:

1. a query that attends to a key the mask blocks ("query 3 attends to key 5 through the causal
   mask": weight > 0 where the expected weight is exactly 0);
2. a query that gives no weight to a key the mask allows (the mask applied the wrong way round);
3. a query whose weights do not sum to 1 (the softmax over the wrong axis, or none);
4. otherwise the largest difference, with its query and key.

Each comes with the (student, expected) 2-D slice of the batch row and head where it happens,
for the report's side-by-side picture (`Verdict.figure`). Used by grader/assignments/w6_multihead.py;
any assignment with attention maps (seq2seq attention, the transformer, the midterm) can reuse it.
"""

from __future__ import annotations

import torch

from grader.i18n import Message, msg
from grader.judge import compare_tensors, describe_shape
from grader.rubric.models import Tolerance

BLOCKED_WEIGHT = 1e-6   # a weight above this on a key the mask blocks is attention through the mask
ROW_SUM_ATOL = 1e-4


def _slice(tensor: torch.Tensor, lead: tuple[int, ...]):
    from grader.report.figures import slice_2d

    plane = tensor[lead] if lead else tensor
    return slice_2d(plane)


def _pictures(actual: torch.Tensor, expected: torch.Tensor, lead: tuple[int, ...]) -> tuple:
    """The report's picture of one map: query rows, key columns."""
    return _slice(actual, lead), _slice(expected, lead), "attention"


def _where(lead: tuple[int, ...]) -> str:
    """"batch 1, head 2" for a (B, H, T, S) map; the leading indices otherwise."""
    if len(lead) == 2:
        return f"batch {lead[0]}, head {lead[1]}"
    return ", ".join(f"axis {axis} = {index}" for axis, index in enumerate(lead))


def map_problem(actual: torch.Tensor | None, expected: torch.Tensor, tol: Tolerance, what: Message | str, *,
                mask_name: Message | str) -> tuple[Message | None, tuple | None]:
    """(None, None) when the maps match; else (what is wrong, (student slice, expected slice)).

    `expected` holds the reference's maps: exact zeros where the mask blocks a key. `mask_name`
    says which mask in the message ("the causal mask")."""
    if actual is None or actual.shape != expected.shape or not actual.is_floating_point():
        return compare_tensors(actual, expected, tol, what), None
    a, e = actual.detach().double(), expected.detach().double()
    lead_dims = a.ndim - 2
    nonfinite = ~torch.isfinite(a)
    if nonfinite.any():
        index = tuple(int(i) for i in nonfinite.nonzero()[0])
        lead, (i, j) = index[:lead_dims], index[lead_dims:]
        return msg("w6m.map_nonfinite", what=what, count=int(nonfinite.sum()), query=i, key=j,
                   where=_where(lead)), _pictures(actual, expected, lead)
    leak = (e == 0) & (a.abs() > BLOCKED_WEIGHT)
    if leak.any():
        index = tuple(int(i) for i in leak.nonzero()[0])
        lead, (i, j) = index[:lead_dims], index[lead_dims:]
        return msg("w6m.map_leak", what=what, query=i, key=j, mask=mask_name, weight=f"{float(a[index]):.3g}",
                   where=_where(lead), count=int(leak.sum())), _pictures(actual, expected, lead)
    blocked = (e > BLOCKED_WEIGHT) & (a == 0)
    if blocked.any():
        index = tuple(int(i) for i in blocked.nonzero()[0])
        lead, (i, j) = index[:lead_dims], index[lead_dims:]
        return msg("w6m.map_blocked", what=what, query=i, key=j, mask=mask_name, where=_where(lead),
                   expected=f"{float(e[index]):.3g}", count=int(blocked.sum())), \
            _pictures(actual, expected, lead)
    sums = a.sum(dim=-1)
    off = (sums - 1.0).abs() > ROW_SUM_ATOL
    if off.any():
        index = tuple(int(i) for i in off.nonzero()[0])
        lead, i = index[:lead_dims], index[lead_dims]
        return msg("w6m.map_row_sum", what=what, query=i, total=f"{float(sums[index]):.4g}", where=_where(lead),
                   count=int(off.sum()), rows=sums.numel()), _pictures(actual, expected, lead)
    message = compare_tensors(actual, expected, tol, what)
    if message is None:
        return None, None
    diff = (a - e).abs() - (tol.atol + tol.rtol * e.abs())
    index = tuple(int(i) for i in torch.unravel_index(torch.argmax(diff), a.shape))
    lead, (i, j) = index[:lead_dims], index[lead_dims:]
    return msg("w6m.map_values", what=what, query=i, key=j, where=_where(lead), got=f"{float(a[index]):.4g}",
               expected=f"{float(e[index]):.4g}", shape=describe_shape(actual)), \
        _pictures(actual, expected, lead)
