"""w5-attention, graded end to end: the reference submission, the blank template and the full profile
on a miniature DATA_DIR through the real sandbox; seeded bugs, other correct styles, shortcuts and
claims that contradict the code judged in-process (tests/probe_harness.py) on the real probe,
requirements and judge; the stored expected outputs against the reference."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from grader.assignments import get_spec, load_staff, prepare_probe
from grader.assignments.w5_attention import weights_problem
from grader.data import seq2seq_pairs
from grader.i18n import msg
from grader.judge import CheckContext
from grader.pipeline import GradeOptions, grade_submission
from grader.probe import CallOutcome, ProbeReport
from grader.rubric import load_rubric
from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w5-attention"
TEMPLATE = REPO / "student_template" / "w5-attention"
NOTEBOOK = "attention_mechanisms.ipynb"
RUBRIC = load_rubric(REPO / "rubrics" / "w5-attention.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
POINTS = {i.id: i.points for i in RUBRIC.items}
# Wall-clock limits of the sandboxed runs: generous, because a loaded 2-core runner is slow.
OPTIONS = GradeOptions(cell_timeout_s=400, timeout_s=900, memory_mb=4096)

# The implementation checks of the functions and classes (not the trained model), and the bonus.
FUNCTION_CHECKS = {"impl-dot-score", "impl-general-score", "impl-additive-score", "impl-masked-softmax",
                   "impl-global-attention", "impl-local-attention", "impl-location-attention",
                   "impl-hybrid-attention", "impl-coverage-attention", "impl-coverage-loss",
                   "impl-hidden-additive", "impl-hidden-local"}
BONUS = {"bonus-multihead", "bonus-self-attention", "bonus-efficient"}
EXPERIMENTS = {"exp-attention-maps", "exp-alignment", "exp-seq2seq-model", "exp-global-vs-local"}


def _not_passed(result: dict, among: set[str] = FUNCTION_CHECKS | BONUS) -> dict[str, str]:
    return {c["id"]: c["status"] for c in result["checks"] if c["id"] in among and c["status"] != "pass"}


def _variant(tmp_path: Path, *, replace: tuple[str, str] | None = None, append: str | None = None,
             base: Path = SOLUTION) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(base, submission)
    edit_cells(submission / NOTEBOOK, [replace] if replace else [], append=[append] if append else [])
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path, *, experiments: bool = False, **kwargs) -> dict:
    return judge_in_process(notebook, "w5-attention", tmp_path / "work",
                            skip_tags=() if experiments else ("experiment",), **kwargs)


def _messages(result: dict) -> dict[str, str]:
    return {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass"}


# --- whole sandboxed runs ----------------------------------------------------------------------

@pytest.mark.notebook
def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    result = grade_submission(SOLUTION, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded", result.get("reason")
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] not in ("pass", "pending")}
    assert not_passed == {}
    assert {c["id"] for c in result["checks"] if c["status"] == "pending"} == \
        {i.id for i in RUBRIC.items if i.kind == "manual"}
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)
    assert result["execution"]["status"] == "completed" and result["judged_with"] == "live"
    by_id = {c["id"]: c for c in result["checks"]}
    assert "1.000" in by_id["impl-seq2seq"]["message"], by_id["impl-seq2seq"]["message"]
    assert by_id["bonus-efficient"]["measured"]["memory-chunked"]["exponent"] <= 1.35
    # No time limit is asserted (the house rule: no timed tests). Measured: the smoke profile costs
    # about 25 s of CPU (papermill, kernel start and torch import included; one thread).


@pytest.mark.notebook
def test_the_blank_template_gets_zero_implementation_with_not_implemented_messages(tmp_path):
    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out", OPTIONS)
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0 and result["bonus"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation" and check["visibility"] == "public":
            assert check["status"] == "fail" and "not implemented" in check["message"], check
    assert result["score"] == 0


@pytest.mark.notebook
def test_the_full_profile_reads_a_miniature_data_dir_in_the_real_layout(tmp_path):
    data = tmp_path / "data"
    (data / "seq2seq").mkdir(parents=True)
    for split, count, seed in (("train", 600, 21), ("test", 60, 22)):
        lines = [" ".join(map(str, s)) + "\t" + " ".join(map(str, t)) for s, t in seq2seq_pairs(count, seed)]
        (data / "seq2seq" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="ascii")
    options = GradeOptions(cell_timeout_s=600, timeout_s=1200, memory_mb=4096, profile="full", data_dir=data)
    result = grade_submission(SOLUTION, tmp_path / "out", options)
    assert result["status"] == "graded", result.get("reason")
    assert result["execution"]["status"] == "completed", result["execution"]
    by_id = {c["id"]: c for c in result["checks"]}
    assert {i: by_id[i]["message"] for i in FUNCTION_CHECKS | BONUS if by_id[i]["status"] != "pass"} == {}
    # the judge held the trained model to the full profile's threshold
    assert by_id["impl-seq2seq"]["status"] == "pass" and "full profile" in by_id["impl-seq2seq"]["message"]
    executed = json.loads((tmp_path / "out" / "executed.ipynb").read_text(encoding="utf-8"))
    printed = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "600 training pairs, 60 test pairs" in printed and "PROFILE=full" in printed


# --- seeded bugs: each loses exactly the points of the checks aimed at it ------------------------

BUGS = {
    # global_attention forgets the mask: weight on padded positions
    "global_ignores_padding": (("    weights = masked_softmax(scores, mask)", "    weights = masked_softmax(scores)"),
                               {"impl-global-attention"}),
    # CoverageAttention returns the coverage it was given: never updated
    "coverage_not_updated": (("        return context, weights, coverage + weights, step_loss",
                              "        return context, weights, coverage, step_loss"), {"impl-coverage-attention"}),
    # coverage_vectors includes the current step (c_t = sum_{t' <= t})
    "coverage_inclusive": (("    return torch.cumsum(attentions, dim=1) - attentions  # exclusive prefix sum",
                            "    return torch.cumsum(attentions, dim=1)  # exclusive prefix sum"), {"impl-coverage-loss"}),
    # the additive score without its tanh
    "additive_no_tanh": (("        energy = torch.tanh(self.W_q(query)[:, None, :] + self.W_k(keys))",
                          "        energy = (self.W_q(query)[:, None, :] + self.W_k(keys))"),
                         {"impl-additive-score", "impl-hidden-additive"}),
    # the window's edge excluded: |s - p| < D
    "local_window_exclusive": (("    in_window = distance.abs() <= window", "    in_window = distance.abs() < window"),
                               {"impl-local-attention", "impl-hidden-local"}),
    # hybrid attention replaces the location term by the content term instead of adding it
    "hybrid_drops_location": (("            energy = energy + self.W_k(keys)",
                               "            energy = self.W_q(query).unsqueeze(1) + self.W_k(keys)"),
                              {"impl-hybrid-attention"}),
    # the convolution reads zeros instead of the previous alignment
    "location_ignores_previous": (("self.conv(prev_weights.unsqueeze(1))", "self.conv(0 * prev_weights.unsqueeze(1))"),
                                  {"impl-location-attention", "impl-hybrid-attention"}),
    # exp() of the raw scores: a large score overflows float32
    "softmax_no_max": (("    exp = torch.exp(masked - row_max)", "    exp = torch.exp(masked)"), {"impl-masked-softmax"}),
    # multi-head scores not divided by sqrt(d_head)
    "multihead_no_scaling": (("        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)",
                              "        scores = q @ k.transpose(-2, -1)"), {"bonus-multihead"}),
}


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK)


def test_the_reference_passes_every_function_check_in_process(reference_result):
    assert _not_passed(reference_result) == {}, _messages(reference_result)
    # experiments are skipped here: no trained model, so the seq2seq item is the only implementation loss
    assert reference_result["criteria"]["implementation"]["score"] == pytest.approx(8 - POINTS["impl-seq2seq"])
    assert reference_result["bonus"] == pytest.approx(5)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_seeded_bug_loses_exactly_the_points_of_its_checks(tmp_path, reference_result, bug):
    replace, expected = BUGS[bug]
    result = _judge(tmp_path, _variant(tmp_path, replace=replace))
    assert set(_not_passed(result)) == expected, _messages(result)
    lost = sum(POINTS[c] for c in expected)
    before = reference_result["criteria"]["implementation"]["score"] + reference_result["bonus"]
    assert result["criteria"]["implementation"]["score"] + result["bonus"] == pytest.approx(before - lost)


def test_weights_on_padding_are_named_with_the_mask_that_blocks_them(tmp_path):
    replace, _ = BUGS["global_ignores_padding"]
    result = _judge(tmp_path, _variant(tmp_path, replace=replace))
    message = result["by_id"]["impl-global-attention"]["message"]
    assert "the padding mask blocks" in message and "weights of global_attention" in message, message


def test_a_model_that_attends_to_padding_fails_the_seq2seq_item_with_the_reason(tmp_path):
    bug = ("        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths[:, None]",
           "        mask = torch.ones_like(src, dtype=torch.bool)")
    result = _judge(tmp_path, _variant(tmp_path, replace=bug))
    check = result["by_id"]["impl-seq2seq"]
    assert check["status"] == "fail" and "padding mask" in check["message"], check["message"]
    assert _not_passed(result) == {}


def test_a_failed_attention_check_comes_with_both_maps_for_the_report():
    expected = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    leaking = torch.tensor([[0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
    message = weights_problem(leaking, expected, "w", msg("w5a.blocked.window"))
    assert "row 0 puts weight 0.2 on position 2" in str(message), str(message)
    outcome = CallOutcome("ok", outputs=[torch.zeros(2, 4), leaking], types=["Tensor", "Tensor"])
    ctx = CheckContext(notebook={}, submission_root=None, deliverables=[], execution=None,
                       probe=ProbeReport(True, "", {"global": outcome}, None), inputs={},
                       expected={"global": [torch.zeros(2, 4), expected]})
    verdict = get_spec("w5-attention").checks["global-attention"].fn(ctx)
    assert verdict.status == "fail" and verdict.figure is not None
    assert verdict.figure[0].shape == verdict.figure[1].shape == (2, 3)


# --- correct work in another style keeps every point ---------------------------------------------

ALTERNATIVE_EINSUM = '''
def dot_score(query, keys):
    """einsum."""
    return torch.einsum("bd,bsd->bs", query, keys)


def masked_softmax(scores, mask=None):
    """torch.softmax over -inf fills; rows with nothing allowed become 0 through nan_to_num."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def global_attention(query, keys, mask=None):
    """einsum for the context."""
    weights = masked_softmax(dot_score(query, keys), mask)
    return torch.einsum("bs,bsd->bd", weights, keys), weights
'''

ALTERNATIVE_FUNCTIONAL = '''
class LocationAwareAttention(nn.Module):
    """The same parameters, used through functional calls and explicit matrix products."""

    def __init__(self, query_dim, key_dim, attn_dim, n_filters=4, kernel_size=5, hybrid=True):
        super().__init__()
        self.hybrid, self.pad = hybrid, kernel_size // 2
        self.W_q = nn.Linear(query_dim, attn_dim)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=False)
        self.conv = nn.Conv1d(1, n_filters, kernel_size, padding=kernel_size // 2, bias=False)
        self.W_f = nn.Linear(n_filters, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, query, keys, prev_weights, mask=None):
        """Scores through F.conv1d and matmuls with the weight tensors."""
        f = F.conv1d(prev_weights[:, None, :], self.conv.weight, padding=self.pad)  # (B, F, S)
        e = (query @ self.W_q.weight.T + self.W_q.bias)[:, None, :] + f.transpose(1, 2) @ self.W_f.weight.T
        if self.hybrid:
            e = e + keys @ self.W_k.weight.T
        scores = (torch.tanh(e) @ self.v.weight.T)[..., 0]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.einsum("bs,bsd->bd", weights, keys), weights
'''

ALTERNATIVE_LOOPS = '''
def coverage_vectors(attentions):
    """A loop over the steps."""
    running = torch.zeros_like(attentions[:, 0])
    out = []
    for t in range(attentions.shape[1]):
        out.append(running)
        running = running + attentions[:, t]
    return torch.stack(out, dim=1)


def coverage_loss(attentions):
    """A loop, step by step."""
    total = torch.zeros(attentions.shape[0])
    covered = torch.zeros_like(attentions[:, 0])
    for t in range(attentions.shape[1]):
        total = total + torch.minimum(attentions[:, t], covered).sum(-1)
        covered = covered + attentions[:, t]
    return total


def local_attention(query, keys, mask, center, window, gaussian=False):
    """One batch row at a time, with an explicit window of positions."""
    contexts, rows = [], []
    for b in range(keys.shape[0]):
        positions = torch.arange(keys.shape[1], dtype=keys.dtype)
        inside = ((positions - center[b]).abs() <= window) & (mask[b] if mask is not None else True)
        row = torch.zeros(keys.shape[1], dtype=keys.dtype)
        if inside.any():
            row[inside] = torch.softmax(keys[b][inside] @ query[b], dim=0)
        if gaussian:
            row = row * torch.exp(-((positions - center[b]) ** 2) / (2 * (window / 2) ** 2))
        rows.append(row)
        contexts.append(row @ keys[b])
    return torch.stack(contexts), torch.stack(rows)
'''

ALTERNATIVE_MULTIHEAD = '''
class MultiHeadAttention(nn.Module):
    """Heads through einsum and unflatten."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.h = n_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key, value, mask=None):
        """(output, weights)."""
        q = self.q_proj(query).unflatten(-1, (self.h, -1))  # (B, Tq, h, dh)
        k = self.k_proj(key).unflatten(-1, (self.h, -1))
        v = self.v_proj(value).unflatten(-1, (self.h, -1))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * q.shape[-1] ** -0.5
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        out = torch.einsum("bhqk,bkhd->bqhd", weights, v).flatten(-2)
        return self.out_proj(out), weights
'''


@pytest.mark.parametrize("name,cell", [("einsum", ALTERNATIVE_EINSUM), ("functional", ALTERNATIVE_FUNCTIONAL),
                                       ("loops", ALTERNATIVE_LOOPS), ("multihead-einsum", ALTERNATIVE_MULTIHEAD)])
def test_correct_work_in_another_style_keeps_every_point(tmp_path, reference_result, name, cell):
    result = _judge(tmp_path, _variant(tmp_path, append=cell))
    assert _not_passed(result) == {}, _messages(result)
    assert result["criteria"]["implementation"]["score"] == \
        pytest.approx(reference_result["criteria"]["implementation"]["score"])
    assert result["bonus"] == pytest.approx(5.0)


# --- shortcuts: a torch module or fused function wrapped loses the points it dodges --------------

SHORTCUT_MULTIHEAD = '''
class MultiHeadAttention(nn.Module):
    """torch's own layer, run with my parameters (gradients flow through functional_call)."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, query, key, value, mask=None):
        """(output, weights) from torch.nn.MultiheadAttention."""
        layer = nn.MultiheadAttention(query.shape[-1], self.n_heads, batch_first=True)
        params = {"in_proj_weight": torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]),
                  "in_proj_bias": torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
                  "out_proj.weight": self.out_proj.weight, "out_proj.bias": self.out_proj.bias}
        return torch.func.functional_call(layer, params, (query, key, value),
                                          {"key_padding_mask": None if mask is None else ~mask,
                                           "average_attn_weights": False})
'''

SHORTCUT_SELF = '''
class SelfAttention(nn.Module):
    """Weights written out, output from the fused kernel."""

    def __init__(self, d_model):
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, mask=None):
        """(output, weights)."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        keep = None if mask is None else mask[:, None, :]
        weights = masked_softmax(q @ k.transpose(1, 2) / math.sqrt(x.shape[-1]), keep)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep), weights
'''

SHORTCUT_GLOBAL = '''
def global_attention(query, keys, mask=None):
    """The context from the fused kernel (scale 1: the dot score), the weights written out."""
    weights = masked_softmax(dot_score(query, keys), mask)
    keep = None if mask is None else mask[:, None, :]
    context = F.scaled_dot_product_attention(query[:, None, :], keys, keys, attn_mask=keep, scale=1.0)
    return context[:, 0].nan_to_num(0.0), weights
'''


@pytest.mark.parametrize("cell,check,api", [
    (SHORTCUT_MULTIHEAD, "bonus-multihead", "torch.nn.MultiheadAttention"),
    (SHORTCUT_SELF, "bonus-self-attention", "torch.nn.functional.scaled_dot_product_attention"),
    (SHORTCUT_GLOBAL, "impl-global-attention", "torch.nn.functional.scaled_dot_product_attention"),
])
def test_a_wrapped_torch_attention_loses_the_points_it_dodges_and_says_what_was_found(tmp_path, cell, check, api):
    result = _judge(tmp_path, _variant(tmp_path, append=cell))
    assert _not_passed(result) == {check: "fail"}, _messages(result)
    entry = result["by_id"][check]
    appended = len(nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4).cells) + 1
    assert api in entry["message"] and f"cell {appended}" in entry["message"], entry["message"]
    assert entry["score"] == 0


def test_chunked_attention_that_builds_the_whole_matrix_loses_the_efficiency_bonus(tmp_path):
    cell = '''
def chunked_attention(query, keys, values, mask=None, chunk_size=32):
    """Chunked in name only: the whole (Tq, Tk) matrix at once."""
    scores = query @ keys.transpose(1, 2) / math.sqrt(query.shape[-1])
    return masked_softmax(scores, None if mask is None else mask[:, None, :]) @ values
'''
    result = _judge(tmp_path, _variant(tmp_path, append=cell))
    assert _not_passed(result) == {"bonus-efficient": "fail"}, _messages(result)
    measured = result["by_id"]["bonus-efficient"]["measured"]["memory-chunked"]
    assert measured["exponent"] > 1.5 and "512 x 512" in result["by_id"]["bonus-efficient"]["message"]


# --- experiments: claims against the code --------------------------------------------------------

def test_submitted_artifacts_that_the_code_does_not_produce_lose_their_items(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    maps_path = submission / "attention_visualization" / "attention_maps.json"
    maps = json.loads(maps_path.read_text())
    for example in maps["examples"]:  # a made-up alignment: the main diagonal instead of the model's
        n = len(example["source"])
        example["attention"] = [[1.0 if j == min(t, n - 1) else 0.0 for j in range(n)] for t in range(n + 2)]
    maps_path.write_text(json.dumps(maps))
    metrics_path = submission / "seq2seq_model" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["train_loss"] = [0.5, 0.9, 1.2]   # a training curve that does not match the run's
    metrics_path.write_text(json.dumps(metrics))
    result = _judge(tmp_path, submission / NOTEBOOK, experiments=True)
    assert _not_passed(result, EXPERIMENTS) == {"exp-attention-maps": "fail", "exp-seq2seq-model": "fail"}, \
        _messages(result)
    assert "differs from the one your notebook wrote" in result["by_id"]["exp-attention-maps"]["message"]
    assert "does not go down" in result["by_id"]["exp-seq2seq-model"]["message"]
    assert result["by_id"]["impl-seq2seq"]["status"] == "pass" and result["by_id"]["exp-alignment"]["status"] == "pass"


def test_the_blank_template_with_copied_artifacts_gets_no_experiment_points(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(TEMPLATE, submission, ignore=shutil.ignore_patterns("tests", "README.md"))
    for folder in ("attention_visualization", "seq2seq_model"):
        shutil.rmtree(submission / folder)
        shutil.copytree(SOLUTION / folder, submission / folder)
    result = judge_in_process(submission / NOTEBOOK, "w5-attention", tmp_path / "work")
    assert result["criteria"]["experiments"]["score"] == 0
    assert {result["by_id"][c]["status"] for c in EXPERIMENTS} == {"fail"}
    assert "did not produce" in result["by_id"]["exp-seq2seq-model"]["message"]
    assert result["criteria"]["code_quality"]["score"] == 0


# --- the stored expected outputs (a student's installation) ---------------------------------------

def test_the_stored_expected_outputs_match_the_reference_at_the_checks_tolerances():
    from safetensors.torch import load_file

    spec = get_spec("w5-attention")
    staff = load_staff(spec)
    assert staff.reference is not None
    stored = load_file(str(spec.expected_path))
    live = prepare_probe(spec, staff, spec.public_seed)   # the public calls and hidden ones, live
    public = {c.id for c in spec.calls if not c.measure and c.kind != "object"}
    compared = 0
    for call_id, values in live.expected.items():
        base = call_id.split("/")[0]
        if base not in public or base == "s2s_init":   # s2s_init: an untrained model, judged by properties only
            continue
        for i, value in enumerate(values):
            if value is None:
                continue
            torch.testing.assert_close(stored[f"{call_id}/{i}"], value, atol=1e-5, rtol=1e-4)
            compared += 1
    assert compared >= 30


def test_the_reference_module_is_self_contained():
    """nanoGPT style: the reference imports nothing of the grader, and its classes build from the
    template's signatures."""
    sys.path.insert(0, str(REPO))
    from reference import attention

    text = Path(attention.__file__).read_text(encoding="utf-8")
    assert "grader" not in text.split('"""', 2)[2]
    model = attention.Seq2Seq(13, 8, 16, 8, attention="local")
    tokens, weights = model.greedy_decode(torch.tensor([[4, 5, 0]]), torch.tensor([2]), 4)
    assert tokens.shape == (1, 4) and weights.shape == (1, 4, 3) and float(weights[..., 2].abs().max()) == 0.0


# --- the student template and its self-check ---------------------------------------------------

API = ("dot_score", "GeneralScore", "AdditiveScore", "masked_softmax", "global_attention", "local_attention",
       "LocationAwareAttention", "CoverageAttention", "coverage_vectors", "coverage_loss", "Seq2Seq",
       "MultiHeadAttention", "SelfAttention", "chunked_attention")


def test_the_template_holds_documented_stubs_the_parameters_and_empty_answers():
    import ast

    notebook = nbformat.read(str(TEMPLATE / NOTEBOOK), as_version=4)
    found = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and "experiment" not in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    found[node.name] = node
    for name in API:
        node = found[name]
        assert ast.get_docstring(node), name
        bodies = [node] if isinstance(node, ast.FunctionDef) else [n for n in node.body if isinstance(n, ast.FunctionDef)]
        for body in bodies:
            code = [n for n in body.body if not isinstance(n, ast.Expr)]
            assert len(code) == 1 and "NotImplementedError" in ast.unparse(code[0]), f"{name}.{body.name} is not a stub"
    params = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(f"{k} =" in params[0].source for k in ("SEED", "DEVICE", "DATA_DIR", "PROFILE"))
    answers = next(c.source for c in notebook.cells if c.cell_type == "code" and "ANSWERS = {" in c.source)
    assert answers.count("None") == 5
    tags = {t for c in notebook.cells for t in c.metadata.get("tags", [])}
    assert {"answer:theory-additive-vs-dot", "answer:theory-coverage", "answer:exp-analysis", "experiment"} <= tags
    assert all((TEMPLATE / folder).is_dir() for folder in ("attention_visualization", "seq2seq_model"))


def _self_check(notebook: Path):
    import os
    import subprocess

    env = {**os.environ, "SELF_CHECK_NOTEBOOK": str(notebook)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=TEMPLATE, env=env, capture_output=True, text=True, timeout=600)


def test_the_self_check_passes_the_reference_and_tells_the_blank_template_what_to_do():
    done = _self_check(SOLUTION / NOTEBOOK)
    assert done.returncode == 0 and " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]
    blank = _self_check(TEMPLATE / NOTEBOOK)
    assert blank.returncode == 1
    assert "not implemented yet" in blank.stdout and "masked_softmax" in blank.stdout and "ANSWERS" in blank.stdout
    assert "skipped" in blank.stdout   # the bonus tests wait until they are implemented
