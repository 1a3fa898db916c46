"""Requirements: how the work was done, not only what it returns.

An assignment's spec declares them per function or class of the template:

* `Forbidden`: "implemented, not borrowed". Two layers. The static one reads the notebook's code in
  the grader's process (`grader.judge.static_api`: imports, aliases, attribute chains, getattr with
  a constant string, followed through the notebook's own helpers); a finding fails the
  requirement and names the call and the line. The dynamic one looks at the torch functions and
  ATen operators the probe saw while each call of the function ran; what only the dynamic layer
  sees goes to a TA as pending, with the evidence (it could be a false alarm, or code hidden from
  the static reading).
* `Growth`: a cost measured by the probe, never read from the student's files: FLOPs and elements
  produced ("work"), or the peak bytes of the tensors the call allocated ("memory"), at a few
  sizes; the growth exponent is fitted in log-log and compared with the bound.

A check that exercises a function is gated by every requirement declared for that function: its
points are given only when the requirement holds (see `gate`).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

from grader.i18n import Message, msg


@dataclass(frozen=True)
class Forbidden:
    id: str
    functions: tuple[str, ...]          # the template's functions/classes this applies to
    apis: tuple[str, ...]               # static layer: fully qualified names (prefix on dots)
    ops: tuple[str, ...]                # dynamic layer: fnmatch patterns over "aten::op" / "torch:fn"
    what: str                           # catalog id naming what is forbidden, e.g. "req.what.fused_attention"


@dataclass(frozen=True)
class Growth:
    id: str
    function: str                       # the measured function (its checks are gated)
    calls: tuple[tuple[int, str], ...]  # (size, measuring call id), by increasing size
    metric: str                         # "memory" (peak bytes) or "work" (FLOPs and elements)
    max_exponent: float | None          # None: measured for the record, gates nothing
    expected: str = "T^1"               # how the bound is said to the student


Requirement = Forbidden | Growth

# What "implemented, not borrowed" forbids wherever the sheet asks for attention written by hand
# (w5-attention, w6, w7, the midterm): torch's attention and transformer modules, the fused
# kernels and their ATen operators, and the usual third-party kernels.
FUSED_ATTENTION_APIS = (
    "torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.MultiheadAttention", "torch.nn.attention", "torch.nn.Transformer", "torch.nn.TransformerEncoder",
    "torch.nn.TransformerEncoderLayer", "torch.nn.TransformerDecoder", "torch.nn.TransformerDecoderLayer",
    "torch._native_multi_head_attention", "torch.ops.aten.scaled_dot_product_attention",
    "torch.ops.aten._scaled_dot_product_attention_math", "torch.ops.aten._scaled_dot_product_flash_attention",
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
    "torch.ops.aten._scaled_dot_product_efficient_attention", "torch.ops.aten._scaled_dot_product_cudnn_attention",
    "torch.ops.aten._native_multi_head_attention", "flash_attn", "xformers",
)
FUSED_ATTENTION_OPS = ("aten::_scaled_dot_product_*", "aten::scaled_dot_product_attention",
                       "aten::_native_multi_head_attention", "aten::_fused_sdp_choice",
                       "torch:scaled_dot_product_attention", "torch:multi_head_attention_forward",
                       "torch:_native_multi_head_attention")


@dataclass
class Outcome:
    """One requirement, judged for one function."""

    requirement: str
    function: str
    status: str                         # pass | fail | pending | skipped (nothing to judge: not run)
    message: Message | str = ""
    measured: dict = field(default_factory=dict)


def fit_exponent(sizes: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(size)."""
    points = [(math.log(s), math.log(max(v, 1.0))) for s, v in zip(sizes, values) if s > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    bare = name.split(".", 1)[0] if name.startswith("aten::") else name  # aten::where.self -> aten::where
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(bare, p) for p in patterns)


def _forbidden(req: Forbidden, function: str, ctx, static_uses: list) -> Outcome:
    uses = [u for u in static_uses if u.root == function]
    dynamic = sorted({op for call in ctx.calls_of(function) for op in call.ops if _matches(op, req.ops)})
    measured = {"static": [{"api": u.resolved, "cell": u.cell, "line": u.line, "code": u.code, "via": list(u.via)}
                           for u in uses[:5]],
                "dynamic": dynamic[:10]}
    if uses:
        first = uses[0]
        where = msg("req.where", cell=first.cell, line=first.line, code=first.code) if first.cell else ""
        via = msg("req.via", chain=" -> ".join(first.via)) if len(first.via) > 1 else ""
        return Outcome(req.id, function, "fail", msg("req.forbidden_static", function=function, api=first.resolved,
                                                         where=where, via=via, what=msg(req.what)), measured)
    if dynamic:
        return Outcome(req.id, function, "pending", msg("req.forbidden_dynamic", function=function,
                                                            ops=", ".join(dynamic[:4]), what=msg(req.what)), measured)
    return Outcome(req.id, function, "pass", "", measured)


def _growth(req: Growth, ctx) -> Outcome:
    sizes, rows = [], []
    for size, call_id in req.calls:
        outcome = ctx.call(call_id)
        if outcome.status != "ok" or not outcome.measured:
            # not implemented, or measured for the record only: nothing to hold against the checks
            if outcome.status in ("not_implemented", "missing", "not_run") or req.max_exponent is None:
                return Outcome(req.id, req.function, "skipped")
            reason = outcome.message or outcome.status
            return Outcome(req.id, req.function, "fail",
                           msg("req.not_measured", function=req.function, size=size, reason=reason))
        sizes.append(size)
        rows.append(outcome.measured)
    measured: dict = {"metric": req.metric, "sizes": sizes, "expected": req.expected,
                      "max_exponent": req.max_exponent, "device": rows[-1].get("device", "cpu")}
    if req.metric == "memory":
        values = [r.get("peak_bytes", 0) for r in rows]
        exponent = fit_exponent(sizes, values)
        measured.update(peak_bytes=values, exponent=_round(exponent), largest_shape=rows[-1].get("largest_shape"))
    else:
        flops = [r.get("flops", 0) for r in rows]
        elements = [r.get("elements", 0) for r in rows]
        exponents = [e for e in (fit_exponent(sizes, flops) if min(flops) > 0 else None,
                                 fit_exponent(sizes, elements)) if e is not None]
        exponent = max(exponents) if exponents else None
        measured.update(flops=flops, elements=elements, exponent=_round(exponent))
    if req.max_exponent is None or exponent is None:
        return Outcome(req.id, req.function, "pass", "", measured)
    if exponent <= req.max_exponent:
        return Outcome(req.id, req.function, "pass",
                       msg(f"req.growth_ok.{req.metric}", function=req.function, exponent=f"{exponent:.2f}"), measured)
    shape = measured.get("largest_shape") or []
    held = msg("req.held", shape=" x ".join(str(s) for s in shape[-2:]), size=sizes[-1]) if len(shape) >= 2 else ""
    return Outcome(req.id, req.function, "fail",
                   msg(f"req.growth_fail.{req.metric}", function=req.function, exponent=f"{exponent:.2f}",
                       expected=req.expected, held=held, size=sizes[-1]), measured)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def forbidden_scope(requirements: list[Requirement]) -> tuple[list[str], list[str]]:
    """(functions, APIs) that the static layer looks through and for, over every Forbidden."""
    forbidden = [r for r in requirements if isinstance(r, Forbidden)]
    return sorted({f for r in forbidden for f in r.functions}), sorted({a for r in forbidden for a in r.apis})


def evaluate(requirements: list[Requirement], ctx) -> dict[tuple[str, str], Outcome]:
    """Every requirement, judged for every function it covers: {(requirement id, function): outcome}."""
    results: dict[tuple[str, str], Outcome] = {}
    roots, apis = forbidden_scope(requirements)
    static_uses: list = []
    if roots:
        from grader.judge.static_api import find_forbidden

        try:
            static_uses = find_forbidden(ctx.notebook, roots, apis)
        except Exception:  # noqa: BLE001 - the dynamic layer still judges; never crash on student code
            static_uses = []
    for req in requirements:
        if isinstance(req, Forbidden):
            for function in req.functions:
                results[(req.id, function)] = _forbidden(
                    req, function, ctx, [u for u in static_uses if _api_in(u.api, req.apis)])
        else:
            results[(req.id, req.function)] = _growth(req, ctx)
    return results


def _api_in(api: str, apis: tuple[str, ...]) -> bool:
    return api in apis


SEVERITY = {"pass": 0, "skipped": 0, "pending": 1, "fail": 2}


def gate(verdict, functions: tuple[str, ...], outcomes: dict[tuple[str, str], Outcome]):
    """The check's verdict once the requirements of its functions are applied, and the figures to
    put in result.json's `measured`. A passing check fails when a requirement fails, and becomes
    pending (for a TA, with the evidence) when a requirement is pending."""
    from grader.judge import Verdict

    relevant = [o for (req_id, function), o in outcomes.items() if function in functions]
    measured = {f"{o.requirement}/{o.function}" if len(functions) > 1 else o.requirement: {"status": o.status, **o.measured}
                for o in relevant if o.measured or o.status != "pass"}
    worst = max(relevant, key=lambda o: SEVERITY.get(o.status, 0), default=None)
    if worst is None or SEVERITY.get(worst.status, 0) == 0 or verdict.status != "pass":
        return verdict, measured
    return Verdict(worst.status, worst.message, cell=verdict.cell), measured
