"""w6-self-attention: the public probe calls and checks.

Inputs are drawn from the run's seed with a private generator, so a submission cannot know them
in advance. Shapes are chosen to expose the usual bugs: a sequence length (37) that no chunk
size divides, key/query lengths that differ, fully masked rows, fp16 scores large enough that an
exp() in half precision overflows.
"""

from __future__ import annotations

import math

import torch

from grader.assignments import AssignmentSpec
from grader.i18n import msg
from grader.judge import CheckContext, all_of, CheckDef, Verdict, artifacts, call_problem, output_check
from grader.judge.quality import quality_checks
from grader.judge.requirements import FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS, Forbidden, Growth
from grader.probe import ArtifactSpec, ProbeCall
from grader.rubric.models import Tolerance

B, H, T, D = 2, 3, 37, 16
FP32 = Tolerance(atol=1e-4, rtol=1e-4)
FP16 = Tolerance(atol=3e-2, rtol=3e-2)
EXACT = Tolerance(atol=0.0, rtol=0.0)


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    q, k, v = randn(B, H, T, D), randn(B, H, T, D), randn(B, H, T, D)
    bool_mask = torch.rand(B, 1, T, T, generator=g) > 0.25
    bool_mask[..., 0] = True  # every row keeps one key: fully masked rows are tested on their own
    additive = torch.rand(B, H, T, T, generator=g) * -4.0
    additive[torch.rand(B, H, T, T, generator=g) < 0.15] = float("-inf")
    additive[..., 0] = 0.0
    full_rows = torch.rand(B, 1, T, T, generator=g) > 0.3
    full_rows[:, :, 0] = False   # query 0 of every batch sees no key at all
    full_rows[1, :, 5] = False
    full_rows[..., 1:, 0] = True
    full_rows[1, :, 5, 0] = False
    lengths = torch.randint(T // 3, T + 1, (B,), generator=g, dtype=torch.int64)
    lengths[0] = T - 4
    # fp16: scores of magnitude ~60, beyond exp()'s fp16 range (e^11 is past fp16's largest value) but far from fp16's
    # own limit, so a fp16 matmul followed by an fp32 softmax is still accurate.
    q16, k16, v16 = (randn(B, H, T, D, scale=4.0)).half(), randn(B, H, T, D, scale=4.0).half(), randn(B, H, T, D).half()
    kc, vc = randn(B, H, 40, D), randn(B, H, 40, D)
    chunk_mask = torch.rand(B, 1, T, 40, generator=g) > 0.3
    chunk_mask[..., 0] = True
    pad_keys = torch.arange(T) < T - 6
    return {
        "q": q, "k": k, "v": v, "bool_mask": bool_mask, "additive_mask": additive,
        "full_rows_mask": full_rows, "lengths": lengths, "q16": q16, "k16": k16, "v16": v16,
        "k_chunk": kc, "v_chunk": vc, "chunk_mask": chunk_mask,
        "pad_keys": pad_keys.view(1, 1, 1, T).expand(B, 1, 1, T).contiguous(),
        "causal_ref": torch.ones(T, T).tril().bool(),
        "additive_small": additive[:, :1].contiguous(),
        **{f"m{t}_{name}": randn(1, 1, t, COST_D) for t in COST_SIZES for name in ("q", "k", "v")},
    }


CALLS = [
    ProbeCall("sdpa", "scaled_dot_product_attention", ("q", "k", "v")),
    ProbeCall("sdpa_bool", "scaled_dot_product_attention", ("q", "k", "v"), tensor_kwargs={"mask": "bool_mask"}),
    ProbeCall("sdpa_add", "scaled_dot_product_attention", ("q", "k", "v"), tensor_kwargs={"mask": "additive_mask"}),
    ProbeCall("sdpa_full", "scaled_dot_product_attention", ("q", "k", "v"), tensor_kwargs={"mask": "full_rows_mask"}),
    ProbeCall("sdpa_fp16", "scaled_dot_product_attention", ("q16", "k16", "v16")),
    ProbeCall("causal", "causal_mask", (), kwargs={"T": T}),
    ProbeCall("padding", "padding_mask", ("lengths",), kwargs={"max_len": T}),
    ProbeCall("combine_bool", "combine_masks", ("pad_keys", "causal_ref")),
    ProbeCall("combine_mixed", "combine_masks", ("bool_mask", "additive_small")),
    ProbeCall("chunked", "chunked_attention", ("q", "k_chunk", "v_chunk"), kwargs={"chunk_size": 8}),
    ProbeCall("chunked_ragged", "chunked_attention", ("q", "k_chunk", "v_chunk"), kwargs={"chunk_size": 16}),
    ProbeCall("chunked_mask", "chunked_attention", ("q", "k_chunk", "v_chunk"),
              kwargs={"chunk_size": 8}, tensor_kwargs={"mask": "chunk_mask"}),
    ProbeCall("flash", "flash_attention", ("q", "k", "v"), kwargs={"causal": True, "block_size": 16}),
    ProbeCall("flash_full", "flash_attention", ("q", "k_chunk", "v_chunk"), kwargs={"causal": False, "block_size": 16}),
    ProbeCall("local_mask", "local_attention_mask", (), kwargs={"T": T, "window": 3}),
    ProbeCall("sparse", "sparse_attention", ("q", "k", "v"), kwargs={"window": 3}),
    ProbeCall("linear", "linear_attention", ("q", "k", "v")),
]


_FP16_OUTPUT = output_check("sdpa_fp16", "scaled_dot_product_attention", {0: "output"}, default_tol=FP16)


def _finite_fp16(ctx: CheckContext) -> Verdict:
    outcome = ctx.call("sdpa_fp16")
    problem = call_problem(outcome, "scaled_dot_product_attention", ctx.probe)
    if problem:
        return problem
    out = outcome.outputs[0] if outcome.outputs else None
    if out is not None and not torch.isfinite(out.double()).all():
        bad = int((~torch.isfinite(out.double())).sum())
        return Verdict("fail", msg("w6.fp16_nonfinite", count=bad))
    if out is not None and out.dtype != torch.float16:
        return Verdict("fail", msg("w6.fp16_dtype", dtype=str(out.dtype).replace("torch.", "")))
    return _FP16_OUTPUT.fn(ctx)


# --- implementation checks that also need something other than a plain comparison ------------

def _attention(call_id: str, tol: Tolerance = FP32) -> CheckDef:
    return output_check(call_id, "scaled_dot_product_attention", {0: "output", 1: "weights"},
                        default_tol=tol, n_outputs=2)


# --- requirements: implemented, not borrowed; memory and work measured by the grader ------------

FUNCTIONS = ("scaled_dot_product_attention", "causal_mask", "padding_mask", "combine_masks", "chunked_attention",
             "flash_attention", "local_attention_mask", "sparse_attention", "linear_attention")
COST_SIZES = (128, 256, 512)        # T of the measuring calls (B = H = 1, d = 16): each well under a second
COST_D = 16
COST_CHUNK = 64


def _cost_calls(prefix: str, function: str, **kwargs) -> list[ProbeCall]:
    return [ProbeCall(f"m_{prefix}_{t}", function, (f"m{t}_q", f"m{t}_k", f"m{t}_v"), kwargs=dict(kwargs), measure=True)
            for t in COST_SIZES]


def _growth(req_id: str, prefix: str, function: str, metric: str, bound: float | None, expected: str = "T^1") -> Growth:
    return Growth(req_id, function, tuple((t, f"m_{prefix}_{t}") for t in COST_SIZES), metric, bound, expected)


COST_CALLS = (_cost_calls("sdpa", "scaled_dot_product_attention")
              + _cost_calls("chunked", "chunked_attention", chunk_size=COST_CHUNK)
              + _cost_calls("flash", "flash_attention", causal=False, block_size=2 * COST_CHUNK)
              + _cost_calls("sparse", "sparse_attention", window=4)
              + _cost_calls("linear", "linear_attention"))

LINEAR = 1.35  # the bound of an O(T) cost; O(T^2) fits about 1.7-2.0 at these sizes
REQUIREMENTS = [
    Forbidden("own-implementation", FUNCTIONS, FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS, "req.what.fused_attention"),
    _growth("memory-naive", "sdpa", "scaled_dot_product_attention", "memory", None, "T^2"),  # for the memory experiment
    _growth("memory-chunked", "chunked", "chunked_attention", "memory", LINEAR),
    _growth("memory-flash", "flash", "flash_attention", "memory", LINEAR),
    _growth("memory-sparse", "sparse", "sparse_attention", "memory", LINEAR),
    _growth("work-sparse", "sparse", "sparse_attention", "work", LINEAR),
    _growth("work-linear", "linear", "linear_attention", "work", LINEAR),
    _growth("memory-linear", "linear", "linear_attention", "memory", LINEAR),
    # for the record (result.json `measured`): exact attention does O(T^2) work however it is tiled
    _growth("work-naive", "sdpa", "scaled_dot_product_attention", "work", None, "T^2"),
    _growth("work-chunked", "chunked", "chunked_attention", "work", None, "T^2"),
    _growth("work-flash", "flash", "flash_attention", "work", None, "T^2"),
]


# --- experiments: the submitted artifacts, checked against what the grader's run wrote -----------

ARTIFACTS = ArtifactSpec(folders=("performance_benchmark", "masking_techniques"))
BENCHMARK_COLUMNS = {"method": str, "seq_len": int, "batch_size": int, "time_ms": float, "peak_mem_mb": float}
RESULTS = "performance_benchmark/results.csv"


def _tables(ctx: CheckContext) -> tuple[list[dict] | None, list[dict] | None, Verdict | None]:
    return artifacts.tables(ctx, "performance_benchmark", "results.csv", BENCHMARK_COLUMNS, RESULTS)


def _benchmark_results(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx)
    if problem:
        return problem
    methods = {r["method"] for r in mine}
    if not {"naive", "chunked"} <= methods:
        return Verdict("fail", msg("w6.csv_methods", methods=", ".join(sorted(methods))))
    seq_lens = {r["seq_len"] for r in mine}
    batch_sizes = {r["batch_size"] for r in mine}
    if len(seq_lens) < 3 or len(batch_sizes) < 2:
        return Verdict("fail", msg("w6.csv_coverage", seq_lens=len(seq_lens), batch_sizes=len(batch_sizes)))
    # The rows must be the run's, and memory of the same order. Time is left out: it depends on
    # the machine and its load (a laptop, a shared runner), so no factor would be fair both ways.
    differs = artifacts.compare_tables(mine, ours, ("method", "seq_len", "batch_size"),
                                       {"peak_mem_mb": 3.0}, name=RESULTS)
    if differs:
        return Verdict("fail", differs)
    return Verdict("pass", msg("w6.csv_ok", rows=len(mine), methods=len(methods), seq_lens=len(seq_lens),
                               batch_sizes=len(batch_sizes)))


def _growth_in(rows: list[dict], method: str) -> float | None:
    mine = [r for r in rows if r["method"] == method]
    if not mine:
        return None
    batch = max(r["batch_size"] for r in mine)
    series = sorted((r["seq_len"], r["peak_mem_mb"]) for r in mine if r["batch_size"] == batch)
    if len(series) < 2 or series[0][1] <= 0:
        return None
    (t0, m0), (t1, m1) = series[0], series[-1]
    return math.log(m1 / m0) / math.log(t1 / t0) if m1 > 0 and t1 > t0 else None


def _memory_scaling(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx)
    if problem:
        return problem
    naive, chunked = _growth_in(mine, "naive"), _growth_in(mine, "chunked")
    if naive is None or chunked is None:
        return Verdict("fail", msg("w6.mem_need"))
    if not chunked < naive:
        return Verdict("fail", msg("w6.mem_not_slower", naive=f"{naive:.2f}", chunked=f"{chunked:.2f}"))
    # The grader's own measurement of the same two functions: a table that contradicts it is a claim
    # the code does not back.
    measured = {}
    for req_id, function in (("memory-naive", "scaled_dot_product_attention"), ("memory-chunked", "chunked_attention")):
        outcome = ctx.requirements.get((req_id, function))
        measured[function] = outcome.measured.get("exponent") if outcome is not None else None
    ours_naive, ours_chunked = measured["scaled_dot_product_attention"], measured["chunked_attention"]
    if ours_naive is None or ours_chunked is None:
        return Verdict("fail", msg("w6.mem_unmeasured"))
    if not ours_chunked < ours_naive - 0.3 or abs(chunked - ours_chunked) > 0.6 or abs(naive - ours_naive) > 0.6:
        return Verdict("fail", msg("w6.mem_contradicts", naive=f"{naive:.2f}", chunked=f"{chunked:.2f}",
                                   ours_naive=f"{ours_naive:.2f}", ours_chunked=f"{ours_chunked:.2f}"))
    return Verdict("pass", msg("w6.mem_ok_measured", naive=f"{naive:.2f}", chunked=f"{chunked:.2f}",
                               ours_naive=f"{ours_naive:.2f}", ours_chunked=f"{ours_chunked:.2f}"))


def _plots(folder: str, what: str) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        ok, message, figure = artifacts.compare_plots(artifacts.copies(ctx, folder), what=msg(f"w6.what.{what}"))
        return Verdict("pass" if ok else "fail", message, figure=figure)

    return CheckDef(check)


CHECKS: dict[str, CheckDef] = {
    "sdpa-output": _attention("sdpa"),
    "sdpa-bool-mask": _attention("sdpa_bool"),
    "sdpa-additive-mask": _attention("sdpa_add"),
    "sdpa-fully-masked-row": _attention("sdpa_full"),
    "sdpa-fp16": CheckDef(_finite_fp16, function="scaled_dot_product_attention", needs_reference=True),
    "causal-mask": output_check("causal", "causal_mask", {0: "mask"}, default_tol=EXACT),
    "padding-mask": output_check("padding", "padding_mask", {0: "mask"}, default_tol=EXACT, broadcast=True),
    "combined-mask": all_of(
        output_check("combine_bool", "combine_masks", {0: "bool_combination"}, default_tol=EXACT, broadcast=True),
        output_check("combine_mixed", "combine_masks", {0: "mixed_combination"}, default_tol=FP32,
                     broadcast=True)),
    "chunked": output_check("chunked", "chunked_attention", {0: "output"}, default_tol=FP32),
    "chunked-ragged": output_check("chunked_ragged", "chunked_attention", {0: "output"}, default_tol=FP32),
    "chunked-mask": output_check("chunked_mask", "chunked_attention", {0: "output"}, default_tol=FP32),
    "bonus-flash": all_of(output_check("flash", "flash_attention", {0: "causal_output"}, default_tol=FP32),
                         output_check("flash_full", "flash_attention", {0: "output"}, default_tol=FP32)),
    "bonus-sparse": all_of(output_check("local_mask", "local_attention_mask", {0: "mask"}, default_tol=EXACT),
                          output_check("sparse", "sparse_attention", {0: "output"}, default_tol=FP32)),
    "bonus-linear": output_check("linear", "linear_attention", {0: "output"}, default_tol=FP32),
    "benchmark-results": CheckDef(_benchmark_results),
    "memory-scaling": CheckDef(_memory_scaling),
    "benchmark-plot": _plots("performance_benchmark", "benchmark_plot"),
    "masking-figures": _plots("masking_techniques", "mask_images"),
    **quality_checks(FUNCTIONS),
}

SPEC = AssignmentSpec(
    id="w6-self-attention",
    make_inputs=make_inputs,
    calls=CALLS + COST_CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.self_attention",
    hidden_module="reference.hidden_checks.w6_self_attention",
)
