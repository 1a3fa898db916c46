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
    """One call of a student function: `function(*inputs[args], **kwargs, **inputs[tensor_kwargs])`."""

    id: str
    function: str
    args: tuple[str, ...]
    kwargs: dict = field(default_factory=dict)
    tensor_kwargs: dict = field(default_factory=dict)

    def to_plan(self) -> dict:
        return {"id": self.id, "function": self.function, "args": list(self.args),
                "kwargs": self.kwargs, "tensor_kwargs": self.tensor_kwargs}


@dataclass
class CallOutcome:
    status: str                      # ok | not_implemented | missing | error | timeout | not_run
    message: str = ""
    outputs: list[torch.Tensor | None] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    where: dict | None = None


@dataclass
class ProbeReport:
    ran: bool
    problem: Message | str           # why there is no report ("" when there is one)
    calls: dict[str, CallOutcome]
    answers: dict | None


def build_probe_source(calls: list[ProbeCall], inputs: dict[str, torch.Tensor], paths: SandboxPaths,
                       *, device: str, nonce: str, call_timeout_s: float) -> str:
    plan = {"calls": [c.to_plan() for c in calls], "device": device, "nonce": nonce,
            "call_timeout_s": call_timeout_s, "answers_variable": "ANSWERS", "mime": PROBE_MIME}
    blob = base64.b64encode(save({k: v.contiguous() for k, v in inputs.items()})).decode("ascii")
    template = KERNEL_SIDE.read_text(encoding="utf-8")
    return (template.replace("__PLAN__", repr(plan))
            .replace("__INPUTS__", repr(blob)))


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
        outcome = CallOutcome(status, str(raw.get("message", ""))[:500],
                              where=raw.get("where") if isinstance(raw.get("where"), dict) else None)
        if status == "ok":
            count = int(raw.get("n_outputs", 0)) if isinstance(raw.get("n_outputs"), int) else 0
            outcome.outputs = [tensors.get(f"{call.id}/{i}") for i in range(min(count, 16))]
            types = raw.get("types")
            outcome.types = [str(t)[:50] for t in types] if isinstance(types, list) else []
        outcomes[call.id] = outcome
    answers = report.get("answers") if isinstance(report.get("answers"), dict) else None
    return ProbeReport(True, "", outcomes, answers)
