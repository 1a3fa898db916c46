"""GitHub Classroom: the JSON that `classroom-resources/autograding-grading-reporter@v1` reads.

The reporter takes, for each runner id listed in its `runners` input, the environment variable
`<ID upper-cased>_RESULTS` (hyphens kept), base64-decodes it and parses this JSON:

    {"version": 1, "status": "pass" | "fail" | "error", "max_score": N,
     "tests": [{"name", "status", "score", "message", "test_code", "filename", "line_no", "duration"}]}

Classroom's points are the sum of the tests' `score`s out of `max_score`, and the job fails when
`status` is "fail" or "error". Mapping (documented in the README of an exported template):

* every rubric item of a graded result is one test, in rubric order, with its own `score`
  (fractions allowed); `max_score` is the assignment's points. The policy on bonus and pending
  points (grader.rubric.policy): Classroom shows one total, the sum of the scores, and that
  total is `score` of result.json -- never more than `max_score`:
  - a bonus item's test has score 0 and its name says what it earned, apart from the total
    ("bonus-flash: Flash attention (bonus: 2 / 2 points, counted apart from the total)");
  - a pending item (a free-text answer awaiting a TA; a hidden check or answer key on a
    student's installation) is not a failure: status "pass", score 0, its name says its points
    are pending and not in the total, the message starts with "pending: ";
  - a last test `summary` (status "pass", score 0) spells the total out beside Classroom's
    "Points": "summary: 25 / 30 points; 5 points pending review, not in the total; bonus 5 / 5,
    counted apart from the total" (in the result's language);
* a test's `status` is "pass" | "fail" | "error" (the check's own; a check the grader could not
  run is "error");
* the run's `status` is "error" when the grader failed, "fail" when a check failed or errored or
  the submission was rejected, else "pass";
* `tests` is never empty: a rejected submission is one "fail" test, a grader failure one "error"
  test, each with the reason as its message;
* `filename` is the graded notebook and `line_no` the notebook cell the check concerns (0 when
  it concerns no single cell); `test_code` says how to reproduce the check; `duration` is 0 for a
  check (the pipeline times the whole run) and the run's duration for a single failure test.
"""

from __future__ import annotations

import base64
import json

from grader.formats._common import check_name, check_text, graded_checks, is_hidden
from grader.rubric.policy import summary_text

VERSION = 1
TEST_FIELDS = ("name", "status", "score", "message", "test_code", "filename", "line_no", "duration")


def _notebook(result: dict) -> str:
    submission = result.get("submission") or {}
    return str(submission.get("notebook") or "")


def _test(check: dict, result: dict) -> dict:
    status = check.get("status")
    text = check_text(check, lang=result.get("lang"))
    if status == "pending":
        test_status = "pass"
        text = "pending: " + (text or "judged by the course grader")
    elif status in ("pass", "fail", "error"):
        test_status = status
    else:
        test_status = "error"
    if is_hidden(check) and status != "pending":
        text = f"hidden check: {status}"
    # The policy: bonus apart from the total, pending not in it (the name says so).
    counted = status != "pending" and not check.get("bonus")
    return {
        "name": check_name(check, result.get("lang")),
        "status": test_status,
        "score": float(check.get("score") or 0.0) if counted else 0.0,
        "message": text,
        "test_code": f"grade --assignment {result.get('assignment')} (rubric item {check['id']})",
        "filename": _notebook(result),
        "line_no": int(check.get("cell") or 0),
        "duration": 0,
    }


def to_classroom(result: dict) -> dict:
    """The Classroom reporter's JSON for one result.json."""
    max_score = float(result.get("max_score") or 0.0)
    checks = graded_checks(result)
    if not checks:
        rejected = result.get("status") == "rejected"
        graded = result.get("status") == "graded"
        reason = result.get("reason") or ("no rubric item was graded" if graded else "the grader produced no result")
        status = "fail" if rejected else "error"
        name = "submission" if rejected else "grader"
        tests = [{"name": name, "status": status, "score": 0.0,
                  "message": f"{'rejected' if rejected else 'grader failure'}: {reason}",
                  "test_code": f"grade --assignment {result.get('assignment')}", "filename": _notebook(result),
                  "line_no": 0, "duration": float(result.get("duration_s") or 0.0)}]
        return {"version": VERSION, "status": status, "max_score": max_score, "tests": tests}
    tests = [_test(check, result) for check in checks]
    failed = any(t["status"] in ("fail", "error") for t in tests)
    summary = summary_text(result, result.get("lang"))
    tests.append({"name": f"summary: {summary}", "status": "pass", "score": 0.0, "message": summary,
                  "test_code": f"grade --assignment {result.get('assignment')}", "filename": _notebook(result),
                  "line_no": 0, "duration": float(result.get("duration_s") or 0.0)})
    # The reporter sums the tests' scores: `score` of result.json, bonus apart (tests/test_policy.py).
    return {"version": VERSION, "status": "fail" if failed else "pass", "max_score": max_score, "tests": tests}


def encode(document: dict) -> str:
    """The value of the runner step's `result` output: base64 of the JSON."""
    return base64.b64encode(json.dumps(document, ensure_ascii=False).encode("utf-8")).decode("ascii")


def decode(value: str) -> dict:
    return json.loads(base64.b64decode(value).decode("utf-8"))
