"""The executed notebook as a web page (`executed.html`), safe to open and quick to make.

- `executed_notebook_html(notebook, target, *, lang=None)` writes the page and returns its file
  name, or None when it could not be made; it never raises on what the notebook holds.
- `render_notebook_page(notebook, *, lang=None)` returns the page as a string.
- `warm_up()` does once what every page needs first (the batch's preload server calls it before
  forking, so each grading process inherits it).

The page is the project's own small Jinja template (templates/notebook.html.j2), not nbconvert:
nothing in it can run or load anything, and it is quick. On the reference solution's executed
notebook (2-core build machine, 2026-11-30): about 50 ms a page once warm and 0.2-0.3 s for the
first page of a process, where nbconvert's HTMLExporter(sanitize_html=True) took about 0.8 s warm
and 1.7-2.4 s for the first; the page is 72 KB instead of 432 KB.

What the notebook (the student's, so untrusted) can put on the page, and how:

* code: its source as escaped text, highlighted by one regular expression (every piece escaped);
* Markdown cells and ``text/markdown`` outputs: markdown-it-py (CommonMark + tables +
  strikethrough, raw HTML on as in Jupyter), then `safe_fragment` (nh3: no script, no handler,
  no remote image, no iframe...; ``attachment:`` images resolved from the cell's attachments).
  Math is shown as its TeX source, protected from the Markdown parser. A page renders at most
  `MAX_MARKDOWN_CHARS` of Markdown (markdown-it-py is pure Python); past that, a cell shows its
  source as text;
* ``text/html`` outputs: `safe_fragment`;
* images: ``image/png``/``jpeg``/``gif`` as ``data:`` URIs whose payload is checked to be base64,
  ``width``/``height`` from the output's metadata only when they are plain numbers;
  ``image/svg+xml`` as an ``<img>`` of a ``data:`` URI too (an SVG drawn as an image cannot run
  script or load anything);
* ``text/plain``, ``text/latex``, ``application/json``, streams and tracebacks: escaped text, ANSI
  colours turned into classes, every other control sequence dropped, each output cut at
  `MAX_OUTPUT_CHARS`;
* raw cells: escaped text; cell and notebook metadata: not shown (only the grader's own
  problem marks change a cell's look).

The failing-cell markers that grader.pipeline._mark_problems inserts (Markdown cells tagged
``grader-problem`` whose source starts with ``<span id="grader-problem-N">``) keep the anchor
``#grader-problem-N`` on the marker itself; every cell has the anchor ``#cell-N`` (N counted as
the pipeline counts cells). Ids that come from the notebook's own HTML are prefixed with
``user-`` so that they cannot take these anchors.

The whole page then goes through `safe_html.safe_page` (allow-list, CSP ``<meta>``: no script and
no remote load), whatever the steps above did.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable

import jinja2
from markupsafe import Markup

from grader.i18n import LANGUAGES, default_language, translate
from grader.report.safe_html import data_image_uri, safe_fragment, safe_page

__all__ = ["executed_notebook_html", "render_notebook_page", "warm_up", "MAX_OUTPUT_CHARS", "MAX_MARKDOWN_CHARS"]

# A runaway print loop should not make a page that the browser cannot open; the .ipynb keeps all.
MAX_OUTPUT_CHARS = 200_000
# markdown-it-py is pure Python: 1-2 us a character on a course notebook, up to 50 on contrived
# input (a wall of `[` or `*a`). The Markdown of one page is rendered up to this many characters
# (the reference notebook has 17,000); past it, a cell shows its source as text. So no notebook
# keeps the grader busy for more than a few seconds here.
MAX_MARKDOWN_CHARS = 60_000
# Richest first, as Jupyter shows them. Widgets and JavaScript are never shown (their text/plain is).
_MIME_ORDER = ("text/html", "image/svg+xml", "image/png", "image/jpeg", "image/gif", "text/markdown",
               "text/latex", "application/json", "text/plain")
_RASTER = ("image/png", "image/jpeg", "image/gif")
_PROBLEM_KINDS = frozenset({"cell_error", "cell_timeout", "timeout", "oom", "kernel_died", "not_run"})
_MARKER_ANCHOR = re.compile(r'<span id="(grader-problem-\d{1,6})"></span>')


class _Page:
    """The page being made: called as `t(id, **params)`, its language's text; `t.markdown()`
    renders Markdown within the page's budget (MAX_MARKDOWN_CHARS)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.markdown_left = MAX_MARKDOWN_CHARS

    def __call__(self, text: str, **params: Any) -> str:
        return translate(text, self.lang, **params)

    def markdown(self, source: str, attachments: dict | None = None) -> str:
        if len(source) > self.markdown_left:  # past the budget: the source, as text
            shown = html.escape(source[:MAX_OUTPUT_CHARS], quote=False)
            return (f'<pre class="markdown-source">{shown}</pre>'
                    + _notice(self("html.markdown_plain", chars=MAX_MARKDOWN_CHARS)))
        self.markdown_left -= len(source)
        return markdown_html(source, attachments)


# --------------------------------------------------------------------------------------------
# plain data from an untrusted notebook
# --------------------------------------------------------------------------------------------


def _source(value: Any) -> str:
    """A cell source or output text: a str or a list of str (nbformat), anything else -> ''."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return ""


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _cut(text: str, t) -> tuple[str, str]:
    """(the text, at most MAX_OUTPUT_CHARS of it; a notice of what was left out, or '')."""
    if len(text) <= MAX_OUTPUT_CHARS:
        return text, ""
    return text[:MAX_OUTPUT_CHARS], t("html.truncated", chars=len(text) - MAX_OUTPUT_CHARS)


# --------------------------------------------------------------------------------------------
# ANSI colours (tracebacks, coloured logs) -> escaped HTML
# --------------------------------------------------------------------------------------------

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
# every other escape sequence (cursor moves, OSC titles and links...) is dropped
_OTHER_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]?)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")


def _carriage_returns(text: str) -> str:
    """A progress bar's \\r rewrites its line: keep what the terminal would show."""
    text = text.replace("\r\n", "\n")
    if "\r" not in text:
        return text
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in text.split("\n"))


def _plain(segment: str) -> str:
    return html.escape(_CONTROL.sub("", _OTHER_ESCAPES.sub("", segment)), quote=False)


def ansi_html(text: str) -> str:
    """Terminal text -> escaped HTML, SGR colours and bold as classes (a fixed set)."""
    text = _carriage_returns(text)
    out: list[str] = []
    fg = bg = None
    bold = False
    pos = 0

    def emit(segment: str) -> None:
        if not segment:
            return
        classes = [c for c in (f"ansi-{fg}" if fg else "", f"ansi-bg-{bg}" if bg else "",
                               "ansi-bold" if bold else "") if c]
        escaped = _plain(segment)
        out.append(f'<span class="{" ".join(classes)}">{escaped}</span>' if classes else escaped)

    for m in _SGR.finditer(text):
        emit(text[pos:m.start()])
        pos = m.end()
        codes = [int(c) if c.isdigit() else 0 for c in m.group(1).split(";")] if m.group(1) else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                fg = bg = None
                bold = False
            elif code == 1:
                bold = True
            elif code == 22:
                bold = False
            elif 30 <= code <= 37:
                fg = _COLOURS[code - 30]
            elif 90 <= code <= 97:
                fg = _COLOURS[code - 90]
            elif code == 39:
                fg = None
            elif 40 <= code <= 47:
                bg = _COLOURS[code - 40]
            elif 100 <= code <= 107:
                bg = _COLOURS[code - 100]
            elif code == 49:
                bg = None
            elif code in (38, 48):  # 256-colour or true colour: skip its arguments
                i += 2 if i + 1 < len(codes) and codes[i + 1] == 5 else 4
            i += 1
    emit(text[pos:])
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Markdown (math kept as TeX source)
# --------------------------------------------------------------------------------------------

# Code (fenced blocks, inline spans) is left alone: a `$` there is not math. Inline spans are
# looked for over at most 4000 characters, so that no input makes the search quadratic.
_CODE = re.compile(r"(?ms)^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}\1[`~]*[ \t]*$|\Z)"
                   r"|(?<!`)(`+)(?!`).{1,4000}?(?<!`)\2(?!`)")
# The delimiters of math, found in one pass and paired by _math_spans (linear, like Jupyter's own
# remove_math): escaped backslashes and dollars first, so that they are never delimiters.
_MATH_TOKEN = re.compile(r"\\[\\$]|\$\$|\$|\\\[|\\\]|\\\(|\\\)|\\(begin|end)\{([A-Za-z]{1,30}\*?)\}|\n[ \t]*\n")
_CLOSERS = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}


def _math_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every math span of `text` (no code in it): $...$, $$...$$, \\(...\\),
    \\[...\\], \\begin{env}...\\end{env}. Inline $ does not cross a blank line; an unclosed
    delimiter is plain text."""
    spans: list[tuple[int, int]] = []
    kind, start, env, depth = None, 0, "", 0
    for m in _MATH_TOKEN.finditer(text):
        tok = m.group(0)
        if tok in ("\\\\", "\\$"):
            continue
        if kind is None:
            if tok in _CLOSERS:
                kind, start = tok, m.start()
            elif m.group(1) == "begin":
                kind, start, env, depth = "env", m.start(), m.group(2), 1
        elif tok[0] == "\n":
            if kind == "$":  # a paragraph ends inline math that never closed
                kind = None
        elif kind == "env":
            if m.group(2) == env:
                depth += 1 if m.group(1) == "begin" else -1
                if depth == 0:
                    spans.append((start, m.end()))
                    kind = None
        elif kind == "$" and tok == "$$":  # `$a$$b$`: the first `$` closes, the second opens
            spans.append((start, m.start() + 1))
            start = m.start() + 1
        elif tok == _CLOSERS[kind]:
            spans.append((start, m.end()))
            kind = None
    return spans


@functools.lru_cache(maxsize=1)
def _markdown_it():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"])


def _protect_math(source: str) -> tuple[str, str, list[str]]:
    """(the source with math replaced by placeholders that Markdown leaves alone -- letters and
    digits only --, the placeholders' nonce, the math in order)."""
    nonce = secrets.token_hex(6)
    found: list[str] = []
    parts: list[str] = []

    def protect(text: str) -> None:
        pos = 0
        for start, end in _math_spans(text):
            parts.append(text[pos:start])
            parts.append(f"zmath{nonce}n{len(found)}z")
            found.append(text[start:end])
            pos = end
        parts.append(text[pos:])

    pos = 0
    for code in _CODE.finditer(source):
        protect(source[pos:code.start()])
        parts.append(code.group(0))
        pos = code.end()
    protect(source[pos:])
    return "".join(parts), nonce, found


def markdown_html(source: str, attachments: dict | None = None) -> str:
    """A Markdown text (a cell, a text/markdown output) -> clean HTML."""
    if not attachments:
        return _markdown_remembered(source)
    return _markdown_html(source, attachments)


@functools.lru_cache(maxsize=256)
def _markdown_remembered(source: str) -> str:
    # The submitted Markdown cells are rendered while the notebook runs (warm_up_markdown); the
    # executed notebook's page then finds them here. Same text, same clean HTML.
    return _markdown_html(source, None)


def _markdown_html(source: str, attachments: dict | None) -> str:
    protected, nonce, maths = _protect_math(source)
    rendered = _markdown_it().render(protected)
    if maths:
        # escaped text only, so that it is inert wherever a placeholder ended up (an attribute too)
        escaped = [html.escape(tex, quote=True) for tex in maths]
        rendered = re.sub(rf"zmath{nonce}n(\d+)z", lambda m: escaped[int(m.group(1))], rendered)
    return safe_fragment(rendered, attachments=attachments)


# --------------------------------------------------------------------------------------------
# code and outputs
# --------------------------------------------------------------------------------------------


# One pass of one regular expression: comments, strings, keywords, numbers, decorators, and the
# names that def and class introduce. Pygments' Python lexer looked better but took most of the
# page's time (about 80 ms of 126 on the reference notebook).
_PY_TOKENS = re.compile(
    r"(?P<c>#[^\n]*)"
    r"|(?P<s>(?<![\w])(?:[rRbBuUfF]{1,2})?"
    r"(?:\"\"\"[\s\S]*?(?:\"\"\"|\Z)|'''[\s\S]*?(?:'''|\Z)|\"(?:[^\"\\\n]|\\.)*\"?|'(?:[^'\\\n]|\\.)*'?))"
    r"|(?P<k>(?<![\w.])(?:False|None|True|and|as|assert|async|await|break|class|continue|def|del|elif"
    r"|else|except|finally|for|from|global|if|import|in|is|lambda|nonlocal|not|or|pass|raise|return|try"
    r"|while|with|yield)(?!\w))"
    r"|(?P<n>(?<![\w.])\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?j?(?!\w))"
    r"|(?P<d>(?<![\w)\]])@[A-Za-z_][\w.]*)"
)
_DEFINED = re.compile(r'(<span class="k">(?:def|class)</span>\s+)([A-Za-z_]\w*)')


def _highlight_python(source: str) -> str:
    out, pos = [], 0
    for m in _PY_TOKENS.finditer(source):
        out.append(html.escape(source[pos:m.start()], quote=False))
        out.append(f'<span class="{m.lastgroup}">{html.escape(m.group(0), quote=False)}</span>')
        pos = m.end()
    out.append(html.escape(source[pos:], quote=False))
    return _DEFINED.sub(r'\1<span class="f">\2</span>', "".join(out))


def _code_html(source: str, language: str) -> str:
    if language not in ("python", "python3", "ipython", "ipython3"):
        return html.escape(source, quote=False)
    return _highlight_python(source)


def _size(value: Any) -> str | None:
    """An image's width or height from the output's metadata: a plain number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and 0 < value < 100_000:
        return str(int(value))
    if isinstance(value, str) and re.fullmatch(r"\d{1,5}", value.strip()) and int(value) > 0:
        return value.strip()
    return None


def _image(mime: str, payload: str, metadata: dict, t) -> str:
    uri = data_image_uri(mime, payload)
    if uri is None:
        return f'<p class="not-shown">{html.escape(t("html.bad_image", mime=mime))}</p>'
    meta = _dict(metadata.get(mime))
    attrs = "".join(f' {name}="{size}"' for name in ("width", "height") if (size := _size(meta.get(name))))
    return f'<img src="{uri}" alt=""{attrs}>'


def _rich_output(data: dict, metadata: dict, t) -> tuple[str, str]:
    """(class, HTML) of a display_data / execute_result output: its richest type we show."""
    for mime in _MIME_ORDER:
        if mime not in data:
            continue
        value = data[mime]
        if mime == "application/json":
            try:
                text = json.dumps(value, indent=1, ensure_ascii=False)
            except (TypeError, ValueError):
                continue
        else:
            text = _source(value)
        if mime == "text/html":
            cut, notice = _cut(text, t)
            return "html", f'<div class="html-output">{safe_fragment(cut)}</div>' + _notice(notice)
        if mime == "image/svg+xml":
            payload = base64.b64encode(text.encode("utf-8", "replace")).decode("ascii")
            return "image", _image(mime, payload, metadata, t)
        if mime in _RASTER:
            return "image", _image(mime, text, metadata, t)
        if mime == "text/markdown":
            cut, notice = _cut(text, t)
            return "markdown", t.markdown(cut) + _notice(notice)
        cut, notice = _cut(text, t)
        return "text", f"<pre>{ansi_html(cut)}</pre>" + _notice(notice)
    kinds = ", ".join(sorted(str(k) for k in data)[:5]) or "-"
    return "text", f'<p class="not-shown">{html.escape(t("html.not_shown", mime=kinds))}</p>'


def _notice(notice: str) -> str:
    return f'<p class="truncated">{html.escape(notice)}</p>' if notice else ""


def _output_view(output: Any, t) -> dict | None:
    output = _dict(output)
    kind = output.get("output_type")
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        cut, notice = _cut(_source(output.get("text")), t)
        return {"kind": f"stream {name}", "html": Markup(f"<pre>{ansi_html(cut)}</pre>" + _notice(notice))}
    if kind == "error":
        trace = output.get("traceback")
        lines = [line for line in trace if isinstance(line, str)] if isinstance(trace, list) else []
        text = "\n".join(lines) or f"{_source(output.get('ename'))}: {_source(output.get('evalue'))}"
        cut, notice = _cut(text, t)
        return {"kind": "error", "html": Markup(f"<pre>{ansi_html(cut)}</pre>" + _notice(notice))}
    if kind in ("display_data", "execute_result"):
        css, body = _rich_output(_dict(output.get("data")), _dict(output.get("metadata")), t)
        return {"kind": css, "html": Markup(body)}
    return None


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------


def _cells(notebook: dict, language: str, t) -> Iterable[dict]:
    cells = notebook.get("cells")
    position = 0
    anchors: set[str] = set()
    for cell in cells if isinstance(cells, list) else []:
        cell = _dict(cell)
        metadata = _dict(cell.get("metadata"))
        tags = metadata.get("tags") if isinstance(metadata.get("tags"), list) else []
        kind = cell.get("cell_type")
        source = _source(cell.get("source"))
        if "grader-problem" in tags and kind == "markdown":
            # the pipeline's marker: its anchor goes on the marker itself (the span in its source
            # would get the user- prefix like any id of the notebook)
            m = _MARKER_ANCHOR.search(source)
            anchor = m.group(1) if m and m.group(1) not in anchors else ""
            anchors.add(anchor)
            yield {"kind": "markdown", "marker": True, "anchor": anchor, "position": None, "problem": False,
                   "html": Markup(t.markdown(_MARKER_ANCHOR.sub("", source)))}
            continue
        if "injected-parameters" not in tags:
            position += 1
        counted = position if "injected-parameters" not in tags else None
        anchor = f"cell-{counted}" if counted else ""
        grader_meta = _dict(metadata.get("grader"))
        problem = grader_meta.get("problem") in _PROBLEM_KINDS
        view = {"marker": False, "anchor": anchor, "position": counted, "problem": problem}
        if kind == "code":
            count = cell.get("execution_count")
            outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
            code, notice = _cut(source, t)
            yield {**view, "kind": "code",
                   "count": count if isinstance(count, int) and not isinstance(count, bool) else " ",
                   "html": Markup(_code_html(code, language) + ("\n" + html.escape(notice) if notice else "")),
                   "outputs": [v for v in (_output_view(o, t) for o in outputs) if v is not None]}
        elif kind == "markdown":
            attachments = cell.get("attachments") if isinstance(cell.get("attachments"), dict) else None
            yield {**view, "kind": "markdown", "html": Markup(t.markdown(source, attachments))}
        else:
            raw, notice = _cut(source, t)
            yield {**view, "kind": "raw",
                   "html": Markup(f"<pre>{html.escape(raw, quote=False)}</pre>" + _notice(notice))}


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    try:
        loader: jinja2.BaseLoader = jinja2.PackageLoader("grader.report", "templates")
    except (ValueError, ModuleNotFoundError):  # pragma: no cover - unusual import set-ups
        loader = jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template("notebook.html.j2")


def _language(notebook: dict) -> str:
    metadata = _dict(notebook.get("metadata"))
    for value in (_dict(metadata.get("language_info")).get("name"), _dict(metadata.get("kernelspec")).get("language")):
        if isinstance(value, str) and value:
            return value.lower()
    return "python"


def render_notebook_page(notebook: dict, *, lang: str | None = None) -> str:
    """The executed notebook's page (see the module's docstring). Raises only on a grader bug."""
    lang = lang if lang in LANGUAGES else default_language()
    t = _Page(lang)
    notebook = _dict(notebook)
    page = _template().render(
        lang=lang, title=t("html.title"), note=t("html.note"),
        cells=list(_cells(notebook, _language(notebook), t)))
    return safe_page(page, lang=lang)


def executed_notebook_html(notebook: dict, target: Path, *, lang: str | None = None) -> str | None:
    """Write the executed notebook's page to `target`; its file name, or None if it could not be
    made (the .ipynb beside it is always there). Never raises on the notebook's content."""
    try:
        page = render_notebook_page(notebook, lang=lang)
    except Exception:  # noqa: BLE001 - the HTML copy is a convenience; a notebook must not stop grading
        return None
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8", newline="\n")
    os.replace(tmp, target)  # a reader never sees half a page
    return target.name


def warm_up_markdown(notebook: dict) -> None:
    """Render the notebook's Markdown cells now (remembered for its page after the run)."""
    budget = MAX_MARKDOWN_CHARS
    for cell in notebook.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown" or cell.get("attachments"):
            continue
        source = _source(cell.get("source"))
        budget -= len(source)
        if budget < 0:
            return
        markdown_html(source)


def warm_up() -> None:
    """Import and compile what every page needs (template, Markdown parser, lexer, cleaners)."""
    render_notebook_page({
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# warm *up* $x$\n\n<b>b</b>"},
            {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "print(1)",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"},
                         {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<i>x</i>"}}]},
        ],
        "metadata": {"language_info": {"name": "python"}},
    }, lang=LANGUAGES[0])
