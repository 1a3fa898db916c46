"""Make an HTML page (or a fragment of one) safe to open in a browser, by construction.

Every HTML file the grader writes for a person to open (feedback.html, executed.html, the batch's
summary.html, and any page a later tool adds: similarity report, web review) passes through
`safe_page` as the last step before it is written. Templates still escape what they insert; this
is what makes a mistake there, or hostile HTML that a page embeds on purpose (a notebook's
outputs), harmless.

API
---
``safe_page(html, *, lang=None, local_images=False) -> str``
    Takes a finished page (a whole document, as a template renders it) and returns a new document:
    ``<!DOCTYPE html>``, ``<html lang>``, a head the grader writes itself (charset, the
    Content-Security-Policy ``<meta>`` of `csp()`, no-referrer, viewport, colour scheme, the
    page's ``<title>`` and its ``<style>`` sheets, their CSS neutralised by `safe_css`), then the
    body, cleaned by nh3 (ammonia) with an allow-list:

    * no ``<script>`` (its content is dropped), no event-handler (``on*``) attribute, no
      ``<iframe>``/``<object>``/``<embed>``/``<form>``/``<input>``/``<base>``/``<link>``/
      ``<meta>`` (so no ``http-equiv`` refresh), no ``<math>``, no SVG ``<foreignObject>``,
      ``<use>``, ``<image>``, ``<a>``-in-SVG scripting or animation elements; comments dropped;
    * ``href`` (links only): ``#fragment``, a relative path, ``http(s):`` or ``mailto:``; never
      ``javascript:``/``vbscript:``/``data:``/protocol-relative (``//host``). A link is a
      navigation the reader chooses, not a load; the referrer is never sent;
    * ``src`` (images only): a ``data:image/(png|jpeg|gif|webp|bmp|svg+xml);base64,`` URI whose
      payload is valid base64 -- or, with ``local_images=True``, a plain relative path without
      ``..`` (the feedback page's ``figures/*.png``). Nothing else: no remote image, no srcset;
    * ``width``/``height``: numbers (with ``px``/``%``/``em``) only;
    * ``style`` attributes and ``<style>`` sheets: through `safe_css` (no remote ``url()``,
      ``@import``, ``image-set()``, escapes or ``expression()``);
    * any other attribute value that holds ``url(`` (SVG ``fill``, ``clip-path``...): only
      ``url(#id)`` (a reference inside the page) is kept.

    ``lang``: the page's language; by default taken from the input's ``<html lang>`` (a plain
    language tag only), else ``en``. ``local_images``: allow relative image files beside the page
    (the CSP then says ``img-src 'self' data:``). Never raises on hostile input; the result is
    always a complete document.

``safe_fragment(html, *, id_prefix="user-", attachments=None) -> str``
    Cleans a fragment of untrusted HTML (a notebook's ``text/html`` output, rendered Markdown)
    for embedding in a page that goes through `safe_page`: the same allow-list without
    ``<title>``/``<style>``, every ``id`` prefixed (so untrusted content cannot take the page's
    own anchors), and ``attachment:NAME`` images resolved from `attachments` (a cell's
    ``{name: {mime: base64}}``), else dropped.

``safe_css(css) -> str``
    Neutralises a style sheet or a ``style`` attribute: no ``<`` (it cannot close its element),
    no backslash escapes or comments (which could hide a function name), ``@import`` and every
    ``url()`` other than ``url(#id)``/``url(data:...)`` renamed so that the browser ignores them,
    as it does ``image-set()``, ``image()``, ``src()``, ``element()``, ``cross-fade()`` and
    ``expression()``.

``data_image_uri(mime, payload) -> str | None``
    ``data:MIME;base64,PAYLOAD`` for an image type above with a valid base64 payload, else None.

``csp(local_images=False) -> str``
    The policy the head carries: ``default-src 'none'`` (no script, no connection, no frame, no
    media), images from ``data:`` (and ``'self'``), inline styles, fonts from ``data:``,
    ``base-uri 'none'``, ``form-action 'none'``.
"""

from __future__ import annotations

import contextvars
import re
from typing import Mapping

import nh3

__all__ = ["safe_page", "safe_fragment", "safe_css", "csp", "data_image_uri"]

# --------------------------------------------------------------------------------------------
# the allow-list
# --------------------------------------------------------------------------------------------

_TEXT_TAGS = {
    "a", "abbr", "address", "article", "aside", "b", "bdi", "bdo", "blockquote", "br", "caption",
    "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt",
    "em", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup",
    "hr", "i", "img", "ins", "kbd", "li", "main", "mark", "nav", "ol", "p", "pre", "q", "rp", "rt",
    "ruby", "s", "samp", "section", "small", "span", "strike", "strong", "sub", "summary", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
}
# Static SVG drawing only: nothing that references another document (use, image, feImage),
# embeds HTML (foreignObject), animates attributes (animate, set) or links (a is HTML-only here
# in effect: an SVG <a> keeps no href, see _filter).
_SVG_TAGS = {
    "svg", "g", "defs", "pattern", "rect", "line", "circle", "ellipse", "polyline", "polygon", "path",
    "text", "tspan", "title", "desc", "lineargradient", "radialgradient", "stop", "clippath",
    "linearGradient", "radialGradient", "clipPath",
}
_GENERIC_ATTRS = {"class", "id", "title", "lang", "dir", "style", "role", "hidden"}
_TAG_ATTRS = {
    "a": {"href", "rel"},
    "img": {"src", "alt", "width", "height", "loading"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
    "td": {"colspan", "rowspan", "headers", "align", "valign"},
    "th": {"colspan", "rowspan", "headers", "scope", "align", "valign"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "table": {"border", "cellpadding", "cellspacing", "width"},
    "tr": {"align", "valign"},
    "time": {"datetime"},
    "details": {"open"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "abbr": set(),
    "p": {"align"},
    "div": {"align"},
}
_SVG_ATTRS = {
    "viewBox", "width", "height", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "d",
    "points", "fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity",
    "stroke-dasharray", "stroke-linecap", "stroke-linejoin", "opacity", "transform", "text-anchor",
    "dominant-baseline", "font-size", "font-family", "font-weight", "font-style", "dx", "dy",
    "preserveAspectRatio", "patternUnits", "patternTransform", "patternContentUnits", "offset",
    "stop-color", "stop-opacity", "gradientUnits", "gradientTransform", "clip-path", "clipPathUnits",
    "xmlns", "aria-label", "aria-hidden", "focusable", "version",
}
_URL_SCHEMES = {"http", "https", "mailto", "data"}
_IMAGE_MIMES = ("png", "jpeg", "gif", "webp", "bmp", "svg+xml")

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_DATA_IMAGE = re.compile(r"data:image/(png|jpeg|jpg|gif|webp|bmp|svg\+xml);base64,(.*)", re.I | re.S)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_SIZE = re.compile(r"\d{1,6}(?:\.\d{1,4})?(?:px|%|em)?")
_CONTROL_AND_SPACE = re.compile(r"[\x00-\x20\x7f]+")
# Lone surrogates (undecodable bytes in a file name, "\udcff" in a notebook's JSON) cannot reach
# nh3 (UTF-8 only): they are written as visible escapes, as the batch's files write them.
_SURROGATES = re.compile("[\ud800-\udfff]")


def _text(html: object) -> str:
    text = html if isinstance(html, str) else str(html)
    if _SURROGATES.search(text):
        text = _SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


# the attachments of the cell being cleaned (safe_fragment), read by the attribute filter
_ATTACHMENTS: contextvars.ContextVar[Mapping | None] = contextvars.ContextVar("attachments", default=None)


def data_image_uri(mime: str, payload: str) -> str | None:
    """`data:{mime};base64,{payload}` for an image type the pages show, with `payload` checked to
    be base64 (whitespace dropped); None for anything else."""
    return _data_image(f"data:{mime};base64,{payload}") if isinstance(payload, str) and isinstance(mime, str) else None


def _data_image(value: str) -> str | None:
    """A data:image URI with a valid base64 payload, normalised (no whitespace), else None."""
    m = _DATA_IMAGE.fullmatch(value.strip())
    if not m:
        return None
    payload = re.sub(r"\s+", "", m.group(2))
    if not payload or len(payload) % 4 or not _BASE64.fullmatch(payload):
        return None
    mime = m.group(1).lower().replace("jpg", "jpeg")
    return f"data:image/{mime};base64,{payload}"


def _relative_path(value: str) -> str | None:
    """A plain relative path (no scheme, not absolute, no `..`, no backslash), else None."""
    v = value.strip()
    if not v or _SCHEME.match(v) or v.startswith(("/", "\\")) or "\\" in v or _CONTROL_AND_SPACE.search(v.strip(" ")):
        return None
    if any(part == ".." for part in re.split(r"[/?#]", v)) or "%2e" in v.lower():  # %2e%2e is `..` too
        return None
    return v


def _attachment(value: str) -> str | None:
    attachments = _ATTACHMENTS.get()
    name = value.strip()[len("attachment:"):]
    bundle = attachments.get(name) if isinstance(attachments, Mapping) else None
    if not isinstance(bundle, Mapping):
        return None
    for mime in ("image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"):
        data = bundle.get(mime)
        if isinstance(data, list):
            data = "".join(x for x in data if isinstance(x, str))
        if isinstance(data, str):
            return _data_image(f"data:{mime};base64,{data}")
    return None


def _href(value: str) -> str | None:
    squeezed = _CONTROL_AND_SPACE.sub("", value)
    if not squeezed:
        return None
    if squeezed.startswith("#"):
        return value.strip()
    scheme = _SCHEME.match(squeezed)
    if scheme:
        return value.strip() if scheme.group(1).lower() in ("http", "https", "mailto") else None
    if squeezed.startswith(("//", "\\", "/\\")) or "\\" in squeezed:
        return None  # protocol-relative: a remote host
    return value.strip()


def _filter_for(local_images: bool):
    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr.startswith("on"):  # never in the allow-list; kept as a second lock
            return None
        if attr == "href":
            return _href(value) if tag == "a" else None
        if attr == "src":
            if tag != "img":
                return None
            if value.strip().lower().startswith("attachment:"):
                return _attachment(value)
            if value.strip().lower().startswith("data:"):
                return _data_image(value)
            return _relative_path(value) if local_images else None
        if attr in ("width", "height"):
            v = value.strip()
            return v if _SIZE.fullmatch(v) else None
        if attr == "style":
            return safe_css(value)
        if attr in ("title", "alt", "aria-label"):  # text, never a URL
            return value
        if "url(" in value.lower():  # SVG paint and clip references: url(#id) only
            return safe_css(value)
        return value

    return attribute_filter


def _attributes(extra: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    attrs: dict[str, set[str]] = {"*": set(_GENERIC_ATTRS)}
    for tag, names in _TAG_ATTRS.items():
        attrs[tag] = set(names)
    for tag in _SVG_TAGS:
        attrs[tag] = attrs.get(tag, set()) | _SVG_ATTRS
    for tag, names in (extra or {}).items():
        attrs[tag] = attrs.get(tag, set()) | names
    return attrs


def _cleaner(*, page: bool, local_images: bool = False, id_prefix: str | None = None) -> nh3.Cleaner:
    tags = _TEXT_TAGS | _SVG_TAGS | ({"style"} if page else set())
    clean_content = {"script", "noscript", "template", "iframe", "object", "embed", "textarea", "select",
                     "xmp", "noembed", "noframes", "plaintext", "applet", "frameset", "frame", "math",
                     "foreignObject", "foreignobject", "audio", "video"}
    if not page:
        clean_content |= {"style", "title"}
    schemes = _URL_SCHEMES | ({"attachment"} if not page else set())
    kwargs = {"id_prefix": id_prefix} if id_prefix else {}
    return nh3.Cleaner(
        tags=tags,
        clean_content_tags=clean_content - tags,
        attributes=_attributes(),
        attribute_filter=_filter_for(local_images),
        strip_comments=True,
        link_rel=None,  # `rel` is allowed as is; the page's referrer policy keeps the URL private
        url_schemes=schemes,
        generic_attribute_prefixes={"aria-", "data-"},
        **kwargs,
    )


_CLEANERS: dict[tuple, nh3.Cleaner] = {}


def _get_cleaner(*, page: bool, local_images: bool = False, id_prefix: str | None = None) -> nh3.Cleaner:
    key = (page, local_images, id_prefix)
    cleaner = _CLEANERS.get(key)
    if cleaner is None:
        cleaner = _CLEANERS[key] = _cleaner(page=page, local_images=local_images, id_prefix=id_prefix)
    return cleaner


# --------------------------------------------------------------------------------------------
# CSS
# --------------------------------------------------------------------------------------------

_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.S)
_CSS_IMPORT = re.compile(r"@import", re.I)
# Functions that load something, or could: renamed so that the declaration is invalid and ignored.
_CSS_LOADERS = re.compile(r"(?<![\w-])(-webkit-image-set|image-set|image|src|element|cross-fade|expression)\s*\(", re.I)
_CSS_URL = re.compile(r"(?<![\w-])url\s*\(\s*(['\"]?)\s*", re.I)


def safe_css(css: str) -> str:
    """A style sheet or `style` attribute value that loads nothing from elsewhere (see module doc)."""
    css = css.replace("<", "").replace("\\", "").replace("\x00", "")
    css = _CSS_COMMENT.sub("", css)
    css = _CSS_IMPORT.sub("@blocked-import", css)
    css = _CSS_LOADERS.sub(lambda m: f"blocked-{m.group(1)}(", css)

    def url(m: re.Match) -> str:
        target = m.string[m.end():m.end() + 5].lower()
        if target.startswith("#") or target.startswith("data:"):
            return m.group(0)
        return "blocked-url(" + m.group(1)

    return _CSS_URL.sub(url, css)


# --------------------------------------------------------------------------------------------
# pages and fragments
# --------------------------------------------------------------------------------------------


def csp(local_images: bool = False) -> str:
    images = "'self' data:" if local_images else "data:"
    return (f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; font-src data:; "
            "base-uri 'none'; form-action 'none'")


_LANG = re.compile(r"<html\b[^>]*?\slang\s*=\s*[\"']?([A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3})[\"'\s>]", re.I)
# In nh3's output `<` and `>` are escaped everywhere but in tags and raw text, so `[^>]*` stays
# inside one tag (the generic attributes may be on <style> and <title> too).
_STYLE_OPEN = re.compile(r"<style(?:\s[^>]*)?>")
_TITLE_OPEN = re.compile(r"<title(?:\s[^>]*)?>")
_STYLE_CLOSE, _TITLE_CLOSE = "</style>", "</title>"


def _neutralise_style_elements(body: str) -> str:
    """Every <style> element of nh3's output gets safe CSS. nh3 escapes `<` in text and attribute
    values, and <style> is the only raw-text element it lets through, so outside a style element
    "<style>" is always a real start tag, and its content ends at the first "</style>"."""
    out, pos = [], 0
    while True:
        start = _STYLE_OPEN.search(body, pos)
        if start is None:
            out.append(body[pos:])
            return "".join(out)
        end = body.find(_STYLE_CLOSE, start.end())
        end = len(body) if end < 0 else end
        out.append(body[pos:start.start()])
        out.append("<style>" + safe_css(body[start.end():end]) + _STYLE_CLOSE)
        pos = end + len(_STYLE_CLOSE)


def safe_page(html: str, *, lang: str | None = None, local_images: bool = False) -> str:
    """The page, safe to open: see the module's docstring for what is kept."""
    html = _text(html)
    if lang is None:
        m = _LANG.search(html[:4096])
        lang = m.group(1) if m else "en"
    elif not re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}", lang):
        lang = "en"
    cleaned = _get_cleaner(page=True, local_images=local_images).clean(html)
    # The head's material comes first in nh3's output (html, head, meta and body tags are gone):
    # the page's <title> and its <style> sheets, which go back into a head of our own.
    title, sheets, pos = "", [], 0
    while True:
        while pos < len(cleaned) and cleaned[pos] in " \t\r\n\f":
            pos += 1
        title_open, style_open = _TITLE_OPEN.match(cleaned, pos), _STYLE_OPEN.match(cleaned, pos)
        if title_open and not title:
            end = cleaned.find(_TITLE_CLOSE, title_open.end())  # escaped text: no tag inside
            if end < 0:
                break
            title, pos = cleaned[title_open.end():end], end + len(_TITLE_CLOSE)
        elif style_open:
            end = cleaned.find(_STYLE_CLOSE, style_open.end())
            end = len(cleaned) if end < 0 else end
            sheets.append(safe_css(cleaned[style_open.end():end]))
            pos = end + len(_STYLE_CLOSE)
        else:
            break
    body = _neutralise_style_elements(cleaned[pos:])
    style = "".join(f"<style>{sheet}</style>\n" for sheet in sheets)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp(local_images)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light">\n'
        f"<title>{title}</title>\n{style}</head>\n<body>\n{body.strip()}\n</body>\n</html>\n"
    )


def safe_fragment(html: str, *, id_prefix: str = "user-", attachments: Mapping | None = None) -> str:
    """A fragment of untrusted HTML, cleaned for embedding (see the module's docstring)."""
    token = _ATTACHMENTS.set(attachments)
    try:
        return _get_cleaner(page=False, id_prefix=id_prefix or None).clean(_text(html))
    finally:
        _ATTACHMENTS.reset(token)
