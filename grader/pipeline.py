"""The library entry point: one submission in, one result out.

intake -> sandbox (runs the notebook + probe) -> probe (read its plain outputs) -> judge ->
rubric -> report. Each stage is a package with one entry function; this module only wires them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grader
from grader.assignments import check_gradable
from grader.assignments.catalog import CATALOG
from grader.errors import GraderError, SubmissionRejected, UsageError
from grader.i18n import LANGUAGES, default_language, msg, render
from grader.intake import intake
from grader.report import write_reports
from grader.rubric import load_rubric, score
from grader.sandbox import ExecutionResult, SandboxJob, SandboxPaths, run_notebook

# Deliberately not imported here: torch and everything that needs it (assignments' checks, probe,
# judge). They load in the sandbox feeder thread while the student's notebook already runs.

CRITERIA_EMPTY = {c: {"score": 0.0, "max_score": 0.0, "pending": 0.0}
                  for c in ("implementation", "theory", "experiments", "code_quality")}


@dataclass
class GradeOptions:
    assignment: str | None = None
    sandbox: str = "auto"
    cell_timeout_s: float = 600.0
    timeout_s: float = 1800.0
    memory_mb: int = 4096
    seed: int | None = None
    profile: str = "smoke"
    device: str = "cpu"
    data_dir: Path | None = None
    gpus: str | None = None
    call_timeout_s: float = 60.0
    lang: str | None = None             # messages and reports: ko | en (default: the course's)


def rubrics_dir() -> Path:
    """$GRADER_RUBRICS_DIR, else the repository's rubrics/ folder."""
    configured = os.environ.get("GRADER_RUBRICS_DIR")
    return Path(configured) if configured else Path(grader.__file__).resolve().parent.parent / "rubrics"


def _base_result(assignment: str | None, started: float) -> dict:
    info = CATALOG.get(assignment or "")
    return {
        "assignment": assignment,
        "title": info.title if info else None,
        "status": "error",
        "reason": None,
        "score": 0.0,
        "max_score": float(info.points) if info else 0.0,
        "bonus": 0.0,
        "bonus_max": 0.0,
        "criteria": json.loads(json.dumps(CRITERIA_EMPTY)),
        "checks": [],
        "submission": None,
        "execution": None,
        "executed_notebook": None,
        "duration_s": round(time.monotonic() - started, 3),
        "grader_version": grader.__version__,
    }


def _mark_problems(notebook: dict, execution: ExecutionResult, lang: str) -> dict:
    """Mark the failing cells of the executed notebook (papermill-style): a warning cell before
    each, and the problem in the cell's metadata."""
    marked = json.loads(json.dumps(notebook))
    by_position = {p.cell: p for p in execution.problems if p.cell is not None and not p.in_probe}
    cells, position = [], 0
    for cell in marked.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if isinstance(tags, list) and "grader-problem" in tags:
            tags.remove("grader-problem")  # only the grader's own markers carry this tag
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", []):
            position += 1
            problem = by_position.get(position)
            if problem is not None:
                message = render(problem.message, lang)
                marker = render(msg("exec.marker", kind=msg(f"problem.{problem.kind}"), cell=position), lang)
                warning = {"cell_type": "markdown", "metadata": {"tags": ["grader-problem"]},
                           "source": f"<span id=\"grader-problem-{position}\"></span>\n**{marker}** {message}"}
                if "id" in cell:
                    warning["id"] = f"grader-problem-{position}"
                cells.append(warning)
                cell.setdefault("metadata", {})["grader"] = {"problem": problem.kind, "message": message}
        cells.append(cell)
    marked["cells"] = cells
    return marked


def grade_submission(path: Path, out_dir: Path | None, options: GradeOptions | None = None,
                     *, progress: Callable[[str], None] | None = None) -> dict:
    """Grade one submission. Returns the result (result.json's content) and, with `out_dir`,
    writes result.json, feedback.html, feedback.md and executed.ipynb there.

    Raises UsageError for bad options; a rejected submission or a grader failure is returned as a
    result with status "rejected" / "error" (and written), so callers can always report it.
    """
    options = options or GradeOptions()
    lang = options.lang or default_language()
    if lang not in LANGUAGES:
        raise UsageError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    say = progress or (lambda message: None)
    started = time.monotonic()
    if options.profile not in ("smoke", "full"):
        raise UsageError(f"unknown profile {options.profile!r}: choose smoke or full")
    if options.assignment is not None:
        check_gradable(options.assignment)  # fail fast on an unknown assignment, before any work
    workspace = Path(tempfile.mkdtemp(prefix="grader-run-"))
    result = _base_result(options.assignment, started)
    result["lang"] = lang
    try:
        say("reading the submission")
        try:
            submission = intake(Path(path), workspace / "submission", assignment=options.assignment)
        except SubmissionRejected as exc:
            result.update(status="rejected", reason=exc.render(lang))
            return _finish(result, out_dir, started)
        info = submission.assignment
        result.update(assignment=info.id, title=info.title, max_score=float(info.points))
        result["submission"] = {"source": printable_path(path), "sha256": submission.sha256,
                                "notebook": submission.notebook.name, "notes": list(submission.notes)}
        check_gradable(info.id)
        rubric = load_rubric(rubrics_dir() / f"{info.id}.yaml")
        result.update(title=rubric.title, max_score=rubric.points, bonus_max=rubric.bonus_max)
        seed = options.seed if options.seed is not None else secrets.randbits(31)
        record = {"seed": seed, "source": printable_path(Path(path).resolve()), "sha256": submission.sha256,
                  "assignment": info.id, "rubric_sha256": _file_sha256(rubrics_dir() / f"{info.id}.yaml"),
                  "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()
                              if k != "seed"}}
        # intake validated (and, where harmless, repaired) the notebook: every stage reads that copy
        notebook = submission.notebook_data
        nonce = secrets.token_hex(8)
        prepared: dict = {}

        def prepare(paths: SandboxPaths) -> str:
            # Runs while the notebook runs (see grader.sandbox.local.feed_stdin).
            from grader.assignments import get_spec, load_staff, prepare_probe
            from grader.probe import build_probe_source

            spec = get_spec(info.id)
            staff = load_staff(spec)
            material = prepare_probe(spec, staff, seed, data_dir=data_dir)
            prepared.update(staff=staff, material=material)
            # What the end of the run needs and can be made now, while the notebook still runs:
            # the report templates and the executed-notebook renderer (compiled once per process),
            # and what the judge asks of the submitted code alone (remembered).
            try:
                from grader.judge import warm_static
                from grader.report import warm_up as warm_reports

                warm_static(notebook, spec.requirements, submission_root=submission.root, artifacts=spec.artifacts)
                warm_reports(lang)
                warm_up(notebook)
            except Exception:  # noqa: BLE001 - a warm-up is an optimisation, never a failure
                pass
            return build_probe_source(material.calls, material.inputs, paths, device=options.device,
                                      nonce=nonce, call_timeout_s=options.call_timeout_s, artifacts=spec.artifacts)

        # DATA_DIR: the course's mounted data (full), or small data in the same layout (smoke).
        data_dir = options.data_dir
        if info.datasets:
            from grader.data import prepare_data_dir

            data_dir = prepare_data_dir(info.datasets, options.profile, options.data_dir, workspace)
        # The notebook's own SEED is not the probe's seed: that one stays secret from the notebook.
        parameters = {"SEED": 0, "DEVICE": options.device,
                      "DATA_DIR": str(data_dir) if data_dir else "data", "PROFILE": options.profile}
        # The notebook runs in a copy: what it writes while running (its smoke-profile artifacts)
        # must not overwrite the deliverables the student submitted. The artifact folders are left
        # out of the copy, so what the probe reads back from them is what this run wrote, and the
        # judge can compare it with the submitted files (claims to verify, not facts).
        workdir = workspace / "work"
        artifact_folders = {d.name.rstrip("/").lower() for d in submission.deliverables if d.kind == "folder"}
        shutil.copytree(submission.root, workdir, symlinks=True,
                        ignore=lambda folder, names: [n for n in names if Path(folder) == submission.root
                                                      and n.lower() in artifact_folders])
        job = SandboxJob(
            notebook=notebook, workdir=workdir, parameters=parameters,
            probe_source=prepare,
            cell_timeout_s=options.cell_timeout_s, timeout_s=options.timeout_s, memory_mb=options.memory_mb,
            data_dir=data_dir, gpus=options.gpus,
        )
        say(f"running {submission.notebook.name} ({options.profile} profile)")
        execution = run_notebook(job, options.sandbox)
        result["execution"] = execution.to_json(lang)
        result["execution"]["gpus"] = options.gpus  # which GPUs the notebook was given (None: none)
        say("judging")
        if job.probe_error is not None:
            raise job.probe_error
        from grader.assignments import get_spec, load_staff, prepare_probe
        from grader.judge import CheckContext, judge
        from grader.judge.quality import function_cells
        from grader.probe import read_probe

        if "material" not in prepared:  # the run ended before it asked for the probe
            spec = get_spec(info.id)
            prepared["staff"] = load_staff(spec)
            prepared["material"] = prepare_probe(spec, prepared["staff"], seed, data_dir=data_dir)
        material, staff = prepared["material"], prepared["staff"]
        probe = read_probe(execution.probe_payloads if execution.probe_ran else None, material.calls, nonce)
        context = CheckContext(
            notebook=notebook, submission_root=submission.root, deliverables=submission.deliverables,
            execution=execution, probe=probe, inputs=material.inputs, expected=material.expected,
            function_cells=function_cells(notebook), calls=material.calls,
            profile=options.profile, data_dir=data_dir,
        )
        checks = judge(rubric, material.checks, context, answer_keys=staff.answer_keys, lang=lang,
                       requirements=get_spec(info.id).requirements)
        _draw_figures(checks, out_dir, lang)
        result.update(score(rubric, checks))
        result["checks"] = checks
        result["status"] = "graded"
        result["deliverables"] = [vars(d) for d in submission.deliverables]
        result["judged_with"] = material.mode
        if out_dir is not None:
            # The staff's record of how this result was made: `grade regrade` re-runs from it
            # with the same secret seed. Not part of result.json, which students see.
            _write_json(out_dir / "record.json", {**record, "graded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime())})
        if execution.notebook is not None and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            executed = _mark_problems(execution.notebook, execution, lang)
            (out_dir / "executed.ipynb").write_text(json.dumps(executed, ensure_ascii=False, indent=1),
                                                    encoding="utf-8")
            result["executed_notebook"] = "executed.ipynb"
            from grader.report.notebook_html import executed_notebook_html

            result["executed_notebook_html"] = executed_notebook_html(executed, out_dir / "executed.html", lang=lang)
        return _finish(result, out_dir, started)
    except UsageError:
        raise
    except GraderError as exc:
        result.update(status="error", reason=str(exc))
        return _finish(result, out_dir, started)
    except Exception as exc:  # noqa: BLE001 - the grader's own bug: reported as an error result
        # The student gets the kind of failure only; the details (a traceback with the grader's
        # paths) go to the staff's record.json.
        result.update(status="error", reason=f"internal error: {type(exc).__name__}")
        if out_dir is not None:
            _write_json(out_dir / "record.json", {"error": f"{type(exc).__name__}: {exc}",
                                                   "traceback": traceback.format_exc()[-4000:],
                                                   "source": printable_path(Path(path).resolve())})
        return _finish(result, out_dir, started)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _draw_figures(checks: list[dict], out_dir: Path | None, lang: str) -> None:
    """Pictures of failed checks (student vs expected), as PNGs beside the report."""
    for check in checks:
        pair = check.pop("_figure", None)
        if pair is None or out_dir is None:
            continue
        from grader.report.figures import AXES, render_comparison

        actual, expected, kind = (*pair, "matrix")[:3]
        labels = (render(msg("figure.yours"), lang), render(msg("figure.expected"), lang))
        axes = tuple(render(msg(label), lang) for label in AXES.get(kind, AXES["matrix"]))
        name = f"figures/{check['id']}.png"
        render_comparison(actual, expected, out_dir / name, labels=labels, title=check["title"], axes=axes)
        check["figure"] = name


def warm_up(notebook: dict | None = None) -> None:
    """Do once what every grading does first (grader.batch.preload calls this before forking);
    with a notebook, also render its Markdown cells for the executed notebook's page."""
    from grader.report.notebook_html import warm_up as warm_notebook_pages
    from grader.report.notebook_html import warm_up_markdown

    warm_notebook_pages()
    if notebook is not None:
        warm_up_markdown(notebook)


def printable_path(path: Path | str) -> str:
    """A path as text that any JSON/UTF-8 writer takes: bytes that are not UTF-8 (a file name from
    another system) are written as \\xNN escapes instead of crashing the write."""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


def _printable(value):
    """`value` with every string made encodable as UTF-8: lone surrogates (undecodable bytes of a
    file name, carried into a message) become visible escapes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            try:
                return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


def _finish(result: dict, out_dir: Path | None, started: float) -> dict:
    result.update(_printable(result))
    result["duration_s"] = round(time.monotonic() - started, 3)
    if out_dir is not None:
        _write_json(out_dir / "result.json", result)
        write_reports(result, out_dir)
    return result
