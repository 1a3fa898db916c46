"""Results for platforms and CI systems, each a pure function of result.json's content:

    json        result.json itself
    classroom   GitHub Classroom's reporter JSON           grader.formats.classroom.to_classroom
    junit       JUnit XML (points as properties)           grader.formats.junit.to_junit_xml
    gradescope  Gradescope's results.json                  grader.formats.gradescope.to_gradescope

`write_format(result, fmt, target)` writes one of them: into the folder `target` under its usual
name (FILENAMES), or to `target` itself when it names a file (ends in .json / .xml).
"""

from __future__ import annotations

import json
from pathlib import Path

from grader.formats._common import error_result, total_score

FORMATS = ("json", "classroom", "junit", "gradescope")
FILENAMES = {"json": "result.json", "classroom": "classroom.json", "junit": "junit.xml",
             "gradescope": "gradescope.json"}

__all__ = ["FORMATS", "FILENAMES", "render_format", "write_format", "error_result", "total_score"]


def render_format(result: dict, fmt: str) -> str:
    """The text of `result` in the format `fmt`."""
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    if fmt == "classroom":
        from grader.formats.classroom import to_classroom

        return json.dumps(to_classroom(result), ensure_ascii=False, indent=2) + "\n"
    if fmt == "junit":
        from grader.formats.junit import to_junit_xml

        return to_junit_xml(result)
    if fmt == "gradescope":
        from grader.formats.gradescope import to_gradescope

        return json.dumps(to_gradescope(result), ensure_ascii=False, indent=2) + "\n"
    from grader.errors import UsageError

    raise UsageError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")


def write_format(result: dict, fmt: str, target: Path) -> Path:
    """Write `result` in the format `fmt` to the folder `target` (under FILENAMES[fmt]) or to the
    file `target`; atomically. Returns the path written."""
    text = render_format(result, fmt)
    target = Path(target)
    path = target if target.suffix.lower() in (".json", ".xml") and not target.is_dir() else target / FILENAMES[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
