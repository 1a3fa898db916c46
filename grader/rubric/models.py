"""Pydantic models of a rubric YAML. Unknown keys are errors (`extra="forbid"`), so a typo in a
rubric is caught when it is loaded, reported as `dotted.path: message`.

Two grids, as on the course sheet:

* a weekly assignment: every item carries a criterion, and the criteria split the points
  40/30/20/10 (implementation / theory / experiments / code_quality);
* the midterm: `groups:` (basic implementation 60 / applied work 25 / analysis 15), every item
  names its `group:` and still carries a criterion, so the feedback can show both views. The
  items of a group add up to the group's points and the groups to the rubric's; the 40/30/20/10
  split is not required.

Bonus items are reported apart from the assignment's points (and from the groups): at most
`bonus_max`, itself at most SHEET_BONUS_MAX_POINTS (the sheet: "up to 5 bonus points").
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

Criterion = Literal["implementation", "theory", "experiments", "code_quality"]
CRITERIA: tuple[str, ...] = ("implementation", "theory", "experiments", "code_quality")
# The course sheet's weights: every assignment is judged on these four criteria.
CRITERION_WEIGHTS_PERCENT = {"implementation": 40, "theory": 30, "experiments": 20, "code_quality": 10}
# The sheet: each assignment's "extra challenges" earn up to 5 bonus points ("최대 5점 가산점").
SHEET_BONUS_MAX_POINTS = 5.0
_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Localized(_Strict):
    """Text in the course's languages (`en` required: it is the fallback)."""

    en: str
    ko: str = ""


# A plain string (the same in every language) or {en: ..., ko: ...}.
LocalizedText = Union[str, Localized]


class Tolerance(_Strict):
    atol: float = Field(1e-4, ge=0)
    rtol: float = Field(1e-4, ge=0)


class Group(_Strict):
    """A part of a rubric with its own points (the midterm's basic / applied / analysis)."""

    id: str = Field(pattern=_ID_PATTERN)
    title: LocalizedText
    points: float = Field(gt=0)


class _ItemBase(_Strict):
    id: str = Field(pattern=_ID_PATTERN)
    title: LocalizedText
    criterion: Criterion
    group: str | None = None  # the id of one of the rubric's groups (rubrics with groups only)
    points: float = Field(gt=0)
    bonus: bool = False
    visibility: Literal["public", "hidden"] = "public"
    hint: LocalizedText = ""


class CheckItem(_ItemBase):
    """Decided by a check of the assignment's check module (public) or of the staff's hidden checks."""

    kind: Literal["check"] = "check"
    check: str
    tolerance: Tolerance | None = None


class NumberQuestion(_Strict):
    type: Literal["number"]
    key: str
    tolerance: float = Field(0.0, ge=0)


class ChoiceQuestion(_Strict):
    type: Literal["choice"]
    key: str
    options: list[str] = Field(min_length=2)


class QuestionItem(_ItemBase):
    """A concept question with an auto-checkable answer; the answer key is staff data."""

    kind: Literal["question"]
    question: Annotated[Union[NumberQuestion, ChoiceQuestion], Field(discriminator="type")]


class ManualItem(_ItemBase):
    """A free-text answer judged by a TA: reported as pending, never as 0."""

    kind: Literal["manual"]
    answer_tag: str
    guidance: LocalizedText


Item = Annotated[Union[CheckItem, QuestionItem, ManualItem], Field(discriminator="kind")]


def _problem(loc: tuple, message: str, value) -> InitErrorDetails:
    # `message` goes in as a parameter: a rubric's text never acts as a format string.
    return InitErrorDetails(type=PydanticCustomError("rubric_points", "{message}", {"message": message}),
                            loc=loc, input=value)


class Rubric(_Strict):
    assignment: str
    title: str
    points: float = Field(gt=0)
    bonus_max: float = Field(0, ge=0, le=SHEET_BONUS_MAX_POINTS)
    groups: Annotated[list[Group], Field(min_length=1)] | None = None
    items: list[Item] = Field(min_length=1)

    @model_validator(mode="after")
    def _points_add_up(self) -> "Rubric":
        ids = [item.id for item in self.items]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate item ids: {', '.join(duplicates)}")
        if self.groups:
            self._groups_add_up()
        else:
            stray = [_problem(("items", n, "group"), "the rubric declares no groups: declare them under "
                              "`groups:` or leave `group` out", item.group)
                     for n, item in enumerate(self.items) if item.group is not None]
            if stray:
                raise ValidationError.from_exception_data(type(self).__name__, stray)
            for criterion in CRITERIA:
                expected = self.points * CRITERION_WEIGHTS_PERCENT[criterion] / 100
                total = sum(i.points for i in self.items if i.criterion == criterion and not i.bonus)
                if not math.isclose(total, expected, abs_tol=1e-6):
                    raise ValueError(
                        f"{criterion} items add up to {total:g} points, but {CRITERION_WEIGHTS_PERCENT[criterion]}% "
                        f"of {self.points:g} is {expected:g}"
                    )
        bonus_total = sum(i.points for i in self.items if i.bonus)
        if bonus_total > self.bonus_max + 1e-9:
            raise ValueError(f"bonus items add up to {bonus_total:g} points, more than bonus_max {self.bonus_max:g}")
        return self

    def _groups_add_up(self) -> None:
        """Every problem of the groups at once, each at its own `dotted.path`."""
        assert self.groups
        problems: list[InitErrorDetails] = []
        known = [g.id for g in self.groups]
        for n, group in enumerate(self.groups):
            if known.index(group.id) != n:
                problems.append(_problem(("groups", n, "id"), f"duplicate group id {group.id!r}", group.id))
        listing = ", ".join(known)
        for n, item in enumerate(self.items):
            if item.bonus:
                if item.group is not None:
                    problems.append(_problem(("items", n, "group"), "a bonus item is reported apart from the "
                                             "groups: leave `group` out", item.group))
            elif item.group is None:
                problems.append(_problem(("items", n, "group"), f"missing: every item of a rubric with groups "
                                         f"names its group (one of: {listing})", None))
            elif item.group not in known:
                problems.append(_problem(("items", n, "group"), f"unknown group {item.group!r} (the groups are: "
                                         f"{listing})", item.group))
        for n, group in enumerate(self.groups):
            if known.index(group.id) != n:
                continue
            total = sum(i.points for i in self.items if i.group == group.id and not i.bonus)
            if not math.isclose(total, group.points, abs_tol=1e-6):
                problems.append(_problem(("groups", n, "points"), f"{group.id} items add up to {total:g} points, "
                                         f"but the group has {group.points:g}", group.points))
        group_total = sum(g.points for g in self.groups)
        if not math.isclose(group_total, self.points, abs_tol=1e-6):
            problems.append(_problem(("points",), f"the groups add up to {group_total:g} points, but the rubric "
                                     f"has {self.points:g}", self.points))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)

    def item(self, item_id: str):
        return next(i for i in self.items if i.id == item_id)

    def group(self, group_id: str) -> Group:
        return next(g for g in self.groups or [] if g.id == group_id)
