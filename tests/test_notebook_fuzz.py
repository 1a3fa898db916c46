"""Malformed notebooks, generated with a fixed seed (issue 11.3): every one is either accepted
(and then valid nbformat 4.5) or rejected with one line; none crashes the grader. A handful go
through the command line too: exit 0 or 2 only, and nothing written carries a traceback or a path
of the grader's machine."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.errors import SubmissionRejected
from grader.intake import intake

REPO = Path(__file__).resolve().parents[1]
NB = "self_attention_optimized.ipynb"
SEED = 20261130
N_CASES = 300

# Values too big or too strange for json.dumps: markers, replaced in the serialised text.
RAW = {
    "@@deep@@": "[" * 3000 + "]" * 3000,
    "@@nested70@@": "[" * 70 + "]" * 70,
    "@@bigint@@": "7" * 5000,
    "@@longint@@": "9" * 300,
    "@@nan@@": "NaN",
    "@@inf@@": "-Infinity",
    "@@huge_float@@": "1e999",
    "@@surrogate@@": '"\\ud83d lone"',
}


def base_notebook() -> dict:
    """A valid 4.5 notebook with every kind of cell and output."""
    png = "iVBORw0KGgo="
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python", "version": "3.11"}, "title": "hw6"},
        "cells": [
            {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": ["# Self-attention\n", "![x](attachment:a.png)"],
             "attachments": {"a.png": {"image/png": png}}},
            {"id": "params", "cell_type": "code", "metadata": {"tags": ["parameters"]},
             "source": ["SEED = 0\n", "DEVICE = 'cpu'\n", "DATA_DIR = 'data'\n", "PROFILE = 'smoke'"],
             "outputs": [], "execution_count": 1},
            {"id": "work", "cell_type": "code", "metadata": {"collapsed": False, "scrolled": "auto"},
             "source": "x = 6 * 7\nx", "execution_count": 2,
             "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]},
                         {"output_type": "execute_result", "execution_count": 2, "metadata": {},
                          "data": {"text/plain": ["42"], "application/json": {"a": [1, 2]}}},
                         {"output_type": "display_data", "metadata": {"image/png": {"width": 4}},
                          "data": {"image/png": png, "text/plain": "<Figure>"}},
                         {"output_type": "error", "ename": "ValueError", "evalue": "old run",
                          "traceback": ["ValueError: old run"]}]},
            {"id": "raw", "cell_type": "raw", "metadata": {"format": "text/plain"}, "source": "raw text"},
            {"id": "answer", "cell_type": "markdown", "metadata": {"tags": ["answer-q1"], "jupyter": {}},
             "source": "my answer"},
        ],
    }


BASE_CODE = ["".join(c["source"]) for c in base_notebook()["cells"] if c["cell_type"] == "code"]


def wrong_value(rng: random.Random):
    choices = [
        lambda: rng.choice([0, -1, 7, 2**40]), lambda: rng.choice([3.5, -0.0]), lambda: rng.choice([True, False]),
        lambda: None, lambda: rng.choice(["", "text", "code", "markdown", "a,b", "\n"]), lambda: [],
        lambda: {}, lambda: [1, "a", None], lambda: {"x": [1, {"y": None}]}, lambda: ["line\n", 5],
        lambda: "x" * rng.choice([10_000, 300_000]), lambda: [{}] * rng.choice([3, 2000]),
        lambda: rng.choice(list(RAW)), lambda: "유니코드 \u200b\ufeff 텍스트",
    ]
    return rng.choice(choices)()


def all_paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from all_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from all_paths(value, prefix + (i,))


def get(node, path):
    for step in path:
        node = node[step]
    return node


def mutate(nb: dict, rng: random.Random) -> None:
    paths = [p for p in all_paths(nb) if p]
    lists = [p for p in all_paths(nb) if isinstance(get(nb, p), list)]
    action = rng.choice(["set", "set", "set", "delete", "add", "list", "cell_type"])
    if not paths or (action == "list" and not lists):
        action = "add"
    path = rng.choice(paths) if paths else ("cells",)
    parent = get(nb, path[:-1])
    if action == "set":
        parent[path[-1]] = wrong_value(rng)
    elif action == "delete":
        del parent[path[-1]]
    elif action == "add":
        dicts = [p for p in all_paths(nb) if isinstance(get(nb, p), dict)]
        target = get(nb, rng.choice(dicts))
        target[rng.choice(["extra", "outputs", "id", "attachments", "source", "metadata", "execution_count",
                           "output_type", "tags", "papermill"])] = wrong_value(rng)
    elif action == "list":
        target = get(nb, rng.choice(lists))
        if target and rng.random() < 0.5:
            target.insert(rng.randrange(len(target)), copy.deepcopy(rng.choice(target)))  # duplicate (ids!)
        else:
            target.append(wrong_value(rng))
    else:
        cells = nb.get("cells")
        if isinstance(cells, list) and cells and isinstance(cells[0], dict):
            rng.choice([c for c in cells if isinstance(c, dict)] or [{}])["cell_type"] = rng.choice(
                ["code", "markdown", "raw", "heading", 3, None, "Code"])


def serialise(nb, rng: random.Random) -> bytes:
    text = json.dumps(nb, ensure_ascii=rng.random() < 0.5)
    for marker, raw in RAW.items():
        text = text.replace(json.dumps(marker), raw)
    data = text.encode("utf-8")
    roll = rng.random()
    if roll < 0.06:
        data = b"\xef\xbb\xbf" + data                               # a UTF-8 BOM: harmless
    elif roll < 0.09:
        data = b"\xff\xfe" + text.encode("utf-16-le")               # UTF-16 with its BOM
    elif roll < 0.13:
        cut = rng.randrange(len(data))
        data = data[:cut] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"]) + data[cut:]
    elif roll < 0.16:
        data = data[: rng.randrange(len(data))]                    # cut off
    elif roll < 0.18:
        data = rng.choice([b"", b"  \n", b"[]", b"5", b'"nb"', b"null", b'{"cells": 1}', b"{}"])
    return data


def cases() -> list[bytes]:
    rng = random.Random(SEED)
    out = []
    for _ in range(N_CASES):
        nb = base_notebook()
        for _ in range(rng.choice([1, 1, 2, 3])):
            mutate(nb, rng)
        out.append(serialise(nb, rng))
    return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """(bytes, "accepted" | the rejection reason in English, the normalised notebook or None, notes)."""
    folder = tmp_path_factory.mktemp("fuzz")
    results = []
    for i, data in enumerate(cases()):
        source = folder / f"case{i}" / NB
        source.parent.mkdir()
        source.write_bytes(data)
        try:
            sub = intake(source, folder / f"dest{i}")
        except SubmissionRejected as exc:
            for lang in ("en", "ko"):
                reason = exc.render(lang)
                assert reason and "\n" not in reason and len(reason) < 800, (i, reason)
                assert "Traceback" not in reason and str(REPO) not in reason and str(folder) not in reason, (i, reason)
            results.append((data, str(exc), None, []))
        else:
            results.append((data, "accepted", sub.notebook_data, sub.notes))
    return results


def test_every_malformed_notebook_is_accepted_valid_or_rejected_in_one_line(outcomes):
    accepted = [nb for _, outcome, nb, _ in outcomes if outcome == "accepted"]
    rejected = [outcome for _, outcome, _, _ in outcomes if outcome != "accepted"]
    repaired = [notes for _, outcome, _, notes in outcomes if outcome == "accepted" and len(notes) > 1]
    # the generator reaches both sides (a fuzzer that only ever rejects would prove little)
    assert len(accepted) >= 30 and len(rejected) >= 100 and len(repaired) >= 10, \
        (len(accepted), len(rejected), len(repaired))
    for nb in accepted:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)), version=4, version_minor=5)
        json.dumps(nb, ensure_ascii=False).encode("utf-8")         # writable back as UTF-8 JSON
        assert all(isinstance(c["source"], str) for c in nb["cells"])
    # the rejections say where and what in the notebook's terms, not Python's
    assert not any("object has no attribute" in r or "NoneType" in r for r in rejected)


def test_the_same_seed_gives_the_same_cases():
    assert cases()[:20] == cases()[:20]


def _cli_cases(outcomes) -> list[tuple[str, bytes]]:
    """Three rejected cases and the accepted one with the most repairs, among those whose code is
    the base's own (so that no cell fails and prints a traceback of the student's). Only one is
    accepted because only that one runs a notebook (about 15 s on the 2-core machine)."""
    rejected = [data for data, outcome, _, _ in outcomes if outcome != "accepted"]
    accepted = [(len(notes), -i, data) for i, (data, outcome, nb, notes) in enumerate(outcomes)
                if outcome == "accepted"
                and ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"] == BASE_CODE]
    return [("rejected", rejected[0]), ("rejected", rejected[len(rejected) // 2]), ("rejected", rejected[-1]),
            ("accepted", max(accepted)[2])]


@pytest.mark.notebook
def test_a_handful_through_the_command_line_exit_0_or_2_and_leak_nothing(outcomes, tmp_path):
    for n, (expected, data) in enumerate(_cli_cases(outcomes)):
        source = tmp_path / f"sub{n}" / NB
        source.parent.mkdir()
        source.write_bytes(data)
        out = tmp_path / f"out{n}"
        proc = subprocess.run(
            [sys.executable, "-m", "grader.cli", str(source), "--out", str(out), "--sandbox", "local", "-q",
             "--cell-timeout", "30", "--timeout", "120", "--memory", "2048"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == (2 if expected == "rejected" else 0), (n, proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and str(REPO) not in proc.stderr
        result = json.loads((out / "result.json").read_text(encoding="utf-8"))
        assert result["status"] == ("rejected" if expected == "rejected" else "graded")
        if expected == "accepted":  # the repairs are told in the submission's notes
            assert any("dropped" in note for note in result["submission"]["notes"]), result["submission"]
        for written in out.rglob("*"):
            if written.is_file():
                text = written.read_bytes().decode("utf-8", errors="replace")
                for leak in ("Traceback", str(REPO), "grader-run-"):
                    assert leak not in text, (n, written.name, leak)
