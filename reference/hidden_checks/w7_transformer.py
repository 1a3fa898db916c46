"""Hidden checks of w7-transformer (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested.
"""

from __future__ import annotations

import torch

from grader.assignments.w7_transformer import (DEC, MHA, _prefixed, exact_module_check, layer_weights, mha_weights,
                                               styled, styled_check)
from grader.probe import ProbeCall

ANSWER_KEYS = {
    "mha_params": 1050624,          # 4 projections of 512 x 512 weights + 512 biases: 4 * (512 * 512 + 512)
    "encoder_layer_params": 3152384,  # MHA 1,050,624 + FFN (512*2048 + 2048 + 2048*512 + 512) 2,099,712 + 2 LN 2,048
    "teacher_forcing": "b",         # the decoder reads the reference target shifted right (BOS first)
    "beam_calls": "c",              # k decoder runs per step (one per live hypothesis), k * L in all
    "cache_cost": "a",              # with a cache each step projects one new token: O(L) projections, O(L^2) scores
}

# Other sizes than the public calls: E=20, H=5 (dh=4), T=3 queries, S=9 keys, F=36.
E, H, F = 20, 5, 36


def _state(prefix: str, weights: dict) -> tuple[dict, dict]:
    return _prefixed(prefix, weights)


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 7919 + 41)
    inputs = {}
    inputs.update(_state("h_a", mha_weights(g, "", E))[0])
    inputs.update(_state("h_d", layer_weights(g, "", E, F, cross=True))[0])
    keys = torch.rand(3, 1, 1, 9, generator=g) > 0.3
    keys[..., 0] = True
    inputs.update({"h_q": torch.randn(3, 3, E, generator=g), "h_kv": torch.randn(3, 9, E, generator=g),
                   "h_mask": keys, "h_y": torch.randn(2, 4, E, generator=g),
                   "h_memory": torch.randn(2, 9, E, generator=g),
                   "h_all": torch.ones(2, 1, 1, 9, dtype=torch.bool),
                   "h_causal": torch.ones(4, 4).tril().bool()[None, None]})
    return inputs


_MHA_STATE = _state("h_a", mha_weights(torch.Generator().manual_seed(0), "", E))[1]
_DEC_STATE = _state("h_d", layer_weights(torch.Generator().manual_seed(0), "", E, F, cross=True))[1]

CALLS = [
    ProbeCall("h1", MHA, ("h_q", "h_kv", "h_kv"), kind="module", init_kwargs={"d_model": E, "n_heads": H},
              state=_MHA_STATE, tensor_kwargs={"mask": "h_mask"}),
    *styled(ProbeCall("h2", DEC, ("h_y", "h_memory"), kind="module",
                      init_kwargs={"d_model": E, "n_heads": H, "d_ff": F, "dropout": 0.0}, state=_DEC_STATE,
                      tensor_kwargs={"src_mask": "h_all", "tgt_mask": "h_causal"})),
]

CHECKS = {
    "hidden-mha": exact_module_check(("h1",), MHA, {0: "output", 1: "weights"}),
    "hidden-decoder": styled_check(exact_module_check(("h2",), DEC, {0: "output"}),
                                   exact_module_check(("h2_pre",), DEC, {0: "output"})),
}
