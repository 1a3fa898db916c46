"""One policy for bonus and pending points, for every output that shows a total.

The course sheet gives each weekly assignment "up to 5 bonus points" from its extra challenges,
and free-text answers (and, on a student's installation, hidden checks) are decided later by a
TA or by the course grader. Read naively, a result of 25 automatic points + 5 bonus points with
5 manual points still pending looks like 30/30, full marks, and a later review lifts it to 35/30.
So everywhere (the feedback report, the gradebook, the phase grade, Classroom, Gradescope, JUnit):

* the **total** is the assignment's points earned so far (`result.json` `score`), out of its
  points (`max_score`); bonus is never in it;
* the **bonus** is reported apart, capped at the rubric's `bonus_max`, itself at most
  SHEET_BONUS_MAX_POINTS;
* **pending** points (items awaiting a TA or a decision) are shown as pending next to every
  total: neither earned nor lost.

`totals(result)` reads these numbers from a result.json dict the same way for every output;
`summary_text(result, lang)` is the one line a platform shows beside its points.
"""

from __future__ import annotations

from dataclasses import dataclass

from grader.report import finite_number as _number
from grader.report import fmt_points as _points
from grader.rubric.models import SHEET_BONUS_MAX_POINTS

__all__ = ["SHEET_BONUS_MAX_POINTS", "Totals", "totals", "summary_text", "item_note"]


@dataclass(frozen=True)
class Totals:
    """A result's points as the policy counts them. Not graded (rejected, error): `graded` is
    False and every number is 0 -- a caller shows the status, never these zeros as a mark."""

    graded: bool
    score: float            # the assignment's points earned so far; bonus apart, pending not in it
    max_score: float        # the assignment's points
    pending: float          # points of items awaiting a TA or a decision (not bonus)
    bonus: float            # bonus earned, capped at bonus_max
    bonus_max: float        # the cap: the rubric's bonus_max, at most SHEET_BONUS_MAX_POINTS
    bonus_pending: float    # bonus points still awaiting a decision (within the cap)


def totals(result: dict) -> Totals:
    """The policy's numbers of one result.json dict (missing or malformed fields count as 0)."""
    result = result if isinstance(result, dict) else {}
    graded = result.get("status") == "graded"
    max_score = _number(result.get("max_score")) or 0.0
    if not graded:
        return Totals(False, 0.0, max_score, 0.0, 0.0, 0.0, 0.0)
    checks = [c for c in result.get("checks") or [] if isinstance(c, dict)]
    criteria = result.get("criteria") if isinstance(result.get("criteria"), dict) else {}
    if criteria:
        pending = sum(_number(c.get("pending")) or 0.0 for c in criteria.values() if isinstance(c, dict))
    else:
        pending = sum(_number(c.get("max_score")) or 0.0 for c in checks
                      if c.get("status") == "pending" and not c.get("bonus"))
    declared = _number(result.get("bonus_max"))
    cap = min(declared if declared is not None else SHEET_BONUS_MAX_POINTS, SHEET_BONUS_MAX_POINTS)
    bonus = min(max(_number(result.get("bonus")) or 0.0, 0.0), cap)
    bonus_pending = sum(_number(c.get("max_score")) or 0.0 for c in checks
                        if c.get("status") == "pending" and c.get("bonus"))
    bonus_pending = min(bonus_pending, max(cap - bonus, 0.0))
    return Totals(True, round(_number(result.get("score")) or 0.0, 4), max_score, round(pending, 4),
                  round(bonus, 4), round(cap, 4), round(bonus_pending, 4))


def summary_text(result: dict, lang: str | None = None) -> str:
    """One line beside a platform's points: "25 / 30 points; 5 points pending review, not in the
    total; bonus 5 / 5, counted apart from the total" (in `lang`, default English)."""
    from grader.i18n import LANGUAGES, msg

    lang = lang if lang in LANGUAGES else "en"
    t = totals(result)
    parts = [msg("policy.points", score=_points(t.score), max_score=_points(t.max_score)).render(lang)]
    if t.pending > 0:
        parts.append(msg("policy.pending", points=_points(t.pending)).render(lang))
    if t.bonus_max > 0 or t.bonus > 0:
        parts.append(msg("policy.bonus_apart", bonus=_points(t.bonus), bonus_max=_points(t.bonus_max)).render(lang))
    if t.bonus_pending > 0:
        parts.append(msg("policy.bonus_pending", points=_points(t.bonus_pending)).render(lang))
    return "; ".join(parts)


def item_note(check: dict, lang: str | None = None) -> str:
    """What a platform adds to a bonus or a pending item's name: that its points are apart from,
    or not yet in, the total. Empty for an ordinary decided item."""
    from grader.i18n import LANGUAGES, msg

    lang = lang if lang in LANGUAGES else "en"
    points = _number(check.get("max_score")) or 0.0
    if check.get("status") == "pending":
        key = "policy.item_bonus_pending" if check.get("bonus") else "policy.item_pending"
        return msg(key, points=_points(points)).render(lang)
    if check.get("bonus"):
        return msg("policy.item_bonus", score=_points(_number(check.get("score")) or 0.0),
                   max_score=_points(points)).render(lang)
    return ""
