"""w7-transformer: the reference, the checks and the requirements, end to end.

* the reference's layers equal torch's (nn.MultiheadAttention, nn.TransformerEncoderLayer and
  nn.TransformerDecoderLayer, post-LN and pre-LN) with the same weights; cached decoding equals
  uncached decoding and one beam is greedy decoding; the stored expected outputs are the
  reference's; the template's tokeniser, vocabulary and BLEU are the judge's (sacreBLEU's);
* seeded bugs (one exact line of the reference submission replaced) lose exactly the points of the
  checks aimed at them; correct work written differently (pre-LN, einsum attention, masks and loss
  by hand, decoding rewritten) keeps every point; shortcuts that borrow torch's attention lose the
  points of the requirement they dodge and say what was found;
* failed mask and attention checks say in words which positions are wrong and picture both patterns;
* whole sandboxed runs (marked `notebook`): the reference submission gets every automatic point, the
  blank template none of the implementation, and the full profile runs on a CPU against a
  miniature DATA_DIR in Multi30k's layout.

In-process variants run the notebook's code cells and the real probe in this process
(tests/probe_harness.py), without the experiment cells (no training): the BLEU of TRANSLATOR is
then not judged, and is left out of the sets compared.
"""

from __future__ import annotations

import random
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from grader.assignments import expected_mismatches, get_spec, load_staff, write_expected
from grader.assignments import w7_transformer as w7
from grader.data import make_multi30k_smoke, parallel_sentences
from grader.i18n import catalog
from grader.judge import CheckContext
from grader.probe import CallOutcome, ProbeReport
from grader.rubric import load_rubric
from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w7-transformer"
TEMPLATE = REPO / "student_template" / "w7-transformer"
NOTEBOOK = "transformer_enc_dec.ipynb"
RUBRIC = load_rubric(REPO / "rubrics" / "w7-transformer.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
BLEU = "impl-translation-bleu"      # needs the trained TRANSLATOR: not judged without the experiments
IMPLEMENTATION = {i.id for i in RUBRIC.items if i.criterion == "implementation" and i.kind == "check"} - {BLEU}
# Every check whose result is compared with the reference run on the same weights (the model's
# numbers): a wrong attention scale fails all of them and none of the property checks.
EXACT = {"impl-mha", "impl-encoder-layer", "impl-decoder-layer", "impl-greedy", "impl-beam-search", "impl-beam-eos",
         "impl-hidden-mha", "impl-hidden-decoder", "bonus-bert", "bonus-gpt"}


def _solution_source(*markers: str) -> str:
    """The code cell of the reference submission that contains every marker."""
    nb = nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and all(m in c.source for m in markers))


def _template_namespace() -> dict:
    """The template's given helpers (tokeniser, vocabulary, BLEU), run on their own."""
    nb = nbformat.read(str(TEMPLATE / NOTEBOOK), as_version=4)
    namespace: dict = {"SEED": 0}
    exec(next(c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("import csv")), namespace)
    exec(next(c.source for c in nb.cells if c.cell_type == "code" and "def corpus_bleu" in c.source), namespace)
    return namespace


# --- the reference -------------------------------------------------------------------------------------

def _randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(noise * 0.3 if p.ndim > 1 else (1 + 0.1 * noise if "norm" in name and name.endswith("weight")
                                                     else 0.1 * noise))
    return module.eval()


def _copy_attention(ours, theirs: torch.nn.MultiheadAttention) -> None:
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        theirs.out_proj.weight.copy_(ours.w_o.weight)
        theirs.out_proj.bias.copy_(ours.w_o.bias)


def _copy_sublayers(ours, theirs) -> None:
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(theirs, name).weight.copy_(getattr(ours.feed_forward, name).weight)
            getattr(theirs, name).bias.copy_(getattr(ours.feed_forward, name).bias)
        for name in ("norm1", "norm2", "norm3"):
            if hasattr(ours, name):
                getattr(theirs, name).weight.copy_(getattr(ours, name).weight)
                getattr(theirs, name).bias.copy_(getattr(ours, name).bias)


@pytest.mark.parametrize("norm_first", [False, True])
def test_the_reference_layers_equal_torchs_with_the_same_weights(norm_first):
    from reference.transformer import DecoderLayer, EncoderLayer, MultiHeadAttention

    g = torch.Generator().manual_seed(3)
    x, memory = torch.randn(2, 5, 24, generator=g), torch.randn(2, 7, 24, generator=g)
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[1, 4:] = False
    mha = _randomise(MultiHeadAttention(24, 4), 1)
    theirs = torch.nn.MultiheadAttention(24, 4, batch_first=True).eval()
    _copy_attention(mha, theirs)
    out, maps = mha(x, memory, memory, keep[:, None, None, :])
    expected, expected_maps = theirs(x, memory, memory, key_padding_mask=~keep, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps, expected_maps, atol=1e-6, rtol=1e-5)

    encoder = _randomise(EncoderLayer(24, 4, 40, 0.0, norm_first), 2)
    torch_encoder = torch.nn.TransformerEncoderLayer(24, 4, 40, dropout=0.0, batch_first=True,
                                                     norm_first=norm_first).eval()
    _copy_attention(encoder.self_attn, torch_encoder.self_attn)
    _copy_sublayers(encoder, torch_encoder)
    with torch.no_grad():
        torch.testing.assert_close(encoder(memory, keep[:, None, None, :])[0],
                                   torch_encoder(memory, src_key_padding_mask=~keep), atol=1e-5, rtol=1e-5)

    decoder = _randomise(DecoderLayer(24, 4, 40, 0.0, norm_first), 4)
    torch_decoder = torch.nn.TransformerDecoderLayer(24, 4, 40, dropout=0.0, batch_first=True,
                                                     norm_first=norm_first).eval()
    _copy_attention(decoder.self_attn, torch_decoder.self_attn)
    _copy_attention(decoder.cross_attn, torch_decoder.multihead_attn)
    _copy_sublayers(decoder, torch_decoder)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    with torch.no_grad():
        ours = decoder(x, memory, keep[:, None, None, :], causal[None, None])[0]
        torch.testing.assert_close(ours, torch_decoder(x, memory, tgt_mask=~causal, memory_key_padding_mask=~keep),
                                   atol=1e-5, rtol=1e-5)


def test_the_reference_decodes_the_same_with_a_cache_and_one_beam_is_greedy():
    from reference.transformer import PAD, Transformer

    inputs = w7.make_inputs(11)
    for norm_first in (False, True):
        model = Transformer(w7.VS, w7.VT, w7.E, w7.H, 2, w7.F, 0.0, w7.MAX_LEN, norm_first).eval()
        own = dict(model.named_parameters())
        with torch.no_grad():
            for name, key in w7.STATES["model"].items():
                own[name].copy_(inputs[key])
        greedy = model.greedy_decode(inputs["dec_src"], 12)
        assert torch.equal(greedy, model.greedy_decode(inputs["dec_src"], 12, use_cache=True))
        for row in range(3):
            tokens, scores, log_probs = model.beam_search(inputs["dec_src"][row:row + 1], 1, 12, 0.6)
            assert tokens[0].tolist() == [t for t in greedy[row].tolist() if t != PAD][:tokens.shape[1]]
            assert tokens.shape[1] == int((greedy[row] != PAD).sum())


def test_the_stored_expected_outputs_are_the_references_at_the_checks_tolerances(tmp_path):
    from safetensors.torch import load_file

    spec = get_spec("w7-transformer")
    fresh = load_file(str(write_expected(spec, load_staff(spec), tmp_path / "fresh.safetensors")))
    assert expected_mismatches(fresh, load_file(str(spec.expected_path))) == []


def test_the_templates_tokeniser_vocabulary_and_bleu_are_the_judges(tmp_path):
    import sacrebleu

    given = _template_namespace()
    pairs = parallel_sentences(300, 9) + [("A man, sleeping on a bench.", "Ein Mann schläft auf einer Bank.")]
    for sentence, german in pairs[-3:]:
        assert given["tokenize"](sentence) == w7.tokenize(sentence)
        assert given["tokenize"](german) == w7.tokenize(german)
    assert given["build_vocab"](d for _, d in pairs) == w7.build_vocab(d for _, d in pairs)
    assert (given["PAD"], given["BOS"], given["EOS"], given["UNK"]) == (w7.PAD, w7.BOS, w7.EOS, w7.UNK)
    assert given["MIN_FREQ"] == w7.MIN_FREQ and given["DECODE_MAX_LEN"] == w7.DECODE_MAX_LEN
    rng = random.Random(5)
    references = [" ".join(w7.tokenize(d)) for _, d in pairs]
    for trial in range(4):
        hypotheses = []
        for reference in references:
            words = reference.split()
            if trial and rng.random() < 0.5:       # drop, swap or replace words: partial matches
                words = [w if rng.random() > 0.3 else rng.choice(("der", "den", "katze", "xyz")) for w in words]
                words = words[:max(1, len(words) - rng.randint(0, 2 * trial))]
            hypotheses.append(" ".join(words))
        ours = given["corpus_bleu"](hypotheses, references)
        theirs = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", force=True).score
        assert ours == pytest.approx(theirs, abs=1e-9)
    assert given["corpus_bleu"](["xyz"] * 3, references[:3]) == 0.0


def test_the_declared_style_is_read_from_the_notebook_as_submitted():
    def notebook(*sources):
        return {"cells": [{"cell_type": "code", "source": s, "metadata": {}} for s in sources]}

    assert w7.declared_norm_first(notebook("x = 1")) is False
    assert w7.declared_norm_first(notebook("NORM_FIRST = True")) is True
    assert w7.declared_norm_first(notebook("NORM_FIRST = True", "NORM_FIRST = False")) is False
    assert w7.declared_norm_first(notebook("NORM_FIRST = False  # post-LN", "if x:\n    NORM_FIRST = True")) is False
    assert w7.declared_norm_first(notebook("NORM_FIRST = True", "def broken(:\n")) is True


def test_the_names_built_at_run_time_are_in_both_catalogs():
    names = {"w7t_tokens", "w7t_scores", "w7t_log_probs", "w7t_memory", "w7t_self_weights", "w7t_cross_weights",
             "w7t_decoder_input", "w7t_labels", "w7t_loss", "w7t_smoothed_loss", "w7t_logits", "w7t_penalty",
             "w7t_beam_one", "w7t_cached_tokens", "output", "weights", "mask"}
    ids = {f"name.{n}" for n in names} | {f"w7t.what.{w}" for w in ("translation_plots", "decoding_plots")}
    ids |= {"w7t.style.post", "w7t.style.pre", "w7t.blind_bidirectional", "w7t.bidirectional_ok"}
    for lang in ("en", "ko"):
        assert ids - set(catalog(lang)) == set()


def _self_check(notebook: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SELF_CHECK_NOTEBOOK": str(notebook)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=TEMPLATE, env=env, capture_output=True, text=True, timeout=600)


def test_the_template_holds_stubs_and_no_solution():
    import ast

    nb = nbformat.read(str(TEMPLATE / NOTEBOOK), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    tree = ast.parse(code)
    stubs = {"make_src_mask", "make_tgt_mask", "shift_targets", "sequence_loss", "length_penalty", "masked_lm_loss",
             "MultiHeadAttention.forward", "PositionwiseFeedForward.forward", "EncoderLayer.forward",
             "Encoder.forward", "DecoderLayer.forward", "Decoder.forward", "Transformer.encode", "Transformer.decode",
             "Transformer.forward", "Transformer.greedy_decode", "Transformer.beam_search", "BERT.forward",
             "GPT.forward"}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            found.update({f"{node.name}.{f.name}": f for f in node.body if isinstance(f, ast.FunctionDef)})
    for name in stubs:
        body = [n for n in found[name].body if not isinstance(n, ast.Expr)]
        assert ast.get_docstring(found[name]) and len(body) == 1 and "NotImplementedError" in ast.unparse(body[0]), name
    answers = next(c.source for c in nb.cells if c.cell_type == "code" and "ANSWERS = {" in c.source)
    assert answers.count("None") == 5 and "1050624" not in answers
    tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
    assert {"parameters", "experiment", "answer:theory-layer-norm", "answer:theory-exposure-bias",
            "answer:exp-analysis"} <= tags
    assert (TEMPLATE / "translation_model").is_dir() and (TEMPLATE / "decoding_strategies").is_dir()


def test_the_self_check_passes_on_the_reference_and_tells_a_blank_template_what_to_do():
    done = _self_check(SOLUTION / NOTEBOOK)
    assert done.returncode == 0 and " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]
    blank = _self_check(TEMPLATE / NOTEBOOK)
    assert blank.returncode == 1
    assert "not implemented yet" in blank.stdout and "ANSWERS" in blank.stdout
    assert "MultiHeadAttention.forward" in blank.stdout and "Transformer.greedy_decode" in blank.stdout


# --- failures in words and pictures (the check factories on the judge's own data) ------------------------

def _context(outcomes: dict, inputs: dict, notebook: dict | None = None, data_dir: Path | None = None):
    probe = ProbeReport(True, "", outcomes, None)
    return CheckContext(notebook=notebook or {"cells": []}, submission_root=Path("."), deliverables=[],
                        execution=None, probe=probe, inputs=inputs, expected=None, data_dir=data_dir)


def test_a_decoder_that_sees_the_next_token_is_told_which_positions_and_pictured():
    base = torch.randn(2, 5, 3)
    variants = []
    for j in range(5):   # output i moves when token j changes for j <= i + 1: a mask shifted by one
        moved = base.clone()
        moved[:, max(j - 1, 0):] += 1.0
        variants.append([moved])
    ctx = _context({"causal": CallOutcome("ok", outputs=[base], variants=variants)}, {})
    verdict = w7.dependence_check("causal", "Transformer", causal=True, what="w7t_logits").fn(ctx)
    assert verdict.status == "fail"
    assert str(verdict.message).startswith("Transformer: output position 0 changes when target token 1 changes")
    student, expected = verdict.figure
    assert student.shape == expected.shape == (5, 5)
    assert expected.tolist() == torch.ones(5, 5).tril().tolist() and student[0, 1] == 1.0


def test_cross_attention_through_the_source_padding_is_told_which_query_and_key():
    keys = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    weights = torch.softmax(torch.randn(2, 2, 3, 5), dim=-1)          # attends everywhere
    out = torch.randn(2, 3, 4)
    ctx = _context({"cross": CallOutcome("ok", outputs=[out, None, weights], variants=[[out.clone()]])},
                   {"cross_mask": keys})
    verdict = w7.cross_padding_check("cross", "DecoderLayer").fn(ctx)
    assert verdict.status == "fail" and verdict.figure is not None
    message = str(verdict.message)
    assert "query 0 attends to key 3 through the source padding mask (batch 1, head 0)" in message, message


def test_padding_that_moves_the_encoder_output_is_told_which_sentence_and_position():
    src = torch.tensor([[5, 6, 7, 8], [5, 6, 0, 0]])
    memory = torch.randn(2, 4, 3)
    longer = torch.cat([memory, torch.randn(2, 3, 3)], dim=1)
    longer[1, 1] += 0.5
    ctx = _context({"pad": CallOutcome("ok", outputs=[memory], variants=[[longer]])},
                   {"src": src, "more": torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)})
    verdict = w7.padding_check("pad", "Transformer", source="src", more="more").fn(ctx)
    assert verdict.status == "fail"
    assert "the output of sentence 1 at position 1 (a real token: the sentence has 2) changed by 0.5" \
        in str(verdict.message)
    assert verdict.figure[0].shape == (2, 4)


def test_the_judge_computes_bleu_itself_from_the_translations_ids(tmp_path):
    from grader.data import read_parallel

    make_multi30k_smoke(tmp_path)
    inputs = w7.make_inputs(3, data_dir=tmp_path)
    german = w7.vocabularies(str(tmp_path))[1]
    index = {w: i for i, w in enumerate(german)}
    pairs = read_parallel(tmp_path, w7.TEST_SPLIT)
    rows = [w7.encode(pairs[int(i)][1], index)[1:] for i in inputs["bleu_index"]]   # the references, after BOS
    ids = torch.zeros(len(rows), max(len(r) for r in rows) + 2, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
        ids[r, len(row)] = 7      # a token after EOS is not part of the translation
    check = w7.bleu_check()
    perfect = check.fn(_context({"bleu": CallOutcome("ok", outputs=[ids])}, inputs, data_dir=tmp_path))
    assert perfect.status == "pass" and str(perfect.message).startswith("BLEU 100.0 on 200 held-out sentences")
    noise = torch.randint(4, len(german), ids.shape, generator=torch.Generator().manual_seed(0))
    poor = check.fn(_context({"bleu": CallOutcome("ok", outputs=[noise])}, inputs, data_dir=tmp_path))
    assert poor.status == "fail" and "below 30 (smoke profile)" in str(poor.message)


# --- in-process judging --------------------------------------------------------------------------------

def _variant(tmp_path: Path, replacements: list[tuple[str, str]] = (), append: list[str] = ()) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    edit_cells(submission / NOTEBOOK, list(replacements), append=list(append))
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path, **kwargs) -> dict:
    return judge_in_process(notebook, "w7-transformer", tmp_path / "work", skip_tags=("experiment",), **kwargs)


def _failed(result: dict) -> set[str]:
    return {c["id"] for c in result["checks"] if c["id"] in IMPLEMENTATION and c["status"] in ("fail", "error")}


def _lost(result: dict) -> float:
    return sum(c["max_score"] - c["score"] for c in result["checks"] if c["id"] in IMPLEMENTATION)


def _points(ids: set[str]) -> float:
    return sum(i.points for i in RUBRIC.items if i.id in ids)


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK)


def test_the_reference_passes_every_implementation_check_and_meets_the_requirement(reference_result):
    not_passed = {c["id"]: c["message"] for c in reference_result["checks"]
                  if c["id"] in IMPLEMENTATION and c["status"] != "pass"}
    assert not_passed == {}
    assert reference_result["bonus"] == pytest.approx(5.0)
    by_id = reference_result["by_id"]
    requirement = by_id["impl-mha"]["measured"]["own-implementation"]
    assert requirement["status"] == "pass" and requirement["static"] == [] and requirement["dynamic"] == []
    assert "post-LN" in by_id["impl-decoder-layer"]["message"]
    # without the experiments there is no TRANSLATOR, and the check says so
    assert by_id[BLEU]["status"] == "fail" and "TRANSLATOR" in by_id[BLEU]["message"]


# Each seeded bug: one exact line of the reference submission replaced, and the checks it must fail.
BUGS = {
    "decoder_mask_sees_next_token": (
        ("device=tgt.device).tril()", "device=tgt.device).tril(diagonal=1)"),
        {"impl-decoder-causal", "bonus-gpt"}),          # GPT is causal through make_tgt_mask too
    "beam_search_never_stops_at_eos": (
        ("(finished if token == EOS else live).append(", "live.append("),
        {"impl-beam-eos"}),
    "cross_attention_ignores_source_padding": (
        ("self.cross_attn(y, memory, memory, src_mask,", "self.cross_attn(y, memory, memory, None,"),
        {"impl-cross-attention-mask"}),
    "encoder_ignores_source_padding": (
        ("self.encoder(self.embed(self.src_embed, src), make_src_mask(src))",
         "self.encoder(self.embed(self.src_embed, src))"),
        {"impl-encoder-padding"}),
    "loss_counts_padding": (
        ("ignore_index=pad_id, label_smoothing=label_smoothing)", "label_smoothing=label_smoothing)"),
        {"impl-teacher-forcing"}),
    "greedy_goes_on_after_eos": (
        (".argmax(dim=-1).masked_fill(done, PAD)", ".argmax(dim=-1)"),
        {"impl-greedy"}),
    "length_penalty_of_n_not_5_plus_n": (
        ("return ((5.0 + length.float()) / 6.0) ** alpha", "return length.float() ** alpha"),
        {"impl-length-penalty"}),
    "scores_scaled_by_d_model": (
        ("q @ k.transpose(-2, -1) / math.sqrt(self.d_head)", "q @ k.transpose(-2, -1) / math.sqrt(self.d_model)"),
        EXACT),
    "kv_cache_keeps_only_the_new_token": (
        ('torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)', "k, v"),
        {"bonus-kv-cache"}),
    "masked_lm_loss_over_every_position": (
        ("cross_entropy(logits[masked].float(), targets[masked])",
         "cross_entropy(logits.flatten(0, 1).float(), targets.flatten())"),
        {"bonus-bert"}),
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_seeded_bug_loses_exactly_the_points_of_the_checks_aimed_at_it(tmp_path, bug):
    replacement, expected = BUGS[bug]
    result = _judge(tmp_path, _variant(tmp_path, [replacement]))
    failed = _failed(result)
    assert failed == expected, {c["id"]: c["message"] for c in result["checks"] if c["id"] in failed ^ expected}
    assert _lost(result) == pytest.approx(_points(expected))


def test_the_bug_messages_say_what_is_wrong(tmp_path):
    (first, second) = BUGS["beam_search_never_stops_at_eos"][0], BUGS["decoder_mask_sees_next_token"][0]
    result = _judge(tmp_path, _variant(tmp_path, [first, second]))
    beam = result["by_id"]["impl-beam-eos"]["message"]
    assert "goes on after its EOS" in beam, beam
    causal = result["by_id"]["impl-decoder-causal"]["message"]
    # the mask itself differs first, in words
    assert "make_tgt_mask: query 0 may attend to key 1 (sentence 0), which must be hidden" in causal, causal


def test_a_declared_style_the_code_does_not_compute_is_named(tmp_path):
    """NORM_FIRST = True, but layers and stacks that always normalise after the residual (post-LN)."""
    post_only = [_solution_source(marker).replace("if self.norm_first:", "if False:")
                 .replace("return self.norm(x) if self.norm_first else x", "return x")
                 .replace("return self.norm(y) if self.norm_first else y", "return y")
                 for marker in ("class EncoderLayer", "class DecoderLayer")]
    notebook = _variant(tmp_path, [("NORM_FIRST = False", "NORM_FIRST = True")], append=post_only)
    result = _judge(tmp_path, notebook)
    check = result["by_id"]["impl-encoder-layer"]
    assert check["status"] == "fail"
    assert "declares pre-LN" in check["message"] and "computes post-LN" in check["message"] \
        and "NORM_FIRST = False" in check["message"], check["message"]
    # the properties hold whatever the style
    for check in ("impl-decoder-causal", "impl-encoder-padding", "impl-cross-attention-mask", "impl-beam-greedy"):
        assert result["by_id"][check]["status"] == "pass", result["by_id"][check]["message"]


# Correct work, written otherwise: every point kept.
EINSUM_ATTENTION = '''
class MultiHeadAttention(nn.Module):
    """Multi-head attention with einsum, heads kept on axis 2, and an additive -1e9 mask."""

    def __init__(self, d_model, n_heads, dropout=0.0):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query, key, value, mask=None, cache=None, static=False):
        """(output (B, T, E), weights (B, H, T, S)); the cache holds (B, S, H, dh) keys and values."""
        b, t, _ = query.shape
        q = self.w_q(query).reshape(b, t, self.n_heads, self.d_head)
        if cache is not None and static and "k" in cache:
            k, v = cache["k"], cache["v"]
        else:
            k = self.w_k(key).reshape(b, key.shape[1], self.n_heads, self.d_head)
            v = self.w_v(value).reshape(b, value.shape[1], self.n_heads, self.d_head)
            if cache is not None:
                if not static and "k" in cache:
                    k, v = torch.cat([cache["k"], k], dim=1), torch.cat([cache["v"], v], dim=1)
                cache["k"], cache["v"] = k, v
        scores = torch.einsum("bthd,bshd->bhts", q, k) * self.d_head ** -0.5
        if mask is not None:
            scores = scores + torch.zeros_like(scores).masked_fill(~mask, -1e9)
        weights = scores.softmax(dim=-1)
        out = torch.einsum("bhts,bshd->bthd", self.dropout(weights), v).reshape(b, t, self.d_model)
        return self.w_o(out), weights


def make_src_mask(src, pad_id=PAD):
    """(B, 1, 1, S) by unsqueezing."""
    return src.ne(pad_id).unsqueeze(1).unsqueeze(2)


def make_tgt_mask(tgt, pad_id=PAD):
    """Causal by comparing positions, and the PAD keys hidden."""
    positions = torch.arange(tgt.shape[1], device=tgt.device)
    causal = positions[None, :] <= positions[:, None]
    return causal.view(1, 1, *causal.shape) & tgt.ne(pad_id).view(tgt.shape[0], 1, 1, -1)


def shift_targets(tgt):
    """narrow() rather than slices."""
    return tgt.narrow(1, 0, tgt.shape[1] - 1), tgt.narrow(1, 1, tgt.shape[1] - 1)


def sequence_loss(logits, labels, pad_id=PAD, label_smoothing=0.0):
    """Label-smoothed negative log-likelihood by hand, averaged over the real labels."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    nll = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    per_token = (1 - label_smoothing) * nll - label_smoothing * log_probs.mean(dim=-1)
    return per_token[labels.ne(pad_id)].mean()
'''

DECODING_REWRITTEN = '''
_cached_greedy = Transformer.greedy_decode


@torch.no_grad()
def greedy_by_rows(self, src, max_len=50, use_cache=False):
    """Greedy decoding with one Python list per sentence (the cached path is the original one)."""
    if use_cache:
        return _cached_greedy(self, src, max_len, use_cache=True)
    memory, src_mask = self.encode(src), make_src_mask(src)
    rows = [[BOS] for _ in range(src.shape[0])]
    finished = [False] * len(rows)
    while len(rows[0]) <= max_len and not all(finished):
        logits = self.generator(self.decode(torch.tensor(rows, device=src.device), memory, src_mask)[:, -1])
        for r, token in enumerate(logits.argmax(dim=-1).tolist()):
            rows[r].append(PAD if finished[r] else token)
            finished[r] = finished[r] or token == EOS
    return torch.tensor([row[1:] for row in rows], dtype=torch.long, device=src.device)


@torch.no_grad()
def beam_search_tensors(self, src, beam_size=4, max_len=50, alpha=0.6):
    """Beam search over a (beams, t) tensor of prefixes and a tensor of their log-probabilities."""
    memory, src_mask = self.encode(src), make_src_mask(src)
    prefixes = torch.full((1, 1), BOS, dtype=torch.long, device=src.device)
    totals = torch.zeros(1, device=src.device)
    done_tokens, done_scores = [], []
    for _ in range(max_len):
        n = prefixes.shape[0]
        logits = self.generator(self.decode(prefixes, memory.expand(n, -1, -1), src_mask.expand(n, -1, -1, -1))[:, -1])
        candidates = (totals[:, None] + torch.log_softmax(logits.float(), dim=-1)).flatten()
        best, index = candidates.topk(min(beam_size, candidates.numel()))
        grown = torch.cat([prefixes[index // logits.shape[-1]], (index % logits.shape[-1])[:, None]], dim=1)
        ended = grown[:, -1] == EOS
        done_tokens += [row[1:] for row in grown[ended].tolist()]
        done_scores += best[ended].tolist()
        prefixes, totals = grown[~ended], best[~ended]
        if len(done_tokens) >= beam_size or len(prefixes) == 0:
            break
    if len(done_tokens) < beam_size:
        done_tokens += [row[1:] for row in prefixes.tolist()]
        done_scores += totals.tolist()
    log_probs = torch.tensor(done_scores)
    scores = log_probs / length_penalty(torch.tensor([len(t) for t in done_tokens]), alpha)
    order = sorted(range(len(done_tokens)), key=lambda i: -float(scores[i]))[:beam_size]
    tokens = torch.full((len(order), max(len(done_tokens[i]) for i in order)), PAD, dtype=torch.long)
    for row, i in enumerate(order):
        tokens[row, :len(done_tokens[i])] = torch.tensor(done_tokens[i])
    return tokens, scores[order], log_probs[order]


Transformer.greedy_decode = greedy_by_rows
Transformer.beam_search = beam_search_tensors
'''

ALTERNATIVES = {
    "pre_ln_declared": ([("NORM_FIRST = False", "NORM_FIRST = True")], []),
    "einsum_attention_masks_and_loss_by_hand": ([], [EINSUM_ATTENTION]),
    "decoding_rewritten": ([], [DECODING_REWRITTEN]),
}


@pytest.mark.parametrize("style", sorted(ALTERNATIVES))
def test_correct_work_written_otherwise_keeps_every_point(tmp_path, style):
    replacements, append = ALTERNATIVES[style]
    result = _judge(tmp_path, _variant(tmp_path, replacements, append))
    assert _failed(result) == set(), {c["id"]: c["message"] for c in result["checks"] if c["id"] in _failed(result)}
    assert result["bonus"] == pytest.approx(5.0)
    if style == "pre_ln_declared":
        assert "pre-LN" in result["by_id"]["impl-encoder-layer"]["message"]


# Shortcuts: correct numbers, borrowed machinery.
FUSED_ATTENTION = '''
import torch.nn.functional as F


class MultiHeadAttention(nn.Module):
    """The projections are mine; the attention itself is torch's fused kernel."""

    def __init__(self, d_model, n_heads, dropout=0.0):
        super().__init__()
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def split(self, x):
        """(B, T, E) -> (B, H, T, dh)."""
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, query, key, value, mask=None, cache=None, static=False):
        """(output from F.scaled_dot_product_attention, weights recomputed for the pictures)."""
        q, k, v = self.split(self.w_q(query)), self.split(self.w_k(key)), self.split(self.w_v(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        weights = torch.softmax(scores if mask is None else scores.masked_fill(~mask, float("-inf")), dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.w_o(out.transpose(1, 2).reshape(query.shape[0], query.shape[1], self.d_model)), weights
'''

TORCH_CROSS_ATTENTION = '''
class DecoderLayer(nn.Module):
    """My self-attention; the cross-attention delegated to torch.nn.MultiheadAttention with my weights."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, norm_first=NORM_FIRST):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, y, memory, src_mask=None, tgt_mask=None, cache=None):
        """post-LN; the cross-attention through nn.MultiheadAttention."""
        attended, self_weights = self.self_attn(y, y, y, tgt_mask)
        y = self.norm1(y + self.dropout(attended))
        mine = self.cross_attn
        torch_attention = nn.MultiheadAttention(mine.d_model, mine.n_heads, batch_first=True).to(y.device).eval()
        with torch.no_grad():
            torch_attention.in_proj_weight.copy_(torch.cat([mine.w_q.weight, mine.w_k.weight, mine.w_v.weight]))
            torch_attention.in_proj_bias.copy_(torch.cat([mine.w_q.bias, mine.w_k.bias, mine.w_v.bias]))
            torch_attention.out_proj.weight.copy_(mine.w_o.weight)
            torch_attention.out_proj.bias.copy_(mine.w_o.bias)
        padding = None if src_mask is None else ~src_mask.reshape(y.shape[0], -1)
        attended, cross_weights = torch_attention(y, memory, memory, key_padding_mask=padding,
                                                  average_attn_weights=False)
        y = self.norm2(y + self.dropout(attended))
        return self.norm3(y + self.dropout(self.feed_forward(y))), self_weights, cross_weights
'''

SHORTCUTS = {
    # Everything built on MultiHeadAttention; only teacher forcing (two functions) is untouched.
    "fused_attention": (FUSED_ATTENTION, IMPLEMENTATION - {"impl-teacher-forcing"},
                        "torch.nn.functional.scaled_dot_product_attention", "impl-decoder-causal"),
    # Everything built on DecoderLayer (the Transformer and the decoding), not attention, BERT or GPT.
    "torch_cross_attention": (TORCH_CROSS_ATTENTION,
                              {"impl-encoder-layer", "impl-decoder-layer", "impl-encoder-padding", "impl-decoder-causal",
                               "impl-cross-attention-mask", "impl-greedy", "impl-beam-greedy", "impl-beam-search",
                               "impl-beam-eos", "impl-length-penalty", "impl-hidden-decoder", "bonus-kv-cache"},
                              "torch.nn.MultiheadAttention", "impl-cross-attention-mask"),
}


@pytest.mark.parametrize("shortcut", sorted(SHORTCUTS))
def test_a_wrapped_torch_module_loses_the_points_of_the_requirement_and_says_what_was_found(tmp_path, shortcut):
    cell, expected, api, named_in = SHORTCUTS[shortcut]
    result = _judge(tmp_path, _variant(tmp_path, append=[cell]))
    assert _failed(result) == expected, {c["id"]: c["message"] for c in result["checks"]
                                         if c["id"] in _failed(result) ^ expected}
    appended = len(nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4).cells) + 1
    message = result["by_id"][named_in]["message"]
    assert api in message and f"cell {appended}" in message, message
    assert "not " in message and "own implementation" in message


# --- whole sandboxed runs ------------------------------------------------------------------------------

def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"hw7/{path.relative_to(folder)}")
    return target


@pytest.mark.notebook
def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    result = grade_submission(_zip(SOLUTION, tmp_path / "submit.zip"), tmp_path / "out",
                              GradeOptions(cell_timeout_s=300, timeout_s=600, memory_mb=4096))
    assert result["status"] == "graded", result.get("reason")
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] not in ("pass", "pending")}
    assert not_passed == {}
    assert {c["id"] for c in result["checks"] if c["status"] == "pending"} == \
        {i.id for i in RUBRIC.items if i.kind == "manual"}
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)
    assert result["execution"]["status"] == "completed" and result["judged_with"] == "live"
    # the smoke profile of the reference notebook must stay well inside CI's budget
    assert result["execution"]["duration_s"] < 120


@pytest.mark.notebook
def test_the_blank_template_gets_zero_implementation_with_not_implemented_messages(tmp_path):
    from grader.pipeline import GradeOptions, grade_submission

    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out",
                              GradeOptions(cell_timeout_s=120, timeout_s=300, memory_mb=4096))
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation" and check["visibility"] == "public":
            assert check["status"] == "fail" and "not implemented" in check["message"], check
    assert result["bonus"] == 0 and result["score"] == 0


@pytest.mark.notebook
def test_the_full_profile_runs_on_a_cpu_against_a_miniature_multi30k(tmp_path):
    """The real profile's sizes (d_model 256, 3 layers, 20 epochs) on a data dir in Multi30k's layout
    small enough for a CPU: everything is judged; BLEU against the full profile's threshold."""
    from grader.pipeline import GradeOptions, grade_submission

    folder = tmp_path / "data" / "multi30k"
    folder.mkdir(parents=True)
    for split, count, seed in (("train", 48, 21), ("val", 8, 22), ("test_2016_flickr", 8, 23)):
        pairs = parallel_sentences(count, seed)
        (folder / f"{split}.en").write_text("\n".join(e for e, _ in pairs) + "\n", encoding="utf-8")
        (folder / f"{split}.de").write_text("\n".join(d for _, d in pairs) + "\n", encoding="utf-8")
    result = grade_submission(SOLUTION, tmp_path / "out",
                              GradeOptions(cell_timeout_s=900, timeout_s=1800, memory_mb=4096, profile="full",
                                           data_dir=tmp_path / "data"))
    assert result["status"] == "graded", result.get("reason")
    assert result["execution"]["status"] == "completed", result["execution"]
    by_id = {c["id"]: c for c in result["checks"]}
    not_passed = {i: by_id[i]["message"] for i in IMPLEMENTATION if by_id[i]["status"] != "pass"}
    assert not_passed == {}
    bleu = by_id[BLEU]["message"]
    assert "on 8 held-out sentences" in bleu and "full profile" in bleu, bleu
