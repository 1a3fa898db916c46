"""w5-resnet: the public probe calls and checks.

Where the template fixes a parameter layout (the basic and bottleneck blocks: `conv1`, `bn1`, ...,
`shortcut.0`, `shortcut.1`), the judge's own parameters and BN running statistics are loaded into
the student's block and the reference, both in eval mode, and outputs and gradients are compared.
Where implementations may legitimately differ, properties are checked instead, computed here
(so they hold without the staff's reference too): the CIFAR ResNet's output and feature shapes,
gradients reaching the input and every parameter, the parameter count against the formula, a
block whose residual branch is zeroed returning the activated shortcut, augmentation outputs
that are padded crops or mirrored padded crops of their own inputs, the learning-rate trace
against the schedule the template declares, and the CAM recomputed from the student's model's
last feature maps and classifier weights. Accuracy is computed here from the trained model's
logits on held-out test images the judge draws from DATA_DIR's test split.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from grader.assignments import AssignmentSpec
from grader.i18n import msg
from grader.judge import (CheckContext, all_of, CheckDef, Verdict, artifacts, call_problem, compare_tensors, module_check,
                          output_check)
from grader.judge.quality import quality_checks
from grader.judge.requirements import Forbidden
from grader.probe import ArtifactSpec, CallOutcome, ProbeCall
from grader.rubric.models import Tolerance

FP32 = Tolerance(atol=1e-4, rtol=1e-4)
EXACT = Tolerance(atol=0.0, rtol=0.0)
N_CLASSES = 10
CHANCE = 1.0 / N_CLASSES
# Accuracy the trained model must reach on the judge's held-out test images, per profile: the
# smoke profile trains a tiny ResNet for seconds on scikit-learn's digits ("clearly better than
# chance"); the full profile trains on CIFAR-10 on a GPU runner (He et al. 2016: ResNet-20, 91.3%).
ACCURACY_THRESHOLD = {"smoke": 0.5, "full": 0.9}
FULL_TEST_IMAGES = 2000      # held-out images drawn from the 10,000 of CIFAR-10's test split
CAM_IMAGES = 16


# --- inputs --------------------------------------------------------------------------------------

def _conv(g: torch.Generator, out_c: int, in_c: int, k: int) -> torch.Tensor:
    return torch.randn(out_c, in_c, k, k, generator=g) * math.sqrt(2.0 / (in_c * k * k))


def _bn(g: torch.Generator, c: int) -> dict[str, torch.Tensor]:
    # Away from the identity on purpose: a block that skips or misplaces a BN cannot match.
    return {"weight": 0.5 + torch.rand(c, generator=g), "bias": 0.2 * torch.randn(c, generator=g),
            "running_mean": 0.2 * torch.randn(c, generator=g), "running_var": 0.5 + torch.rand(c, generator=g)}


BN = ("weight", "bias", "running_mean", "running_var")


def block_parameters(g: torch.Generator, kind: str, in_c: int, width: int, stride: int) -> dict[str, torch.Tensor]:
    """Parameters and BN statistics of a block, by the names the template fixes. `width` is
    out_channels of a BasicBlock, planes of a Bottleneck (whose output is 4 * planes)."""
    params: dict[str, torch.Tensor] = {}
    if kind == "basic":
        out_c = width
        convs = (("conv1", "bn1", out_c, in_c, 3), ("conv2", "bn2", out_c, out_c, 3))
    else:
        out_c = 4 * width
        convs = (("conv1", "bn1", width, in_c, 1), ("conv2", "bn2", width, width, 3), ("conv3", "bn3", out_c, width, 1))
    for conv, bn, o, i, k in convs:
        params[f"{conv}.weight"] = _conv(g, o, i, k)
        params.update({f"{bn}.{name}": value for name, value in _bn(g, o).items()})
    if stride != 1 or in_c != out_c:
        params["shortcut.0.weight"] = _conv(g, out_c, in_c, 1)
        params.update({f"shortcut.1.{name}": value for name, value in _bn(g, out_c).items()})
    return params


# (call id, class, init kwargs, input shape): identity and projection, basic and bottleneck
BLOCKS = (
    ("basic_id", "BasicBlock", {"in_channels": 8, "out_channels": 8, "stride": 1}, (2, 8, 8, 8)),
    ("basic_proj", "BasicBlock", {"in_channels": 8, "out_channels": 16, "stride": 2}, (2, 8, 8, 8)),
    ("bottle_id", "Bottleneck", {"in_channels": 32, "planes": 8, "stride": 1}, (2, 32, 6, 6)),
    ("bottle_proj", "Bottleneck", {"in_channels": 16, "planes": 8, "stride": 2}, (2, 16, 8, 8)),
)
ZEROED = {"basic_id": "bn2", "basic_proj": "bn2", "bottle_proj": "bn3"}   # the last BN of the residual branch


def _block_parameters(g: torch.Generator, cls: str, init: dict) -> dict[str, torch.Tensor]:
    kind = "basic" if cls == "BasicBlock" else "bottleneck"
    return block_parameters(g, kind, init["in_channels"], init.get("out_channels", init.get("planes")), init["stride"])


def _test_split(data_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    from grader.data import CIFAR_FOLDER, make_cifar_smoke, read_cifar_bin

    if data_dir is None:  # `grade expected`: the smoke data, made here (the object calls store nothing)
        with tempfile.TemporaryDirectory() as tmp:
            make_cifar_smoke(Path(tmp))
            images, labels = read_cifar_bin(Path(tmp) / CIFAR_FOLDER / "test_batch.bin")
    else:
        images, labels = read_cifar_bin(Path(data_dir) / CIFAR_FOLDER / "test_batch.bin")
    return torch.from_numpy(images), torch.from_numpy(labels)


def make_inputs(seed: int, data_dir: Path | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs: dict[str, torch.Tensor] = {}
    for call_id, cls, init, shape in BLOCKS:
        inputs.update({f"{call_id}/{name}": value for name, value in _block_parameters(g, cls, init).items()})
        inputs[f"{call_id}/x"] = torch.randn(*shape, generator=g)
        inputs[f"{call_id}/out_weights"] = torch.randn(*_block_output_shape(cls, init, shape), generator=g)
        if call_id in ZEROED:
            inputs[f"{call_id}/zero"] = torch.zeros_like(inputs[f"{call_id}/{ZEROED[call_id]}.weight"])
    inputs["net/x"] = torch.randn(2, 3, 32, 32, generator=g)
    inputs["net/x1"] = torch.randn(1, 3, 32, 32, generator=g)
    inputs["net/out_weights"] = torch.randn(2, N_CLASSES, generator=g)
    # augmentation: noise images, so that every crop offset and a mirror image are told apart
    inputs["aug/images"] = torch.randn(400, 3, 12, 12, generator=g)
    inputs["aug/labels"] = torch.randint(0, N_CLASSES, (400,), generator=g)
    inputs["aug2/images"] = torch.randn(200, 3, 12, 12, generator=g)
    inputs["aug2/labels"] = torch.randint(0, N_CLASSES, (200,), generator=g)
    # label smoothing, distillation, pruning, compound scaling
    inputs["loss/logits"] = torch.randn(12, N_CLASSES, generator=g) * 3.0
    inputs["loss/targets"] = torch.randint(0, N_CLASSES, (12,), generator=g)
    inputs["kd/teacher"] = torch.randn(12, N_CLASSES, generator=g) * 4.0
    inputs["prune/conv"] = torch.randn(16, 8, 3, 3, generator=g)      # 1152 weights: 75% is 864
    inputs["prune/fc"] = torch.randn(10, 64, generator=g)             # 640 weights: 50% is 320
    inputs["eff/depths"] = torch.tensor([1, 2, 2, 3, 3, 4, 1])         # EfficientNet-B0's repeats
    inputs["eff/widths"] = torch.tensor([32, 16, 24, 40, 80, 112, 192, 320])
    # held-out test images (uint8, as in the CIFAR-10 files) for the trained model and its CAMs
    images, labels = _test_split(data_dir)
    if len(labels) > FULL_TEST_IMAGES:
        chosen = torch.randperm(len(labels), generator=g)[:FULL_TEST_IMAGES]
        images, labels = images[chosen], labels[chosen]
    inputs["test/images"] = images.contiguous()
    inputs["test/labels"] = labels.contiguous()
    inputs["cam/images"] = images[:CAM_IMAGES].clone()
    return inputs


def _block_output_shape(cls: str, init: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    n, _, h, w = shape
    stride = init["stride"]
    out_c = init["out_channels"] if cls == "BasicBlock" else 4 * init["planes"]
    return (n, out_c, (h - 1) // stride + 1, (w - 1) // stride + 1)


def _state(call_id: str, cls: str, init: dict, zero: str | None = None) -> dict[str, str]:
    """Parameter name -> input key, for loading the judge's parameters into the student's block."""
    names = _block_parameters(torch.Generator().manual_seed(0), cls, init)  # only the names are used
    state = {name: f"{call_id}/{name}" for name in names}
    if zero:
        state[f"{zero}.weight"] = state[f"{zero}.bias"] = f"{call_id}/zero"
    return state


# --- probe calls ---------------------------------------------------------------------------------

def _block_calls() -> list[ProbeCall]:
    calls = []
    for call_id, cls, init, _ in BLOCKS:
        calls.append(ProbeCall(call_id, cls, (f"{call_id}/x",), kind="module", init_kwargs=init,
                               state=_state(call_id, cls, init),
                               backward={"weights": {"0": f"{call_id}/out_weights"}}))
        if call_id in ZEROED:
            calls.append(ProbeCall(f"{call_id}_zero", cls, (f"{call_id}/x",), kind="module", init_kwargs=init,
                                   state=_state(call_id, cls, init, zero=ZEROED[call_id])))
    return calls


NETS = {  # call id -> resnet_cifar keyword arguments
    "net_grad": {"depth": 8, "base_width": 4},
    "net_features": {"depth": 8, "base_width": 4},
    "net20": {"depth": 20},
    "net29_bottleneck": {"depth": 29, "bottleneck": True},
    "net14_w8_c7": {"depth": 14, "num_classes": 7, "base_width": 8},
}

CALLS = _block_calls() + [
    ProbeCall("net_grad", "resnet_cifar", ("net/x",), kind="module", init_kwargs=NETS["net_grad"],
              backward={"weights": {"0": "net/out_weights"}}),
    ProbeCall("net_features", "resnet_cifar", ("net/x",), kind="module", init_kwargs=NETS["net_features"],
              method="features"),
    ProbeCall("net20", "resnet_cifar", ("net/x1",), kind="module", init_kwargs=NETS["net20"]),
    ProbeCall("net29_bottleneck", "resnet_cifar", ("net/x1",), kind="module", init_kwargs=NETS["net29_bottleneck"]),
    ProbeCall("net14_w8_c7", "resnet_cifar", ("net/x",), kind="module", init_kwargs=NETS["net14_w8_c7"]),
    # random functions and the trained model: judged from properties, no expected outputs
    ProbeCall("augment", "augment_batch", ("aug/images", "aug/labels"), kind="object",
              kwargs={"padding": 4, "flip_prob": 0.5}),
    ProbeCall("augment_noflip", "augment_batch", ("aug2/images", "aug2/labels"), kind="object",
              kwargs={"padding": 2, "flip_prob": 0.0}),
    ProbeCall("lr_warmup", "lr_trace", (), kind="object",
              kwargs={"total_steps": 60, "warmup_steps": 9, "base_lr": 0.2}),
    ProbeCall("lr_no_warmup", "lr_trace", (), kind="object",
              kwargs={"total_steps": 25, "warmup_steps": 0, "base_lr": 0.05}),
    ProbeCall("cam", "cam_of_model", ("cam/images",), kind="object"),
    ProbeCall("predict", "predict", ("test/images",), kind="object"),
    ProbeCall("ls_01", "smoothed_cross_entropy", ("loss/logits", "loss/targets"), kwargs={"smoothing": 0.1}),
    ProbeCall("ls_03", "smoothed_cross_entropy", ("loss/logits", "loss/targets"), kwargs={"smoothing": 0.3}),
    ProbeCall("ls_00", "smoothed_cross_entropy", ("loss/logits", "loss/targets"), kwargs={"smoothing": 0.0}),
    ProbeCall("eff_2", "compound_scaling", ("eff/depths", "eff/widths"), kwargs={"phi": 2}),
    ProbeCall("eff_3", "compound_scaling", ("eff/depths", "eff/widths"), kwargs={"phi": 3, "resolution": 32}),
    ProbeCall("kd_4", "distillation_loss", ("loss/logits", "kd/teacher", "loss/targets"),
              kwargs={"temperature": 4.0, "alpha": 0.9}),
    ProbeCall("kd_2", "distillation_loss", ("loss/logits", "kd/teacher", "loss/targets"),
              kwargs={"temperature": 2.0, "alpha": 0.5}),
    ProbeCall("prune_conv", "magnitude_prune", ("prune/conv",), kwargs={"sparsity": 0.75}),
    ProbeCall("prune_fc", "magnitude_prune", ("prune/fc",), kwargs={"sparsity": 0.5}),
]


# --- checks: small helpers -----------------------------------------------------------------------

def _problem(outcome: CallOutcome, function: str, ctx: CheckContext) -> Verdict | None:
    """call_problem, except that a NotImplementedError raised by another function of the template
    (a hook calling resnet_cifar, say) is named by its own message."""
    if outcome.status == "not_implemented" and outcome.message and function not in outcome.message:
        return Verdict("fail", msg("w5r.not_implemented_in", function=function, detail=outcome.message))
    return call_problem(outcome, function, ctx.probe)


def _tensor(outcome: CallOutcome, index: int) -> torch.Tensor | None:
    return outcome.outputs[index] if index < len(outcome.outputs) else None


def _shape(t: torch.Tensor | tuple) -> str:
    dims = t.shape if isinstance(t, torch.Tensor) else t
    return "(" + ", ".join(str(int(s)) for s in dims) + ")"


# --- the skip connection: residual branch zeroed -> relu(shortcut(x)) ------------------------------

def activated_shortcut(inputs: dict, call_id: str, stride: int) -> torch.Tensor:
    """relu(shortcut(x)) from the judge's own copy of the parameters: the identity, or the 1x1
    projection with the stride followed by BN in eval mode."""
    x = inputs[f"{call_id}/x"].double()
    if f"{call_id}/shortcut.0.weight" not in inputs:
        return torch.relu(x)
    projected = F.conv2d(x, inputs[f"{call_id}/shortcut.0.weight"].double(), stride=stride)
    bn = {name: inputs[f"{call_id}/shortcut.1.{name}"].double() for name in BN}
    normalised = F.batch_norm(projected, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"],
                              training=False, eps=1e-5)
    return torch.relu(normalised)


def _skip_connection(ctx: CheckContext) -> Verdict:
    for call_id, cls, init, _ in BLOCKS:
        if call_id not in ZEROED:
            continue
        outcome = ctx.call(f"{call_id}_zero")
        if outcome.status == "state":
            return Verdict("fail", msg("check.module_state", function=cls, problems="; ".join(outcome.problems[:4])))
        problem = _problem(outcome, cls, ctx)
        if problem:
            return problem
        expected = activated_shortcut(ctx.inputs, call_id, init["stride"]).float()
        what = msg("w5r.zeroed_what", function=cls, bn=ZEROED[call_id])
        differs = compare_tensors(_tensor(outcome, 0), expected, ctx.tolerance or FP32, what)
        if differs:
            kind = "w5r.skip_projection" if f"{call_id}/shortcut.0.weight" in ctx.inputs else "w5r.skip_identity"
            return Verdict("fail", msg("w5r.skip_fail", function=cls, bn=ZEROED[call_id], shortcut=msg(kind),
                                       detail=differs))
    return Verdict("pass", msg("w5r.skip_ok"))


# --- the CIFAR ResNet: properties ------------------------------------------------------------------

def resnet_parameter_count(depth: int = 20, num_classes: int = N_CLASSES, bottleneck: bool = False,
                           base_width: int = 16) -> dict[str, int]:
    """Parameters of a CIFAR ResNet by top-level module (conv1, bn1, layer1..3, fc): 3x3 stem + BN,
    three stages of n blocks at widths w, 2w, 4w (stride 1, 2, 2; n = (depth - 2) / 6 basic, / 9
    bottleneck), a 1x1 projection + BN where a block changes the shape, and the classifier."""
    per_block = 9 if bottleneck else 6
    n = (depth - 2) // per_block
    expansion = 4 if bottleneck else 1

    def conv_bn(i: int, o: int, k: int) -> int:
        weight, gamma_beta = (o, i, k, k), 2 * o   # a bias-free convolution, then BN's affine pair
        return math.prod(weight) + gamma_beta

    counts = {"conv1": 3 * base_width * 9, "bn1": 2 * base_width}
    channels = base_width
    for stage in range(3):
        planes = base_width * 2 ** stage
        total = 0
        for b in range(n):
            out = planes * expansion
            if bottleneck:
                total += conv_bn(channels, planes, 1) + conv_bn(planes, planes, 3) + conv_bn(planes, out, 1)
            else:
                total += conv_bn(channels, out, 3) + conv_bn(out, out, 3)
            if (stage > 0 and b == 0) or channels != out:
                total += conv_bn(channels, out, 1)
            channels = out
        counts[f"layer{stage + 1}"] = total
    counts["fc"] = channels * num_classes + num_classes
    return counts


def _kwargs_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


def _resnet_forward(ctx: CheckContext) -> Verdict:
    outcome = ctx.call("net_grad")
    problem = _problem(outcome, "resnet_cifar", ctx)
    if problem:
        return problem
    logits = _tensor(outcome, 0)
    n = ctx.inputs["net/x"].shape[0]
    if logits is None or tuple(logits.shape) != (n, N_CLASSES):
        return Verdict("fail", msg("w5r.net_shape", call=_kwargs_text(NETS["net_grad"]),
                                   shape=_shape(logits) if logits is not None else "-",
                                   expected=_shape((n, N_CLASSES))))
    grad = outcome.grads.get("arg0")
    if grad is None or not torch.isfinite(grad).all() or float(grad.abs().sum()) == 0.0:
        return Verdict("fail", msg("w5r.no_input_grad", call=_kwargs_text(NETS["net_grad"])))
    dead = [name for name, _ in outcome.params if f"param/{name}" not in outcome.grads]
    if dead:
        return Verdict("fail", msg("w5r.dead_params", count=len(dead), names=", ".join(dead[:5])))
    other = ctx.call("net14_w8_c7")
    problem = _problem(other, "resnet_cifar", ctx)
    if problem:
        return problem
    logits = _tensor(other, 0)
    if logits is None or tuple(logits.shape) != (n, 7):
        return Verdict("fail", msg("w5r.net_shape", call=_kwargs_text(NETS["net14_w8_c7"]),
                                   shape=_shape(logits) if logits is not None else "-", expected=_shape((n, 7))))
    features = ctx.call("net_features")
    problem = _problem(features, "resnet_cifar", ctx)
    if problem:
        return problem
    maps = _tensor(features, 0)
    expected = (n, 4 * NETS["net_features"]["base_width"], 8, 8)
    if maps is None or tuple(maps.shape) != expected:
        return Verdict("fail", msg("w5r.features_shape", shape=_shape(maps) if maps is not None else "-",
                                   expected=_shape(expected)))
    return Verdict("pass", msg("w5r.net_ok", params=len(outcome.params)))


def _resnet_parameters(ctx: CheckContext) -> Verdict:
    for call_id in ("net20", "net29_bottleneck", "net14_w8_c7", "net_grad"):
        outcome = ctx.call(call_id)
        problem = _problem(outcome, "resnet_cifar", ctx)
        if problem:
            return problem
        formula = resnet_parameter_count(**NETS[call_id])
        expected = sum(formula.values())
        if outcome.n_params != expected:
            yours: dict[str, int] = {}
            for name, shape in outcome.params:
                yours[name.split(".", 1)[0]] = yours.get(name.split(".", 1)[0], 0) + math.prod(shape)
            return Verdict("fail", msg("w5r.params_wrong", call=_kwargs_text(NETS[call_id]),
                                       count=f"{outcome.n_params:,}" if outcome.n_params is not None else "?",
                                       expected=f"{expected:,}",
                                       yours=", ".join(f"{k} {v:,}" for k, v in list(yours.items())[:8]),
                                       formula=", ".join(f"{k} {v:,}" for k, v in formula.items())))
    return Verdict("pass", msg("w5r.params_ok", resnet20=f"{sum(resnet_parameter_count(20).values()):,}",
                               resnet29=f"{sum(resnet_parameter_count(29, bottleneck=True).values()):,}"))


# --- augmentation: padded crops and mirror images of their own inputs -----------------------------

def crop_offsets(source: torch.Tensor, result: torch.Tensor, padding: int, atol: float = 1e-6
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each image: (matched, flipped, offsets (dy, dx)): whether result[i] equals a crop of the
    zero-padded source[i], or the mirror image of one, and at which offset."""
    n, _, h, w = source.shape
    # crops are copies: float32 compares them exactly, at half the cost of float64
    padded = F.pad(source.float(), (padding,) * 4)  # (N, C, H + 2p, W + 2p)
    out = result.float()
    matched = torch.zeros(n, dtype=torch.bool)
    flipped = torch.zeros(n, dtype=torch.bool)
    offsets = torch.full((n, 2), -1, dtype=torch.int64)
    mirror = out.flip(-1)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, :, dy:dy + h, dx:dx + w]
            plain = (crop - out).abs().amax(dim=(1, 2, 3)) <= atol
            mirrored = (crop - mirror).abs().amax(dim=(1, 2, 3)) <= atol
            new = (plain | mirrored) & ~matched
            offsets[new] = torch.tensor([dy, dx])
            flipped |= new & mirrored & ~plain
            matched |= new
    return matched, flipped, offsets


def _augmentation_call(ctx: CheckContext, call_id: str, prefix: str, padding: int, flip_prob: float) -> Verdict | None:
    outcome = ctx.call(call_id)
    problem = _problem(outcome, "augment_batch", ctx)
    if problem:
        return problem
    images, labels = ctx.inputs[f"{prefix}/images"], ctx.inputs[f"{prefix}/labels"]
    if len(outcome.outputs) != 2 or outcome.outputs[0] is None or outcome.outputs[1] is None:
        return Verdict("fail", msg("w5r.aug_pair", types=", ".join(outcome.types) or "-"))
    result, returned = outcome.outputs
    if tuple(result.shape) != tuple(images.shape) or result.dtype != images.dtype:
        return Verdict("fail", msg("w5r.aug_shape", shape=_shape(result), dtype=str(result.dtype).replace("torch.", ""),
                                   expected=_shape(images)))
    if tuple(returned.shape) != tuple(labels.shape) or not torch.equal(returned.long(), labels):
        return Verdict("fail", msg("w5r.aug_labels"))
    matched, flipped, offsets = crop_offsets(images, result, padding)
    if not matched.all():
        first = int((~matched).nonzero()[0])
        return Verdict("fail", msg("w5r.aug_not_crop", index=first, count=int((~matched).sum()), total=len(matched),
                                   padding=padding))
    rate = float(flipped.float().mean())
    if flip_prob == 0.0 and rate > 0:
        return Verdict("fail", msg("w5r.aug_flipped_anyway", count=int(flipped.sum()), total=len(flipped)))
    if flip_prob > 0 and abs(rate - flip_prob) > 0.1:
        return Verdict("fail", msg("w5r.aug_flip_rate", rate=f"{rate:.2f}", expected=f"{flip_prob:g}",
                                   total=len(flipped)))
    span = 2 * padding
    for axis, name in ((0, "dy"), (1, "dx")):
        values = offsets[:, axis].double()
        low, high, mean = int(values.min()), int(values.max()), float(values.mean())
        # uniform on 0..2p: draws this many cover both ends, and the mean is p within ~7 standard errors
        if low > 1 or high < span - 1 or abs(mean - padding) > max(1.0, padding / 4):
            return Verdict("fail", msg("w5r.aug_offsets", axis=name, low=low, high=high, mean=f"{mean:.2f}",
                                       padding=padding, span=span))
    return None


def _pair(actual: torch.Tensor, expected: torch.Tensor) -> tuple | None:
    from grader.report.figures import slice_2d

    return slice_2d(actual[None].float()), slice_2d(expected[None].float())


def _augmentation(ctx: CheckContext) -> Verdict:
    for call_id, prefix, padding, flip_prob in (("augment", "aug", 4, 0.5), ("augment_noflip", "aug2", 2, 0.0)):
        verdict = _augmentation_call(ctx, call_id, prefix, padding, flip_prob)
        if verdict is not None:
            return verdict
    outcome = ctx.call("augment")
    _, flipped, _ = crop_offsets(ctx.inputs["aug/images"], outcome.outputs[0], 4)
    return Verdict("pass", msg("w5r.aug_ok", rate=f"{float(flipped.float().mean()):.2f}", total=len(flipped)))


# --- the learning-rate schedule: the trace against the schedule the template declares ---------------

def declared_trace(total_steps: int, base_lr: float, warmup_steps: int) -> torch.Tensor:
    """The schedule the template declares, for every step at once (float64): linear warm-up to
    base_lr over warmup_steps steps, then cosine decay towards 0 at total_steps."""
    steps = torch.arange(total_steps, dtype=torch.float64)
    warm = base_lr * (steps + 1) / max(warmup_steps, 1)
    progress = (steps - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = base_lr * 0.5 * (1.0 + torch.cos(math.pi * progress))
    return torch.where(steps < warmup_steps, warm, cosine)


def _schedule(ctx: CheckContext) -> Verdict:
    for call in (c for c in CALLS if c.function == "lr_trace"):
        outcome = ctx.call(call.id)
        problem = _problem(outcome, "make_scheduler", ctx)
        if problem:
            return problem
        trace = _tensor(outcome, 0)
        total, warmup, base = call.kwargs["total_steps"], call.kwargs["warmup_steps"], call.kwargs["base_lr"]
        declared = declared_trace(total, base, warmup)
        if trace is None or trace.shape != declared.shape:
            return Verdict("fail", msg("w5r.lr_length", shape=_shape(trace) if trace is not None else "-", steps=total))
        wrong = ((trace.double() - declared).abs() > 1e-6 * base).nonzero()
        if len(wrong):
            step = int(wrong[0])
            return Verdict("fail", msg("w5r.lr_differs", step=step, got=f"{float(trace[step]):.6g}",
                                       expected=f"{float(declared[step]):.6g}", count=len(wrong), total=total,
                                       setting=_kwargs_text(call.kwargs)))
    return Verdict("pass", msg("w5r.lr_ok"))


# --- class activation maps, recomputed from the student's model ------------------------------------

def cam_from_features(features: torch.Tensor, fc_weight: torch.Tensor, class_idx: torch.Tensor,
                      size: tuple[int, int]) -> torch.Tensor:
    """CAM_k = sum_c w_kc F_c (Zhou et al. 2016), bilinear to `size`, min-max normalised per map."""
    cams = torch.einsum("nc,nchw->nhw", fc_weight.double()[class_idx], features.double())  # (N, h, w)
    cams = F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]  # (N, H, W)
    low, high = cams.amin(dim=(1, 2), keepdim=True), cams.amax(dim=(1, 2), keepdim=True)
    return (cams - low) / (high - low).clamp_min(1e-12)


def _pooled_correlation(mine: torch.Tensor, ours: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-map Pearson correlation at the feature maps' resolution: how the maps were upsampled
    (bilinear, bicubic, nearest) changes little there; what they show changes a lot."""
    a = F.adaptive_avg_pool2d(mine.double()[:, None], size)[:, 0].flatten(1)
    b = F.adaptive_avg_pool2d(ours.double()[:, None], size)[:, 0].flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


CAM_MIN_CORRELATION = 0.9    # every map; upsampling variants measured at >= 0.96, a wrong layer at <= 0.8
CAM_MEAN_CORRELATION = 0.95


def _cam(ctx: CheckContext) -> Verdict:
    outcome = ctx.call("cam")
    problem = _problem(outcome, "class_activation_map", ctx)
    if problem:
        return problem
    if len(outcome.outputs) < 5 or any(t is None for t in outcome.outputs[:5]):
        return Verdict("fail", msg("w5r.cam_hook", types=", ".join(outcome.types) or "-"))
    cams, features, weight, bias, logits = outcome.outputs[:5]
    images = ctx.inputs["cam/images"]
    n, size = images.shape[0], tuple(images.shape[-2:])
    if features.ndim != 4 or features.shape[0] != n or weight.ndim != 2 or weight.shape[1] != features.shape[1] \
            or tuple(logits.shape) != (n, weight.shape[0]):
        return Verdict("fail", msg("w5r.cam_parts", features=_shape(features), weight=_shape(weight),
                                   logits=_shape(logits)))
    pooled = features.double().mean(dim=(2, 3)) @ weight.double().T + bias.double()  # (N, K)
    if not torch.allclose(pooled, logits.double(), atol=1e-3, rtol=1e-3):
        return Verdict("fail", msg("w5r.cam_not_last", diff=f"{float((pooled - logits.double()).abs().max()):.3g}"))
    ours = cam_from_features(features, weight, logits.argmax(dim=1), size)
    if tuple(cams.shape) != (n, *size):
        return Verdict("fail", msg("w5r.cam_shape", shape=_shape(cams), expected=_shape((n, *size))))
    mine = cams.double()
    if not torch.isfinite(mine).all() or float(mine.min()) < -1e-4 or float(mine.max()) > 1 + 1e-4:
        return Verdict("fail", msg("w5r.cam_range", low=f"{float(mine.min()):.3g}", high=f"{float(mine.max()):.3g}"))
    difference = (mine - ours).abs().amax(dim=(1, 2))
    if float(difference.max()) <= 1e-3:
        return Verdict("pass", msg("w5r.cam_exact", count=n))
    correlation = _pooled_correlation(mine, ours, tuple(features.shape[-2:]))
    worst = int(correlation.argmin())
    if float(correlation.min()) < CAM_MIN_CORRELATION or float(correlation.mean()) < CAM_MEAN_CORRELATION:
        return Verdict("fail", msg("w5r.cam_differs", index=worst, corr=f"{float(correlation[worst]):.2f}",
                                   mean=f"{float(correlation.mean()):.2f}", diff=f"{float(difference[worst]):.2f}"),
                       figure=_pair(mine[worst], ours[worst]))
    return Verdict("pass", msg("w5r.cam_close", count=n, corr=f"{float(correlation.min()):.2f}"))


# --- experiments: accuracy measured by the judge, artifacts checked against the grader's run -------

def measured_accuracy(ctx: CheckContext) -> tuple[float | None, Verdict | None]:
    outcome = ctx.call("predict")
    problem = _problem(outcome, "predict", ctx)
    if problem:
        return None, problem
    logits, labels = _tensor(outcome, 0), ctx.inputs["test/labels"]
    if logits is None or tuple(logits.shape) != (len(labels), N_CLASSES) or not torch.isfinite(logits.double()).all():
        return None, Verdict("fail", msg("w5r.predict_shape", shape=_shape(logits) if logits is not None else "-",
                                         expected=_shape((len(labels), N_CLASSES))))
    return float((logits.argmax(dim=1) == labels).double().mean()), None


def _accuracy(ctx: CheckContext) -> Verdict:
    accuracy, problem = measured_accuracy(ctx)
    if problem:
        return problem
    threshold = ACCURACY_THRESHOLD.get(ctx.profile, ACCURACY_THRESHOLD["smoke"])
    halfway = (threshold + CHANCE) / 2
    shown = {"accuracy": f"{100 * accuracy:.1f}", "threshold": f"{100 * threshold:.0f}", "profile": ctx.profile,
             "count": len(ctx.inputs["test/labels"]), "chance": f"{100 * CHANCE:.0f}"}
    if accuracy >= threshold:
        return Verdict("pass", msg("w5r.acc_ok", **shown))
    if accuracy >= halfway:
        return Verdict("pass", msg("w5r.acc_partial", halfway=f"{100 * halfway:.0f}", **shown), fraction=0.5)
    return Verdict("fail", msg("w5r.acc_low", **shown))


ARTIFACTS = ArtifactSpec(folders=("feature_visualization", "performance_analysis"))
LOG = "performance_analysis/training_log.csv"
LOG_COLUMNS = {"epoch": int, "lr": float, "train_loss": float, "train_acc": float, "test_acc": float}
CLAIM_SLACK = 0.05       # the run's logged final test accuracy vs the judge's measurement of the same model
SUBMITTED_SLACK = 0.10   # the submitted log's final test accuracy vs the grader's run of the same notebook


def _training_log(ctx: CheckContext) -> Verdict:
    folder = artifacts.copies(ctx, "performance_analysis")
    if folder.submitted is None:
        return Verdict("fail", msg("art.folder_missing", folder="performance_analysis"))
    mine, problem = artifacts.read_table(folder.submitted.get("training_log.csv"), LOG_COLUMNS, name=LOG)
    if problem:
        return Verdict("fail", problem)
    ours, problem = artifacts.read_table(folder.produced.get("training_log.csv"), LOG_COLUMNS, name=LOG)
    if problem:
        return Verdict("fail", msg("art.run_did_not_write", name=LOG, detail=problem))
    if len(mine) < 2:
        return Verdict("fail", msg("w5r.log_short", rows=len(mine)))
    if any(r[c] > 1.0 for r in mine + ours for c in ("train_acc", "test_acc")):
        return Verdict("fail", msg("w5r.log_fraction"))
    differs = artifacts.compare_tables(mine, ours, ("epoch",), {"lr": 1.001}, name=LOG)
    if differs:
        return Verdict("fail", differs)
    accuracy, problem = measured_accuracy(ctx)
    if problem:
        return problem
    last_mine, last_ours = max(mine, key=lambda r: r["epoch"]), max(ours, key=lambda r: r["epoch"])
    if abs(last_ours["test_acc"] - accuracy) > CLAIM_SLACK:
        return Verdict("fail", msg("w5r.log_claim", logged=f"{100 * last_ours['test_acc']:.1f}",
                                   measured=f"{100 * accuracy:.1f}"))
    if abs(last_mine["test_acc"] - last_ours["test_acc"]) > SUBMITTED_SLACK:
        return Verdict("fail", msg("w5r.log_submitted", mine=f"{100 * last_mine['test_acc']:.1f}",
                                   ours=f"{100 * last_ours['test_acc']:.1f}"))
    return Verdict("pass", msg("w5r.log_ok", epochs=len(mine), logged=f"{100 * last_ours['test_acc']:.1f}",
                               measured=f"{100 * accuracy:.1f}"))


def _plots(folder: str, what: str, prefix: str = "", at_least: int = 1) -> CheckDef:
    """PNG files of `folder` whose names start with `prefix`: at least `at_least` of them, each a
    real plot that the grader's run of the notebook drew again."""

    def check(ctx: CheckContext) -> Verdict:
        copies = artifacts.copies(ctx, folder)
        if copies.submitted is None:
            return Verdict("fail", msg("art.folder_missing", folder=folder))
        chosen = {k: v for k, v in copies.submitted.items()
                  if k.lower().endswith(".png") and Path(k).name.lower().startswith(prefix)}
        if len(chosen) < at_least:
            return Verdict("fail", msg("w5r.too_few_plots", folder=folder, prefix=prefix, count=len(chosen),
                                       at_least=at_least, what=msg(f"w5r.what.{what}")))
        ok, message, figure = artifacts.compare_plots(artifacts.Copies(folder, chosen, copies.produced),
                                                      what=msg(f"w5r.what.{what}"))
        return Verdict("pass" if ok else "fail", message, figure=figure)

    return CheckDef(check)


# --- requirements ----------------------------------------------------------------------------------

NETWORK = ("BasicBlock", "Bottleneck", "ResNet", "resnet_cifar")
MODEL_ZOO_APIS = ("torchvision.models", "torchvision.ops", "timm", "torch.hub", "huggingface_hub", "transformers")
LIBRARY_LOSS_APIS = ("torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss")
LIBRARY_LOSS_OPS = ("torch:cross_entropy", "aten::cross_entropy_loss")
REQUIREMENTS = [
    # A model zoo's blocks run the same convolutions as one's own: only the static layer can tell.
    Forbidden("own-network", NETWORK, MODEL_ZOO_APIS, (), "w5r.what.model_zoo"),
    Forbidden("own-loss", ("smoothed_cross_entropy",), LIBRARY_LOSS_APIS, LIBRARY_LOSS_OPS, "w5r.what.library_loss"),
    Forbidden("own-pruning", ("magnitude_prune",), ("torch.nn.utils.prune",), (), "w5r.what.library_prune"),
]

FUNCTIONS = ("BasicBlock", "Bottleneck", "ResNet", "resnet_cifar", "augment_batch", "make_scheduler",
             "smoothed_cross_entropy", "class_activation_map", "compound_scaling", "distillation_loss",
             "magnitude_prune")


def _block(call_id: str, cls: str) -> CheckDef:
    return module_check(call_id, cls, {0: "output"}, default_tol=FP32, grads=True)


CHECKS: dict[str, CheckDef] = {
    "basic-identity": _block("basic_id", "BasicBlock"),
    "basic-projection": _block("basic_proj", "BasicBlock"),
    "skip-connection": CheckDef(_skip_connection, function="BasicBlock", also=("Bottleneck",)),
    "bottleneck": _block("bottle_id", "Bottleneck"),
    "bottleneck-projection": _block("bottle_proj", "Bottleneck"),
    "resnet-forward": CheckDef(_resnet_forward, function="resnet_cifar"),
    "resnet-parameters": CheckDef(_resnet_parameters, function="resnet_cifar"),
    "augmentation": CheckDef(_augmentation, function="augment_batch"),
    "lr-schedule": CheckDef(_schedule, function="make_scheduler"),
    "label-smoothing": all_of(*(output_check(c, "smoothed_cross_entropy", {0: "output"}, default_tol=FP32)
                                for c in ("ls_01", "ls_03", "ls_00"))),
    "cam": CheckDef(_cam, function="class_activation_map"),
    "accuracy": CheckDef(_accuracy),
    "training-log": CheckDef(_training_log),
    "performance-plots": _plots("performance_analysis", "performance"),
    "feature-maps": _plots("feature_visualization", "feature_maps", prefix="feature_maps", at_least=3),
    "filters": _plots("feature_visualization", "filters", prefix="filters"),
    "cam-figure": _plots("feature_visualization", "cam", prefix="cam"),
    "bonus-compound-scaling": all_of(*(output_check(c, "compound_scaling", {0: "output", 1: "output", 2: "output"},
                                                    default_tol=EXACT, n_outputs=3) for c in ("eff_2", "eff_3"))),
    "bonus-distillation": all_of(*(output_check(c, "distillation_loss", {0: "output"}, default_tol=FP32)
                                   for c in ("kd_4", "kd_2"))),
    "bonus-pruning": all_of(*(output_check(c, "magnitude_prune", {0: "output", 1: "mask"}, default_tol=FP32,
                                           n_outputs=2) for c in ("prune_conv", "prune_fc"))),
    **quality_checks(FUNCTIONS),
}

SPEC = AssignmentSpec(
    id="w5-resnet",
    make_inputs=make_inputs,
    calls=CALLS,
    checks=CHECKS,
    requirements=REQUIREMENTS,
    artifacts=ARTIFACTS,
    reference_module="reference.resnet",
    hidden_module="reference.hidden_checks.w5_resnet",
)
