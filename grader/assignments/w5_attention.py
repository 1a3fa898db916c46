"""w5-attention: the public probe calls and checks.

Inputs are drawn from the run's seed with a private generator, so a submission cannot know them in
advance. Shapes are chosen to expose the usual bugs: query and key sizes that differ (a transposed
W of the general score, a swapped projection), sources padded to three lengths, a batch row with no
real position at all (masked_softmax), window centres between two positions and past the end of a
source (local attention), previous alignments and coverages that are not one-hot.

The seq2seq model is judged as an object the notebook trained ("object" calls): the judge draws
held-out pairs of the generated reversal task from the run's seed, disjoint from the training
split of DATA_DIR, and computes the token and sequence accuracy and the alignment of the model's
attention itself. The attention maps the notebook saves for the template's fixed examples are
compared with the maps the grader recomputes from the same model.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import torch

from grader.assignments import AssignmentSpec
from grader.judge.requirements import FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS
from grader.data import SEQ2SEQ_FOLDER, make_seq2seq, seq2seq_pairs
from grader.i18n import Message, msg
from grader.judge import CheckContext, all_of, CheckDef, Verdict, artifacts, call_problem, compare_tensors, describe_shape, \
    module_check
from grader.judge.quality import quality_checks
from grader.judge.requirements import Forbidden, Growth
from grader.probe import ArtifactSpec, ProbeCall
from grader.rubric.models import Tolerance

B, S, DQ, DK, DA = 3, 11, 6, 10, 7          # batch, source length, query, key and attention sizes
LENGTHS = (11, 7, 4)                        # real source lengths of the batch rows
N_FILTERS, KERNEL = 4, 5                    # location-aware attention's convolution
T_STEPS = 6                                 # decoder steps of the coverage inputs
D_MODEL, N_HEADS, TQ = 12, 3, 5             # bonus: multi-head and self-attention
D_CHUNK, DV_CHUNK, CHUNK = 8, 9, 4          # bonus: chunked attention (S = 11: the last chunk is shorter)
WINDOW = 2
FP32 = Tolerance(atol=1e-5, rtol=1e-4)
ZERO_WEIGHT = 1e-6      # a weight above this where the mask or the window blocks the position is a leak
ROW_SUM_ATOL = 1e-4

# The seq2seq task's tokens (the template fixes them): PAD, BOS, EOS, then digit d as d + 3.
PAD, BOS, EOS, DIGIT_OFFSET = 0, 1, 2, 3
VOCAB_SIZE = 13
N_HELD_OUT = 96
MAX_DECODE = 12          # greedy steps asked of the trained model: held-out sources have at most 11 tokens
INIT_STEPS = 7
# The template's fixed examples, whose attention the notebook saves in attention_visualization/.
VIS_SOURCES = ((3, 1, 4, 1, 5), (2, 7, 1, 8, 2, 8), (9, 8, 7, 6, 5, 4, 3, 2), (1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2))
# Per profile: the held-out token accuracy a trained seq2seq must reach, and the share of steps whose
# attention peaks on the source token they copy. The reference gets 1.0 and 1.0 in both profiles
# (hybrid attention, 3 epochs in smoke); content-only attention gets about 0.98 and 0.9.
TOKEN_ACCURACY = {"smoke": 0.8, "full": 0.95}
ALIGNMENT = {"smoke": 0.6, "full": 0.8}
MAPS_MEAN_DIFF = 0.05   # submitted vs regenerated attention maps (the same code and seed; another machine)
CLAIM_SLACK = 0.1       # a claimed test accuracy above the judge's measurement by more than this is refuted
RUN_AGREEMENT = 0.05    # submitted vs regenerated metrics.json accuracy

FUNCTIONS = ("dot_score", "GeneralScore", "AdditiveScore", "masked_softmax", "global_attention", "local_attention",
             "LocationAwareAttention", "CoverageAttention", "coverage_vectors", "coverage_loss", "Seq2Seq",
             "MultiHeadAttention", "SelfAttention", "chunked_attention")


# --- inputs ----------------------------------------------------------------------------------------

def _distributions(g: torch.Generator, mask: torch.Tensor, *lead: int) -> torch.Tensor:
    """Random attention rows over the real positions of `mask (B, S)`: (B, *lead, S), zero on padding."""
    raw = torch.rand(mask.shape[0], *lead, mask.shape[1], generator=g) + 0.05
    raw = raw * mask.view(mask.shape[0], *([1] * len(lead)), mask.shape[1])
    return raw / raw.sum(dim=-1, keepdim=True)


def _task(data_dir: Path | None) -> tuple[set[tuple[int, ...]], int, int, int]:
    """(training sources, vocabulary, shortest, longest source) of the run's seq2seq data; without
    a DATA_DIR (`grade expected`), of the smoke data made in a temporary folder. Lines that are not
    digit sequences are passed over (a TA's miniature data dir is read, not trusted to be tidy)."""
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="w5-attention-data-") as folder:
            make_seq2seq(Path(folder))
            return _task(Path(folder))
    sources = set()
    text = (Path(data_dir) / SEQ2SEQ_FOLDER / "train.tsv").read_text(encoding="ascii", errors="replace")
    for line in text.splitlines():
        tokens = line.split("\t")[0].split()
        if tokens and all(t.isdigit() for t in tokens):
            sources.add(tuple(int(t) for t in tokens))
    if not sources:   # nothing readable: the generator's own ranges
        return set(), 10, 3, 8
    lengths = [len(s) for s in sources]
    return sources, min(max(max(s) for s in sources) + 1, VOCAB_SIZE - DIGIT_OFFSET), min(lengths), \
        min(max(lengths), MAX_DECODE - 1)


def held_out_pairs(seed: int, data_dir: Path | None) -> list[tuple[int, ...]]:
    """N_HELD_OUT sources of the generated task, in the training data's ranges, none of them a
    training source where that is possible (a stream of its own: not the data's seeds 11 and 12)."""
    train, vocab, shortest, longest = _task(data_dir)
    found: list[tuple[int, ...]] = []
    drawn: list[tuple[int, ...]] = []
    for round_ in range(20):
        for source, _ in seq2seq_pairs(4 * N_HELD_OUT, seed * 7919 + 101 + round_, vocab=vocab,
                                       min_len=shortest, max_len=longest):
            drawn.append(tuple(source))
            if tuple(source) not in train and len(found) < N_HELD_OUT:
                found.append(tuple(source))
        if len(found) == N_HELD_OUT:
            return found
    # a tiny vocabulary whose every sequence is in the training split: held out in draw only
    return (found + [s for s in drawn if s not in found])[:N_HELD_OUT]


def _tokens(sources, width: int) -> torch.Tensor:
    src = torch.full((len(sources), width), PAD, dtype=torch.int64)
    for i, source in enumerate(sources):
        src[i, :len(source)] = torch.tensor([d + DIGIT_OFFSET for d in source])
    return src


def make_inputs(seed: int, data_dir: Path | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    lengths = torch.tensor(LENGTHS, dtype=torch.int64)
    mask = torch.arange(S)[None, :] < lengths[:, None]                        # (B, S)
    scores = randn(B + 1, S, scale=3.0)
    scores[0, 2] = 100.0  # a large score: exp(100) overflows float32 unless the row maximum is subtracted first
    softmax_mask = torch.cat([mask, torch.zeros(1, S, dtype=torch.bool)])     # the last row: nothing to attend to
    centre = torch.stack([torch.randint(1, 4, (), generator=g).float(),       # an integer: |s - p| == D is inside
                          1.5 + 3.0 * torch.rand((), generator=g),            # between two positions
                          torch.tensor(9.25)])                                # past the end of a 4-token source
    inputs = {
        "q": randn(B, DQ), "keys": randn(B, S, DK), "q_k": randn(B, DK), "mask": mask,
        "scores": scores, "softmax_mask": softmax_mask, "centre": centre,
        "prev": _distributions(g, mask), "prev2": _distributions(g, mask),
        "keys2": randn(B, S, DK), "coverage": _distributions(g, mask) + _distributions(g, mask),
        "att_seq": _distributions(g, mask, T_STEPS),
        "g_scores": randn(B, S), "g_ctx": randn(B, DK), "g_att": randn(B, S), "g_cov": randn(B, S), "g_loss": randn(B),
        # parameters the probe loads into the student's modules (scaled so that tanh does not saturate)
        "gen_W": randn(DQ, DK, scale=0.4),
        "add_Wq": randn(DA, DQ, scale=0.5), "add_bq": randn(DA, scale=0.3), "add_Wk": randn(DA, DK, scale=0.4),
        "add_v": randn(1, DA),
        "loc_Wq": randn(DA, DQ, scale=0.5), "loc_bq": randn(DA, scale=0.3), "loc_Wk": randn(DA, DK, scale=0.4),
        "loc_conv": randn(N_FILTERS, 1, KERNEL), "loc_Wf": randn(DA, N_FILTERS, scale=0.5), "loc_v": randn(1, DA),
        "cov_Wq": randn(DA, DQ, scale=0.5), "cov_bq": randn(DA, scale=0.3), "cov_Wk": randn(DA, DK, scale=0.4),
        "cov_wc": randn(DA, 1), "cov_v": randn(1, DA),
        # bonus
        "mha_q": randn(B, TQ, D_MODEL), "mha_kv": randn(B, S, D_MODEL), "mha_kv2": randn(B, S, D_MODEL),
        "g_mha": randn(B, TQ, D_MODEL), "g_mha_w": randn(B, N_HEADS, TQ, S), "g_sa": randn(B, S, D_MODEL),
        "g_sa_w": randn(B, S, S),
        **{f"mha_{p}": randn(D_MODEL, D_MODEL, scale=0.3) for p in ("Wq", "Wk", "Wv", "Wo")},
        **{f"mha_{p}": randn(D_MODEL, scale=0.1) for p in ("bq", "bk", "bv", "bo")},
        **{f"sa_{p}": randn(D_MODEL, D_MODEL, scale=0.3) for p in ("Wq", "Wk", "Wv")},
        "ch_q": randn(B, TQ, D_CHUNK), "ch_k": randn(B, S, D_CHUNK), "ch_v": randn(B, S, DV_CHUNK),
        **{f"m{t}_{name}": randn(1, t, COST_D) for t in COST_SIZES for name in ("q", "k", "v")},
    }
    held_out = held_out_pairs(seed, data_dir)
    inputs["heldout_src"] = _tokens(held_out, max(len(s) for s in held_out))
    inputs["heldout_lengths"] = torch.tensor([len(s) for s in held_out], dtype=torch.int64)
    inputs["init_src"] = _tokens(held_out[:4], max(len(s) for s in held_out[:4]))
    inputs["init_lengths"] = inputs["heldout_lengths"][:4].clone()
    for i, source in enumerate(VIS_SOURCES):
        inputs[f"vis{i}_src"] = _tokens([source], len(source))
        inputs[f"vis{i}_lengths"] = torch.tensor([len(source)], dtype=torch.int64)
    return inputs


# --- probe calls -----------------------------------------------------------------------------------

COST_SIZES = (128, 256, 512)        # T of the measuring calls of chunked_attention (B = 1, d = 16)
COST_D = 16
COST_CHUNK = 32

ADDITIVE_STATE = {"W_q.weight": "add_Wq", "W_q.bias": "add_bq", "W_k.weight": "add_Wk", "v.weight": "add_v"}
LOCATION_STATE = {"W_q.weight": "loc_Wq", "W_q.bias": "loc_bq", "W_k.weight": "loc_Wk", "conv.weight": "loc_conv",
                  "W_f.weight": "loc_Wf", "v.weight": "loc_v"}
COVERAGE_STATE = {"W_q.weight": "cov_Wq", "W_q.bias": "cov_bq", "W_k.weight": "cov_Wk", "w_c.weight": "cov_wc",
                  "v.weight": "cov_v"}
MHA_STATE = {f"{p}_proj.{kind}": f"mha_{'W' if kind == 'weight' else 'b'}{p[0] if p != 'out' else 'o'}"
             for p in ("q", "k", "v", "out") for kind in ("weight", "bias")}
SELF_STATE = {f"{p}_proj.weight": f"sa_W{p}" for p in ("q", "k", "v")}
CONTEXT_AND_WEIGHTS = {"weights": {"0": "g_ctx", "1": "g_att"}}


def _location_call(call_id: str, hybrid: bool, changed: str) -> ProbeCall:
    args = ("q", "keys", "prev", "mask")
    # location-based: other keys must not change the weights; hybrid: another previous alignment must
    perturbed = tuple(changed if a == ("keys" if not hybrid else "prev") else a for a in args)
    return ProbeCall(call_id, "LocationAwareAttention", args, kind="module",
                     init_kwargs={"query_dim": DQ, "key_dim": DK, "attn_dim": DA, "n_filters": N_FILTERS,
                                  "kernel_size": KERNEL, "hybrid": hybrid},
                     state=LOCATION_STATE, backward=CONTEXT_AND_WEIGHTS, perturb=({"args": perturbed},))


CALLS = [
    ProbeCall("dot", "dot_score", ("q_k", "keys")),
    ProbeCall("general", "GeneralScore", ("q", "keys"), kind="module", init_kwargs={"query_dim": DQ, "key_dim": DK},
              state={"W.weight": "gen_W"}, backward={"weights": {"0": "g_scores"}}),
    ProbeCall("additive", "AdditiveScore", ("q", "keys"), kind="module",
              init_kwargs={"query_dim": DQ, "key_dim": DK, "attn_dim": DA}, state=ADDITIVE_STATE,
              backward={"weights": {"0": "g_scores"}}),
    ProbeCall("softmax", "masked_softmax", ("scores", "softmax_mask")),
    ProbeCall("global", "global_attention", ("q_k", "keys", "mask")),
    ProbeCall("local", "local_attention", ("q_k", "keys", "mask", "centre"), kwargs={"window": WINDOW}),
    ProbeCall("local_p", "local_attention", ("q_k", "keys", "mask", "centre"),
              kwargs={"window": WINDOW, "gaussian": True}),
    _location_call("location", False, "keys2"),
    _location_call("hybrid", True, "prev2"),
    ProbeCall("coverage", "CoverageAttention", ("q", "keys", "coverage", "mask"), kind="module",
              init_kwargs={"query_dim": DQ, "key_dim": DK, "attn_dim": DA}, state=COVERAGE_STATE,
              backward={"weights": {"0": "g_ctx", "1": "g_att", "2": "g_cov", "3": "g_loss"}}),
    ProbeCall("cov_vectors", "coverage_vectors", ("att_seq",)),
    ProbeCall("cov_loss", "coverage_loss", ("att_seq",)),
    ProbeCall("mha", "MultiHeadAttention", ("mha_q", "mha_kv", "mha_kv2", "mask"), kind="module",
              init_kwargs={"d_model": D_MODEL, "n_heads": N_HEADS}, state=MHA_STATE,
              backward={"weights": {"0": "g_mha", "1": "g_mha_w"}}),
    ProbeCall("self_attn", "SelfAttention", ("mha_kv", "mask"), kind="module", init_kwargs={"d_model": D_MODEL},
              state=SELF_STATE, backward={"weights": {"0": "g_sa", "1": "g_sa_w"}}),
    ProbeCall("chunked", "chunked_attention", ("ch_q", "ch_k", "ch_v", "mask"), kwargs={"chunk_size": CHUNK}),
    # the trained model, on the judge's held-out sources (targets: EOS after the reversed digits)
    # an untrained Seq2Seq of the template's signature: implemented at all, shapes, weights on real tokens only
    ProbeCall("s2s_init", "Seq2Seq", ("init_src", "init_lengths"), kind="module", method="greedy_decode",
              kwargs={"max_len": INIT_STEPS}, init_kwargs={"vocab_size": VOCAB_SIZE, "emb_dim": 8, "hidden_dim": 16,
                                                           "attn_dim": 8, "attention": "hybrid"}),
    ProbeCall("s2s", "seq2seq", ("heldout_src", "heldout_lengths"), kind="object", method="greedy_decode",
              kwargs={"max_len": MAX_DECODE}),
    *[ProbeCall(f"vis{i}", "seq2seq", (f"vis{i}_src", f"vis{i}_lengths"), kind="object", method="greedy_decode",
                kwargs={"max_len": len(source) + 2}) for i, source in enumerate(VIS_SOURCES)],
]
COST_CALLS = [ProbeCall(f"m_chunked_{t}", "chunked_attention", (f"m{t}_q", f"m{t}_k", f"m{t}_v"),
                        kwargs={"chunk_size": COST_CHUNK}, measure=True) for t in COST_SIZES]

LINEAR = 1.35  # the bound of an O(T) cost; O(T^2) fits about 1.7-2.0 at these sizes
REQUIREMENTS = [
    Forbidden("own-implementation", FUNCTIONS, FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS, "req.what.fused_attention"),
    Growth("memory-chunked", "chunked_attention", tuple((t, f"m_chunked_{t}") for t in COST_SIZES), "memory", LINEAR),
]


# --- checks: comparisons with the reference, and what correct weights must satisfy -----------------

def _what(name: str, function: str) -> Message:
    return msg("compare.what", name=msg(f"w5a.name.{name}"), function=function)


def _figure(actual: torch.Tensor | None, expected: torch.Tensor | None) -> tuple | None:
    from grader.report.figures import slice_2d

    if actual is None or expected is None:
        return None
    pair = (slice_2d(actual.detach().float()), slice_2d(expected.detach().float()))
    return (*pair, "attention") if pair[0] is not None and pair[1] is not None else None


def _returned(ctx: CheckContext, call_id: str, function: str) -> tuple[object, Verdict | None]:
    outcome = ctx.call(call_id)
    if outcome.status == "state":
        return outcome, Verdict("fail", msg("check.module_state", function=function,
                                            problems="; ".join(outcome.problems[:4]) or outcome.message))
    return outcome, call_problem(outcome, function, ctx.probe)


def weights_problem(actual: torch.Tensor | None, expected: torch.Tensor, what: Message, blocked: Message
                    ) -> Message | None:
    """What a (rows, S) map of attention weights gets wrong whatever the style, or None: non-finite
    values, weight where the expected map is exactly 0 (a masked position, outside the window: named
    by `blocked`), rows that do not sum to what the expected rows sum to (1, or 0 when nothing may
    be attended to). Values themselves are compared afterwards, within the tolerance."""
    if actual is None or actual.shape != expected.shape or not actual.is_floating_point():
        return None   # the plain comparison says what is wrong with the shape or the type
    a = actual.detach().double().reshape(-1, actual.shape[-1])            # (rows, S)
    e = expected.detach().double().reshape(-1, expected.shape[-1])
    if not torch.isfinite(a).all():
        row = int((~torch.isfinite(a)).any(dim=1).nonzero()[0])
        return msg("w5a.weights_nonfinite", what=what, row=row, count=int((~torch.isfinite(a)).sum()))
    leak = (e == 0) & (a.abs() > ZERO_WEIGHT)
    if leak.any():
        row, position = (int(i) for i in leak.nonzero()[0])
        return msg("w5a.weights_leak", what=what, row=row, position=position, weight=f"{float(a[row, position]):.3g}",
                   blocked=blocked, count=int(leak.sum()))
    sums, wanted = a.sum(dim=1), e.sum(dim=1)
    off = (sums - wanted).abs() > ROW_SUM_ATOL
    if off.any():
        row = int(off.nonzero()[0])
        return msg("w5a.weights_row_sum", what=what, row=row, total=f"{float(sums[row]):.4g}",
                   expected=f"{float(wanted[row]):.4g}")
    return None


def compare_outputs(call_id: str, function: str, outputs: dict[int, str], *, default_tol: Tolerance = FP32,
                    weights: dict[int, str] | None = None, n_outputs: int | None = None) -> CheckDef:
    """Outputs `{index: name}` of one call (function or module) compared with the expected values;
    outputs listed in `weights` ({index: catalog id of what blocks positions}) are first checked as
    attention weights (`weights_problem`), with the student's map beside the expected one."""

    def check(ctx: CheckContext) -> Verdict:
        outcome, problem = _returned(ctx, call_id, function)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        if n_outputs is not None and len(outcome.outputs) != n_outputs:
            return Verdict("fail", msg("check.n_outputs", function=function, count=len(outcome.outputs),
                                       expected=n_outputs))
        tol = ctx.tolerance or default_tol
        # the weights first: their pattern (a leak through the mask) explains a wrong context
        for index, name in sorted(outputs.items(), key=lambda item: item[0] not in (weights or {})):
            actual = outcome.outputs[index] if index < len(outcome.outputs) else None
            if actual is None and index < len(outcome.types):
                return Verdict("fail", msg("check.not_a_tensor", what=_what(name, function), type=outcome.types[index]))
            expected = ctx.expected[call_id][index]
            message = None
            if weights and index in weights:
                message = weights_problem(actual, expected, _what(name, function), msg(weights[index]))
            message = message or compare_tensors(actual, expected, tol, _what(name, function))
            if message:
                pictured = weights is not None and index in weights
                return Verdict("fail", message, figure=_figure(actual, expected) if pictured else None)
        return Verdict("pass", msg("check.matches", function=function))

    return CheckDef(check, function=function, needs_reference=True)


def _module(call_id: str, cls: str, outputs: dict[int, str], *, weights: dict[int, str] | None = None,
            variants: bool = False) -> CheckDef:
    """A module: its outputs (named in w5a.name.*), then, through the kit's module_check with the
    same parameters loaded, the gradients and, with `variants`, the weights (output 1) on the
    perturbed inputs."""
    return all_of(compare_outputs(call_id, cls, outputs, weights=weights),
                  module_check(call_id, cls, {1: "weights"} if variants else {}, default_tol=FP32, grads=True,
                               variants=variants))


PADDING = "w5a.blocked.padding"
WINDOW_MASK = "w5a.blocked.window"


# --- the seq2seq model (object calls) -----------------------------------------------------------------

def _targets(src: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """The reversal task's targets: the source's tokens reversed, then EOS."""
    return [src[b, :n].flip(0).tolist() + [EOS] for b, n in enumerate(lengths.tolist())]


def decoded(ctx: CheckContext, call_id: str, src_key: str, lengths_key: str
            ) -> tuple[torch.Tensor | None, torch.Tensor | None, Verdict | None]:
    """(tokens (N, L) int64, attention (N, L, S) float64) that greedy_decode returned, or a verdict
    saying why they cannot be judged."""
    outcome = ctx.call(call_id)
    trained = next((c.kind == "object" for c in ctx.calls if c.id == call_id), True)
    if outcome.status == "missing" and trained:
        return None, None, Verdict("fail", msg("w5a.s2s_missing"))
    if outcome.status == "state":
        return None, None, Verdict("fail", msg("check.module_state", function="Seq2Seq",
                                               problems="; ".join(outcome.problems[:4]) or outcome.message))
    problem = call_problem(outcome, "seq2seq.greedy_decode" if trained else "Seq2Seq", ctx.probe)
    if problem:
        return None, None, problem
    src, lengths = ctx.inputs[src_key], ctx.inputs[lengths_key]
    tokens = outcome.outputs[0] if outcome.outputs else None
    attention = outcome.outputs[1] if len(outcome.outputs) > 1 else None
    n, width = src.shape
    steps = int(lengths.max()) + 1 if trained else INIT_STEPS
    if tokens is None or attention is None or tokens.ndim != 2 or tokens.shape[0] != n or tokens.shape[1] < steps \
            or attention.ndim != 3 or attention.shape[:2] != tokens.shape or attention.shape[2] != width \
            or tokens.is_complex() or not attention.is_floating_point():
        shapes = ", ".join(f"{describe_shape(t)} {str(t.dtype).replace('torch.', '')}" if t is not None else "None"
                           for t in (tokens, attention))
        return None, None, Verdict("fail", msg("w5a.s2s_shapes", shapes=shapes, n=n, steps=steps, width=width))
    return tokens.double().round().long(), attention.double(), None


def attention_rows_problem(attention: torch.Tensor, lengths: torch.Tensor) -> tuple[Message | None, tuple | None]:
    """Every decoder step's weights (N, L, S): a distribution over the real source tokens, nothing on
    padding. (None, None) or (what is wrong, (the student's map, the uniform map of that example))."""
    real = (torch.arange(attention.shape[2])[None, :] < lengths[:, None]).double()      # (N, S)
    uniform = real[:, None, :].expand_as(attention) / lengths.clamp(min=1)[:, None, None].double()
    what = msg("w5a.name.s2s_attention")
    for b in range(attention.shape[0]):
        message = weights_problem(attention[b], uniform[b], what, msg(PADDING))
        if message:
            return msg("w5a.s2s_example", example=b, problem=message), _figure(attention[b], uniform[b])
    return None, None


def accuracy(tokens: torch.Tensor, src: torch.Tensor, lengths: torch.Tensor) -> tuple[float, float]:
    """(token accuracy over the targets' digits and EOS, share of sequences entirely right)."""
    right = total = whole = 0
    for b, target in enumerate(_targets(src, lengths)):
        got = tokens[b, :len(target)].tolist()
        hits = sum(1 for x, y in zip(got, target) if x == y)
        right, total, whole = right + hits, total + len(target), whole + (hits == len(target))
    return right / total, whole / len(lengths)


def alignment(attention: torch.Tensor, lengths: torch.Tensor) -> float:
    """Share of the digit steps t whose attention peaks on the source position they copy, n - 1 - t."""
    hits = steps = 0
    for b, n in enumerate(lengths.tolist()):
        peaks = attention[b, :n, :n].argmax(dim=-1).tolist()
        hits += sum(1 for t, p in enumerate(peaks) if p == n - 1 - t)
        steps += n
    return hits / steps


def _seq2seq(ctx: CheckContext) -> Verdict:
    # an untrained model first: implemented, of the right shapes, attending to real tokens only
    for call_id, src_key, lengths_key in (("s2s_init", "init_src", "init_lengths"),
                                          ("s2s", "heldout_src", "heldout_lengths")):
        tokens, attention, problem = decoded(ctx, call_id, src_key, lengths_key)
        if problem:
            return problem
        message, figure = attention_rows_problem(attention, ctx.inputs[lengths_key])
        if message:
            return Verdict("fail", message, figure=figure)
    src, lengths = ctx.inputs["heldout_src"], ctx.inputs["heldout_lengths"]
    token_accuracy, sequence_accuracy = accuracy(tokens, src, lengths)
    threshold = TOKEN_ACCURACY.get(ctx.profile, TOKEN_ACCURACY["full"])
    figures = dict(pairs=len(lengths), token=f"{token_accuracy:.3f}", sequence=f"{sequence_accuracy:.3f}",
                   threshold=f"{threshold:g}", profile=ctx.profile)
    if token_accuracy < threshold:
        return Verdict("fail", msg("w5a.s2s_low", **figures))
    return Verdict("pass", msg("w5a.s2s_ok", **figures))


def _alignment(ctx: CheckContext) -> Verdict:
    tokens, attention, problem = decoded(ctx, "s2s", "heldout_src", "heldout_lengths")
    if problem:
        return problem
    lengths = ctx.inputs["heldout_lengths"]
    share = alignment(attention, lengths)
    threshold = ALIGNMENT.get(ctx.profile, ALIGNMENT["full"])
    if share < threshold:
        worst = min(range(len(lengths)), key=lambda b: alignment(attention[b:b + 1], lengths[b:b + 1]))
        n = int(lengths[worst])
        ideal = torch.zeros(n, n, dtype=torch.float64)
        ideal[torch.arange(n), torch.arange(n - 1, -1, -1)] = 1.0
        return Verdict("fail", msg("w5a.align_low", share=f"{share:.3f}", threshold=f"{threshold:g}"),
                       figure=_figure(attention[worst, :n, :n], ideal))
    return Verdict("pass", msg("w5a.align_ok", share=f"{share:.3f}", pairs=len(lengths)))


# --- experiments: the submitted artifacts, checked against the run's and against the model ---------

ARTIFACTS = ArtifactSpec(folders=("attention_visualization", "seq2seq_model"))
MAPS = "attention_visualization/attention_maps.json"
METRICS = "seq2seq_model/metrics.json"
COMPARISON = "seq2seq_model/comparison.csv"
COMPARISON_COLUMNS = {"attention": str, "test_token_accuracy": float, "test_sequence_accuracy": float,
                      "alignment": float, "scores_per_step": float}


def read_json(data: bytes | None, name: str) -> tuple[object, Message | None]:
    """A JSON artifact, as untrusted bytes: (value, None) or (None, what is wrong)."""
    if data is None:
        return None, msg("art.csv_missing", name=name)
    if len(data) > artifacts.MAX_ARTIFACT_BYTES:
        return None, msg("art.csv_large", name=name)
    try:
        return json.loads(data.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, msg("w5a.json_invalid", name=name)


def read_maps(data: bytes | None) -> tuple[list[tuple[list[int], torch.Tensor]] | None, Message | None]:
    """[(source, attention (steps, len(source)) float64)] of attention_maps.json."""
    value, problem = read_json(data, MAPS)
    if problem:
        return None, problem
    examples = value.get("examples") if isinstance(value, dict) else None
    if not isinstance(examples, list) or not examples:
        return None, msg("w5a.maps_layout", name=MAPS)
    maps = []
    for example in examples[:16]:
        try:
            source = [int(d) for d in example["source"]]
            attention = torch.tensor(example["attention"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None, msg("w5a.maps_layout", name=MAPS)
        if attention.ndim != 2 or attention.shape[1] != len(source) or not torch.isfinite(attention).all():
            return None, msg("w5a.maps_layout", name=MAPS)
        maps.append((source, attention))
    return maps, None


def _attention_maps(ctx: CheckContext) -> Verdict:
    folder = artifacts.copies(ctx, "attention_visualization")
    if folder.submitted is None:
        return Verdict("fail", msg("art.folder_missing", folder="attention_visualization"))
    mine, problem = read_maps(folder.submitted.get("attention_maps.json"))
    if problem:
        return Verdict("fail", problem)
    ours, problem = read_maps(folder.produced.get("attention_maps.json"))
    if problem:
        return Verdict("fail", msg("art.run_did_not_write", name=MAPS, detail=problem))
    wanted = [list(s) for s in VIS_SOURCES]
    for maps in (mine, ours):
        if [source for source, _ in maps] != wanted:
            return Verdict("fail", msg("w5a.maps_sources", sources="; ".join(" ".join(map(str, s)) for s in wanted)))
    for i, ((source, submitted), (_, produced)) in enumerate(zip(mine, ours)):
        # the run's file against the grader's own recomputation from the run's model
        _, recomputed, problem = decoded(ctx, f"vis{i}", f"vis{i}_src", f"vis{i}_lengths")
        if problem:
            return problem
        recomputed = recomputed[0]
        if produced.shape != recomputed.shape or not torch.allclose(produced, recomputed, atol=1e-4, rtol=1e-4):
            return Verdict("fail", msg("w5a.maps_not_model", example=" ".join(map(str, source)),
                                       shape=describe_shape(produced), ours=describe_shape(recomputed)),
                           figure=_figure(produced, recomputed))
        # the submitted file against the run's (the same code and seed, perhaps another machine)
        if submitted.shape != produced.shape:
            return Verdict("fail", msg("w5a.maps_shape", example=" ".join(map(str, source)),
                                       mine=describe_shape(submitted), ours=describe_shape(produced)),
                           figure=_figure(submitted, produced))
        difference = float((submitted - produced).abs().mean())
        if difference > MAPS_MEAN_DIFF:
            return Verdict("fail", msg("w5a.maps_differ", example=" ".join(map(str, source)),
                                       difference=f"{difference:.3f}", limit=f"{MAPS_MEAN_DIFF:g}"),
                           figure=_figure(submitted, produced))
    ok, message, figure = artifacts.compare_plots(folder, what=msg("w5a.what.attention_plots"))
    if not ok:
        return Verdict("fail", message, figure=figure)
    return Verdict("pass", msg("w5a.maps_ok", count=len(mine), message=message))


def _metrics(value: object) -> tuple[dict | None, Message | None]:
    """metrics.json's fields, checked: accuracies in [0, 1], one finite training loss per epoch."""
    if not isinstance(value, dict):
        return None, msg("w5a.metrics_layout", name=METRICS)
    try:
        found = {"epochs": int(value["epochs"]), "train_loss": [float(x) for x in value["train_loss"]],
                 "test_token_accuracy": float(value["test_token_accuracy"]),
                 "test_sequence_accuracy": float(value["test_sequence_accuracy"])}
    except (KeyError, TypeError, ValueError, OverflowError):
        return None, msg("w5a.metrics_layout", name=METRICS)
    losses = found["train_loss"]
    if found["epochs"] < 1 or len(losses) != found["epochs"] or not all(math.isfinite(x) and x >= 0 for x in losses) \
            or not all(0.0 <= found[k] <= 1.0 for k in ("test_token_accuracy", "test_sequence_accuracy")):
        return None, msg("w5a.metrics_layout", name=METRICS)
    return found, None


def _seq2seq_model(ctx: CheckContext) -> Verdict:
    folder = artifacts.copies(ctx, "seq2seq_model")
    if folder.submitted is None:
        return Verdict("fail", msg("art.folder_missing", folder="seq2seq_model"))
    value, problem = read_json(folder.submitted.get("metrics.json"), METRICS)
    mine, problem = (None, problem) if problem else _metrics(value)
    if problem:
        return Verdict("fail", problem)
    value, problem = read_json(folder.produced.get("metrics.json"), METRICS)
    ours, problem = (None, problem) if problem else _metrics(value)
    if problem:
        return Verdict("fail", msg("art.run_did_not_write", name=METRICS, detail=problem))
    if abs(mine["test_token_accuracy"] - ours["test_token_accuracy"]) > RUN_AGREEMENT:
        return Verdict("fail", msg("w5a.metrics_differ", mine=f"{mine['test_token_accuracy']:.3f}",
                                   ours=f"{ours['test_token_accuracy']:.3f}"))
    if mine["train_loss"][-1] >= mine["train_loss"][0]:
        return Verdict("fail", msg("w5a.metrics_loss", first=f"{mine['train_loss'][0]:.4g}",
                                   last=f"{mine['train_loss'][-1]:.4g}"))
    tokens, _, problem = decoded(ctx, "s2s", "heldout_src", "heldout_lengths")
    if problem:
        return Verdict("fail", msg("w5a.metrics_unmeasured", reason=problem.message))
    measured, _ = accuracy(tokens, ctx.inputs["heldout_src"], ctx.inputs["heldout_lengths"])
    if mine["test_token_accuracy"] > measured + CLAIM_SLACK:
        return Verdict("fail", msg("w5a.metrics_claim", claimed=f"{mine['test_token_accuracy']:.3f}",
                                   measured=f"{measured:.3f}", pairs=len(ctx.inputs["heldout_lengths"])))
    ok, message, figure = artifacts.compare_plots(folder, what=msg("w5a.what.training_curve"))
    if not ok:
        return Verdict("fail", message, figure=figure)
    return Verdict("pass", msg("w5a.metrics_ok", claimed=f"{mine['test_token_accuracy']:.3f}",
                               measured=f"{measured:.3f}", epochs=mine["epochs"]))


def _comparison(ctx: CheckContext) -> Verdict:
    folder = artifacts.copies(ctx, "seq2seq_model")
    if folder.submitted is None:
        return Verdict("fail", msg("art.folder_missing", folder="seq2seq_model"))
    mine, problem = artifacts.read_table(folder.submitted.get("comparison.csv"), COMPARISON_COLUMNS, name=COMPARISON)
    if problem:
        return Verdict("fail", problem)
    ours, problem = artifacts.read_table(folder.produced.get("comparison.csv"), COMPARISON_COLUMNS, name=COMPARISON)
    if problem:
        return Verdict("fail", msg("art.run_did_not_write", name=COMPARISON, detail=problem))
    kinds = {r["attention"]: r for r in mine}
    local = kinds.get("local")
    global_kinds = [k for k in kinds if k != "local"]
    if local is None or not global_kinds:
        return Verdict("fail", msg("w5a.comparison_kinds", kinds=", ".join(sorted(kinds)) or "-"))
    if any(r["test_token_accuracy"] > 1 or r["test_sequence_accuracy"] > 1 or r["alignment"] > 1 for r in mine):
        return Verdict("fail", msg("w5a.comparison_range", name=COMPARISON))
    differs = artifacts.compare_tables(mine, ours, ("attention",),
                                       {"test_token_accuracy": 1.1, "scores_per_step": 1.01}, name=COMPARISON)
    if differs:
        return Verdict("fail", differs)
    cheapest_global = min(kinds[k]["scores_per_step"] for k in global_kinds)
    if not local["scores_per_step"] < cheapest_global:
        return Verdict("fail", msg("w5a.comparison_cost", local=f"{local['scores_per_step']:g}",
                                   global_=f"{cheapest_global:g}"))
    return Verdict("pass", msg("w5a.comparison_ok", rows=len(mine), local=f"{local['scores_per_step']:g}",
                               global_=f"{cheapest_global:g}"))


# --- the checks the rubric names -------------------------------------------------------------------

def local_check(*call_ids: str) -> CheckDef:
    """local_attention: no weight outside the window (or on padding), then equal to the reference."""
    return all_of(*(compare_outputs(c, "local_attention", {0: "context", 1: "weights"}, weights={1: WINDOW_MASK},
                                    n_outputs=2) for c in call_ids))


CHECKS: dict[str, CheckDef] = {
    "dot-score": compare_outputs("dot", "dot_score", {0: "scores"}),
    "general-score": _module("general", "GeneralScore", {0: "scores"}),
    "additive-score": _module("additive", "AdditiveScore", {0: "scores"}),
    "masked-softmax": compare_outputs("softmax", "masked_softmax", {0: "weights"}, weights={0: PADDING}),
    "global-attention": compare_outputs("global", "global_attention", {0: "context", 1: "weights"},
                                        weights={1: PADDING}, n_outputs=2),
    "local-attention": local_check("local", "local_p"),
    "location-attention": _module("location", "LocationAwareAttention", {0: "context", 1: "weights"},
                                  weights={1: PADDING}, variants=True),
    "hybrid-attention": _module("hybrid", "LocationAwareAttention", {0: "context", 1: "weights"},
                                weights={1: PADDING}, variants=True),
    "coverage-attention": _module("coverage", "CoverageAttention",
                                  {0: "context", 1: "weights", 2: "coverage", 3: "step_loss"}, weights={1: PADDING}),
    "coverage-loss": all_of(compare_outputs("cov_vectors", "coverage_vectors", {0: "coverage"}),
                            compare_outputs("cov_loss", "coverage_loss", {0: "coverage_loss"})),
    "seq2seq": CheckDef(_seq2seq, function="Seq2Seq"),
    "bonus-multihead": _module("mha", "MultiHeadAttention", {0: "output", 1: "weights"}, weights={1: PADDING}),
    "bonus-self-attention": _module("self_attn", "SelfAttention", {0: "output", 1: "weights"}, weights={1: PADDING}),
    "bonus-efficient": compare_outputs("chunked", "chunked_attention", {0: "output"}),
    "attention-maps": CheckDef(_attention_maps),
    "alignment": CheckDef(_alignment),
    "seq2seq-model": CheckDef(_seq2seq_model),
    "global-vs-local": CheckDef(_comparison),
    **quality_checks(FUNCTIONS),
}

SPEC = AssignmentSpec(
    id="w5-attention",
    make_inputs=make_inputs,
    calls=CALLS + COST_CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.attention",
    hidden_module="reference.hidden_checks.w5_attention",
)
