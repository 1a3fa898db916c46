"""Hidden checks of w5-attention (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested.
"""

from __future__ import annotations

import torch

from grader.assignments.w5_attention import FP32, all_of, compare_outputs, local_check
from grader.judge import module_check
from grader.probe import ProbeCall

ANSWER_KEYS = {
    "local_scores_per_step": 14,     # positions 0 .. p + D = 13 (p = 3, D = 10): the window is clipped at 0
    "global_cost": "b",              # O(S T d): S scores of d multiply-adds at each of the T steps
    "additive_params": 98560,        # W_q 256*128 + 128 (bias), W_k 512*128, v 128
    "coverage_step_max": 1.0,        # sum_s min(a_s, c_s) <= sum_s a_s = 1
    "location_inputs": "b",          # the decoder state and the previous alignment, not the keys' content
}

H_B, H_S, H_DQ, H_DK, H_DA = 2, 13, 9, 3, 5


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 6007 + 29)
    mask = torch.ones(H_B, H_S, dtype=torch.bool)
    mask[1, 1:] = False   # a source of one token
    return {
        "h_q": torch.randn(H_B, H_DQ, generator=g), "h_keys": torch.randn(H_B, H_S, H_DK, generator=g),
        "h_Wq": torch.randn(H_DA, H_DQ, generator=g) * 0.4, "h_bq": torch.randn(H_DA, generator=g) * 0.3,
        "h_Wk": torch.randn(H_DA, H_DK, generator=g) * 0.6, "h_v": torch.randn(1, H_DA, generator=g),
        "h_g": torch.randn(H_B, H_S, generator=g),
        "h_qk": torch.randn(H_B, H_DK, generator=g), "h_mask": mask,
        # window 0 on an integer centre (one position), a centre before the first position
        "h_centre0": torch.tensor([0.0, 0.0]),
        "h_centre1": torch.tensor([-1.0, 12.5]),
    }


CALLS = [
    ProbeCall("h1", "AdditiveScore", ("h_q", "h_keys"), kind="module",
              init_kwargs={"query_dim": H_DQ, "key_dim": H_DK, "attn_dim": H_DA},
              state={"W_q.weight": "h_Wq", "W_q.bias": "h_bq", "W_k.weight": "h_Wk", "v.weight": "h_v"},
              backward={"weights": {"0": "h_g"}}),
    ProbeCall("h2", "local_attention", ("h_qk", "h_keys", "h_mask", "h_centre0"), kwargs={"window": 0}),
    ProbeCall("h3", "local_attention", ("h_qk", "h_keys", "h_mask", "h_centre1"),
              kwargs={"window": 3, "gaussian": True}),
]

CHECKS = {
    "hidden-additive": all_of(compare_outputs("h1", "AdditiveScore", {0: "scores"}),
                              module_check("h1", "AdditiveScore", {}, default_tol=FP32, grads=True)),
    "hidden-local": local_check("h2", "h3"),
}
