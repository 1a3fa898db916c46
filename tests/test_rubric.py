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


# --- two grids: rubrics with groups (the midterm's 60/25/15) ------------------------------------

GROUPS = Path(__file__).resolve().parent / "data" / "rubric-midterm-groups.yaml"


def _groups_data() -> dict:
    return yaml.safe_load(GROUPS.read_text(encoding="utf-8"))


def _problems(tmp_path: Path, data: dict) -> list[str]:
    with pytest.raises(RubricError) as info:
        load_rubric(_write(tmp_path, data))
    return info.value.problems


def test_a_rubric_with_groups_validates_without_the_40_30_20_10_split():
    rubric = load_rubric(GROUPS)
    assert [(g.id, g.points) for g in rubric.groups] == [("basic", 60), ("applied", 25), ("analysis", 15)]
    by_criterion = {c: sum(i.points for i in rubric.items if i.criterion == c) for c in CRITERIA}
    assert by_criterion == {"implementation": 50, "theory": 10, "experiments": 30, "code_quality": 10}
    assert {i.group for i in rubric.items} == {"basic", "applied", "analysis"}


def test_every_weekly_rubric_keeps_validating_without_groups():
    for path in sorted((RUBRIC.parent).glob("*.yaml")):
        rubric = load_rubric(path)
        if rubric.assignment != "w8-midterm":
            assert rubric.groups is None and all(i.group is None for i in rubric.items), path.name
            assert rubric.bonus_max <= 5, path.name


def test_a_group_whose_items_do_not_add_up_names_the_group_by_its_dotted_path(tmp_path):
    data = _groups_data()
    data["items"][4]["points"] = 5  # applied: 15 + 5 = 20, but the group has 25
    problems = _problems(tmp_path, data)
    assert "groups.1.points: applied items add up to 20 points, but the group has 25" in problems


def test_groups_that_do_not_add_up_to_the_rubric_are_refused(tmp_path):
    data = _groups_data()
    data["points"] = 90
    assert "points: the groups add up to 100 points, but the rubric has 90" in _problems(tmp_path, data)


def test_unknown_missing_and_duplicate_groups_are_each_reported_where_they_are(tmp_path):
    data = _groups_data()
    data["items"][0]["group"] = "basics"
    del data["items"][3]["group"]
    data["groups"].append({"id": "basic", "title": "again", "points": 1})
    problems = _problems(tmp_path, data)
    assert "items.0.group: unknown group 'basics' (the groups are: basic, applied, analysis, basic)" in problems
    assert any(p.startswith("items.3.group: missing: every item of a rubric with groups names its group")
               for p in problems)
    assert "groups.3.id: duplicate group id 'basic'" in problems


def test_a_group_field_without_groups_and_a_bonus_item_in_a_group_are_refused(tmp_path):
    weekly = _data()
    weekly["items"][0]["group"] = "basic"
    assert any(p.startswith("items.0.group: the rubric declares no groups") for p in _problems(tmp_path, weekly))
    data = _groups_data()
    data["bonus_max"] = 2
    data["items"].append({"id": "bonus-x", "kind": "check", "check": "x", "group": "basic", "bonus": True,
                          "criterion": "implementation", "points": 2, "title": "x"})
    assert "items.6.group: a bonus item is reported apart from the groups: leave `group` out" in _problems(
        tmp_path, data)


def test_bonus_max_is_capped_as_the_sheet_says(tmp_path):
    data = _data()
    data["bonus_max"] = 6
    assert any(p.startswith("bonus_max: Input should be less than or equal to 5") for p in _problems(tmp_path, data))


def test_a_typo_in_a_group_is_reported_with_its_dotted_path(tmp_path):
    data = _groups_data()
    data["groups"][2]["pionts"] = 15
    assert "groups.2.pionts: Extra inputs are not permitted" in _problems(tmp_path, data)


def test_score_of_a_rubric_with_groups_adds_the_group_view():
    rubric = load_rubric(GROUPS)
    checks = [{"id": "basic-attention", "status": "pass", "score": 30.0},
              {"id": "basic-enc-dec", "status": "fail", "score": 0.0},
              {"id": "basic-theory", "status": "pass", "score": 10.0},
              {"id": "applied-training", "status": "pass", "score": 12.5},
              {"id": "applied-code", "status": "pass", "score": 10.0},
              {"id": "analysis-report", "status": "pending", "score": 0.0}]
    totals = score(rubric, checks)
    assert totals["score"] == 30 + 10 + 12.5 + 10
    assert list(totals["groups"]) == ["basic", "applied", "analysis"]
    assert totals["groups"]["basic"] == {"title": {"en": "Basic implementation", "ko": "기본 구현"}, "score": 40.0,
                                         "max_score": 60.0, "pending": 0.0,
                                         "items": ["basic-attention", "basic-enc-dec", "basic-theory"]}
    assert totals["groups"]["applied"]["score"] == 22.5
    assert totals["groups"]["analysis"] == {**totals["groups"]["analysis"], "score": 0.0, "max_score": 15.0,
                                            "pending": 15.0}
    # the criteria view of the same checks
    assert totals["criteria"]["experiments"] == {"score": 12.5, "max_score": 30.0, "pending": 15.0}
    # a weekly rubric's totals have no groups (result.json is extended only where it applies)
    weekly = load_rubric(RUBRIC)
    assert "groups" not in score(weekly, [{"id": i.id, "status": "pass", "score": i.points} for i in weekly.items])


def test_validate_rubric_prints_each_group_problem_and_exits_2(tmp_path):
    from typer.testing import CliRunner

    from grader.cli import app

    data = _groups_data()
    data["items"][4]["points"] = 5
    path = _write(tmp_path, data)
    done = CliRunner().invoke(app, ["validate-rubric", str(path)], env={"COLUMNS": "400"})
    assert done.exit_code == 2
    line = " ".join(done.output.split())  # rich may wrap a long path
    assert f"{path}: groups.1.points: applied items add up to 20 points, but the group has 25" in line
    ok = CliRunner().invoke(app, ["validate-rubric", str(GROUPS)])
    assert ok.exit_code == 0 and "100 points" in ok.output
