"""Probe stage: the cell the grader appends after the student's cells, and reading what it wrote.

The probe calls the student's functions (the API the template fixes) on inputs drawn from a
per-run secret seed, and publishes plain outputs (JSON with the tensors as safetensors bytes) as
a display output of its own cell, under a private MIME type. The sandbox's runner picks that
output out of the kernel's messages and hands it to the grader over its private channel, so no
file is involved that the student's code could pre-place or rewrite. The payload is still only
data to the judge, which recomputes every expected value from its own copy of the inputs: a
forged payload can lose points, never gain them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load, save

from grader.i18n import Message, msg
from grader.sandbox import SandboxPaths

KERNEL_SIDE = Path(__file__).with_name("kernel_side.py")
PROBE_MIME = "application/vnd.grader.probe+json"  # the runner looks for this very type


@dataclass(frozen=True)
class ProbeCall:
    """One call of the student's code on the grader's inputs (tensors named by input key).

    kind "function": `function(*inputs[args], **kwargs, **inputs[tensor_kwargs])`.
    kind "module":   `module = function(**init_kwargs)` (a class the template names), the judge's
                     parameters loaded by name (`state`: parameter name -> input key), then
                     `module(*args)`; with `backward`, the gradients of sum(output_i * weights_i)
                     with respect to the floating inputs and every parameter come back too, and
                     `perturb` lists other inputs to run the same module on (property checks).
    kind "object":   an object the notebook left under the name `function` (a trained model),
                     called (or its `method`) on the judge's held-out inputs, without gradients.
    `measure`: FLOPs, peak memory of intermediates and elements produced are recorded (only
    those figures come back, not the outputs). `hidden`: run last, silenced, status only.
    """

    id: str
    function: str
    args: tuple[str, ...] = ()
    kwargs: dict = field(default_factory=dict)
    tensor_kwargs: dict = field(default_factory=dict)
    kind: str = "function"
    measure: bool = False
    hidden: bool = False
    init_kwargs: dict = field(default_factory=dict)
    state: dict | None = None
    method: str | None = None
    backward: dict | None = None          # {"weights": {output index (str): input key}}
    perturb: tuple[dict, ...] = ()        # ({"args": (...), "tensor_kwargs": {...}}, ...)
    train_mode: bool = False

    def to_plan(self) -> dict:
        plan = {"id": self.id, "function": self.function, "args": list(self.args),
                "kwargs": self.kwargs, "tensor_kwargs": self.tensor_kwargs, "kind": self.kind,
                "measure": self.measure, "hidden": self.hidden}
        if self.kind == "module":
            plan.update(init_kwargs=self.init_kwargs, state=self.state, backward=self.backward,
                        perturb=[{"args": list(p.get("args", ())), "tensor_kwargs": dict(p.get("tensor_kwargs", {}))}
                                 for p in self.perturb], train_mode=self.train_mode)
        if self.method:
            plan["method"] = self.method
        return plan


@dataclass(frozen=True)
class ArtifactSpec:
    """Which files the probe brings back from the run's working folder (before any call)."""

    folders: tuple[str, ...]
    suffixes: tuple[str, ...] = (".csv", ".png", ".json", ".txt")
    max_file_bytes: int = 2 * 2**20
    max_total_bytes: int = 8 * 2**20

    def to_plan(self) -> dict:
        return {"folders": list(self.folders), "suffixes": list(self.suffixes),
                "max_file_bytes": self.max_file_bytes, "max_total_bytes": self.max_total_bytes}


@dataclass
class CallOutcome:
    status: str                      # ok | not_implemented | missing | error | timeout | not_run
    message: str = ""
    outputs: list[torch.Tensor | None] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    where: dict | None = None
    ops: frozenset[str] = frozenset()     # torch functions ("torch:name") and ATen operators run
    measured: dict | None = None          # flops, elements, peak_bytes, largest_bytes/_shape, device
    params: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # module calls
    n_params: int | None = None
    grads: dict[str, torch.Tensor] = field(default_factory=dict)   # "arg0", "param/<name>"
    variants: list[list[torch.Tensor | None]] = field(default_factory=list)  # perturbed inputs' outputs
    problems: list[str] = field(default_factory=list)   # parameter loading problems (status "state")


@dataclass
class ProbeReport:
    ran: bool
    problem: Message | str           # why there is no report ("" when there is one)
    calls: dict[str, CallOutcome]
    answers: dict | None
    artifacts: dict[str, bytes] = field(default_factory=dict)  # what the run wrote (relative path -> bytes)
    artifact_notes: list[tuple[str, str]] = field(default_factory=list)


def build_probe_source(calls: list[ProbeCall], inputs: dict[str, torch.Tensor], paths: SandboxPaths,
                       *, device: str, nonce: str, call_timeout_s: float,
                       artifacts: ArtifactSpec | None = None) -> str:
    plan = {"calls": [c.to_plan() for c in calls], "device": device, "nonce": nonce,
            "call_timeout_s": call_timeout_s, "answers_variable": "ANSWERS", "mime": PROBE_MIME,
            "artifacts": artifacts.to_plan() if artifacts else None}
    blob = base64.b64encode(save({k: v.contiguous() for k, v in inputs.items()})).decode("ascii")
    template = KERNEL_SIDE.read_text(encoding="utf-8")
    call = "__grader_probe(__PLAN__, __INPUTS__)"
    if template.count(call) != 1:
        raise AssertionError("kernel_side.py must call __grader_probe(__PLAN__, __INPUTS__) exactly once")
    # Filled in on the call line alone: the cell's size (its text is tokenized by IPython) is the
    # inputs' once, not once more for every mention of a placeholder.
    return template.replace(call, f"__grader_probe({plan!r}, {blob!r})")


def read_probe(payloads: list[str] | None, calls: list[ProbeCall], nonce: str) -> ProbeReport:
    """Decode what the probe published, as untrusted plain data (JSON, safetensors).

    `payloads` is None when the probe never ran. Exactly one payload must carry this run's nonce:
    anything else (none, or a second one printed by the student's code) makes the report unusable.
    """
    empty = {c.id: CallOutcome("not_run") for c in calls}
    if payloads is None:
        return ProbeReport(False, msg("probe.not_run"), empty, None)
    try:
        reports = []
        for raw in payloads:
            try:
                candidate = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(candidate, dict) and candidate.get("nonce") == nonce:
                reports.append(candidate)
        if len(reports) != 1:
            raise ValueError("no result from the probe" if not reports else "more than one probe result")
        report = reports[0]
        tensors = load(base64.b64decode(str(report.get("tensors", "")), validate=True))
    except Exception as exc:  # noqa: BLE001 - untrusted data: any decoding problem is a reason, not a crash
        return ProbeReport(False, msg("probe.unreadable", reason=str(exc)), empty, None)
    outcomes: dict[str, CallOutcome] = {}
    raw_calls = report.get("calls") if isinstance(report.get("calls"), dict) else {}
    for call in calls:
        raw = raw_calls.get(call.id)
        if not isinstance(raw, dict) or not isinstance(raw.get("status"), str):
            outcomes[call.id] = CallOutcome("not_run")
            continue
        status = raw["status"]
        # Hidden calls come back as a status only; a message is never taken from them.
        message = "" if call.hidden else str(raw.get("message", ""))[:200]
        outcome = CallOutcome(status, message,
                              where=raw.get("where") if isinstance(raw.get("where"), dict) and not call.hidden else None)
        ops = raw.get("ops")
        outcome.ops = frozenset(str(o)[:120] for o in ops[:400]) if isinstance(ops, list) else frozenset()
        if status == "state":
            problems = raw.get("problems")
            outcome.problems = [str(p)[:200] for p in problems[:20]] if isinstance(problems, list) else []
        if status == "ok":
            count = int(raw.get("n_outputs", 0)) if isinstance(raw.get("n_outputs"), int) else 0
            outcome.outputs = [tensors.get(f"{call.id}/{i}") for i in range(min(count, 16))]
            types = raw.get("types")
            outcome.types = [str(t)[:50] for t in types] if isinstance(types, list) else []
            outcome.measured = _measured(raw.get("measured"))
            outcome.params, outcome.n_params = _params(raw)
            prefix = f"{call.id}/grad/"
            outcome.grads = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
            for j in range(len(call.perturb)):
                outcome.variants.append([tensors.get(f"{call.id}/p{j}/{i}") for i in range(min(count, 16))])
        outcomes[call.id] = outcome
    answers = report.get("answers") if isinstance(report.get("answers"), dict) else None
    artifacts: dict[str, bytes] = {}
    raw_artifacts = report.get("artifacts") if isinstance(report.get("artifacts"), dict) else {}
    for rel, blob in list(raw_artifacts.items())[:500]:
        try:
            artifacts[str(rel)[:300]] = base64.b64decode(str(blob), validate=True)
        except ValueError:
            continue
    notes = report.get("artifact_notes") if isinstance(report.get("artifact_notes"), list) else []
    artifact_notes = [(str(n[0])[:300], str(n[1])[:100]) for n in notes[:100] if isinstance(n, list) and len(n) == 2]
    return ProbeReport(True, "", outcomes, answers, artifacts, artifact_notes)


def _measured(raw) -> dict | None:
    """The measuring call's figures, as numbers only (untrusted data)."""
    if not isinstance(raw, dict):
        return None
    figures = {}
    for key in ("flops", "elements", "peak_bytes", "largest_bytes"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            figures[key] = value
    shape = raw.get("largest_shape")
    if isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        figures["largest_shape"] = [int(s) for s in shape[:8]]
    figures["device"] = "cuda" if raw.get("device") == "cuda" else "cpu"
    return figures


def _params(raw: dict) -> tuple[list[tuple[str, tuple[int, ...]]], int | None]:
    params = []
    for item in raw.get("params", [])[:200] if isinstance(raw.get("params"), list) else []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], list):
            params.append((str(item[0])[:200], tuple(int(s) for s in item[1][:8] if isinstance(s, int))))
    count = raw.get("n_params")
    return params, count if isinstance(count, int) and not isinstance(count, bool) else None
