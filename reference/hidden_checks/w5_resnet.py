"""Hidden checks of w5-resnet (staff only).

Students see these checks' names and verdicts, never their inputs, expected values or messages.
Call ids are opaque so that even the probe's plan says little about what is tested.
"""

from __future__ import annotations

import torch

from grader.assignments.w5_resnet import block_parameters
from grader.judge import module_check
from grader.probe import ProbeCall
from grader.rubric.models import Tolerance

ANSWER_KEYS = {
    "bottleneck_params": 69632,    # 1x1 256->64 (16,384) + 3x3 64->64 (36,864) + 1x1 64->256 (16,384)
    "receptive_field": 13,         # 3x3 s1, 3x3 s2, 3x3 s1, 3x3 s1: 1 + 2 + 2 + 4 + 4
    "flops_factor": 1.92,          # alpha * beta^2 * gamma^2 = 1.2 * 1.1^2 * 1.15^2 = 1.9203
    "residual_gradient": "b",      # dL/dx = dL/dy (1 + dF/dx): the identity term carries the gradient
    "bn_inference": "b",           # the running averages collected during training
    "cam_requirement": "a",        # global average pooling followed directly by the linear classifier
}

# (call id, class, init kwargs, input shape, train mode): a bottleneck on an odd spatial size (the
# 3x3 padding and where the stride goes), and a projection block in train mode (batch statistics).
CASES = (
    ("h1", "Bottleneck", {"in_channels": 12, "planes": 4, "stride": 2}, (3, 12, 9, 9), False),
    ("h2", "BasicBlock", {"in_channels": 6, "out_channels": 12, "stride": 2}, (4, 6, 7, 7), True),
)


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    # A different stream from the public inputs: the same seed, offset.
    g = torch.Generator().manual_seed(seed * 7919 + 23)
    inputs: dict[str, torch.Tensor] = {}
    for call_id, cls, init, shape, _ in CASES:
        kind = "basic" if cls == "BasicBlock" else "bottleneck"
        width = init.get("out_channels", init.get("planes"))
        for name, value in block_parameters(g, kind, init["in_channels"], width, init["stride"]).items():
            inputs[f"{call_id}/{name}"] = value
        inputs[f"{call_id}/x"] = torch.randn(*shape, generator=g)
        out_c = width if cls == "BasicBlock" else 4 * width
        side = [(s - 1) // init["stride"] + 1 for s in shape[2:]]
        inputs[f"{call_id}/w"] = torch.randn(shape[0], out_c, *side, generator=g)
    return inputs


def _call(call_id: str, cls: str, init: dict, train: bool) -> ProbeCall:
    kind = "basic" if cls == "BasicBlock" else "bottleneck"
    names = block_parameters(torch.Generator().manual_seed(0), kind, init["in_channels"],
                             init.get("out_channels", init.get("planes")), init["stride"])
    return ProbeCall(call_id, cls, (f"{call_id}/x",), kind="module", init_kwargs=init,
                     state={name: f"{call_id}/{name}" for name in names},
                     backward={"weights": {"0": f"{call_id}/w"}}, train_mode=train)


CALLS = [_call(call_id, cls, init, train) for call_id, cls, init, _, train in CASES]

CHECKS = {
    "hidden-bottleneck": module_check("h1", "Bottleneck", {0: "output"}, default_tol=Tolerance(atol=1e-4, rtol=1e-4),
                                      grads=True),
    "hidden-train-mode": module_check("h2", "BasicBlock", {0: "output"}, default_tol=Tolerance(atol=1e-4, rtol=1e-4),
                                      grads=True),
}
