"""The submitted notebook's JSON is checked field by field before anything indexes into it
(issue 11.3): a damaged notebook is a rejection with one line saying what and where, in Korean and
English; what is harmless is repaired and noted; the normalised notebook is valid nbformat 4.5."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.errors import SubmissionRejected
from grader.intake import intake
from grader.intake.notebook import MAX_CELLS, MAX_DEPTH, load_notebook

REPO = Path(__file__).resolve().parents[1]
NB = "self_attention_optimized.ipynb"
TEMPLATE = REPO / "student_template" / "w6-self-attention" / NB


def base() -> dict:
    """A small, valid 4.5 notebook: markdown, parameters, two code cells (one with outputs)."""
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "cells": [
            {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "text"]},
            {"id": "params", "cell_type": "code", "metadata": {"tags": ["parameters"]},
             "source": "SEED = 0", "outputs": [], "execution_count": None},
            {"id": "work", "cell_type": "code", "metadata": {}, "source": ["x = 1\n", "print(x)"],
             "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}], "execution_count": 3},
            {"id": "answer", "cell_type": "markdown", "metadata": {"tags": ["answer-q1"]}, "source": "because"},
        ],
    }


def load(nb: dict | bytes) -> tuple[dict, list[str]]:
    raw = nb if isinstance(nb, bytes) else json.dumps(nb).encode()
    return load_notebook(raw, f"hw/{NB}")


def rejected(nb: dict | bytes) -> SubmissionRejected:
    with pytest.raises(SubmissionRejected) as caught:
        load(nb)
    exc = caught.value
    for lang in ("en", "ko"):
        text = exc.render(lang)
        assert "\n" not in text and "Traceback" not in text
    return exc


def changed(**at) -> dict:
    """base() with fields replaced: changed(cell=3, source=5) or changed(metadata=[])."""
    nb = base()
    target = nb["cells"][at.pop("cell") - 1] if "cell" in at else nb
    target.update(at)
    return nb


# --- the notebooks from the issue: rejected, not a grader failure ------------------------------------

@pytest.mark.parametrize("nb, where, what, korean", [
    (changed(metadata=[]), "", "metadata must be a JSON object, not a list", "metadata에는 JSON 객체"),
    (changed(cell=3, metadata=[]), "cell 3: ", "metadata must be a JSON object, not a list", "셀 3: metadata"),
    (changed(cell=3, source=5), "cell 3: ", "source must be text (a string or a list of strings), not a number",
     "셀 3: source에는 텍스트"),
    (changed(cell=3, source=["x = 1\n", None]), "cell 3: ",
     "source must be text (a string or a list of strings), not a list whose item 2 is null", "2번째 항목이"),
    (changed(cell=2, metadata={"tags": "parameters"}), "cell 2: ",
     "metadata.tags must be a list of strings, not a string", "셀 2: metadata.tags"),
    (changed(cell=1, cell_type="heading"), "cell 1: ",
     "unknown cell type 'heading' (the notebook format has code, markdown and raw cells)", "알 수 없는 셀 종류"),
    (changed(cell=4, cell_type=7), "cell 4: ", "cell_type must be text, not a number", "셀 4: cell_type"),
    (changed(nbformat="4"), "", "nbformat must be a whole number, not a string", "nbformat에는 정수"),
])
def test_a_wrong_type_is_rejected_with_what_and_where(nb, where, what, korean):
    exc = rejected(nb)
    assert str(exc) == (f"the notebook hw/{NB} is damaged: {where}{what}; restore a copy that opens in "
                        "Jupyter and submit again")
    assert korean in exc.render("ko")


def test_a_cell_that_is_not_an_object_or_has_no_source_is_rejected():
    nb = base()
    nb["cells"][1] = [1, 2]
    assert "cell 2: cell must be a JSON object, not a list" in str(rejected(nb))
    nb = base()
    del nb["cells"][2]["source"]
    assert "cell 3: source is missing" in str(rejected(nb))
    nb = base()
    del nb["cells"][0]["cell_type"]
    assert "cell 1 has no cell type" in str(rejected(nb))


def test_format_versions_other_than_4_are_rejected():
    assert "uses notebook format 3, older than 4" in str(rejected(changed(nbformat=3)))
    assert "uses notebook format 5, which the grader does not read" in str(rejected(changed(nbformat=5)))
    # JSON's true is no version (Python would take it for 1)
    assert "nbformat must be a whole number, not true or false" in str(rejected(changed(nbformat=True)))


def test_hostile_values_are_bounded():
    deep = b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}, \"cells\": []}"
    assert f"nested more than {MAX_DEPTH} levels" in str(rejected(deep))
    nb = base()
    nested: list = []
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    nb["cells"][2]["metadata"]["deep"] = nested
    assert f"cell 3: values are nested more than {MAX_DEPTH} levels" in str(rejected(nb))
    raw = json.dumps(base()).replace('"SEED = 0"', "1e999").encode()
    assert "NaN or infinite" in str(rejected(raw))
    raw = json.dumps(base()).replace('"SEED = 0"', "NaN").encode()
    assert "NaN or infinite" in str(rejected(raw))
    raw = json.dumps(base()).replace('"SEED = 0"', "9" * 5000).encode()
    assert "a number has more than" in str(rejected(raw))
    raw = json.dumps(base()).replace("because", "\\udc80 lone").encode()
    assert "cell 4: a text holds an invalid character" in str(rejected(raw))
    many = base()
    many["cells"] = [{"cell_type": "markdown", "metadata": {}, "source": ""}] * (MAX_CELLS + 1)
    assert f"has {MAX_CELLS + 1} cells, more than the limit of {MAX_CELLS}" in str(rejected(many))


def test_encodings_and_json_errors_keep_their_messages():
    assert "is not UTF-8 text" in str(rejected(b'{"cells": ["\xff"]}'))
    assert "is empty" in str(rejected(b"  \n"))
    assert "is not valid JSON (line 1" in str(rejected(b'{"cells": [}'))
    assert "is JSON but not a Jupyter notebook" in str(rejected(b'{"cells": {}}'))
    data, notes = load(b"\xef\xbb\xbf" + json.dumps(base()).encode())  # a BOM is harmless
    assert notes == [] and len(data["cells"]) == 4


# --- repairs: harmless, noted, and the result is valid nbformat -------------------------------------

def valid_v45(data: dict) -> None:
    nbformat.validate(nbformat.from_dict(copy.deepcopy(data)), version=4, version_minor=5)


def test_a_valid_notebook_is_normalised_without_notes():
    data, notes = load(base())
    assert notes == []
    assert data["cells"][0]["source"] == "# Title\ntext"       # Jupyter's list of lines, joined
    assert data["cells"][2]["outputs"][0]["text"] == "1\n"
    assert [c["id"] for c in data["cells"]] == ["intro", "params", "work", "answer"]
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    valid_v45(data)


def test_older_minor_versions_get_ids_and_say_so():
    nb = base()
    nb["nbformat_minor"] = 0
    for cell in nb["cells"]:
        del cell["id"]
    data, notes = load(nb)
    assert notes == ["notebook format 4.0 read as 4.5 (cell ids added)"]
    ids = [c["id"] for c in data["cells"]]
    assert len(set(ids)) == 4 and data["nbformat_minor"] == 5
    assert load(nb)[0] == data  # the same file gives the same notebook (a regrade sends the same)
    valid_v45(data)


def test_repairs_are_noted_with_their_cells():
    nb = base()
    nb["cells"][1]["id"] = "work"                                   # a repeated id
    nb["cells"][0]["outputs"] = []                                  # markdown has no outputs
    nb["cells"][2]["outputs"].append({"output_type": "widget-ish"})  # unknown output type
    nb["cells"][2]["outputs"].append({"output_type": "stream", "name": 1, "text": "x"})
    nb["cells"][2]["metadata"].update(collapsed="yes", scrolled="auto")
    nb["cells"][1]["metadata"]["tags"] = ["parameters", "parameters", "a,b", ""]
    nb["cells"][2]["execution_count"] = -4
    del nb["cells"][3]["metadata"]
    nb["metadata"]["kernelspec"] = "python3"
    nb["extra"] = 1
    data, notes = load(nb)
    assert sorted(notes) == sorted([
        "top-level field 'extra' dropped: the notebook format has no such field",
        "invalid notebook metadata 'kernelspec' dropped",
        "field 'outputs' dropped from markdown cells: the notebook format has no such field (cell 1)",
        "repeated, empty or comma-holding tags dropped (cell 2)",
        "invalid cell metadata 'collapsed' dropped (cell 3)",
        "outputs of unknown type dropped (cell 3)",
        "outputs not in the notebook format dropped (cell 3)",
        "invalid execution count cleared (cell 3)",
        "cell without metadata: empty metadata added (cell 4)",
        "invalid or repeated cell id replaced (cell 3)",  # the first "work" keeps its id
    ])
    cells = data["cells"]
    assert cells[1]["metadata"]["tags"] == ["parameters"] and cells[2]["metadata"]["scrolled"] == "auto"
    assert cells[2]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    assert cells[1]["id"] == "work" and cells[2]["id"] not in ("work", "params", "intro", "answer")
    assert "extra" not in data and "kernelspec" not in data["metadata"]
    valid_v45(data)


def test_many_cells_with_the_same_repair_make_one_note():
    nb = base()
    nb["cells"] = [{"cell_type": "markdown", "source": "x", "id": f"c{i}"} for i in range(8)]
    _, notes = load(nb)
    assert notes == ["cell without metadata: empty metadata added (cells 1, 2, 3, 4, 5 and 3 more)"]


def test_intake_exposes_the_normalised_notebook_and_notes_the_repairs(tmp_path):
    nb = base()
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        del cell["id"]
    path = tmp_path / NB
    path.write_text(json.dumps(nb), encoding="utf-8")
    sub = intake(path, tmp_path / "dest")
    assert sub.notebook_data["cells"][2]["source"] == "x = 1\nprint(x)"
    assert "notebook format 4.4 read as 4.5 (cell ids added)" in sub.notes
    assert json.loads(sub.notebook.read_text(encoding="utf-8")) == nb  # the file stays as submitted
    valid_v45(sub.notebook_data)


def test_the_course_template_and_solution_load_unchanged():
    for path in (TEMPLATE, REPO / "reference" / "solutions" / "w6-self-attention" / NB):
        if not path.is_file():
            continue
        data, notes = load_notebook(path.read_bytes(), NB)
        assert notes == []
        original = json.loads(path.read_text(encoding="utf-8"))
        assert [c["source"] for c in data["cells"]] == [
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in original["cells"]]


# --- the command line: exit 2, one line, no traceback or host path ----------------------------------

@pytest.mark.parametrize("mutate", [
    lambda nb: nb.__setitem__("metadata", []),
    lambda nb: nb["cells"][2].__setitem__("metadata", []),
    lambda nb: nb["cells"][2].__setitem__("source", 5),
], ids=["notebook metadata []", "cell metadata []", "source 5"])
def test_the_cli_rejects_the_issues_notebooks_with_exit_2(tmp_path, mutate):
    nb = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    mutate(nb)
    path = tmp_path / NB
    path.write_text(json.dumps(nb), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "grader.cli", str(path), "--out", str(out), "--sandbox", "local",
                           "-q"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is damaged: " in proc.stderr
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "rejected" and "traceback" not in result
    for report in out.rglob("*"):
        if report.is_file():
            text = report.read_text(encoding="utf-8", errors="replace")
            assert "Traceback" not in text and str(REPO) not in text, report.name
