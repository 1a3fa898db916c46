"""Judge a notebook in the test process, without a sandbox or a kernel: for tests of checks and
requirements on many variants of a submission (seeded bugs, shortcuts, other styles), where a
whole sandboxed run per variant would cost the CI minutes.

The notebook's code cells and the real probe cell (`grader/probe/kernel_side.py`, built by
`build_probe_source` exactly as the pipeline builds it) are executed in one namespace; the probe's
display output is captured from a stand-in for IPython's display publisher; then the real
`read_probe`, `judge` and `score` run. Only our own test notebooks go through this: it is no
sandbox. Whole sandboxed runs stay in tests/test_pipeline.py for what a notebook run itself must
show (the reference, the blank template, failures, tampering).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

import nbformat

from grader.assignments import get_spec, load_staff, prepare_probe
from grader.assignments.catalog import CATALOG
from grader.data import prepare_data_dir
from grader.judge import CheckContext, judge
from grader.judge.quality import function_cells
from grader.pipeline import rubrics_dir
from grader.probe import PROBE_MIME, build_probe_source, read_probe
from grader.rubric import load_rubric, score
from grader.sandbox import CellProblem, ExecutionResult, SandboxPaths


@contextlib.contextmanager
def _chdir(path: Path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class _Publisher:
    def __init__(self) -> None:
        self.payloads: list[str] = []

    def publish(self, data, metadata=None, **kwargs):
        if PROBE_MIME in data:
            self.payloads.append(data[PROBE_MIME])


class _Shell:
    def __init__(self) -> None:
        self.display_pub = _Publisher()


def _code(cell) -> str:
    source = "".join(cell.source) if isinstance(cell.source, list) else cell.source
    return "\n".join("pass  # " + line if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def run_probe(namespace: dict, calls: list, inputs: dict, *, artifacts=None, device: str = "cpu"):
    """Run the real probe cell in `namespace` (where the notebook's code already ran) on `calls`
    and `inputs`; return the decoded ProbeReport."""
    import IPython

    shell = _Shell()
    nonce = secrets.token_hex(8)
    source = build_probe_source(calls, inputs, SandboxPaths(os.getcwd(), None), device=device, nonce=nonce,
                                call_timeout_s=60, artifacts=artifacts)
    original = IPython.get_ipython
    IPython.get_ipython = lambda: shell  # only the probe publishes through it
    try:
        exec(compile(source, "<probe>", "exec"), namespace)  # noqa: S102 - our own test code
    finally:
        IPython.get_ipython = original
    return read_probe(shell.display_pub.payloads, calls, nonce)


def judge_in_process(notebook_path: Path, assignment: str, workdir: Path, *, seed: int = 1234,
                     skip_tags: tuple[str, ...] = (), lang: str = "en", parameters: dict | None = None,
                     profile: str = "smoke", data_dir: Path | None = None) -> dict:
    """Run the notebook's code cells and the probe in this process; return result-like data:
    {"checks": [...], "score", "bonus", "criteria", "by_id": {id: check}}.

    The notebook's folder is the submission; it runs in `workdir`, a copy without the artifact
    folders (as the pipeline does), so the experiment checks compare what this run wrote with
    the submitted files. Cells tagged with one of `skip_tags` are not run (e.g. "experiment", for
    tests that judge only the implementation)."""
    notebook_path = Path(notebook_path)
    spec = get_spec(assignment)
    staff = load_staff(spec)
    info = CATALOG[assignment]
    if info.datasets:  # DATA_DIR as the pipeline makes it: the smoke data, or the given (miniature) one
        data_dir = prepare_data_dir(info.datasets, profile, data_dir, Path(workdir).parent / f"{Path(workdir).name}-data")
    material = prepare_probe(spec, staff, seed, data_dir=data_dir)
    folders = {f.lower() for f in (spec.artifacts.folders if spec.artifacts else ())}
    submission_root = notebook_path.parent
    shutil.copytree(submission_root, workdir, dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if Path(folder) == submission_root
                                                  and n.lower() in folders])
    notebook = nbformat.read(str(notebook_path), as_version=4)
    namespace: dict = {"__name__": "__main__"}
    namespace.update({"SEED": 0, "DEVICE": "cpu", "DATA_DIR": str(data_dir) if data_dir else "data",
                      "PROFILE": profile, **(parameters or {})})
    problems: list[CellProblem] = []
    with _chdir(workdir):
        for position, cell in enumerate(notebook.cells, start=1):
            tags = cell.metadata.get("tags", [])
            if cell.cell_type != "code" or "parameters" in tags or any(t in tags for t in skip_tags):
                continue
            try:
                exec(compile(_code(cell), f"<cell {position}>", "exec"), namespace)  # noqa: S102 - our own test notebooks
            except Exception as exc:  # noqa: BLE001 - a failing cell is a problem of the run, as in the sandbox
                problems.append(CellProblem("cell_error", position, f"{type(exc).__name__}: {exc}"[:200]))
        probe = run_probe(namespace, material.calls, material.inputs, artifacts=spec.artifacts)
    execution = ExecutionResult(status="completed" if not problems else "cell_error", problems=problems,
                                notebook=None, probe_ran=True, probe_payloads=[],
                                duration_s=0.0, backend="in-process", isolation="none", network=True)
    assert probe.ran, probe.problem
    plain = json.loads(nbformat.writes(notebook))
    context = CheckContext(notebook=plain, submission_root=submission_root, deliverables=[], execution=execution,
                           probe=probe, inputs=material.inputs, expected=material.expected,
                           function_cells=function_cells(plain), calls=material.calls, profile=profile,
                           data_dir=data_dir)
    rubric = load_rubric(rubrics_dir() / f"{assignment}.yaml")
    checks = judge(rubric, material.checks, context, answer_keys=staff.answer_keys, lang=lang,
                   requirements=spec.requirements)
    for check in checks:
        check.pop("_figure", None)
    return {"checks": checks, **score(rubric, checks), "by_id": {c["id"]: c for c in checks}, "probe": probe}


def edit_cells(notebook_path: Path, replacements: list[tuple[str, str]], *, append: list[str] = ()) -> None:
    """Replace exact source text in the code cells (each original must occur exactly once) and
    append code cells."""
    notebook = nbformat.read(str(notebook_path), as_version=4)
    for original, replacement in replacements:
        hits = [c for c in notebook.cells if c.cell_type == "code" and original in c.source]
        assert len(hits) == 1 and hits[0].source.count(original) == 1, f"{original[:60]!r} occurs {len(hits)} times"
        hits[0].source = hits[0].source.replace(original, replacement)
    for source in append:
        notebook.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(notebook, str(notebook_path))


def function_source(notebook_path: Path, name: str) -> str:
    """The full text of the code cell that defines `name` (for replacing a whole function)."""
    notebook = nbformat.read(str(notebook_path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and f"def {name}(" in cell.source:
            return cell.source
    raise KeyError(name)


def replace_function(notebook_path: Path, name: str, new_source: str) -> None:
    """Replace the definition of top-level function `name` (up to the next top-level statement)."""
    notebook = nbformat.read(str(notebook_path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code" or f"def {name}(" not in cell.source:
            continue
        lines = cell.source.split("\n")
        start = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i] and not lines[i][0].isspace() and not lines[i].startswith(")")), len(lines))
        cell.source = "\n".join(lines[:start] + new_source.strip("\n").split("\n") + [""] + lines[end:])
        nbformat.write(notebook, str(notebook_path))
        return
    raise KeyError(name)

