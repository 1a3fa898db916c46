"""w6-multihead: the public probe calls and checks.

The template fixes the parameter layout of `MultiHeadAttention` (that of torch.nn.MultiheadAttention:
`in_proj_weight (3E, E)`, `in_proj_bias (3E,)`, `out_proj.weight (E, E)`, `out_proj.bias (E,)`,
plus `head_weights (H,)`), so the judge loads its own weights into the student's module and
compares outputs, per-head attention maps and gradients exactly with the reference run on the same
weights (the reference itself equals torch's module; tests/test_w6_multihead.py checks it).
Head weights, head importance (Michel et al. 2019), head selection and the head-correlation
matrix are compared with the reference and checked for the properties the sheet names (a zero
head weight removes the head exactly; the correlation is H x H, symmetric, with a unit diagonal).
The experiment is judged from the run: the trained model the notebook leaves (`MODEL`) is scored
by the judge on its own held-out sequences of the task, and the submitted tables must be the ones
the grader's run of the notebook wrote again.

Inputs are drawn from the run's seed with a private generator. Sizes differ from one another
(E=24, H=4, dh=6, T=9, S=11, B=2) so that a head split along the wrong axis, or heads merged in the
wrong order, cannot pass by luck.

The check factories are parameterised by class and function names, so that a later assignment
(the midterm) can reuse them on its own probe calls.
"""

from __future__ import annotations

import math

import torch

from grader.assignments import AssignmentSpec
from grader.assignments.w6_self_attention import FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS
from grader.i18n import Message, msg
from grader.judge import CheckContext, CheckDef, Verdict, artifacts, call_problem, compare_tensors, module_check
from grader.judge.attention_maps import map_problem
from grader.judge.quality import quality_checks
from grader.judge.requirements import Forbidden
from grader.probe import ArtifactSpec, ProbeCall
from grader.rubric.models import Tolerance

MHA = "MultiHeadAttention"
FUNCTIONS = (MHA, "select_heads", "head_correlation", "init_in_proj")
E, H, B, T, S = 24, 4, 2, 9, 11
DH = E // H
INIT = {"embed_dim": E, "num_heads": H}
FP32 = Tolerance(atol=1e-4, rtol=1e-4)
EXACT = Tolerance(atol=0.0, rtol=0.0)
ZERO_HEAD_ATOL = 1e-6       # a head with weight 0 changes nothing: the same output to float rounding

# The experiment's task (the template fixes it): y[i] = (x[i - 1] + x[T - 1 - i]) mod V.
TASK_VOCAB, TASK_LEN = 10, 8
HELD_OUT = 512
# The trained MODEL's accuracy on the judge's held-out sequences, per profile (chance is 0.1). The
# reference's 4- and 8-head models reach 0.89-1.0 over training seeds (a run may stay on a plateau
# where one position of eight is at chance: 0.89), so a correct implementation, whose float
# rounding takes training elsewhere, passes with a margin.
ACCURACY_THRESHOLD = {"smoke": 0.7, "full": 0.8}
ACCURACY_ATOL = 0.1          # a table's accuracy vs the grader's run or the judge's own measurement


def task_targets(tokens: torch.Tensor, vocab_size: int = TASK_VOCAB) -> torch.Tensor:
    """The task's answers for tokens (N, T): y[i] = (x[i - 1] + x[T - 1 - i]) mod V."""
    length = tokens.shape[1]
    i = torch.arange(length)
    return (tokens[:, (i - 1) % length] + tokens[:, length - 1 - i]) % vocab_size


def _state(prefix: str, gates: str) -> dict[str, str]:
    return {"in_proj_weight": f"{prefix}w_in", "in_proj_bias": f"{prefix}b_in", "out_proj.weight": f"{prefix}w_out",
            "out_proj.bias": f"{prefix}b_out", "head_weights": gates}


def _confidences(x: torch.Tensor, w_in: torch.Tensor, b_in: torch.Tensor, heads: int) -> torch.Tensor:
    """Each head's mean (over queries) largest attention weight, (B, H): to place the dynamic-heads
    threshold far from every value, so that float rounding cannot flip a decision."""
    n, length, dim = x.shape
    head_dim = dim // heads
    q = (x.double() @ w_in[:dim].double().T + b_in[:dim].double()).view(n, length, heads, head_dim).transpose(1, 2)
    k = (x.double() @ w_in[dim:2 * dim].double().T + b_in[dim:2 * dim].double()).view(n, length, heads, head_dim)
    scores = q @ k.permute(0, 2, 3, 1) / math.sqrt(head_dim)
    return torch.softmax(scores, dim=-1).amax(dim=-1).mean(dim=-1)


def _threshold(confidence: torch.Tensor) -> torch.Tensor:
    """The midpoint of the widest gap between two confidences (B, H) among the thresholds that keep
    a number of heads that differs between examples (the point of a dynamic number of heads)."""
    values = sorted(set(confidence.flatten().tolist()))
    best, gap = 0.5, -1.0
    for low, high in zip(values, values[1:]):
        middle = (low + high) / 2
        keep = confidence >= middle
        keep[torch.arange(keep.shape[0]), confidence.argmax(dim=-1)] = True
        counts = keep.sum(dim=-1)
        if high - low > gap and int(counts.max()) != int(counts.min()):
            best, gap = middle, high - low
    return torch.tensor(best, dtype=torch.float32)


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    # Weights large enough that the maps are neither uniform nor one-hot (scores of std ~2).
    weights = {"w_in": randn(3 * E, E, scale=0.3), "b_in": randn(3 * E, scale=0.1),
               "w_out": randn(E, E, scale=0.2), "b_out": randn(E, scale=0.1)}
    zero_head = int(torch.randint(0, H, (1,), generator=g))
    gates = randn(H).abs() + 0.3
    gates[(zero_head + 1) % H] *= -1.0          # a negative weight: learnable weights need not be positive
    gates[zero_head] = 0.0
    noisy = dict(weights)
    noisy["w_in"] = weights["w_in"].clone()
    for block in range(3):                       # the zero-weight head's q, k and v rows, replaced by noise
        rows = slice(block * E + zero_head * DH, block * E + (zero_head + 1) * DH)
        noisy["w_in"][rows] = randn(DH, E, scale=0.5)
    cross_mask = torch.rand(B, 1, T, S, generator=g) > 0.35
    cross_mask[..., int(torch.randint(0, S, (1,), generator=g))] = True   # every query keeps a key
    head_mask = torch.rand(B, H, generator=g) > 0.4
    head_mask[:, 0] = ~head_mask[:, 1] | head_mask[:, 0]                   # at least one head per example
    # select_heads: scores with ties (the lower index wins), one layer and three layers
    scores_1d = torch.randint(0, 3, (H + 2,), generator=g).float() / 2
    scores_2d = torch.randint(0, 4, (3, H), generator=g).float() / 4
    # head_correlation: softmax maps, one head constant (uniform), one an affine copy of head 0
    maps = torch.softmax(randn(3, 5, 6, 7, scale=1.5), dim=-1)
    maps[:, 3] = 1.0 / 7
    maps[:, 4] = 0.5 * maps[:, 0] + 0.5 / 7
    # dynamic heads: heads of very different sharpness, inputs of different scale per example
    dynamic = {"w_in": weights["w_in"].clone(), "b_in": weights["b_in"].clone(),
               "w_out": weights["w_out"], "b_out": weights["b_out"]}
    for h, factor in enumerate((3.0, 0.1, 1.0, 0.4)):
        dynamic["w_in"][h * DH:(h + 1) * DH] *= factor
    x_dyn = randn(3, T, E) * torch.tensor([1.0, 0.4, 2.0]).view(3, 1, 1)
    # head importance: large value biases b_v make head h add about c_h = W_o[:, h] b_v[h] to every
    # output (each attention row sums to 1); targets on either side of the output then give
    # per-example gradients of both signs, so |mean| and mean |.| differ.
    importance = dict(weights)
    importance["b_in"] = weights["b_in"].clone()
    importance["b_in"][2 * E:] = randn(E, scale=1.5)
    b_v = importance["b_in"][2 * E:]
    shift = sum(weights["w_out"][:, h * DH:(h + 1) * DH] @ b_v[h * DH:(h + 1) * DH] for h in range(H))  # (E,)
    side = torch.tensor([1.5, -1.5, 1.0, -1.0])[:, None, None]                            # (4, 1, 1)
    target_imp = weights["b_out"] + shift * (1.0 + side) + randn(4, T, E, scale=0.1)      # (4, T, E)
    inputs = {
        **weights,
        **{f"n_{k}": v for k, v in noisy.items()},
        **{f"d_{k}": v for k, v in dynamic.items()},
        "gates_ones": torch.ones(H), "gates": gates,
        "x": randn(B, T, E), "xq": randn(B, T, E), "kv_k": randn(B, S, E), "kv_v": randn(B, S, E),
        "cross_mask": cross_mask, "causal": torch.ones(T, T).tril().bool(),
        "w_grad_out": randn(B, T, E), "w_grad_maps": randn(B, H, T, T),
        **{f"i_{k}": v for k, v in importance.items()},
        "x_imp": randn(4, T, E, scale=0.5), "target_imp": target_imp,
        "scores_1d": scores_1d, "scores_2d": scores_2d, "head_mask": head_mask,
        "maps": maps, "x_dyn": x_dyn,
        "dyn_threshold": _threshold(_confidences(x_dyn, dynamic["w_in"], dynamic["b_in"], H)),
        "heldout_tokens": torch.randint(0, TASK_VOCAB, (HELD_OUT, TASK_LEN), generator=g),
    }
    return {name: value.clone() for name, value in inputs.items()}   # no shared storage: safetensors refuses it


def _module(call_id: str, args: tuple[str, ...], *, state: dict[str, str] | None = None, class_name: str = MHA,
            **kwargs) -> ProbeCall:
    return ProbeCall(call_id, class_name, args, kind="module", init_kwargs=dict(INIT),
                     state=state or _state("", "gates_ones"), **kwargs)


CALLS = [
    _module("mha_self", ("x",), backward={"weights": {"0": "w_grad_out", "1": "w_grad_maps"}}),
    _module("mha_cross", ("xq", "kv_k", "kv_v"), tensor_kwargs={"mask": "cross_mask"}),
    _module("mha_causal", ("x",), tensor_kwargs={"mask": "causal"}),
    _module("mha_gated", ("x",), state=_state("", "gates")),
    _module("mha_gated_noise", ("x",), state=_state("n_", "gates")),
    _module("importance", ("x_imp", "target_imp"), state=_state("i_", "gates_ones"), method="head_importance"),
    ProbeCall("select_1d", "select_heads", ("scores_1d",), kwargs={"k": 3}),
    ProbeCall("select_2d", "select_heads", ("scores_2d",), kwargs={"k": 5}),
    _module("mha_head_mask", ("x",), tensor_kwargs={"head_mask": "head_mask"}),
    ProbeCall("correlation", "head_correlation", ("maps",)),
    _module("dynamic", ("x_dyn",), state=_state("d_", "gates_ones"), method="dynamic_heads",
            tensor_kwargs={"threshold": "dyn_threshold"}),
    ProbeCall("init_xavier", "init_in_proj", (), kwargs={"embed_dim": E, "num_heads": H, "strategy": "xavier",
                                                          "seed": 3}),
    ProbeCall("init_orthogonal", "init_in_proj", (), kwargs={"embed_dim": E, "num_heads": H,
                                                              "strategy": "orthogonal", "seed": 3}),
    ProbeCall("model_heldout", "MODEL", ("heldout_tokens",), kind="object"),
]

REQUIREMENTS = [
    Forbidden("own-implementation", (MHA,), FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS, "req.what.fused_attention"),
]


# --- check factories (parameterised by class / function name: the midterm reuses them) ----------

def _what(name: str, function: str) -> Message:
    return msg("compare.what", name=msg(f"name.{name}"), function=function)


def _outcome_problem(ctx: CheckContext, call_id: str, function: str) -> Verdict | None:
    outcome = ctx.call(call_id)
    if outcome.status == "state":
        return Verdict("fail", msg("check.module_state", function=function,
                                   problems="; ".join(outcome.problems[:4]) or outcome.message))
    return call_problem(outcome, function, ctx.probe)


def _output(ctx: CheckContext, call_id: str, index: int) -> torch.Tensor | None:
    outputs = ctx.call(call_id).outputs
    return outputs[index] if index < len(outputs) else None


def _expected(ctx: CheckContext, call_id: str, index: int = 0) -> torch.Tensor | None:
    if ctx.expected is None or call_id not in ctx.expected or index >= len(ctx.expected[call_id]):
        return None
    return ctx.expected[call_id][index]


def compare_output_check(call_ids: tuple[str, ...], function: str, *, index: int = 0, name: str = "output",
                         default_tol: Tolerance = FP32, also: tuple[str, ...] = ()) -> CheckDef:
    """Output `index` of every call in `call_ids` equals the reference's (the first difference is
    the verdict). Works for module and function calls."""

    def check(ctx: CheckContext) -> Verdict:
        tol = ctx.tolerance or default_tol
        for call_id in call_ids:
            problem = _outcome_problem(ctx, call_id, function)
            if problem:
                return problem
            expected = _expected(ctx, call_id, index)
            if expected is None:
                return Verdict("pending", msg("check.pending_no_reference"))
            outcome = ctx.call(call_id)
            actual = _output(ctx, call_id, index)
            if actual is None and index < len(outcome.types):
                return Verdict("fail", msg("check.not_a_tensor", what=_what(name, function), type=outcome.types[index]))
            message = compare_tensors(actual, expected, tol, _what(name, function))
            if message:
                return Verdict("fail", message)
        return Verdict("pass", msg("check.matches", function=function))

    return CheckDef(check, function=function, needs_reference=True, also=also)


def attention_maps_check(calls: dict[str, str], class_name: str = MHA, *, index: int = 1,
                         default_tol: Tolerance = FP32) -> CheckDef:
    """The per-head attention maps (output `index`, (B, H, T, S)) of each call equal the
    reference's; `calls` maps a call id to the mask it uses ("causal", "boolean" or "none").
    A failure says which query attends where it should not, and shows both patterns."""

    def check(ctx: CheckContext) -> Verdict:
        tol = ctx.tolerance or default_tol
        for call_id, mask in calls.items():
            problem = _outcome_problem(ctx, call_id, class_name)
            if problem:
                return problem
            expected = _expected(ctx, call_id, index)
            if expected is None:
                return Verdict("pending", msg("check.pending_no_reference"))
            outcome = ctx.call(call_id)
            if len(outcome.outputs) < index + 1:
                return Verdict("fail", msg("w6m.maps_not_returned", function=class_name, count=len(outcome.outputs)))
            actual = outcome.outputs[index]
            if actual is None:
                return Verdict("fail", msg("check.not_a_tensor", what=_what("w6m_maps", class_name),
                                           type=outcome.types[index] if index < len(outcome.types) else "?"))
            message, figure = map_problem(actual, expected, tol, _what("w6m_maps", class_name),
                                          mask_name=msg(f"w6m.mask.{mask}"))
            if message:
                return Verdict("fail", message, figure=figure)
        return Verdict("pass", msg("w6m.maps_ok", function=class_name, count=len(calls)))

    return CheckDef(check, function=class_name, needs_reference=True)


def gradients_check(call_id: str, class_name: str = MHA, *, default_tol: Tolerance = FP32) -> CheckDef:
    """The gradients of the call's weighted outputs with respect to its inputs and every parameter
    equal the reference's (the outputs themselves are other checks' business)."""
    return module_check(call_id, class_name, {}, default_tol=default_tol, grads=True)


def head_weights_check(gated: str, noisy: str, class_name: str = MHA, *, zero_head_of: str = "gates",
                       default_tol: Tolerance = FP32) -> CheckDef:
    """With the judge's head weights (one of them 0, one negative) the output equals the reference's,
    and the head whose weight is 0 contributes nothing: replacing its q/k/v projection rows by
    noise (call `noisy`) leaves the output unchanged."""
    compare = compare_output_check((gated,), class_name, default_tol=default_tol)

    def check(ctx: CheckContext) -> Verdict:
        verdict = compare.fn(ctx)
        if verdict.status != "pass":
            return verdict
        problem = _outcome_problem(ctx, noisy, class_name)
        if problem:
            return problem
        base, moved = _output(ctx, gated, 0), _output(ctx, noisy, 0)
        if base is None or moved is None or base.shape != moved.shape:
            return Verdict("fail", msg("compare.no_tensor", what=_what("output", class_name)))
        difference = float((base.double() - moved.double()).abs().max())
        if difference > ZERO_HEAD_ATOL:
            zero = int((ctx.inputs[zero_head_of] == 0).nonzero()[0])
            return Verdict("fail", msg("w6m.zero_head_leaks", head=zero, diff=f"{difference:.3g}"))
        return Verdict("pass", msg("w6m.head_weights_ok", function=class_name))

    return CheckDef(check, function=class_name, needs_reference=True)


def selection_check(select_calls: tuple[str, ...], masked_call: str, function: str = "select_heads",
                    class_name: str = MHA) -> CheckDef:
    """`function` keeps exactly the top-k heads (ties: the lower index), and the module run with a
    head mask equals the reference run with the same mask (only the kept heads contribute)."""
    selected = compare_output_check(select_calls, function, name="w6m_selection", default_tol=EXACT)
    masked = compare_output_check((masked_call,), class_name)

    def check(ctx: CheckContext) -> Verdict:
        for call_id in select_calls:
            problem = _outcome_problem(ctx, call_id, function)
            if problem:
                return problem
            actual, expected = _output(ctx, call_id, 0), _expected(ctx, call_id)
            if actual is not None and expected is not None and actual.shape == expected.shape \
                    and actual.dtype == torch.bool and not torch.equal(actual, expected):
                call = next((c for c in ctx.calls if c.id == call_id and c.args), None)
                scores = ctx.inputs.get(call.args[0]) if call is not None else None
                kept = [int(i) for i in actual.reshape(-1).nonzero().flatten()]
                wanted = [int(i) for i in expected.reshape(-1).nonzero().flatten()]
                shown = ", ".join(f"{float(v):g}" for v in scores.reshape(-1)) if scores is not None else "?"
                return Verdict("fail", msg("w6m.selection_differs", function=function, kept=kept, expected=wanted,
                                           k=len(wanted), scores=shown))
        verdict = selected.fn(ctx)
        if verdict.status != "pass":
            return verdict
        verdict = masked.fn(ctx)
        if verdict.status != "pass":
            return verdict
        return Verdict("pass", msg("w6m.selection_ok", function=function, function_2=class_name))

    return CheckDef(check, function=function, needs_reference=True, also=(class_name,))


def correlation_check(call_id: str, function: str = "head_correlation", *, heads: int = 5,
                      default_tol: Tolerance = FP32) -> CheckDef:
    """The head-correlation matrix is (H, H), symmetric, with a unit diagonal and values in
    [-1, 1], and equals the reference's (Pearson correlation of the flattened maps)."""
    compare = compare_output_check((call_id,), function, name="w6m_correlation", default_tol=default_tol)

    def check(ctx: CheckContext) -> Verdict:
        problem = _outcome_problem(ctx, call_id, function)
        if problem:
            return problem
        corr = _output(ctx, call_id, 0)
        what = _what("w6m_correlation", function)
        if corr is None or not corr.is_floating_point() or tuple(corr.shape) != (heads, heads):
            return Verdict("fail", compare_tensors(corr, torch.zeros(heads, heads), FP32, what)
                           or msg("compare.not_float", what=what, dtype=str(getattr(corr, "dtype", "?"))))
        c = corr.double()
        if not torch.isfinite(c).all():
            i, j = (int(v) for v in (~torch.isfinite(c)).nonzero()[0])
            return Verdict("fail", msg("w6m.corr_nonfinite", i=i, j=j, function=function),
                           figure=_pair(corr, _expected(ctx, call_id)))
        asymmetry = (c - c.T).abs()
        if float(asymmetry.max()) > 1e-6:
            i, j = (int(v) for v in torch.unravel_index(torch.argmax(asymmetry), c.shape))
            return Verdict("fail", msg("w6m.corr_asymmetric", i=i, j=j, a=f"{float(c[i, j]):.4g}",
                                       b=f"{float(c[j, i]):.4g}"), figure=_pair(corr, _expected(ctx, call_id)))
        diagonal = torch.diagonal(c)
        if float((diagonal - 1.0).abs().max()) > 1e-5:
            h = int(torch.argmax((diagonal - 1.0).abs()))
            return Verdict("fail", msg("w6m.corr_diagonal", head=h, value=f"{float(diagonal[h]):.4g}"),
                           figure=_pair(corr, _expected(ctx, call_id)))
        if float(c.abs().max()) > 1.0 + 1e-5:
            i, j = (int(v) for v in torch.unravel_index(torch.argmax(c.abs()), c.shape))
            return Verdict("fail", msg("w6m.corr_range", i=i, j=j, value=f"{float(c[i, j]):.4g}"),
                           figure=_pair(corr, _expected(ctx, call_id)))
        verdict = compare.fn(ctx)
        if verdict.status == "fail":
            return Verdict("fail", verdict.message, figure=_pair(corr, _expected(ctx, call_id)))
        return verdict if verdict.status != "pass" else Verdict("pass", msg("w6m.corr_ok", function=function))

    return CheckDef(check, function=function, needs_reference=True)


def _pair(actual: torch.Tensor | None, expected: torch.Tensor | None) -> tuple | None:
    if actual is None or expected is None or actual.ndim != 2 or actual.shape != expected.shape:
        return None
    return actual.float().numpy(), expected.float().numpy()


def dynamic_heads_check(call_id: str, class_name: str = MHA, *, default_tol: Tolerance = FP32) -> CheckDef:
    """(Bonus) The heads kept per example (B, H) are exactly the reference's, and the output
    computed with them equals the reference's."""

    def check(ctx: CheckContext) -> Verdict:
        problem = _outcome_problem(ctx, call_id, class_name)
        if problem:
            return problem
        expected_keep = _expected(ctx, call_id, 1)
        if expected_keep is None:
            return Verdict("pending", msg("check.pending_no_reference"))
        keep = _output(ctx, call_id, 1)
        message = compare_tensors(keep, expected_keep, EXACT, _what("w6m_kept_heads", class_name))
        if message:
            return Verdict("fail", message)
        message = compare_tensors(_output(ctx, call_id, 0), _expected(ctx, call_id, 0), ctx.tolerance or default_tol,
                                  _what("output", class_name))
        if message:
            return Verdict("fail", message)
        return Verdict("pass", msg("w6m.dynamic_ok", kept=int(keep.sum()), total=keep.numel()))

    return CheckDef(check, function=class_name, needs_reference=True)


def init_check(xavier_call: str, orthogonal_call: str, function: str = "init_in_proj", *,
               embed_dim: int = E) -> CheckDef:
    """(Bonus) The initialisation strategies have their defining properties: xavier is uniform in
    [-a, a] with a = sqrt(6 / (E + 3E)) (std a / sqrt(3) within 15 %); orthogonal gives W_q, W_k,
    W_v with W W^T = I. Random draws differ between implementations, so no value is compared."""

    def check(ctx: CheckContext) -> Verdict:
        for call_id in (xavier_call, orthogonal_call):
            problem = _outcome_problem(ctx, call_id, function)
            if problem:
                return problem
            weight = _output(ctx, call_id, 0)
            if weight is None or tuple(weight.shape) != (3 * embed_dim, embed_dim) or not weight.is_floating_point():
                return Verdict("fail", compare_tensors(weight, torch.zeros(3 * embed_dim, embed_dim), FP32,
                                                       _what("w6m_in_proj", function))
                               or msg("compare.not_float", what=_what("w6m_in_proj", function),
                                      dtype=str(getattr(weight, "dtype", "?"))))
            if not torch.isfinite(weight).all():
                return Verdict("fail", msg("compare.nan", what=_what("w6m_in_proj", function),
                                           count=int((~torch.isfinite(weight)).sum()), index="?"))
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))
        xavier = _output(ctx, xavier_call, 0).double()
        std = float(xavier.std())
        if float(xavier.abs().max()) > bound * (1 + 1e-5) or not 0.85 <= std / (bound / math.sqrt(3)) <= 1.15:
            return Verdict("fail", msg("w6m.init_xavier", largest=f"{float(xavier.abs().max()):.4g}",
                                       bound=f"{bound:.4g}", std=f"{std:.4g}",
                                       expected_std=f"{bound / math.sqrt(3):.4g}"))
        orthogonal = _output(ctx, orthogonal_call, 0).double()
        for block, name in enumerate(("W_q", "W_k", "W_v")):
            w = orthogonal[block * embed_dim:(block + 1) * embed_dim]
            off = float((w @ w.T - torch.eye(embed_dim, dtype=torch.float64)).abs().max())
            if off > 1e-4:
                return Verdict("fail", msg("w6m.init_orthogonal", block=name, off=f"{off:.3g}"))
        return Verdict("pass", msg("w6m.init_ok"))

    return CheckDef(check, function=function)


# --- experiments: the trained model, judged by the judge; tables checked against the run --------

ARTIFACTS = ArtifactSpec(folders=("head_patterns", "head_importance"))
HEADS_TABLE = "head_importance/heads_vs_performance.csv"
HEADS_COLUMNS = {"num_heads": int, "accuracy": float, "test_loss": float}
IMPORTANCE_TABLE = "head_importance/importance.csv"
IMPORTANCE_COLUMNS = {"layer": int, "head": int, "importance": float}
PRUNING_TABLE = "head_importance/pruning.csv"
PRUNING_COLUMNS = {"heads_kept": int, "accuracy": float}


def _table(ctx: CheckContext, path: str, columns: dict) -> tuple[list | None, list | None, Verdict | None]:
    """(submitted rows, rows the grader's run wrote, a failing verdict or None)."""
    folder, name = path.split("/", 1)
    copies = artifacts.copies(ctx, folder)
    if copies.submitted is None:
        return None, None, Verdict("fail", msg("art.folder_missing", folder=folder))
    mine, problem = artifacts.read_table(copies.submitted.get(name), columns, name=path)
    if problem:
        return None, None, Verdict("fail", problem)
    ours, problem = artifacts.read_table(copies.produced.get(name), columns, name=path)
    if problem:
        return mine, None, Verdict("fail", msg("art.run_did_not_write", name=path, detail=problem))
    return mine, ours, None


def _rows_differ(mine: list, ours: list, keys: tuple[str, ...], name: str) -> Message | None:
    """The same rows (by `keys`) in both tables, else the kit's message."""
    return artifacts.compare_tables(mine, ours, keys, {}, name=name)


def _value_differs(mine: list, ours: list, keys: tuple[str, ...], column: str, atol: float,
                   name: str) -> Message | None:
    index = {tuple(r[k] for k in keys): r for r in ours}
    for row in mine:
        key = tuple(row[k] for k in keys)
        a, b = row[column], index[key][column]
        if abs(a - b) > atol:
            return msg("w6m.table_value_differs", name=name, row=", ".join(f"{k}={v}" for k, v in zip(keys, key)),
                       column=column, mine=f"{a:.4g}", ours=f"{b:.4g}", atol=f"{atol:g}")
    return None


def _accuracy_rows(rows: list, name: str) -> Message | None:
    for number, row in enumerate(rows, start=2):
        if not 0.0 <= row["accuracy"] <= 1.0:
            return msg("w6m.accuracy_range", name=name, line=number, value=f"{row['accuracy']:.4g}")
    return None


def _heads_table(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _table(ctx, HEADS_TABLE, HEADS_COLUMNS)
    if problem:
        return problem
    problem = _accuracy_rows(mine, HEADS_TABLE)
    if problem:
        return Verdict("fail", problem)
    heads = sorted({r["num_heads"] for r in mine})
    if len(heads) < 3 or heads[0] != 1:
        return Verdict("fail", msg("w6m.heads_coverage", heads=", ".join(map(str, heads)) or "-"))
    differs = _rows_differ(mine, ours, ("num_heads",), HEADS_TABLE) \
        or _value_differs(mine, ours, ("num_heads",), "accuracy", ACCURACY_ATOL, HEADS_TABLE)
    if differs:
        return Verdict("fail", differs)
    best = max(mine, key=lambda r: r["accuracy"])
    return Verdict("pass", msg("w6m.heads_ok", count=len(heads), heads=", ".join(map(str, heads)),
                               best=best["num_heads"], accuracy=f"{best['accuracy']:.3f}"))


def judged_accuracy(ctx: CheckContext, call_id: str = "model_heldout", tokens: str = "heldout_tokens"
                    ) -> tuple[float | None, Verdict | None]:
    """The accuracy of the notebook's trained model on the judge's held-out sequences, computed here
    from the logits (N, T, V) the probe brought back."""
    outcome = ctx.call(call_id)
    if outcome.status == "missing":
        return None, Verdict("fail", msg("w6m.model_missing"))
    problem = call_problem(outcome, "MODEL", ctx.probe)
    if problem:
        return None, problem
    logits = outcome.outputs[0] if outcome.outputs else None
    inputs = ctx.inputs[tokens]
    expected_shape = (*inputs.shape, TASK_VOCAB)
    if logits is None or tuple(logits.shape) != expected_shape or not logits.is_floating_point():
        shape = "(" + ", ".join(map(str, expected_shape)) + ")"
        got = "(" + ", ".join(map(str, logits.shape)) + ")" if logits is not None else "-"
        return None, Verdict("fail", msg("w6m.model_shape", shape=got, expected=shape))
    return float((logits.argmax(dim=-1) == task_targets(inputs)).double().mean()), None


def _model_accuracy(ctx: CheckContext) -> Verdict:
    accuracy, problem = judged_accuracy(ctx)
    if problem:
        return problem
    threshold = ACCURACY_THRESHOLD.get(ctx.profile, ACCURACY_THRESHOLD["full"])
    if accuracy < threshold:
        return Verdict("fail", msg("w6m.model_weak", accuracy=f"{accuracy:.3f}", threshold=f"{threshold:g}",
                                   profile=ctx.profile, count=HELD_OUT))
    mine, _, problem = _table(ctx, HEADS_TABLE, HEADS_COLUMNS)
    if mine is None:
        return problem
    claimed = max(mine, key=lambda r: r["num_heads"]) if mine else None
    if claimed is None or abs(claimed["accuracy"] - accuracy) > ACCURACY_ATOL:
        return Verdict("fail", msg("w6m.model_claim", claimed=f"{claimed['accuracy']:.3f}" if claimed else "-",
                                   heads=claimed["num_heads"] if claimed else "-", accuracy=f"{accuracy:.3f}"))
    return Verdict("pass", msg("w6m.model_ok", accuracy=f"{accuracy:.3f}", count=HELD_OUT,
                               threshold=f"{threshold:g}", heads=claimed["num_heads"]))


def _importance_tables(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _table(ctx, IMPORTANCE_TABLE, IMPORTANCE_COLUMNS)
    if problem:
        return problem
    if not mine or any(r["importance"] < 0 for r in mine):
        return Verdict("fail", msg("w6m.importance_rows", name=IMPORTANCE_TABLE))
    differs = _rows_differ(mine, ours, ("layer", "head"), IMPORTANCE_TABLE)
    scale = max(r["importance"] for r in ours) if ours else 0.0
    differs = differs or _value_differs(mine, ours, ("layer", "head"), "importance", 0.2 * scale + 1e-6,
                                        IMPORTANCE_TABLE)
    if differs:
        return Verdict("fail", differs)
    layers = {r["layer"] for r in mine}
    heads = {r["head"] for r in mine}
    if len(mine) != len(layers) * len(heads):
        return Verdict("fail", msg("w6m.importance_rows", name=IMPORTANCE_TABLE))
    pruned, pruned_ours, problem = _table(ctx, PRUNING_TABLE, PRUNING_COLUMNS)
    if problem:
        return problem
    problem = _accuracy_rows(pruned, PRUNING_TABLE)
    if problem:
        return Verdict("fail", problem)
    kept = sorted({r["heads_kept"] for r in pruned})
    if len(kept) < 3 or kept[-1] != len(mine):
        return Verdict("fail", msg("w6m.pruning_coverage", kept=", ".join(map(str, kept)) or "-", total=len(mine)))
    differs = _rows_differ(pruned, pruned_ours, ("heads_kept",), PRUNING_TABLE) \
        or _value_differs(pruned, pruned_ours, ("heads_kept",), "accuracy", ACCURACY_ATOL, PRUNING_TABLE)
    if differs:
        return Verdict("fail", differs)
    return Verdict("pass", msg("w6m.importance_ok", heads=len(mine), layers=len(layers), steps=len(kept)))


def _plots(folder: str, what: str) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        ok, message, figure = artifacts.compare_plots(artifacts.copies(ctx, folder), what=msg(f"w6m.what.{what}"))
        return Verdict("pass" if ok else "fail", message, figure=figure)

    return CheckDef(check)


CHECKS: dict[str, CheckDef] = {
    "mha-output": compare_output_check(("mha_self",), MHA),
    "attention-maps": attention_maps_check({"mha_cross": "boolean", "mha_causal": "causal", "mha_self": "none"}),
    "mha-gradients": gradients_check("mha_self"),
    "head-weights": head_weights_check("mha_gated", "mha_gated_noise"),
    "head-importance": compare_output_check(("importance",), MHA, name="w6m_importance"),
    "head-selection": selection_check(("select_1d", "select_2d"), "mha_head_mask"),
    "head-correlation": correlation_check("correlation"),
    "bonus-dynamic-heads": dynamic_heads_check("dynamic"),
    "bonus-init": init_check("init_xavier", "init_orthogonal"),
    "heads-table": CheckDef(_heads_table),
    "model-accuracy": CheckDef(_model_accuracy),
    "importance-tables": CheckDef(_importance_tables),
    "head-patterns": _plots("head_patterns", "head_patterns"),
    "importance-plot": _plots("head_importance", "importance_plot"),
    **quality_checks(FUNCTIONS),
}

SPEC = AssignmentSpec(
    id="w6-multihead",
    make_inputs=make_inputs,
    calls=CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.multihead",
    hidden_module="reference.hidden_checks.w6_multihead",
)
