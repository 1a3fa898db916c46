"""w6-multihead: the reference, the checks and the requirements, end to end.

* the reference equals torch.nn.MultiheadAttention with the same weights (the expected values the
  checks compare with are torch's), and the stored expected outputs are the reference's;
* seeded bugs (one exact line of the reference submission replaced) lose exactly the points of the
  checks aimed at them; correct work written differently keeps every point; shortcuts that borrow
  torch's attention lose the points of the requirement they dodge, and say what was found;
* a failed attention-map check says in words which query attends where, and pictures both maps;
* whole sandboxed runs (marked `notebook`): the reference submission gets every automatic point,
  the blank template none of the implementation.

In-process variants run the notebook's code cells and the real probe in this process
(tests/probe_harness.py), without the experiment cells unless the experiments are what is tested.
"""

from __future__ import annotations

import ast
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from grader.assignments import expected_mismatches, get_spec, load_staff, write_expected
from grader.assignments.w6_multihead import FP32, make_inputs
from grader.i18n import msg
from grader.judge.attention_maps import map_problem
from grader.rubric import load_rubric
from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w6-multihead"
TEMPLATE = REPO / "student_template" / "w6-multihead"
NOTEBOOK = "multihead_analysis.ipynb"
RUBRIC = load_rubric(REPO / "rubrics" / "w6-multihead.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
IMPLEMENTATION = {i.id for i in RUBRIC.items if i.criterion == "implementation" and i.kind == "check"}
TORCH_THREADS = torch.get_num_threads()   # as the session started (before any notebook ran here)
MHA_CHECKS = {"impl-mha-output", "impl-attention-maps", "impl-mha-gradients", "impl-head-weights",
              "impl-head-importance", "impl-head-selection", "impl-hidden-mha", "impl-hidden-importance",
              "bonus-dynamic-heads"}


@pytest.fixture(autouse=True)
def _torch_threads():
    """The notebook's smoke profile sets torch to one thread (tiny models); in-process runs would
    leave that setting to every later test of the session."""
    yield
    torch.set_num_threads(TORCH_THREADS)


# --- the reference ---------------------------------------------------------------------------------

def _torch_module(reference, embed_dim: int, num_heads: int) -> torch.nn.MultiheadAttention:
    """torch's module with the reference module's weights."""
    torch_mha = torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(reference.in_proj_weight)
        torch_mha.in_proj_bias.copy_(reference.in_proj_bias)
        torch_mha.out_proj.weight.copy_(reference.out_proj.weight)
        torch_mha.out_proj.bias.copy_(reference.out_proj.bias)
    return torch_mha.eval()


@pytest.mark.parametrize("masked", [False, True])
def test_the_reference_equals_torch_multihead_attention_with_the_same_weights(masked):
    from reference.multihead import MultiHeadAttention

    inputs = make_inputs(5)
    reference = MultiHeadAttention(24, 4)
    with torch.no_grad():
        reference.in_proj_weight.copy_(inputs["w_in"])
        reference.in_proj_bias.copy_(inputs["b_in"])
        reference.out_proj.weight.copy_(inputs["w_out"])
        reference.out_proj.bias.copy_(inputs["b_out"])
    torch_mha = _torch_module(reference, 24, 4)
    q, k, v, mask = inputs["xq"], inputs["kv_k"], inputs["kv_v"], inputs["cross_mask"]
    out, maps = reference(q, k, v, mask=mask if masked else None)
    # torch's boolean attn_mask means "blocked", (B * H, T, S) for a per-example mask
    blocked = (~mask).expand(2, 4, 9, 11).reshape(8, 9, 11) if masked else None
    expected_out, expected_maps = torch_mha(q, k, v, attn_mask=blocked, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps, expected_maps, atol=1e-6, rtol=1e-5)


def test_the_reference_head_weights_scale_the_heads_columns_of_out_proj():
    """Gating head h by w_h is scaling head h's columns of out_proj.weight: torch's module agrees."""
    from reference.multihead import MultiHeadAttention

    inputs = make_inputs(6)
    reference = MultiHeadAttention(24, 4)
    with torch.no_grad():
        reference.head_weights.copy_(inputs["gates"])
    torch_mha = _torch_module(reference, 24, 4)
    with torch.no_grad():
        torch_mha.out_proj.weight.mul_(inputs["gates"].repeat_interleave(6)[None, :])
    out, _ = reference(inputs["x"])
    expected, _ = torch_mha(inputs["x"], inputs["x"], inputs["x"])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_the_stored_expected_outputs_are_the_references_at_the_checks_tolerances(tmp_path):
    from safetensors.torch import load_file

    spec = get_spec("w6-multihead")
    fresh = load_file(str(write_expected(spec, load_staff(spec), tmp_path / "fresh.safetensors")))
    assert expected_mismatches(fresh, load_file(str(spec.expected_path))) == []


# --- in-process judging ------------------------------------------------------------------------------

def _variant(tmp_path: Path, replacements: list[tuple[str, str]] = (), append: list[str] = ()) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    edit_cells(submission / NOTEBOOK, list(replacements), append=list(append))
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path, **kwargs) -> dict:
    return judge_in_process(notebook, "w6-multihead", tmp_path / "work", skip_tags=("experiment",), **kwargs)


def _failed(result: dict) -> set[str]:
    """The implementation checks (bonus included) that failed: the experiments are not run here."""
    return {c["id"] for c in result["checks"] if c["id"] in IMPLEMENTATION and c["status"] in ("fail", "error")}


def _lost(result: dict) -> float:
    return sum(c["max_score"] - c["score"] for c in result["checks"] if c["id"] in IMPLEMENTATION)


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK)


def test_the_reference_passes_every_implementation_check_and_meets_the_requirement(reference_result):
    not_passed = {c["id"]: c["message"] for c in reference_result["checks"]
                  if c["id"] in IMPLEMENTATION and c["status"] != "pass"}
    assert not_passed == {}
    assert reference_result["criteria"]["implementation"]["score"] == pytest.approx(12.0)
    assert reference_result["bonus"] == pytest.approx(5.0)
    requirement = reference_result["by_id"]["impl-mha-output"]["measured"]["own-implementation"]
    assert requirement["status"] == "pass" and requirement["static"] == [] and requirement["dynamic"] == []


# bug -> (exact line of the reference submission, its replacement, the checks that must fail: no more, no fewer)
BUGS: dict[str, tuple[str, str, set[str]]] = {
    # the heads merged without the transpose: (B, H, T, dh) read as (B, T, E) mixes heads and positions
    "merge_order": (
        "        merged = (heads * gates).transpose(1, 2).reshape(B, T, E)",
        "        merged = (heads * gates).reshape(B, T, E)",
        {"impl-mha-output", "impl-mha-gradients", "impl-head-weights", "impl-head-importance", "impl-head-selection",
         "impl-hidden-mha", "impl-hidden-importance", "bonus-dynamic-heads"}),
    # a boolean mask added to the scores as 0/1 instead of blocking: queries see blocked keys
    "bool_mask_added": (
        '            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask',
        "            scores = scores + mask",
        {"impl-attention-maps"}),
    # head weights through a ReLU: a negative weight silently becomes 0
    "gate_relu": (
        "        gates = self.head_weights.view(1, self.num_heads, 1, 1)  # (1, H, 1, 1)",
        "        gates = torch.relu(self.head_weights).view(1, self.num_heads, 1, 1)  # (1, H, 1, 1)",
        {"impl-head-weights", "impl-hidden-importance"}),
    # |mean gradient| instead of mean |gradient|: opposite signs across examples cancel
    "importance_abs_after_mean": (
        "        return torch.stack(grads).abs().mean(dim=0).detach()  # (B, H) -> (H,)",
        "        return torch.stack(grads).mean(dim=0).abs().detach()  # (B, H) -> (H,)",
        {"impl-head-importance", "impl-hidden-importance"}),
    # the k LEAST important heads kept
    "select_lowest": (
        "    order = torch.argsort(flat, descending=True, stable=True)  # stable: equal scores keep index order",
        "    order = torch.argsort(flat, descending=False, stable=True)  # stable: equal scores keep index order",
        {"impl-head-selection"}),
    # cosine similarity instead of the correlation: the maps are not centred
    "correlation_not_centred": (
        "    centred = flat - flat.mean(dim=1, keepdim=True)",
        "    centred = flat",
        {"impl-head-correlation"}),
    # head_mask accepted but not applied
    "head_mask_ignored": (
        "            gates = gates * head_mask.to(heads.dtype).reshape(-1, self.num_heads, 1, 1)  # (1|B, H, 1, 1)",
        "            gates = gates  # (1|B, H, 1, 1)",
        {"impl-head-selection", "bonus-dynamic-heads"}),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_seeded_bug_loses_exactly_the_points_of_its_checks(tmp_path, bug):
    original, replacement, expected = BUGS[bug]
    result = _judge(tmp_path, _variant(tmp_path, [(original, replacement)]))
    assert _failed(result) == expected, {c["id"]: c["message"] for c in result["checks"] if c["id"] in _failed(result)}
    assert _lost(result) == pytest.approx(sum(i.points for i in RUBRIC.items if i.id in expected))


def test_a_mask_bug_says_which_query_attends_through_the_mask(tmp_path):
    original, replacement, _ = BUGS["bool_mask_added"]
    result = _judge(tmp_path, _variant(tmp_path, [(original, replacement)]))
    message = result["by_id"]["impl-attention-maps"]["message"]
    assert "per-head attention maps of MultiHeadAttention: query " in message, message
    assert "attends to key" in message and "through the boolean mask" in message and "expected 0" in message, message


def test_a_zero_head_weight_that_does_not_remove_the_head_is_named(tmp_path):
    """An epsilon added to the head weights: every output within tolerance, yet a head of weight 0
    still leaks into the output, which the property check sees."""
    original = "        gates = self.head_weights.view(1, self.num_heads, 1, 1)  # (1, H, 1, 1)"
    leaky = "        gates = (self.head_weights + 1e-5).view(1, self.num_heads, 1, 1)  # (1, H, 1, 1)"
    result = _judge(tmp_path, _variant(tmp_path, [(original, leaky)]))
    assert _failed(result) == {"impl-head-weights"}
    message = result["by_id"]["impl-head-weights"]["message"]
    zero = int((make_inputs(1234)["gates"] == 0).nonzero()[0])
    assert f"head {zero} has weight 0, yet changing its q/k/v projection rows changed the output" in message, message


# --- correct work in other styles keeps every point ---------------------------------------------------

PER_HEAD_LOOP = '''
class MultiHeadAttention(MultiHeadAttention):
    """Heads computed one at a time from their own slices of the weights (einsum, torch.cat)."""

    def forward(self, query, key=None, value=None, mask=None, head_mask=None):
        """(output (B, T, E), attn (B, H, T, S)), one head at a time."""
        key = query if key is None else key
        value = key if value is None else value
        E, dh = self.embed_dim, self.head_dim
        outputs, maps = [], []
        for h in range(self.num_heads):
            rows = slice(h * dh, (h + 1) * dh)
            w_q, w_k, w_v = (self.in_proj_weight[i * E:(i + 1) * E][rows] for i in range(3))
            b_q, b_k, b_v = (self.in_proj_bias[i * E:(i + 1) * E][rows] for i in range(3))
            q = torch.einsum("bte,de->btd", query, w_q) + b_q
            k = torch.einsum("bse,de->bsd", key, w_k) + b_k
            v = torch.einsum("bse,de->bsd", value, w_v) + b_v
            scores = torch.einsum("btd,bsd->bts", q, k) / dh ** 0.5
            if mask is not None:
                m = mask.expand(query.shape[0], self.num_heads, query.shape[1], key.shape[1])[:, h]
                scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m
            weights = scores.softmax(dim=-1)
            gate = self.head_weights[h]
            if head_mask is not None:
                gate = gate * head_mask.to(weights.dtype).reshape(-1, self.num_heads)[:, h].view(-1, 1, 1)
            outputs.append(gate * torch.einsum("bts,bsd->btd", weights, v))
            maps.append(weights)
        return self.out_proj(torch.cat(outputs, dim=-1)), torch.stack(maps, dim=1)
'''

IMPORTANCE_BY_BACKWARD = '''
class MultiHeadAttention(MultiHeadAttention):
    """head_importance by one backward pass per example, reading head_weights.grad."""

    def head_importance(self, x, target):
        """Mean over examples of |dL_b / d head_weights| (the parameters' grads are left cleared)."""
        total = torch.zeros_like(self.head_weights)
        with torch.enable_grad():
            for b in range(x.shape[0]):
                self.zero_grad()
                output, _ = self(x[b:b + 1])
                ((output - target[b:b + 1]) ** 2).mean().backward()
                total += self.head_weights.grad.abs()
        self.zero_grad()
        return (total / x.shape[0]).detach()
'''

SELECTION_AND_CORRELATION = '''
def select_heads(scores, k):
    """Top k by sorting (score, index) pairs in Python."""
    flat = scores.reshape(-1).tolist()
    chosen = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k]
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[chosen] = True
    return keep.reshape(scores.shape)


def head_correlation(maps):
    """torch.corrcoef, with constant heads set to 0 (and 1 on the diagonal)."""
    flat = maps.transpose(0, 1).reshape(maps.shape[1], -1).double()
    corr = torch.nan_to_num(torch.corrcoef(flat), nan=0.0)
    constant = flat.std(dim=1) < 1e-9
    corr[constant] = 0.0
    corr[:, constant] = 0.0
    return corr.fill_diagonal_(1.0).float()
'''


@pytest.mark.parametrize("name,cell", [("per-head-loop", PER_HEAD_LOOP),
                                       ("importance-by-backward", IMPORTANCE_BY_BACKWARD),
                                       ("sorted-selection-and-corrcoef", SELECTION_AND_CORRELATION)])
def test_correct_work_in_another_style_keeps_every_point(tmp_path, name, cell):
    result = _judge(tmp_path, _variant(tmp_path, append=[cell]))
    assert _failed(result) == set(), {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass"}
    assert result["criteria"]["implementation"]["score"] == pytest.approx(12.0)
    assert result["bonus"] == pytest.approx(5.0)


# --- shortcuts: torch's attention inside MultiHeadAttention -------------------------------------------

SHORTCUT_MHA_FORWARD = '''
class MultiHeadAttention(MultiHeadAttention):
    """torch's multi-head attention, head weights folded into out_proj's columns."""

    def forward(self, query, key=None, value=None, mask=None, head_mask=None):
        """Everything from F.multi_head_attention_forward."""
        key = query if key is None else key
        value = key if value is None else value
        B, T, E = query.shape
        gates = self.head_weights if head_mask is None else self.head_weights * head_mask.float().reshape(-1)
        w_out = self.out_proj.weight * gates.repeat_interleave(self.head_dim)[None, :]
        attn_mask = None
        if mask is not None:
            full = mask.expand(B, self.num_heads, T, key.shape[1]).reshape(B * self.num_heads, T, key.shape[1])
            attn_mask = ~full if full.dtype == torch.bool else full
        out, attn = F.multi_head_attention_forward(
            query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), E, self.num_heads,
            self.in_proj_weight, self.in_proj_bias, None, None, False, 0.0, w_out, self.out_proj.bias,
            training=False, need_weights=True, attn_mask=attn_mask, average_attn_weights=False)
        return out.transpose(0, 1), attn
'''

SHORTCUT_SDPA = '''
class MultiHeadAttention(MultiHeadAttention):
    """Own maps, but the output from torch's fused scaled_dot_product_attention."""

    def forward(self, query, key=None, value=None, mask=None, head_mask=None):
        """The maps from the reference code, the output from F.scaled_dot_product_attention."""
        key = query if key is None else key
        value = key if value is None else value
        B, T, E = query.shape
        q, k, v = self._heads(query, 0), self._heads(key, 1), self._heads(value, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        attn = torch.softmax(scores, dim=-1)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        gates = self.head_weights.view(1, self.num_heads, 1, 1)
        if head_mask is not None:
            gates = gates * head_mask.to(heads.dtype).reshape(-1, self.num_heads, 1, 1)
        return self.out_proj((heads * gates).transpose(1, 2).reshape(B, T, E)), attn
'''

HIDDEN_TORCH_MODULE = '''
import torch.nn as _layers


class MultiHeadAttention(MultiHeadAttention):
    """torch's module, reached through getattr on a built string, for the per-head maps."""

    def forward(self, query, key=None, value=None, mask=None, head_mask=None):
        """The reference output; the maps from torch's module with the same weights."""
        output, _ = super().forward(query, key, value, mask, head_mask)
        borrowed = getattr(_layers, "Multihead" + "Attention")(self.embed_dim, self.num_heads, batch_first=True)
        borrowed.load_state_dict({"in_proj_weight": self.in_proj_weight, "in_proj_bias": self.in_proj_bias,
                                  "out_proj.weight": self.out_proj.weight, "out_proj.bias": self.out_proj.bias})
        k = query if key is None else key
        blocked = None
        if mask is not None:
            full = mask.expand(query.shape[0], self.num_heads, query.shape[1], k.shape[1]).reshape(-1, query.shape[1],
                                                                                                 k.shape[1])
            blocked = ~full if full.dtype == torch.bool else full
        _, attn = borrowed.eval()(query, k, k if value is None else value, attn_mask=blocked, need_weights=True,
                                  average_attn_weights=False)
        return output, attn
'''


@pytest.mark.parametrize("cell,api", [(SHORTCUT_MHA_FORWARD, "torch.nn.functional.multi_head_attention_forward"),
                                      (SHORTCUT_SDPA, "torch.nn.functional.scaled_dot_product_attention")])
def test_torchs_attention_inside_the_module_loses_the_modules_points_and_says_what_was_found(tmp_path, cell, api):
    result = _judge(tmp_path, _variant(tmp_path, append=[cell]))
    assert _failed(result) == MHA_CHECKS, {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass"}
    appended = len(nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4).cells) + 1
    message = result["by_id"]["impl-mha-output"]["message"]
    assert api in message and f"cell {appended}" in message, message
    # what does not go through the module keeps its points: the correlation, the init bonus
    assert result["criteria"]["implementation"]["score"] == pytest.approx(1.5)
    assert result["bonus"] == pytest.approx(2.5)
    measured = result["by_id"]["impl-mha-output"]["measured"]["own-implementation"]
    assert measured["status"] == "fail" and measured["static"][0]["cell"] == appended


def test_torchs_module_reached_through_a_built_name_goes_to_a_ta_with_the_operators_seen(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, append=[HIDDEN_TORCH_MODULE]))
    statuses = {c["id"]: c["status"] for c in result["checks"] if c["id"] in MHA_CHECKS}
    # the borrowed maps are copies without a graph to the module's parameters: the gradients are wrong
    assert statuses == {**{c: "pending" for c in MHA_CHECKS}, "impl-mha-gradients": "fail"}, statuses
    check = result["by_id"]["impl-attention-maps"]
    evidence = check["measured"]["own-implementation"]
    assert evidence["static"] == [] and "torch:multi_head_attention_forward" in evidence["dynamic"], evidence
    assert "multi_head_attention_forward" in check["message"] and check["score"] == 0


# --- the words and the picture of a failed attention-map check --------------------------------------

def test_a_map_that_leaks_through_a_causal_mask_is_described_and_pictured():
    expected = torch.softmax(torch.randn(2, 3, 6, 6), dim=-1).masked_fill(~torch.ones(6, 6).tril().bool(), 0.0)
    expected = expected / expected.sum(dim=-1, keepdim=True)
    actual = expected.clone()
    actual[1, 2, 3, 5] = 0.25           # query 3 of batch 1, head 2, sees key 5
    message, figure = map_problem(actual, expected, FP32, "maps", mask_name=msg("w6m.mask.causal"))
    text = str(message)
    assert "query 3 attends to key 5 through the causal mask (batch 1, head 2)" in text, text
    assert figure is not None and figure[0].shape == (6, 6) and figure[1].shape == (6, 6)
    assert figure[0][3, 5] == pytest.approx(0.25) and figure[1][3, 5] == 0.0   # the slice where it happens


def test_a_map_over_the_wrong_axis_says_the_rows_do_not_sum_to_one():
    expected = torch.softmax(torch.randn(1, 2, 5, 7), dim=-1)
    actual = torch.softmax(torch.log(expected), dim=-2)          # normalised over the queries
    message, figure = map_problem(actual, expected, FP32, "maps", mask_name=msg("w6m.mask.none"))
    assert "sum to" in str(message) and "not 1" in str(message) and figure is not None
    assert map_problem(expected.clone(), expected, FP32, "maps", mask_name="")[0] is None


def test_a_blocked_key_the_mask_allows_is_named():
    expected = torch.full((1, 1, 2, 3), 1 / 3)
    actual = torch.tensor([[[[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]]])
    message, _ = map_problem(actual, expected, FP32, "maps", mask_name=msg("w6m.mask.boolean"))
    assert "query 0 gives key 2 no weight, though the boolean mask allows it" in str(message), str(message)


# --- the student's installation: stored expected outputs ---------------------------------------------

def test_without_the_staff_files_public_checks_use_the_stored_outputs_and_hidden_ones_wait(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADER_STAFF_DIR", "none")
    shutil.copytree(SOLUTION, tmp_path / "submission")
    result = _judge(tmp_path, tmp_path / "submission" / NOTEBOOK)
    statuses = {c["id"]: c["status"] for c in result["checks"] if c["id"] in IMPLEMENTATION}
    hidden = {"impl-hidden-mha", "impl-hidden-importance"}
    assert {k for k, v in statuses.items() if v != "pass"} == hidden, statuses
    assert {statuses[h] for h in hidden} == {"pending"}
    assert {c["status"] for c in result["checks"] if c["id"].startswith("theory-")} == {"pending"}


# --- experiments: claims checked against the run and the judge's own measurement ---------------------

def test_a_table_that_claims_more_than_the_run_loses_the_experiment_points_it_claims(tmp_path):
    """The submitted heads table says every model is perfect; the grader's run of the notebook
    (experiments included) and its own scoring of MODEL say otherwise."""
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    table = submission / "head_importance" / "heads_vs_performance.csv"
    rows = table.read_text(encoding="utf-8").splitlines()
    table.write_text("\n".join([rows[0]] + [",".join([r.split(",")[0], "1.0", "0.001"]) for r in rows[1:]]) + "\n",
                     encoding="utf-8")
    result = judge_in_process(submission / NOTEBOOK, "w6-multihead", tmp_path / "work")
    statuses = {c["id"]: c["status"] for c in result["checks"] if c["criterion"] == "experiments"}
    assert statuses == {"exp-heads-table": "fail", "exp-model-accuracy": "fail", "exp-importance-tables": "pass",
                        "exp-head-patterns": "pass", "exp-importance-plot": "pass", "exp-analysis": "pending"}, statuses
    assert "in the grader's run of your notebook" in result["by_id"]["exp-heads-table"]["message"]
    assert "MODEL scores" in result["by_id"]["exp-model-accuracy"]["message"]


# --- the student template ------------------------------------------------------------------------------

def _definitions(notebook_path: Path) -> dict:
    """Top-level functions and classes of the notebook, and the classes' methods as "Class.method"."""
    found = {}
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        if cell.cell_type == "code" and ("def " in cell.source or "class " in cell.source):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    found[node.name] = node
                elif isinstance(node, ast.ClassDef):
                    found[node.name] = node
                    found.update({f"{node.name}.{m.name}": m for m in node.body if isinstance(m, ast.FunctionDef)})
    return found


def test_the_template_fixes_the_layout_and_leaves_every_api_function_a_documented_stub():
    found = _definitions(TEMPLATE / NOTEBOOK)
    for name in ("MultiHeadAttention.forward", "MultiHeadAttention.head_importance", "MultiHeadAttention.dynamic_heads",
                 "select_heads", "head_correlation", "init_in_proj"):
        node = found[name]
        body = [n for n in node.body if not isinstance(n, ast.Expr)]
        assert ast.get_docstring(node) and len(body) == 1 and "NotImplementedError" in ast.unparse(body[0]), name
    init = ast.unparse(found["MultiHeadAttention.__init__"])
    for parameter in ("self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))",
                      "self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))",
                      "self.out_proj = nn.Linear(embed_dim, embed_dim)",
                      "self.head_weights = nn.Parameter(torch.ones(num_heads))"):
        assert parameter in init, parameter
    nb = nbformat.read(TEMPLATE / NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(f"{n} =" in params[0].source for n in ("SEED", "DEVICE", "DATA_DIR", "PROFILE"))
    answers = next(c.source for c in nb.cells if c.cell_type == "code" and "ANSWERS = {" in c.source)
    assert "None" in answers and "1050624" not in answers and '"c"' not in answers
    tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
    assert {"answer:theory-head-roles", "answer:theory-pruning", "answer:exp-analysis", "experiment"} <= tags
    assert (TEMPLATE / "head_patterns").is_dir() and (TEMPLATE / "head_importance").is_dir()


def _self_check(notebook: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SELF_CHECK_NOTEBOOK": str(notebook), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=TEMPLATE,
                          env=env, capture_output=True, text=True, timeout=600)


def test_the_self_check_passes_on_the_reference_and_tells_the_blank_template_what_to_do():
    done = _self_check(SOLUTION / NOTEBOOK)
    assert done.returncode == 0 and " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]
    blank = _self_check(TEMPLATE / NOTEBOOK)
    assert blank.returncode == 1
    assert "not implemented yet" in blank.stdout and "MultiHeadAttention.forward" in blank.stdout
    assert "select_heads" in blank.stdout and "ANSWERS" in blank.stdout and "2 skipped" in blank.stdout


# --- whole sandboxed runs ------------------------------------------------------------------------------

def _zip(folder: Path, target: Path, wrapper: str = "hw6m") -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{wrapper}/{path.relative_to(folder)}")
    return target


@pytest.mark.notebook
def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    options = GradeOptions(cell_timeout_s=240, timeout_s=600, memory_mb=4096)
    result = grade_submission(_zip(SOLUTION, tmp_path / "submit.zip"), tmp_path / "out", options)
    assert result["status"] == "graded" and result["assignment"] == "w6-multihead", result.get("reason")
    manual = {i.id for i in RUBRIC.items if i.kind == "manual"}
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass" and c["id"] not in manual}
    assert not_passed == {}
    assert {c["id"] for c in result["checks"] if c["status"] == "pending"} == manual
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5.0)
    assert result["judged_with"] == "live" and result["execution"]["status"] == "completed"
    # the smoke profile of the reference notebook must stay well inside CI's budget
    assert result["execution"]["duration_s"] < 120


@pytest.mark.notebook
def test_the_blank_template_gets_no_implementation_point_and_says_not_implemented(tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    options = GradeOptions(cell_timeout_s=120, timeout_s=300, memory_mb=4096)
    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out", options)
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0 and result["bonus"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation" and check["visibility"] == "public":
            assert check["status"] == "fail" and "not implemented" in check["message"], check
    assert result["score"] == 0
