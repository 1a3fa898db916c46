"""Hidden checks of w6-self-attention (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested.
"""

from __future__ import annotations

import torch

from grader.judge import output_check
from grader.probe import ProbeCall
from grader.rubric.models import Tolerance

ANSWER_KEYS = {
    "attn_matrix_mib": 768.0,     # 8 * 12 * 2048 * 2048 * 2 bytes / 2**20
    "chunk_scores_mib": 96.0,     # 8 * 12 * 2048 * 256 * 2 bytes / 2**20
    "fp16_max": 65504.0,
    "complexity": "b",            # O(T^2 d)
    "scale_reason": "b",          # keeps the dot products' variance ~1: the softmax does not saturate
    "linear_complexity": "a",     # O(T)
}


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    tq, tk, d, dv = 11, 29, 16, 24
    q = torch.randn(3, 2, tq, d, generator=g)
    k = torch.randn(3, 2, tk, d, generator=g)
    v = torch.randn(3, 2, tk, dv, generator=g)
    additive = torch.rand(1, 1, tq, tk, generator=g) * -3.0
    additive[..., 3:7] = float("-inf")
    t = 45
    q16 = (torch.randn(1, 2, t, d, generator=g) * 4.0).half()
    k16 = (torch.randn(1, 2, t, d, generator=g) * 4.0).half()
    v16 = torch.randn(1, 2, t, d, generator=g).half()
    causal = torch.ones(t, t).tril().bool()
    return {"h_q": q, "h_k": k, "h_v": v, "h_add": additive,
            "h_q16": q16, "h_k16": k16, "h_v16": v16, "h_causal": causal}


CALLS = [
    ProbeCall("h1", "scaled_dot_product_attention", ("h_q", "h_k", "h_v"), tensor_kwargs={"mask": "h_add"}),
    ProbeCall("h2", "chunked_attention", ("h_q16", "h_k16", "h_v16"), kwargs={"chunk_size": 16},
              tensor_kwargs={"mask": "h_causal"}),
]

CHECKS = {
    "hidden-cross": output_check("h1", "scaled_dot_product_attention", {0: "output", 1: "weights"},
                                 default_tol=Tolerance(atol=1e-4, rtol=1e-4), n_outputs=2),
    "hidden-chunked": output_check("h2", "chunked_attention", {0: "output"},
                                   default_tol=Tolerance(atol=3e-2, rtol=3e-2)),
}
