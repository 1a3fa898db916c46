"""Grade $GRADER_SUBMISSION_DIR and write Gradescope's results.json to $GRADER_RESULTS_DIR.

Always writes a results.json, even when the engine cannot be imported or crashes: Gradescope
then shows the reason instead of a bare "autograder failed".
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


def write(results_dir: Path, document: dict) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    tmp = results_dir / "results.json.tmp"
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(results_dir / "results.json")


def what_to_grade(submission: Path) -> Path:
    """The submission folder, or the one zip in it when it holds a zip and no notebook (a student
    who uploaded the zip of their folder and Gradescope kept it as it is)."""
    if submission.is_dir() and not any(submission.rglob("*.ipynb")):
        zips = sorted(submission.glob("*.zip"))
        if len(zips) == 1:
            return zips[0]
    return submission


def main(config_path: str) -> int:
    started = time.monotonic()
    results_dir = Path(os.environ.get("GRADER_RESULTS_DIR", "/autograder/results"))
    submission = Path(os.environ.get("GRADER_SUBMISSION_DIR", "/autograder/submission"))
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        from grader.formats.gradescope import to_gradescope
        from grader.pipeline import GradeOptions, grade_submission

        known = set(GradeOptions.__dataclass_fields__)
        options = GradeOptions(**{k: v for k, v in config["options"].items() if k in known})
        with tempfile.TemporaryDirectory(prefix="grader-out-") as out:
            result = grade_submission(what_to_grade(submission), Path(out), options)
        document = to_gradescope(result, visibility=config.get("visibility", "visible"),
                                 stdout_visibility=config.get("stdout_visibility", "hidden"),
                                 hidden_visibility=config.get("hidden_visibility", "after_published"))
        print(f"{result.get('status')}: score {result.get('score')} + bonus {result.get('bonus')}"
              f" ({result.get('judged_with')}); {result.get('reason') or ''}")
    except Exception as exc:  # noqa: BLE001 - whatever happened, Gradescope gets a results.json
        traceback.print_exc()
        document = {"score": 0.0, "execution_time": int(round(time.monotonic() - started)),
                    "output": f"The autograder failed, so this submission is not graded yet: "
                              f"{type(exc).__name__}: {exc}",
                    "output_format": "md", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
    write(results_dir, document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/autograder/source/autograder.json"))
