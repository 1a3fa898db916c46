"""Property checks: what a call's outputs must satisfy when the template leaves the architecture to
the student, so that no reference output can be compared exactly (a forecasting head, an
attention layer, a VAE of the student's design).

A property check reads one probe call and decides, in this order: the call returned; each output
named is a real floating tensor of the expected shape, finite, inside its range (e.g. gate
activations in [0, 1]) and, where asked, summing to one along an axis (attention weights); and,
for a call with perturbed inputs (`ProbeCall.perturb`, where only some batch rows were changed),
that the rows the judge did not change kept their outputs (no mixing across the batch) while the
changed rows moved (the input is used). The first property that fails is the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from grader.i18n import Message, msg
from grader.judge import CheckContext, CheckDef, Verdict, call_problem, describe_shape


@dataclass(frozen=True)
class Output:
    """What one output of the call must satisfy."""

    index: int
    name: str                               # `name.<name>` in the catalogs ("output of LSTMForecaster")
    shape: tuple[int, ...]
    low: float | None = None                # every value >= low (None: no bound)
    high: float | None = None               # every value <= high
    sums_to_one: int | None = None          # the axis along which the values must sum to 1
    sum_atol: float = 1e-4


def _what(name: str, function: str) -> Message:
    return msg("compare.what", name=msg(f"name.{name}"), function=function)


def _index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape))


def tensor_problem(actual: torch.Tensor | None, spec: Output, function: str) -> Message | None:
    """None when `actual` meets `spec` (shape, finite, range, sums), else what is wrong."""
    what = _what(spec.name, function)
    if actual is None:
        return msg("compare.no_tensor", what=what)
    if tuple(actual.shape) != tuple(spec.shape):
        return msg("compare.shape", what=what, shape=describe_shape(actual),
                   expected="(" + ", ".join(str(s) for s in spec.shape) + ")")
    if not actual.is_floating_point():
        return msg("compare.not_float", what=what, dtype=str(actual.dtype).replace("torch.", ""))
    values = actual.double()
    bad = ~torch.isfinite(values)
    if bad.any():
        return msg("w5l.prop_nonfinite", what=what, count=int(bad.sum()),
                   index=_index(int(bad.flatten().nonzero()[0]), values.shape))
    outside = torch.zeros_like(values, dtype=torch.bool)
    if spec.low is not None:
        outside |= values < spec.low
    if spec.high is not None:
        outside |= values > spec.high
    if outside.any():
        first = _index(int(outside.flatten().nonzero()[0]), values.shape)
        return msg("w5l.prop_range", what=what, count=int(outside.sum()), total=values.numel(),
                   low="-inf" if spec.low is None else f"{spec.low:g}",
                   high="inf" if spec.high is None else f"{spec.high:g}",
                   value=f"{float(values[first]):.4g}", index=first)
    if spec.sums_to_one is not None:
        sums = values.sum(dim=spec.sums_to_one)
        off = (sums - 1.0).abs() > spec.sum_atol
        if off.any():
            first = _index(int(off.flatten().nonzero()[0]), sums.shape)
            return msg("w5l.prop_sum", what=what, axis=spec.sums_to_one, count=int(off.sum()),
                       total=sums.numel(), value=f"{float(sums[first]):.5g}", index=first)
    return None


def rows_problem(base: list, changed: list, outputs: list[Output], changed_rows: tuple[int, ...],
                 function: str, *, atol: float) -> Message | None:
    """None when, between the outputs on the judge's inputs (`base`) and on the same inputs with
    only `changed_rows` altered (`changed`), every other row is unchanged and the changed rows
    moved; else what is wrong. Row = index along the first (batch) axis."""
    for spec in outputs:
        a = base[spec.index] if spec.index < len(base) else None
        b = changed[spec.index] if spec.index < len(changed) else None
        problem = tensor_problem(b, spec, function)
        if problem is not None:
            return problem
        moved = (a.double() - b.double()).abs().flatten(1).amax(dim=1) > atol   # (B,)
        kept = [r for r in range(a.shape[0]) if r not in changed_rows]
        mixed = [r for r in kept if bool(moved[r])]
        if mixed:
            return msg("w5l.prop_rows_mix", what=_what(spec.name, function), rows=", ".join(map(str, changed_rows)),
                       other=mixed[0])
    first = outputs[0]
    a, b = base[first.index], changed[first.index]
    still = [r for r in changed_rows if not bool(((a[r].double() - b[r].double()).abs() > atol).any())]
    if still:
        return msg("w5l.prop_ignores_input", what=_what(first.name, function), row=still[0])
    return None


def property_check(call_id: str, function: str, outputs: list[Output], *, changed_rows: tuple[int, ...] = (),
                   atol: float = 1e-5, also: tuple[str, ...] = (),
                   extra: Callable[[CheckContext], Verdict | None] | None = None) -> CheckDef:
    """A check that `call_id`'s outputs meet `outputs`; with `changed_rows`, the call's first
    perturbed variant must move those rows and only those. `extra` (another check's function,
    returning None when it passes) runs after the properties hold."""

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        if outcome.status == "state":
            return Verdict("fail", msg("check.module_state", function=function,
                                       problems="; ".join(outcome.problems[:4]) or outcome.message))
        problem = call_problem(outcome, function, ctx.probe)
        if problem:
            return problem
        for spec in outputs:
            actual = outcome.outputs[spec.index] if spec.index < len(outcome.outputs) else None
            if actual is None and spec.index < len(outcome.types):
                return Verdict("fail", msg("check.not_a_tensor", what=_what(spec.name, function),
                                           type=outcome.types[spec.index]))
            message = tensor_problem(actual, spec, function)
            if message:
                return Verdict("fail", message)
        if changed_rows:
            if not outcome.variants:
                return Verdict("error", msg("check.not_tested", function=function, reason=msg("probe.not_reached")))
            message = rows_problem(outcome.outputs, outcome.variants[0], outputs, changed_rows, function, atol=atol)
            if message:
                return Verdict("fail", message)
        if extra is not None:
            verdict = extra(ctx)
            if verdict is not None:
                return verdict
        return Verdict("pass", msg("w5l.prop_ok", function=function))

    return CheckDef(check, function=function, also=also)
