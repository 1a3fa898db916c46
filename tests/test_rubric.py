"""Rubric loading: validation errors are reported as `dotted.path: message`."""

from pathlib import Path

import pytest
import yaml

from grader.errors import RubricError, UsageError
from grader.rubric import load_rubric, score
from grader.rubric.models import CRITERIA

RUBRIC = Path(__file__).resolve().parents[1] / "rubrics" / "w6-self-attention.yaml"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "rubric.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _data() -> dict:
    return yaml.safe_load(RUBRIC.read_text(encoding="utf-8"))


def test_the_w6_rubric_is_valid_and_weighted_40_30_20_10():
    rubric = load_rubric(RUBRIC)
    totals = {c: sum(i.points for i in rubric.items if i.criterion == c and not i.bonus) for c in CRITERIA}
    assert totals == {"implementation": 12, "theory": 9, "experiments": 6, "code_quality": 3}
    assert sum(i.points for i in rubric.items if i.bonus) == 5 == rubric.bonus_max
    kinds = {i.kind for i in rubric.items if i.criterion == "theory"}
    assert kinds == {"question", "manual"}


def test_a_typo_in_an_item_key_is_reported_with_its_dotted_path(tmp_path):
    data = _data()
    data["items"][2]["hnt"] = data["items"][2].pop("hint")
    with pytest.raises(RubricError) as info:
        load_rubric(_write(tmp_path, data))
    assert "items.2.hnt: Extra inputs are not permitted" in info.value.problems


def test_an_unknown_top_level_key_and_a_bad_criterion_are_both_reported(tmp_path):
    data = _data()
    data["bonus_maximum"] = 5
    data["items"][0]["criterion"] = "implementaton"
    with pytest.raises(RubricError) as info:
        load_rubric(_write(tmp_path, data))
    problems = "\n".join(info.value.problems)
    assert "bonus_maximum: Extra inputs are not permitted" in problems
    assert "items.0.criterion:" in problems


def test_weights_that_do_not_add_up_are_refused(tmp_path):
    data = _data()
    data["items"][0]["points"] = 2.5
    with pytest.raises(RubricError) as info:
        load_rubric(_write(tmp_path, data))
    assert any("implementation items add up to 13 points, but 40% of 30 is 12" in p for p in info.value.problems)


def test_a_nested_question_typo_names_the_question_field(tmp_path):
    data = _data()
    question = next(i for i in data["items"] if i["kind"] == "question")
    question["question"]["tolerence"] = 1
    with pytest.raises(RubricError) as info:
        load_rubric(_write(tmp_path, data))
    assert any(p.endswith("question.tolerence: Extra inputs are not permitted") for p in info.value.problems)


def test_broken_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("items: [\n", encoding="utf-8")
    with pytest.raises(RubricError):
        load_rubric(path)
    with pytest.raises(UsageError):
        load_rubric(tmp_path / "absent.yaml")


def test_score_separates_bonus_and_counts_pending_manual_points():
    rubric = load_rubric(RUBRIC)
    checks = []
    for item in rubric.items:
        status = "pending" if item.kind == "manual" else "pass"
        checks.append({"id": item.id, "status": status, "score": 0.0 if status == "pending" else item.points})
    totals = score(rubric, checks)
    assert totals["score"] == 30 - 5  # the five manual points are pending, not earned and not lost
    assert totals["bonus"] == 5
    assert totals["criteria"]["theory"] == {"score": 6.0, "max_score": 9.0, "pending": 3.0}
    assert totals["criteria"]["experiments"]["pending"] == 2.0
