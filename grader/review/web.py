"""`grade review DIR --web`: a local web page where TAs score the free-text answers of a whole
batch question by question (or one student's answers, for an appeal).

The server listens on 127.0.0.1 only and refuses every request without the random token of the
URL it prints (403), as Jupyter does: a GET with `?token=` sets an HttpOnly, SameSite=Strict
cookie so that the page's own links and its script need no token in the URL; a POST must carry
the token itself (form field or `X-Review-Token` header), so another site cannot post scores
through the cookie. Requests whose Host is not 127.0.0.1/localhost are refused as well (DNS
rebinding).

Nothing is served from the file system: the pages are rendered from the results, the script and
the style sheet are two fixed files of this package, and every id in a URL or a form (question,
student) is looked up among the result folders `find_results` lists, never joined to a path.

Every page is inert for what students wrote: answers are rendered by markdown-it-py with raw HTML
off, links and images shown as text (nothing a student wrote makes the browser load or open
anything), `$...$` math kept as TeX source, and the HTML sanitised again (nh3). The only script is
/static/review.js, allowed by a `script-src 'self'` Content-Security-Policy; it inserts text with
`textContent`, never HTML.

Scores go through the same path as `grade review --scores`: `apply_batch_reviews` appends to each
student's reviews.json (who, when, via "web"), rebuilds result.json and the reports, and rebuilds
the batch's gradebook. Each score is saved when it is given. Two writers (two TAs, two servers or
two tabs) never lose a review: the review lock refuses a second writer at once, and this server
then waits and tries again.

Answer groups: the answers to one question that are identical once normalised (Unicode NFKC,
case, white space ignored) form one group; groups whose texts are near-identical (cosine similarity of
character n-gram TF-IDF vectors >= GROUP_SIMILARITY) are merged. A group is scored at once, and
every member still gets its own review record.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import socket
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from grader.errors import UsageError
from grader.i18n import LANGUAGES, default_language, html_gettext_for, render, translate
from grader.review import (
    REVIEWS_NAME, SINGLE, ReviewError, _clean_reviewer, _load_rubric, _manual_ids, answer_sha256, apply_batch_reviews,
    find_results, pending_items,
)

__all__ = ["ReviewSite", "create_app", "serve", "start_background", "group_answers", "normalise_answer",
           "render_answer", "diff_words", "student_ref", "printable", "GROUP_SIMILARITY", "WebUnavailable"]

# Cosine of character n-gram TF-IDF vectors above which two answers are "near-identical": a typo
# or a word more. Such a measure cannot tell "exact" from "not exact" in a long answer, so a group
# with more than one version always shows every version, with its students and the words that
# differ from the first one.
GROUP_SIMILARITY = 0.9
BUSY_WAIT_S = 30.0              # how long a save waits for another writer's lock before giving up
COMMENT_MAX_CHARS = 2000
MAX_FORM_FIELDS = 20_000         # a score's form: one field per student of the group, and five more
TEMPLATES = Path(__file__).resolve().parent / "templates"
# The only files this server sends that are not rendered pages: (package file, content type).
STATIC = {"review.js": ("review.js.j2", "text/javascript; charset=utf-8"),
          "review.css": ("review.css.j2", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class WebUnavailable(UsageError):
    """The web extra (starlette, uvicorn, scikit-learn, python-multipart) is not installed."""


def _require_web() -> None:
    missing = []
    for module in ("starlette", "uvicorn", "sklearn", "python_multipart", "markdown_it", "nh3"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise WebUnavailable(f"grade review --web needs {', '.join(missing)}: pip install 'grader[web]'")


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------
# answers: rendering (inert) and grouping
# --------------------------------------------------------------------------------------------


def _math_rule(state, silent: bool) -> bool:
    """`$...$` and `$$...$$` as one token, so that `_` and `*` inside stay TeX, not emphasis."""
    src, start = state.src, state.pos
    if src[start] != "$":
        return False
    delim = "$$" if src.startswith("$$", start) else "$"
    end = src.find(delim, start + len(delim))
    while end != -1 and src[end - 1] == "\\":
        end = src.find(delim, end + 1)
    body = src[start + len(delim):end] if end != -1 else ""
    if end == -1 or not body.strip() or (delim == "$" and (body[0].isspace() or body[-1].isspace())):
        return False  # "costs $5 and $6" is not math (pandoc's rule: no space inside the dollars)
    if not silent:
        token = state.push("math_inline", "code", 0)
        token.content = src[start:end + len(delim)]
    state.pos = end + len(delim)
    return True


def _markdown():
    from markdown_it import MarkdownIt
    from markdown_it.common.utils import escapeHtml

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.inline.ruler.before("escape", "math_inline", _math_rule)

    def math(self, tokens, idx, options, env):
        return f'<code class="tex">{escapeHtml(tokens[idx].content)}</code>'

    def link_open(self, tokens, idx, options, env):
        return '<span class="link">'

    def link_close(self, tokens, idx, options, env):
        # The target as text after the link's text: a TA sees it, the browser never follows it.
        href = next((t.attrGet("href") for t in reversed(tokens[:idx]) if t.type == "link_open"), "") or ""
        return f'</span> <span class="url">&lt;{escapeHtml(str(href))}&gt;</span>'

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children or [], options, env)
        return (f'<span class="img">[{escapeHtml(alt) or "image"}] '
                f'<span class="url">&lt;{escapeHtml(str(token.attrGet("src") or ""))}&gt;</span></span>')

    md.add_render_rule("math_inline", math)
    md.add_render_rule("link_open", link_open)
    md.add_render_rule("link_close", link_close)
    md.add_render_rule("image", image)
    return md


_MD = None
_ALLOWED_TAGS = {"p", "br", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "h1", "h2", "h3", "h4",
                 "h5", "h6", "hr", "span"}
_ALLOWED_ATTRS = {"code": {"class"}, "span": {"class"}, "ol": {"start"}}


def _sanitise(html: str) -> str:
    """Second line of defence after markdown-it (which already escapes raw HTML): only plain
    formatting tags survive, no attribute that could load or run anything."""
    import nh3

    cleaned = nh3.clean(html, tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRS, url_schemes=set(), link_rel=None,
                        strip_comments=True)
    try:  # and the project's shared sanitiser of untrusted fragments, where it exists
        from grader.report.safe_html import safe_fragment
    except ImportError:  # pragma: no cover - an engine without it
        return cleaned
    return safe_fragment(cleaned)


def render_answer(text: str) -> Markup:
    """A student's answer as inert HTML: markdown without raw HTML, links and images as text,
    math as TeX source, sanitised."""
    global _MD
    if _MD is None:
        _MD = _markdown()
    return Markup(_sanitise(_MD.render(str(text or ""))))


_ZERO_WIDTH = re.compile("[\u200b-\u200d\u2060\ufeff]")


def _folded(text: str) -> str:
    """NFKC, case-folded, zero-width characters dropped, white space collapsed."""
    text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", str(text or "")))
    return " ".join(text.casefold().split())


def normalise_answer(text: str) -> str:
    """The answer as compared for exact groups: NFKC, case-folded, without white space (Korean
    spacing varies: "1이다" and "1 이다" are one answer), without a final full stop. No other
    punctuation is dropped: `x > 0` and `x < 0` must stay two answers."""
    return _TRAILING.sub("", _folded(text)).replace(" ", "")


_TRAILING = re.compile(r"[\s.!。．]+$")   # a full stop at the very end changes no answer


def group_answers(answers: list[tuple[str, str]], threshold: float = GROUP_SIMILARITY) -> list[list[str]]:
    """Group `(key, answer)` pairs: identical once normalised, then near-identical (TF-IDF of
    character 2-4-grams within words, cosine >= threshold; a group joins the first larger group
    it is that close to, so a chain of small edits does not snowball into one group). Empty
    answers form their own group. Returns the keys of each group, in the order of the first key
    seen."""
    exact: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    for key, text in answers:
        norm = normalise_answer(text)
        exact.setdefault(norm, []).append(key)
        shown.setdefault(norm, _folded(text))
    texts = [t for t in exact if t]
    leaders: list[int] = []
    joined: dict[int, int] = {}
    if len(texts) > 1 and threshold <= 1.0:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit_transform(
            [shown[t] for t in texts])
        similarity = (vectors @ vectors.T).toarray()  # rows are L2-normalised: the cosine
        order = sorted(range(len(texts)), key=lambda i: -len(exact[texts[i]]))  # stable: first seen first
        for i in order:
            leader = next((j for j in leaders if similarity[i, j] >= threshold - 1e-9), None)
            if leader is None:
                leaders.append(i)
            else:
                joined[i] = leader
    clusters: dict[str, list[str]] = {}
    for index, text in enumerate(texts):
        clusters.setdefault(texts[joined.get(index, index)], []).extend(exact[text])
    if "" in exact:
        clusters[""] = exact[""]
    first = {key: n for n, (key, _) in enumerate(answers)}
    groups = [sorted(keys, key=first.__getitem__) for keys in clusters.values()]
    return sorted(groups, key=lambda g: first[g[0]])


def diff_words(first: str, other: str, context: int = 4) -> list[tuple[str, str]]:
    """The words of `other` against `first`: [("same" | "del" | "ins", text)], long unchanged runs
    shortened to `context` words either side of a change."""
    import difflib

    a, b = first.split(), other.split()
    out: list[tuple[str, str]] = []
    opcodes = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    for n, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            words = a[i1:i2]
            head = words[:context] if n > 0 else []
            tail = words[-context:] if n < len(opcodes) - 1 else []
            if len(words) <= len(head) + len(tail) + 1:
                out.append(("same", " ".join(words)))
            else:
                out.append(("same", " ".join(head + ["…"] + tail)))
            continue
        if i2 > i1:
            out.append(("del", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", " ".join(b[j1:j2])))
    return out


# --------------------------------------------------------------------------------------------
# what the pages show, read from the result folders at every request (they are the truth)
# --------------------------------------------------------------------------------------------


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(name: str) -> str:
    """A file name as text a page can show: bytes that were not UTF-8 as \\xNN, controls as spaces."""
    return _UNPRINTABLE.sub(" ", str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


def student_ref(student: str) -> str:
    """How a page names a student (links, forms): the batch's id itself (`grade batch` makes ids
    printable UTF-8, see grader/batch/names.py), else a hash of the folder's name. Looked up among
    the result folders; never a path."""
    if printable(student) == student:
        return student
    return "~" + hashlib.sha256(student.encode("utf-8", "surrogateescape")).hexdigest()[:16]


@dataclass
class Answer:
    student: str            # the key find_results gives: the batch's folder name, or "." for one result
    ref: str                # student_ref(student): what the page's links and forms carry
    label: str              # the name shown
    status: str             # pending | pass | fail
    score: float
    answer: str
    answer_sha: str
    reviews: list[dict]     # this item's reviews, oldest first

    @property
    def pending(self) -> bool:
        return self.status == "pending"


@dataclass
class Question:
    assignment: str
    id: str
    title: str
    guidance: str
    criterion: str
    max_score: float
    bonus: bool
    answers: list[Answer] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.assignment}/{self.id}"

    @property
    def reviewed(self) -> int:
        return sum(1 for a in self.answers if not a.pending)

    @property
    def pending(self) -> int:
        return sum(1 for a in self.answers if a.pending)


@dataclass
class Variant:
    """One version of the answer in a group: its text, who wrote it, and (after the first) the
    words that differ from the first version: [(same | del | ins, text)]."""

    text: str
    students: list[str]
    diff: list[tuple[str, str]]


@dataclass
class Group:
    fp: str                 # fingerprint of its members and their answers (a card's id, checked on save)
    members: list[Answer]
    variants: list[Variant]  # the distinct answers (normalised), the most common first

    @property
    def pending(self) -> int:
        return sum(1 for a in self.members if a.pending)


def fingerprint(members: Iterable[tuple[str, str]]) -> str:
    """Of (student ref, answer sha256) pairs: the page and the save must be about the same answers."""
    text = "\n".join(sorted(f"{s}\0{a}" for s, a in members))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


@dataclass
class Snapshot:
    questions: dict[str, Question]          # by key, in rubric order
    students: dict[str, str]                # student ref -> label, in the batch's order
    scores: dict[str, tuple[float | None, float | None]]   # student ref -> (score, max_score)
    refs: dict[str, str]                    # student ref -> the student key of find_results

    @property
    def reviewed(self) -> int:
        return sum(q.reviewed for q in self.questions.values())

    @property
    def pending(self) -> int:
        return sum(q.pending for q in self.questions.values())


class ReviewSite:
    """The review pages of one result folder or batch, for one reviewer, in one language."""

    def __init__(self, directory: Path, reviewer: str, *, lang: str | None = None, token: str | None = None,
                 similarity: float = GROUP_SIMILARITY):
        self.directory = Path(directory)
        self.batch, folders = find_results(self.directory)  # ReviewError for a folder that is neither
        self.reviewer = _clean_reviewer(reviewer)  # refused now, not at the first save
        self.lang = lang or default_language()
        if self.lang not in LANGUAGES:
            raise UsageError(f"unknown language {self.lang!r}: choose one of {', '.join(LANGUAGES)}")
        self.token = token or secrets.token_urlsafe(24)
        self.cookie = "grader_review_" + hashlib.sha256(self.token.encode()).hexdigest()[:10]
        self.similarity = similarity
        self.busy_retries = 0           # how often a save found another writer's lock (for the tests)
        self._write = threading.Lock()  # one writer at a time from this server; others are waited for
        self._cache: dict[Path, tuple] = {}
        self._cache_lock = threading.Lock()
        self.env = _environment(self.lang)

    # -- reading -------------------------------------------------------------------------------

    def t(self, text: str, **params: Any) -> str:
        return translate(text, self.lang, **params)

    def label(self, student: str) -> str:
        return printable(self.directory.resolve().name if student == SINGLE else student)

    @property
    def where(self) -> str:
        return printable(str(self.directory))

    def _folder(self, folder) -> tuple[str, tuple, list]:
        """(assignment, (score, max_score), its manual items) of one result folder, read again only
        when its result.json or reviews.json changed (a class has hundreds: every page and every
        save reads them all)."""
        def signature(path: Path):
            try:
                st = path.stat()
            except OSError:
                return None
            return (st.st_ino, st.st_mtime_ns, st.st_size)

        key = (signature(folder.path / "result.json"), signature(folder.path / REVIEWS_NAME))
        cached = self._cache.get(folder.path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            result = json.loads((folder.path / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {}
        result = result if isinstance(result, dict) else {}
        items = pending_items(folder.path, include_reviewed=True)  # this one folder: student "."
        value = (str(result.get("assignment") or ""), (result.get("score"), result.get("max_score")), items)
        with self._cache_lock:
            self._cache[folder.path] = (key, value)
        return value

    def snapshot(self) -> Snapshot:
        """The questions and answers as the result folders hold them now."""
        _, folders = find_results(self.directory)
        loaded = [(folder, *self._folder(folder)) for folder in folders]
        questions: dict[str, Question] = {}
        for assignment in dict.fromkeys(a for _, a, _, _ in loaded if a):
            try:
                rubric = _load_rubric(assignment)
            except UsageError:
                continue
            for item in _manual_ids(rubric).values():
                q = Question(assignment, item.id, render(item.title, self.lang) or item.id,
                             render(item.guidance, self.lang) if item.guidance else "", str(item.criterion),
                             float(item.points), bool(item.bonus))
                questions[q.key] = q
        for folder, assignment, _, items in loaded:
            ref, label = student_ref(folder.student), self.label(folder.student)
            for p in items:
                q = questions.get(f"{assignment}/{p.item}")
                if q is None:
                    continue
                q.guidance = q.guidance or p.guidance
                q.answers.append(Answer(folder.student, ref, label, p.status, p.score, p.answer,
                                        answer_sha256(p.answer), p.reviews))
        questions = {k: q for k, q in questions.items() if q.answers}
        return Snapshot(questions, {student_ref(f.student): self.label(f.student) for f in folders},
                        {student_ref(f.student): score for f, _, score, _ in loaded},
                        {student_ref(f.student): f.student for f in folders})

    def fingerprint_of(self, answers: list[Answer]) -> str:
        return fingerprint((a.ref, a.answer_sha) for a in answers)

    def variants(self, answers: list[Answer]) -> list[Variant]:
        """The distinct versions among `answers`, the most common first."""
        versions: dict[str, Variant] = {}
        for a in answers:
            versions.setdefault(normalise_answer(a.answer), Variant(a.answer, [], [])).students.append(a.label)
        ordered = sorted(versions.values(), key=lambda v: -len(v.students))
        for v in ordered[1:]:
            v.diff = diff_words(ordered[0].text, v.text)
        return ordered

    def groups(self, question: Question) -> list[Group]:
        """The question's answer groups: those with pending answers first, larger groups first."""
        by_student = {a.student: a for a in question.answers}
        keys = group_answers([(a.student, a.answer) for a in question.answers], self.similarity)
        groups = []
        for members in keys:
            answers = [by_student[s] for s in members]
            groups.append(Group(self.fingerprint_of(answers), answers, self.variants(answers)))
        order = {id(g): n for n, g in enumerate(groups)}
        return sorted(groups, key=lambda g: (g.pending == 0, -len(g.members), order[id(g)]))

    # -- writing -------------------------------------------------------------------------------

    def save(self, question_key: str, refs: list[str], fp: str, raw_score: str, comment: str) -> dict:
        """Save one score for the answers of the students `refs` to a question: validated against the
        result folders as they are now (ReviewError otherwise, nothing written). Returns the
        JSON the page gets back."""
        snap = self.snapshot()
        question = snap.questions.get(question_key)
        if question is None:
            raise _HttpError(404, self.t("web.err_no_question"))
        answers = {a.ref: a for a in question.answers}
        if not refs or len(set(refs)) != len(refs) or any(r not in answers for r in refs):
            raise _HttpError(400, self.t("web.err_no_student"))
        if fp != fingerprint((r, answers[r].answer_sha) for r in refs):
            raise _HttpError(409, self.t("web.err_changed"))
        try:
            points = float(str(raw_score).strip().replace(",", "."))
        except ValueError:
            points = math.nan
        if not math.isfinite(points) or not 0 <= points <= question.max_score + 1e-9:
            raise _HttpError(400, self.t("web.err_score", max=_fmt(question.max_score)))
        comment = str(comment or "").strip()
        if len(comment) > COMMENT_MAX_CHARS:
            raise _HttpError(400, self.t("web.err_comment", max=COMMENT_MAX_CHARS))
        entry = {"score": points, "comment": comment}
        self._apply({answers[r].student: {question.id: entry} for r in refs})
        return self.state(question_key, refs)

    def _apply(self, scores: dict[str, dict]) -> None:
        deadline = time.monotonic() + BUSY_WAIT_S
        delay = 0.02
        with self._write:
            while True:
                try:
                    apply_batch_reviews(self.directory, scores, self.reviewer, via="web")
                    return
                except ReviewError as exc:
                    # The review lock (and the batch's) refuse a second writer at once, with this
                    # wording (grader/review/__init__.py): wait for the other writer and try again.
                    if not all("is writing to this" in p for p in exc.problems):
                        raise
                    self.busy_retries += 1
                    if time.monotonic() > deadline:
                        raise _HttpError(503, self.t("web.err_busy")) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)

    def state(self, question_key: str, refs: list[str]) -> dict:
        """The page's numbers after a save: each member's points, the progress counters."""
        snap = self.snapshot()
        question = snap.questions[question_key]
        answers = {a.ref: a for a in question.answers}
        groups_pending = sum(1 for g in self.groups(question) if g.pending)
        return {
            "ok": True,
            "members": [self.now_text(answers[r], question) for r in refs],
            "summary": self.group_summary([answers[r] for r in refs], question),
            "progress": {"item_reviewed": question.reviewed, "item_pending": question.pending,
                         "item_total": len(question.answers), "item_groups_pending": groups_pending,
                         "batch_reviewed": snap.reviewed, "batch_pending": snap.pending,
                         "batch_total": snap.reviewed + snap.pending},
        }

    # -- texts ---------------------------------------------------------------------------------

    def now_text(self, answer: Answer, question: Question) -> str:
        if answer.pending:
            return self.t("web.pending")
        last = answer.reviews[-1] if answer.reviews else {}
        return self.t("web.now", score=_fmt(answer.score), max=_fmt(question.max_score),
                      reviewer=str(last.get("reviewer") or "?"))

    def group_summary(self, members: list[Answer], question: Question) -> str:
        pending = sum(1 for a in members if a.pending)
        if pending:
            return self.t("web.group_pending", pending=pending, count=len(members))
        scores = {a.score for a in members}
        if len(scores) == 1:
            return self.t("web.group_scored", score=_fmt(scores.pop()), max=_fmt(question.max_score))
        return self.t("web.group_mixed")


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["_"] = html_gettext_for(lang)
    env.filters["points"] = _fmt
    env.filters["answer"] = render_answer
    env.filters["q"] = lambda s: quote(str(s), safe="")
    return env


# --------------------------------------------------------------------------------------------
# the web application
# --------------------------------------------------------------------------------------------


def create_app(site: ReviewSite):
    """The Starlette application of `site` (every route checks the token and the Host)."""
    _require_web()
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    static = {name: ((TEMPLATES / file).read_bytes(), ctype) for name, (file, ctype) in STATIC.items()}

    def secure(response: Response) -> Response:
        for key, value in SECURITY_HEADERS.items():
            response.headers[key] = value
        return response

    def host_ok(request: Request) -> bool:
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        return name in LOCAL_HOSTS

    def refused(request: Request) -> Response:
        return secure(PlainTextResponse(site.t("web.err_forbidden"), status_code=403))

    def authorised_get(request: Request) -> tuple[bool, bool]:
        """(allowed, came with the token in the URL: set the cookie)."""
        if not host_ok(request):
            return False, False
        given = request.query_params.get("token")
        if given is not None:
            return secrets.compare_digest(given.encode(), site.token.encode()), True
        cookie = request.cookies.get(site.cookie)
        return (cookie is not None and secrets.compare_digest(cookie.encode(), site.token.encode())), False

    def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """The token (URL or cookie) and the Host are checked before anything is read."""

        def endpoint(request: Request) -> Response:
            allowed, from_url = authorised_get(request)
            if not allowed:
                return refused(request)
            try:
                response = handler(request)
            except ReviewError as exc:  # e.g. an unreadable reviews.json: say which, do not guess
                response = PlainTextResponse("; ".join(exc.problems), status_code=500)
            if from_url:
                response.set_cookie(site.cookie, site.token, httponly=True, samesite="strict", path="/")
            return secure(response)

        return endpoint

    def page(template: str, **context: Any) -> Response:
        html = site.env.get_template(template).render(lang=site.lang, site=site, token=site.token, **context)
        return HTMLResponse(html)

    def not_found() -> Response:
        return PlainTextResponse(site.t("web.err_not_found"), status_code=404)

    @guarded
    def index(request: Request) -> Response:
        return page("index.html.j2", snap=site.snapshot())

    @guarded
    def question_page(request: Request) -> Response:
        snap = site.snapshot()
        key = f"{request.path_params['assignment']}/{request.path_params['item']}"
        question = snap.questions.get(key)
        if question is None:
            return not_found()
        keys = list(snap.questions)
        following = keys[(keys.index(key) + 1) % len(keys)] if len(keys) > 1 else None
        groups = site.groups(question)
        return page("item.html.j2", snap=snap, question=question, groups=groups,
                    groups_pending=sum(1 for g in groups if g.pending),
                    next_question=snap.questions[following] if following else None)

    @guarded
    def student_page(request: Request) -> Response:
        snap = site.snapshot()
        ref = request.query_params.get("name", "")
        if ref not in snap.students:
            return not_found()
        items = [(q, a) for q in snap.questions.values() for a in q.answers if a.ref == ref]
        return page("student.html.j2", snap=snap, label=snap.students[ref], items=items,
                    score=snap.scores.get(ref, (None, None)))

    @guarded
    def static_file(request: Request) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            return not_found()
        return Response(found[0], media_type=found[1])

    @guarded
    def unknown(request: Request) -> Response:
        return not_found()

    async def score(request: Request) -> Response:
        if not host_ok(request):
            return refused(request)
        # One `student` field per member of a group: a whole class may be one group.
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        given = request.headers.get("x-review-token") or str(form.get("token") or "")
        if not secrets.compare_digest(given.encode(), site.token.encode()):
            return refused(request)  # a POST needs the token itself: the cookie alone is not enough
        wants_json = "application/json" in request.headers.get("accept", "")
        question = str(form.get("item") or "")
        refs = [str(s) for s in form.getlist("student")]
        from starlette.concurrency import run_in_threadpool

        try:
            state = await run_in_threadpool(site.save, question, refs, str(form.get("fp") or ""),
                                            str(form.get("score") or ""), str(form.get("comment") or ""))
        except _HttpError as exc:
            if wants_json:
                return secure(JSONResponse({"ok": False, "error": exc.message}, status_code=exc.status))
            return secure(PlainTextResponse(exc.message, status_code=exc.status))
        except ReviewError as exc:
            message = "; ".join(exc.problems)
            if wants_json:
                return secure(JSONResponse({"ok": False, "error": message}, status_code=400))
            return secure(PlainTextResponse(message, status_code=400))
        if wants_json:
            return secure(JSONResponse(state))
        # Without the script: back to the page the form was on (built from known ids only).
        if form.get("back") == "student" and refs:
            target = "/student?name=" + quote(refs[0], safe="")
        else:
            assignment, _, item = question.partition("/")
            target = f"/item/{quote(assignment, safe='')}/{quote(item, safe='')}#g-{form.get('fp')}"
        return secure(RedirectResponse(target, status_code=303))

    routes = [
        Route("/", index),
        Route("/item/{assignment}/{item}", question_page),
        Route("/student", student_page),
        Route("/static/{name}", static_file),
        Route("/score", score, methods=["POST"]),
    ]

    async def fallback(request: Request, exc: Exception) -> Response:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(unknown, request)  # 403 without the token, else 404

    return Starlette(routes=routes, exception_handlers={404: fallback, 405: fallback})


# --------------------------------------------------------------------------------------------
# running it
# --------------------------------------------------------------------------------------------


def _bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: a free one), or a UsageError that says why."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is 0 (any free one) to 65535")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}): choose another --port, "
                         "or --port 0 for any free one") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(site: ReviewSite, sock: socket.socket):
    import uvicorn

    # No access log: it would print the token of every request with one in its URL.
    config = uvicorn.Config(create_app(site), log_level="warning", access_log=False, lifespan="off",
                            server_header=False)
    return uvicorn.Server(config)


def url_of(site: ReviewSite, sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}/?token={site.token}"


def serve(directory: Path, reviewer: str, *, port: int = 0, lang: str | None = None,
          announce: Callable[[str], None] = print) -> None:
    """Serve the review pages of `directory` until Ctrl-C; `announce` gets the URL to open."""
    _require_web()
    site = ReviewSite(directory, reviewer, lang=lang)
    sock = _bind(port)
    try:
        server = _server(site, sock)
        announce(url_of(site, sock))
        server.run(sockets=[sock])
    finally:
        sock.close()


def start_background(directory: Path, reviewer: str, *, port: int = 0, lang: str | None = None,
                     token: str | None = None) -> tuple[str, ReviewSite, Callable[[], None]]:
    """Start the server in a thread (tests, scripts): (URL with the token, the site, stop())."""
    _require_web()
    site = ReviewSite(directory, reviewer, lang=lang, token=token)
    sock = _bind(port)
    server = _server(site, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="review-web")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        sock.close()
        raise RuntimeError("the review server did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()

    return url_of(site, sock), site, stop
