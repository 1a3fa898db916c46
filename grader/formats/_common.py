"""Helpers shared by the platform formats: what a result.json check is, and how it reads."""

from __future__ import annotations

import time

import grader

CRITERIA = ("implementation", "theory", "experiments", "code_quality")


def is_manual(check: dict) -> bool:
    """A free-text item a TA scores (the judge gives manual items a `guidance`, others None)."""
    return check.get("guidance") is not None


def is_hidden(check: dict) -> bool:
    return check.get("visibility") == "hidden"


def total_score(result: dict) -> float:
    """What the platforms count as the total: the assignment's points earned so far, bonus apart
    and pending items not in it (grader.rubric.policy); 0 for a result that was not graded."""
    from grader.rubric.policy import totals

    return totals(result).score


def check_name(check: dict, lang: str | None = None) -> str:
    """`<id>: <title>`, and for a bonus or pending item what the policy says of its points
    ("bonus: 2 / 2 points, counted apart from the total", "pending: 2 points ...")."""
    from grader.rubric.policy import item_note

    title = check.get("title") or check["id"]
    note = item_note(check, lang)
    return f"{check['id']}: {title}" + (f" ({note})" if note else "")


def hint_label(lang: str | None) -> str:
    """The label of a hint in the result's language (the report's own catalog entry)."""
    try:
        from grader.i18n import LANGUAGES, translate

        return translate("Hint:", lang) if lang in LANGUAGES else "Hint:"
    except Exception:  # noqa: BLE001 - a label is not worth failing a format for
        return "Hint:"


def check_text(check: dict, *, with_hint: bool = True, lang: str | None = None) -> str:
    """The message as the TA's report shows it, and the hint where the report gives one. Hidden
    checks show nothing but their verdict."""
    if is_hidden(check):
        return ""
    parts = [str(check.get("message") or "").strip()]
    hint = str(check.get("hint") or "").strip()
    if with_hint and hint and check.get("status") != "pass":
        parts.append(f"{hint_label(lang)} {hint}")
    return "\n".join(p for p in parts if p)


def graded_checks(result: dict) -> list[dict]:
    return list(result.get("checks") or []) if result.get("status") == "graded" else []


def error_result(reason: str, *, assignment: str | None = None, max_score: float | None = None,
                 status: str = "error") -> dict:
    """A minimal result.json for a run that produced none (a usage error, a crash before the
    pipeline returned): every format can still say what went wrong."""
    if max_score is None:
        from grader.assignments.catalog import CATALOG

        info = CATALOG.get(assignment or "")
        max_score = float(info.points) if info else 0.0
    return {"assignment": assignment, "title": None, "status": status, "reason": reason, "score": 0.0,
            "max_score": float(max_score), "bonus": 0.0, "bonus_max": 0.0, "criteria": {}, "checks": [],
            "duration_s": 0.0, "grader_version": grader.__version__,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
