"""JUnit XML for CI systems other than Classroom (GitLab, Jenkins, Azure, ...).

    <testsuites name="grader" tests failures errors skipped time>
      <testsuite name="<assignment>" tests failures errors skipped time timestamp>
        <properties>  assignment, status, score, max_score, bonus, bonus_max, total, pending,
                      bonus_pending, judged_with, grader_version, criterion.<c>.score / max_score /
                      pending, and group.<g>.score / max_score / pending (a rubric with groups)
        <testcase classname="<assignment>.<criterion>" name="<item id>" time="0">
          <properties>  title, criterion, status, score, max_score, visibility, bonus, pending
          <failure message type="fail"> (or <error type="error">, or <skipped> for a pending item)

One test case per rubric item; points are properties (JUnit has no notion of points). The policy
on bonus and pending points (grader.rubric.policy): `total` is the assignment's points earned so
far, result.json's `score` -- the bonus is apart (`bonus`, of at most `bonus_max`) and pending
points are not in it (`pending`, `bonus_pending`; a pending test case is skipped and carries
its points as `pending`). So the sum of the `score` properties of the test cases that are not
bonus equals `total`. A rejected submission is one test case `submission` with a failure, a
grader failure one test case `grader` with an error.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from grader.formats._common import CRITERIA, check_text, graded_checks, is_hidden, total_score
from grader.rubric.policy import totals


# Characters XML 1.0 cannot hold (a traceback's ANSI colours, NULs): dropped, or the file is not XML.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text) -> str:
    return _NOT_XML.sub("", str(text))


def _number(value) -> str:
    return f"{float(value or 0.0):g}"


def _properties(parent: ET.Element, values: dict) -> None:
    props = ET.SubElement(parent, "properties")
    for name, value in values.items():
        if value is None:
            continue
        text = _number(value) if isinstance(value, float) else str(value).lower() if isinstance(value, bool) \
            else str(value)
        ET.SubElement(props, "property", name=name, value=_clean(text))


def to_junit(result: dict) -> ET.Element:
    """The <testsuites> element for one result.json."""
    assignment = str(result.get("assignment") or "unknown")
    duration = _number(result.get("duration_s"))
    suite = ET.Element("testsuite", name=assignment, time=duration)
    if result.get("finished_at"):
        suite.set("timestamp", str(result["finished_at"]).rstrip("Z"))
    policy = totals(result)
    suite_props = {"assignment": assignment, "title": result.get("title"), "status": result.get("status"),
                   "score": float(result.get("score") or 0.0), "max_score": float(result.get("max_score") or 0.0),
                   "bonus": policy.bonus if policy.graded else float(result.get("bonus") or 0.0),
                   "bonus_max": float(result.get("bonus_max") or 0.0),
                   "total": total_score(result), "pending": policy.pending, "bonus_pending": policy.bonus_pending,
                   "judged_with": result.get("judged_with"), "grader_version": result.get("grader_version")}
    for criterion in CRITERIA:
        values = (result.get("criteria") or {}).get(criterion)
        if values:
            for key in ("score", "max_score", "pending"):
                suite_props[f"criterion.{criterion}.{key}"] = float(values.get(key) or 0.0)
    groups = result.get("groups") if isinstance(result.get("groups"), dict) else {}
    for group, values in groups.items():
        if isinstance(values, dict):
            for key in ("score", "max_score", "pending"):
                suite_props[f"group.{group}.{key}"] = float(values.get(key) or 0.0)
    _properties(suite, suite_props)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    checks = graded_checks(result)
    if not checks:
        rejected = result.get("status") == "rejected"
        case = ET.SubElement(suite, "testcase", classname=assignment, name="submission" if rejected else "grader",
                             time=duration)
        reason = _clean(result.get("reason") or "the grader produced no result")
        kind = "failure" if rejected else "error"
        element = ET.SubElement(case, kind, message=reason, type="rejected" if rejected else "error")
        element.text = reason
        counts["tests"] = 1
        counts["failures" if rejected else "errors"] = 1
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"{assignment}.{check.get('criterion')}",
                             name=_clean(check["id"]), time="0")
        _properties(case, {"title": check.get("title"), "criterion": check.get("criterion"),
                           "status": check.get("status"), "score": float(check.get("score") or 0.0),
                           "max_score": float(check.get("max_score") or 0.0),
                           "visibility": check.get("visibility"), "bonus": bool(check.get("bonus")),
                           "pending": float(check.get("max_score") or 0.0) if check.get("status") == "pending"
                           else None})
        counts["tests"] += 1
        status = check.get("status")
        text = _clean(check_text(check, lang=result.get("lang")))
        message = text.splitlines()[0] if text else ("hidden check" if is_hidden(check) else status or "")
        if status == "fail":
            element = ET.SubElement(case, "failure", message=message, type="fail")
            element.text = text
            counts["failures"] += 1
        elif status == "error":
            element = ET.SubElement(case, "error", message=message, type="error")
            element.text = text
            counts["errors"] += 1
        elif status == "pending":
            ET.SubElement(case, "skipped", message=f"pending: {message}")
            counts["skipped"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    root = ET.Element("testsuites", name="grader", time=duration, **{k: str(v) for k, v in counts.items()})
    root.append(suite)
    return root


def to_junit_xml(result: dict) -> str:
    root = to_junit(result)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
