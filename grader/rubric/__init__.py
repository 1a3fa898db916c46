"""Rubric stage: load a rubric (validated) and turn check verdicts into scores per criterion."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from grader import yamlio

from grader.errors import RubricError, UsageError
from grader.rubric.models import CRITERIA, Rubric

__all__ = ["Rubric", "load_rubric", "score"]


_ITEM_TAGS = {"check", "question", "manual"}
_QUESTION_TAGS = {"number", "choice"}


def _dotted(loc: tuple) -> str:
    """`items.3.hint` from pydantic's location, without the union tags pydantic inserts
    (`items.3.check.hint`, `items.5.question.question.number.key`)."""
    parts: list[str] = []
    previous = None
    for part in loc:
        is_tag = (isinstance(previous, int) and part in _ITEM_TAGS) or (previous == "question" and part in _QUESTION_TAGS)
        if not is_tag:
            parts.append(str(part))
        previous = None if is_tag else part
    return ".".join(parts) or "(top level)"


def load_rubric(path: Path) -> Rubric:
    """Read and validate a rubric file; every problem is reported as `dotted.path: message`."""
    if not path.is_file():
        raise UsageError(f"no rubric at {path}")
    try:
        data = yamlio.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RubricError(str(path), [f"(yaml): {exc}"]) from None
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            problems.append(f"{_dotted(err['loc'])}: {err['msg']}")
        raise RubricError(str(path), problems) from None


def _plain_title(value) -> str | dict:
    """A rubric text as plain data for result.json: a string, or {en, ko}."""
    return value.model_dump() if hasattr(value, "model_dump") else str(value)


def score(rubric: Rubric, checks: list[dict]) -> dict:
    """Totals from per-item results (`checks` as in result.json): score, bonus, criteria with pending,
    and, for a rubric with groups (the midterm), `groups`: {id: {title, score, max_score, pending,
    items}} in the rubric's order (`items`: the ids of the group's items, so that a report can show
    the group view). Bonus is apart from the score, the criteria and the groups, capped at
    bonus_max (grader.rubric.policy)."""
    criteria = {c: {"score": 0.0, "max_score": 0.0, "pending": 0.0} for c in CRITERIA}
    groups = {g.id: {"title": _plain_title(g.title), "score": 0.0, "max_score": 0.0, "pending": 0.0,
                     "items": [i.id for i in rubric.items if i.group == g.id and not i.bonus]}
              for g in rubric.groups or []}
    total = bonus = 0.0
    for check in checks:
        item = rubric.item(check["id"])
        if item.bonus:
            bonus += check["score"]
            continue
        entries = [criteria[item.criterion]] + ([groups[item.group]] if item.group in groups else [])
        for entry in entries:
            entry["max_score"] += item.points
            entry["score"] += check["score"]
            if check["status"] == "pending":
                entry["pending"] += item.points
        total += check["score"]
    for entry in (*criteria.values(), *groups.values()):
        for key in ("score", "max_score", "pending"):
            entry[key] = round(entry[key], 4)
    totals = {
        "score": round(total, 4),
        "max_score": rubric.points,
        "bonus": round(min(bonus, rubric.bonus_max), 4),
        "bonus_max": rubric.bonus_max,
        "criteria": criteria,
    }
    if groups:
        totals["groups"] = groups
    return totals
