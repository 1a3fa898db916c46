"""w8-midterm: a folder with the package midterm/, the report notebook and slides.pdf.

One whole sandboxed run (the reference gets every auto point, its smoke run under 3 minutes);
everything else in-process (tests/probe_harness.py) or on synthetic folders. Variants that judge the
implementation only skip the experiment cells; the package is re-imported for every variant."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from grader.assignments import REPO_ROOT, expected_mismatches, get_spec, load_staff
from grader.assignments.w8_midterm import CALLS, package_files
from grader.intake import intake
from tests.probe_harness import edit_cells, judge_in_process

SOLUTION = REPO_ROOT / "reference" / "solutions" / "w8-midterm"
TEMPLATE = REPO_ROOT / "student_template" / "w8-midterm"
ASSIGNMENT = "w8-midterm"
BASIC = {"basic-mha", "basic-mha-hidden", "basic-positional", "basic-encoder", "basic-decoder", "basic-padding",
         "basic-causal", "basic-cross-mask", "basic-greedy", "basic-beam", "basic-beam-greedy", "basic-beam-eos",
         "basic-length-penalty"}
QUALITY = {"basic-lint", "basic-docstrings", "basic-runs-clean"}
MANUAL = {"analysis-report-quality", "analysis-talk-quality"}


@pytest.fixture(autouse=True)
def fresh_package():
    """Each variant's own `midterm` package: never the one a previous judge imported."""
    def purge():
        for name in [n for n in sys.modules if n == "midterm" or n.startswith("midterm.")]:
            del sys.modules[name]
        sys.path[:] = [p for p in sys.path if not p.endswith("-work")]

    purge()
    yield
    purge()


def _copy(tmp_path: Path, source: Path = SOLUTION, name: str = "sub") -> Path:
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def _judge(folder: Path, tmp_path: Path, *, experiments: bool = False, name: str = "run") -> dict:
    return judge_in_process(folder / "report.ipynb", ASSIGNMENT, tmp_path / f"{name}-work",
                            skip_tags=() if experiments else ("experiment",))


def _failing(result: dict) -> set[str]:
    return {c["id"] for c in result["checks"] if c["status"] == "fail"}


@pytest.fixture(scope="module")
def reference_impl(tmp_path_factory):
    """The reference judged without its experiment cells (the implementation's verdicts)."""
    tmp = tmp_path_factory.mktemp("w8ref")
    for name in [n for n in sys.modules if n == "midterm" or n.startswith("midterm.")]:
        del sys.modules[name]
    return _judge(_copy(tmp), tmp)


def test_reference_implementation_passes_every_basic_check(reference_impl):
    for check_id in BASIC | QUALITY | {"analysis-slides", "analysis-sections"}:
        assert reference_impl["by_id"][check_id]["status"] == "pass", reference_impl["by_id"][check_id]
    assert reference_impl["criteria"]["implementation"]["score"] == pytest.approx(56.0, abs=1e-9)


def test_blank_template_gets_zero_on_implementation(tmp_path):
    result = _judge(_copy(tmp_path, TEMPLATE), tmp_path)
    assert result["criteria"]["implementation"]["score"] == 0
    for check_id in BASIC - {"basic-mha-hidden"}:
        assert "not implemented" in result["by_id"][check_id]["message"], result["by_id"][check_id]


def test_missing_slides_loses_exactly_the_slides(tmp_path, reference_impl):
    folder = _copy(tmp_path)
    (folder / "slides.pdf").unlink()
    result = _judge(folder, tmp_path)
    assert _failing(result) - _failing(reference_impl) == {"analysis-slides"}
    assert _failing(reference_impl) - _failing(result) == set()
    assert "slides.pdf is missing" in result["by_id"]["analysis-slides"]["message"]


def test_slides_that_are_not_a_pdf_or_too_short(tmp_path, reference_impl):
    folder = _copy(tmp_path)
    (folder / "slides.pdf").write_bytes(b"not a pdf at all")
    result = _judge(folder, tmp_path)
    assert _failing(result) - _failing(reference_impl) == {"analysis-slides"}
    assert "does not open as a PDF" in result["by_id"]["analysis-slides"]["message"]


def test_missing_package_loses_the_package_items_and_names_it(tmp_path, reference_impl):
    folder = _copy(tmp_path)
    shutil.rmtree(folder / "midterm")
    result = _judge(folder, tmp_path)
    lost = _failing(result) - _failing(reference_impl)
    assert BASIC - {"basic-mha-hidden"} <= lost and lost <= BASIC | QUALITY
    for check_id in BASIC - {"basic-mha-hidden"}:
        assert "midterm/ is missing" in result["by_id"][check_id]["message"], result["by_id"][check_id]
    assert result["criteria"]["implementation"]["score"] == 0


def test_intake_lists_the_package_and_the_slides(tmp_path):
    folder = _copy(tmp_path)
    (folder / "slides.pdf").unlink()
    submission = intake(folder, tmp_path / "dest")
    assert submission.assignment.id == ASSIGNMENT and submission.notebook.name == "report.ipynb"
    found = {d.name: d for d in submission.deliverables}
    assert found["midterm/"].kind == "package" and found["midterm/"].present
    assert found["slides.pdf"].kind == "file" and not found["slides.pdf"].present
    assert "missing" in found["slides.pdf"].detail


SHORTCUT_TORCH_TRANSFORMER = """

class TorchEncoder(nn.Module):
    \"\"\"torch's own encoder stack.\"\"\"

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model, n_heads, batch_first=True), 1)
"""


def test_package_using_torch_transformer_loses_the_requirement(tmp_path, reference_impl):
    folder = _copy(tmp_path)
    model = folder / "midterm" / "model.py"
    source = model.read_text(encoding="utf-8")
    # The full model reaches torch's transformer: Transformer.__init__ builds it (outputs unchanged).
    source = source.replace("        self.generator = nn.Linear(d_model, tgt_vocab)\n",
                            "        self.generator = nn.Linear(d_model, tgt_vocab)\n"
                            "        self.shadow = [nn.Transformer(d_model, n_heads, 1, 1, d_ff, batch_first=True)]\n", 1)
    model.write_text(source, encoding="utf-8")
    result = _judge(folder, tmp_path)
    lost = _failing(result) - _failing(reference_impl)
    assert {"basic-encoder", "basic-padding", "basic-causal", "basic-greedy", "basic-beam"} <= lost
    assert {"basic-mha", "basic-positional", "basic-decoder", "basic-cross-mask"}.isdisjoint(lost)
    message = result["by_id"]["basic-greedy"]["message"]
    assert "torch.nn.Transformer" in message and "model.py" in message


def test_attention_by_torch_sdpa_loses_the_attention_checks(tmp_path, reference_impl):
    folder = _copy(tmp_path)
    model = folder / "midterm" / "model.py"
    source = model.read_text(encoding="utf-8")
    marker = "class MultiHeadAttention(nn.Module):"
    assert marker in source
    source = source.replace("    def _split(self, x: Tensor) -> Tensor:",
                            "    def _fused(self, q, k, v):\n"
                            "        \"\"\"torch's fused attention.\"\"\"\n"
                            "        return F.scaled_dot_product_attention(q, k, v)\n\n"
                            "    def _split(self, x: Tensor) -> Tensor:", 1)
    source = source.replace("        q = self._split(", "        self._fused\n        q = self._split(", 1)
    model.write_text(source, encoding="utf-8")
    result = _judge(folder, tmp_path)
    assert "basic-mha" in _failing(result) - _failing(reference_impl)
    assert "scaled_dot_product_attention" in result["by_id"]["basic-mha"]["message"]


SEEDED_BUGS = {
    # the source mask ignores PAD: padding moves the encoder's real positions
    "src-mask-ignores-pad": ("    return (src != pad_id)[:, None, None, :]",
                             "    return torch.ones_like(src, dtype=torch.bool)[:, None, None, :]", {"basic-padding"}),
    # the target mask lets query i see key i + 1 (harmless for one-layer decoding: see w7_transformer)
    "tgt-mask-sees-next": ("device=tgt.device).tril()", "device=tgt.device).tril(diagonal=1)", {"basic-causal"}),
    # GNMT's penalty with the wrong denominator
    "length-penalty-denominator": ("((5.0 + length.float()) / 6.0) ** alpha", "((5.0 + length.float()) / 5.0) ** alpha",
                                   {"basic-length-penalty"}),
}


@pytest.mark.parametrize("bug", sorted(SEEDED_BUGS))
def test_a_seeded_bug_in_the_package_loses_exactly_its_check(tmp_path, reference_impl, bug):
    original, replacement, lost = SEEDED_BUGS[bug]
    folder = _copy(tmp_path)
    model = folder / "midterm" / "model.py"
    source = model.read_text(encoding="utf-8")
    assert source.count(original) == 1
    model.write_text(source.replace(original, replacement), encoding="utf-8")
    result = _judge(folder, tmp_path)
    assert _failing(result) - _failing(reference_impl) == lost
    assert _failing(reference_impl) - _failing(result) == set()


def test_pre_ln_declared_in_the_package_keeps_every_point(tmp_path, reference_impl):
    """Another correct style: NORM_FIRST = True (pre-LN), which the model builds from its argument."""
    folder = _copy(tmp_path)
    init = folder / "midterm" / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8").replace("NORM_FIRST = False", "NORM_FIRST = True"), encoding="utf-8")
    result = _judge(folder, tmp_path)
    assert _failing(result) == _failing(reference_impl)
    assert "pre-LN" in result["by_id"]["basic-encoder"]["message"]
    assert "post-LN" in reference_impl["by_id"]["basic-encoder"]["message"]


def test_stored_expected_outputs_match_the_reference():
    from safetensors.torch import load_file

    from grader.assignments import _run_reference

    spec = get_spec(ASSIGNMENT)
    staff = load_staff(spec)
    inputs = spec.make_inputs(spec.public_seed)
    fresh = {f"{cid}/{i}": t for cid, values in _run_reference(staff.reference, spec.calls, inputs).items()
             for i, t in enumerate(values) if t is not None}
    assert expected_mismatches(fresh, load_file(str(spec.expected_path))) == []


def test_calls_name_the_package_and_the_trained_model():
    names = {c.function for c in CALLS}
    assert "TRANSLATOR" in names
    assert all(n == "TRANSLATOR" or n.startswith("midterm.") for n in names)


def test_package_files_ignores_what_is_not_the_package(tmp_path):
    (tmp_path / "midterm").mkdir()
    (tmp_path / "midterm" / "__init__.py").write_text("X = 1\n")
    (tmp_path / "other.py").write_text("Y = 2\n")
    assert package_files(tmp_path) == [("midterm/__init__.py", "X = 1\n")]
    assert package_files(tmp_path / "nowhere") is None


def test_missing_baseline_loses_exactly_the_baseline(tmp_path):
    """With the experiments: the reference, then the same without its baseline row (in the notebook
    and in the submitted table)."""
    whole = _judge(_copy(tmp_path, name="whole"), tmp_path, experiments=True, name="whole")
    auto = [c for c in whole["checks"] if c["id"] not in MANUAL]
    assert [c["id"] for c in auto if c["status"] != "pass"] == []
    for name in [n for n in sys.modules if n == "midterm" or n.startswith("midterm.")]:
        del sys.modules[name]
    folder = _copy(tmp_path)
    edit_cells(folder / "report.ipynb", [('"baseline": corpus_bleu(baseline, references)', "")])
    table = folder / "applied" / "results.csv"
    table.write_text("".join(line for line in table.read_text().splitlines(keepends=True)
                             if not line.startswith("baseline")))
    result = _judge(folder, tmp_path, experiments=True)
    assert _failing(result) == {"applied-baseline"}
    assert "no row for system 'baseline'" in result["by_id"]["applied-baseline"]["message"]


def test_an_attention_map_not_drawn_from_the_trained_model_loses_the_attention_item(tmp_path):
    """The map the run saves is random weights, not TRANSLATOR's: the judge's redraw disagrees."""
    folder = _copy(tmp_path)
    edit_cells(folder / "report.ipynb", [("attention = TRANSLATOR.cross_attention(one, decoder_in)[0].mean(0).cpu()",
                                          "attention = torch.softmax(torch.randn(decoder_in.shape[1], one.shape[1]), -1)")])
    result = _judge(folder, tmp_path, experiments=True)
    assert _failing(result) == {"analysis-attention"}
    message = result["by_id"]["analysis-attention"]["message"]
    assert "is not your trained model's cross-attention" in message and "analysis/cross_attention.csv" in message


@pytest.mark.notebook
def test_reference_submission_whole_run(tmp_path):
    """The reference folder, graded as a TA would: every auto point, 4 manual points pending, the
    smoke run under 3 minutes."""
    from grader.pipeline import GradeOptions, grade_submission

    started = time.monotonic()
    result = grade_submission(SOLUTION, tmp_path / "out", GradeOptions(cell_timeout_s=300, timeout_s=600, memory_mb=4096))
    elapsed = time.monotonic() - started
    assert result["status"] == "graded", result.get("reason")
    assert result["assignment"] == ASSIGNMENT and result["execution"]["status"] == "completed"
    failing = {c["id"]: c["message"] for c in result["checks"] if c["id"] not in MANUAL and c["status"] != "pass"}
    assert failing == {}
    assert result["score"] == pytest.approx(96.0, abs=1e-9)
    assert {c["id"]: c["status"] for c in result["checks"] if c["id"] in MANUAL} == dict.fromkeys(MANUAL, "pending")
    assert {d["name"]: d["present"] for d in result["deliverables"]} == {
        "report.ipynb": True, "applied/": True, "analysis/": True, "midterm/": True, "slides.pdf": True}
    assert elapsed < 180, f"the reference's smoke run took {elapsed:.0f} s"
