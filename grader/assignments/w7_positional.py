"""w7-positional: the public probe calls and checks.

The encodings whose layout the template fixes are compared exactly with the reference on the
judge's inputs (the sinusoidal table, a learned table and a relative bias loaded with the judge's
weights, gradients included, RoPE at positions the judge picks). What the papers promise is
checked as properties on the student's own outputs: a relative bias is a function of j - i only
(shift invariance), RoPE keeps norms and makes q.k depend on the offset m - n only (random vectors
at many positions). A failed encoding check says in words what is wrong ("the encoding of position
0, dimension 2 is cos where sin is expected") and shows the student's encoding beside the expected.

The length-generalisation experiment is re-evaluated by the judge: the four models the notebook
trained at length L (left as MODEL_SINUSOIDAL, MODEL_LEARNED, MODEL_RELATIVE, MODEL_ROPE) predict the
lag-copy task on the judge's own sequences of length L, 2L and 4L, and the judge computes their
accuracy itself. The cost table is compared with the grader's own measurement of the functions'
memory growth.

Inputs are drawn from the run's seed with a private generator. Sizes differ from each other (a
transposed table cannot pass by luck); positions go well past the tables (up to 600 for RoPE).
"""

from __future__ import annotations

import math

import torch

from grader.assignments import AssignmentSpec
from grader.judge.requirements import FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS
from grader.i18n import Message, msg
from grader.judge import CheckContext, all_of, CheckDef, Verdict, artifacts, call_problem, compare_tensors, module_check
from grader.judge.encodings import (describe_relative_bias, describe_rope, describe_sinusoid, norm_change,
                                    relative_dot_problem, rope_rotate)
from grader.judge.quality import quality_checks
from grader.judge.requirements import Forbidden, Growth
from grader.probe import ArtifactSpec, ProbeCall
from grader.rubric.models import Tolerance

# What the template fixes (the notebook's constants): the judge's held-out task uses the same.
VOCAB_SIZE, LAG, TRAIN_LEN = 10, 3, 16
EVAL_LENS = (TRAIN_LEN, 2 * TRAIN_LEN, 4 * TRAIN_LEN)
ENCODINGS = ("sinusoidal", "learned", "relative", "rope")
MODEL_NAMES = {e: f"MODEL_{e.upper()}" for e in ENCODINGS}
HELD_OUT_SEQUENCES = 100
IGNORE_INDEX = -100
# A model has learned the task when the judge measures at least this accuracy at the training length.
TRAINED_THRESHOLD = {"smoke": 0.9, "full": 0.95}

FP32 = Tolerance(atol=1e-4, rtol=1e-4)
# RoPE at positions in the hundreds: a float32 angle of 600 rad is only good to 3e-5, so a correct
# implementation that orders its float32 operations differently may move the result by ~1e-4.
ROPE_TOL = Tolerance(atol=1e-3, rtol=1e-3)
SIN_LEN, SIN_D = 64, 24                 # the sinusoidal call
L_MAX, L_D = 12, 8                      # learned table (max_len, d_model); sequences of 10 and 20
REL_H, REL_D = 3, 8                     # relative bias, square (7 x 7: no clipping needed)
SHIFT_H, SHIFT_D, SHIFT_Q, SHIFT_K = 2, 4, 6, 20   # rectangular and clipped
ROPE_T, ROPE_DIM, ROPE_MAX_POS = 40, 16, 600
OFFSETS, SHIFTS = (-9, -2, 0, 1, 5, 13), 6   # RoPE's q.k property: 6 offsets, each at 6 absolute positions
COST_SIZES = (64, 128, 256)             # T of the measuring calls (each well under a second)
COST_D = 64


def lag_copy_targets(tokens: torch.Tensor, lag: int = LAG) -> torch.Tensor:
    """The task's answer: y[:, t] = x[:, t - lag], IGNORE_INDEX for the first `lag` positions."""
    targets = torch.full_like(tokens, IGNORE_INDEX)
    targets[:, lag:] = tokens[:, :-lag]
    return targets


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    inputs: dict[str, torch.Tensor] = {
        "learned_w": randn(L_MAX, L_D), "learned_x": randn(3, 10, L_D), "learned_g": randn(3, 10, L_D),
        "learned_long": randn(2, 20, L_D),
        "rel_table": randn(REL_H, 2 * REL_D + 1), "rel_g": randn(REL_H, 7, 7),
        "shift_table": randn(SHIFT_H, 2 * SHIFT_D + 1),
        "ra_q": randn(2, REL_H, 7, 16), "ra_k": randn(2, REL_H, 11, 16), "ra_v": randn(2, REL_H, 11, 12),
        "ra_bias": randn(REL_H, 7, 11, scale=2.0),
        "rope_x": randn(2, 3, ROPE_T, ROPE_DIM), "rope_x0": randn(1, 2, 9, 8),
        "rope_pos": torch.randint(0, ROPE_MAX_POS, (ROPE_T,), generator=g, dtype=torch.int64),
        "rat_q": randn(2, 2, 9, 16), "rat_k": randn(2, 2, 9, 16), "rat_v": randn(2, 2, 9, 12),
        "ad_w": randn(L_D, L_D, scale=0.5), "ad_b": randn(L_D, scale=0.5), "ad_x": randn(2, 11, L_D),
        "ad_g": randn(2, 11, L_D),
        "table": randn(30, 12),
    }
    # RoPE's relative property: one query and one key, copied to every row, at positions whose
    # offsets m - n take each value of OFFSETS at SHIFTS different absolute positions.
    q, k = randn(ROPE_DIM), randn(ROPE_DIM)
    n = torch.randint(20, 400, (len(OFFSETS) * SHIFTS,), generator=g, dtype=torch.int64)
    m = n + torch.tensor(OFFSETS, dtype=torch.int64).repeat_interleave(SHIFTS)
    inputs.update({"off_q": q.expand(1, 1, len(n), ROPE_DIM).contiguous(),
                   "off_k": k.expand(1, 1, len(n), ROPE_DIM).contiguous(), "off_m": m, "off_n": n})
    for length in EVAL_LENS:
        inputs[f"held_{length}"] = torch.randint(0, VOCAB_SIZE, (HELD_OUT_SEQUENCES, length), generator=g,
                                                 dtype=torch.int64)
    for t in COST_SIZES:
        inputs[f"cost_x_{t}"] = randn(1, t, COST_D)
        inputs[f"cost_r_{t}"] = randn(1, 2, t, COST_D // 2)
    return inputs


CALLS = [
    ProbeCall("sin", "sinusoidal_encoding", kwargs={"max_len": SIN_LEN, "d_model": SIN_D}),
    ProbeCall("learned", "LearnedPositionalEncoding", ("learned_x",), kind="module",
              init_kwargs={"max_len": L_MAX, "d_model": L_D}, state={"weight": "learned_w"},
              backward={"weights": {"0": "learned_g"}}),
    ProbeCall("learned_beyond", "LearnedPositionalEncoding", ("learned_long",), kind="module",
              init_kwargs={"max_len": L_MAX, "d_model": L_D}, state={"weight": "learned_w"}),
    ProbeCall("rel", "RelativePositionBias", kind="module", init_kwargs={"num_heads": REL_H, "max_distance": REL_D},
              state={"bias": "rel_table"}, kwargs={"q_len": 7, "k_len": 7}, backward={"weights": {"0": "rel_g"}}),
    ProbeCall("rel_shift", "RelativePositionBias", kind="module",
              init_kwargs={"num_heads": SHIFT_H, "max_distance": SHIFT_D}, state={"bias": "shift_table"},
              kwargs={"q_len": SHIFT_Q, "k_len": SHIFT_K}),
    ProbeCall("rel_attn", "relative_attention", ("ra_q", "ra_k", "ra_v", "ra_bias")),
    ProbeCall("rope", "apply_rope", ("rope_x",), tensor_kwargs={"positions": "rope_pos"}),
    ProbeCall("rope_default", "apply_rope", ("rope_x0",)),
    ProbeCall("rope_q", "apply_rope", ("off_q",), tensor_kwargs={"positions": "off_m"}),
    ProbeCall("rope_k", "apply_rope", ("off_k",), tensor_kwargs={"positions": "off_n"}),
    ProbeCall("rope_attn", "rope_attention", ("rat_q", "rat_k", "rat_v")),
    ProbeCall("rope_attn_causal", "rope_attention", ("rat_q", "rat_k", "rat_v"), kwargs={"causal": True}),
    # bonus
    ProbeCall("adaptive", "AdaptivePositionalEncoding", ("ad_x",), kind="module", init_kwargs={"d_model": L_D},
              state={"gate.weight": "ad_w", "gate.bias": "ad_b"}, backward={"weights": {"0": "ad_g"}}),
    ProbeCall("compress", "compress_encoding", ("table",), kwargs={"rank": 4}),
]
# The trained models of the experiment, on the judge's own sequences of length L, 2L and 4L.
GENERALIZATION_CALLS = [ProbeCall(f"gen_{e}_{t}", MODEL_NAMES[e], (f"held_{t}",), kind="object")
                        for e in ENCODINGS for t in EVAL_LENS]
# The grader's own cost measurement (peak memory of what each encoding allocates, at three lengths).
COST_CALLS = (
    [ProbeCall(f"m_sin_{t}", "sinusoidal_encoding", kwargs={"max_len": t, "d_model": COST_D}, measure=True)
     for t in COST_SIZES]
    + [ProbeCall(f"m_learned_{t}", "LearnedPositionalEncoding", (f"cost_x_{t}",), kind="module",
                 init_kwargs={"max_len": t, "d_model": COST_D}, measure=True) for t in COST_SIZES]
    # max_distance covers every offset: the measurement does not depend on the clipping, which relative-shift judges
    + [ProbeCall(f"m_rel_{t}", "RelativePositionBias", kind="module",
                 init_kwargs={"num_heads": 1, "max_distance": COST_SIZES[-1]}, kwargs={"q_len": t, "k_len": t},
                 measure=True) for t in COST_SIZES]
    + [ProbeCall(f"m_rope_{t}", "apply_rope", (f"cost_r_{t}",), measure=True) for t in COST_SIZES]
)


# --- helpers -------------------------------------------------------------------------------------

def _pair(actual: torch.Tensor | None, expected: torch.Tensor | None, kind: str = "encoding") -> tuple | None:
    """The report's picture: the first 2-D slice of the student's tensor beside the expected one
    (`kind` names its axes: an encoding's positions and dimensions by default)."""
    from grader.report.figures import slice_2d

    if actual is None or expected is None or not actual.is_floating_point():
        return None
    pair = (slice_2d(actual.double()), slice_2d(expected.double()))
    return (*pair, kind) if pair[0] is not None and pair[1] is not None else None


def _with_words(diagnosis: Message | None, detail: Message) -> Message:
    return msg("w7p.diagnosed", diagnosis=diagnosis, detail=detail) if diagnosis is not None else detail


def _state_problem(outcome, name: str) -> Verdict | None:
    if outcome.status == "state":
        return Verdict("fail", msg("check.module_state", function=name,
                                   problems="; ".join(outcome.problems[:4]) or outcome.message))
    return None


def _what(name: str | Message, function: str) -> Message:
    """"<name> of <function>" (a catalog name: "output", "weights", or a Message)."""
    label = name if isinstance(name, Message) else msg(f"name.{name}")
    return msg("compare.what", name=label, function=function)


_all = all_of


# --- check factories (parameterised by names: the midterm reuses them) -----------------------------

def sinusoidal_check(call_id: str, function: str, max_len: int, d_model: int, base: float = 10000.0) -> CheckDef:
    """The table equals the reference; when it does not, the first wrong position and dimension are
    named with the mistake they match (sin/cos swapped, a wrong frequency, [sin | cos] halves)."""

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        problem = call_problem(outcome, function, ctx.probe)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        actual = outcome.outputs[0] if outcome.outputs else None
        if actual is None and outcome.types:
            return Verdict("fail", msg("check.not_a_tensor", what=_what(msg("name.w7p_encoding"), function),
                                       type=outcome.types[0]))
        expected = ctx.expected[call_id][0]
        tol = ctx.tolerance or FP32
        message = compare_tensors(actual, expected, tol, _what(msg("name.w7p_encoding"), function))
        if message is None:
            return Verdict("pass", msg("w7p.sin_ok", function=function, max_len=max_len, d_model=d_model))
        words = describe_sinusoid(actual, max_len, d_model, base, atol=max(tol.atol, 1e-6) * 10)
        return Verdict("fail", _with_words(words, message), figure=_pair(actual, expected))

    return CheckDef(check, function=function, needs_reference=True)


def learned_beyond_check(call_id: str, class_name: str, max_len: int, x_key: str, weight_key: str) -> CheckDef:
    """Positions past the table reuse its last row (clamping), the behaviour the template defines;
    when they do not, the first such position is named with the row it got instead."""

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        problem = _state_problem(outcome, class_name) or call_problem(outcome, class_name, ctx.probe)
        if problem:
            if outcome.status == "error":
                problem.message = msg("w7p.learned_beyond_raised", detail=problem.message, max_len=max_len)
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        actual = outcome.outputs[0] if outcome.outputs else None
        expected = ctx.expected[call_id][0]
        message = compare_tensors(actual, expected, ctx.tolerance or FP32, _what("output", class_name))
        if message is None:
            return Verdict("pass", msg("w7p.learned_beyond_ok", max_len=max_len, length=expected.shape[-2]))
        x, weight = ctx.inputs[x_key], ctx.inputs[weight_key]
        words = None
        if actual is not None and actual.shape == expected.shape and actual.is_floating_point():
            added = (actual.double() - x.double())[0]           # (T, d): what the module added at each position
            for t in range(max_len, added.shape[0]):
                want = weight[max_len - 1].double()
                if torch.allclose(added[t], want, atol=1e-4):
                    continue
                rows = [r for r in range(max_len) if torch.allclose(added[t], weight[r].double(), atol=1e-4)]
                if rows:
                    words = msg("w7p.learned_beyond_row", pos=t, max_len=max_len, row=rows[0], last=max_len - 1)
                elif torch.allclose(added[t], torch.zeros_like(added[t]), atol=1e-6):
                    words = msg("w7p.learned_beyond_zero", pos=t, max_len=max_len, last=max_len - 1)
                break
            figure = _pair(added, (expected.double() - x.double())[0])
        else:
            figure = None
        return Verdict("fail", _with_words(words, message), figure=figure)

    return CheckDef(check, function=class_name, needs_reference=True)


def relative_bias_check(call_id: str, class_name: str, table_key: str, *, grads: bool = False) -> CheckDef:
    """The bias (H, q_len, k_len) equals the reference with the judge's table (and, with `grads`,
    its gradient); a failure says whether the bias is not a function of j - i (the first broken
    diagonal), reads the offset as i - j, or skips the clipping."""
    exact = module_check(call_id, class_name, {0: "w7p_bias"}, default_tol=FP32, grads=grads)

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        verdict = exact.fn(ctx)
        if verdict.status == "pass":
            return Verdict("pass", msg("w7p.rel_ok", function=class_name, shape=" x ".join(
                str(s) for s in ctx.expected[call_id][0].shape)))
        if verdict.status != "fail" or outcome.status != "ok" or not outcome.outputs:
            return verdict
        actual = outcome.outputs[0]
        words = describe_relative_bias(actual, ctx.inputs[table_key]) if actual is not None else None
        expected = ctx.expected[call_id][0] if ctx.expected and call_id in ctx.expected else None
        return Verdict("fail", _with_words(words, verdict.message), figure=_pair(actual, expected, "attention") or verdict.figure)

    return CheckDef(check, function=class_name, needs_reference=True)


def _attention64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None = None,
                 causal: bool = False, bias_after_softmax: bool = False, scale_bias: bool = False) -> torch.Tensor:
    """Attention in float64, with the usual mistakes as options (the judge's candidates)."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1)
    if bias is not None and scale_bias:
        scores = scores + bias.double()
    scores = scores / math.sqrt(q.shape[-1])
    if bias is not None and not scale_bias and not bias_after_softmax:
        scores = scores + bias.double()
    if causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if bias is not None and bias_after_softmax:
        weights = weights + bias.double()
    return weights @ v


def _matches(actual: torch.Tensor | None, candidate: torch.Tensor, atol: float = 1e-4) -> bool:
    return (actual is not None and actual.shape == candidate.shape and actual.is_floating_point()
            and bool(torch.allclose(actual.double(), candidate, atol=atol, rtol=1e-4)))


def attention_check(calls: tuple[tuple[str, dict], ...], function: str, diagnose) -> CheckDef:
    """(output, weights) of every call equal the reference's; a failure names the known mistake the
    output matches (`diagnose(ctx, call_id, output)` returns words or None) and pictures the weights."""

    def check(ctx: CheckContext) -> Verdict:
        for call_id, _ in calls:
            outcome = ctx.call(call_id)
            problem = call_problem(outcome, function, ctx.probe)
            if problem:
                return problem
            if ctx.expected is None or call_id not in ctx.expected:
                return Verdict("pending", msg("check.pending_no_reference"))
            if len(outcome.outputs) != 2:
                return Verdict("fail", msg("check.n_outputs", function=function, count=len(outcome.outputs),
                                           expected=2))
            tol = ctx.tolerance or FP32
            for index, name in ((0, "output"), (1, "weights")):
                actual, expected = outcome.outputs[index], ctx.expected[call_id][index]
                if actual is None and index < len(outcome.types):
                    return Verdict("fail", msg("check.not_a_tensor", what=_what(name, function),
                                               type=outcome.types[index]))
                message = compare_tensors(actual, expected, tol, _what(name, function))
                if message:
                    words = diagnose(ctx, call_id, outcome.outputs[0])
                    return Verdict("fail", _with_words(words, message),
                                   figure=_pair(outcome.outputs[1], ctx.expected[call_id][1], "attention"))
        return Verdict("pass", msg("check.matches", function=function))

    return CheckDef(check, function=function, needs_reference=True)


def _relative_attention_words(ctx: CheckContext, call_id: str, output: torch.Tensor | None) -> Message | None:
    q, k, v, bias = (ctx.inputs[n] for n in ("ra_q", "ra_k", "ra_v", "ra_bias"))
    for words, options in ((msg("w7p.ra_after_softmax"), dict(bias_after_softmax=True)),
                           (msg("w7p.ra_scaled_bias"), dict(scale_bias=True)),
                           (msg("w7p.ra_no_bias"), dict(bias=None))):
        if _matches(output, _attention64(q, k, v, **{"bias": bias, **options})):
            return words
    return None


def _rope_attention_words(ctx: CheckContext, call_id: str, output: torch.Tensor | None) -> Message | None:
    q, k, v = (ctx.inputs[n] for n in ("rat_q", "rat_k", "rat_v"))
    causal = call_id.endswith("causal")
    rq, rk, rv = rope_rotate(q), rope_rotate(k), rope_rotate(v)
    for words, args in ((msg("w7p.rope_on_values"), (rq, rk, rv)), (msg("w7p.rope_missing"), (q, k, v)),
                        (msg("w7p.rope_query_only"), (rq, k, v))):
        if _matches(output, _attention64(*args, causal=causal)):
            return words
    # Right attention, wrong rotation: the rope check says what is wrong with it.
    for options in (dict(layout="half"), dict(sign=-1), dict(frequency="index")):
        if _matches(output, _attention64(rope_rotate(q, **options), rope_rotate(k, **options), v, causal=causal)):
            return msg("w7p.rope_attention_wrong_rope")
    return None


def rope_check(calls: tuple[tuple[str, str, str | None], ...], function: str, base: float = 10000.0) -> CheckDef:
    """RoPE equals the reference at the judge's positions (and at the default positions); a failure
    names the mistake it matches (half-split pairs, reversed rotation, frequency base^(-i/d),
    positions ignored, no rotation) and pictures the rotated vectors."""

    def check(ctx: CheckContext) -> Verdict:
        for call_id, x_key, pos_key in calls:
            outcome = ctx.call(call_id)
            problem = call_problem(outcome, function, ctx.probe)
            if problem:
                return problem
            if ctx.expected is None or call_id not in ctx.expected:
                return Verdict("pending", msg("check.pending_no_reference"))
            actual = outcome.outputs[0] if outcome.outputs else None
            if actual is None and outcome.types:
                return Verdict("fail", msg("check.not_a_tensor", what=_what(msg("name.w7p_rotated"), function),
                                           type=outcome.types[0]))
            expected = ctx.expected[call_id][0]
            tol = ctx.tolerance or ROPE_TOL
            message = compare_tensors(actual, expected, tol, _what(msg("name.w7p_rotated"), function))
            if message:
                positions = ctx.inputs[pos_key] if pos_key else None
                words = describe_rope(actual, ctx.inputs[x_key], positions, base, atol=tol.atol * 2)
                return Verdict("fail", _with_words(words, message), figure=_pair(actual, expected))
        return Verdict("pass", msg("w7p.rope_ok", function=function, max_pos=int(ctx.inputs[calls[0][2]].max())
                                   if calls[0][2] else 0))

    return CheckDef(check, function=function, needs_reference=True)


def rope_properties_check(function: str, norm_call: tuple[str, str, str], q_call: tuple[str, str],
                          k_call: tuple[str, str]) -> CheckDef:
    """Properties, no reference needed: the rotated vectors keep their norms (norm_call: call id,
    input key, positions key), and q.k of one query and one key rotated to many positions depends
    on the offset m - n only, and does change with it (q_call/k_call: call id, positions key)."""

    def check(ctx: CheckContext) -> Verdict:
        call_id, x_key, pos_key = norm_call
        for cid in (call_id, q_call[0], k_call[0]):
            problem = call_problem(ctx.call(cid), function, ctx.probe)
            if problem:
                return problem
        rotated = ctx.call(call_id).outputs[0] if ctx.call(call_id).outputs else None
        x = ctx.inputs[x_key]
        if rotated is None or rotated.shape != x.shape or not rotated.is_floating_point():
            return Verdict("fail", msg("compare.shape", what=_what(msg("name.w7p_rotated"), function),
                                       shape="-" if rotated is None else str(tuple(rotated.shape)),
                                       expected=str(tuple(x.shape))))
        changed = norm_change(rotated, x)
        if changed is not None:
            row, before, after = changed
            position = int(ctx.inputs[pos_key][row % x.shape[-2]])
            return Verdict("fail", msg("w7p.rope_norm", pos=position, before=f"{before:.5g}", after=f"{after:.5g}"))
        rq = ctx.call(q_call[0]).outputs[0] if ctx.call(q_call[0]).outputs else None
        rk = ctx.call(k_call[0]).outputs[0] if ctx.call(k_call[0]).outputs else None
        q_in = ctx.inputs[_arg_key(ctx, q_call[0])]
        if rq is None or rk is None or rq.shape != q_in.shape or rk.shape != q_in.shape:
            return Verdict("fail", msg("w7p.rope_offset_shape"))
        scale = float(q_in[0, 0, 0].norm() * ctx.inputs[_arg_key(ctx, k_call[0])][0, 0, 0].norm())
        problem = relative_dot_problem(rq, rk, ctx.inputs[q_call[1]], ctx.inputs[k_call[1]], tol=1e-3 * scale)
        if problem is not None:
            return Verdict("fail", problem)
        return Verdict("pass", msg("w7p.rope_properties_ok", vectors=x.numel() // x.shape[-1],
                                   pairs=len(ctx.inputs[q_call[1]])))

    return CheckDef(check, function=function)


def _arg_key(ctx: CheckContext, call_id: str) -> str:
    """The input key of a call's first argument (from the probe's plan)."""
    return next(c.args[0] for c in ctx.calls if c.id == call_id)


def compress_check(call_id: str, function: str, shape: tuple[int, int], rank: int) -> CheckDef:
    """Two factors (A (L, rank), B (rank, d)) whose product is the best rank-`rank` approximation of
    the table (the reference's truncated SVD: unique, whatever the factors' signs or scaling)."""

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        problem = call_problem(outcome, function, ctx.probe)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        if len(outcome.outputs) != 2 or any(t is None or not t.is_floating_point() for t in outcome.outputs):
            return Verdict("fail", msg("check.n_outputs", function=function, count=len(outcome.outputs), expected=2))
        a, b = outcome.outputs
        if tuple(a.shape) != (shape[0], rank) or tuple(b.shape) != (rank, shape[1]):
            return Verdict("fail", msg("w7p.compress_shapes", a=str(tuple(a.shape)), b=str(tuple(b.shape)),
                                       ea=str((shape[0], rank)), eb=str((rank, shape[1]))))
        ea, eb = ctx.expected[call_id]
        expected = ea.double() @ eb.double()
        product = a.double() @ b.double()
        message = compare_tensors(product, expected, Tolerance(atol=1e-3, rtol=1e-3),
                                  _what(msg("name.w7p_reconstruction"), function))
        if message:
            return Verdict("fail", message, figure=_pair(product, expected, "matrix"))
        return Verdict("pass", msg("w7p.compress_ok", rank=rank, values=shape[0] * shape[1],
                                   stored=rank * (shape[0] + shape[1])))

    return CheckDef(check, function=function, needs_reference=True)


# --- the length-generalisation experiment: measured by the judge ----------------------------------

def generalization(ctx: CheckContext) -> tuple[dict | None, Verdict | None]:
    """({encoding: {length: accuracy}}, None) from the judge's own evaluation of the trained models on
    its held-out sequences, or (None, the verdict saying why they cannot be evaluated)."""
    found: dict[str, dict[int, float]] = {}
    for encoding in ENCODINGS:
        name = MODEL_NAMES[encoding]
        found[encoding] = {}
        for length in EVAL_LENS:
            outcome = ctx.call(f"gen_{encoding}_{length}")
            if outcome.status == "missing":
                return None, Verdict("fail", msg("w7p.model_missing", name=name))
            problem = call_problem(outcome, name, ctx.probe)
            if problem:
                return None, problem
            tokens = ctx.inputs[f"held_{length}"]
            logits = outcome.outputs[0] if outcome.outputs else None
            wanted = (len(tokens), length, VOCAB_SIZE)
            if logits is None or tuple(logits.shape) != wanted or not logits.is_floating_point():
                shape = "-" if logits is None else str(tuple(logits.shape))
                return None, Verdict("fail", msg("w7p.logits_shape", name=name, shape=shape, expected=str(wanted)))
            targets = lag_copy_targets(tokens)
            keep = targets != IGNORE_INDEX
            found[encoding][length] = float((logits.argmax(-1)[keep] == targets[keep]).double().mean())
    return found, None


def _summary(found: dict) -> str:
    return "; ".join(f"{e}: " + " / ".join(f"{found[e][t]:.2f}" for t in EVAL_LENS) for e in ENCODINGS)


def _length_trained(ctx: CheckContext) -> Verdict:
    found, problem = generalization(ctx)
    if problem:
        return problem
    threshold = TRAINED_THRESHOLD.get(ctx.profile, TRAINED_THRESHOLD["smoke"])
    weak = [e for e in ENCODINGS if found[e][TRAIN_LEN] < threshold]
    figures = dict(summary=_summary(found), lengths=" / ".join(str(t) for t in EVAL_LENS), threshold=f"{threshold:g}",
                   sequences=HELD_OUT_SEQUENCES)
    if weak:
        return Verdict("fail", msg("w7p.not_trained", encodings=", ".join(weak), train_len=TRAIN_LEN, **figures))
    return Verdict("pass", msg("w7p.trained_ok", train_len=TRAIN_LEN, **figures))


ARTIFACTS = ArtifactSpec(folders=("encoding_analysis", "length_generalization"))
RESULTS = "length_generalization/results.csv"
COST = "encoding_analysis/cost.csv"
RESULTS_COLUMNS = {"encoding": str, "train_len": int, "eval_len": int, "accuracy": float}
COST_COLUMNS = {"encoding": str, "seq_len": int, "time_ms": float, "memory_mb": float, "params": int}
ACCURACY_SLACK = 0.15     # submitted vs the grader's run (another machine may train a little differently)
MEASURED_SLACK = 0.1      # the run's table vs the judge's evaluation of the same models (other samples)


_tables = artifacts.tables  # (submitted rows, the run's rows, a failing verdict or None)


def _length_table(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "length_generalization", "results.csv", RESULTS_COLUMNS, RESULTS)
    if problem:
        return problem
    wanted = {(e, TRAIN_LEN, t) for e in ENCODINGS for t in EVAL_LENS}
    have = {(r["encoding"], r["train_len"], r["eval_len"]) for r in mine}
    if not wanted <= have:
        missing = sorted(wanted - have)
        return Verdict("fail", msg("w7p.results_rows", missing="; ".join(f"({e}, {a}, {b})" for e, a, b in missing[:4]),
                                   train_len=TRAIN_LEN, lengths=", ".join(str(t) for t in EVAL_LENS)))
    if any(r["accuracy"] > 1.0 + 1e-9 for r in mine):
        return Verdict("fail", msg("w7p.results_range"))
    differs = artifacts.compare_tables(mine, ours, ("encoding", "train_len", "eval_len"), {}, name=RESULTS)
    if differs:
        return Verdict("fail", differs)
    run = {(r["encoding"], r["eval_len"]): r["accuracy"] for r in ours}
    for row in mine:
        key = (row["encoding"], row["eval_len"])
        if abs(row["accuracy"] - run[key]) > ACCURACY_SLACK:
            return Verdict("fail", msg("w7p.results_differ", encoding=key[0], length=key[1],
                                       mine=f"{row['accuracy']:.3f}", ours=f"{run[key]:.3f}",
                                       slack=f"{ACCURACY_SLACK:g}"))
    # The run's table against the judge's own evaluation of the models the run left behind.
    found, problem = generalization(ctx)
    if problem:
        return Verdict("fail", msg("w7p.results_unmeasured", reason=problem.message))
    for encoding in ENCODINGS:
        for length in EVAL_LENS:
            claimed, measured = run[(encoding, length)], found[encoding][length]
            if abs(claimed - measured) > MEASURED_SLACK:
                return Verdict("fail", msg("w7p.results_contradict", encoding=encoding, length=length,
                                           claimed=f"{claimed:.3f}", measured=f"{measured:.3f}",
                                           sequences=HELD_OUT_SEQUENCES))
    return Verdict("pass", msg("w7p.results_ok", rows=len(mine), summary=_summary(found)))


def _growth_in(rows: list[dict], encoding: str) -> float | None:
    series = sorted((r["seq_len"], r["memory_mb"]) for r in rows if r["encoding"] == encoding)
    if len(series) < 2 or series[0][1] <= 0 or series[-1][1] <= 0 or series[-1][0] <= series[0][0]:
        return None
    (t0, m0), (t1, m1) = series[0], series[-1]
    return math.log(m1 / m0) / math.log(t1 / t0)


COST_FUNCTIONS = {"sinusoidal": ("memory-sinusoidal", "sinusoidal_encoding"),
                  "learned": ("memory-learned", "LearnedPositionalEncoding"),
                  "relative": ("memory-relative", "RelativePositionBias"),
                  "rope": ("memory-rope", "apply_rope")}


def _cost_table(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "encoding_analysis", "cost.csv", COST_COLUMNS, COST)
    if problem:
        return problem
    lengths = {e: {r["seq_len"] for r in mine if r["encoding"] == e} for e in ENCODINGS}
    short = [e for e in ENCODINGS if len(lengths[e]) < 3]
    if short:
        return Verdict("fail", msg("w7p.cost_coverage", encodings=", ".join(short)))
    # The rows must be the run's; memory and parameters as the run measured them (time depends on the
    # machine and its load, so it is not compared).
    differs = artifacts.compare_tables(mine, ours, ("encoding", "seq_len"), {"memory_mb": 1.5, "params": 1.01},
                                       name=COST)
    if differs:
        return Verdict("fail", differs)
    claimed = {e: _growth_in(mine, e) for e in ENCODINGS}
    measured = {}
    for encoding, (req_id, function) in COST_FUNCTIONS.items():
        outcome = ctx.requirements.get((req_id, function))
        measured[encoding] = outcome.measured.get("exponent") if outcome is not None else None
    if any(v is None for v in measured.values()):
        return Verdict("fail", msg("w7p.cost_unmeasured"))
    if any(v is None for v in claimed.values()):
        return Verdict("fail", msg("w7p.cost_need_memory"))
    for encoding in ENCODINGS:
        if abs(claimed[encoding] - measured[encoding]) > 0.5:
            return Verdict("fail", msg("w7p.cost_contradicts", encoding=encoding, claimed=f"{claimed[encoding]:.2f}",
                                       measured=f"{measured[encoding]:.2f}"))
    return Verdict("pass", msg("w7p.cost_ok", summary="; ".join(
        f"{e}: T^{claimed[e]:.2f} (T^{measured[e]:.2f})" for e in ENCODINGS)))


def _plots(folder: str, what: Message) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        ok, message, figure = artifacts.compare_plots(artifacts.copies(ctx, folder), what=what)
        return Verdict("pass" if ok else "fail", message, figure=figure)

    return CheckDef(check)


# --- requirements ----------------------------------------------------------------------------------

FUNCTIONS = ("sinusoidal_encoding", "LearnedPositionalEncoding", "RelativePositionBias", "relative_attention",
             "apply_rope", "rope_attention", "AdaptivePositionalEncoding", "compress_encoding")
# Libraries that ship these encodings ready-made (none is in the sandbox; named so that the report says
# what was found rather than "ModuleNotFoundError").
ENCODING_APIS = ("torchtune", "transformers", "rotary_embedding_torch", "xformers", "flash_attn", "timm",
                 "fairseq", "torch.nn.attention")


def _cost_growth(req_id: str, prefix: str, function: str, expected: str) -> Growth:
    return Growth(req_id, function, tuple((t, f"m_{prefix}_{t}") for t in COST_SIZES), "memory", None, expected)


REQUIREMENTS = [
    Forbidden("own-attention", ("relative_attention", "rope_attention"), FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS,
              "req.what.fused_attention"),
    Forbidden("own-encoding", FUNCTIONS, ENCODING_APIS, (), "w7p.what.library_encoding"),
    # for the record, and for the cost table's check: the grader's own memory measurement
    _cost_growth("memory-sinusoidal", "sin", "sinusoidal_encoding", "T^1"),
    _cost_growth("memory-learned", "learned", "LearnedPositionalEncoding", "T^1"),
    _cost_growth("memory-relative", "rel", "RelativePositionBias", "T^2"),
    _cost_growth("memory-rope", "rope", "apply_rope", "T^1"),
]

CHECKS: dict[str, CheckDef] = {
    "sinusoidal": sinusoidal_check("sin", "sinusoidal_encoding", SIN_LEN, SIN_D),
    "learned": module_check("learned", "LearnedPositionalEncoding", {0: "output"}, default_tol=FP32, grads=True),
    "learned-beyond": learned_beyond_check("learned_beyond", "LearnedPositionalEncoding", L_MAX, "learned_long",
                                           "learned_w"),
    "relative-bias": relative_bias_check("rel", "RelativePositionBias", "rel_table", grads=True),
    "relative-shift": relative_bias_check("rel_shift", "RelativePositionBias", "shift_table"),
    "relative-attention": attention_check((("rel_attn", {}),), "relative_attention", _relative_attention_words),
    "rope": rope_check((("rope", "rope_x", "rope_pos"), ("rope_default", "rope_x0", None)), "apply_rope"),
    "rope-properties": rope_properties_check("apply_rope", ("rope", "rope_x", "rope_pos"), ("rope_q", "off_m"),
                                             ("rope_k", "off_n")),
    "rope-attention": attention_check((("rope_attn", {}), ("rope_attn_causal", {})), "rope_attention",
                                      _rope_attention_words),
    "bonus-adaptive": module_check("adaptive", "AdaptivePositionalEncoding", {0: "output"}, default_tol=FP32,
                                   grads=True),
    "bonus-compressed": compress_check("compress", "compress_encoding", (30, 12), 4),
    "length-trained": CheckDef(_length_trained),
    "length-table": CheckDef(_length_table),
    "length-plot": _plots("length_generalization", msg("w7p.what.length_plot")),
    "cost-table": CheckDef(_cost_table),
    "encoding-figures": _plots("encoding_analysis", msg("w7p.what.encoding_figures")),
    **quality_checks(FUNCTIONS),
}

SPEC = AssignmentSpec(
    id="w7-positional",
    make_inputs=make_inputs,
    calls=CALLS + GENERALIZATION_CALLS + COST_CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.positional",
    hidden_module="reference.hidden_checks.w7_positional",
)

__all__ = ["SPEC", "CHECKS", "CALLS", "make_inputs", "lag_copy_targets", "sinusoidal_check", "learned_beyond_check",
           "relative_bias_check", "attention_check", "rope_check", "rope_properties_check", "compress_check",
           "generalization"]
