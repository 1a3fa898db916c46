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

from grader.probe import CallOutcome, ProbeReport
from grader.rubric.models import CheckItem, ManualItem, QuestionItem, Rubric, Tolerance
from grader.sandbox import ExecutionResult


@dataclass
class Verdict:
    status: str                 # pass | fail | error | pending
    message: str = ""
    fraction: float = 1.0       # share of the item's points earned when status is pass (partial credit)
    cell: int | None = None


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

    def call(self, call_id: str) -> CallOutcome:
        return self.probe.calls.get(call_id, CallOutcome("not_run"))


CheckFn = Callable[[CheckContext], Verdict]


@dataclass(frozen=True)
class CheckDef:
    fn: CheckFn
    function: str | None = None        # the student function this check exercises (for the cell)
    needs_reference: bool = False      # needs expected values (live reference or stored)


# --- messages for calls that did not produce outputs ------------------------------------------

def call_problem(outcome: CallOutcome, function: str, probe: ProbeReport) -> Verdict | None:
    """A verdict when the call itself did not return normally, else None."""
    if outcome.status == "ok":
        return None
    if outcome.status == "not_implemented":
        return Verdict("fail", f"not implemented: {function} raises NotImplementedError")
    if outcome.status == "missing":
        return Verdict("fail", f"not found: define a function named {function} (the template fixes its name)")
    if outcome.status == "timeout":
        return Verdict("fail", outcome.message or f"{function} took too long")
    if outcome.status == "error":
        where = ""
        if outcome.where:
            where = f" (in {outcome.where.get('function')}, line {outcome.where.get('line')}: " \
                    f"{outcome.where.get('code', '').strip()})"
        return Verdict("fail", f"{function} raised {outcome.message}{where}")
    reason = probe.problem or "the probe did not reach this call"
    return Verdict("error", f"{function} could not be tested: {reason}")


def describe_shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def compare_tensors(actual: torch.Tensor | None, expected: torch.Tensor, tol: Tolerance, what: str,
                    *, broadcast: bool = False) -> str | None:
    """None when `actual` matches `expected` within tolerance, else a message saying how it differs."""
    if actual is None:
        return f"{what}: no tensor was returned"
    if broadcast and actual.shape != expected.shape:
        try:
            actual = torch.broadcast_to(actual, expected.shape)
        except RuntimeError:
            return f"{what}: shape {describe_shape(actual)} does not broadcast to {describe_shape(expected)}"
    if actual.shape != expected.shape:
        return f"{what}: shape {describe_shape(actual)}, expected {describe_shape(expected)}"
    if expected.dtype == torch.bool:
        if actual.dtype != torch.bool:
            return f"{what}: dtype {str(actual.dtype).replace('torch.', '')}, expected a boolean mask"
        wrong = (actual != expected).nonzero()
        if len(wrong):
            index = tuple(wrong[0].tolist())
            return (f"{what}: {len(wrong)} of {expected.numel()} entries differ, first at index {index} "
                    f"(got {bool(actual[index])}, expected {bool(expected[index])})")
        return None
    if actual.is_complex() or actual.dtype == torch.bool:
        return f"{what}: dtype {str(actual.dtype).replace('torch.', '')}, expected a real floating tensor"
    a, e = actual.double(), expected.double()
    nan = torch.isnan(a) & ~torch.isnan(e)
    if nan.any():
        return f"{what}: {int(nan.sum())} NaN values (first at index {tuple(nan.nonzero()[0].tolist())})"
    inf_mismatch = torch.isinf(a) != torch.isinf(e)
    if inf_mismatch.any():
        index = tuple(inf_mismatch.nonzero()[0].tolist())
        return f"{what}: {int(inf_mismatch.sum())} infinite values where finite were expected (or the reverse), " \
               f"first at index {index}"
    finite = torch.isfinite(e)
    if (torch.isinf(e) & (torch.sign(a) != torch.sign(e))).any():
        return f"{what}: infinities of the wrong sign"
    diff = torch.where(finite, (a - e).abs(), torch.zeros_like(a))
    allowed = tol.atol + tol.rtol * e.abs()
    bad = (diff > allowed) & finite
    if bad.any():
        worst = int(torch.argmax(torch.where(bad, diff, torch.zeros_like(diff))))
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), e.shape))
        return (f"{what}: {int(bad.sum())} of {e.numel()} values differ; largest difference "
                f"{float(diff[index]):.3g} at index {index} (got {float(a[index]):.5g}, expected "
                f"{float(e[index]):.5g}; tolerance atol={tol.atol:g}, rtol={tol.rtol:g})")
    return None


def output_check(call_id: str, function: str, outputs: dict[int, str], *, default_tol: Tolerance,
                 broadcast: bool = False, n_outputs: int | None = None) -> CheckDef:
    """A check that compares outputs `{index: name}` of one call with the expected values."""

    def check(ctx: CheckContext) -> Verdict:
        outcome = ctx.call(call_id)
        problem = call_problem(outcome, function, ctx.probe)
        if problem:
            return problem
        if ctx.expected is None or call_id not in ctx.expected:
            return Verdict("pending", "judged by the course grader (no expected values available here)")
        if n_outputs is not None and len(outcome.outputs) != n_outputs:
            return Verdict("fail", f"{function} returned {len(outcome.outputs)} value(s), expected {n_outputs}")
        tol = ctx.tolerance or default_tol
        for index, name in outputs.items():
            actual = outcome.outputs[index] if index < len(outcome.outputs) else None
            if actual is None and index < len(outcome.types):
                return Verdict("fail", f"{name} of {function}: returned a {outcome.types[index]}, expected a tensor")
            message = compare_tensors(actual, ctx.expected[call_id][index], tol, f"{name} of {function}",
                                      broadcast=broadcast)
            if message:
                return Verdict("fail", message)
        return Verdict("pass", f"{function}: matches the reference within tolerance")

    return CheckDef(check, function=function, needs_reference=True)


# --- the judge's entry point ------------------------------------------------------------------

def _theory_answer(item: QuestionItem, answers: dict | None, keys: dict | None) -> Verdict:
    key = item.question.key
    if answers is None:
        return Verdict("fail", "no ANSWERS dictionary was found after running the notebook")
    if key not in answers or answers[key] is None:
        return Verdict("fail", f"ANSWERS[{key!r}] is missing or None")
    if keys is None or key not in keys:
        return Verdict("pending", "judged by the course grader (the answer key is not available here)")
    given, correct = answers[key], keys[key]
    if item.question.type == "number":
        try:
            value = float(given)
        except (TypeError, ValueError):
            return Verdict("fail", f"ANSWERS[{key!r}] should be a number, got {given!r}")
        if not math.isfinite(value) or abs(value - float(correct)) > item.question.tolerance:
            return Verdict("fail", f"ANSWERS[{key!r}] = {given!r} is not correct")
        return Verdict("pass", "correct")
    choice = str(given).strip().lower().rstrip(")").lstrip("(")
    if choice not in [o.lower() for o in item.question.options]:
        return Verdict("fail", f"ANSWERS[{key!r}] = {given!r}: choose one of {', '.join(item.question.options)}")
    if choice != str(correct).lower():
        return Verdict("fail", f"ANSWERS[{key!r}] = {given!r} is not correct")
    return Verdict("pass", "correct")


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
          answer_keys: dict | None) -> list[dict]:
    """One result.json check entry per rubric item, in rubric order."""
    results = []
    for item in rubric.items:
        cell = None
        answer = guidance = None
        if isinstance(item, CheckItem):
            definition = checks.get(item.check)
            if definition is None:
                verdict = Verdict("pending", "judged by the course grader") if item.visibility == "hidden" \
                    else Verdict("error", f"the grader has no check named {item.check!r}")
            else:
                ctx.tolerance = item.tolerance
                try:
                    verdict = definition.fn(ctx)
                except Exception as exc:  # noqa: BLE001 - a broken check must not sink the others
                    verdict = Verdict("error", f"the check itself failed ({type(exc).__name__}: {exc}); "
                                               "tell the course staff")
                ctx.tolerance = None
                if definition.function:
                    cell = ctx.function_cells.get(definition.function)
        elif isinstance(item, QuestionItem):
            verdict = _theory_answer(item, ctx.probe.answers, answer_keys)
        else:
            assert isinstance(item, ManualItem)
            answer = tagged_answer(ctx.notebook, item.answer_tag)
            guidance = item.guidance
            verdict = Verdict("pending", "awaiting review by a TA" if answer and answer.strip()
                              else "awaiting review by a TA (no answer cell was found: keep the cell "
                                   f"tagged {item.answer_tag!r})")
        earned = round(item.points * max(0.0, min(1.0, verdict.fraction)), 4) if verdict.status == "pass" else 0.0
        hidden = item.visibility == "hidden"
        results.append({
            "id": item.id,
            "title": item.title,
            "criterion": item.criterion,
            "status": verdict.status,
            "score": earned,
            "max_score": item.points,
            "visibility": item.visibility,
            "bonus": item.bonus,
            # Hidden checks show their name and verdict only: their inputs and expected values
            # would tell a student what to special-case.
            "message": "" if hidden else verdict.message,
            "hint": "" if hidden or verdict.status == "pass" else item.hint,
            "cell": None if hidden else (verdict.cell or cell),
            "answer": answer,
            "guidance": guidance,
        })
    return results
