"""w6-self-attention: the public probe calls and checks.

Inputs are drawn from the run's seed with a private generator, so a submission cannot know them
in advance. Shapes are chosen to expose the usual bugs: a sequence length (37) that no chunk
size divides, key/query lengths that differ, fully masked rows, fp16 scores large enough that an
exp() in half precision overflows.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import torch

from grader.assignments import AssignmentSpec
from grader.i18n import msg
from grader.judge import CheckContext, CheckDef, Verdict, call_problem, output_check
from grader.judge.quality import docstring_coverage, lint
from grader.probe import ProbeCall
from grader.rubric.models import Tolerance

B, H, T, D = 2, 3, 37, 16
FP32 = Tolerance(atol=1e-4, rtol=1e-4)
FP16 = Tolerance(atol=3e-2, rtol=3e-2)
EXACT = Tolerance(atol=0.0, rtol=0.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_ARTIFACT_BYTES = 2 * 2**20


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


def _both(first: CheckDef, second: CheckDef) -> CheckDef:
    """A check that passes when both parts pass (the first failure is reported)."""

    def check(ctx: CheckContext) -> Verdict:
        for part in (first, second):
            verdict = part.fn(ctx)
            if verdict.status != "pass":
                return verdict
        return verdict

    return CheckDef(check, function=first.function, needs_reference=True)


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


# --- experiments: the artifacts the student submitted -----------------------------------------

def _deliverable(ctx: CheckContext, folder: str):
    return next((d for d in ctx.deliverables if d.name.rstrip("/") == folder), None)


def _folder(ctx: CheckContext, folder: str) -> tuple[Path | None, Verdict | None]:
    item = _deliverable(ctx, folder)
    if item is None or not item.present:
        if item is None:
            return None, Verdict("fail", msg("w6.folder_missing", folder=folder))
        return None, Verdict("fail", msg("w6.folder_problem", folder=folder, detail=item.detail))
    for candidate in ctx.submission_root.iterdir():
        if candidate.is_dir() and candidate.name.lower() == folder.lower():
            return candidate, None
    return None, Verdict("fail", msg("w6.folder_missing", folder=folder))


def _pngs(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix.lower() == ".png":
            with open(path, "rb") as handle:
                if handle.read(8) == PNG_SIGNATURE:
                    found.append(path)
    return found


def _png_check(folder_name: str, what: str) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        folder, problem = _folder(ctx, folder_name)
        if problem:
            return problem
        pngs = _pngs(folder)
        if not pngs:
            return Verdict("fail", msg("w6.no_png", folder=folder_name, what=msg(f"w6.what.{what}")))
        return Verdict("pass", msg("w6.png_found", count=len(pngs), folder=folder_name))

    return CheckDef(check)


REQUIRED_COLUMNS = ("method", "seq_len", "batch_size", "time_ms", "peak_mem_mb")


def _benchmark_rows(ctx: CheckContext) -> tuple[list[dict] | None, Verdict | None]:
    folder, problem = _folder(ctx, "performance_benchmark")
    if problem:
        return None, problem
    path = folder / "results.csv"
    if not path.is_file() or path.is_symlink():
        return None, Verdict("fail", msg("w6.csv_missing"))
    if path.stat().st_size > MAX_ARTIFACT_BYTES:
        return None, Verdict("fail", msg("w6.csv_large"))
    text = path.read_text(encoding="utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        return None, Verdict("fail", msg("w6.csv_columns", missing=", ".join(missing),
                                         needed=", ".join(REQUIRED_COLUMNS)))
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            rows.append({"method": row["method"].strip(), "seq_len": int(float(row["seq_len"])),
                         "batch_size": int(float(row["batch_size"])), "time_ms": float(row["time_ms"]),
                         "peak_mem_mb": float(row["peak_mem_mb"])})
        except (TypeError, ValueError):
            return None, Verdict("fail", msg("w6.csv_not_number", line=number))
        if not all(math.isfinite(rows[-1][c]) and rows[-1][c] >= 0 for c in ("time_ms", "peak_mem_mb")):
            return None, Verdict("fail", msg("w6.csv_negative", line=number))
    return rows, None


def _benchmark_results(ctx: CheckContext) -> Verdict:
    rows, problem = _benchmark_rows(ctx)
    if problem:
        return problem
    methods = {r["method"] for r in rows}
    if not {"naive", "chunked"} <= methods:
        return Verdict("fail", msg("w6.csv_methods", methods=", ".join(sorted(methods))))
    seq_lens = {r["seq_len"] for r in rows}
    batch_sizes = {r["batch_size"] for r in rows}
    if len(seq_lens) < 3 or len(batch_sizes) < 2:
        return Verdict("fail", msg("w6.csv_coverage", seq_lens=len(seq_lens), batch_sizes=len(batch_sizes)))
    return Verdict("pass", msg("w6.csv_ok", rows=len(rows), methods=len(methods), seq_lens=len(seq_lens),
                               batch_sizes=len(batch_sizes)))


def _memory_scaling(ctx: CheckContext) -> Verdict:
    rows, problem = _benchmark_rows(ctx)
    if problem:
        return problem

    def growth(method: str) -> float | None:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            return None
        batch = max(r["batch_size"] for r in mine)
        series = sorted((r["seq_len"], r["peak_mem_mb"]) for r in mine if r["batch_size"] == batch)
        if len(series) < 2 or series[0][1] <= 0:
            return None
        (t0, m0), (t1, m1) = series[0], series[-1]
        return math.log(m1 / m0) / math.log(t1 / t0) if m1 > 0 and t1 > t0 else None

    naive, chunked = growth("naive"), growth("chunked")
    if naive is None or chunked is None:
        return Verdict("fail", msg("w6.mem_need"))
    if not chunked < naive:
        return Verdict("fail", msg("w6.mem_not_slower", naive=f"{naive:.2f}", chunked=f"{chunked:.2f}"))
    return Verdict("pass", msg("w6.mem_ok", naive=f"{naive:.2f}", chunked=f"{chunked:.2f}"))


# --- code quality -----------------------------------------------------------------------------

def _anything_implemented(ctx: CheckContext) -> bool:
    return any(o.status == "ok" for o in ctx.probe.calls.values())


def _runs_clean(ctx: CheckContext) -> Verdict:
    execution = ctx.execution
    if execution is None:
        return Verdict("error", msg("cq.not_run"))
    own = [p for p in execution.problems if not p.in_probe]
    if own:
        first = own[0]
        where = msg("cq.in_cell", cell=first.cell) if first.cell else msg("cq.in_notebook")
        return Verdict("fail", msg("cq.not_clean", where=where, problem=first.message), cell=first.cell)
    if not _anything_implemented(ctx):
        return Verdict("fail", msg("cq.nothing"))
    return Verdict("pass", msg("cq.clean"))


def _lint(ctx: CheckContext) -> Verdict:
    if not _anything_implemented(ctx):
        return Verdict("fail", msg("cq.nothing"))
    findings = lint(ctx.notebook)
    if not findings:
        return Verdict("pass", msg("cq.lint_clean"))
    fraction = max(0.0, 1.0 - len(findings) / 5)
    shown = "; ".join(findings[:5]) + (f"; … +{len(findings) - 5}" if len(findings) > 5 else "")
    return Verdict("pass" if fraction > 0 else "fail", msg("cq.lint_findings", count=len(findings), shown=shown),
                   fraction=fraction)


def _docstrings(ctx: CheckContext) -> Verdict:
    documented, total, missing = docstring_coverage(ctx.notebook)
    if total == 0 or not _anything_implemented(ctx):
        return Verdict("fail", msg("cq.no_functions"))
    share = documented / total
    if share >= 0.9:
        return Verdict("pass", msg("cq.doc_ok", documented=documented, total=total))
    message = msg("cq.doc_missing", documented=documented, total=total, names=", ".join(missing[:8]))
    return Verdict("pass" if share >= 0.5 else "fail", message, fraction=share)


CHECKS: dict[str, CheckDef] = {
    "sdpa-output": _attention("sdpa"),
    "sdpa-bool-mask": _attention("sdpa_bool"),
    "sdpa-additive-mask": _attention("sdpa_add"),
    "sdpa-fully-masked-row": _attention("sdpa_full"),
    "sdpa-fp16": CheckDef(_finite_fp16, function="scaled_dot_product_attention", needs_reference=True),
    "causal-mask": output_check("causal", "causal_mask", {0: "mask"}, default_tol=EXACT),
    "padding-mask": output_check("padding", "padding_mask", {0: "mask"}, default_tol=EXACT, broadcast=True),
    "combined-mask": _both(
        output_check("combine_bool", "combine_masks", {0: "bool_combination"}, default_tol=EXACT, broadcast=True),
        output_check("combine_mixed", "combine_masks", {0: "mixed_combination"}, default_tol=FP32,
                     broadcast=True)),
    "chunked": output_check("chunked", "chunked_attention", {0: "output"}, default_tol=FP32),
    "chunked-ragged": output_check("chunked_ragged", "chunked_attention", {0: "output"}, default_tol=FP32),
    "chunked-mask": output_check("chunked_mask", "chunked_attention", {0: "output"}, default_tol=FP32),
    "bonus-flash": _both(output_check("flash", "flash_attention", {0: "causal_output"}, default_tol=FP32),
                         output_check("flash_full", "flash_attention", {0: "output"}, default_tol=FP32)),
    "bonus-sparse": _both(output_check("local_mask", "local_attention_mask", {0: "mask"}, default_tol=EXACT),
                          output_check("sparse", "sparse_attention", {0: "output"}, default_tol=FP32)),
    "bonus-linear": output_check("linear", "linear_attention", {0: "output"}, default_tol=FP32),
    "benchmark-results": CheckDef(_benchmark_results),
    "memory-scaling": CheckDef(_memory_scaling),
    "benchmark-plot": _png_check("performance_benchmark", "benchmark_plot"),
    "masking-figures": _png_check("masking_techniques", "mask_images"),
    "runs-clean": CheckDef(_runs_clean),
    "lint": CheckDef(_lint),
    "docstrings": CheckDef(_docstrings),
}

SPEC = AssignmentSpec(
    id="w6-self-attention",
    make_inputs=make_inputs,
    calls=CALLS,
    checks=CHECKS,
    reference_module="reference.self_attention",
    hidden_module="reference.hidden_checks.w6_self_attention",
)
