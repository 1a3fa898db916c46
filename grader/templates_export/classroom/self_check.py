"""자가 점검 / Self-check.

이 저장소에서 `pytest`를 실행하면, 과목의 채점 엔진(grader)이 노트북을 smoke 프로필(작은 크기, CPU)로
샌드박스에서 실행하고 공개 검사를 모두 판정합니다. 루브릭 항목 하나가 테스트 하나이며, 실패 메시지와
힌트는 조교의 채점 보고서와 같습니다. 비공개 검사, 이론 문제의 정답 확인, 조교가 채점하는 서술형 답은
여기서 판정할 수 없으므로 실패가 아니라 건너뜀(skipped)으로 표시됩니다. 보고서는 grade-out/feedback.html.

Run `pytest` in this repository: the course's grading engine runs the notebook in its sandbox in
the smoke profile (small sizes, CPU) and decides every public check. One rubric item is one test,
and its failure message and hint are those of the TA's report. Hidden checks, the answer key of
the theory questions and the free-text answers a TA reads cannot be decided here: they show as
skipped, not failed. The full report is grade-out/feedback.html.

`pytest -m "not bonus"` leaves out the bonus items.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = json.loads((ROOT / ".grader" / "assignment.json").read_text(encoding="utf-8"))
# A student's machine: no reference solution and no hidden checks (the engine then judges the
# public checks against the expected outputs it ships with). The rubric travels with this repository.
os.environ.setdefault("GRADER_STAFF_DIR", "none")
os.environ.setdefault("GRADER_RUBRICS_DIR", str(ROOT / ".grader" / "rubrics"))
OUT = Path(os.environ.get("SELF_CHECK_OUT") or ROOT / "grade-out")


def _items() -> list:
    import yaml

    rubric = yaml.safe_load((ROOT / ".grader" / "rubrics" / f"{CONFIG['assignment']}.yaml").read_text(encoding="utf-8"))
    params = []
    for item in rubric["items"]:
        marks = [getattr(pytest.mark, item["criterion"])]
        if item.get("bonus"):
            marks.append(pytest.mark.bonus)
        if item.get("visibility") == "hidden":
            marks.append(pytest.mark.hidden)
        params.append(pytest.param(item["id"], marks=marks, id=item["id"]))
    return params


@pytest.fixture(scope="session")
def graded() -> dict:
    """Grade this repository's notebook and result folders once, as the course grader would."""
    from grader.pipeline import GradeOptions, grade_submission

    # Only what is submitted: the notebook and the result folders (not .git, a virtual environment...).
    with tempfile.TemporaryDirectory(prefix="self-check-") as tmp:
        staged = Path(tmp) / "submission"
        staged.mkdir()
        notebook = ROOT / CONFIG["notebook"]
        if notebook.is_file():
            shutil.copy2(notebook, staged / notebook.name)
        for folder in CONFIG["artifact_dirs"]:
            if (ROOT / folder).is_dir():
                shutil.copytree(ROOT / folder, staged / folder,
                                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        options = {"assignment": CONFIG["assignment"], "profile": "smoke",
                   "sandbox": os.environ.get("GRADER_SANDBOX", "local"),
                   "cell_timeout_s": float(os.environ.get("SELF_CHECK_CELL_TIMEOUT", 300)),
                   "timeout_s": float(os.environ.get("SELF_CHECK_TIMEOUT", 900))}
        lang = os.environ.get("GRADER_LANG") or CONFIG.get("lang")  # the course's, as the TA's report
        if lang and "lang" in GradeOptions.__dataclass_fields__:
            options["lang"] = lang
        result = grade_submission(staged, OUT, GradeOptions(**options))
    result["by_id"] = {check["id"]: check for check in result.get("checks", [])}
    return result


@pytest.mark.parametrize("item_id", _items())
def test_rubric_item(graded: dict, item_id: str) -> None:
    if graded["status"] != "graded":
        pytest.fail(f"채점되지 않았습니다 / not graded ({graded['status']}): {graded.get('reason')}", pytrace=False)
    check = graded["by_id"].get(item_id)
    if check is None:
        pytest.fail(f"채점 결과에 {item_id} 항목이 없습니다 / the result has no item {item_id}", pytrace=False)
    title = check.get("title") or item_id
    if check["status"] == "pass":
        return
    if check["status"] == "pending":
        what = "비공개 검사 / hidden check" if check.get("visibility") == "hidden" else "보류 / pending"
        pytest.skip(f"{what}: {title}: {check.get('message') or '과목 채점기가 판정합니다 / judged by the course grader'}")
    if check.get("visibility") == "hidden":
        pytest.fail(f"{title}: {check['status']} (비공개 검사 / hidden check)", pytrace=False)
    lines = [f"{title} ({check['score']:g}/{check['max_score']:g}): {check.get('message') or check['status']}"]
    if check.get("hint"):
        lines.append(f"힌트 / hint: {check['hint']}")
    if check.get("cell"):
        lines.append(f"셀 / cell: {check['cell']}")
    pytest.fail("\n".join(lines), pytrace=False)
