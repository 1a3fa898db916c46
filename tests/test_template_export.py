"""`grade template export`: a GitHub Classroom template repository.

The workflow has the shape Classroom's reporter needs and passes actionlint; its grading step,
run as the runner would run it, leaves `result=<base64 JSON>` in $GITHUB_OUTPUT that decodes to
the reporter's JSON; the template's own self-check suite, run as a student runs it (`pytest` in
the repository, the engine from this environment, GRADER_STAFF_DIR=none), passes on the reference
solution and fails every public item of the blank template with the TA report's message and hint.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from grader.errors import UsageError
from grader.formats.command import template_app
from grader.rubric import load_rubric
from grader.templates_export import DEFAULT_ENGINE_REQUIREMENT, export_template, results_env_name, step_id

from tests.conftest import REPO, SOLUTION, TEMPLATE
from tests.test_formats import CLASSROOM_SCHEMA

ASSIGNMENT = "w6-self-attention"
RUBRIC = load_rubric(REPO / "rubrics" / f"{ASSIGNMENT}.yaml")
NOTEBOOK = "self_attention_optimized.ipynb"
BIN = Path(sys.executable).parent
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def tool(name: str) -> str | None:
    return shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_template(ASSIGNMENT, tmp_path_factory.mktemp("export") / "w6-template")


def workflow(folder: Path) -> dict:
    return yaml.safe_load((folder / ".github" / "workflows" / "classroom.yml").read_text(encoding="utf-8"))


def grading_step(flow: dict) -> dict:
    return next(s for s in flow["jobs"]["run-autograding-tests"]["steps"] if s.get("id"))


# --- what is written ----------------------------------------------------------------------------

def test_the_template_has_the_skeleton_the_self_check_and_the_classroom_files(exported):
    files = {str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file()}
    assert {NOTEBOOK, "performance_benchmark/.gitkeep", "masking_techniques/.gitkeep", "tests/test_self_check.py",
            "pytest.ini", ".gitignore", "requirements.txt", "README.md", ".github/workflows/classroom.yml",
            ".grader/assignment.json", f".grader/rubrics/{ASSIGNMENT}.yaml"} == files
    assert (exported / NOTEBOOK).read_bytes() == (TEMPLATE / NOTEBOOK).read_bytes()
    config = json.loads((exported / ".grader" / "assignment.json").read_text(encoding="utf-8"))
    assert config["assignment"] == ASSIGNMENT and config["artifact_dirs"] == ["performance_benchmark",
                                                                               "masking_techniques"]
    assert "grade-out/" in (exported / ".gitignore").read_text()


def test_the_rubric_copy_loads_and_leaves_out_the_tas_guidance(exported):
    copy = load_rubric(exported / ".grader" / "rubrics" / f"{ASSIGNMENT}.yaml")
    assert [i.id for i in copy.items] == [i.id for i in RUBRIC.items]
    assert copy.points == RUBRIC.points and copy.bonus_max == RUBRIC.bonus_max
    text = (exported / ".grader" / "rubrics" / f"{ASSIGNMENT}.yaml").read_text(encoding="utf-8")
    for item in RUBRIC.items:
        if item.kind == "manual":
            guidance = item.guidance if isinstance(item.guidance, str) else item.guidance.en
            assert guidance[:40] not in text


def test_the_readme_is_korean_with_english(exported):
    readme = (exported / "README.md").read_text(encoding="utf-8")
    for heading in ("## 자가 점검 / Self-check", "## 자동 채점 / Autograding (GitHub Classroom)",
                    "## 시작하기 / Getting started", "## 진행 방법 / How to work", "## 채점 기준 / Rubric"):
        assert heading in readme
    korean = [line for line in readme.splitlines() if HANGUL.search(line)]
    english = [line for line in readme.splitlines() if line.strip() and not HANGUL.search(line)
               and re.search(r"\b(the|and|is)\b", line)]
    assert len(korean) > 15 and len(english) > 5
    assert "pytest -m \"not bonus\"" in readme and "requirements.txt" in readme
    for item in RUBRIC.items:
        assert f"`{item.id}`" in readme
    assert "{{" not in readme and "[[" not in readme and "[%" not in readme


def test_requirements_install_the_engine_from_the_given_requirement(tmp_path):
    default = export_template(ASSIGNMENT, tmp_path / "a")
    assert DEFAULT_ENGINE_REQUIREMENT.format(version="0.1.0") in (default / "requirements.txt").read_text()
    pinned = export_template(ASSIGNMENT, tmp_path / "b",
                             engine_requirement="grader @ git+https://example.org/course/engine@v1")
    lines = [l for l in (pinned / "requirements.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert lines == ["grader @ git+https://example.org/course/engine@v1", "pytest>=8"]
    wheel = tmp_path / "grader-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    vendored = export_template(ASSIGNMENT, tmp_path / "c", engine_wheel=wheel)
    assert "./.grader/wheels/grader-0.1.0-py3-none-any.whl" in (vendored / "requirements.txt").read_text()
    assert (vendored / ".grader" / "wheels" / wheel.name).is_file()


def test_export_refuses_bad_requests(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").touch()
    with pytest.raises(UsageError, match="not empty"):
        export_template(ASSIGNMENT, tmp_path / "full")
    with pytest.raises(UsageError):
        export_template("w9-project", tmp_path / "m")
    with pytest.raises(UsageError, match="runner label"):
        export_template(ASSIGNMENT, tmp_path / "r", runner_label="gpu; rm -rf /")
    with pytest.raises(UsageError, match="one requirement line"):
        export_template(ASSIGNMENT, tmp_path / "e", engine_requirement="grader\nevil")
    with pytest.raises(UsageError, match="unknown language"):
        export_template(ASSIGNMENT, tmp_path / "l", lang="fr")
    korean = export_template(ASSIGNMENT, tmp_path / "ko", lang="ko")
    assert json.loads((korean / ".grader" / "assignment.json").read_text())["lang"] == "ko"
    assert grading_step(workflow(korean))["env"]["GRADER_LANG"] == "ko"
    with pytest.raises(UsageError, match="no student template"):
        export_template(ASSIGNMENT, tmp_path / "s", source=tmp_path / "nowhere")


def test_the_command_line(tmp_path):
    runner = CliRunner()
    done = runner.invoke(template_app, ["export", ASSIGNMENT, str(tmp_path / "t"), "--runner-label", "gpu",
                                        "--engine-requirement", "grader==0.1.0"])
    assert done.exit_code == 0, done.output
    assert "runs-on: [self-hosted, gpu]" in (tmp_path / "t" / ".github" / "workflows" / "classroom.yml").read_text()
    again = runner.invoke(template_app, ["export", ASSIGNMENT, str(tmp_path / "t")])
    assert again.exit_code == 2 and "not empty" in again.output


# --- the Classroom workflow ---------------------------------------------------------------------

def test_the_workflow_has_the_shape_classroom_expects(exported):
    flow = workflow(exported)
    assert flow["name"] == "Autograding Tests"
    assert "push" in flow["on"]
    assert flow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    assert list(flow["jobs"]) == ["run-autograding-tests"]
    job = flow["jobs"]["run-autograding-tests"]
    assert job["runs-on"] == "ubuntu-latest"
    step = grading_step(flow)
    assert step["id"] == step_id(ASSIGNMENT) == "w6-self-attention"
    assert step["env"]["GRADER_STAFF_DIR"] == "none"  # a student's installation, whatever the runner has
    assert step["env"]["GRADER_LANG"] == json.loads((exported / ".grader" / "assignment.json").read_text())["lang"]
    assert "uses" not in step  # our own command, not Classroom's command grader (it strips the environment)
    assert re.search(r"^\s*grade \. --assignment w6-self-attention .*--format classroom", step["run"], re.M)
    assert 'result=$(base64 -w 0 < "$out/classroom.json")' in step["run"] and '>> "$GITHUB_OUTPUT"' in step["run"]
    reporter = job["steps"][-1]
    assert reporter["uses"] == "classroom-resources/autograding-grading-reporter@v1"
    assert reporter["with"] == {"runners": "w6-self-attention"}
    assert reporter["env"] == {"W6-SELF-ATTENTION_RESULTS": "${{ steps.w6-self-attention.outputs.result }}"}
    assert results_env_name(ASSIGNMENT) == "W6-SELF-ATTENTION_RESULTS"
    assert job["steps"].index(step) < len(job["steps"]) - 1


def test_step_ids_are_valid_for_any_assignment_id():
    assert step_id("w6-self-attention") == "w6-self-attention"
    assert step_id("6.attention") == "grade-6-attention"
    assert results_env_name("6.attention") == "GRADE-6-ATTENTION_RESULTS"


def test_a_self_hosted_gpu_runner(tmp_path):
    folder = export_template(ASSIGNMENT, tmp_path / "gpu", runner_label="gpu-a100")
    flow = workflow(folder)
    job = flow["jobs"]["run-autograding-tests"]
    assert job["runs-on"] == ["self-hosted", "gpu-a100"]
    assert "--gpus all" in grading_step(flow)["run"]
    assert not any("setup-python" in str(s.get("uses")) for s in job["steps"])
    assert yaml.safe_load((folder / ".github" / "actionlint.yaml").read_text())["self-hosted-runner"] == {
        "labels": ["gpu-a100"]}


@pytest.mark.skipif(tool("actionlint") is None, reason="actionlint not installed (the dev extra has it)")
@pytest.mark.parametrize("label", [None, "gpu"])
def test_the_workflow_passes_actionlint(tmp_path, label):
    folder = export_template(ASSIGNMENT, tmp_path / "t", runner_label=label)
    command = [tool("actionlint"), "-no-color"]
    if label:
        command += ["-config-file", str(folder / ".github" / "actionlint.yaml")]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # shellcheck for run: scripts
    done = subprocess.run([*command, ".github/workflows/classroom.yml"], cwd=folder, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    if tool("shellcheck"):
        verbose = subprocess.run([*command, "-verbose", ".github/workflows/classroom.yml"], cwd=folder, env=env,
                                 capture_output=True, text=True)
        assert "shellcheck\" was disabled" not in verbose.stderr


def run_grading_step(folder: Path, tmp_path: Path, path_dirs: list[Path]) -> dict:
    """Run the grading step's script as the runner does (bash -e, its env, $GITHUB_OUTPUT) and
    decode the `result` output the reporter gets."""
    step = grading_step(workflow(folder))
    output = tmp_path / "github_output"
    output.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADER_") or k == "GRADER_LANG"}
    env.update({k: str(v).replace("${{ github.workspace }}", str(folder)) for k, v in step["env"].items()})
    env.update({"GITHUB_OUTPUT": str(output), "RUNNER_TEMP": str(tmp_path / "runner-temp"),
                "PATH": os.pathsep.join([*map(str, path_dirs), env.get("PATH", "")])})
    (tmp_path / "runner-temp").mkdir(exist_ok=True)
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in output.read_text().splitlines() if line.startswith("result=")]
    assert len(lines) == 1
    document = json.loads(base64.b64decode(lines[0][len("result="):]).decode("utf-8"))
    jsonschema.validate(document, CLASSROOM_SCHEMA)
    return document


def test_the_grading_step_reports_an_error_test_when_the_grader_leaves_nothing(exported, tmp_path):
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "grade").write_text("#!/bin/sh\necho 'grade: grader failure: boom' >&2\nexit 3\n")
    (stub / "grade").chmod(0o755)
    document = run_grading_step(exported, tmp_path, [stub])
    assert document["status"] == "error" and document["max_score"] == RUBRIC.points
    assert [(t["name"], t["status"], t["score"]) for t in document["tests"]] == [("grader", "error", 0)]
    assert "exit status 3" in document["tests"][0]["message"]


def solved_copy(exported: Path, target: Path) -> Path:
    """The template as a student who finished the assignment has it (the reference solution's
    notebook and result folders in place of the skeleton)."""
    shutil.copytree(exported, target)
    for entry in SOLUTION.iterdir():
        if entry.is_dir():
            shutil.rmtree(target / entry.name, ignore_errors=True)
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)
    return target


@pytest.mark.notebook
def test_the_grading_step_decodes_to_the_reporters_json(exported, tmp_path):
    # The real `grade` of this environment, as the runner has it after `pip install -r requirements.txt`.
    usage = subprocess.run([str(BIN / "grade"), "submit", "--help"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})
    assert "--format" in usage.stdout, "`grade submit` has no --format option: grader/cli.py must add it " \
                                       "(json|classroom|junit|gradescope, written by grader.formats.write_format)"
    document = run_grading_step(solved_copy(exported, tmp_path / "repo"), tmp_path, [BIN])
    assert document["status"] == "pass", [t for t in document["tests"] if t["status"] != "pass"]
    assert len(document["tests"]) == len(RUBRIC.items) + 1  # one per rubric item, and the summary
    # a student's installation: hidden checks and the answer key are pending (score 0, not failures)
    # Classroom's points are the assignment's points earned so far; the bonus is reported apart
    public_auto = sum(i.points for i in RUBRIC.items if i.kind == "check" and i.visibility == "public" and not i.bonus)
    assert sum(t["score"] for t in document["tests"]) == pytest.approx(public_auto)


# --- the template's own self-check, run as a student runs it ------------------------------------

def student_pytest(folder: Path, junit: Path) -> tuple[subprocess.CompletedProcess, dict[str, tuple[str, str]]]:
    """`pytest` in the template repository with the engine of this environment and nothing of the
    staff's. Returns the run and, per rubric item, (outcome, message)."""
    # The reader's language stays (the TA's report below is in it); nothing else of the grader's.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADER_", "PYTEST_")) or k == "GRADER_LANG"}
    env["GRADER_STAFF_DIR"] = "none"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        item = re.fullmatch(r"test_rubric_item\[(.+)\]", case.get("name")).group(1)
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcomes[item] = (kind, element.get("message") or "")
                break
        else:
            outcomes[item] = ("passed", "")
    return done, outcomes


@pytest.mark.notebook
def test_the_self_check_passes_on_the_reference_solution(exported, tmp_path):
    folder = solved_copy(exported, tmp_path / "repo")
    done, outcomes = student_pytest(folder, tmp_path / "junit.xml")
    assert done.returncode == 0, done.stdout[-4000:]
    assert set(outcomes) == {i.id for i in RUBRIC.items}
    skipped = {item for item, (kind, _) in outcomes.items() if kind == "skipped"}
    # skipped: what a student's installation cannot decide (hidden checks, answer keys, a TA's items)
    assert skipped == {i.id for i in RUBRIC.items if i.visibility == "hidden" or i.kind in ("question", "manual")}
    assert all(kind in ("passed", "skipped") for kind, _ in outcomes.values())
    assert (folder / "grade-out" / "feedback.html").is_file()


@pytest.mark.notebook
def test_the_self_check_fails_the_blank_template_with_the_ta_reports_messages_and_hints(exported, tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    done, outcomes = student_pytest(exported, tmp_path / "junit.xml")
    assert done.returncode == 1
    # The TA's report of the same notebook (the staff's installation).
    ta = grade_submission(TEMPLATE, tmp_path / "ta", GradeOptions(assignment=ASSIGNMENT, seed=3))
    assert ta["status"] == "graded"
    for check in ta["checks"]:
        kind, message = outcomes[check["id"]]
        item = RUBRIC.item(check["id"])
        if item.visibility == "hidden" or item.kind == "manual":
            assert kind == "skipped", (check["id"], kind, message)
            continue
        assert check["status"] == "fail"
        assert kind == "failure", (check["id"], kind, message)
        assert check["message"] in message and check["hint"] and check["hint"] in message, (check, message)
    failed = [item for item, (kind, _) in outcomes.items() if kind == "failure"]
    assert len(failed) == sum(1 for i in RUBRIC.items if i.visibility == "public" and i.kind != "manual")
