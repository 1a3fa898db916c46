"""Hidden checks of w8-midterm: multi-head attention on sizes the public calls never use (E=20,
H=5, T != S, a padding mask), exact with the judge's weights; silenced, reported as a status only.
The midterm has no concept questions: its free text (report, talk) is scored by a TA."""

from __future__ import annotations

import torch

from grader.assignments import w7_transformer as w7t
from grader.assignments.w8_midterm import MHA, on_package
from grader.probe import ProbeCall

E, H, B, T, S = 20, 5, 3, 4, 9
ANSWER_KEYS: dict = {}
_STATE = {k: f"hidden_mha:{k}" for k in w7t.mha_weights(torch.Generator().manual_seed(0), "", E)}


def make_inputs(seed: int, data_dir=None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 8)
    weights = w7t.mha_weights(g, "", E)
    keys = torch.arange(S)[None, :] < torch.tensor([S, 6, 2])[:, None]                     # (B, S)
    inputs = {f"hidden_mha:{k}": v for k, v in weights.items()}
    inputs.update({"hidden_q": torch.randn(B, T, E, generator=g), "hidden_kv": torch.randn(B, S, E, generator=g),
                   "hidden_mask": keys[:, None, None, :].clone()})                          # (B, 1, 1, S)
    return inputs


CALLS = [ProbeCall("hidden_mha", MHA, ("hidden_q", "hidden_kv", "hidden_kv"), kind="module",
                   init_kwargs={"d_model": E, "n_heads": H}, state=_STATE, tensor_kwargs={"mask": "hidden_mask"})]
CHECKS = {"hidden-mha-sizes": on_package(w7t.exact_module_check(("hidden_mha",), MHA, {0: "output", 1: "weights"}))}
