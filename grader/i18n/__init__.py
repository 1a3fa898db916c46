"""Message catalogs: every message, hint and report heading in Korean and English.

Catalogs are YAML files beside this module (`en.yaml`, `ko.yaml`), mapping a message id to its
text with `{name}` placeholders. Check messages use symbolic ids (`check.not_implemented`); report
headings use their English text as the id (gettext style), so templates stay readable. Both
catalogs must hold every id the code and the templates use (tests/test_i18n.py checks).

A `Message` carries an id and its parameters and is rendered late, in the reader's language; a
parameter may itself be a Message (rendered in the same language).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from grader import yamlio

LANGUAGES = ("ko", "en")
CATALOG_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def catalog(lang: str) -> dict[str, str]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: choose one of {', '.join(LANGUAGES)}")
    return yamlio.safe_load((CATALOG_DIR / f"{lang}.yaml").read_text(encoding="utf-8")) or {}


def default_language() -> str:
    """$GRADER_LANG, else the course configuration (course.yaml `language`), else Korean (the
    language the course is taught in)."""
    configured = os.environ.get("GRADER_LANG")
    if configured in LANGUAGES:
        return configured
    course = CATALOG_DIR.parents[1] / "course.yaml"
    if course.is_file():
        language = (yamlio.safe_load(course.read_text(encoding="utf-8")) or {}).get("language")
        if language in LANGUAGES:
            return language
    return "ko"


def translate(msg_id: str, lang: str, /, **params: Any) -> str:
    """The text of `msg_id` in `lang` (falling back to English, then to the id itself)."""
    text = catalog(lang).get(msg_id) or catalog("en").get(msg_id) or msg_id
    if not params:
        return text
    rendered = {k: (v.render(lang) if isinstance(v, Message) else v) for k, v in params.items()}
    try:
        return text.format(**rendered)
    except (KeyError, IndexError, ValueError):
        return text


@dataclass(frozen=True)
class Message:
    id: str
    params: dict = field(default_factory=dict)

    def render(self, lang: str) -> str:
        return translate(self.id, lang, **self.params)

    def __str__(self) -> str:
        return self.render("en")


def msg(msg_id: str, /, **params: Any) -> Message:
    return Message(msg_id, params)


def render(value: Any, lang: str) -> str:
    """A Message in `lang`; a plain string as it is; a {lang: text} mapping by language."""
    if isinstance(value, Message):
        return value.render(lang)
    if isinstance(value, dict):
        return str(value.get(lang) or value.get("en") or next(iter(value.values()), ""))
    if hasattr(value, "en") and hasattr(value, "model_dump"):  # a rubric's Localized text
        return render(value.model_dump(), lang)
    return "" if value is None else str(value)


def html_gettext_for(lang: str):
    """The `_` of an autoescaping page template: the catalog's text escaped, then its
    {placeholders} filled with escaped values (Markup values, e.g. a `{% set %}` block, are kept),
    as Jinja's i18n extension does with autoescaping. Student ids and reasons stay inert."""
    from markupsafe import escape

    def gettext(text: str, **params: Any):
        template = escape(translate(text, lang))  # no params: the catalog's text as it is
        if not params:
            return template
        try:
            return template.format(**params)
        except (KeyError, IndexError, ValueError):
            return template

    return gettext


def gettext_for(lang: str):
    """A gettext-style callable for Jinja's i18n extension: `_("Checks")`, `_("{n} passed", n=3)`."""

    def gettext(text: str, **params: Any) -> str:
        return translate(text, lang, **params)

    return gettext
