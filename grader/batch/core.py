"""`grade_batch`: a folder of submissions in, a folder of results, a gradebook and a summary out.

discover -> keys (skip what is done) -> engine (local pool or Ray) -> install each result as it
finishes -> gradebook.csv + summary.html from every student's result.json.

One student's submission never stops the batch: a name that cannot be used, a file that cannot
be read, a grading process that crashes or hangs, a result that cannot be stored as it came, all
become that student's `rejected` or `error` row. Only what is wrong with the TA's own set-up
(options, an output folder that cannot be written) stops it: UsageError (exit 2) or OSError.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grader
from grader.batch.discover import SubmissionEntry, discover
from grader.batch.exceptions import BatchInputError, BatchInterrupted, EngineUnavailable
from grader.batch.gradebook import GradebookRow, row_from_result, write_gradebook, write_summary
from grader.batch.names import display_path, is_utf8_path, printable, raw_b64
from grader.batch.state import KEY_NAME, BatchKey, OutputArea, content_sha256, is_done, rubric_sha256
from grader.batch.worker import Outcome, describe_failure
from grader.batch.worker import wall_clock_limit_s as default_limit_s
from grader.errors import UsageError
from grader.i18n import LANGUAGES, default_language
from grader.pipeline import CRITERIA_EMPTY, GradeOptions
from grader.report import write_reports

__all__ = ["grade_batch", "BatchSummary", "BatchEvent", "Job", "ENGINES", "options_key", "default_workers"]

ENGINES = ("local", "ray")
GRADEBOOK_NAME = "gradebook.csv"
SUMMARY_NAME = "summary.html"


@dataclass(frozen=True)
class Job:
    """One submission to grade in this run, with the key its result will be stored under."""

    entry: SubmissionEntry
    key: BatchKey
    staged: Path | None = None      # a copy under a UTF-8 name, for a path that is not UTF-8

    @property
    def source(self) -> Path:
        """What the grading process reads: the submission, or its staged copy. `grade` writes
        the path into result.json and its record, which hold UTF-8 text only."""
        return self.staged or self.entry.path


@dataclass(frozen=True)
class BatchEvent:
    """Progress of a batch, for a progress bar: one "start", then one "done" per graded student."""

    kind: str                   # "start" | "done"
    total: int = 0              # submissions in INPUT
    to_grade: int = 0           # of which this run grades (the rest is reused)
    reused: int = 0
    student: str | None = None  # "done": who
    status: str | None = None   # "done": graded | rejected | error
    problem: bool = False       # "done": not graded, or the notebook did not complete
    reason: str = ""


@dataclass
class BatchSummary:
    """What a batch produced. `rows` has one row per student of INPUT, sorted by student id."""

    out_dir: Path
    engine: str
    rows: list[GradebookRow]
    graded_now: list[str]
    reused: list[str]
    ignored: list[str]
    layout: str
    gradebook: Path
    summary_html: Path
    duration_s: float
    counts: dict[str, int] = field(default_factory=dict)


def default_workers(device: str = "cpu") -> int:
    """Notebooks on a GPU: the GPUs this machine may use (one notebook a GPU). On the CPU: the
    CPUs this process may use (the container's or cgroup's share where it is set)."""
    if device.startswith("cuda"):
        from grader.batch.worker import visible_gpus

        return max(1, len(visible_gpus()))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def options_key(options: GradeOptions) -> dict[str, Any]:
    """The grading options that change a result, as stored in `.batch-key`. Not the engine, the
    workers or the Ray address: where a submission is graded does not change its grade."""
    return {
        "assignment": options.assignment, "sandbox": options.sandbox,
        "cell_timeout_s": float(options.cell_timeout_s), "timeout_s": float(options.timeout_s),
        "memory_mb": int(options.memory_mb), "seed": options.seed, "profile": options.profile,
        "device": options.device, "data_dir": str(options.data_dir) if options.data_dir else None,
        "lang": options.lang,  # the students' feedback is written in it: another language, another run
    }


def _validate(engine: str, workers: int | None, options: GradeOptions) -> None:
    from grader.assignments import check_gradable
    from grader.sandbox import available_backends

    if engine not in ENGINES:
        raise EngineUnavailable(f"unknown engine {engine!r}: choose local or ray")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})")
    if options.profile not in ("smoke", "full"):
        raise UsageError(f"unknown profile {options.profile!r}: choose smoke or full")
    sandboxes = ("auto", *available_backends())
    if options.sandbox not in sandboxes:
        raise UsageError(f"unknown sandbox {options.sandbox!r}: choose {' | '.join(sandboxes)}")
    if options.lang is not None and options.lang not in LANGUAGES:
        raise UsageError(f"unknown language {options.lang!r}: choose one of {', '.join(LANGUAGES)}")
    if options.assignment is not None:
        check_gradable(options.assignment)


def _error_result(entry: SubmissionEntry, options: GradeOptions, reason: str, duration_s: float,
                  status: str = "error") -> dict:
    """A result.json for a submission whose grading process left none, or that the batch did not
    hand to one (`status` "rejected": a name that cannot be used). Same fields as the
    pipeline's, so every tool reading results reads these too."""
    from grader.assignments.catalog import CATALOG

    info = CATALOG.get(options.assignment or "")
    return {
        "assignment": options.assignment, "title": info.title if info else None,
        "status": status, "reason": reason, "score": 0.0,
        "max_score": float(info.points) if info else 0.0, "bonus": 0.0, "bonus_max": 0.0,
        "criteria": json.loads(json.dumps(CRITERIA_EMPTY)), "checks": [],
        "submission": {"source": display_path(entry.path), "sha256": None, "notebook": None, "notes": []},
        "execution": None, "executed_notebook": None,
        "duration_s": round(duration_s, 3), "grader_version": grader.__version__,
    }


def _is_foreign(folder: Path) -> bool:
    """True when OUT/<student> exists and is not what `grade` or `grade batch` writes."""
    if not (folder.exists() or folder.is_symlink()):
        return False
    if folder.is_symlink() or not folder.is_dir():
        return True
    return not ((folder / KEY_NAME).is_file() or (folder / "result.json").is_file())


def _read_result(folder: Path) -> dict | None:
    try:
        result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") in ("graded", "rejected", "error") else None


def _write_json(path: Path, data: Any) -> None:
    try:
        text = json.dumps(data, ensure_ascii=False, indent=2)
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A string with an undecodable byte (a path that is not UTF-8): JSON's \u escapes keep
        # it, and json.loads gives back the same string (the path os.fsencode turns into bytes).
        text = json.dumps(data, ensure_ascii=True, indent=2)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _content_key(entry: SubmissionEntry) -> str:
    """The content hash a result is keyed by: the submission's, or for several submissions that
    gave one id (a rejected row) the hash of all of theirs, so that removing one regrades."""
    if not entry.others:
        return content_sha256(entry.path)
    import hashlib

    digests = sorted(content_sha256(p) for p in (entry.path, *entry.others))
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()


def _stage(entry: SubmissionEntry, folder: Path) -> Path:
    """A copy of a submission whose path is not UTF-8, named by its (printable) student id: a
    hard link where the file system allows, else a copy (a folder: links kept as links, for
    intake to judge as it would the original)."""
    suffix = entry.path.suffix.lower() if entry.kind != "folder" else ""
    target = folder / f"{entry.student}{suffix}"
    if entry.kind == "folder":
        shutil.copytree(entry.path, target, symlinks=True)
    else:
        try:
            os.link(entry.path, target)
        except OSError:
            shutil.copy2(entry.path, target)
    return target


def grade_batch(input_dir: Path, out_dir: Path, *, workers: int | None = None, engine: str = "local",
                ray_address: str | None = None, options: GradeOptions | None = None,
                progress: Callable[[BatchEvent], None] | None = None,
                wall_clock_limit_s: float | None = None) -> BatchSummary:
    """Grade every submission in `input_dir` into `out_dir` and write the gradebook and summary.

    Each student's result goes to `out_dir/<student>/` (result.json, feedback.html/.md,
    executed.ipynb, .batch-key), installed atomically as it finishes; what is already done (same
    content, grader, options and rubric) is reused. A submission that crashes, hangs or kills
    its grading process becomes an `error` row; the batch goes on.

    `workers`: processes at once (local; default: the CPUs available) or tasks in flight (ray;
    default: twice the cluster's slots). `wall_clock_limit_s`: the guard around one grading
    process (default: `options.timeout_s` plus a margin).

    Raises UsageError (and subclasses: BatchInputError, BatchLocked, EngineUnavailable) before
    any grading; BatchInterrupted on Ctrl-C, after every grading process was stopped.
    """
    started = time.monotonic()
    options = options or GradeOptions()
    if options.lang is None:
        # Resolved here, once: every worker (and every Ray node, whatever its configuration)
        # writes the feedback in the TA's language.
        options = dataclasses.replace(options, lang=default_language())
    say = progress or (lambda event: None)
    _validate(engine, workers, options)
    if engine == "ray":
        from grader.batch.ray_engine import check_cluster

        check_cluster(ray_address)  # no Ray, no cluster there: usage errors before any work
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if input_dir.exists() and out_dir.exists() and input_dir.resolve() == out_dir.resolve():
        raise BatchInputError(f"--out {display_path(out_dir)} is INPUT itself: give the results a folder of their own")
    found = discover(input_dir, out_dir=out_dir, assignment=options.assignment)
    limit_s = wall_clock_limit_s if wall_clock_limit_s is not None else default_limit_s(options)
    wanted_options = options_key(options)

    with OutputArea(out_dir) as area:
        # A result replaces an older result, never anything else: OUT may be a folder that holds
        # other things (a student called "Documents" must not replace ~/Documents).
        foreign = [e.student for e in found.entries if _is_foreign(area.student_dir(e.student))]
        if foreign:
            raise BatchInputError(f"{display_path(out_dir)} already holds {', '.join(foreign[:5])}"
                                  f"{' and more' if len(foreign) > 5 else ''}, which "
                                  f"{'is not a result folder' if len(foreign) == 1 else 'are not result folders'} "
                                  "of `grade`: choose another --out")
        jobs: list[Job] = []
        # Decided here, without a grading process: (job, status, reason).
        settled: list[tuple[Job, str, str]] = []
        reused: list[str] = []
        for entry in found.entries:
            try:
                content = _content_key(entry)
            except OSError as exc:
                # Unreadable (permissions, a file that vanished): an error row, retried next run.
                key = BatchKey(student=entry.student, content_sha256="", grader_version=grader.__version__,
                               options=wanted_options)
                settled.append((Job(entry, key), "error",
                                f"the submission {entry.display_name} could not be read: {exc.strerror or exc}"))
                continue
            key = BatchKey(student=entry.student, content_sha256=content,
                           grader_version=grader.__version__, options=wanted_options)
            if is_done(area.student_dir(entry.student), key):
                reused.append(entry.student)
            elif entry.problem:
                settled.append((Job(entry, key), "rejected", entry.problem))
            elif not is_utf8_path(os.path.abspath(entry.path)):
                try:
                    jobs.append(Job(entry, key, staged=_stage(entry, area.scratch(entry.student))))
                except OSError as exc:
                    settled.append((Job(entry, key), "error", f"the submission {entry.display_name} could not "
                                    f"be copied for grading: {exc.strerror or exc}"))
            else:
                jobs.append(Job(entry, key))
        total = len(found.entries)
        to_grade = len(jobs) + len(settled)
        say(BatchEvent("start", total=total, to_grade=to_grade, reused=len(reused)))
        graded_now: list[str] = []

        def finish(job: Job, attempt_out: Path, outcome: Outcome) -> None:
            """Turn one finished attempt into OUT/<student>/, atomically. Whatever goes wrong
            with this one student's files becomes its error row; only a failure to write OUT at
            all (the TA's set-up) goes on up."""
            try:
                row = install(job, attempt_out, outcome)
            except Exception as exc:  # noqa: BLE001 - one student's problem, not the batch's
                reason = (f"the batch could not store the result of this submission "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")
                row = install(job, area.scratch(job.entry.student) / "out",
                              dataclasses.replace(outcome, error=reason), forced=(reason, "error"))
            graded_now.append(job.entry.student)
            say(BatchEvent("done", total=total, to_grade=to_grade, reused=len(reused), student=job.entry.student,
                           status=row.status, problem=row.problem, reason=printable(row.reason)))

        def install(job: Job, attempt_out: Path, outcome: Outcome,
                    forced: tuple[str, str] | None = None) -> GradebookRow:
            """The result of one attempt (or, `forced`, a result with that reason and status
            instead) completed and moved to OUT/<student>/; its gradebook row."""
            entry = job.entry
            attempt_out.mkdir(parents=True, exist_ok=True)
            result = _read_result(attempt_out) if forced is None else None
            if result is None:
                # No result: whatever the process left is partial. Replace it by an error result.
                for leftover in attempt_out.iterdir():
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover)
                    else:
                        leftover.unlink()
                reason, status = forced or (describe_failure(outcome), "error")
                result = _error_result(entry, options, reason, outcome.wall_s, status=status)
                try:
                    write_reports(result, attempt_out)
                except Exception:  # noqa: BLE001 - result.json is the contract; feedback is a courtesy
                    pass
            result["student"] = entry.student  # the id is kept in every output
            # The name as INPUT holds it, whatever its bytes: the id is printable, this is the record.
            result["student_name_b64"] = raw_b64(entry.path.name)
            if isinstance(result.get("submission"), dict):
                # The submission in INPUT (not a staged copy, not the Ray node's scratch copy), as
                # printable text, and its exact bytes where they are not UTF-8.
                result["submission"]["source"] = display_path(entry.path)
                if not is_utf8_path(entry.path):
                    result["submission"]["source_b64"] = raw_b64(entry.path)
            result["batch"] = {"engine": engine, "host": outcome.host, "wall_s": outcome.wall_s}
            _write_json(attempt_out / "result.json", result)
            record = attempt_out / "record.json"  # the staff's regrade record, where the pipeline writes one
            if record.is_file():
                try:
                    data = json.loads(record.read_text(encoding="utf-8"))
                    if isinstance(data, dict):
                        source = entry.path.resolve()
                        data["source"] = str(source)  # JSON-escaped where not UTF-8: the same path read back
                        data["source_b64"] = raw_b64(source)
                        data["student"] = entry.student
                        _write_json(record, data)
                except (OSError, ValueError, RuntimeError):  # RuntimeError: a link loop on the way
                    pass
            assignment = result.get("assignment")
            key = dataclasses.replace(job.key, assignment=assignment, rubric_sha256=rubric_sha256(assignment),
                                      status=result["status"])
            # Written last: a folder without it is never taken as done.
            (attempt_out / KEY_NAME).write_text(key.to_json(), encoding="utf-8")
            area.install(attempt_out, entry.student)
            shutil.rmtree(attempt_out.parent, ignore_errors=True)  # the attempt's scratch (its log)
            return row_from_result(entry.student, result)

        for job, status, reason in settled:
            row = install(job, area.scratch(job.entry.student) / "out", Outcome(returncode=None, wall_s=0.0),
                          forced=(reason, status))
            graded_now.append(job.entry.student)
            say(BatchEvent("done", total=total, to_grade=to_grade, reused=len(reused), student=job.entry.student,
                           status=row.status, problem=row.problem, reason=printable(row.reason)))
        try:
            if not jobs:
                pass  # everything is done already: no engine to start (no Ray connection either)
            elif engine == "local":
                from grader.batch.local_pool import run_local

                run_local(jobs, workers=workers or default_workers(options.device), options=options, limit_s=limit_s,
                          scratch=area.scratch, on_done=finish)
            else:
                from grader.batch.ray_engine import run_ray, safe_relative_path

                def write_files(job: Job, files: dict[str, bytes]) -> Path:
                    attempt_out = area.scratch(job.entry.student) / "out"
                    attempt_out.mkdir()
                    for name, data in files.items():
                        relative = safe_relative_path(name)
                        if relative is None:
                            continue  # never trust a path that came back from a node
                        target = attempt_out / relative
                        try:  # folders made here, in a fresh folder: no link can lie on the way
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(data)
                        except OSError:
                            continue  # a name clashing with a folder: not a file `grade` writes
                    return attempt_out

                run_ray(jobs, address=ray_address, workers=workers, options=options, limit_s=limit_s,
                        write_files=write_files, on_done=finish)
        except KeyboardInterrupt as exc:
            raise BatchInterrupted(done=len(reused) + len(graded_now), total=total) from exc

        rows = []
        for entry in found.entries:
            result = _read_result(area.student_dir(entry.student))
            if result is None:  # pragma: no cover - every job installs a result or raised
                result = _error_result(entry, options, "no result was stored for this submission", 0.0)
            try:
                rows.append(row_from_result(entry.student, result))
            except Exception as exc:  # noqa: BLE001 - a result.json edited by hand: that row, not the batch
                rows.append(row_from_result(entry.student, _error_result(
                    entry, options, f"the stored result.json could not be read ({type(exc).__name__}: {exc})", 0.0)))
        meta = {"input_dir": display_path(input_dir), "engine": engine, "ignored": found.ignored,
                "grader_version": grader.__version__, "lang": options.lang}
        gradebook = write_gradebook(rows, out_dir / GRADEBOOK_NAME)
        summary_html = write_summary(rows, out_dir / SUMMARY_NAME, **meta)

    counts = {s: sum(1 for r in rows if r.status == s) for s in ("graded", "rejected", "error")}
    counts["incomplete"] = sum(1 for r in rows if r.status == "graded" and r.problem)
    return BatchSummary(out_dir=out_dir, engine=engine, rows=rows, graded_now=graded_now, reused=reused,
                        ignored=found.ignored, layout=found.layout, gradebook=gradebook,
                        summary_html=summary_html, duration_s=round(time.monotonic() - started, 3),
                        counts=counts)
