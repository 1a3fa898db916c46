"""Hidden checks of w7-positional (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested.
"""

from __future__ import annotations

import torch

from grader.assignments.w7_positional import rope_check, sinusoidal_check
from grader.probe import ProbeCall

ANSWER_KEYS = {
    "pe_value": -0.4161468365,    # PE[pos=2, dim=1] for d_model=8: cos(2 * 10000^0) = cos(2)
    "learned_params": 393216.0,   # 512 * 768: one row per position
    "relative_params": 2056.0,    # 8 heads * (2 * 128 + 1) offsets
    "rope_dot": "b",              # <R_m q, R_n k> = <q, R_(n-m) k>: the offset only
    "extrapolation": "b",         # a learned table has no row past max_len: it needs a rule (clamping)
    "sin_linear": "c",            # PE(p + k) is a rotation of each (sin, cos) pair of PE(p): linear in PE(p)
}


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 7919 + 29)
    return {"h_x": torch.randn(1, 1, 33, 10, generator=g), "h_pos": torch.arange(1000, 1033, dtype=torch.int64)}


CALLS = [
    # an odd number of pairs (d_model = 6) and positions past the public call's
    ProbeCall("h1", "sinusoidal_encoding", kwargs={"max_len": 97, "d_model": 6}),
    # another base, far positions, an odd number of pairs
    ProbeCall("h2", "apply_rope", ("h_x",), kwargs={"base": 500.0}, tensor_kwargs={"positions": "h_pos"}),
]

CHECKS = {
    "hidden-sinusoidal": sinusoidal_check("h1", "sinusoidal_encoding", 97, 6),
    "hidden-rope": rope_check((("h2", "h_x", "h_pos"),), "apply_rope", base=500.0),
}
