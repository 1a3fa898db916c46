"""How the work was done: shortcuts that borrow the library, or skip the memory-efficient algorithm,
lose the points of the requirement they dodge; correct work in another style keeps every point;
made-up artifacts and one fake function earn nothing.

Each variant is the reference submission with one cell appended that redefines a function (the
last definition is the one that counts, for Python and for the grader alike), judged in-process
(tests/probe_harness.py) on the real probe, requirements and judge.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import nbformat
import pytest

from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w6-self-attention"
TEMPLATE = REPO / "student_template" / "w6-self-attention"
NOTEBOOK = "self_attention_optimized.ipynb"

SDPA_CHECKS = {"impl-sdpa-output", "impl-sdpa-bool-mask", "impl-sdpa-additive-mask", "impl-sdpa-fully-masked",
               "impl-fp16-stability", "impl-hidden-cross"}
CHUNKED_CHECKS = {"impl-chunked", "impl-chunked-ragged", "impl-chunked-mask", "impl-hidden-chunked"}
AUTO_IMPLEMENTATION = SDPA_CHECKS | CHUNKED_CHECKS | {"impl-causal-mask", "impl-padding-mask", "impl-combined-mask"}
BONUS = {"bonus-flash", "bonus-sparse", "bonus-linear"}


def _variant(tmp_path: Path, cell: str, *, base: Path = SOLUTION) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(base, submission)
    edit_cells(submission / NOTEBOOK, [], append=[cell])
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path, **kwargs) -> dict:
    return judge_in_process(notebook, "w6-self-attention", tmp_path / "work", skip_tags=("experiment",), **kwargs)


def _not_passed(result: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in result["checks"]
            if c["id"] in AUTO_IMPLEMENTATION | BONUS and c["status"] != "pass"}


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK)


def test_the_reference_meets_every_requirement(reference_result):
    assert _not_passed(reference_result) == {}
    by_id = reference_result["by_id"]
    chunked = by_id["impl-chunked"]["measured"]["memory-chunked"]
    assert chunked["status"] == "pass" and chunked["exponent"] <= 1.2, chunked
    naive = by_id["impl-sdpa-output"]["measured"]["memory-naive"]
    assert naive["exponent"] >= 1.6, naive  # the (T, T) score matrix
    linear = by_id["bonus-linear"]["measured"]["work-linear"]
    assert linear["exponent"] <= 1.2 and linear["flops"][0] > 0, linear


SHORTCUT_SDPA = '''
import torch.nn.functional as F
_own_attention = scaled_dot_product_attention


def scaled_dot_product_attention(q, k, v, mask=None):
    """Weights from my code, output from torch's fused kernel."""
    _, weights = _own_attention(q, k, v, mask)
    out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    return out.nan_to_num(0.0).to(q.dtype), weights
'''

SHORTCUT_CHUNKED = '''
def chunked_attention(q, k, v, mask=None, chunk_size=128):
    """Chunked in name only."""
    return scaled_dot_product_attention(q, k, v, mask)[0]
'''

SHORTCUT_FLASH = '''
import torch.nn.functional as F


def flash_attention(q, k, v, causal=False, block_size=64):
    """Flash attention, from torch."""
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal).to(q.dtype)
'''

SHORTCUT_LINEAR = '''
def linear_attention(q, k, v):
    """elu+1 feature maps, but through the (T, T) matrix phi(Q) phi(K)^T."""
    phi_q = torch.nn.functional.elu(q.float()) + 1.0
    phi_k = torch.nn.functional.elu(k.float()) + 1.0
    scores = phi_q @ phi_k.transpose(-2, -1)  # (B, H, T, T)
    return ((scores @ v.float()) / (scores.sum(-1, keepdim=True) + 1e-6)).to(q.dtype)
'''

HIDDEN_FLASH = '''
import torch.nn.functional as F


def flash_attention(q, k, v, causal=False, block_size=64):
    """Flash attention, from torch, with the name taken apart."""
    fused = getattr(F, "scaled_dot_" + "product_attention")
    return fused(q.float(), k.float(), v.float(), is_causal=causal).to(q.dtype)
'''


def test_sdpa_from_torch_loses_every_sdpa_point_and_says_what_was_found(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_SDPA))
    assert _not_passed(result) == {c: "fail" for c in SDPA_CHECKS}
    appended = len(nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4).cells) + 1
    message = result["by_id"]["impl-sdpa-output"]["message"]
    assert "torch.nn.functional.scaled_dot_product_attention" in message and f"cell {appended}" in message, message
    static = result["by_id"]["impl-sdpa-output"]["measured"]["own-implementation"]["static"]
    assert static and static[0]["cell"] == appended


def test_chunked_attention_that_builds_the_whole_score_matrix_loses_the_chunked_points(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_CHUNKED))
    assert _not_passed(result) == {c: "fail" for c in CHUNKED_CHECKS}
    check = result["by_id"]["impl-chunked"]
    assert check["measured"]["memory-chunked"]["exponent"] > 1.5
    assert "512 x 512" in check["message"] and "expected T^1" in check["message"], check["message"]


def test_flash_attention_from_torch_loses_the_flash_bonus(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_FLASH))
    assert _not_passed(result) == {"bonus-flash": "fail"}
    assert "torch.nn.functional.scaled_dot_product_attention" in result["by_id"]["bonus-flash"]["message"]
    assert result["bonus"] == pytest.approx(3.0)


def test_linear_attention_through_the_t_by_t_matrix_loses_the_linear_bonus(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, SHORTCUT_LINEAR))
    assert _not_passed(result) == {"bonus-linear": "fail"}
    check = result["by_id"]["bonus-linear"]
    assert check["measured"]["work-linear"]["exponent"] > 1.5 and "T^1" in check["message"], check


def test_a_hidden_getattr_is_caught_by_the_dynamic_layer_and_goes_to_a_ta(tmp_path):
    result = _judge(tmp_path, _variant(tmp_path, HIDDEN_FLASH))
    assert _not_passed(result) == {"bonus-flash": "pending"}
    check = result["by_id"]["bonus-flash"]
    evidence = check["measured"]["own-implementation"]
    assert evidence["static"] == [] and any("scaled_dot_product" in op for op in evidence["dynamic"]), evidence
    assert "scaled_dot_product" in check["message"] and check["score"] == 0


ALTERNATIVE_EINSUM = '''
def scaled_dot_product_attention(q, k, v, mask=None):
    """einsum and torch.softmax; fully masked rows made 0 with nan_to_num."""
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) / q.shape[-1] ** 0.5
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhqk,bhkd->bhqd", weights, v.float()).to(q.dtype), weights
'''

ALTERNATIVE_FINFO = '''
def scaled_dot_product_attention(q, k, v, mask=None):
    """masked_fill with finfo.min, and an any() test for rows with no allowed key."""
    scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if mask is not None:
        if mask.dtype == torch.bool:
            allowed = allowed & mask
        else:
            allowed = allowed & torch.isfinite(mask.float()).expand_as(scores)
            scores = scores + torch.nan_to_num(mask.float(), neginf=0.0)
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    weights = torch.softmax(scores, dim=-1) * allowed.any(dim=-1, keepdim=True)
    weights = weights.masked_fill(~allowed, 0.0)
    return (weights @ v.float()).to(q.dtype), weights
'''

ALTERNATIVE_ARANGE_MASKS = '''
def causal_mask(T):
    """j <= i, built by comparing aranges."""
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    return j <= i


def padding_mask(lengths, max_len):
    """Keys < length, by comparing an arange with the lengths."""
    lengths = torch.as_tensor(lengths)
    return (torch.arange(max_len)[None, :] < lengths[:, None])[:, None, None, :]
'''

ALTERNATIVE_ONLINE = '''
def chunked_attention(q, k, v, mask=None, chunk_size=128):
    """Online softmax written out, without the notebook's helpers."""
    B, H, Tq, d = q.shape
    Tk = k.shape[-2]
    qs = q.float() * d ** -0.5
    m = torch.full((B, H, Tq, 1), float("-inf"))
    s = torch.zeros(B, H, Tq, 1)
    acc = torch.zeros(B, H, Tq, v.shape[-1])
    full = None if mask is None else mask.expand(B, H, Tq, Tk)
    for a in range(0, Tk, chunk_size):
        block = qs @ k[:, :, a:a + chunk_size].float().transpose(-2, -1)
        if full is not None:
            part = full[..., a:a + chunk_size]
            block = block.masked_fill(~part, float("-inf")) if part.dtype == torch.bool else block + part.float()
        m_new = torch.maximum(m, block.max(dim=-1, keepdim=True).values)
        shift = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        p = (block - shift).exp()
        scale = (m - shift).exp()
        s = s * scale + p.sum(-1, keepdim=True)
        acc = acc * scale + p @ v[:, :, a:a + chunk_size].float()
        m = m_new
    return (acc / s.clamp_min(1e-30) * (s > 0)).to(q.dtype)
'''


@pytest.mark.parametrize("name,cell", [("einsum", ALTERNATIVE_EINSUM), ("finfo", ALTERNATIVE_FINFO),
                                       ("arange-masks", ALTERNATIVE_ARANGE_MASKS), ("online", ALTERNATIVE_ONLINE)])
def test_correct_work_in_another_style_keeps_every_point(tmp_path, name, cell):
    result = _judge(tmp_path, _variant(tmp_path, cell))
    assert _not_passed(result) == {}, {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass"}
    assert result["criteria"]["implementation"]["score"] == pytest.approx(12.0)
    assert result["bonus"] == pytest.approx(5.0)


# --- made-up artifacts, and one fake function ------------------------------------------------

def _png(width: int, height: int) -> bytes:
    raw = b"".join(b"\x00" + b"\xff\xff\xff" * width for _ in range(height))
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _made_up_artifacts(submission: Path) -> None:
    """The right columns, naive memory growing as T^2 and chunked as T^1, and two 1x1 PNGs."""
    bench = submission / "performance_benchmark"
    masks = submission / "masking_techniques"
    for folder in (bench, masks):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    rows = ["method,seq_len,batch_size,time_ms,peak_mem_mb"]
    for method in ("naive", "chunked"):
        for t in (64, 128, 256):
            for b in (1, 4):
                memory = b * 4 * t * (t if method == "naive" else 32) * 4 / 2**20
                rows.append(f"{method},{t},{b},{t * b / 100:.3f},{memory:.4f}")
    (bench / "results.csv").write_text("\n".join(rows) + "\n")
    (bench / "plot.png").write_bytes(_png(1, 1))
    (masks / "mask.png").write_bytes(_png(1, 1))


EXPERIMENT_CHECKS = ("exp-benchmark-results", "exp-memory-scaling", "exp-benchmark-plot", "exp-masking-figures")


def test_the_blank_template_with_made_up_artifacts_gets_no_experiment_points(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(TEMPLATE, submission, ignore=shutil.ignore_patterns("tests", "README.md"))
    _made_up_artifacts(submission)
    result = judge_in_process(submission / NOTEBOOK, "w6-self-attention", tmp_path / "work")
    assert result["criteria"]["experiments"]["score"] == 0
    assert {result["by_id"][c]["status"] for c in EXPERIMENT_CHECKS} == {"fail"}
    assert "did not produce" in result["by_id"]["exp-benchmark-results"]["message"]
    assert result["criteria"]["code_quality"]["score"] == 0


def test_one_fake_function_gets_no_code_quality_points(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(TEMPLATE, submission, ignore=shutil.ignore_patterns("tests", "README.md"))
    _made_up_artifacts(submission)
    edit_cells(submission / NOTEBOOK, [], append=['def causal_mask(T):\n    """The causal mask."""\n'
                                                  '    return torch.zeros(1)\n'])
    result = judge_in_process(submission / NOTEBOOK, "w6-self-attention", tmp_path / "work")
    assert result["criteria"]["code_quality"]["score"] == 0, [
        (c["id"], c["status"], c["message"]) for c in result["checks"] if c["criterion"] == "code_quality"]
    assert result["criteria"]["experiments"]["score"] == 0


def test_the_reference_keeps_every_experiment_point_when_its_artifacts_are_regenerated(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    result = judge_in_process(submission / NOTEBOOK, "w6-self-attention", tmp_path / "work")
    assert {c: result["by_id"][c]["status"] for c in EXPERIMENT_CHECKS} == {c: "pass" for c in EXPERIMENT_CHECKS}, \
        {c: result["by_id"][c]["message"] for c in EXPERIMENT_CHECKS}
    assert result["criteria"]["code_quality"]["score"] == pytest.approx(3.0)


def test_a_results_table_that_contradicts_the_measured_memory_loses_the_scaling_item(tmp_path):
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    # chunked_attention that holds the whole matrix, while the submitted table still claims T^1
    edit_cells(submission / NOTEBOOK, [], append=[SHORTCUT_CHUNKED])
    result = judge_in_process(submission / NOTEBOOK, "w6-self-attention", tmp_path / "work")
    check = result["by_id"]["exp-memory-scaling"]
    assert check["status"] == "fail" and "contradicts" in check["message"], check["message"]
