"""Message catalogs: every id the code and the templates use exists in Korean and in English, and
a report comes out in the language asked for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grader.i18n import LANGUAGES, catalog, default_language, msg, translate
from grader.report import render_html, render_markdown
from grader.rubric import load_rubric

REPO = Path(__file__).resolve().parents[1]
STRING = r'"(?:[^"\\]|\\.)*"'


def _literal(group: str) -> str:
    # implicit concatenation of adjacent string literals: "a " "b" -> "a b"
    return "".join(part[1:-1].replace('\\"', '"') for part in re.findall(STRING, group))


def used_ids() -> set[str]:
    ids: set[str] = set()
    for path in (REPO / "grader").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        ids |= {m for m in re.findall(r'\bmsg\(\s*"([a-z0-9_.]+)"', text)}
        ids |= {_literal(m) for m in re.findall(rf'\bt\(\s*((?:{STRING}\s*)+)', text)}
        if path.parent.name in ("report", "batch"):  # the label tables of the reports and the batch summary
            for table in re.findall(r'^[A-Z_]+_LABELS = \{(.*?)\}', text, flags=re.S | re.M):
                ids |= set(re.findall(r':\s*"([^"]+)"', table))
    for path in (REPO / "grader").rglob("*.j2"):
        ids |= {_literal(m) for m in re.findall(rf'\b_\(\s*((?:{STRING}\s*)+)', path.read_text(encoding="utf-8"))}
    # ids built at run time from a fixed set of names
    ids |= {f"name.{n}" for n in ("output", "weights", "mask", "causal_output", "bool_combination",
                                   "mixed_combination")}
    ids |= {f"w6.what.{n}" for n in ("benchmark_plot", "mask_images")}
    ids |= {f"problem.{k}" for k in ("cell_error", "cell_timeout", "timeout", "oom", "kernel_died")}
    ids |= {"Implementation", "Theory", "Experiments", "Code quality"}
    return ids


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_id_in_use_is_in_the_catalog(lang):
    missing = sorted(used_ids() - set(catalog(lang)))
    assert missing == []


def test_both_catalogs_hold_the_same_ids_and_placeholders():
    en, ko = catalog("en"), catalog("ko")
    assert set(en) == set(ko)
    for key in en:
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", ko[key])), key
        assert ko[key].strip(), key


def test_messages_render_nested_and_in_either_language():
    message = msg("check.not_tested", function="chunked_attention", reason=msg("probe.not_run"))
    assert str(message) == ("chunked_attention could not be tested: the probe did not run "
                            "(the notebook stopped before the end)")
    korean = message.render("ko")
    assert "chunked_attention" in korean and "프로브가 실행되지 않았습니다" in korean
    assert translate("no.such.id", "ko") == "no.such.id"


def test_the_course_default_is_korean(monkeypatch):
    monkeypatch.delenv("GRADER_LANG", raising=False)
    assert default_language() == "ko"
    monkeypatch.setenv("GRADER_LANG", "en")
    assert default_language() == "en"


def test_every_rubric_title_hint_and_guidance_has_korean():
    for path in (REPO / "rubrics").glob("*.yaml"):
        for item in load_rubric(path).items:
            for field in ("title", "hint", "guidance"):
                value = getattr(item, field, None)
                if value:
                    assert not isinstance(value, str) and value.ko.strip(), f"{path.name}: {item.id}.{field}"


def test_a_korean_report_is_korean_and_an_english_one_english():
    result = {
        "assignment": "w6-self-attention", "title": "Optimised self-attention", "status": "graded",
        "score": 10, "max_score": 30, "bonus": 0, "bonus_max": 5,
        "criteria": {"implementation": {"score": 10, "max_score": 12, "pending": 0}},
        "checks": [{"id": "impl-causal-mask", "title": "Causal mask", "criterion": "implementation",
                    "status": "fail", "score": 0, "max_score": 1, "visibility": "public",
                    "message": "x", "hint": "y"}],
    }
    korean = render_html({**result, "lang": "ko"})
    assert '<html lang="ko">' in korean and "평가 기준별 점수" in korean and "구현 완성도" in korean
    assert "Score by criterion" not in korean
    english = render_markdown({**result, "lang": "en"})
    assert "Score by criterion" in english and "평가" not in english
