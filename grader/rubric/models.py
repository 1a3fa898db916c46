"""Pydantic models of a rubric YAML. Unknown keys are errors (`extra="forbid"`), so a typo in a
rubric is caught when it is loaded, reported as `dotted.path: message`."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Criterion = Literal["implementation", "theory", "experiments", "code_quality"]
CRITERIA: tuple[str, ...] = ("implementation", "theory", "experiments", "code_quality")
# The course sheet's weights: every assignment is judged on these four criteria.
CRITERION_WEIGHTS_PERCENT = {"implementation": 40, "theory": 30, "experiments": 20, "code_quality": 10}


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


class _ItemBase(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: LocalizedText
    criterion: Criterion
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


class Rubric(_Strict):
    assignment: str
    title: str
    points: float = Field(gt=0)
    bonus_max: float = Field(0, ge=0)
    items: list[Item] = Field(min_length=1)

    @model_validator(mode="after")
    def _points_add_up(self) -> "Rubric":
        ids = [item.id for item in self.items]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate item ids: {', '.join(duplicates)}")
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

    def item(self, item_id: str):
        return next(i for i in self.items if i.id == item_id)
