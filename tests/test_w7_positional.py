"""w7-positional graded end to end: the reference gets every automatic point and the blank template
none (two sandboxed runs); seeded bugs lose exactly the points of the check aimed at them, correct
work written differently keeps them, shortcuts through torch's attention lose the requirement's
points (in-process, tests/probe_harness.py); failed encoding checks say in words what is wrong and
carry the picture; the experiment checks trust the grader's own evaluation of the trained models,
not the submitted table; the stored expected outputs are the reference's.

Variants are the reference submission with one code cell appended that redefines a function or
class (the last definition is the one that counts, for Python and for the grader alike).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from grader.assignments import get_spec, load_staff, prepare_probe
from grader.i18n import catalog
from grader.judge import CheckContext
from grader.probe import CallOutcome, ProbeReport
from grader.rubric import load_rubric

from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "w7-positional"
SOLUTION = REPO / "reference" / "solutions" / ASSIGNMENT
TEMPLATE = REPO / "student_template" / ASSIGNMENT
NOTEBOOK = "positional_encoding_comparison.ipynb"
RUBRIC = load_rubric(REPO / "rubrics" / f"{ASSIGNMENT}.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
IMPLEMENTATION = {i.id for i in RUBRIC.items if i.criterion == "implementation" and not i.bonus}
BONUS = {i.id for i in RUBRIC.items if i.bonus}
SIN = {"impl-sinusoidal", "impl-hidden-sinusoidal", "bonus-adaptive"}   # the adaptive encoding adds the table
ROPE_EXACT = {"impl-rope", "impl-hidden-rope", "impl-rope-attention"}   # rope_attention rotates with apply_rope


def _variant(tmp_path: Path, *cells: str, base: Path = SOLUTION) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(base, submission)
    edit_cells(submission / NOTEBOOK, [], append=list(cells))
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path) -> dict:
    return judge_in_process(notebook, ASSIGNMENT, tmp_path / "work", skip_tags=("experiment",))


def _not_passed(result: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in result["checks"]
            if c["id"] in IMPLEMENTATION | BONUS and c["status"] != "pass"}


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK)


def test_the_reference_passes_every_implementation_and_bonus_check_in_process(reference_result):
    assert _not_passed(reference_result) == {}
    measured = reference_result["by_id"]["impl-relative-bias"]["measured"]["memory-relative"]
    assert measured["exponent"] >= 1.7, measured   # the (H, T, T) bias
    assert reference_result["by_id"]["impl-rope"]["measured"]["memory-rope"]["exponent"] <= 1.3


# --- seeded bugs: each loses exactly the points of the checks aimed at it -------------------------

SIN_SWAPPED = '''
def sinusoidal_encoding(max_len, d_model, base=10000.0):
    """Seeded bug: cosines at the even dimensions, sines at the odd ones."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    frequency = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angle = position * frequency[None, :]
    return torch.stack((angle.cos(), angle.sin()), dim=-1).reshape(max_len, d_model).float()
'''

SIN_FREQUENCY = '''
def sinusoidal_encoding(max_len, d_model, base=10000.0):
    """Seeded bug: dimension j gets the frequency base^(-j/d), not its pair's base^(-2(j//2)/d)."""
    position = torch.arange(max_len, dtype=torch.float64)[:, None]
    angle = position * base ** (-torch.arange(d_model, dtype=torch.float64) / d_model)
    return torch.where(torch.arange(d_model) % 2 == 0, angle.sin(), angle.cos()).float()
'''

LEARNED_WRAPS = '''
class LearnedPositionalEncoding(nn.Module):
    """Seeded bug: positions past the table wrap around to its first rows."""

    def __init__(self, max_len, d_model):
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, x):
        """x + weight[t % max_len]."""
        return x + self.weight[torch.arange(x.shape[-2], device=x.device) % self.max_len]
'''

RELATIVE_SIGN = '''
class RelativePositionBias(nn.Module):
    """Seeded bug: the offset is read as i - j."""

    def __init__(self, num_heads, max_distance):
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Parameter(torch.zeros(num_heads, 2 * max_distance + 1))

    def forward(self, q_len, k_len):
        """bias[h, clip(i - j) + D]."""
        offset = torch.arange(q_len)[:, None] - torch.arange(k_len)[None, :]
        return self.bias[:, offset.clamp(-self.max_distance, self.max_distance) + self.max_distance]
'''

RELATIVE_NO_CLIP = '''
class RelativePositionBias(nn.Module):
    """Seeded bug: offsets are not clipped to [-max_distance, max_distance]."""

    def __init__(self, num_heads, max_distance):
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Parameter(torch.zeros(num_heads, 2 * max_distance + 1))

    def forward(self, q_len, k_len):
        """bias[h, j - i + D], whatever j - i is."""
        offset = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
        return self.bias[:, offset + self.max_distance]
'''

BIAS_AFTER_SOFTMAX = '''
def relative_attention(q, k, v, bias):
    """Seeded bug: the bias is added to the weights, after the softmax."""
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) + bias
    return weights @ v, weights
'''

ROPE_HALF_SPLIT = '''
def apply_rope(x, positions=None, base=10000.0):
    """Seeded bug (against the template's layout): GPT-NeoX's half split pairs dimension i with i + d/2."""
    T, d = x.shape[-2], x.shape[-1]
    if positions is None:
        positions = torch.arange(T)
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = positions.double()[:, None] * theta[None, :]
    a, b = x.double()[..., : d // 2], x.double()[..., d // 2:]
    return torch.cat((a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()), dim=-1).to(x.dtype)
'''

ROPE_ON_VALUES = '''
def rope_attention(q, k, v, causal=False, base=10000.0):
    """Seeded bug: the values are rotated too."""
    q, k, v = apply_rope(q, base=base), apply_rope(k, base=base), apply_rope(v, base=base)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
'''

ROPE_IGNORES_POSITIONS = '''
def apply_rope(x, positions=None, base=10000.0):
    """Seeded bug: always positions 0..T-1, whatever positions says."""
    T, d = x.shape[-2], x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta[None, :]
    pairs = x.double().reshape(*x.shape[:-1], d // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()), dim=-1)
    return rotated.reshape(x.shape).to(x.dtype)
'''

SEEDED_BUGS = {
    "sin_cos_swapped": (SIN_SWAPPED, SIN, "impl-sinusoidal",
                        "the encoding of position 0, dimension 0 is cos where sin is expected"),
    "sin_frequency_per_dimension": (SIN_FREQUENCY, SIN, "impl-sinusoidal", "uses the frequency 1/10000^(1/24)"),
    "learned_wraps_around": (LEARNED_WRAPS, {"impl-learned-beyond"}, "impl-learned-beyond",
                             "position 12 (past max_len = 12) got row 0 of the table"),
    "relative_offset_reversed": (RELATIVE_SIGN, {"impl-relative-bias", "impl-relative-shift"}, "impl-relative-bias",
                                 "the offset is read as i - j"),
    "relative_not_clipped": (RELATIVE_NO_CLIP, {"impl-relative-shift"}, "impl-relative-shift", "IndexError"),
    "bias_after_softmax": (BIAS_AFTER_SOFTMAX, {"impl-relative-attention"}, "impl-relative-attention",
                           "after the softmax"),
    "rope_half_split": (ROPE_HALF_SPLIT, ROPE_EXACT, "impl-rope", "half-split layout of GPT-NeoX"),
    "rope_on_values": (ROPE_ON_VALUES, {"impl-rope-attention"}, "impl-rope-attention",
                       "RoPE is applied to the values too"),
    "rope_ignores_positions": (ROPE_IGNORES_POSITIONS, {"impl-rope", "impl-rope-properties", "impl-hidden-rope"},
                               "impl-rope", "the positions argument is ignored"),
}


@pytest.mark.parametrize("bug", sorted(SEEDED_BUGS))
def test_each_seeded_bug_loses_exactly_the_points_of_its_checks(tmp_path, bug):
    cell, failing, shown, words = SEEDED_BUGS[bug]
    result = _judge(tmp_path, _variant(tmp_path, cell))
    assert _not_passed(result) == {c: "fail" for c in failing}
    lost = sum(i.points for i in RUBRIC.items if i.id in failing and not i.bonus)
    lost_bonus = sum(i.points for i in RUBRIC.items if i.id in failing and i.bonus)
    assert result["criteria"]["implementation"]["score"] == pytest.approx(
        sum(i.points for i in RUBRIC.items if i.id in IMPLEMENTATION) - lost)
    assert result["bonus"] == pytest.approx(5 - lost_bonus)
    assert words in result["by_id"][shown]["message"], result["by_id"][shown]["message"]


def test_rope_with_the_wrong_rotation_direction_keeps_the_property_points(tmp_path):
    """A reversed rotation is still a rotation: norms and the offset property hold, the layout does not."""
    cell = ROPE_IGNORES_POSITIONS.replace("Seeded bug: always positions 0..T-1, whatever positions says.",
                                          "Seeded bug: rotated by -m*theta.").replace(
        "    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta[None, :]",
        "    positions = torch.arange(T) if positions is None else positions\n"
        "    angle = -positions.double()[:, None] * theta[None, :]")
    result = _judge(tmp_path, _variant(tmp_path, cell))
    assert _not_passed(result) == {c: "fail" for c in ROPE_EXACT}
    assert "rotated the wrong way" in result["by_id"]["impl-rope"]["message"]
    assert "fix apply_rope first" in result["by_id"]["impl-rope-attention"]["message"]
    assert result["by_id"]["impl-rope-properties"]["status"] == "pass"


# --- correct work written differently keeps every point -------------------------------------------

ALTERNATIVE_FLOAT32_EMBEDDING = '''
def sinusoidal_encoding(max_len, d_model, base=10000.0):
    """float32 throughout, frequencies through exp and log, sines and cosines by slice assignment."""
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(base) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


class LearnedPositionalEncoding(nn.Embedding):
    """An nn.Embedding (its parameter is `weight`) looked up at the clamped positions."""

    def __init__(self, max_len, d_model):
        super().__init__(max_len, d_model)
        self.max_len = max_len

    def forward(self, x):
        """x + embedding(min(t, max_len - 1))."""
        positions = torch.arange(x.shape[1], device=x.device).clamp(max=self.max_len - 1)
        return x + super().forward(positions)
'''

ALTERNATIVE_COMPLEX_ROPE = '''
def apply_rope(x, positions=None, base=10000.0):
    """RoPE with complex numbers in float32: the pair (x[2i], x[2i+1]) is x[2i] + i x[2i+1], times e^(i m theta_i)."""
    T, d = x.shape[-2:]
    if positions is None:
        positions = torch.arange(T)
    freqs = 1.0 / (base ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    rotation = torch.polar(torch.ones(T, d // 2), torch.outer(positions.float(), freqs))
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rotation).reshape(x.shape).type_as(x)


def rope_attention(q, k, v, causal=False, base=10000.0):
    """einsum scores on the rotated queries and keys; the causal mask from triu."""
    q, k = apply_rope(q, base=base), apply_rope(k, base=base)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / q.shape[-1] ** 0.5
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(diagonal=1), float("-inf"))
    weights = scores.softmax(dim=-1)
    return torch.einsum("bhqk,bhkd->bhqd", weights, v), weights
'''

ALTERNATIVE_RELATIVE_LOOP = '''
class RelativePositionBias(nn.Module):
    """The bias built one query row at a time, with Python's min and max for the clipping."""

    def __init__(self, num_heads, max_distance):
        super().__init__()
        self.max_distance = max_distance
        self.bias = nn.Parameter(torch.zeros(num_heads, 2 * max_distance + 1))

    def forward(self, q_len, k_len):
        """Row i holds bias[h, clip(j - i) + D] for j = 0..k_len-1."""
        d = self.max_distance
        rows = [self.bias[:, [min(max(j - i, -d), d) + d for j in range(k_len)]] for i in range(q_len)]
        return torch.stack(rows, dim=1)


def relative_attention(q, k, v, bias):
    """einsum, and the softmax written out with the row maximum subtracted."""
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * q.shape[-1] ** -0.5 + bias
    scores = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    weights = scores / scores.sum(dim=-1, keepdim=True)
    return torch.einsum("bhqk,bhkd->bhqd", weights, v), weights
'''


@pytest.mark.parametrize("cell", [ALTERNATIVE_FLOAT32_EMBEDDING, ALTERNATIVE_COMPLEX_ROPE, ALTERNATIVE_RELATIVE_LOOP],
                         ids=["float32-sinusoid-and-embedding", "complex-rope-and-einsum", "relative-loop-and-einsum"])
def test_correct_implementations_in_another_style_keep_every_point(tmp_path, cell):
    result = _judge(tmp_path, _variant(tmp_path, cell))
    assert _not_passed(result) == {}
    assert result["criteria"]["implementation"]["score"] == pytest.approx(
        sum(i.points for i in RUBRIC.items if i.id in IMPLEMENTATION))


# --- shortcuts: torch's attention wrapped loses the requirement's points -------------------------

SHORTCUT_RELATIVE_SDPA = '''
def relative_attention(q, k, v, bias):
    """Weights from a softmax, the output from torch's fused kernel."""
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias, dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), weights
'''

SHORTCUT_ROPE_MHA = '''
def rope_attention(q, k, v, causal=False, base=10000.0):
    """torch.nn.MultiheadAttention with identity projections, on my rotated queries and keys."""
    B, H, T, d = q.shape
    dv = v.shape[-1]
    mha = nn.MultiheadAttention(d, 1, bias=False, batch_first=True, kdim=d, vdim=dv)
    with torch.no_grad():
        mha.q_proj_weight.copy_(torch.eye(d))
        mha.k_proj_weight.copy_(torch.eye(d))
        mha.v_proj_weight.copy_(torch.eye(d, dv))
        mha.out_proj.weight.copy_(torch.eye(d))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
    rq, rk = apply_rope(q, base=base), apply_rope(k, base=base)
    out, weights = mha(rq.reshape(B * H, T, d), rk.reshape(B * H, T, d), v.reshape(B * H, T, dv), attn_mask=mask,
                       need_weights=True, average_attn_weights=False)
    return out[..., :dv].reshape(B, H, T, dv).detach(), weights.reshape(B, H, T, T).detach()
'''

SHORTCUT_HIDDEN_GETATTR = '''
def relative_attention(q, k, v, bias):
    """torch's fused kernel, its name taken apart."""
    fused = getattr(F, "scaled_dot_" + "product_attention")
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias, dim=-1)
    return fused(q, k, v, attn_mask=bias), weights
'''


def test_relative_attention_through_torchs_fused_kernel_loses_its_points_and_names_it(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_RELATIVE_SDPA))
    assert _not_passed(result) == {"impl-relative-attention": "fail"}
    check = result["by_id"]["impl-relative-attention"]
    assert "torch.nn.functional.scaled_dot_product_attention" in check["message"], check["message"]
    assert check["measured"]["own-attention"]["static"][0]["api"] == "torch.nn.functional.scaled_dot_product_attention"


def test_rope_attention_through_multihead_attention_loses_its_points_and_names_it(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_ROPE_MHA))
    assert _not_passed(result) == {"impl-rope-attention": "fail"}
    message = result["by_id"]["impl-rope-attention"]["message"]
    assert "torch.nn.MultiheadAttention" in message, message


def test_a_fused_kernel_hidden_behind_getattr_goes_to_a_ta_with_the_evidence(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_HIDDEN_GETATTR))
    assert _not_passed(result) == {"impl-relative-attention": "pending"}
    check = result["by_id"]["impl-relative-attention"]
    evidence = check["measured"]["own-attention"]
    assert evidence["static"] == [] and any("scaled_dot_product" in op for op in evidence["dynamic"]), evidence
    assert check["score"] == 0


# --- feedback: words and pictures for a failed encoding check (the checks called directly) --------

@pytest.fixture(scope="module")
def material():
    spec = get_spec(ASSIGNMENT)
    return spec, prepare_probe(spec, load_staff(spec), 4321)


def _context(material, outcomes: dict, *, submission_root: Path | None = None, artifacts: dict | None = None,
             requirements: dict | None = None) -> CheckContext:
    spec, probe = material
    report = ProbeReport(True, "", outcomes, None, artifacts or {})
    return CheckContext(notebook={"cells": []}, submission_root=submission_root or Path("/nonexistent"),
                        deliverables=[], execution=None, probe=report, inputs=probe.inputs, expected=probe.expected,
                        calls=probe.calls, requirements=requirements or {})


def _verdict(material, check: str, outcomes: dict, **kwargs):
    spec, _ = material
    return spec.checks[check].fn(_context(material, outcomes, **kwargs))


def test_a_wrong_sinusoid_is_described_in_words_and_pictured_beside_the_expected(material, tmp_path):
    from grader.judge.encodings import sinusoidal_table
    from grader.report.figures import render_comparison

    swapped = sinusoidal_table(64, 24, swapped=True).float()
    verdict = _verdict(material, "sinusoidal", {"sin": CallOutcome("ok", outputs=[swapped])})
    assert verdict.status == "fail"
    assert str(verdict.message).startswith("the encoding of position 0, dimension 0 is cos where sin is expected")
    mine, expected, kind = verdict.figure
    assert mine.shape == expected.shape == (64, 24) and kind == "encoding"   # axes: position, dimension
    assert abs(float(mine[0, 0]) - 1.0) < 1e-6 and abs(float(expected[0, 0])) < 1e-6   # cos 0 beside sin 0
    picture = render_comparison(mine, expected, tmp_path / "figure.png", labels=("yours", "expected"), title="sin",
                                axes=("dimension", "position"))
    assert picture.read_bytes().startswith(b"\x89PNG")

    halves = sinusoidal_table(64, 24, layout="halves").float()
    verdict = _verdict(material, "sinusoidal", {"sin": CallOutcome("ok", outputs=[halves])})
    assert "[all sines | all cosines]" in str(verdict.message)


def test_a_wrong_rope_and_a_wrong_relative_bias_are_described_and_pictured(material):
    from grader.judge.encodings import relative_bias_table, rope_rotate

    _, probe = material
    x, positions = probe.inputs["rope_x"], probe.inputs["rope_pos"]
    outcomes = {"rope": CallOutcome("ok", outputs=[rope_rotate(x, positions, layout="half").float()]),
                "rope_default": CallOutcome("ok", outputs=[probe.expected["rope_default"][0]])}
    verdict = _verdict(material, "rope", outcomes)
    assert verdict.status == "fail" and "half-split layout" in str(verdict.message)
    assert verdict.figure is not None and verdict.figure[0].shape == verdict.figure[1].shape == tuple(x.shape[-2:])

    table = probe.inputs["shift_table"]
    absolute = relative_bias_table(table, 6, 20).clone()
    absolute[1, 3, 5] += 0.5   # one entry off its diagonal: the bias depends on more than j - i
    verdict = _verdict(material, "relative-shift", {"rel_shift": CallOutcome("ok", outputs=[absolute.float()])})
    assert verdict.status == "fail"
    assert str(verdict.message).startswith("head 1: the bias of query 2, key 4 is")
    assert "the same offset j - i = 2 must give the same bias" in str(verdict.message) and verdict.figure is not None


def test_a_learned_table_that_raises_past_max_len_is_told_what_to_do(material):
    outcome = CallOutcome("error", message="IndexError: index 12 is out of bounds for dimension 0 with size 12")
    verdict = _verdict(material, "learned-beyond", {"learned_beyond": outcome})
    assert verdict.status == "fail"
    assert "IndexError" in str(verdict.message) and "must reuse the table's last row" in str(verdict.message)


def test_rope_that_is_not_a_rotation_fails_the_norm_property(material):
    _, probe = material
    x, positions = probe.inputs["rope_x"], probe.inputs["rope_pos"]
    from grader.judge.encodings import rope_rotate

    stretched = rope_rotate(x, positions).float() * 1.01
    outcomes = {"rope": CallOutcome("ok", outputs=[stretched]),
                "rope_q": CallOutcome("ok", outputs=[probe.expected["rope_q"][0]]),
                "rope_k": CallOutcome("ok", outputs=[probe.expected["rope_k"][0]])}
    verdict = _verdict(material, "rope-properties", outcomes)
    assert verdict.status == "fail" and "a rotation keeps norms" in str(verdict.message)


# --- experiments: the grader's own evaluation of the trained models decides -----------------------

def _model_outcomes(probe, accuracy_of) -> dict:
    """Object-call outcomes whose logits are right on the share `accuracy_of[encoding]` of the sequences."""
    from grader.assignments.w7_positional import ENCODINGS, EVAL_LENS, lag_copy_targets

    outcomes = {}
    for encoding in ENCODINGS:
        for length in EVAL_LENS:
            tokens = probe.inputs[f"held_{length}"]
            answer = lag_copy_targets(tokens).clamp(min=0)
            wrong = torch.arange(len(tokens)) >= round(accuracy_of[encoding] * len(tokens))
            answer[wrong] = (answer[wrong] + 1) % 10
            logits = torch.nn.functional.one_hot(answer, 10).float()   # (N, T, 10): argmax = the answer
            outcomes[f"gen_{encoding}_{length}"] = CallOutcome("ok", outputs=[logits])
    return outcomes


def test_a_results_table_the_models_do_not_back_earns_nothing(material, tmp_path):
    _, probe = material
    table = "encoding,train_len,eval_len,accuracy\n" + "".join(
        f"{e},16,{t},1.0\n" for e in ("sinusoidal", "learned", "relative", "rope") for t in (16, 32, 64))
    (tmp_path / "length_generalization").mkdir()
    (tmp_path / "length_generalization" / "results.csv").write_text(table)
    outcomes = _model_outcomes(probe, {"sinusoidal": 1.0, "learned": 1.0, "relative": 1.0, "rope": 0.5})
    verdict = _verdict(material, "length-table", outcomes, submission_root=tmp_path,
                       artifacts={"length_generalization/results.csv": table.encode()})
    assert verdict.status == "fail"
    assert "the rope model reaches 1.000 at length 16, but the grader measured 0.500" in str(verdict.message)
    trained = _verdict(material, "length-trained", outcomes)
    assert trained.status == "fail" and "rope reached less than 0.9" in str(trained.message)


def test_models_the_notebook_did_not_leave_are_named(material):
    verdict = _verdict(material, "length-trained", {"gen_sinusoidal_16": CallOutcome("missing")})
    assert verdict.status == "fail" and "MODEL_SINUSOIDAL" in str(verdict.message)


# --- stored outputs and catalogs ------------------------------------------------------------------

def test_the_stored_expected_outputs_match_the_reference(tmp_path):
    """The student engine judges from stored outputs: they must be what the reference computes now
    (after changing the reference or the inputs, run `grade expected w7-positional`)."""
    from safetensors.torch import load_file

    from grader.assignments import expected_mismatches, write_expected

    spec = get_spec(ASSIGNMENT)
    fresh = load_file(str(write_expected(spec, load_staff(spec), tmp_path / "fresh.safetensors")))
    stored = load_file(str(spec.expected_path))
    assert expected_mismatches(fresh, stored) == []


def test_the_names_built_at_run_time_are_in_both_catalogs():
    # module_check and the factories name outputs as msg(f"name.{name}"): tests/test_i18n.py cannot see them
    names = {f"name.w7p_{n}" for n in ("encoding", "bias", "rotated", "reconstruction")} | {"w7p.what.library_encoding"}
    for lang in ("en", "ko"):
        assert names <= set(catalog(lang)), sorted(names - set(catalog(lang)))


# --- whole sandboxed runs -------------------------------------------------------------------------

def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"w7/{path.relative_to(folder)}")
    return target


@pytest.mark.notebook
def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    result = grade_submission(_zip(SOLUTION, tmp_path / "submit.zip"), tmp_path / "out",
                              GradeOptions(cell_timeout_s=300, timeout_s=600, memory_mb=4096))
    assert result["status"] == "graded", result.get("reason")
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass"
                  and RUBRIC.item(c["id"]).kind != "manual"}
    assert not_passed == {}
    assert {c["id"] for c in result["checks"] if c["status"] == "pending"} == \
        {i.id for i in RUBRIC.items if i.kind == "manual"}
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)
    assert result["execution"]["status"] == "completed" and result["judged_with"] == "live"
    trained = next(c for c in result["checks"] if c["id"] == "exp-length-trained")["message"]
    assert "every model learned the task at length 16" in trained


@pytest.mark.notebook
def test_the_blank_template_gets_zero_implementation_with_not_implemented_messages(tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out", GradeOptions(cell_timeout_s=120, timeout_s=300))
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0 and result["bonus"] == 0 and result["score"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation":
            assert check["status"] == "fail", check
            if check["visibility"] == "public":
                assert "not implemented" in check["message"], check
