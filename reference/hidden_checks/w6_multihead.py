"""Hidden checks of w6-multihead (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested: other sizes
(E=20, H=5, so dh=4), cross-attention with an additive float mask, and head importance at head
weights that are not all ones (Michel et al.'s score is taken at the current gates).
"""

from __future__ import annotations

import torch

from grader.assignments.w6_multihead import compare_output_check
from grader.probe import ProbeCall
from grader.rubric.models import Tolerance

ANSWER_KEYS = {
    "mha_params": 1050624.0,      # 4 * 512 * 512 weights + 4 * 512 biases
    "params_vs_heads": "c",       # unchanged: H only splits E into H slices of E / H
    "attn_maps_mib": 384.0,       # 8 * 12 * 1024 * 1024 * 4 bytes / 2**20
    "head_rank": 32.0,            # rank(Q_h K_h^T) <= dh = 512 / 16
    "importance_formula": "b",    # E_x |dL(x)/dxi_h| at xi = 1
    "why_heads": "b",             # one softmax per head: several positions attended at once
}

E, H = 20, 5
INIT = {"embed_dim": E, "num_heads": H}


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 7919 + 29)
    t, s = 6, 13
    additive = torch.rand(3, 1, t, s, generator=g) * -3.0
    additive[..., 4:7] = float("-inf")
    gates = torch.rand(H, generator=g) * 1.5 + 0.25
    gates[2] = -gates[2]
    return {
        "hm_w_in": torch.randn(3 * E, E, generator=g) * 0.35, "hm_b_in": torch.randn(3 * E, generator=g) * 0.1,
        "hm_w_out": torch.randn(E, E, generator=g) * 0.25, "hm_b_out": torch.randn(E, generator=g) * 0.1,
        "hm_gates_ones": torch.ones(H), "hm_gates": gates,
        "hm_q": torch.randn(3, t, E, generator=g), "hm_k": torch.randn(3, s, E, generator=g),
        "hm_v": torch.randn(3, s, E, generator=g), "hm_mask": additive,
        "hm_x": torch.randn(5, 7, E, generator=g), "hm_target": torch.randn(5, 7, E, generator=g),
    }


def _state(gates: str) -> dict[str, str]:
    return {"in_proj_weight": "hm_w_in", "in_proj_bias": "hm_b_in", "out_proj.weight": "hm_w_out",
            "out_proj.bias": "hm_b_out", "head_weights": gates}


CALLS = [
    ProbeCall("h1", "MultiHeadAttention", ("hm_q", "hm_k", "hm_v"), kind="module", init_kwargs=dict(INIT),
              state=_state("hm_gates_ones"), tensor_kwargs={"mask": "hm_mask"}),
    ProbeCall("h2", "MultiHeadAttention", ("hm_x", "hm_target"), kind="module", init_kwargs=dict(INIT),
              state=_state("hm_gates"), method="head_importance"),
]

FP32 = Tolerance(atol=1e-4, rtol=1e-4)
CHECKS = {
    "hidden-mha": compare_output_check(("h1",), "MultiHeadAttention", default_tol=FP32),
    "hidden-importance": compare_output_check(("h2",), "MultiHeadAttention", name="w6m_importance",
                                              default_tol=FP32),
}
