"""w7-transformer: the public probe calls and checks.

The template fixes the parameter layout of every class (`MultiHeadAttention`: `w_q, w_k, w_v, w_o`;
`PositionwiseFeedForward`: `linear1, linear2`; the layers' `self_attn, cross_attn, feed_forward,
norm1..3`; the stacks' `layers, norm`; `Transformer`: `src_embed, tgt_embed, encoder, decoder,
generator`; `BERT`/`GPT`: `tok_embed, blocks, norm, mlm_head / lm_head`), the masks (bool, True =
may attend), the token ids (PAD 0, BOS 1, EOS 2, UNK 3), the decoding rules and the tokeniser and
vocabulary. So the judge loads its own weights into the student's modules and compares outputs,
gradients, greedy and beam-search results exactly with the reference run on the same weights.

Layer normalisation may come after each sublayer (post-LN, the paper) or before it (pre-LN): the
student declares which with the template's `NORM_FIRST`. Every exact call is made twice, with
`norm_first=False` and `norm_first=True`; the check compares the call of the declared style with
the reference of that style (and says so when the other style is what the code computes).

What the architecture promises is checked as properties of the student's own model, whatever its
style: changing target token j changes no output before j (the decoder does not see the future;
the report draws which output depends on which input); padding the source with more PAD changes
no real position of the encoder's output; memory at padded source positions changes nothing in
the decoder and gets no cross-attention weight (the report draws the cross-attention pattern);
beam search with one beam is greedy decoding; hypotheses come sorted by their score, which is
their log-probability over GNMT's length penalty; EOS ends a hypothesis.

The decoding checks use a one-layer model so that a decoder mask that lets position t see t + 1
(harmless at the last position of one layer) loses the causal check's points and no others.

Translation is measured by the judge: the trained model the notebook leaves as `TRANSLATOR`
translates the judge's held-out source sentences (DATA_DIR's test split: the generated corpus in
the smoke profile, Multi30k's test_2016_flickr in the full one) given as token ids of the
template's vocabulary, which the judge rebuilds from the training split with the same code; the
judge computes corpus BLEU with sacrebleu and compares it with the profile's threshold, and with
what the notebook reported in translation_model/metrics.csv.

The check factories are parameterised by class and function names and call ids, so the midterm
can reuse them on its own probe calls.
"""

from __future__ import annotations

import ast
import math
import re
import tempfile
from collections import Counter
from functools import lru_cache
from pathlib import Path

import torch

from grader.assignments import AssignmentSpec
from grader.i18n import Message, msg
from grader.judge import CheckContext, all_of, CheckDef, Verdict, artifacts, call_problem, compare_tensors, module_check
from grader.judge.attention_maps import map_problem
from grader.judge.quality import notebook_code, quality_checks
from grader.judge.requirements import FUSED_ATTENTION_APIS, FUSED_ATTENTION_OPS, Forbidden
from grader.probe import ArtifactSpec, ProbeCall
from grader.rubric.models import Tolerance

# --- what the template fixes --------------------------------------------------------------------

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
MIN_FREQ = 2                  # a word seen fewer times in the training split is UNK
DECODE_MAX_LEN = 60           # the judge's (and the notebook's) limit on a translation's length
MAX_HELD_OUT = 1000           # test sentences the judge translates at most (drawn with the seed beyond)
TEST_SPLIT, TRAIN_SPLIT = "test_2016_flickr", "train"
# Corpus BLEU of the trained TRANSLATOR on the judge's held-out sentences, per profile.
BLEU_THRESHOLD = {"smoke": 30.0, "full": 20.0}
BLEU_AGREEMENT = 1.0          # the run's reported test BLEU vs the judge's own measurement (BLEU points)
BLEU_BETWEEN_RUNS = 10.0      # submitted vs regenerated tables: training differs a little between machines

MHA, FFN, ENC, DEC, MODEL = "MultiHeadAttention", "PositionwiseFeedForward", "EncoderLayer", "DecoderLayer", "Transformer"
CLASSES = (MHA, FFN, ENC, DEC, "Encoder", "Decoder", MODEL, "BERT", "GPT", "TRANSLATOR")
FUNCTIONS = (MHA, FFN, ENC, DEC, "Encoder", "Decoder", MODEL, "make_src_mask", "make_tgt_mask", "shift_targets",
             "sequence_loss", "length_penalty", "BERT", "GPT", "masked_lm_loss")

# Sizes: all different (E=24, H=4, dh=6, F=40, B=2, S=7, T=6), so a transposed weight, heads split
# along the wrong axis or merged in the wrong order cannot pass by luck.
E, H, F, B, S, T = 24, 4, 40, 2, 7, 6
VS, VT = 19, 23                # source and target vocabularies of the judge's models
MAX_LEN = 32                   # their positional table
T_CAUSAL = 7                   # target length of the causal check (one perturbed call per position)
GREEDY_MAX, BEAM_MAX, MEASURE_LEN = 10, 8, 24
FP32 = Tolerance(atol=1e-4, rtol=1e-4)
EXACT = Tolerance(atol=0.0, rtol=0.0)
DEPENDENCE_ATOL = 1e-4         # an output "changed" when it moved more than this
LEAK_ATOL = 1e-5               # padded memory / padding columns may move an output by rounding only
BLOCKED_WEIGHT = 1e-6


# --- the template's tokeniser and vocabulary (the judge rebuilds the notebook's) ------------------

def tokenize(sentence: str) -> list[str]:
    """Lower-cased words and punctuation marks (the template's `tokenize`)."""
    return re.findall(r"\w+|[^\w\s]", sentence.lower())


def build_vocab(sentences, min_freq: int = MIN_FREQ) -> list[str]:
    """The specials, then every token seen at least `min_freq` times, most frequent first, ties in
    alphabetical order (the template's `build_vocab`)."""
    counts = Counter(token for sentence in sentences for token in tokenize(sentence))
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return list(SPECIALS) + words


def encode(sentence: str, index: dict[str, int]) -> list[int]:
    """[BOS] + token ids (UNK for unknown tokens) + [EOS] (the template's `encode`)."""
    return [BOS] + [index.get(token, UNK) for token in tokenize(sentence)] + [EOS]


def detokenize(ids, vocabulary: list[str]) -> str:
    """The tokens of a translation up to its first EOS (PAD and BOS skipped), joined by spaces."""
    words = []
    for token in ids:
        token = int(token)
        if token == EOS:
            break
        if token in (PAD, BOS):
            continue
        words.append(vocabulary[token] if 0 <= token < len(vocabulary) else SPECIALS[UNK])
    return " ".join(words)


@lru_cache(maxsize=4)
def vocabularies(data_dir: str) -> tuple[list[str], list[str]]:
    """(English, German) vocabularies of DATA_DIR's training split, as the template builds them."""
    from grader.data import read_parallel

    pairs = read_parallel(Path(data_dir), TRAIN_SPLIT)
    return build_vocab(e for e, _ in pairs), build_vocab(d for _, d in pairs)


def _with_data(data_dir: Path | None, read):
    """`read(data_dir)`, or on smoke data made in a temporary folder when there is no DATA_DIR
    (`grade expected`: no stored output depends on the data)."""
    from grader.data import make_multi30k_smoke

    if data_dir is not None:
        return read(Path(data_dir))
    with tempfile.TemporaryDirectory(prefix="w7-transformer-data-") as folder:
        make_multi30k_smoke(Path(folder))
        return read(Path(folder))


def held_out(data_dir: Path, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(source ids (N, S) int64 padded with PAD, indices (N,) of those sentences in the test split)."""
    from grader.data import read_parallel

    english, _ = vocabularies(str(data_dir))
    pairs = read_parallel(data_dir, TEST_SPLIT)
    indices = list(range(len(pairs)))
    if len(indices) > MAX_HELD_OUT:
        g = torch.Generator().manual_seed(seed)
        indices = sorted(torch.randperm(len(pairs), generator=g)[:MAX_HELD_OUT].tolist())
    index = {w: i for i, w in enumerate(english)}
    rows = [encode(pairs[i][0], index) for i in indices]
    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
    return ids, torch.tensor(indices, dtype=torch.long)


# --- the judge's weights, named as the template's parameters --------------------------------------

def _linear(g: torch.Generator, prefix: str, n_out: int, n_in: int, gain: float = 1.0) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.randn(n_out, n_in, generator=g) * (gain / math.sqrt(n_in)),
            f"{prefix}.bias": torch.randn(n_out, generator=g) * 0.1}


def _norm(g: torch.Generator, prefix: str, d: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": 1.0 + 0.2 * torch.randn(d, generator=g), f"{prefix}.bias": 0.2 * torch.randn(d, generator=g)}


def mha_weights(g: torch.Generator, prefix: str, d: int) -> dict[str, torch.Tensor]:
    """w_q, w_k (scaled up, so that the maps are neither uniform nor one-hot), w_v, w_o."""
    sep = "." if prefix else ""
    weights = {}
    for name, gain in (("w_q", 1.6), ("w_k", 1.6), ("w_v", 1.0), ("w_o", 1.0)):
        weights.update(_linear(g, f"{prefix}{sep}{name}", d, d, gain))
    return weights


def layer_weights(g: torch.Generator, prefix: str, d: int, d_ff: int, *, cross: bool) -> dict[str, torch.Tensor]:
    sep = "." if prefix else ""
    weights = mha_weights(g, f"{prefix}{sep}self_attn", d)
    if cross:
        weights.update(mha_weights(g, f"{prefix}{sep}cross_attn", d))
    weights.update(_linear(g, f"{prefix}{sep}feed_forward.linear1", d_ff, d, 1.4))
    weights.update(_linear(g, f"{prefix}{sep}feed_forward.linear2", d, d_ff, 1.4))
    for k in range(1, 4 if cross else 3):
        weights.update(_norm(g, f"{prefix}{sep}norm{k}", d))
    return weights


def transformer_weights(g: torch.Generator, n_layers: int, *, eos_bias: float) -> dict[str, torch.Tensor]:
    """Every parameter of Transformer(VS, VT, E, H, n_layers, F), by name. The generator's logits
    are large (std ~5), so float rounding cannot flip an argmax; PAD and BOS are never likely;
    `eos_bias` decides how soon EOS comes."""
    weights = {"src_embed.weight": torch.randn(VS, E, generator=g) * 0.35,
               "tgt_embed.weight": torch.randn(VT, E, generator=g) * 0.35}
    for side, cross in (("encoder", False), ("decoder", True)):
        for i in range(n_layers):
            weights.update(layer_weights(g, f"{side}.layers.{i}", E, F, cross=cross))
        weights.update(_norm(g, f"{side}.norm", E))
    weights.update(_linear(g, "generator", VT, E, 5.0))
    bias = weights["generator.bias"]
    bias[PAD] = bias[BOS] = -30.0
    bias[EOS] = eos_bias
    return weights


def stack_weights(g: torch.Generator, vocab: int, n_layers: int, head: str) -> dict[str, torch.Tensor]:
    """Every parameter of BERT / GPT(vocab, E, H, n_layers, F): tok_embed, blocks, norm, the head."""
    weights = {"tok_embed.weight": torch.randn(vocab, E, generator=g) * 0.35}
    for i in range(n_layers):
        weights.update(layer_weights(g, f"blocks.{i}", E, F, cross=False))
    weights.update(_norm(g, "norm", E))
    weights.update(_linear(g, head, vocab, E, 3.0))
    return weights


def _prefixed(prefix: str, weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(inputs named `prefix:name`, the probe's state map name -> input key)."""
    return {f"{prefix}:{k}": v for k, v in weights.items()}, {k: f"{prefix}:{k}" for k in weights}


def _tokens(g: torch.Generator, vocab: int, *shape: int) -> torch.Tensor:
    """Random ordinary tokens (never a special)."""
    return torch.randint(4, vocab, shape, generator=g)


def _changed(tokens: torch.Tensor, column: int, vocab: int) -> torch.Tensor:
    """`tokens` with every row's token at `column` replaced by another ordinary token."""
    changed = tokens.clone()
    changed[:, column] = (tokens[:, column] - 4 + 1 + torch.arange(tokens.shape[0])) % (vocab - 4) + 4
    changed[:, column] = torch.where(changed[:, column] == tokens[:, column],
                                     (changed[:, column] - 4 + 1) % (vocab - 4) + 4, changed[:, column])
    return changed


WEIGHTS = {  # input prefix -> the parameters it holds (drawn from the run's seed in make_inputs)
    "mha": lambda g: mha_weights(g, "", E),
    "enc": lambda g: layer_weights(g, "", E, F, cross=False),
    "dec": lambda g: layer_weights(g, "", E, F, cross=True),
    "model": lambda g: transformer_weights(g, 2, eos_bias=0.0),
    "eos_rare": lambda g: transformer_weights(g, 1, eos_bias=-30.0),   # beams and greedy run to max_len
    "eos_soon": lambda g: transformer_weights(g, 1, eos_bias=3.0),     # rows and hypotheses end early
    "bert": lambda g: stack_weights(g, VT, 2, "mlm_head"),
    "gpt": lambda g: stack_weights(g, VT, 2, "lm_head"),
}
# The probe's state maps (parameter name -> input key) depend on the names only, not on the draw.
STATES = {name: _prefixed(name, draw(torch.Generator().manual_seed(0)))[1] for name, draw in WEIGHTS.items()}


def make_inputs(seed: int, data_dir: Path | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    inputs: dict[str, torch.Tensor] = {}
    for name, draw in WEIGHTS.items():
        inputs.update(_prefixed(name, draw(g))[0])

    # multi-head attention: self-attention under a causal + padding mask, cross-attention with T != S
    lengths = torch.tensor([T, T - 2])
    pad_keys = torch.arange(T)[None, :] < lengths[:, None]                                # (B, T)
    src_lengths = torch.tensor([S, S - 3])
    src_keys = torch.arange(S)[None, :] < src_lengths[:, None]                            # (B, S)
    inputs.update({
        "x": randn(B, T, E), "xq": randn(B, T, E), "kv": randn(B, S, E),
        "self_mask": torch.ones(T, T).tril().bool()[None, None] & pad_keys[:, None, None, :],   # (B, 1, T, T)
        "cross_mask": src_keys[:, None, None, :].clone(),                                        # (B, 1, 1, S)
        "w_out": randn(B, T, E), "w_maps": randn(B, H, T, T), "w_cross_maps": randn(B, H, T, S),
        # layers: no padding here (the padding checks are separate), the causal mask given
        "enc_x": randn(B, S, E), "w_enc": randn(B, S, E), "w_enc_maps": randn(B, H, S, S),
        "dec_y": randn(B, T, E), "dec_memory": randn(B, S, E), "w_dec": randn(B, T, E),
        "w_dec_self": randn(B, H, T, T), "w_dec_cross": randn(B, H, T, S),
        "all_src": torch.ones(B, 1, 1, S, dtype=torch.bool), "causal": torch.ones(T, T).tril().bool()[None, None],
    })
    # cross-attention under source padding: memory at the padded positions replaced, nothing may move
    moved = inputs["dec_memory"].clone()
    moved[~src_keys] = randn(int((~src_keys).sum()), E, scale=3.0)
    inputs["dec_memory_moved"] = moved
    # the whole model: sources without padding, and with padding (rows of 7, 5 and 2 tokens)
    src_full = _tokens(g, VS, 3, S)
    src_padded = src_full.clone()
    src_padded[1, 5:] = PAD
    src_padded[2, 2:] = PAD
    inputs.update({"src_full": src_full, "src_padded": src_padded,
                   "src_more_padding": torch.cat([src_padded, torch.full((3, 3), PAD)], dim=1)})
    tgt_in = torch.cat([torch.full((3, 1), BOS), _tokens(g, VT, 3, T_CAUSAL - 1)], dim=1)
    inputs["tgt_in"] = tgt_in
    for j in range(T_CAUSAL):
        inputs[f"tgt_in_{j}"] = _changed(tgt_in, j, VT)
    # targets with padding, for the masks and teacher forcing: [BOS] w... [EOS] PAD...
    tgt = torch.full((3, 9), PAD)
    for row, length in enumerate((7, 4, 1)):
        tgt[row, 0] = BOS
        tgt[row, 1:1 + length] = _tokens(g, VT, length)
        tgt[row, 1 + length] = EOS
    inputs.update({"tgt": tgt, "tgt_padded_in": tgt[:, :-1].contiguous(), "labels": tgt[:, 1:].contiguous(),
                   "logits": randn(3, 8, VT, scale=2.0)})
    # decoding
    inputs.update({"dec_src": _tokens(g, VS, 3, S), "beam_src": _tokens(g, VS, 1, S),
                   "lp_lengths": torch.tensor([1, 2, 5, 9, 13]), "measure_src": _tokens(g, VS, 2, S)})
    # bonus: BERT / GPT dependence, masked-LM loss
    ids = _tokens(g, VT, 2, 6)
    inputs["lm_ids"] = ids
    for j in range(6):
        inputs[f"lm_ids_{j}"] = _changed(ids, j, VT)
    masked = torch.rand(3, 7, generator=g) < 0.3
    masked[:, 0] = True
    inputs.update({"mlm_logits": randn(3, 7, VT, scale=2.0), "mlm_targets": _tokens(g, VT, 3, 7),
                   "mlm_masked": masked})
    # translation: the judge's held-out source sentences (only their ids and positions in the split)
    bleu_src, bleu_index = _with_data(data_dir, lambda folder: held_out(folder, seed))
    inputs.update({"bleu_src": bleu_src, "bleu_index": bleu_index})
    return inputs


# --- probe calls ----------------------------------------------------------------------------------

LAYER = {"d_model": E, "n_heads": H, "d_ff": F, "dropout": 0.0}


def _model(n_layers: int) -> dict:
    return {"src_vocab": VS, "tgt_vocab": VT, "d_model": E, "n_heads": H, "n_layers": n_layers, "d_ff": F,
            "dropout": 0.0, "max_len": MAX_LEN}


def _lm() -> dict:
    return {"vocab_size": VT, "d_model": E, "n_heads": H, "n_layers": 2, "d_ff": F, "max_len": MAX_LEN, "dropout": 0.0}


def styled(call: ProbeCall) -> list[ProbeCall]:
    """The call made twice: with norm_first=False (id) and norm_first=True (id + "_pre")."""
    import dataclasses

    return [dataclasses.replace(call, init_kwargs={**call.init_kwargs, "norm_first": False}),
            dataclasses.replace(call, id=call.id + "_pre", init_kwargs={**call.init_kwargs, "norm_first": True})]


def _module(call_id: str, cls: str, args: tuple[str, ...], init: dict, weights: str, **kwargs) -> ProbeCall:
    return ProbeCall(call_id, cls, args, kind="module", init_kwargs=dict(init), state=STATES[weights], **kwargs)


CALLS = [
    # multi-head attention, exact with the judge's weights (outputs, maps, gradients)
    _module("mha_self", MHA, ("x", "x", "x"), {"d_model": E, "n_heads": H}, "mha",
            tensor_kwargs={"mask": "self_mask"}, backward={"weights": {"0": "w_out", "1": "w_maps"}}),
    _module("mha_cross", MHA, ("xq", "kv", "kv"), {"d_model": E, "n_heads": H}, "mha",
            tensor_kwargs={"mask": "cross_mask"}, backward={"weights": {"0": "w_out", "1": "w_cross_maps"}}),
    # layers and the encoder stack, exact, in both styles
    *styled(_module("enc_layer", ENC, ("enc_x",), LAYER, "enc", backward={"weights": {"0": "w_enc", "1": "w_enc_maps"}})),
    *styled(_module("encode", MODEL, ("src_full",), _model(2), "model", method="encode")),
    *styled(_module("dec_layer", DEC, ("dec_y", "dec_memory"), LAYER, "dec",
                    tensor_kwargs={"src_mask": "all_src", "tgt_mask": "causal"},
                    backward={"weights": {"0": "w_dec", "1": "w_dec_self", "2": "w_dec_cross"}})),
    # masks
    ProbeCall("src_mask", "make_src_mask", ("src_padded",)),
    ProbeCall("tgt_mask", "make_tgt_mask", ("tgt_padded_in",)),
    # properties of the student's own model, in its declared style
    _module("enc_padding", MODEL, ("src_padded",), _model(2), "model", method="encode",
            perturb=({"args": ("src_more_padding",)},)),
    _module("causal", MODEL, ("src_full", "tgt_in"), _model(2), "model",
            perturb=tuple({"args": ("src_full", f"tgt_in_{j}")} for j in range(T_CAUSAL))),
    _module("cross_padding", DEC, ("dec_y", "dec_memory"), LAYER, "dec",
            tensor_kwargs={"src_mask": "cross_mask", "tgt_mask": "causal"},
            perturb=({"args": ("dec_y", "dec_memory_moved"), "tensor_kwargs": {"src_mask": "cross_mask",
                                                                               "tgt_mask": "causal"}},)),
    # teacher forcing
    ProbeCall("shift", "shift_targets", ("tgt",)),
    ProbeCall("loss", "sequence_loss", ("logits", "labels")),
    ProbeCall("loss_smoothed", "sequence_loss", ("logits", "labels"), kwargs={"label_smoothing": 0.1}),
    # decoding (one layer: see the module's docstring)
    *styled(_module("greedy", MODEL, ("dec_src",), _model(1), "eos_soon", method="greedy_decode",
                    kwargs={"max_len": GREEDY_MAX})),
    _module("greedy_one", MODEL, ("beam_src",), _model(1), "eos_rare", method="greedy_decode",
            kwargs={"max_len": GREEDY_MAX}),
    _module("beam_one", MODEL, ("beam_src",), _model(1), "eos_rare", method="beam_search",
            kwargs={"beam_size": 1, "max_len": GREEDY_MAX, "alpha": 0.6}),
    *styled(_module("beam", MODEL, ("beam_src",), _model(1), "eos_rare", method="beam_search",
                    kwargs={"beam_size": 4, "max_len": BEAM_MAX, "alpha": 0.0})),
    *styled(_module("beam_eos", MODEL, ("beam_src",), _model(1), "eos_soon", method="beam_search",
                    kwargs={"beam_size": 4, "max_len": GREEDY_MAX, "alpha": 0.0})),
    _module("beam_lp", MODEL, ("beam_src",), _model(1), "eos_soon", method="beam_search",
            kwargs={"beam_size": 4, "max_len": GREEDY_MAX, "alpha": 1.0}),
    ProbeCall("lp", "length_penalty", ("lp_lengths",), kwargs={"alpha": 0.6}),
    # translation: the trained model on the judge's held-out sentences
    ProbeCall("bleu", "TRANSLATOR", ("bleu_src",), kind="object", method="greedy_decode",
              kwargs={"max_len": DECODE_MAX_LEN}),
    # bonus
    *styled(_module("bert", "BERT", ("lm_ids",), _lm(), "bert")),
    _module("bert_dep", "BERT", ("lm_ids",), _lm(), "bert", perturb=tuple({"args": (f"lm_ids_{j}",)} for j in range(6))),
    ProbeCall("mlm", "masked_lm_loss", ("mlm_logits", "mlm_targets", "mlm_masked")),
    *styled(_module("gpt", "GPT", ("lm_ids",), _lm(), "gpt")),
    _module("gpt_dep", "GPT", ("lm_ids",), _lm(), "gpt", perturb=tuple({"args": (f"lm_ids_{j}",)} for j in range(6))),
    _module("kv", MODEL, ("dec_src",), _model(1), "eos_soon", method="greedy_decode",
            kwargs={"max_len": GREEDY_MAX, "use_cache": True}),
    _module("kv_off", MODEL, ("dec_src",), _model(1), "eos_soon", method="greedy_decode",
            kwargs={"max_len": GREEDY_MAX, "use_cache": False}),
    # the work of decoding MEASURE_LEN tokens (beams never end early with these weights), measured
    _module("m_uncached", MODEL, ("measure_src",), _model(1), "eos_rare", method="greedy_decode",
            kwargs={"max_len": MEASURE_LEN, "use_cache": False}, measure=True),
    _module("m_cached", MODEL, ("measure_src",), _model(1), "eos_rare", method="greedy_decode",
            kwargs={"max_len": MEASURE_LEN, "use_cache": True}, measure=True),
]


# --- the declared style -----------------------------------------------------------------------------

def declared_norm_first(notebook: dict) -> bool:
    """The notebook's `NORM_FIRST = True | False` (its last top-level assignment; False when absent),
    read from the source as submitted, never run. Cells are parsed one by one: a broken cell hides
    nothing else."""
    found = False
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        code, _ = notebook_code({"cells": [cell]})
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "NORM_FIRST" for t in targets) \
                        and isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool):
                    found = node.value.value
    return found


def _style(pre: bool) -> Message:
    return msg("w7t.style.pre" if pre else "w7t.style.post")


def styled_check(post: CheckDef, pre: CheckDef) -> CheckDef:
    """`post` or `pre` (the same check on the call made with norm_first False / True), as the
    notebook's NORM_FIRST declares; a failure says when the other style is what the code computes."""

    def check(ctx: CheckContext) -> Verdict:
        declared = declared_norm_first(ctx.notebook)
        verdict = (pre if declared else post).fn(ctx)
        if verdict.status == "fail" and (post if declared else pre).fn(ctx).status == "pass":
            return Verdict("fail", msg("w7t.style_mismatch", declared=_style(declared), other=_style(not declared),
                                       value=str(not declared)), cell=verdict.cell)
        if verdict.status == "pass":
            return Verdict("pass", msg("w7t.style_ok", detail=verdict.message, style=_style(declared)),
                           fraction=verdict.fraction)
        return verdict

    return CheckDef(check, function=post.function, needs_reference=True, also=post.also)


# --- check factories (parameterised by class, function and call ids: the midterm reuses them) ----

def _what(name: str, function: str) -> Message:
    return msg("compare.what", name=msg(f"name.{name}"), function=function)


def _problem(ctx: CheckContext, call_id: str, function: str) -> Verdict | None:
    outcome = ctx.call(call_id)
    if outcome.status == "state":
        return Verdict("fail", msg("check.module_state", function=function,
                                   problems="; ".join(outcome.problems[:4]) or outcome.message))
    return call_problem(outcome, function, ctx.probe)


def _expected(ctx: CheckContext, call_id: str, index: int = 0) -> torch.Tensor | None:
    if ctx.expected is None or call_id not in ctx.expected or index >= len(ctx.expected[call_id]):
        return None
    return ctx.expected[call_id][index]


def _output(ctx: CheckContext, call_id: str, index: int = 0) -> torch.Tensor | None:
    outputs = ctx.call(call_id).outputs
    return outputs[index] if index < len(outputs) else None


_all = all_of  # the midterm imports it under this name


def exact_module_check(call_ids: tuple[str, ...], class_name: str, outputs: dict[int, str], *,
                       grads: bool = False, maps: dict[int, Message] | None = None,
                       default_tol: Tolerance = FP32) -> CheckDef:
    """Each call's outputs (and with `grads` its gradients) equal the reference's with the same
    weights; outputs listed in `maps` are attention maps, whose failure says which query attends
    where (and shows both patterns)."""
    plain = {c: module_check(c, class_name, outputs, default_tol=default_tol, grads=grads) for c in call_ids}

    def check(ctx: CheckContext) -> Verdict:
        tol = ctx.tolerance or default_tol
        verdict = Verdict("pass")
        for call_id in call_ids:
            problem = _problem(ctx, call_id, class_name)
            if problem:
                return problem
            for index, mask_name in (maps or {}).items():
                expected = _expected(ctx, call_id, index)
                actual = _output(ctx, call_id, index)
                if expected is None or actual is None:
                    continue
                message, figure = map_problem(actual, expected, tol, _what("weights", class_name), mask_name=mask_name)
                if message:
                    return Verdict("fail", message, figure=figure)
            verdict = plain[call_id].fn(ctx)
            if verdict.status != "pass":
                return verdict
        return verdict

    return CheckDef(check, function=class_name, needs_reference=True)


def tokens_problem(actual: torch.Tensor | None, expected: torch.Tensor, what: Message) -> Message | None:
    """None when the token ids are equal, else the first row that differs, both sequences quoted."""
    if actual is None:
        return msg("compare.no_tensor", what=what)
    if actual.is_floating_point() or actual.is_complex() or actual.dtype == torch.bool:
        return msg("w7t.tokens_dtype", what=what, dtype=str(actual.dtype).replace("torch.", ""))
    if actual.ndim != 2 or expected.ndim != 2 or actual.shape[0] != expected.shape[0]:
        return msg("compare.shape", what=what, shape=tuple(actual.shape), expected=tuple(expected.shape))
    width = max(actual.shape[1], expected.shape[1])
    mine = torch.full((actual.shape[0], width), PAD, dtype=torch.long)
    mine[:, :actual.shape[1]] = actual.long()
    wanted = torch.full((expected.shape[0], width), PAD, dtype=torch.long)
    wanted[:, :expected.shape[1]] = expected.long()
    for r in range(wanted.shape[0]):
        if not torch.equal(mine[r], wanted[r]):
            step = int((mine[r] != wanted[r]).nonzero()[0])
            return msg("w7t.tokens_differ", what=what, row=r, step=step, got=_row(actual[r]), wanted=_row(expected[r]))
    if actual.shape != expected.shape:  # the same tokens, more (or fewer) columns of PAD
        return msg("w7t.tokens_length", what=what, shape=tuple(actual.shape), expected=tuple(expected.shape))
    return None


def _row(ids: torch.Tensor) -> str:
    values = [int(v) for v in ids.reshape(-1)[:16]]
    return "[" + ", ".join(map(str, values)) + (", …]" if ids.numel() > 16 else "]")


def decode_check(call_id: str, class_name: str = MODEL, *, method: str = "greedy_decode",
                 scores: bool = False, default_tol: Tolerance = FP32) -> CheckDef:
    """The token ids a decoding method returns (output 0) equal the reference's with the same
    weights; with `scores`, outputs 1 and 2 (scores, log-probabilities) too."""
    function = f"{class_name}.{method}"

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, call_id, function)
        if problem:
            return problem
        expected = _expected(ctx, call_id)
        if expected is None:
            return Verdict("pending", msg("check.pending_no_reference"))
        outcome = ctx.call(call_id)
        if scores and len(outcome.outputs) != 3:
            return Verdict("fail", msg("check.n_outputs", function=function, count=len(outcome.outputs), expected=3))
        message = tokens_problem(_output(ctx, call_id), expected, _what("w7t_tokens", function))
        if message:
            return Verdict("fail", message)
        if scores:
            tol = ctx.tolerance or default_tol
            for index, name in ((1, "w7t_scores"), (2, "w7t_log_probs")):
                actual = _output(ctx, call_id, index)
                message = compare_tensors(actual.reshape(-1) if actual is not None else None,
                                          _expected(ctx, call_id, index), tol, _what(name, function))
                if message:
                    return Verdict("fail", message)
        return Verdict("pass", msg("w7t.decode_ok", function=function, count=int(expected.shape[0]),
                                   length=int(expected.shape[-1])))

    return CheckDef(check, function=class_name, needs_reference=True)


def output_compare(call_id: str, function: str, outputs: dict[int, str], *, default_tol: Tolerance = FP32,
                   broadcast: bool = False) -> CheckDef:
    """Function outputs vs the reference (a mask may come back in any shape that broadcasts)."""

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, call_id, function)
        if problem:
            return problem
        if _expected(ctx, call_id) is None:
            return Verdict("pending", msg("check.pending_no_reference"))
        tol = ctx.tolerance or default_tol
        outcome = ctx.call(call_id)
        for index, name in outputs.items():
            actual = _output(ctx, call_id, index)
            if actual is None and index < len(outcome.types):
                return Verdict("fail", msg("check.not_a_tensor", what=_what(name, function), type=outcome.types[index]))
            expected = _expected(ctx, call_id, index)
            if actual is not None and expected is not None and expected.ndim == 0 and actual.numel() == 1:
                actual = actual.reshape(())
            message = compare_tensors(actual, expected, tol, _what(name, function), broadcast=broadcast)
            if message:
                figure = None
                if expected is not None and expected.dtype == torch.bool and actual is not None \
                        and actual.dtype == torch.bool and actual.ndim >= 2:
                    try:
                        actual = torch.broadcast_to(actual, expected.shape)
                    except RuntimeError:
                        return Verdict("fail", message)
                    message, figure = mask_problem(actual, expected, _what(name, function))
                return Verdict("fail", message, figure=figure)
        return Verdict("pass", msg("check.matches", function=function))

    return CheckDef(check, function=function, needs_reference=True)


def mask_problem(actual: torch.Tensor, expected: torch.Tensor, what: Message) -> tuple[Message, tuple]:
    """A boolean (..., T, S) mask that differs from the expected one, in words (the first query and
    key, whether it lets through what must be hidden or hides what must be allowed), and the
    (student, expected) planes of the sentence where it happens."""
    wrong = (actual != expected).nonzero()
    index = tuple(int(v) for v in wrong[0])
    lead, (query, key) = index[:-2], index[-2:]
    row = lead[0] if lead else 0
    text = "w7t.mask_allows" if bool(actual[index]) else "w7t.mask_blocks"
    message = msg(text, what=what, query=query, key=key, row=row, count=len(wrong), total=expected.numel())
    return message, (_plane(actual[lead]) if lead else _plane(actual), _plane(expected[lead]) if lead else _plane(expected),
                     "attention")


def _plane(t: torch.Tensor):
    """The first 2-D slice of a tensor, as a float numpy array, for the report's picture."""
    return t.detach().reshape(-1, t.shape[-2], t.shape[-1])[0].float().cpu().numpy()


def dependence(base: torch.Tensor, variants: list[torch.Tensor | None], atol: float = DEPENDENCE_ATOL
               ) -> torch.Tensor | None:
    """D (T_out, n) bool: output position i moved when input position j was changed (variant j)."""
    if base is None or any(v is None or v.shape != base.shape for v in variants):
        return None
    columns = []
    for v in variants:
        moved = (v.double() - base.double()).abs()                  # (B, T, ...)
        columns.append(moved.reshape(moved.shape[0], moved.shape[1], -1).amax(dim=(0, 2)) > atol)   # (T,)
    return torch.stack(columns, dim=1)                             # (T, n)


def dependence_check(call_id: str, class_name: str, *, causal: bool, what: str) -> CheckDef:
    """Output position i of the call depends on input position j exactly when j <= i (`causal`) or
    always (bidirectional): each perturbed variant changes input position j of every row. A
    failure names the first wrong (i, j) and shows the student's dependence beside the expected."""

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, call_id, class_name)
        if problem:
            return problem
        outcome = ctx.call(call_id)
        base = _output(ctx, call_id)
        if base is None or not base.is_floating_point() or base.ndim < 2:
            return Verdict("fail", msg("compare.no_tensor", what=_what(what, class_name)))
        variants = [v[0] if v else None for v in outcome.variants]
        found = dependence(base, variants)
        if found is None:
            return Verdict("fail", msg("w7t.dependence_shape", function=class_name, shape=tuple(base.shape)))
        n = found.shape[1]
        expected = torch.ones(found.shape[0], n, dtype=torch.bool)
        if causal:
            expected = torch.ones(found.shape[0], n, dtype=torch.bool).tril()
        figure = (found.float().numpy(), expected.float().numpy())
        leaks = (found & ~expected).nonzero()
        if len(leaks):
            i, j = (int(v) for v in leaks[0])
            return Verdict("fail", msg("w7t.future_leak", function=class_name, i=i, j=j, count=len(leaks)),
                           figure=figure)
        blind = (~found & expected).nonzero()
        if len(blind):
            i, j = (int(v) for v in blind[0])
            return Verdict("fail", msg("w7t.blind" if causal else "w7t.blind_bidirectional", function=class_name,
                                       i=i, j=j, count=len(blind)), figure=figure)
        return Verdict("pass", msg("w7t.causal_ok" if causal else "w7t.bidirectional_ok", function=class_name, n=n))

    return CheckDef(check, function=class_name)


def padding_check(call_id: str, class_name: str, *, source: str, more: str) -> CheckDef:
    """The call's output (B, S, E) at the real (non-PAD) positions of `source` does not change when
    the source gets more PAD columns (the perturbed variant `more`). The picture: the largest
    change at each (sentence, position), beside zeros."""

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, call_id, class_name)
        if problem:
            return problem
        outcome = ctx.call(call_id)
        base = _output(ctx, call_id)
        padded = outcome.variants[0][0] if outcome.variants and outcome.variants[0] else None
        src = ctx.inputs[source]
        wanted = (src.shape[0], src.shape[1])
        if base is None or padded is None or tuple(base.shape[:2]) != wanted \
                or tuple(padded.shape[:2]) != (wanted[0], ctx.inputs[more].shape[1]) or not base.is_floating_point():
            shape = tuple(base.shape) if base is not None else None
            return Verdict("fail", msg("w7t.padding_shape", function=class_name, shape=shape, b=wanted[0], s=wanted[1]))
        change = (padded[:, :wanted[1]].double() - base.double()).abs().reshape(wanted[0], wanted[1], -1).amax(-1)
        real = src != PAD
        change = torch.where(real, change, torch.zeros_like(change))
        if float(change.max()) > LEAK_ATOL:
            b, s = (int(v) for v in (change == change.max()).nonzero()[0])
            return Verdict("fail", msg("w7t.padding_moves", function=class_name, row=b, position=s,
                                       diff=f"{float(change.max()):.3g}", extra=int(ctx.inputs[more].shape[1] - wanted[1]),
                                       length=int(real[b].sum())),
                           figure=(change.float().numpy(), torch.zeros_like(change).float().numpy()))
        return Verdict("pass", msg("w7t.padding_ok", function=class_name, extra=int(ctx.inputs[more].shape[1] - wanted[1])))

    return CheckDef(check, function=class_name)


def cross_padding_check(call_id: str, class_name: str = DEC, *, mask: str = "cross_mask", index: int = 2) -> CheckDef:
    """Cross-attention respects the source padding mask: no weight on a padded source position
    (output `index`, (B, H, T, S)), and memory at padded positions changed (the perturbed variant)
    changes no output."""

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, call_id, class_name)
        if problem:
            return problem
        outcome = ctx.call(call_id)
        keys = ctx.inputs[mask].reshape(ctx.inputs[mask].shape[0], -1)          # (B, S)
        weights = _output(ctx, call_id, index)
        if weights is None or weights.ndim != 4 or weights.shape[0] != keys.shape[0] \
                or weights.shape[-1] != keys.shape[1] or not weights.is_floating_point():
            return Verdict("fail", msg("w7t.cross_weights_missing", function=class_name, index=index,
                                       shape=tuple(weights.shape) if weights is not None else None))
        allowed = keys[:, None, None, :].expand_as(weights)
        kept = torch.where(allowed, weights.double(), torch.zeros_like(weights, dtype=torch.float64))
        expected = kept / kept.sum(-1, keepdim=True).clamp_min(1e-30)
        message, figure = map_problem(weights, expected.to(weights.dtype), FP32,
                                      _what("w7t_cross_weights", class_name), mask_name=msg("w7t.mask.source"))
        if message:
            return Verdict("fail", message, figure=figure)
        base = _output(ctx, call_id)
        moved = outcome.variants[0][0] if outcome.variants and outcome.variants[0] else None
        if base is None or moved is None or moved.shape != base.shape:
            return Verdict("fail", msg("compare.no_tensor", what=_what("output", class_name)))
        diff = float((moved.double() - base.double()).abs().max())
        if diff > LEAK_ATOL:
            return Verdict("fail", msg("w7t.cross_memory_leaks", function=class_name, diff=f"{diff:.3g}"))
        return Verdict("pass", msg("w7t.cross_ok", function=class_name))

    return CheckDef(check, function=class_name)


def beam_greedy_check(beam_call: str, greedy_call: str, class_name: str = MODEL) -> CheckDef:
    """Beam search with one beam returns the greedy translation (the same model, weights, source)."""

    def check(ctx: CheckContext) -> Verdict:
        for call_id, method in ((greedy_call, "greedy_decode"), (beam_call, "beam_search")):
            problem = _problem(ctx, call_id, f"{class_name}.{method}")
            if problem:
                return problem
        greedy, beam = _output(ctx, greedy_call), _output(ctx, beam_call)
        if greedy is None or beam is None or beam.ndim != 2 or greedy.ndim != 2 or beam.shape[0] != 1:
            return Verdict("fail", msg("w7t.beam_one_shape", shape=tuple(beam.shape) if beam is not None else None))
        message = tokens_problem(beam, greedy, _what("w7t_beam_one", f"{class_name}.beam_search"))
        if message:
            return Verdict("fail", msg("w7t.beam_not_greedy", detail=message))
        return Verdict("pass", msg("w7t.beam_one_ok", length=int(greedy.shape[-1])))

    return CheckDef(check, function=class_name)


def eos_problem(tokens: torch.Tensor) -> Message | None:
    """Every hypothesis ends at its first EOS: nothing but PAD after it, no PAD before it."""
    for r, row in enumerate(tokens.tolist()):
        if EOS in row:
            end = row.index(EOS)
            if any(t != PAD for t in row[end + 1:]):
                return msg("w7t.after_eos", row=r, step=end, got=_row(tokens[r]))
            row = row[:end]
        if PAD in row and any(t != PAD for t in row[row.index(PAD):]):
            return msg("w7t.pad_inside", row=r, got=_row(tokens[r]))
    return None


def beam_eos_check(call_id: str, class_name: str = MODEL) -> CheckDef:
    """With weights that make EOS likely: each hypothesis stops at its EOS, and the hypotheses and
    scores equal the reference's."""
    exact = decode_check(call_id, class_name, method="beam_search", scores=True)

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, call_id, f"{class_name}.beam_search")
        if problem:
            return problem
        tokens = _output(ctx, call_id)
        if tokens is not None and tokens.ndim == 2 and not tokens.is_floating_point():
            message = eos_problem(tokens)
            if message:
                return Verdict("fail", message)
        return exact.fn(ctx)

    return CheckDef(check, function=class_name, needs_reference=True)


def length_penalty_check(call_id: str, lp_call: str, class_name: str = MODEL, *, alpha: float = 1.0,
                         lp_alpha: float = 0.6) -> CheckDef:
    """`length_penalty` is GNMT's ((5 + n) / 6) ** alpha, and beam search scores each hypothesis
    log_prob / length_penalty(n) (n = its tokens, EOS included) and returns them sorted best first."""

    def check(ctx: CheckContext) -> Verdict:
        problem = _problem(ctx, lp_call, "length_penalty")
        if problem:
            return problem
        lengths = ctx.inputs[next(c for c in ctx.calls if c.id == lp_call).args[0]]
        formula = ((5.0 + lengths.double()) / 6.0) ** lp_alpha
        actual = _output(ctx, lp_call)
        message = compare_tensors(actual.reshape(-1) if actual is not None else None, formula,
                                  ctx.tolerance or FP32, _what("w7t_penalty", "length_penalty"))
        if message:
            return Verdict("fail", message)
        function = f"{class_name}.beam_search"
        problem = _problem(ctx, call_id, function)
        if problem:
            return problem
        outcome = ctx.call(call_id)
        if len(outcome.outputs) != 3 or any(o is None for o in outcome.outputs):
            return Verdict("fail", msg("check.n_outputs", function=function, count=len(outcome.outputs), expected=3))
        tokens, scores, log_probs = (o for o in outcome.outputs)
        scores, log_probs = scores.reshape(-1).double(), log_probs.reshape(-1).double()
        if tokens.ndim != 2 or len(scores) != tokens.shape[0] or len(log_probs) != tokens.shape[0]:
            return Verdict("fail", msg("w7t.beam_shapes", tokens=tuple(tokens.shape), scores=tuple(scores.shape)))
        if any(float(b) > float(a) + 1e-6 for a, b in zip(scores, scores[1:])):
            return Verdict("fail", msg("w7t.not_sorted", scores=", ".join(f"{float(s):.4g}" for s in scores)))
        n = (tokens != PAD).sum(dim=1).double()
        wanted = log_probs / ((5.0 + n) / 6.0) ** alpha
        bad = ((scores - wanted).abs() > 1e-4 + 1e-4 * wanted.abs()).nonzero()
        if len(bad):
            k = int(bad[0])
            return Verdict("fail", msg("w7t.score_formula", k=k, score=f"{float(scores[k]):.5g}",
                                       log_prob=f"{float(log_probs[k]):.5g}", n=int(n[k]), alpha=f"{alpha:g}",
                                       wanted=f"{float(wanted[k]):.5g}"))
        return Verdict("pass", msg("w7t.lp_ok", count=len(scores), alpha=f"{alpha:g}"))

    return CheckDef(check, function="length_penalty", also=(class_name,))


# --- translation: BLEU of the trained TRANSLATOR, computed by the judge -----------------------------

def judge_bleu(ctx: CheckContext, call_id: str = "bleu", *, model: str = "TRANSLATOR") -> tuple[dict | None, Verdict | None]:
    """({"bleu", "sentences", "example"}, None) from the trained model's translations of the judge's
    held-out sentences, or (None, the verdict saying why they cannot be judged)."""
    outcome = ctx.call(call_id)
    if outcome.status == "missing":
        if any(o.status == "not_implemented" for o in ctx.calls_of(MODEL)):
            # the blank template: the experiments could not build a model to train
            return None, Verdict("fail", msg("w7t.translator_not_implemented", name=model, function=MODEL))
        return None, Verdict("fail", msg("w7t.translator_missing", name=model))
    problem = call_problem(outcome, f"{model}.greedy_decode", ctx.probe)
    if problem:
        return None, problem
    if ctx.data_dir is None or "bleu_index" not in ctx.inputs:
        return None, Verdict("error", msg("w7t.no_data"))
    ids = _output(ctx, call_id)
    index = ctx.inputs["bleu_index"]
    if ids is None or ids.ndim != 2 or ids.shape[0] != len(index) or ids.is_floating_point():
        return None, Verdict("fail", msg("w7t.translations_shape", name=model, n=len(index),
                                         shape=tuple(ids.shape) if ids is not None else None))
    import sacrebleu

    from grader.data import read_parallel

    _, german = vocabularies(str(ctx.data_dir))
    pairs = read_parallel(Path(ctx.data_dir), TEST_SPLIT)
    hypotheses = [detokenize(row, german) for row in ids.tolist()]
    references = [" ".join(tokenize(pairs[int(i)][1])) for i in index]
    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", force=True).score
    return {"bleu": bleu, "sentences": len(hypotheses), "example": (pairs[int(index[0])][0], hypotheses[0])}, None


def bleu_check(call_id: str = "bleu", *, model: str = "TRANSLATOR", thresholds: dict | None = None) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        measured, problem = judge_bleu(ctx, call_id, model=model)
        if problem:
            return problem
        threshold = (thresholds or BLEU_THRESHOLD).get(ctx.profile, BLEU_THRESHOLD["full"])
        figures = dict(bleu=f"{measured['bleu']:.1f}", threshold=f"{threshold:g}", n=measured["sentences"],
                       profile=ctx.profile, source=measured["example"][0][:80], translation=measured["example"][1][:80])
        if measured["bleu"] >= threshold:
            return Verdict("pass", msg("w7t.bleu_ok", **figures))
        return Verdict("fail", msg("w7t.bleu_low", **figures))

    return CheckDef(check, function=model)


# --- KV cache (bonus): the same tokens as without it, for less work ---------------------------------

CACHE_WORK_RATIO = 0.6   # cached decoding must do at most this share of the uncached FLOPs


def kv_cache_check(cached: str, uncached: str, measured_cached: str, measured_uncached: str,
                   class_name: str = MODEL) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        function = f"{class_name}.greedy_decode"
        for call_id in (cached, uncached, measured_cached, measured_uncached):
            problem = _problem(ctx, call_id, function)
            if problem:
                return problem
        message = tokens_problem(_output(ctx, cached), _output(ctx, uncached), _what("w7t_cached_tokens", function))
        if message:
            return Verdict("fail", msg("w7t.cache_differs", detail=message))
        with_cache = (ctx.call(measured_cached).measured or {}).get("flops", 0)
        without = (ctx.call(measured_uncached).measured or {}).get("flops", 0)
        if without <= 0 or with_cache <= 0:
            return Verdict("fail", msg("w7t.cache_unmeasured"))
        ratio = with_cache / without
        figures = dict(cached=f"{with_cache:.3g}", uncached=f"{without:.3g}", ratio=f"{ratio:.2f}",
                       steps=MEASURE_LEN, bound=f"{CACHE_WORK_RATIO:g}")
        if ratio > CACHE_WORK_RATIO:
            return Verdict("fail", msg("w7t.cache_no_saving", **figures))
        return Verdict("pass", msg("w7t.cache_ok", **figures))

    return CheckDef(check, function=class_name)


# --- experiments: the submitted artifacts, checked against what the grader's run wrote -------------

ARTIFACTS = ArtifactSpec(folders=("translation_model", "decoding_strategies"))
METRICS = "translation_model/metrics.csv"
DECODING = "decoding_strategies/decoding.csv"
METRICS_COLUMNS = {"split": str, "bleu": float, "loss": float}
DECODING_COLUMNS = {"strategy": str, "beam_size": int, "alpha": float, "bleu": float, "mean_length": float}


_tables = artifacts.tables  # (submitted rows, the run's rows, a failing verdict or None)


def _close(mine: list[dict], ours: list[dict], keys: tuple[str, ...], column: str, tolerance: float,
           name: str) -> Message | None:
    """The same rows, and `column` within `tolerance` (absolute) of the run's."""
    differs = artifacts.compare_tables(mine, ours, keys, {}, name=name)
    if differs:
        return differs
    run = {tuple(r[k] for k in keys): r for r in ours}
    for row in mine:
        key = tuple(row[k] for k in keys)
        if abs(row[column] - run[key][column]) > tolerance:
            return msg("w7t.table_differs", name=name, row=", ".join(str(v) for v in key), column=column,
                       mine=f"{row[column]:.4g}", ours=f"{run[key][column]:.4g}", tolerance=f"{tolerance:g}")
    return None


def _metrics(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "translation_model", "metrics.csv", METRICS_COLUMNS, METRICS)
    if problem:
        return problem
    splits = {r["split"] for r in mine}
    if not {"val", "test"} <= splits:
        return Verdict("fail", msg("w7t.metrics_splits", splits=", ".join(sorted(splits)) or "-"))
    differs = _close(mine, ours, ("split",), "bleu", BLEU_BETWEEN_RUNS, METRICS)
    if differs:
        return Verdict("fail", differs)
    measured, problem = judge_bleu(ctx)
    if problem:
        return Verdict("fail", msg("w7t.metrics_unmeasured", reason=problem.message))
    claimed = next(r["bleu"] for r in ours if r["split"] == "test")
    if abs(claimed - measured["bleu"]) > BLEU_AGREEMENT:
        return Verdict("fail", msg("w7t.metrics_contradict", claimed=f"{claimed:.2f}", measured=f"{measured['bleu']:.2f}",
                                   n=measured["sentences"]))
    return Verdict("pass", msg("w7t.metrics_ok", bleu=f"{measured['bleu']:.1f}", rows=len(mine)))


def _decoding(ctx: CheckContext) -> Verdict:
    mine, ours, problem = _tables(ctx, "decoding_strategies", "decoding.csv", DECODING_COLUMNS, DECODING)
    if problem:
        return problem
    strategies = {(r["strategy"], r["beam_size"]) for r in mine}
    beams = {r["beam_size"] for r in mine if r["strategy"] == "beam"}
    if ("greedy", 1) not in strategies or len(beams) < 2 or 1 not in beams:
        return Verdict("fail", msg("w7t.decoding_rows", rows="; ".join(f"{s} {b}" for s, b in sorted(strategies)) or "-"))
    differs = _close(mine, ours, ("strategy", "beam_size", "alpha"), "bleu", BLEU_BETWEEN_RUNS, DECODING)
    if differs:
        return Verdict("fail", differs)
    # In the run's own table beam search with one beam is greedy decoding: the same BLEU.
    greedy = next(r for r in ours if r["strategy"] == "greedy")
    one = [r for r in ours if r["strategy"] == "beam" and r["beam_size"] == 1]
    if not one or any(abs(r["bleu"] - greedy["bleu"]) > 1e-6 or abs(r["mean_length"] - greedy["mean_length"]) > 1e-6
                      for r in one):
        return Verdict("fail", msg("w7t.decoding_beam_one", greedy=f"{greedy['bleu']:.2f}",
                                   beam=", ".join(f"{r['bleu']:.2f}" for r in one) or "-"))
    return Verdict("pass", msg("w7t.decoding_ok", rows=len(mine), beams=", ".join(str(b) for b in sorted(beams))))


def _plots(folder: str, what: str) -> CheckDef:
    def check(ctx: CheckContext) -> Verdict:
        ok, message, figure = artifacts.compare_plots(artifacts.copies(ctx, folder), what=msg(f"w7t.what.{what}"))
        return Verdict("pass" if ok else "fail", message, figure=figure)

    return CheckDef(check)


# --- requirements: implemented, not borrowed ---------------------------------------------------------

TRANSFORMER_APIS = FUSED_ATTENTION_APIS + ("torch.nn.modules.transformer", "torch._transformer_encoder_layer_fwd",
                                           "torch.ops.aten._transformer_encoder_layer_fwd")
TRANSFORMER_OPS = FUSED_ATTENTION_OPS + ("aten::_transformer_encoder_layer_fwd*", "torch:_transformer_encoder_layer_fwd")
REQUIREMENTS = [Forbidden("own-implementation", CLASSES, TRANSFORMER_APIS, TRANSFORMER_OPS, "w7t.what.transformer")]


# --- the checks ---------------------------------------------------------------------------------------

SOURCE_MASK = msg("w7t.mask.source")
CAUSAL_MASK = msg("w7t.mask.causal")


def _styled_module(call_id: str, class_name: str, outputs: dict[int, str], **kwargs) -> CheckDef:
    return styled_check(exact_module_check((call_id,), class_name, outputs, **kwargs),
                        exact_module_check((call_id + "_pre",), class_name, outputs, **kwargs))


def _styled(factory, call_id: str, *args, **kwargs) -> CheckDef:
    return styled_check(factory(call_id, *args, **kwargs), factory(call_id + "_pre", *args, **kwargs))


CHECKS: dict[str, CheckDef] = {
    "mha": _all(exact_module_check(("mha_self",), MHA, {0: "output", 1: "weights"}, grads=True, maps={1: CAUSAL_MASK}),
                exact_module_check(("mha_cross",), MHA, {0: "output", 1: "weights"}, grads=True, maps={1: SOURCE_MASK})),
    "encoder-layer": _all(_styled_module("enc_layer", ENC, {0: "output", 1: "weights"}, grads=True),
                          _styled_module("encode", MODEL, {0: "w7t_memory"})),
    "decoder-layer": _styled_module("dec_layer", DEC, {0: "output", 1: "w7t_self_weights", 2: "w7t_cross_weights"},
                                    grads=True),
    "encoder-padding": _all(output_compare("src_mask", "make_src_mask", {0: "mask"}, default_tol=EXACT, broadcast=True),
                            padding_check("enc_padding", MODEL, source="src_padded", more="src_more_padding")),
    "decoder-causal": _all(output_compare("tgt_mask", "make_tgt_mask", {0: "mask"}, default_tol=EXACT, broadcast=True),
                           dependence_check("causal", MODEL, causal=True, what="w7t_logits")),
    "cross-attention-mask": cross_padding_check("cross_padding", DEC),
    "teacher-forcing": _all(output_compare("shift", "shift_targets", {0: "w7t_decoder_input", 1: "w7t_labels"},
                                           default_tol=EXACT),
                            output_compare("loss", "sequence_loss", {0: "w7t_loss"}),
                            output_compare("loss_smoothed", "sequence_loss", {0: "w7t_smoothed_loss"})),
    "greedy": _styled(decode_check, "greedy"),
    "beam-greedy": beam_greedy_check("beam_one", "greedy_one"),
    "beam-search": _styled(decode_check, "beam", method="beam_search", scores=True),
    "beam-eos": _styled(beam_eos_check, "beam_eos"),
    "length-penalty": length_penalty_check("beam_lp", "lp"),
    "translation-bleu": bleu_check(),
    "translation-metrics": CheckDef(_metrics),
    "decoding-table": CheckDef(_decoding),
    "translation-plots": _plots("translation_model", "translation_plots"),
    "decoding-plots": _plots("decoding_strategies", "decoding_plots"),
    "bonus-bert": _all(_styled_module("bert", "BERT", {0: "w7t_logits"}),
                       dependence_check("bert_dep", "BERT", causal=False, what="w7t_logits"),
                       output_compare("mlm", "masked_lm_loss", {0: "w7t_loss"})),
    "bonus-gpt": _all(_styled_module("gpt", "GPT", {0: "w7t_logits"}),
                      dependence_check("gpt_dep", "GPT", causal=True, what="w7t_logits")),
    "bonus-kv-cache": kv_cache_check("kv", "kv_off", "m_cached", "m_uncached"),
    **quality_checks(FUNCTIONS),
}

SPEC = AssignmentSpec(
    id="w7-transformer",
    make_inputs=make_inputs,
    calls=CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.transformer",
    hidden_module="reference.hidden_checks.w7_transformer",
)
