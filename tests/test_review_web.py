"""`grade review DIR --web`: the TA's local review page (grader/review/web.py).

A batch of synthetic graded results (no notebook runs, see tests/test_review.py) is served
in-process on 127.0.0.1 from a thread; headless Chromium (Debian's `chromium`, as in
tests/test_browser.py) scores one question for every student with the keyboard alone.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra (starlette, uvicorn) is a dev dependency")
pytest.importorskip("uvicorn")
pytest.importorskip("sklearn")
httpx = pytest.importorskip("httpx")

from grader.review import (  # noqa: E402
    REVIEWS_NAME, answer_sha256, apply_reviews, read_history, refresh_gradebook, review_lock,
)
from grader.review.web import diff_words, fingerprint, group_answers, render_answer, start_background  # noqa: E402
from tests.test_review import synthetic_result  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a headless run as root on a machine with no outside network (as tests/test_browser.py).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ITEM = "exp-analysis"                      # 2 points
QUESTION = f"w6-self-attention/{ITEM}"
EVIL = ('See <img src=x onerror="window.evilRan=1;alert(1)"> and [click me](javascript:window.evilRan=2;alert(2)) '
        'and ![plot](http://example.com/plot.png)')
ANSWERS = {
    # one group: the same answer (case and spaces differ), and a near-identical one (one word more)
    "ahn": "Memory grows as $O(T^2)$ for the naive version and T*chunk for chunked; chunking costs 20% more time.",
    "baek": "memory grows as  $O(T^2)$ for the naive version and T*chunk for chunked;\nchunking costs 20% more time.",
    "cho": "Memory grows as $O(T^2)$ for the naive version and T*chunk for the chunked; chunking costs 20% more time.",
    "choi": "It is **faster** with chunks: $a_i * b_i$ summed.",      # reviewed before the page opens
    "evil": EVIL,
    "kim": "메모리는 순진한 구현에서 T^2로, 청크 구현에서 T*chunk로 증가합니다.",
    "lee": "",
}
BASE_SCORE = 25.0   # the synthetic result: every automatic item passed, 5 points of manual items pending


def load(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text(encoding="utf-8"))


def check(folder: Path, item: str = ITEM) -> dict:
    return next(c for c in load(folder)["checks"] if c["id"] == item)


def gradebook(batch: Path) -> dict[str, dict]:
    with open(batch / "gradebook.csv", encoding="utf-8-sig", newline="") as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


def write_result(folder: Path, result: dict) -> Path:
    """A result folder without its reports (a review writes them): quicker than make_result."""
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture
def batch(tmp_path) -> Path:
    out = tmp_path / "batch"
    for student, answer in ANSWERS.items():
        write_result(out / student, synthetic_result({ITEM: answer}))
    refresh_gradebook(out)
    return out


@pytest.fixture
def light_batch(tmp_path) -> Path:
    """Two results, no gradebook (enough where nothing is saved)."""
    out = tmp_path / "light"
    for student in ("kim", "lee"):
        write_result(out / student, synthetic_result())
    return out


@pytest.fixture
def server(batch):
    url, site, stop = start_background(batch, "web-ta", lang="en")
    yield url, site
    stop()


def base_of(url: str) -> str:
    return url.split("/?token=")[0]


def token_of(url: str) -> str:
    return url.split("token=")[1]


def post_score(base: str, token: str, students: list[str], answers: dict[str, str], score, *, item=QUESTION,
               comment: str = "", fp: str | None = None, client=None):
    data = {"token": token, "item": item, "student": students, "score": str(score), "comment": comment,
            "fp": fp or fingerprint((s, answer_sha256(answers[s])) for s in students)}
    return (client or httpx).post(f"{base}/score", data=data, headers={"Accept": "application/json"}, timeout=60)


# --------------------------------------------------------------------------------------------
# the server: token, host, no path from a request, headers
# --------------------------------------------------------------------------------------------


def test_requests_without_the_token_are_refused(server):
    url, site = server
    base, token = base_of(url), token_of(url)
    assert url.startswith("http://127.0.0.1:") and len(token) >= 24
    for path in ("/", f"/item/{QUESTION}", "/student?name=kim", "/static/review.js", "/no/such/page"):
        assert httpx.get(base + path).status_code == 403, path
        assert httpx.get(base + path, params={"token": token[:-1] + "x"}).status_code == 403, path
    # another site's page in the TA's browser cannot post scores: a POST needs the token itself
    with httpx.Client() as client:
        assert client.get(url).status_code == 200            # sets the cookie
        assert client.get(base + f"/item/{QUESTION}").status_code == 200   # the cookie is enough to read
        refused = client.post(base + "/score", data={"item": QUESTION, "student": ["kim"], "score": "1", "fp": "x"})
        assert refused.status_code == 403
    # DNS rebinding: the right token under another host name is refused too
    assert httpx.get(url, headers={"Host": "attacker.example"}).status_code == 403
    assert not (read_history(site.directory / "kim"))


def test_pages_carry_a_strict_policy_and_no_inline_script_or_style(server):
    url, _ = server
    base = base_of(url)
    with httpx.Client() as client:
        pages = [client.get(url), client.get(f"{base}/item/{QUESTION}"), client.get(f"{base}/student?name=evil")]
    for response in pages:
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy and "img-src 'self'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        html = response.text
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/review.js" defer>']
        assert "<style" not in html and " style=" not in html
        # (a student's "<img onerror=...>" is text here: its "<" is escaped, so it is no tag)
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", html), "no event-handler attribute on any element"
        assert not re.search(r"""<[^>]*\b(src|href)\s*=\s*["']?(https?:|//|javascript:)""", html, flags=re.I)


def test_a_hostile_student_name_is_shown_as_text(batch):
    name = '<img src=x onerror="alert(1)">'
    write_result(batch / name, synthetic_result({ITEM: "fine"}))
    refresh_gradebook(batch)
    url, _, stop = start_background(batch, "web-ta", lang="en")
    try:
        with httpx.Client() as client:
            pages = [client.get(url).text, client.get(f"{base_of(url)}/item/{QUESTION}").text,
                     client.get(f"{base_of(url)}/student", params={"name": name}).text]
            done = post_score(base_of(url), token_of(url), [name], {name: "fine"}, 1, client=client)
    finally:
        stop()
    for html in pages:
        assert "&lt;img src=x onerror=" in html and "<img" not in html
    assert done.status_code == 200, done.text
    assert [e["score"] for e in read_history(batch / name)] == [1.0]


def test_no_path_comes_from_a_request(server, batch):
    url, _ = server
    base = base_of(url)
    with httpx.Client() as client:
        assert client.get(url).status_code == 200
        for path in ("/student?name=../kim", "/student?name=%2Fetc%2Fpasswd", "/student?name=.",
                     "/item/w6-self-attention/..%2F..%2Fkim", "/item/..%2F..%2F/exp-analysis",
                     "/static/..%2Fweb.py", "/static/review.js.j2", "/static/%2E%2E/__init__.py", "/kim/result.json"):
            assert client.get(base + path).status_code == 404, path
        answers = dict(ANSWERS, **{"../kim": ANSWERS["kim"]})
        bad = post_score(base, token_of(url), ["../kim"], answers, 1, client=client)
        assert bad.status_code == 400 and bad.json()["ok"] is False
    assert not any((batch / s / REVIEWS_NAME).exists() for s in ANSWERS)


def test_a_save_is_refused_when_the_answers_changed_since_the_page_was_loaded(server, batch):
    url, _ = server
    stale = post_score(base_of(url), token_of(url), ["kim"], ANSWERS, 1, fp="0" * 20)
    assert stale.status_code == 409 and "reload" in stale.json()["error"]
    out_of_range = post_score(base_of(url), token_of(url), ["kim"], ANSWERS, 2.5)
    assert out_of_range.status_code == 400 and "0 to 2" in out_of_range.json()["error"]
    assert not (batch / "kim" / REVIEWS_NAME).exists()


def test_the_forms_work_without_the_script(server, batch):
    url, _ = server
    base, token = base_of(url), token_of(url)
    fp = fingerprint([("kim", answer_sha256(ANSWERS["kim"]))])
    form = {"token": token, "item": QUESTION, "student": ["kim"], "score": "1,5", "comment": "ok", "fp": fp}
    done = httpx.post(f"{base}/score", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/item/{QUESTION}#g-{fp}"
    done = httpx.post(f"{base}/score", data=dict(form, score="1", back="student"), follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/student?name=kim"
    assert [(e["score"], e["comment"]) for e in read_history(batch / "kim")] == [(1.5, "ok"), (1.0, "ok")]


def test_one_result_folder_is_reviewed_too(tmp_path):
    folder = write_result(tmp_path / "park", synthetic_result({ITEM: "a single answer"}))
    url, _, stop = start_background(folder, "web-ta", lang="en")
    try:
        with httpx.Client() as client:
            index = client.get(url).text
            student = client.get(f"{base_of(url)}/student", params={"name": "."}).text
            done = post_score(base_of(url), token_of(url), ["."], {".": "a single answer"}, 2, client=client)
    finally:
        stop()
    assert ">park</a>" in index and "Answers of park" in student and "a single answer" in student
    assert done.status_code == 200 and done.json()["progress"]["batch_reviewed"] == 1
    assert check(folder)["score"] == 2.0 and load(folder)["score"] == pytest.approx(BASE_SCORE + 2, abs=1e-9)


def test_the_page_is_in_the_language_asked_for(batch):
    url, _, stop = start_background(batch, "web-ta", lang="ko")
    try:
        with httpx.Client() as client:
            html = client.get(url).text
            item = client.get(f"{base_of(url)}/item/{QUESTION}").text
    finally:
        stop()
    assert '<html lang="ko">' in html and "서술형 답안 채점" in html
    assert "측정 결과 분석" in item and "만점: 표의 숫자로" in item   # the rubric's title and guidance in Korean
    assert "Review of free-text answers" not in html


# --------------------------------------------------------------------------------------------
# answers: grouping and rendering
# --------------------------------------------------------------------------------------------


def test_identical_and_near_identical_answers_form_one_group():
    groups = group_answers([(s, a) for s, a in ANSWERS.items()])
    assert groups == [["ahn", "baek", "cho"], ["choi"], ["evil"], ["kim"], ["lee"]]
    korean = group_answers([("a", "어텐션 가중치의 합은 1이다."), ("b", "어텐션 가중치의 합은 1 이다"),
                            ("c", "fp16에서 exp가 오버플로한다."), ("d", " "), ("e", ""), ("f", "x > 0"), ("g", "x < 0")])
    assert korean == [["a", "b"], ["c"], ["d", "e"], ["f"], ["g"]]   # Korean spacing; empty answers apart
    # a threshold above 1 keeps only the exact (normalised) groups
    assert group_answers([(s, a) for s, a in ANSWERS.items()], threshold=1.01)[0] == ["ahn", "baek"]


def test_a_group_shows_every_version_and_the_words_that_differ(server):
    url, site = server
    question = site.snapshot().questions[QUESTION]
    group = site.groups(question)[0]
    assert [a.student for a in group.members] == ["ahn", "baek", "cho"]
    assert [v.students for v in group.variants] == [["ahn", "baek"], ["cho"]]
    assert group.variants[1].diff == [("same", "… version and T*chunk for"), ("ins", "the"),
                                      ("same", "chunked; chunking costs 20% …")]
    assert diff_words("it is exact because of rescaling", "it is not exact because of rescaling") == [
        ("same", "it is"), ("ins", "not"), ("same", "exact because of rescaling")]
    with httpx.Client() as client:
        client.get(url)
        html = client.get(f"{base_of(url)}/item/{QUESTION}").text
    assert "written by ahn, baek:" in html and "written by cho:" in html and "<ins>the</ins>" in html


def test_an_answer_is_rendered_inert_with_its_math_as_tex_source():
    html = str(render_answer(EVIL))
    assert "<img" not in html and "<a " not in html
    assert "&lt;img src=x onerror=" in html                 # shown as text
    assert "[click me](javascript:window.evilRan=2;alert(2))" in html   # not a link: shown as written
    assert "&lt;http://example.com/plot.png&gt;" in html     # an image as its address, never loaded
    math = str(render_answer("**bold** and $a_i * b_i$ and $$\\sum_j x_j$$ but not costs $5 and $6"))
    assert "<strong>bold</strong>" in math and '<code class="tex">$a_i * b_i$</code>' in math
    assert '<code class="tex">$$\\sum_j x_j$$</code>' in math and "costs $5 and $6" in math
    assert "<em>" not in math
    link = str(render_answer("[docs](https://example.com/x)"))
    assert "<a" not in link and "docs" in link and "&lt;https://example.com/x&gt;" in link


# --------------------------------------------------------------------------------------------
# two TAs at once
# --------------------------------------------------------------------------------------------


def test_two_tas_reviewing_the_same_batch_at_once_lose_no_review(batch):
    first, site1, stop1 = start_background(batch, "ta-one", lang="en")
    second, site2, stop2 = start_background(batch, "ta-two", lang="en")
    students = list(ANSWERS)
    theory = {s: "my answer to theory-online-softmax" for s in students}   # synthetic_result's default
    start = threading.Barrier(2)
    failures: list[str] = []

    def review(url: str, points: float) -> None:
        start.wait()
        with httpx.Client() as client:
            for student in students:
                done = post_score(base_of(url), token_of(url), [student], theory, points,
                                  item="w6-self-attention/theory-online-softmax", client=client)
                if done.status_code != 200:
                    failures.append(f"{student}: {done.status_code} {done.text}")

    threads = [threading.Thread(target=review, args=(first, 1.0)), threading.Thread(target=review, args=(second, 0.5))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        stop1()
        stop2()
    assert failures == []
    rows = gradebook(batch)
    for student in students:
        history = read_history(batch / student)
        assert sorted((e["reviewer"], e["score"]) for e in history) == [("ta-one", 1.0), ("ta-two", 0.5)], student
        latest = history[-1]
        assert check(batch / student, "theory-online-softmax")["score"] == latest["score"]
        # the gradebook is rebuilt after the last write: it agrees with every result
        assert float(rows[student]["score"]) == pytest.approx(load(batch / student)["score"], abs=1e-9)


def test_a_save_waits_for_another_writer_holding_the_lock(server, batch):
    url, site = server
    outcome: dict = {}
    with review_lock(batch / "kim"):       # another review (or a regrade) is writing kim's result
        thread = threading.Thread(target=lambda: outcome.update(r=post_score(base_of(url), token_of(url), ["kim"],
                                                                               ANSWERS, 1.5)))
        thread.start()
        deadline = time.monotonic() + 60
        while site.busy_retries == 0 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert site.busy_retries > 0, "the save should have found the lock taken"
        assert not (batch / "kim" / REVIEWS_NAME).exists()
    thread.join(timeout=120)
    assert outcome["r"].status_code == 200, outcome["r"].text
    assert [(e["score"], e["reviewer"], e["via"]) for e in read_history(batch / "kim")] == [(1.5, "web-ta", "web")]


# --------------------------------------------------------------------------------------------
# the browser: one question scored for every student by keyboard alone
# --------------------------------------------------------------------------------------------


def test_a_question_is_scored_for_every_student_by_keyboard_alone(batch, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium fonts-noto-cjk; scripts/setup.sh does)")
    # An earlier review of choi's answer: the web review replaces it, the history keeps it.
    apply_reviews(batch / "choi", {ITEM: {"score": 0.5, "comment": "too short"}}, "early-ta", via="file:x.yaml")
    url, site, stop = start_background(batch, "web-ta", lang="en")
    base = base_of(url)
    requests: list[str] = []
    blocked: list[str] = []
    dialogs: list[str] = []
    errors: list[str] = []

    def route(r):
        if r.request.url.startswith(base + "/"):
            r.continue_()
        else:                              # nothing may leave 127.0.0.1 (and nothing should try)
            blocked.append(r.request.url)
            r.abort()

    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            context = browser.new_context(viewport={"width": 1150, "height": 1000})
            context.route("**/*", route)
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)                                  # the printed URL: sets the cookie
            page.goto(f"{base}/item/{QUESTION}")            # then no token in the URL
            page.wait_for_selector("section.card.current")

            def current() -> list[str]:
                return page.evaluate("Array.from(document.querySelectorAll('section.card.current .members li > a'))"
                                     ".map(a => a.textContent)")

            status_js = """name => {
                const a = Array.from(document.querySelectorAll('section.card .members li > a'))
                    .find(x => x.textContent === name);
                return a.closest('section.card').querySelector('[data-status]').textContent; }"""

            def status_of(student: str) -> str:
                return page.evaluate(status_js, student)

            def wait_saved(student: str) -> None:
                page.wait_for_function(f"name => ({status_js})(name) === 'saved'", arg=student)

            # The pending groups come first, the largest first; choi's reviewed answer last.
            order = page.evaluate("Array.from(document.querySelectorAll('section.card')).map(c => "
                                  "Array.from(c.querySelectorAll('.members li > a')).map(a => a.textContent))")
            assert order == [["ahn", "baek", "cho"], ["evil"], ["kim"], ["lee"], ["choi"]]
            assert "2 near-identical versions" in page.inner_text("section.card.current")
            assert page.inner_text("section.card.current ins") == "the"

            assert current() == ["ahn", "baek", "cho"]      # the whole group at once, with a comment
            page.keyboard.press("c")
            page.keyboard.type("clear, with numbers")
            page.keyboard.press("Enter")
            page.keyboard.press("2")
            wait_saved("ahn")
            page.screenshot(path=str(tmp_path / "review-web.png"), full_page=False)

            assert current() == ["evil"]
            page.keyboard.press("5")                        # more than the 2 points: refused, nothing sent
            assert status_of("evil") == "give 0 to 2 points"
            page.keyboard.press("0")
            wait_saved("evil")
            assert current() == ["kim"]
            page.keyboard.press("h")                        # half marks
            wait_saved("kim")
            assert current() == ["lee"]
            page.keyboard.press("p")                        # typed points
            page.keyboard.type("0.5")
            page.keyboard.press("Enter")
            wait_saved("lee")
            assert page.is_visible("#all-done")
            assert current() == ["choi"]                    # the reviewed one, reviewed again
            page.keyboard.press("f")
            wait_saved("choi")
            assert page.evaluate("document.querySelectorAll('section.card.is-done').length") == 5
            progress = page.inner_text(".item-progress")
            assert progress.startswith("7 of 7 answers reviewed · 0 pending · 0 answer groups pending"), progress

            # the student's content stayed text: no element, no handler, no link, no load
            card = page.inner_text("section.card:has(a[href='/student?name=evil'])")
            assert '<img src=x onerror="window.evilRan=1;alert(1)">' in card
            assert "[click me](javascript:window.evilRan=2;alert(2))" in card
            assert page.evaluate("document.images.length") == 0
            assert page.evaluate("document.querySelectorAll('a[href^=\"javascript\"]').length") == 0
            page.goto(f"{base}/student?name=evil")
            assert "Answers of evil" in page.inner_text("h1")
            page.goto(f"{base}/student?name=choi")
            history = page.inner_text("section.card .history")
            assert "2 review(s)" in history
            page.click("section.card .history summary")
            assert "early-ta · 0.5 · too short" in page.inner_text("section.card .history")
            assert page.evaluate("window.evilRan === undefined")
            browser.close()
    finally:
        stop()
    assert dialogs == [] and errors == []
    assert blocked == [] and requests and all(u.startswith(base + "/") for u in requests)

    expected = {"ahn": 2.0, "baek": 2.0, "cho": 2.0, "evil": 0.0, "kim": 1.0, "lee": 0.5, "choi": 2.0}
    rows = gradebook(batch)
    for student, points in expected.items():
        history = read_history(batch / student)
        assert history[-1]["score"] == points and history[-1]["reviewer"] == "web-ta" and history[-1]["via"] == "web"
        assert history[-1]["answer_sha256"] == answer_sha256(ANSWERS[student])
        c = check(batch / student)
        assert (c["status"], c["score"]) == ("pass" if points else "fail", points)
        result = load(batch / student)
        assert result["score"] == pytest.approx(BASE_SCORE + points, abs=1e-9)
        assert result["criteria"]["experiments"]["pending"] == 0
        assert float(rows[student]["score"]) == pytest.approx(BASE_SCORE + points, abs=1e-9)
        assert float(rows[student]["pending"]) == pytest.approx(3.0, abs=1e-9)  # the two theory answers
    assert [e["comment"] for e in read_history(batch / "baek")] == ["clear, with numbers"]
    assert check(batch / "cho")["message"] == "reviewed by web-ta: clear, with numbers"
    assert [(e["reviewer"], e["score"]) for e in read_history(batch / "choi")] == [("early-ta", 0.5), ("web-ta", 2.0)]
    assert "reviewed by web-ta" in (batch / "choi" / "feedback.html").read_text(encoding="utf-8")
    screenshot = tmp_path / "review-web.png"
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("REVIEW_WEB_SCREENSHOT"):            # docs/review-web.png is made this way
        shutil.copyfile(screenshot, os.environ["REVIEW_WEB_SCREENSHOT"])


def test_a_save_that_fails_leaves_the_answer_pending_and_says_why(batch):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium fonts-noto-cjk; scripts/setup.sh does)")
    url, _, stop = start_background(batch, "web-ta", lang="en")
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(url)
            page.goto(f"{base_of(url)}/student?name=kim")
            page.wait_for_selector("section.card.current")
            assert page.inner_text("section.card.current h2").startswith("Why the online softmax is exact")
            # kim's result is regraded (a new answer) while the page is open
            result = load(batch / "kim")
            next(c for c in result["checks"] if c["id"] == "theory-online-softmax")["answer"] = "a new answer"
            (batch / "kim" / "result.json").write_text(json.dumps(result), encoding="utf-8")
            page.keyboard.press("1")
            page.wait_for_selector("[data-toast]:not([hidden])")
            toast = page.inner_text("[data-toast]")
            first = page.locator("section.card").first
            status = first.locator("[data-status]").inner_text()
            state = first.get_attribute("data-state")
            browser.close()
    finally:
        stop()
    assert "the answers changed since this page was loaded" in toast and "(kim)" in toast
    assert "reload the page" in status and state == "pending"
    assert not (batch / "kim" / REVIEWS_NAME).exists()


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


GRADE = [sys.executable, "-m", "grader.cli"]


def test_the_command_prints_a_tokened_url_serves_it_and_stops_on_ctrl_c(batch):
    proc = subprocess.Popen([*GRADE, "review", str(batch), "--web", "--port", "0", "--reviewer", "cli-ta"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        url = None
        while url is None:
            line = lines.get(timeout=120)    # the URL comes within seconds; a hang fails here
            match = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
            url = match.group(0) if match else None
        assert httpx.get(url, timeout=30).status_code == 200
        assert httpx.get(base_of(url), timeout=30).status_code == 403
        done = post_score(base_of(url), token_of(url), ["lee"], ANSWERS, 1)
        assert done.status_code == 200, done.text
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert [(e["reviewer"], e["score"]) for e in read_history(batch / "lee")] == [("cli-ta", 1.0)]


def run_cli(*args: str):
    """`grade review ...` in this process (the exit-2 paths start no server)."""
    import typer
    from typer.testing import CliRunner

    from grader.review.command import review

    app = typer.Typer()
    app.command("review")(review)
    app.command("other")(lambda: None)   # two commands: `review` is then a sub-command, as in `grade`
    return CliRunner().invoke(app, ["review", *[str(a) for a in args]], env={"COLUMNS": "200"})


@pytest.mark.parametrize("extra, fragment", [
    (["--web", "--scores", "x.yaml"], "--web does not go with --scores"),
    (["--web", "--port", "99999"], "65535"),
    (["--web", "--lang", "fr"], "choose ko or en"),
    (["--port", "8000"], "--port and --lang are options of --web"),
])
def test_bad_web_options_exit_2(light_batch, extra, fragment):
    done = run_cli(light_batch, *extra)
    assert done.exit_code == 2, done.output
    assert fragment in done.output and "Traceback" not in done.output


def test_a_port_in_use_or_a_missing_folder_exits_2_with_one_line(light_batch, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        done = run_cli(light_batch, "--web", "--port", taken.getsockname()[1])
    finally:
        taken.close()
    assert done.exit_code == 2 and "cannot listen on 127.0.0.1" in done.output, done.output
    assert len([line for line in done.output.splitlines() if line.strip()]) == 1
    missing = run_cli(tmp_path / "nope", "--web")
    assert missing.exit_code == 2 and "no such folder" in missing.output, missing.output
