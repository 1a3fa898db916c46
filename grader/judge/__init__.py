"""Judge stage: decide every rubric item, in the grader's own process.

Expected values are computed here, from the grader's own copy of the inputs (live reference code
where the staff's `reference/` package is importable, stored expected outputs otherwise), and
compared with what the probe brought out of the sandbox. Nothing the student's code did inside
the sandbox can reach this code except as plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from grader.i18n import Message, msg, render
from grader.probe import CallOutcome, ProbeReport
from grader.rubric.models import CheckItem, ManualItem, QuestionItem, Rubric, Tolerance
from grader.sandbox import ExecutionResult


@dataclass
class Verdict:
    status: str                 # pass | fail | error | pending
    message: Message | str = ""  # rendered in the reader's language by judge()
    fraction: float = 1.0       # share of the item's points earned when status is pass (partial credit)
    cell: int | None = None
    figure: tuple | None = None  # (student's 2-D slice, expected 2-D slice[, kind of axes]) for a failure


@dataclass
class CheckContext:
    """Everything a check may look at. All of it is plain data held by the grader."""

    notebook: dict                              # the notebook as submitted (not the executed copy)
    submission_root: Path                       # the private working copy of the submission
    deliverables: list                          # intake's Deliverable list
    execution: ExecutionResult | None
    probe: ProbeReport
    inputs: dict[str, torch.Tensor]             # the grader's own copy of the probe's inputs
    expected: dict[str, list[torch.Tensor | None]] | None  # per call id; None: no reference here
    tolerance: Tolerance | None = None
    function_cells: dict[str, int] = field(default_factory=dict)  # function name -> cell number
    calls: list = field(default_factory=list)                     # the probe's plan (ProbeCall list)
    requirements: dict = field(default_factory=dict)              # (requirement id, function) -> Outcome
    measured: dict = field(default_factory=dict)                  # id -> figures, for checks to quote
    profile: str = "smoke"                                        # rubric thresholds may differ per profile
    data_dir: Path | None = None                                  # the run's DATA_DIR (the judge's own reads)

    def call(self, call_id: str) -> CallOutcome:
        return self.probe.calls.get(call_id, CallOutcome("not_run"))

    def calls_of(self, function: str) -> list[CallOutcome]:
        """Outcomes of every probe call of `function` (public, measuring and hidden)."""
        return [self.call(c.id) for c in self.calls if c.function == function]


CheckFn = Callable[[CheckContext], Verdict]


@dataclass(frozen=True)
class CheckDef:
    fn: CheckFn
    function: str | None = None        # the student function this check exercises (for the cell)
    needs_reference: bool = False      # needs expected values (live reference or stored)
    also: tuple[str, ...] = ()         # other functions it exercises (their requirements gate it too)
    proportional: bool = False         # code quality: scaled by the share of the implementation that works

    @property
    def functions(self) -> tuple[str, ...]:
        return ((self.function,) if self.function else ()) + self.also


# --- messages for calls that did not produce outputs ------------------------------------------

def call_problem(outcome: CallOutcome, function: str, probe: ProbeReport) -> Verdict | None:
    """A verdict when the call itself did not return normally, else None."""
    if outcome.status == "ok":
        return None
    if outcome.status == "not_implemented":
        return Verdict("fail", msg("check.not_implemented", function=function))
    if outcome.status == "missing":
        return Verdict("fail", msg("check.missing", function=function))
    if outcome.status == "timeout":
        return Verdict("fail", msg("check.call_timeout", function=function))
    if outcome.status == "error":
        where = ""
        if outcome.where:
            where = msg("check.raised_where", function=str(outcome.where.get("function")),
                        line=outcome.where.get("line"), code=str(outcome.where.get("code", "")).strip())
        return Verdict("fail", msg("check.raised", function=function, error=outcome.message, where=where))
    reason = probe.problem or msg("probe.not_reached")
    return Verdict("error", msg("check.not_tested", function=function, reason=reason))


def describe_shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def compare_tensors(actual: torch.Tensor | None, expected: torch.Tensor, tol: Tolerance, what: Message | str,
                    *, broadcast: bool = False) -> Message | None:
    """None when `actual` matches `expected` within tolerance, else a message saying how it differs."""
    if actual is None:
        return msg("compare.no_tensor", what=what)
    if broadcast and actual.shape != expected.shape:
        try:
            actual = torch.broadcast_to(actual, expected.shape)
        except RuntimeError:
            return msg("compare.no_broadcast", what=what, shape=describe_shape(actual),
                       expected=describe_shape(expected))
    if actual.shape != expected.shape:
        return msg("compare.shape", what=what, shape=describe_shape(actual), expected=describe_shape(expected))
    if expected.dtype == torch.bool:
        if actual.dtype != torch.bool:
            return msg("compare.not_bool", what=what, dtype=str(actual.dtype).replace("torch.", ""))
        wrong = (actual != expected).nonzero()
        if len(wrong):
            index = tuple(wrong[0].tolist())
            return msg("compare.mask_differs", what=what, count=len(wrong), total=expected.numel(), index=index,
                       got=bool(actual[index]), expected=bool(expected[index]))
        return None
    if actual.is_complex() or actual.dtype == torch.bool:
        return msg("compare.not_float", what=what, dtype=str(actual.dtype).replace("torch.", ""))
    a, e = actual.double(), expected.double()
    nan = torch.isnan(a) & ~torch.isnan(e)
    if nan.any():
        return msg("compare.nan", what=what, count=int(nan.sum()), index=tuple(nan.nonzero()[0].tolist()))
    inf_mismatch = torch.isinf(a) != torch.isinf(e)
    if inf_mismatch.any():
        index = tuple(inf_mismatch.nonzero()[0].tolist())
        return msg("compare.inf", what=what, count=int(inf_mismatch.sum()), index=index)
    finite = torch.isfinite(e)
    if (torch.isinf(e) & (torch.sign(a) != torch.sign(e))).any():
        return msg("compare.inf_sign", what=what)
    diff = torch.where(finite, (a - e).abs(), torch.zeros_like(a))
    allowed = tol.atol + tol.rtol * e.abs()
    bad = (diff > allowed) & finite
    if bad.any():
        worst = int(torch.argmax(torch.where(bad, diff, torch.zeros_like(diff))))
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), e.shape))
        return msg("compare.values", what=what, count=int(bad.sum()), total=e.numel(),
                   diff=f"{float(diff[index]):.3g}", index=index, got=f"{float(a[index]):.5g}",
                   expected=f"{float(e[index]):.5g}", atol=f"{tol.atol:g}", rtol=f"{tol.rtol:g}")
    return None


# The picture's axes by the name of the output it shows (grader.report.figures.AXES).
FIGURE_KINDS = {"weights": "attention", "mask": "attention", "causal_output": "attention",
                "bool_combination": "attention", "mixed_combination": "attention",
                "w6m_maps": "attention", "w7t_self_weights": "attention", "w7t_cross_weights": "attention",
                "w7p_encoding": "encoding"}


def _figure(actual: torch.Tensor | None, expected: torch.Tensor, kind: str = "matrix") -> tuple | None:
    from grader.report.figures import slice_2d

    pair = (slice_2d(actual), slice_2d(expected))
    return (*pair, kind) if pair[0] is not None and pair[1] is not None else None


def warm_static(notebook: dict, requirements: list, *, submission_root: Path | None = None,
                artifacts=None) -> None:
    """Ask now what the judge will ask of the submission alone (the static layer of the
    requirements, lint, docstrings, the submitted plots): the answers are remembered, and the
    pipeline calls this while the notebook runs, so that judging after the run does not wait."""
    from grader.judge import artifacts as artifact_files
    from grader.judge.quality import docstring_coverage, lint
    from grader.judge.requirements import forbidden_scope
    from grader.judge.static_api import find_forbidden

    roots, apis = forbidden_scope(requirements or [])
    if roots and apis:
        find_forbidden(notebook, roots, apis)
    lint(notebook)
    docstring_coverage(notebook)
    if submission_root is not None and artifacts is not None:
        for folder in artifacts.folders:
            for data in (artifact_files.submitted_files(submission_root, folder, (".png",)) or {}).values():
                artifact_files.inspect_png(data)


def output_check(call_id: str, function: str, outputs: dict[int, str], *, default_tol: Tolerance,
                 broadcast: bool = False, n_outputs: int | None = None) -> CheckDef:
    """A check that compares outputs `{index: name}` of one call with the expected values."""

    def what(name: str) -> Message:
        return msg("compare.what", name=msg(f"name.{name}"), function=function)

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        problem = call_problem(outcome, function, ctx.probe)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        if n_outputs is not None and len(outcome.outputs) != n_outputs:
            return Verdict("fail", msg("check.n_outputs", function=function, count=len(outcome.outputs),
                                       expected=n_outputs))
        tol = ctx.tolerance or default_tol
        for index, name in outputs.items():
            actual = outcome.outputs[index] if index < len(outcome.outputs) else None
            if actual is None and index < len(outcome.types):
                return Verdict("fail", msg("check.not_a_tensor", what=what(name), type=outcome.types[index]))
            message = compare_tensors(actual, ctx.expected[call_id][index], tol, what(name), broadcast=broadcast)
            if message:
                # The picture shows the last output when there are several: for attention that is
                # the weights, whose pattern says more than the output's numbers.
                shown = max(outputs)
                pictured = outcome.outputs[shown] if shown < len(outcome.outputs) else actual
                return Verdict("fail", message, figure=_figure(pictured, ctx.expected[call_id][shown],
                                                               FIGURE_KINDS.get(outputs[shown], "matrix")))
        return Verdict("pass", msg("check.matches", function=function))

    return CheckDef(check, function=function, needs_reference=True)


def module_check(call_id: str, class_name: str, outputs: dict[int, str], *, default_tol: Tolerance,
                 grads: bool = False, variants: bool = False) -> CheckDef:
    """A check of a module call (ProbeCall kind "module"): the outputs `{index: name}`, and with
    `grads` the gradients with respect to the inputs and every parameter, and with `variants` the
    outputs on the perturbed inputs, each compared with the reference module run with the same
    parameters on the same inputs. Parameter-loading problems are reported as they are
    ("parameter fc1.weight: expected shape (8, 4), yours (4, 8)")."""

    def what(name: str) -> Message:
        return msg("compare.what", name=msg(f"name.{name}"), function=class_name)

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        if outcome.status == "state":
            return Verdict("fail", msg("check.module_state", function=class_name,
                                       problems="; ".join(outcome.problems[:4]) or outcome.message))
        problem = call_problem(outcome, class_name, ctx.probe)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", msg("check.pending_no_reference"))
        tol = ctx.tolerance or default_tol
        for index, name in outputs.items():
            actual = outcome.outputs[index] if index < len(outcome.outputs) else None
            if actual is None and index < len(outcome.types):
                return Verdict("fail", msg("check.not_a_tensor", what=what(name), type=outcome.types[index]))
            message = compare_tensors(actual, ctx.expected[call_id][index], tol, what(name))
            if message:
                return Verdict("fail", message, figure=_figure(actual, ctx.expected[call_id][index],
                                                               FIGURE_KINDS.get(name, "matrix")))
        if grads:
            wanted = sorted(key[len(call_id) + 6:] for key in ctx.expected if key.startswith(f"{call_id}/grad/"))
            for name in wanted:
                expected = ctx.expected[f"{call_id}/grad/{name}"][0]
                label = msg("compare.grad_of", name=name.replace("param/", ""), function=class_name)
                message = compare_tensors(outcome.grads.get(name), expected, tol, label)
                if message:
                    return Verdict("fail", message)
        if variants:
            for j, values in enumerate(outcome.variants):
                for index, name in outputs.items():
                    expected = ctx.expected.get(f"{call_id}/p{j}", [None])[index]
                    if expected is None:
                        continue
                    actual = values[index] if index < len(values) else None
                    message = compare_tensors(actual, expected, tol, what(name))
                    if message:
                        return Verdict("fail", message)
        return Verdict("pass", msg("check.matches", function=class_name))

    return CheckDef(check, function=class_name, needs_reference=True)


def all_of(*parts: CheckDef, report: str = "last") -> CheckDef:
    """A check that passes when every part passes. The first failure is the verdict; when all
    pass, the message is the last part's (`report="first"`: the first part's, the main case).
    The requirements of every part's functions gate it."""

    def check(ctx: CheckContext) -> Verdict:
        verdicts = []
        for part in parts:
            verdicts.append(part.fn(ctx))
            if verdicts[-1].status != "pass":
                return verdicts[-1]
        return verdicts[0] if report == "first" else verdicts[-1]

    functions = tuple(dict.fromkeys(f for p in parts for f in p.functions))
    return CheckDef(check, function=functions[0] if functions else None,
                    needs_reference=any(p.needs_reference for p in parts), also=functions[1:])


# --- the judge's entry point ------------------------------------------------------------------

def _quote(value) -> str:
    """A student's value, quoted short: messages never carry long student-controlled text."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _theory_answer(item: QuestionItem, answers: dict | None, keys: dict | None) -> Verdict:
    key = item.question.key
    if answers is None:
        return Verdict("fail", msg("answer.no_dict"))
    if key not in answers or answers[key] is None:
        return Verdict("fail", msg("answer.missing", key=key))
    if keys is None or key not in keys:
        return Verdict("pending", msg("answer.pending"))
    given, correct = answers[key], keys[key]
    if item.question.type == "number":
        try:
            value = float(given)
        except (TypeError, ValueError):
            return Verdict("fail", msg("answer.not_number", key=key, given=_quote(given)))
        if not math.isfinite(value) or abs(value - float(correct)) > item.question.tolerance:
            return Verdict("fail", msg("answer.wrong", key=key, given=_quote(given)))
        return Verdict("pass", msg("answer.correct"))
    choice = str(given).strip().lower().rstrip(")").lstrip("(")
    if choice not in [o.lower() for o in item.question.options]:
        return Verdict("fail", msg("answer.choose", key=key, given=_quote(given), options=", ".join(item.question.options)))
    if choice != str(correct).lower():
        return Verdict("fail", msg("answer.wrong", key=key, given=_quote(given)))
    return Verdict("pass", msg("answer.correct"))


def tagged_answer(notebook: dict, tag: str) -> str | None:
    """The text of the markdown cell(s) tagged `tag` (free-text answers)."""
    texts = []
    for cell in notebook.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if isinstance(tags, list) and tag in tags:
            source = cell.get("source", "")
            texts.append("".join(source) if isinstance(source, list) else str(source))
    return "\n\n".join(texts) if texts else None


def judge(rubric: Rubric, checks: dict[str, CheckDef], ctx: CheckContext, *,
          answer_keys: dict | None, lang: str = "en", requirements: list | None = None) -> list[dict]:
    """One result.json check entry per rubric item, in rubric order, with messages, titles and
    hints in `lang`. `requirements` (the spec's) gate the checks of the functions they cover."""
    from grader.judge import requirements as req

    if requirements:
        ctx.requirements = req.evaluate(requirements, ctx)
    results = []
    proportional: list[int] = []
    for item in rubric.items:
        cell = None
        answer = None
        measured = None
        if isinstance(item, CheckItem):
            definition = checks.get(item.check)
            if definition is None:
                verdict = Verdict("pending", msg("check.pending_hidden")) if item.visibility == "hidden" \
                    else Verdict("error", msg("check.unknown", check=item.check))
            else:
                ctx.tolerance = item.tolerance
                try:
                    verdict = definition.fn(ctx)
                except Exception as exc:  # noqa: BLE001 - a broken check must not sink the others
                    verdict = Verdict("error", msg("check.crashed", error=f"{type(exc).__name__}: {exc}"))
                ctx.tolerance = None
                if definition.functions and ctx.requirements:
                    verdict, measured = req.gate(verdict, definition.functions, ctx.requirements)
                if definition.proportional:
                    proportional.append(len(results))
                if definition.function:
                    cell = ctx.function_cells.get(definition.function)
        elif isinstance(item, QuestionItem):
            verdict = _theory_answer(item, ctx.probe.answers, answer_keys)
        else:
            assert isinstance(item, ManualItem)
            answer = tagged_answer(ctx.notebook, item.answer_tag)
            verdict = Verdict("pending", msg("manual.pending") if answer and answer.strip()
                              else msg("manual.no_answer", tag=item.answer_tag))
        earned = round(item.points * max(0.0, min(1.0, verdict.fraction)), 4) if verdict.status == "pass" else 0.0
        hidden = item.visibility == "hidden"
        results.append({
            "id": item.id,
            "title": render(item.title, lang),
            "criterion": item.criterion,
            "status": verdict.status,
            "score": earned,
            "max_score": item.points,
            "visibility": item.visibility,
            "bonus": item.bonus,
            # Hidden checks show their name and verdict only: their inputs and expected values
            # would tell a student what to special-case.
            "message": "" if hidden else render(verdict.message, lang),
            "hint": "" if hidden or verdict.status == "pass" else render(item.hint, lang),
            "cell": None if hidden else (verdict.cell or cell),
            "answer": answer,
            # What the grader measured to judge how the work was done (requirements); never for hidden checks.
            "measured": None if hidden or not measured else measured,
            # The rubric's guidance is for TAs (`grade review` reads it from the rubric): a
            # result.json goes to the student, so it never carries it.
            "guidance": None,
            # drawn by the pipeline (it knows where the report goes); never for hidden checks
            "_figure": None if hidden or verdict.status == "pass" else verdict.figure,
        })
    _scale_by_implementation(rubric, results, proportional, lang)
    return results


def implementation_share(rubric: Rubric, results: list[dict]) -> tuple[float, float]:
    """(earned, possible) automatic implementation points, bonus left out. Items still pending
    (hidden checks without the staff's files, a requirement for a TA) are left out of both."""
    by_id = {r["id"]: r for r in results}
    earned = possible = 0.0
    for item in rubric.items:
        entry = by_id.get(item.id)
        if entry is None or item.criterion != "implementation" or item.bonus or isinstance(item, ManualItem):
            continue
        if entry["status"] == "pending":
            continue
        earned += entry["score"]
        possible += entry["max_score"]
    return earned, possible


def _scale_by_implementation(rubric: Rubric, results: list[dict], indices: list[int], lang: str) -> None:
    """Code quality in proportion to the work: lint, docstrings and a clean run are worth as much
    as the share of the implementation that really works (a notebook that implements one function
    of twelve cannot get full code-quality points)."""
    if not indices:
        return
    earned, possible = implementation_share(rubric, results)
    share = earned / possible if possible > 0 else 0.0
    if share >= 1.0 - 1e-9:
        return
    note = render(msg("cq.scaled", earned=f"{earned:g}", possible=f"{possible:g}", percent=round(100 * share)), lang)
    for index in indices:
        entry = results[index]
        if entry["status"] != "pass":
            continue
        entry["score"] = round(entry["score"] * share, 4)
        entry["message"] = (entry["message"] + " " + note).strip()
        if entry["score"] == 0:
            entry["status"] = "fail"
            entry["hint"] = render(msg("cq.implement_first"), lang)
