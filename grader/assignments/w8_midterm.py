"""w8-midterm: "a transformer from scratch" (100 points: basic 60 / applied 25 / analysis 15).

A submission is a folder (or a zip of one) with three parts, next to each other:

* `midterm/`: the model code, a Python package whose public names the template fixes
  (`MultiHeadAttention`, `PositionwiseFeedForward`, `EncoderLayer`, `DecoderLayer`, `Encoder`,
  `Decoder`, `Transformer`, `sinusoidal_table`, `make_src_mask`, `make_tgt_mask`, `length_penalty`,
  `NORM_FIRST`), with the w7-transformer template's parameter layout, masks and decoding rules;
* `report.ipynb`: the report notebook, which imports the package, trains a translator on DATA_DIR's
  parallel corpus (Multi30k; the generated corpus in the smoke profile) and leaves it as
  `TRANSLATOR`, and writes `applied/` and `analysis/`;
* `slides.pdf`: the talk.

Basic implementation: the probe imports the package in the notebook's kernel (a call's function
"midterm.Transformer" is imported, then the attribute) and the weekly checks of w7-transformer and
w7-positional run on it, unchanged (their factories are parameterised by names and call ids). The
declared style (`NORM_FIRST`) and the static forbidden-API analysis read the package's own `.py`
files, as if they were the notebook's cells: a class whose code reaches torch's attention or
transformer modules fails its checks, naming the call, the file and the line. The dynamic layer
(torch functions and ATen operators recorded during each call) is w7-transformer's requirement.

Applied work: the vocabularies the run wrote equal the judge's own rebuild from the training
split; the run's training loss falls; the judge translates its own held-out sentences with the
trained `TRANSLATOR` and computes BLEU (w7-transformer's check), which the run's results table must
agree with; the table has a baseline row. Analysis: attention plots drawn again by the grader's
run, an improvement experiment and a hyper-parameter table (each submitted table agrees with the
run's), the report's sections, and the slides (a PDF that opens, a sensible page count, the task
named). The quality of the report and of the talk is for a TA (manual items).
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import torch

from grader.assignments import AssignmentSpec
from grader.assignments import w7_transformer as w7t
from grader.assignments.w7_positional import sinusoidal_check
from grader.i18n import msg
from grader.judge import CheckContext, CheckDef, Verdict, artifacts, call_problem
from grader.judge.quality import lint, lint_verdict, quality_checks
from grader.judge.requirements import Forbidden
from grader.judge.static_api import find_forbidden
from grader.probe import ArtifactSpec, ProbeCall

PACKAGE = "midterm"
SLIDES = "slides.pdf"
MAX_PACKAGE_FILES = 50
MAX_PACKAGE_BYTES = 2 * 2**20
SLIDE_PAGES = (3, 40)                 # a talk of a few minutes: at least 3 pages, at most 40
TASK_WORDS = ("translation", "translate", "classification", "summarisation", "summarization",
              "번역", "분류", "요약")
# The report's sections: each must be a markdown heading holding one of these words (en or ko).
REPORT_SECTIONS = {"introduction": ("introduction", "소개", "서론"),
                   "model": ("model", "모델"),
                   "task": ("task", "과제", "응용"),
                   "results": ("result", "결과"),
                   "analysis": ("analysis", "분석"),
                   "conclusion": ("conclusion", "결론")}
BLEU_THRESHOLD = {"smoke": 15.0, "full": 20.0}   # the judge's BLEU of TRANSLATOR on its held-out sentences
LOSS_DROP = 0.7                                   # the last epoch's training loss at most this share of the first's


def dotted(name: str) -> str:
    return f"{PACKAGE}.{name}"


# --- probe calls: w7-transformer's, on the package's classes ---------------------------------------

REUSED = ("mha_self", "mha_cross", "enc_layer", "enc_layer_pre", "encode", "encode_pre", "dec_layer",
          "dec_layer_pre", "src_mask", "tgt_mask", "enc_padding", "causal", "cross_padding", "greedy", "greedy_pre",
          "greedy_one", "beam_one", "beam", "beam_pre", "beam_eos", "beam_eos_pre", "beam_lp", "lp", "bleu")
PE_LEN, PE_D = 64, 24


def _rename(call: ProbeCall) -> ProbeCall:
    return call if call.kind == "object" else dataclasses.replace(call, function=dotted(call.function))


CALLS = [_rename(c) for c in w7t.CALLS if c.id in REUSED] + [
    ProbeCall("pe", dotted("sinusoidal_table"), kwargs={"max_len": PE_LEN, "d_model": PE_D}),
    # the trained model's cross-attention on the first test sentence, teacher-forced: the judge's redraw
    ProbeCall("attention_map", "TRANSLATOR", ("attn_src", "attn_tgt"), kind="object", method="cross_attention")]
_NEEDED_INPUTS = sorted({name for c in CALLS for name in (*c.args, *c.tensor_kwargs.values(),
                                                           *(c.state or {}).values(), *(c.backward or {}).get("weights", {}).values(),
                                                           *(n for v in c.perturb for n in (*v.get("args", ()), *v.get("tensor_kwargs", {}).values())))}
                        | {"bleu_index"})


def make_inputs(seed: int, data_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """w7-transformer's inputs (the judge's weights, token ids, held-out sentences), only those the
    midterm's calls use."""
    inputs = w7t.make_inputs(seed, data_dir=data_dir)
    inputs = {k: v for k, v in inputs.items() if k in _NEEDED_INPUTS}
    src, tgt_in = w7t._with_data(data_dir, _first_test_sentence)
    inputs.update({"attn_src": src, "attn_tgt": tgt_in})
    return inputs


def _first_test_sentence(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(source ids (1, S), decoder input [BOS] + reference ids (1, T)) of the test split's first pair,
    in the template's vocabularies."""
    from grader.data import read_parallel

    english, german = w7t.vocabularies(str(data_dir))
    source, reference = read_parallel(Path(data_dir), w7t.TEST_SPLIT)[0]
    src = w7t.encode(source, {w: i for i, w in enumerate(english)})
    tgt = w7t.encode(reference, {w: i for i, w in enumerate(german)})[:-1]
    return torch.tensor([src]), torch.tensor([tgt])


# --- the package, read as plain text (never imported in the grader's process) -----------------------

def package_files(root: Path) -> list[tuple[str, str]] | None:
    """[(path relative to the submission, source)] of the package's .py files, sorted; None when
    there is no package folder."""
    folder = Path(root) / PACKAGE
    if not folder.is_dir() or folder.is_symlink():
        return None
    found, total = [], 0
    for path in sorted(p for p in folder.rglob("*.py") if p.is_file() and not p.is_symlink())[:MAX_PACKAGE_FILES]:
        data = path.read_bytes()
        total += len(data)
        if total > MAX_PACKAGE_BYTES:
            break
        found.append((path.relative_to(root).as_posix(), data.decode("utf-8", errors="replace")))
    return found


def package_notebook(files: list[tuple[str, str]]) -> dict:
    """The package's files as the code cells of a notebook (one file a cell, in order), for the
    checks that read source: the declared style, the forbidden-API analysis, lint and docstrings."""
    cells = [{"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}
             for _, source in files]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _bare(function: str) -> str:
    return function.split(".", 1)[1] if function.startswith(PACKAGE + ".") else function


def on_package(check: CheckDef) -> CheckDef:
    """`check`, judged on the package's code instead of the notebook's (its functions' forbidden
    APIs first: a class that reaches torch's attention or transformer modules fails, naming where)."""

    def run(ctx: CheckContext) -> Verdict:
        files = package_files(ctx.submission_root)
        if not files:
            return Verdict("fail", msg("w8.package_missing", package=PACKAGE))
        notebook = package_notebook(files)
        roots = [_bare(f) for f in check.functions if f != "TRANSLATOR"]
        if roots:
            uses = find_forbidden(notebook, roots, w7t.TRANSFORMER_APIS)
            if uses:
                first = uses[0]
                where = files[first.cell - 1][0] if first.cell and 0 < first.cell <= len(files) else PACKAGE
                return Verdict("fail", msg("w8.forbidden", function=dotted(first.root), api=first.resolved,
                                           file=where, line=first.line, code=first.code))
        return check.fn(dataclasses.replace(ctx, notebook=notebook))

    return CheckDef(run, function=check.function, needs_reference=check.needs_reference, also=check.also,
                    proportional=check.proportional)


# --- basic implementation: the weekly checks on the package's classes --------------------------------

MHA, ENC, DEC, MODEL = (dotted(n) for n in (w7t.MHA, w7t.ENC, w7t.DEC, w7t.MODEL))


def _styled_module(call_id: str, class_name: str, outputs: dict[int, str], **kwargs) -> CheckDef:
    return w7t.styled_check(w7t.exact_module_check((call_id,), class_name, outputs, **kwargs),
                            w7t.exact_module_check((call_id + "_pre",), class_name, outputs, **kwargs))


def _styled(factory, call_id: str, *args, **kwargs) -> CheckDef:
    return w7t.styled_check(factory(call_id, *args, **kwargs), factory(call_id + "_pre", *args, **kwargs))


BASIC: dict[str, CheckDef] = {
    "mha": w7t._all(w7t.exact_module_check(("mha_self",), MHA, {0: "output", 1: "weights"}, grads=True,
                                           maps={1: w7t.CAUSAL_MASK}),
                    w7t.exact_module_check(("mha_cross",), MHA, {0: "output", 1: "weights"}, grads=True,
                                           maps={1: w7t.SOURCE_MASK})),
    "positional-encoding": sinusoidal_check("pe", dotted("sinusoidal_table"), PE_LEN, PE_D),
    "encoder-layer": w7t._all(_styled_module("enc_layer", ENC, {0: "output", 1: "weights"}, grads=True),
                              _styled_module("encode", MODEL, {0: "w7t_memory"})),
    "decoder-layer": _styled_module("dec_layer", DEC, {0: "output", 1: "w7t_self_weights", 2: "w7t_cross_weights"},
                                    grads=True),
    "encoder-padding": w7t._all(w7t.output_compare("src_mask", dotted("make_src_mask"), {0: "mask"},
                                                   default_tol=w7t.EXACT, broadcast=True),
                                w7t.padding_check("enc_padding", MODEL, source="src_padded", more="src_more_padding")),
    "decoder-causal": w7t._all(w7t.output_compare("tgt_mask", dotted("make_tgt_mask"), {0: "mask"},
                                                  default_tol=w7t.EXACT, broadcast=True),
                               w7t.dependence_check("causal", MODEL, causal=True, what="w7t_logits")),
    "cross-attention-mask": w7t.cross_padding_check("cross_padding", DEC),
    "greedy": _styled(w7t.decode_check, "greedy", MODEL),
    "beam-greedy": w7t.beam_greedy_check("beam_one", "greedy_one", MODEL),
    "beam-search": _styled(w7t.decode_check, "beam", MODEL, method="beam_search", scores=True),
    "beam-eos": _styled(w7t.beam_eos_check, "beam_eos", MODEL),
    "length-penalty": w7t.length_penalty_check("beam_lp", "lp", MODEL),
}
CLASSES = tuple(dotted(n) for n in (w7t.MHA, w7t.FFN, w7t.ENC, w7t.DEC, "Encoder", "Decoder", w7t.MODEL))
FUNCTIONS = ("MultiHeadAttention", "PositionwiseFeedForward", "EncoderLayer", "DecoderLayer", "Encoder", "Decoder",
             "Transformer", "sinusoidal_table", "make_src_mask", "make_tgt_mask", "length_penalty")
# The dynamic layer (what a call ran) on the package's classes; the static one is on_package's.
REQUIREMENTS = [Forbidden("own-implementation", CLASSES, w7t.TRANSFORMER_APIS, w7t.TRANSFORMER_OPS,
                          "w7t.what.transformer")]


# --- applied work: the translation task ----------------------------------------------------------------

ARTIFACTS = ArtifactSpec(folders=("applied", "analysis"))
TRAINING_COLUMNS = {"epoch": int, "train_loss": float}
RESULTS_COLUMNS = {"system": str, "bleu": float}
IMPROVEMENT_COLUMNS = {"variant": str, "bleu": float}
HYPER_COLUMNS = {"name": str, "d_model": int, "n_heads": int, "n_layers": int, "d_ff": int, "epochs": int,
                 "bleu": float}


def _produced_table(ctx: CheckContext, path: str, columns: dict) -> tuple[list[dict] | None, Verdict | None]:
    folder, _, file = path.partition("/")
    rows, problem = artifacts.read_table(artifacts.copies(ctx, folder).produced.get(file), columns, name=path)
    if problem:
        return None, Verdict("fail", msg("art.run_did_not_write", name=path, detail=problem))
    return rows, None


def _both_tables(ctx: CheckContext, path: str, columns: dict, keys: tuple[str, ...], column: str,
                 tolerance: float) -> tuple[list[dict] | None, list[dict] | None, Verdict | None]:
    """(submitted rows, the run's rows, None) when the submitted table agrees with the run's: the same
    rows by `keys` and `column` within `tolerance`; else the verdict saying what differs."""
    folder, _, file = path.partition("/")
    mine, ours, problem = w7t._tables(ctx, folder, file, columns, path)
    if problem:
        return None, None, problem
    differs = w7t._close(mine, ours, keys, column, tolerance, path)
    if differs:
        return None, None, Verdict("fail", differs)
    return mine, ours, None


def _vocabulary(ctx: CheckContext) -> Verdict:
    """applied/vocab.en.txt and vocab.de.txt (one token a line) as the run wrote them equal the
    template's vocabularies rebuilt by the judge from DATA_DIR's training split."""
    if ctx.data_dir is None:
        return Verdict("error", msg("w7t.no_data"))
    english, german = w7t.vocabularies(str(ctx.data_dir))
    produced = artifacts.copies(ctx, "applied").produced
    for name, wanted in (("vocab.en.txt", english), ("vocab.de.txt", german)):
        data = produced.get(name)
        if data is None:
            return Verdict("fail", msg("w8.vocab_missing", name=f"applied/{name}"))
        tokens = data.decode("utf-8", errors="replace").splitlines()
        if tokens != wanted:
            k = next((i for i, (a, b) in enumerate(zip(tokens, wanted)) if a != b), min(len(tokens), len(wanted)))
            return Verdict("fail", msg("w8.vocab_differs", name=f"applied/{name}", size=len(tokens), wanted=len(wanted),
                                       index=k, got=tokens[k][:40] if k < len(tokens) else "-",
                                       expected=wanted[k][:40] if k < len(wanted) else "-"))
    return Verdict("pass", msg("w8.vocab_ok", en=len(english), de=len(german)))


def _training(ctx: CheckContext) -> Verdict:
    """The run's training log: at least two epochs, and the last loss at most LOSS_DROP of the first."""
    ours, problem = _produced_table(ctx, "applied/training_log.csv", TRAINING_COLUMNS)
    if problem:
        return problem
    losses = [r["train_loss"] for r in sorted(ours, key=lambda r: r["epoch"])]
    if len(losses) < 2 or not all(math.isfinite(v) for v in losses):
        return Verdict("fail", msg("w8.training_short", rows=len(losses)))
    if losses[-1] > LOSS_DROP * losses[0]:
        return Verdict("fail", msg("w8.loss_flat", first=f"{losses[0]:.3f}", last=f"{losses[-1]:.3f}",
                                   share=f"{LOSS_DROP:g}"))
    return Verdict("pass", msg("w8.loss_falls", first=f"{losses[0]:.3f}", last=f"{losses[-1]:.3f}", epochs=len(losses)))


RESULTS = "applied/results.csv"


def _evaluation(ctx: CheckContext) -> Verdict:
    """The judge's BLEU of TRANSLATOR on its own held-out sentences reaches the threshold, and the
    run's results table reports the same figure for the transformer."""
    verdict = w7t.bleu_check("bleu", model="TRANSLATOR", thresholds=BLEU_THRESHOLD).fn(ctx)
    if verdict.status != "pass":
        return verdict
    measured, _ = w7t.judge_bleu(ctx)
    ours, problem = _produced_table(ctx, RESULTS, RESULTS_COLUMNS)
    if problem:
        return problem
    claimed = next((r["bleu"] for r in ours if r["system"] == "transformer"), None)
    if claimed is None:
        return Verdict("fail", msg("w8.results_row", name=RESULTS, system="transformer"))
    if abs(claimed - measured["bleu"]) > w7t.BLEU_AGREEMENT:
        return Verdict("fail", msg("w7t.metrics_contradict", claimed=f"{claimed:.2f}", measured=f"{measured['bleu']:.2f}",
                                   n=measured["sentences"]))
    return verdict


def _baseline(ctx: CheckContext) -> Verdict:
    """The results table (submitted, agreeing with the run's) has a `baseline` row beside the
    transformer's."""
    mine, _, problem = _both_tables(ctx, RESULTS, RESULTS_COLUMNS, ("system",), "bleu", w7t.BLEU_BETWEEN_RUNS)
    if problem:
        return problem
    systems = {r["system"]: r["bleu"] for r in mine}
    for system in ("baseline", "transformer"):
        if system not in systems:
            return Verdict("fail", msg("w8.results_row", name=RESULTS, system=system))
    return Verdict("pass", msg("w8.baseline_ok", baseline=f"{systems['baseline']:.1f}",
                               transformer=f"{systems['transformer']:.1f}"))


APPLIED: dict[str, CheckDef] = {
    "preprocessing": CheckDef(_vocabulary),
    "training": CheckDef(_training),
    "evaluation": CheckDef(_evaluation, function="TRANSLATOR"),
    "baseline": CheckDef(_baseline),
}


# --- analysis ----------------------------------------------------------------------------------------------

MAP_CSV = "analysis/cross_attention.csv"
MAP_ATOL = 1e-4


def _attention_plots(ctx: CheckContext) -> Verdict:
    """The plots are real and drawn again by the grader's run; the map the run saved (MAP_CSV) is
    the trained model's: the judge redraws it with TRANSLATOR.cross_attention on the same sentence."""
    copies = artifacts.copies(ctx, "analysis")
    ok, message, figure = artifacts.compare_plots(copies, what=msg("w8.what.attention"))
    if not ok:
        return Verdict("fail", message, figure=figure)
    data = copies.produced.get(MAP_CSV.partition("/")[2])
    try:
        rows = [[float(v) for v in line.split(",")] for line in (data or b"").decode("utf-8").splitlines() if line]
        drawn = torch.tensor(rows, dtype=torch.float64) if rows else None
    except (ValueError, UnicodeDecodeError):
        drawn = None
    if drawn is None or drawn.ndim != 2:
        return Verdict("fail", msg("w8.map_csv", name=MAP_CSV))
    outcome = ctx.call("attention_map")
    problem = call_problem(outcome, "TRANSLATOR.cross_attention", ctx.probe)
    if problem:
        return problem
    weights = outcome.outputs[0] if outcome.outputs else None
    if weights is None or weights.ndim != 4 or weights.shape[0] != 1:
        return Verdict("fail", msg("w8.map_shape", shape=tuple(weights.shape) if weights is not None else None))
    redrawn = weights[0].double().mean(0)                                   # (H, T, S) -> (T, S)
    pair = (drawn.float().numpy(), redrawn.float().numpy())
    if redrawn.shape != drawn.shape or not torch.allclose(drawn, redrawn, atol=MAP_ATOL, rtol=0.0):
        return Verdict("fail", msg("w8.map_differs", name=MAP_CSV, shape=tuple(drawn.shape),
                                   wanted=tuple(redrawn.shape)), figure=pair)
    return Verdict("pass", msg("w8.map_ok", detail=message, shape=tuple(drawn.shape)))


def _improvement(ctx: CheckContext) -> Verdict:
    mine, _, problem = _both_tables(ctx, "analysis/improvement.csv", IMPROVEMENT_COLUMNS, ("variant",), "bleu",
                                    w7t.BLEU_BETWEEN_RUNS)
    if problem:
        return problem
    if len(mine) < 2:
        return Verdict("fail", msg("w8.improvement_rows", rows=len(mine)))
    return Verdict("pass", msg("w8.improvement_ok", rows=", ".join(f"{r['variant']} {r['bleu']:.1f}" for r in mine)))


def _hyperparameters(ctx: CheckContext) -> Verdict:
    mine, _, problem = _both_tables(ctx, "analysis/hyperparameters.csv", HYPER_COLUMNS, ("name",), "bleu",
                                    w7t.BLEU_BETWEEN_RUNS)
    if problem:
        return problem
    if len(mine) < 2:
        return Verdict("fail", msg("w8.hyper_rows", rows=len(mine)))
    return Verdict("pass", msg("w8.hyper_ok", rows=len(mine)))


def _headings(notebook: dict) -> list[str]:
    found = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        found += [line.lstrip("#").strip().lower() for line in source.splitlines() if line.startswith("#")]
    return found


def _sections(ctx: CheckContext) -> Verdict:
    headings = _headings(ctx.notebook)
    missing = [name for name, words in REPORT_SECTIONS.items()
               if not any(word in heading for heading in headings for word in words)]
    if missing:
        return Verdict("fail", msg("w8.sections_missing", missing=", ".join(missing)))
    return Verdict("pass", msg("w8.sections_ok", count=len(REPORT_SECTIONS)))


def _slides(ctx: CheckContext) -> Verdict:
    """slides.pdf opens as a PDF, has SLIDE_PAGES pages and names the task."""
    path = next((p for p in Path(ctx.submission_root).iterdir()
                 if p.is_file() and p.name.casefold() == SLIDES.casefold()), None)
    if path is None:
        return Verdict("fail", msg("w8.slides_missing", name=SLIDES))
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(path.read_bytes()))
        pages = len(reader.pages)
        text = " ".join((page.extract_text() or "") for page in reader.pages[:SLIDE_PAGES[1]]).lower()
    except Exception as exc:  # noqa: BLE001 - a broken PDF is the student's failure, reported as such
        return Verdict("fail", msg("w8.slides_unreadable", name=SLIDES, reason=f"{type(exc).__name__}"))
    low, high = SLIDE_PAGES
    if not low <= pages <= high:
        return Verdict("fail", msg("w8.slides_pages", name=SLIDES, pages=pages, low=low, high=high))
    if not any(word in text for word in TASK_WORDS):
        return Verdict("fail", msg("w8.slides_task", name=SLIDES, words=", ".join(TASK_WORDS[:5])))
    return Verdict("pass", msg("w8.slides_ok", name=SLIDES, pages=pages))


ANALYSIS: dict[str, CheckDef] = {
    "attention-plots": CheckDef(_attention_plots, function="TRANSLATOR"),
    "improvement": CheckDef(_improvement),
    "hyperparameters": CheckDef(_hyperparameters),
    "report-sections": CheckDef(_sections),
    "slides": CheckDef(_slides),
}

def _package_lint(ctx: CheckContext) -> Verdict:
    """pyflakes on each of the package's files by itself (as Python imports them: a file is a module,
    not a cell of one long notebook), scored as the notebooks' lint is."""
    files = package_files(ctx.submission_root)
    if not files:
        return Verdict("fail", msg("w8.package_missing", package=PACKAGE))
    if not any(o.status == "ok" for o in ctx.probe.calls.values()):
        return Verdict("fail", msg("cq.nothing"))
    findings = [f"{name}, {finding.removeprefix('cell 1, ')}" for name, source in files
                for finding in lint(package_notebook([(name, source)]))]
    return lint_verdict(findings)


CHECKS: dict[str, CheckDef] = {
    **{k: on_package(v) for k, v in BASIC.items()},
    **APPLIED,
    **ANALYSIS,
    **{k: on_package(v) for k, v in quality_checks(FUNCTIONS).items()},
    "lint": CheckDef(_package_lint, proportional=True),
}

SPEC = AssignmentSpec(
    id="w8-midterm",
    make_inputs=make_inputs,
    calls=CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.midterm",
    hidden_module="reference.hidden_checks.w8_midterm",
)
