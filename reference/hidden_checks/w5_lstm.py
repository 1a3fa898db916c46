"""Hidden checks of w5-lstm (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested.
"""

from __future__ import annotations

import torch

from grader.judge import module_check
from grader.probe import ProbeCall
from grader.rubric.models import Tolerance

ANSWER_KEYS = {
    "lstm_cell_params": 2560,      # 4 * 20 * (10 + 20) weights + 2 * 4 * 20 biases
    "gru_cell_params": 1920,       # 3 * 20 * (10 + 20) + 2 * 3 * 20
    "bilstm_params": 3328,         # 2 directions * (4 * 16 * (8 + 16) + 2 * 4 * 16)
    "clip_scale": 0.25,            # max_norm / total_norm = 2 / 8
    "cell_gradient": "a",          # dc_t / dc_{t-1} along the cell path is diag(f_t)
    "forget_bias": "b",            # f ~ sigmoid(1) ~ 0.73 at the start: the cell keeps its content, gradients flow
}

N_IN, N_HIDDEN = 3, 6


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 7919 + 29)

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=g) * 2.0 - 1.0) * 0.9

    inputs = {"h_x": torch.randn(1, N_IN, generator=g), "h_xs": torch.randn(2, 5, N_IN, generator=g),
              "h_h0": torch.randn(2, 2, N_HIDDEN, generator=g) * 0.5, "h_c0": torch.randn(2, 2, N_HIDDEN, generator=g)}
    for prefix in ("h_a", "h_f", "h_b"):
        inputs.update({f"{prefix}_wi": uniform(4 * N_HIDDEN, N_IN), f"{prefix}_wh": uniform(4 * N_HIDDEN, N_HIDDEN),
                       f"{prefix}_bi": uniform(4 * N_HIDDEN), f"{prefix}_bh": uniform(4 * N_HIDDEN)})
    return inputs


def _state(prefix: str, module_prefix: str = "") -> dict[str, str]:
    return {f"{module_prefix}weight_ih": f"{prefix}_wi", f"{module_prefix}weight_hh": f"{prefix}_wh",
            f"{module_prefix}bias_ih": f"{prefix}_bi", f"{module_prefix}bias_hh": f"{prefix}_bh"}


CALLS = [
    # one example, no state given: the zero initial state is the cell's default
    ProbeCall("h1", "LSTMCell", ("h_x",), kind="module", init_kwargs={"input_size": N_IN, "hidden_size": N_HIDDEN},
              state=_state("h_a")),
    # both directions from a given initial state (h0[1], c0[1] start the reverse pass)
    ProbeCall("h2", "LSTM", ("h_xs", "h_h0", "h_c0"), kind="module",
              init_kwargs={"input_size": N_IN, "hidden_size": N_HIDDEN, "bidirectional": True},
              state={**_state("h_f", "cell."), **_state("h_b", "cell_reverse.")}),
]

TOL = Tolerance(atol=1e-5, rtol=1e-4)
CHECKS = {
    "hidden-cell": module_check("h1", "LSTMCell", {0: "w5l_hidden_state", 1: "w5l_cell_state"}, default_tol=TOL),
    "hidden-bidirectional": module_check("h2", "LSTM", {0: "w5l_output", 1: "w5l_h_n", 2: "w5l_c_n"},
                                         default_tol=TOL),
}
