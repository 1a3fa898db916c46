"""`grade template export ID DIR`: a GitHub Classroom template repository for one assignment.

What it writes (nothing of the staff's: no reference code, no hidden check, no answer key; see
tests/test_wheel_contents.py):

    <notebook>, <artifact folders>/     from student_template/<ID>/ (its own tests/ and README are replaced)
    tests/test_self_check.py            one test per rubric item, decided by the engine (grade_submission,
                                        as a student's installation: GRADER_STAFF_DIR=none)
    pytest.ini, .gitignore
    requirements.txt                    the engine (`--engine-requirement`, or a vendored `--engine-wheel`) + pytest
    README.md                           for students, in Korean with English
    .github/workflows/classroom.yml     Classroom's "Autograding Tests" workflow (see grader.formats.classroom)
    .github/actionlint.yaml             only with a self-hosted runner label (declares the label)
    .grader/assignment.json             id, notebook, result folders, points
    .grader/rubrics/<ID>.yaml           the rubric, without the TA's grading guidance of free-text items

The files this writes live beside this module (`classroom/`, `gradescope/`) as package data.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2
import yaml

import grader
from grader import yamlio
from grader.errors import GraderError, UsageError

FILES = Path(__file__).resolve().parent
DEFAULT_ENGINE_REQUIREMENT = "grader @ git+https://github.com/YOUR-COURSE/grader-engine@v{version}"
PYTHON_VERSION = "3.11"
# What a copy of the engine's source leaves out before a wheel is built from it.
_NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "grade-out", "__pycache__", ".pytest_cache",
               "*.pyc", ".ipynb_checkpoints")
_SKIPPED_FROM_TEMPLATE = ("tests", "README.md", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", "grade-out")


def _environment() -> jinja2.Environment:
    # GitHub's own ${{ }} expressions stay untouched: our placeholders are [[ ]] and [% %].
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(FILES / "classroom")), keep_trailing_newline=True,
                              variable_start_string="[[", variable_end_string="]]",
                              block_start_string="[%", block_end_string="%]", undefined=jinja2.StrictUndefined,
                              autoescape=False)


def step_id(assignment: str) -> str:
    """The grading step's id (the reporter's runner name): a valid GitHub step id."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", assignment)
    return cleaned if re.match(r"^[A-Za-z_]", cleaned) else f"grade-{cleaned}"


def results_env_name(assignment: str) -> str:
    """The variable the reporter reads: `<RUNNER.toUpperCase()>_RESULTS`, hyphens kept."""
    return f"{step_id(assignment).upper()}_RESULTS"


def default_template_source(assignment: str) -> Path:
    from grader.assignments import REPO_ROOT

    return REPO_ROOT / "student_template" / assignment


def _text(value, *, both: bool = True) -> str:
    """A rubric text (a string, or {en, ko}) for a bilingual README."""
    if isinstance(value, dict):
        en, ko = str(value.get("en") or ""), str(value.get("ko") or "")
        return f"{ko} / {en}" if both and ko and en and ko != en else (ko or en)
    return str(value or "")


def _public_rubric(path: Path) -> dict:
    """The rubric as students may see it: the TA's guidance for free-text items left out."""
    rubric = yamlio.safe_load(path.read_text(encoding="utf-8"))
    for item in rubric.get("items", []):
        if item.get("kind") == "manual":
            item["guidance"] = ""
    return rubric


def _readme_sections(source: Path) -> tuple[str, str]:
    """The preamble and the sections of the template's own README worth keeping (how to work,
    what to submit); its folder table and self-check section are rewritten for this repository."""
    readme = source / "README.md"
    if not readme.is_file():
        return "", ""
    text = readme.read_text(encoding="utf-8")
    chunks = re.split(r"(?m)^(?=## )", text)
    preamble = chunks[0].strip() if chunks and not chunks[0].startswith("## ") else ""
    kept = [c.strip() for c in chunks if c.startswith("## ")
            and not re.search(r"self-check|what is in this folder", c.splitlines()[0], re.I)]
    return preamble, "\n\n".join(kept)


def _workflow(assignment: str, *, title: str, max_score: float, runner_label: str | None, profile: str,
              python_version: str, lang: str) -> str:
    fallback = {"version": 1, "status": "error", "max_score": max_score, "tests": [{
        "name": "grader", "status": "error", "score": 0,
        "message": "the grader produced no result (exit status EXIT_STATUS): see the log of the grading step",
        "test_code": f"grade . --assignment {assignment}", "filename": "", "line_no": 0, "duration": 0}]}
    fallback_json = json.dumps(fallback, ensure_ascii=True)
    assert "'" not in fallback_json
    extra = " --gpus all" if runner_label else ""
    return _environment().get_template("classroom.yml.j2").render(
        assignment=assignment, title=title, runner_label=runner_label, profile=profile,
        python_version=python_version, step_id=step_id(assignment), env_name=results_env_name(assignment),
        extra_options=extra, fallback_json=fallback_json, timeout_minutes=60 if profile == "full" else 30, lang=lang)


def export_template(assignment: str, dest: Path, *, source: Path | None = None,
                    engine_requirement: str | None = None, engine_wheel: Path | None = None,
                    runner_label: str | None = None, profile: str = "smoke",
                    python_version: str = PYTHON_VERSION, lang: str | None = None, force: bool = False) -> Path:
    """Write the Classroom template repository of `assignment` into `dest` (new or empty).
    `lang`: the language of the messages (default: the course's, as configured here)."""
    from grader.i18n import LANGUAGES, default_language

    from grader.assignments import check_gradable
    from grader.assignments.catalog import CATALOG
    from grader.pipeline import rubrics_dir
    from grader.rubric import load_rubric

    check_gradable(assignment)
    info = CATALOG[assignment]
    lang = lang or default_language()
    if lang not in LANGUAGES:
        raise UsageError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    if profile not in ("smoke", "full"):
        raise UsageError(f"unknown profile {profile!r}: choose smoke or full")
    if runner_label is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", runner_label):
        raise UsageError(f"runner label {runner_label!r}: use letters, digits, '.', '_' and '-' only")
    if engine_requirement is not None and engine_wheel is not None:
        raise UsageError("give either --engine-requirement or --engine-wheel, not both")
    if engine_wheel is not None and not (Path(engine_wheel).is_file() and str(engine_wheel).endswith(".whl")):
        raise UsageError(f"{engine_wheel}: not a wheel file")
    if engine_requirement is not None and (not engine_requirement.strip() or "\n" in engine_requirement):
        raise UsageError("--engine-requirement must be one requirement line")
    source = Path(source) if source is not None else default_template_source(assignment)
    if not (source / info.notebook).is_file():
        raise UsageError(f"no student template for {assignment}: {source / info.notebook} not found")
    rubric_path = rubrics_dir() / f"{assignment}.yaml"
    rubric = load_rubric(rubric_path)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not force:
        raise UsageError(f"{dest} is not empty (use --force to write into it)")
    dest.mkdir(parents=True, exist_ok=True)

    # The student's starting point: the notebook skeleton and the (empty) result folders.
    for entry in sorted(source.iterdir()):
        if entry.name in _SKIPPED_FROM_TEMPLATE:
            continue
        if entry.is_dir():
            shutil.copytree(entry, dest / entry.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*_SKIPPED_FROM_TEMPLATE))
        else:
            shutil.copy2(entry, dest / entry.name)
    for folder in info.artifact_dirs:
        (dest / folder).mkdir(exist_ok=True)
        if not any((dest / folder).iterdir()):
            (dest / folder / ".gitkeep").touch()

    (dest / "tests").mkdir(exist_ok=True)
    shutil.copy2(FILES / "classroom" / "self_check.py", dest / "tests" / "test_self_check.py")
    shutil.copy2(FILES / "classroom" / "pytest.ini", dest / "pytest.ini")
    shutil.copy2(FILES / "classroom" / "gitignore.txt", dest / ".gitignore")

    meta = dest / ".grader"
    (meta / "rubrics").mkdir(parents=True, exist_ok=True)
    public = _public_rubric(rubric_path)
    (meta / "rubrics" / rubric_path.name).write_text(
        f"# The rubric of {assignment} (a copy; the course grader's own copy is the one that counts).\n"
        + yaml.safe_dump(public, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    (meta / "assignment.json").write_text(json.dumps({
        "assignment": assignment, "title": rubric.title, "notebook": info.notebook,
        "artifact_dirs": list(info.artifact_dirs), "points": rubric.points, "bonus_max": rubric.bonus_max,
        "profile": profile, "lang": lang, "engine_version": grader.__version__}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8")

    if engine_wheel is not None:
        (meta / "wheels").mkdir(exist_ok=True)
        shutil.copy2(engine_wheel, meta / "wheels" / Path(engine_wheel).name)
        requirement = f"./.grader/wheels/{Path(engine_wheel).name}"
    else:
        requirement = (engine_requirement or DEFAULT_ENGINE_REQUIREMENT).format(version=grader.__version__)
    (dest / "requirements.txt").write_text(
        "# 채점 엔진 / the course's grading engine (public checks and stored expected outputs only)\n"
        f"{requirement}\npytest>=8\n", encoding="utf-8")

    workflows = dest / ".github" / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    (workflows / "classroom.yml").write_text(
        _workflow(assignment, title=rubric.title, max_score=float(rubric.points), runner_label=runner_label,
                  profile=profile, python_version=python_version, lang=lang), encoding="utf-8")
    if runner_label:
        (dest / ".github" / "actionlint.yaml").write_text(
            "# Labels of the course's self-hosted runners, for actionlint.\nself-hosted-runner:\n"
            f"  labels:\n    - {runner_label}\n", encoding="utf-8")

    preamble, sections = _readme_sections(source)
    if not preamble:
        preamble = (f"# {rubric.title} ({assignment})\n\n{rubric.points:g}점 + 가산점 최대 {rubric.bonus_max:g}점 / "
                    f"{rubric.points:g} points + up to {rubric.bonus_max:g} bonus points.")
    items = []
    for item in public["items"]:
        judged = {"manual": "조교 / TA", "question": "정답 확인 / answer key"}.get(
            item.get("kind"), "비공개 / hidden" if item.get("visibility") == "hidden" else "공개 / public")
        items.append({"id": item["id"], "title": _text(item["title"]), "criterion": item["criterion"],
                      "points": f"{float(item['points']):g}", "bonus": bool(item.get("bonus")), "judged": judged})
    readme = _environment().get_template("README.md.j2").render(
        preamble=preamble, sections=sections, notebook=info.notebook, artifact_dirs=list(info.artifact_dirs),
        python_version=python_version, points=f"{rubric.points:g}", bonus_max=f"{rubric.bonus_max:g}", items=items)
    (dest / "README.md").write_text(readme, encoding="utf-8")
    return dest


def engine_source() -> Path | None:
    """The engine's source checkout (where pyproject.toml is), when this installation has one."""
    from grader.assignments import REPO_ROOT

    pyproject = REPO_ROOT / "pyproject.toml"
    return REPO_ROOT if pyproject.is_file() and 'name = "grader"' in pyproject.read_text(encoding="utf-8") else None


def build_engine_wheel(dest_dir: Path, source: Path | None = None, *, isolation: bool | None = None) -> Path:
    """Build the engine's wheel from a clean copy of its source (so a stale build/ folder cannot
    slip anything into it) and return its path. setuptools from this environment is used when it
    is installed (no download), else pip's build isolation."""
    source = source or engine_source()
    if source is None:
        raise UsageError("no engine source checkout here to build a wheel from: pass --engine-wheel or "
                         "--engine-requirement")
    if isolation is None:
        isolation = importlib.util.find_spec("setuptools") is None
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="grader-wheel-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*_NOT_SOURCE), symlinks=True)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest_dir), str(copy)]
        if not isolation:
            command.insert(4, "--no-build-isolation")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise GraderError(f"building the engine's wheel failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    wheels = sorted(dest_dir.glob("grader-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise GraderError("building the engine's wheel produced no grader-*.whl")
    return wheels[-1]
