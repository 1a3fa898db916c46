"""Assignments the grader can judge: their public probe calls and checks, and where the staff's
reference code and hidden checks are found (when this installation has them).

The engine (this package) is what students get. `reference/` (reference implementations, hidden
checks, answer keys) is the staff's and may be absent: then public checks run from expected
outputs stored as data (`data/<id>.expected.safetensors`, made by `grade expected ID`), and
hidden checks and answer keys are reported as pending ("judged by the course grader").
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable

from grader.errors import UsageError

if TYPE_CHECKING:  # torch is imported lazily: the CLI starts the sandbox before it needs torch
    import torch

    from grader.judge import CheckDef
    from grader.probe import ProbeCall

# Assignments with automatic checks: id -> the module defining SPEC.
GRADABLE = {"w6-self-attention": "grader.assignments.w6_self_attention",
            "w6-multihead": "grader.assignments.w6_multihead",
            "w5-lstm": "grader.assignments.w5_lstm",
            "w5-resnet": "grader.assignments.w5_resnet",
            "w5-attention": "grader.assignments.w5_attention",
            "w7-positional": "grader.assignments.w7_positional",
            "w8-midterm": "grader.assignments.w8_midterm",
            "w7-transformer": "grader.assignments.w7_transformer"}

DATA_DIR = Path(__file__).with_name("data")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AssignmentSpec:
    id: str
    make_inputs: Callable[[int], dict[str, torch.Tensor]]
    calls: list[ProbeCall]
    checks: dict[str, CheckDef]
    reference_module: str               # e.g. "reference.self_attention" (staff only)
    hidden_module: str | None = None    # e.g. "reference.hidden_checks.w6_self_attention" (staff only)
    public_seed: int = 20261128         # inputs of the stored expected outputs (student side)
    skip_lint_tags: tuple[str, ...] = field(default_factory=tuple)
    requirements: list = field(default_factory=list)   # grader.judge.requirements (Forbidden, Growth)
    artifacts: object | None = None     # grader.probe.ArtifactSpec: what the run's copy is read back from

    @property
    def expected_path(self) -> Path:
        return DATA_DIR / f"{self.id}.expected.safetensors"


@dataclass
class StaffSide:
    """What only the course staff's installation has."""

    reference: ModuleType | None
    hidden: ModuleType | None

    @property
    def answer_keys(self) -> dict | None:
        return getattr(self.hidden, "ANSWER_KEYS", None) if self.hidden else None


def staff_dir() -> Path | None:
    """The folder that holds `reference/`: $GRADER_STAFF_DIR, else the repository this engine was
    installed from (a development checkout). A student's installation has neither."""
    configured = os.environ.get("GRADER_STAFF_DIR")
    if configured:
        return Path(configured) if configured.lower() not in ("", "none") and Path(configured).is_dir() else None
    return REPO_ROOT if (REPO_ROOT / "reference" / "__init__.py").is_file() else None


def _import_from(root: Path, name: str) -> ModuleType | None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def load_staff(spec: AssignmentSpec) -> StaffSide:
    root = staff_dir()
    if root is None:
        return StaffSide(None, None)
    reference = _import_from(root, spec.reference_module)
    hidden = _import_from(root, spec.hidden_module) if spec.hidden_module else None
    return StaffSide(reference, hidden)


def check_gradable(assignment_id: str) -> None:
    from grader.assignments.catalog import CATALOG

    if assignment_id not in CATALOG:
        raise UsageError(f"unknown assignment {assignment_id!r}; the course's assignments: {', '.join(CATALOG)}")
    if assignment_id not in GRADABLE:
        raise UsageError(f"assignment {assignment_id!r} has no automatic checks yet; "
                         f"gradable: {', '.join(GRADABLE)}")


def get_spec(assignment_id: str) -> AssignmentSpec:
    check_gradable(assignment_id)
    return importlib.import_module(GRADABLE[assignment_id]).SPEC


def _run_reference(reference: ModuleType, calls: list[ProbeCall], inputs: dict[str, torch.Tensor]
                   ) -> dict[str, list[torch.Tensor | None]]:
    import torch

    expected: dict[str, list[torch.Tensor | None]] = {}
    # One thread: these calls are small, and the grader computes them while the notebook runs
    # beside it on the same cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _reference_calls(reference, calls, inputs, expected)
    finally:
        torch.set_num_threads(threads)
    return expected


def _reference_calls(reference: ModuleType, calls: list[ProbeCall], inputs: dict[str, torch.Tensor],
                     expected: dict) -> None:
    import torch

    for call in calls:
        if call.measure or call.kind == "object":
            continue  # measured, or judged from what the judge computes itself: no expected outputs
        fn = getattr(reference, call.function)
        kwargs = dict(call.kwargs)
        kwargs.update({k: inputs[v].clone() for k, v in call.tensor_kwargs.items()})
        if call.kind == "module":
            expected.update(_run_reference_module(fn, call, inputs, kwargs))
            continue
        with torch.no_grad():
            value = fn(*(inputs[n].clone() for n in call.args), **kwargs)
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        expected[call.id] = [v.detach().cpu() if isinstance(v, torch.Tensor) else None for v in values]


def _run_reference_module(cls, call: ProbeCall, inputs: dict[str, torch.Tensor], kwargs: dict
                          ) -> dict[str, list[torch.Tensor | None]]:
    """The reference module, with the same parameters the probe loads into the student's, on the
    same inputs: outputs under `id`, gradients under `id/grad/<arg N | param/name>` (one tensor
    each) and the perturbed inputs' outputs under `id/p<j>`."""
    import torch

    module = cls(**call.init_kwargs)
    module.train(call.train_mode)
    own = dict(module.named_parameters())
    own.update(dict(module.named_buffers()))
    with torch.no_grad():
        for name, input_name in (call.state or {}).items():
            own[name].copy_(inputs[input_name])
    args = [inputs[n].clone() for n in call.args]
    if call.backward is not None:
        for a in args:
            if a.is_floating_point():
                a.requires_grad_(True)
    method = getattr(module, call.method) if call.method else module
    with torch.set_grad_enabled(call.backward is not None):
        value = method(*args, **kwargs)
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    found = {call.id: [v.detach().cpu() if isinstance(v, torch.Tensor) else None for v in values]}
    if call.backward is not None:
        weights = call.backward.get("weights", {})
        loss = sum((v * (inputs[weights[str(i)]] if str(i) in weights else 1.0)).sum()
                   for i, v in enumerate(values) if isinstance(v, torch.Tensor) and v.requires_grad)
        loss.backward()
        for n, a in enumerate(args):
            if a.grad is not None:
                found[f"{call.id}/grad/arg{n}"] = [a.grad.detach().cpu()]
        for name, p in module.named_parameters():
            if p.grad is not None:
                found[f"{call.id}/grad/param/{name}"] = [p.grad.detach().cpu()]
    for j, variant in enumerate(call.perturb):
        v_kwargs = dict(call.kwargs)
        v_kwargs.update({k: inputs[v].clone() for k, v in variant.get("tensor_kwargs", {}).items()})
        with torch.no_grad():
            value = method(*(inputs[n].clone() for n in variant.get("args", ())), **v_kwargs)
        values = list(value) if isinstance(value, (tuple, list)) else [value]
        found[f"{call.id}/p{j}"] = [v.detach().cpu() if isinstance(v, torch.Tensor) else None for v in values]
    return found


@dataclass
class ProbeMaterial:
    """Inputs the probe gets, the calls it makes and the values the judge expects back."""

    inputs: dict[str, torch.Tensor]
    calls: list[ProbeCall]
    checks: dict[str, CheckDef]
    expected: dict[str, list[torch.Tensor | None]] | None
    mode: str          # "live" (reference code, secret seed) or "stored" (public seed, stored outputs)


def _inputs(make: Callable, seed: int, data_dir: Path | None) -> dict:
    """`make(seed)`, or `make(seed, data_dir=...)` for assignments whose held-out inputs come from
    the data (the test split of DATA_DIR, which the judge reads in its own process)."""
    import inspect

    if "data_dir" in inspect.signature(make).parameters:
        return make(seed, data_dir=data_dir)
    return make(seed)


def prepare_probe(spec: AssignmentSpec, staff: StaffSide, seed: int, *, data_dir: Path | None = None) -> ProbeMaterial:
    checks = dict(spec.checks)
    if staff.reference is not None:
        inputs = _inputs(spec.make_inputs, seed, data_dir)
        calls = list(spec.calls)
        if staff.hidden is not None:
            inputs.update(_inputs(staff.hidden.make_inputs, seed, data_dir))
            # Hidden calls run last in the probe, silenced, and come back as a status only.
            calls += [dataclasses.replace(c, hidden=True) for c in staff.hidden.CALLS]
            checks.update(staff.hidden.CHECKS)
        return ProbeMaterial(inputs, calls, checks, _run_reference(staff.reference, calls, inputs), "live")
    from safetensors.torch import load_file

    # No reference here (a student's installation): the public calls, on the public seed's inputs,
    # against the expected outputs stored when the staff built the engine.
    inputs = _inputs(spec.make_inputs, spec.public_seed, data_dir)
    expected = None
    if spec.expected_path.is_file():
        stored = load_file(str(spec.expected_path))
        expected = {}
        for key in stored:
            call_id, _, index = key.rpartition("/")
            if index.isdigit():
                expected.setdefault(call_id, [])
        for call_id in expected:
            count = sum(1 for key in stored if key.rpartition("/")[0] == call_id and key.rpartition("/")[2].isdigit())
            expected[call_id] = [stored.get(f"{call_id}/{i}") for i in range(count)]
    return ProbeMaterial(inputs, list(spec.calls), checks, expected, "stored")


# The tolerances the checks use for each kind of output: a stored value is the reference's within
# them, on any CPU (float results differ in the last bits between machines, e.g. with AVX-512).
STORED_TOLERANCE = {"float16": (3e-2, 3e-2), "bfloat16": (3e-2, 3e-2), "float32": (1e-4, 1e-4),
                    "float64": (1e-8, 1e-6)}


def expected_mismatches(fresh: dict, stored: dict) -> list[str]:
    """Keys whose stored expected output differs from a fresh computation by more than the checks'
    own tolerance for that dtype (booleans and integers: exactly); missing and extra keys too."""
    import torch

    problems = [f"{key}: only in the fresh outputs" for key in sorted(set(fresh) - set(stored))]
    problems += [f"{key}: only in the stored outputs" for key in sorted(set(stored) - set(fresh))]
    for key in sorted(set(fresh) & set(stored)):
        a, b = fresh[key], stored[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{key}: {tuple(a.shape)} {a.dtype} vs stored {tuple(b.shape)} {b.dtype}")
            continue
        tolerance = STORED_TOLERANCE.get(str(a.dtype).replace("torch.", ""))
        if tolerance is None:
            same = torch.equal(a, b)
        else:
            atol, rtol = tolerance
            same = torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=True)
        if not same:
            problems.append(f"{key}: differs from the stored value beyond the checks' tolerance")
    return problems


def write_expected(spec: AssignmentSpec, staff: StaffSide, path: Path | None = None) -> Path:
    """Store the reference's outputs on the public seed's inputs (run by the staff, with reference/)."""
    if staff.reference is None:
        raise UsageError("the reference code is not available here: run this from the staff repository")
    from safetensors.torch import save_file

    inputs = _inputs(spec.make_inputs, spec.public_seed, None)
    # A module call that loads no parameters has randomly initialised outputs: nothing to store
    # (its checks are properties, judged without expected values).
    calls = [c for c in spec.calls if not (c.kind == "module" and not c.state)]
    expected = _run_reference(staff.reference, calls, inputs)
    flat = {f"{cid}/{i}": t.contiguous() for cid, values in expected.items() for i, t in enumerate(values)
            if t is not None}
    target = path or spec.expected_path
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(flat, str(target))
    return target
