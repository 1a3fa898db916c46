"""Probe stage: the cell the grader appends after the student's cells, and reading what it wrote.

The probe calls the student's functions (the API the template fixes) on inputs drawn from a
per-run secret seed and writes plain outputs: `outputs.safetensors` and `probe.json`. Nothing it
writes is trusted beyond being data: the judge recomputes every expected value itself, from its
own copy of the inputs, so forged or tampered files can only lose points, never gain them.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from grader.sandbox import SandboxPaths

KERNEL_SIDE = Path(__file__).with_name("kernel_side.py")
MAX_PROBE_JSON_BYTES = 4 * 2**20
MAX_OUTPUTS_BYTES = 512 * 2**20


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
    problem: str                     # why there is no report ("" when there is one)
    calls: dict[str, CallOutcome]
    answers: dict | None


def build_probe_source(calls: list[ProbeCall], inputs: dict[str, torch.Tensor], paths: SandboxPaths,
                       *, device: str, nonce: str, call_timeout_s: float) -> str:
    plan = {"calls": [c.to_plan() for c in calls], "device": device, "nonce": nonce,
            "call_timeout_s": call_timeout_s, "answers_variable": "ANSWERS"}
    blob = base64.b64encode(save({k: v.contiguous() for k, v in inputs.items()})).decode("ascii")
    template = KERNEL_SIDE.read_text(encoding="utf-8")
    return (template.replace("__PLAN__", repr(plan))
            .replace("__INPUTS__", repr(blob))
            .replace("__OUT_DIR__", repr(paths.probe)))


def new_nonce() -> str:
    return secrets.token_hex(8)


def read_probe(probe_dir: Path, calls: list[ProbeCall], nonce: str, *, ran: bool) -> ProbeReport:
    """Read what the probe wrote, as untrusted plain data (size-capped JSON, safetensors)."""
    empty = {c.id: CallOutcome("not_run") for c in calls}
    json_path, tensors_path = probe_dir / "probe.json", probe_dir / "outputs.safetensors"
    if not ran:
        return ProbeReport(False, "the probe did not run (the notebook stopped before the end)", empty, None)
    try:
        if json_path.is_symlink() or tensors_path.is_symlink():
            raise ValueError("the probe's files were replaced by links")
        if json_path.stat().st_size > MAX_PROBE_JSON_BYTES or tensors_path.stat().st_size > MAX_OUTPUTS_BYTES:
            raise ValueError("the probe's files are too large")
        report = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(report, dict) or report.get("nonce") != nonce:
            raise ValueError("the probe's report does not belong to this run")
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, json.JSONDecodeError, Exception) as exc:  # noqa: BLE001 - untrusted data
        return ProbeReport(False, f"the probe's results could not be read ({exc})", empty, None)
    outcomes: dict[str, CallOutcome] = {}
    raw_calls = report.get("calls") if isinstance(report.get("calls"), dict) else {}
    for call in calls:
        raw = raw_calls.get(call.id)
        if not isinstance(raw, dict) or not isinstance(raw.get("status"), str):
            outcomes[call.id] = CallOutcome("not_run", "the probe did not reach this call")
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
