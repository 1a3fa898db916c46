"""w5-resnet: the reference gets every automatic point; seeded bugs lose exactly the points of the
checks aimed at them; correct work in other styles keeps every point; shortcuts through a model
zoo or torch's loss lose the points of the requirement they dodge; the CAM is recomputed from the
student's model, the accuracy measured by the judge itself; made-up artifacts are caught; the
stored expected outputs are the reference's.

Variants are judged in-process (tests/probe_harness.py: the real probe, requirements and judge,
no sandbox), without the experiment cells unless the experiments are what is tested; three whole
sandboxed runs are marked `notebook`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader.assignments import get_spec, load_staff, prepare_probe
from grader.assignments.w5_resnet import (_pooled_correlation, cam_from_features, crop_offsets, declared_trace,
                                          resnet_parameter_count)
from grader.data import CIFAR_FOLDER, make_cifar_smoke, read_cifar_bin, write_cifar_bin
from grader.i18n import catalog
from grader.rubric import load_rubric
from tests.probe_harness import edit_cells, judge_in_process

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "reference" / "solutions" / "w5-resnet"
TEMPLATE = REPO / "student_template" / "w5-resnet"
NOTEBOOK = "resnet_implementation.ipynb"
RUBRIC = load_rubric(REPO / "rubrics" / "w5-resnet.yaml")
AUTO_POINTS = sum(i.points for i in RUBRIC.items if i.kind != "manual" and not i.bonus)
POINTS = {i.id: i.points for i in RUBRIC.items}
MANUAL = {i.id for i in RUBRIC.items if i.kind == "manual"}
IMPLEMENTATION = {i.id for i in RUBRIC.items if i.criterion == "implementation" and i.kind == "check" and not i.bonus}
BONUS = {i.id for i in RUBRIC.items if i.bonus}
EXPERIMENTS = {i.id for i in RUBRIC.items if i.criterion == "experiments" and i.kind == "check"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions: on a loaded 2-core machine torch's intra-op threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    """The smoke profile's DATA_DIR (digits in CIFAR-10's binary layout), made once for every run here."""
    folder = tmp_path_factory.mktemp("w5-resnet-data")
    make_cifar_smoke(folder)
    return folder


def _variant(tmp_path: Path, *, replace: tuple[tuple[str, str], ...] = (), append: str | None = None) -> Path:
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    edit_cells(submission / NOTEBOOK, list(replace), append=[append] if append else [])
    return submission / NOTEBOOK


def _judge(tmp_path: Path, notebook: Path, data_dir: Path, **kwargs) -> dict:
    kwargs.setdefault("skip_tags", ("experiment",))
    return judge_in_process(notebook, "w5-resnet", tmp_path / "work", data_dir=data_dir, **kwargs)


def _not_passed(result: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in result["checks"]
            if c["id"] in IMPLEMENTATION | BONUS and c["status"] != "pass"}


@pytest.fixture(scope="module")
def reference_result(tmp_path_factory, smoke_data):
    path = tmp_path_factory.mktemp("reference")
    shutil.copytree(SOLUTION, path / "submission")
    return _judge(path, path / "submission" / NOTEBOOK, smoke_data)


# --- the reference and the judge's own formulas ------------------------------------------------------

@pytest.mark.parametrize("config", [dict(depth=20), dict(depth=29, bottleneck=True), dict(depth=8, base_width=4),
                                    dict(depth=14, num_classes=7, base_width=8), dict(depth=56),
                                    dict(depth=11, bottleneck=True)])
def test_the_judges_parameter_formula_counts_the_references_modules(config):
    from reference.resnet import ResNetConfig, resnet_cifar, resnet_parameter_count as reference_count

    net = resnet_cifar(**config)
    counted: dict[str, int] = {}
    for name, p in net.named_parameters():
        counted[name.split(".")[0]] = counted.get(name.split(".")[0], 0) + p.numel()
    assert resnet_parameter_count(**config) == counted
    assert sum(counted.values()) == reference_count(ResNetConfig(**config))


def test_the_reference_is_wired_as_the_template_says_and_its_loss_is_torchs():
    """BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), stride 2 with padding 1 on an
    odd size; the smoothed loss equals torch's label_smoothing; the judge's schedule is the reference's."""
    from reference.resnet import BasicBlock, smoothed_cross_entropy, warmup_cosine_lr as reference_lr

    block = BasicBlock(4, 8, stride=2).eval()
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        manual = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))) + block.shortcut(x))
        torch.testing.assert_close(block(x), manual)
        assert block(x).shape == (2, 8, 5, 5)
    logits, targets = torch.randn(7, 10), torch.randint(0, 10, (7,))
    torch.testing.assert_close(smoothed_cross_entropy(logits, targets, 0.2),
                               F.cross_entropy(logits, targets, label_smoothing=0.2))
    trace = declared_trace(30, 0.1, 4)
    for step in range(30):
        assert float(trace[step]) == pytest.approx(reference_lr(step, 30, 0.1, 4), abs=1e-12)


def test_crop_offsets_finds_each_crop_and_mirror():
    g = torch.Generator().manual_seed(3)
    source = torch.randn(6, 2, 5, 5, generator=g)
    padded = F.pad(source, (2, 2, 2, 2))
    offsets = [(0, 0), (4, 4), (1, 3), (2, 2), (3, 0), (0, 4)]
    result = torch.stack([padded[i, :, dy:dy + 5, dx:dx + 5] for i, (dy, dx) in enumerate(offsets)])
    result[1] = result[1].flip(-1)
    result[4] = result[4].flip(-1)
    matched, flipped, found = crop_offsets(source, result, 2)
    assert matched.all() and flipped.tolist() == [False, True, False, False, True, False]
    assert [tuple(o) for o in found.tolist()] == offsets
    result[5] = result[5].flip(-2)   # upside down: no crop of the padded image
    assert crop_offsets(source, result, 2)[0].tolist() == [True] * 5 + [False]


def test_the_cam_comparison_allows_other_upsampling_but_not_another_class_or_layer():
    """Measured on a random ResNet-8: nearest / bicubic upsampling stays above the thresholds; the
    maps of another class, or of the last block's residual branch, fall far below."""
    from reference.resnet import resnet_cifar

    torch.manual_seed(0)
    net = resnet_cifar(8, base_width=8).eval()
    images = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        features = net.features(images)
        classes = net(images).argmax(dim=1)
        ours = cam_from_features(features, net.fc.weight, classes, (32, 32))
        raw = torch.einsum("nc,nchw->nhw", net.fc.weight[classes], features)
        block = net.layer3[-1]
        block_input = net.layer2(net.layer1(F.relu(net.bn1(net.conv1(images)))))
        inner = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(block_input)))))  # the residual branch

    def normalised(maps):
        low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
        return (maps - low) / (high - low)

    for mode in ("nearest", "bicubic"):
        other = normalised(F.interpolate(raw[:, None], size=(32, 32), mode=mode)[:, 0])
        correlation = _pooled_correlation(other, ours, (8, 8))
        assert correlation.min() >= 0.9 and correlation.mean() >= 0.95, (mode, correlation)
    wrong_class = cam_from_features(features, net.fc.weight, (classes + 1) % 10, (32, 32))
    wrong_layer = cam_from_features(inner, net.fc.weight, classes, (32, 32))
    for wrong in (wrong_class, wrong_layer):
        assert _pooled_correlation(wrong, ours, (8, 8)).mean() < 0.8


def test_the_stored_expected_outputs_are_the_references_at_the_checks_tolerances():
    """Every call whose module gets the judge's parameters, or a plain function: deterministic. (The
    ResNet calls build randomly initialised networks: only their shapes, gradients and parameter
    counts are judged, never stored values.)"""
    from safetensors.torch import load_file

    spec = get_spec("w5-resnet")
    stored = load_file(str(spec.expected_path))
    live = prepare_probe(spec, load_staff(spec), spec.public_seed).expected
    exact = {c.id for c in spec.calls if (c.kind == "module" and c.state) or c.kind == "function"}
    compared = 0
    for key, values in live.items():
        if key.split("/")[0] not in exact:
            continue
        for i, value in enumerate(values):
            if value is None:
                continue
            torch.testing.assert_close(stored[f"{key}/{i}"], value, atol=1e-5, rtol=1e-4)
            compared += 1
    assert compared >= 60


# --- in-process: the reference, seeded bugs, other styles, shortcuts --------------------------------------

def test_the_reference_passes_every_implementation_check_and_requirement(reference_result):
    assert _not_passed(reference_result) == {}
    by_id = reference_result["by_id"]
    assert "equal those the grader computes" in by_id["impl-cam"]["message"]
    assert "272,474" in by_id["impl-resnet-parameters"]["message"]
    zoo = by_id["impl-basic-identity"]["measured"]["own-network"]
    assert zoo["status"] == "pass" and zoo["static"] == [] and zoo["dynamic"] == []
    assert reference_result["criteria"]["implementation"]["score"] == pytest.approx(10)
    assert reference_result["bonus"] == pytest.approx(5)


IDENTITY_WITHOUT_SKIP = '''
class BasicBlock(BasicBlock):
    """Adds the shortcut only when it is a projection: identity blocks lose their skip connection."""

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if len(self.shortcut) > 0:
            out = out + self.shortcut(x)
        return F.relu(out)
'''

RELU_BEFORE_SUM = '''
class BasicBlock(BasicBlock):
    """ReLU on the residual branch before the sum, as well as after it."""

    def forward(self, x):
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.relu(out + self.shortcut(x))
'''

STRIDE_ON_THE_1X1 = '''
class Bottleneck(Bottleneck):
    """The stride on the first 1x1 convolution (ResNet v1's placement) instead of the 3x3."""

    def __init__(self, in_channels, planes, stride=1):
        super().__init__(in_channels, planes, stride)
        self.conv1.stride = (stride, stride)
        self.conv2.stride = (1, 1)
'''

CAM_WRONG_LAYER = '''
def class_activation_map(model, images, class_idx=None):
    """CAM from a hook on the last BN of the last block (its residual branch), not the block's output."""
    found = {}
    handle = model.layer3[-1].bn2.register_forward_hook(lambda module, inputs, output: found.setdefault("maps", output))
    logits = model(images)
    handle.remove()
    if class_idx is None:
        class_idx = logits.argmax(dim=1)
    cams = torch.einsum("nc,nchw->nhw", model.fc.weight[class_idx], found["maps"])
    cams = F.interpolate(cams.unsqueeze(1), size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low, high = cams.amin(dim=(1, 2), keepdim=True), cams.amax(dim=(1, 2), keepdim=True)
    return (cams - low) / (high - low).clamp_min(1e-12)
'''

FEATURES_OF_LAYER2 = (
    ("        return self.layer3(self.layer2(self.layer1(out)))",
     "        return self.layer2(self.layer1(out))"),
    ("        return self.fc(self.features(x).mean(dim=(2, 3)))",
     "        return self.fc(self.layer3(self.features(x)).mean(dim=(2, 3)))"),
)

BUGS = {
    "identity blocks without the skip connection": (dict(append=IDENTITY_WITHOUT_SKIP),
                                                    {"impl-basic-identity", "impl-skip-connection"}),
    "ReLU before the sum": (dict(append=RELU_BEFORE_SUM),
                            {"impl-basic-identity", "impl-basic-projection", "impl-hidden-train-mode"}),
    "bottleneck stride on the 1x1": (dict(append=STRIDE_ON_THE_1X1),
                                     {"impl-bottleneck-projection", "impl-hidden-bottleneck"}),
    "CAM from the wrong layer": (dict(append=CAM_WRONG_LAYER), {"impl-cam"}),
    "features() returns layer2's maps": (dict(replace=FEATURES_OF_LAYER2), {"impl-resnet-forward", "impl-cam"}),
    "stem convolution with a bias": (
        dict(replace=(("nn.Conv2d(3, base_width, kernel_size=3, padding=1, bias=False)",
                       "nn.Conv2d(3, base_width, kernel_size=3, padding=1, bias=True)"),)),
        {"impl-resnet-parameters"}),
    "flip upside down": (dict(replace=(("crops.flip(-1), crops", "crops.flip(-2), crops"),)), {"impl-augmentation"}),
    "warm-up starts at 0": (dict(replace=(("return (step + 1) / warmup_steps", "return step / warmup_steps"),)),
                            {"impl-lr-schedule"}),
    "smoothing over the K - 1 wrong classes": (
        dict(replace=(("uniform = -log_probs.mean(dim=-1)",
                       "uniform = (-log_probs.sum(dim=-1) - nll) / (log_probs.shape[-1] - 1)"),)),
        {"impl-label-smoothing"}),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_each_seeded_bug_loses_exactly_the_points_of_its_checks(tmp_path, smoke_data, bug):
    edits, failing = BUGS[bug]
    result = _judge(tmp_path, _variant(tmp_path, **edits), smoke_data)
    assert _not_passed(result) == {c: "fail" for c in failing}
    lost = sum(POINTS[c] for c in failing)
    assert result["criteria"]["implementation"]["score"] == pytest.approx(10 - lost)
    assert result["bonus"] == pytest.approx(5)


def test_failures_say_what_is_wrong_and_the_cam_is_pictured_beside_the_graders(tmp_path, smoke_data):
    from grader.assignments.w5_resnet import CHECKS
    from grader.judge import CheckContext

    notebook = _variant(tmp_path, append=CAM_WRONG_LAYER + IDENTITY_WITHOUT_SKIP)
    result = _judge(tmp_path, notebook, smoke_data)
    by_id = result["by_id"]
    cam = by_id["impl-cam"]["message"]
    assert "does not match the one the grader computes from your model's last feature maps" in cam, cam
    skip = by_id["impl-skip-connection"]["message"]
    assert "relu(x) (the identity shortcut)" in skip and "Is the shortcut added before the final ReLU?" in skip, skip
    # the verdict carries the student's map and the grader's (the report draws them side by side)
    spec = get_spec("w5-resnet")
    material = prepare_probe(spec, load_staff(spec), 1234, data_dir=smoke_data)
    context = CheckContext(notebook={}, submission_root=notebook.parent, deliverables=[], execution=None,
                           probe=result["probe"], inputs=material.inputs, expected=material.expected)
    verdict = CHECKS["cam"].fn(context)
    assert verdict.status == "fail" and verdict.figure is not None
    mine, ours = verdict.figure
    assert mine.shape == ours.shape == (32, 32) and abs(mine - ours).max() > 0.2


BLOCKS_ANOTHER_WAY = '''
class BasicBlock(nn.Module):
    """Residual basic block, written with torch.relu and nn.Identity for the identity shortcut."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        projection = stride != 1 or in_channels != out_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                       nn.BatchNorm2d(out_channels)) if projection else nn.Identity())

    def forward(self, x):
        """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""
        residual = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(residual + self.shortcut(x))


class Bottleneck(nn.Module):
    """Bottleneck block, the branch as one loop over (conv, bn) pairs."""

    expansion = 4

    def __init__(self, in_channels, planes, stride=1):
        super().__init__()
        out_channels = 4 * planes
        self.conv1, self.bn1 = nn.Conv2d(in_channels, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride > 1 or in_channels != out_channels:
            self.shortcut.append(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False))
            self.shortcut.append(nn.BatchNorm2d(out_channels))

    def forward(self, x):
        """(N, C_in, H, W) -> (N, 4 * planes, H / stride, W / stride)."""
        out = x
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            out = bn(conv(out)) if conv is self.conv3 else F.relu(bn(conv(out)))
        return F.relu(out + self.shortcut(x))


def class_activation_map(model, images, class_idx=None):
    """CAM from a forward hook on layer3, bicubic upsampling."""
    kept = []
    handle = model.layer3.register_forward_hook(lambda module, inputs, output: kept.append(output))
    scores = model(images)
    handle.remove()
    chosen = scores.argmax(1) if class_idx is None else class_idx
    maps = (model.fc.weight[chosen][:, :, None, None] * kept[0]).sum(dim=1, keepdim=True)
    maps = F.interpolate(maps, size=tuple(images.shape[-2:]), mode="bicubic", align_corners=False).squeeze(1)
    flat = maps.flatten(1)
    flat = (flat - flat.min(dim=1, keepdim=True).values) / (flat.max(dim=1, keepdim=True).values
                                                             - flat.min(dim=1, keepdim=True).values)
    return flat.view_as(maps)
'''

TRAINING_TOOLS_ANOTHER_WAY = '''
def augment_batch(images, labels, padding=4, flip_prob=0.5):
    """One image at a time: a zero canvas, the image pasted in its middle, a random window cut out."""
    n, c, h, w = images.shape
    out = []
    for image in images:
        canvas = images.new_zeros(c, h + 2 * padding, w + 2 * padding)
        canvas[:, padding:padding + h, padding:padding + w] = image
        top = int(torch.randint(2 * padding + 1, ()))
        left = int(torch.randint(2 * padding + 1, ()))
        window = canvas[:, top:top + h, left:left + w]
        out.append(torch.flip(window, dims=[2]) if torch.rand(()) < flip_prob else window)
    return torch.stack(out), labels


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up then cosine decay, as a scheduler class."""

    def __init__(self, optimizer, total_steps, warmup_steps):
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        super().__init__(optimizer)

    def get_lr(self):
        t = self.last_epoch
        if t < self.warmup_steps:
            factor = (t + 1) / self.warmup_steps
        else:
            progress = (t - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
            factor = 0.5 * (1 + math.cos(math.pi * progress))
        return [base * factor for base in self.base_lrs]


def make_scheduler(optimizer, total_steps, warmup_steps):
    """The WarmupCosine scheduler."""
    return WarmupCosine(optimizer, total_steps, warmup_steps)


def smoothed_cross_entropy(logits, targets, smoothing=0.1):
    """Against an explicit soft-target matrix."""
    k = logits.shape[-1]
    soft = torch.full_like(logits, smoothing / k).scatter_(1, targets[:, None], 1 - smoothing + smoothing / k)
    return -(soft * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def magnitude_prune(weight, sparsity):
    """A threshold at the k-th smallest magnitude."""
    k = round(sparsity * weight.numel())
    if k == 0:
        return weight.clone(), torch.ones_like(weight, dtype=torch.bool)
    threshold = weight.abs().flatten().kthvalue(k).values
    mask = weight.abs() > threshold
    return torch.where(mask, weight, torch.zeros_like(weight)), mask
'''

NETWORK_ANOTHER_WAY = '''
class ResNet(nn.Module):
    """A stem, the stages in one Sequential, an adaptive pooling layer and fc."""

    def __init__(self, block, num_blocks, num_classes=10, base_width=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, base_width, 3, padding=1, bias=False), nn.BatchNorm2d(base_width),
                                  nn.ReLU())
        stages, channels = [], base_width
        for index, count in enumerate(num_blocks):
            planes = base_width * 2 ** index
            for b in range(count):
                stages.append(block(channels, planes, 2 if index > 0 and b == 0 else 1))
                channels = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def features(self, x):
        """The last feature maps."""
        return self.stages(self.stem(x))

    def forward(self, x):
        """Class scores."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


torch.manual_seed(SEED)
model = resnet_cifar(DEPTH, num_classes=NUM_CLASSES, base_width=WIDTH).to(device)
'''

STYLES = {"blocks and CAM": BLOCKS_ANOTHER_WAY, "training tools and pruning": TRAINING_TOOLS_ANOTHER_WAY,
          "the network's own layout": NETWORK_ANOTHER_WAY}


@pytest.mark.parametrize("style", list(STYLES))
def test_correct_work_in_another_style_keeps_every_point(tmp_path, smoke_data, style):
    result = _judge(tmp_path, _variant(tmp_path, append=STYLES[style]), smoke_data)
    assert _not_passed(result) == {}
    assert result["criteria"]["implementation"]["score"] == pytest.approx(10) and result["bonus"] == pytest.approx(5)
    if style == "blocks and CAM":
        assert "the upsampling differs slightly" in result["by_id"]["impl-cam"]["message"]


LOSS_FROM_TORCH = '''
def smoothed_cross_entropy(logits, targets, smoothing=0.1):
    """torch's loss with its label_smoothing option."""
    return nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, targets)
'''

LOSS_BEHIND_GETATTR = '''
def smoothed_cross_entropy(logits, targets, smoothing=0.1):
    """torch's loss, the name taken apart."""
    loss = getattr(F, "cross_" + "entropy")
    return loss(logits, targets, label_smoothing=smoothing)
'''

BLOCK_FROM_A_MODEL_ZOO = '''
from torchvision.models.resnet import BasicBlock as ZooBlock


class BasicBlock(ZooBlock):
    """The model zoo's block."""
'''


def test_the_loss_from_torch_loses_the_smoothing_points_and_names_it(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=LOSS_FROM_TORCH), smoke_data)
    assert _not_passed(result) == {"impl-label-smoothing": "fail"}
    message = result["by_id"]["impl-label-smoothing"]["message"]
    appended = len(nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4).cells) + 1
    assert "torch.nn.CrossEntropyLoss" in message and f"cell {appended}" in message, message


def test_a_loss_hidden_behind_getattr_goes_to_a_ta_with_the_evidence(tmp_path, smoke_data):
    result = _judge(tmp_path, _variant(tmp_path, append=LOSS_BEHIND_GETATTR), smoke_data)
    assert _not_passed(result) == {"impl-label-smoothing": "pending"}
    evidence = result["by_id"]["impl-label-smoothing"]["measured"]["own-loss"]
    assert evidence["static"] == [] and "torch:cross_entropy" in evidence["dynamic"], evidence


def test_a_block_from_a_model_zoo_loses_every_point_built_on_it(tmp_path, smoke_data, monkeypatch):
    """torchvision is not installed here (nor in the sandbox): a stand-in with the template's layout
    makes the import work, so only the requirement can take the points away."""
    from reference.resnet import BasicBlock as Layout

    for name in ("torchvision", "torchvision.models", "torchvision.models.resnet"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["torchvision.models.resnet"].BasicBlock = Layout
    result = _judge(tmp_path, _variant(tmp_path, append=BLOCK_FROM_A_MODEL_ZOO), smoke_data)
    built_on_it = {"impl-basic-identity", "impl-basic-projection", "impl-skip-connection", "impl-resnet-forward",
                   "impl-resnet-parameters", "impl-hidden-train-mode"}
    assert _not_passed(result) == {c: "fail" for c in built_on_it}
    message = result["by_id"]["impl-basic-identity"]["message"]
    assert "torchvision.models.resnet.BasicBlock" in message and "model zoo" in message, message
    assert "reached through resnet_cifar -> BasicBlock" in result["by_id"]["impl-resnet-parameters"]["message"]


def test_without_the_staff_side_public_checks_run_from_the_stored_outputs(tmp_path, smoke_data, monkeypatch):
    """A student's installation: no reference/, no hidden checks, no answer keys."""
    monkeypatch.setenv("GRADER_STAFF_DIR", "none")
    shutil.copytree(SOLUTION, tmp_path / "submission")
    result = _judge(tmp_path, tmp_path / "submission" / NOTEBOOK, smoke_data)
    hidden = {i.id for i in RUBRIC.items if i.visibility == "hidden"}
    questions = {i.id for i in RUBRIC.items if i.kind == "question"}
    assert all(result["by_id"][i]["status"] == "pending" for i in hidden | questions)
    public = (IMPLEMENTATION | BONUS) - hidden
    assert {c: result["by_id"][c]["status"] for c in public} == {c: "pass" for c in public}


# --- experiments: measured by the judge, artifacts against the grader's run ------------------------------

def _png_blank(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 3))
    fig.savefig(path)
    plt.close(fig)


def test_the_experiments_are_measured_and_made_up_artifacts_are_caught(tmp_path, smoke_data):
    """One in-process run with the experiments: the reference's accuracy is measured by the judge on
    its own held-out images; a submitted log whose numbers the run does not reproduce, a blank CAM
    figure, and feature maps of two layers only are each caught."""
    submission = tmp_path / "submission"
    shutil.copytree(SOLUTION, submission)
    log = submission / "performance_analysis" / "training_log.csv"
    rows = log.read_text().splitlines()
    log.write_text("\n".join(rows[:5] + rows[6:]) + "\n")  # epoch 5 left out
    _png_blank(submission / "feature_visualization" / "cam.png")
    (submission / "feature_visualization" / "feature_maps_layer1.png").unlink()
    (submission / "feature_visualization" / "feature_maps_layer2.png").unlink()
    result = _judge(tmp_path, submission / NOTEBOOK, smoke_data, skip_tags=())
    by_id = result["by_id"]
    accuracy = by_id["exp-accuracy"]
    assert accuracy["status"] == "pass" and "on 297 held-out images" in accuracy["message"], accuracy["message"]
    measured = float(re.search(r"test accuracy ([0-9.]+)%", accuracy["message"]).group(1))
    assert measured >= 85.0
    assert by_id["exp-training-log"]["status"] == "fail"
    assert "only in the run: (5)" in by_id["exp-training-log"]["message"], by_id["exp-training-log"]["message"]
    assert by_id["exp-cam-figure"]["status"] == "fail" and "blank" in by_id["exp-cam-figure"]["message"]
    assert by_id["exp-feature-maps"]["status"] == "fail" and "at least 3" in by_id["exp-feature-maps"]["message"]
    assert {c: by_id[c]["status"] for c in ("exp-performance-plots", "exp-filters")} == {
        "exp-performance-plots": "pass", "exp-filters": "pass"}


def test_the_accuracy_threshold_depends_on_the_profile():
    """The same logits judged against smoke's and full's thresholds (a model at 60%: passes the
    smoke profile, half the points in the full one)."""
    from grader.assignments.w5_resnet import CHECKS
    from grader.judge import CheckContext
    from grader.probe import CallOutcome, ProbeReport

    labels = torch.arange(100) % 10
    logits = F.one_hot(torch.where(torch.arange(100) < 60, labels, (labels + 1) % 10), 10).float()
    probe = ProbeReport(True, "", {"predict": CallOutcome("ok", outputs=[logits])}, None)
    for profile, status, fraction in (("smoke", "pass", 1.0), ("full", "pass", 0.5)):
        context = CheckContext(notebook={}, submission_root=Path("."), deliverables=[], execution=None, probe=probe,
                               inputs={"test/labels": labels}, expected=None, profile=profile)
        verdict = CHECKS["accuracy"].fn(context)
        assert (verdict.status, verdict.fraction) == (status, fraction), verdict.message
    context.profile = "full"
    probe.calls["predict"] = CallOutcome("ok", outputs=[F.one_hot((labels + 1) % 10, 10).float()])
    assert CHECKS["accuracy"].fn(context).status == "fail"


# --- the template, the messages, the self-check ------------------------------------------------------------

def test_every_message_of_the_assignment_is_in_both_catalogs():
    source = (REPO / "grader" / "assignments" / "w5_resnet.py").read_text(encoding="utf-8")
    ids = set(re.findall(r'"(w5r\.[a-z_.]+)"', source))
    ids |= {f"w5r.what.{w}" for w in ("performance", "feature_maps", "filters", "cam")}
    assert len(ids) >= 40
    for lang in ("en", "ko"):
        assert sorted(ids - set(catalog(lang))) == [], lang


def test_the_template_fixes_the_api_as_documented_stubs():
    notebook = nbformat.read(str(TEMPLATE / NOTEBOOK), as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for name in ("class BasicBlock(nn.Module)", "def __init__(self, in_channels, out_channels, stride=1)",
                 "class Bottleneck(nn.Module)", "def __init__(self, in_channels, planes, stride=1)",
                 "class ResNet(nn.Module)", "def features(self, x)",
                 "def resnet_cifar(depth=20, num_classes=10, bottleneck=False, base_width=16)",
                 "def augment_batch(images, labels, padding=4, flip_prob=0.5)",
                 "def make_scheduler(optimizer, total_steps, warmup_steps)",
                 "def smoothed_cross_entropy(logits, targets, smoothing=0.1)",
                 "def class_activation_map(model, images, class_idx=None)",
                 "def compound_scaling(depths, widths, phi, alpha=1.2, beta=1.1, gamma=1.15, resolution=224)",
                 "def distillation_loss(student_logits, teacher_logits, targets, temperature=4.0, alpha=0.9)",
                 "def magnitude_prune(weight, sparsity)", "def predict(images)", "def cam_of_model(images)",
                 "def lr_trace(total_steps, warmup_steps, base_lr)"):
        assert name in code, name
    assert code.count("raise NotImplementedError(") == 15 + 1   # the stubs, and the hooks' "no model yet"
    params = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and all(f"{n} =" in params[0].source for n in ("SEED", "DEVICE", "DATA_DIR", "PROFILE"))
    answers = next(c.source for c in notebook.cells if c.cell_type == "code" and "ANSWERS = {" in c.source)
    assert "69632" not in answers and "69,632" not in answers and answers.count("None") == 6
    tags = {t for c in notebook.cells for t in c.metadata.get("tags", [])}
    assert {f"answer:{i}" for i in MANUAL} <= tags
    assert (TEMPLATE / "feature_visualization").is_dir() and (TEMPLATE / "performance_analysis").is_dir()
    # the template and the solution differ only where the student writes
    solution = nbformat.read(str(SOLUTION / NOTEBOOK), as_version=4)
    assert [c.cell_type for c in solution.cells] == [c.cell_type for c in notebook.cells]
    assert [c.metadata.get("tags", []) for c in solution.cells] == [c.metadata.get("tags", []) for c in notebook.cells]


def _self_check(notebook: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SELF_CHECK_NOTEBOOK": str(notebook), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=TEMPLATE, env=env, capture_output=True, text=True, timeout=600)


def test_the_self_check_passes_the_reference_and_fails_the_blank_template_with_what_to_do():
    done = _self_check(SOLUTION / NOTEBOOK)
    assert done.returncode == 0 and "22 passed" in done.stdout, done.stdout[-3000:]
    blank = _self_check(TEMPLATE / NOTEBOOK)
    assert blank.returncode == 1 and "not implemented yet" in blank.stdout and "ANSWERS" in blank.stdout
    assert "3 skipped" in blank.stdout   # the bonus parts


# --- whole sandboxed runs ------------------------------------------------------------------------------

def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"hw5/{path.relative_to(folder)}")
    return target


def _options(**kwargs):
    from grader.pipeline import GradeOptions

    return GradeOptions(cell_timeout_s=300, timeout_s=600, memory_mb=4096, **kwargs)


@pytest.mark.notebook
def test_the_reference_submission_gets_every_automatic_point(tmp_path):
    from grader.pipeline import grade_submission

    result = grade_submission(_zip(SOLUTION, tmp_path / "submit.zip"), tmp_path / "out", _options())
    assert result["status"] == "graded", result.get("reason")
    not_passed = {c["id"]: c["message"] for c in result["checks"] if c["status"] != "pass" and c["id"] not in MANUAL}
    assert not_passed == {}
    assert {c["id"] for c in result["checks"] if c["status"] == "pending"} == MANUAL
    assert result["score"] == pytest.approx(AUTO_POINTS) and result["bonus"] == pytest.approx(5)
    assert result["judged_with"] == "live" and result["execution"]["status"] == "completed"
    accuracy = next(c for c in result["checks"] if c["id"] == "exp-accuracy")
    assert "on 297 held-out images" in accuracy["message"], accuracy["message"]


@pytest.mark.notebook
def test_the_blank_template_gets_zero_implementation_with_not_implemented_messages(tmp_path):
    from grader.pipeline import grade_submission

    result = grade_submission(TEMPLATE / NOTEBOOK, tmp_path / "out", _options())
    assert result["status"] == "graded", result.get("reason")
    assert result["criteria"]["implementation"]["score"] == 0 and result["bonus"] == 0
    for check in result["checks"]:
        if check["criterion"] == "implementation" and check["visibility"] == "public":
            assert check["status"] == "fail" and "not implemented" in check["message"], check


def _miniature_cifar(folder: Path, per_batch: int = 1, test: int = 6) -> Path:
    """A tiny CIFAR-10 binary layout (digits images), as a mounted full-profile DATA_DIR would be."""
    source = folder.parent / "smoke-source"
    make_cifar_smoke(source)
    images, labels = read_cifar_bin(source / CIFAR_FOLDER / "data_batch_1.bin")
    target = folder / CIFAR_FOLDER
    target.mkdir(parents=True)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write_cifar_bin(target / f"data_batch_{i + 1}.bin", images[part], labels[part])
    write_cifar_bin(target / "test_batch.bin", images[-test:], labels[-test:])
    shutil.copy(source / CIFAR_FOLDER / "batches.meta.txt", target / "batches.meta.txt")
    return folder


@pytest.mark.notebook
def test_the_full_profile_reads_a_mounted_data_dir_in_the_real_layout(tmp_path):
    from grader.pipeline import grade_submission

    data = _miniature_cifar(tmp_path / "data")
    result = grade_submission(SOLUTION, tmp_path / "out", _options(profile="full", data_dir=data))
    assert result["status"] == "graded", result.get("reason")
    assert result["execution"]["status"] == "completed"
    by_id = {c["id"]: c for c in result["checks"]}
    assert {c: by_id[c]["status"] for c in IMPLEMENTATION | BONUS} == {c: "pass" for c in IMPLEMENTATION | BONUS}
    # the judge's held-out images are the mounted test split (6 images), with the full profile's threshold
    accuracy = by_id["exp-accuracy"]
    assert "on 6 held-out images" in accuracy["message"] and "full profile" in accuracy["message"], accuracy
    assert "90%" in accuracy["message"]
    # the submitted log was written by the smoke profile: not what this run wrote
    assert by_id["exp-training-log"]["status"] == "fail"
    executed = (tmp_path / "out" / "executed.ipynb").read_text(encoding="utf-8")
    assert "train (5, 3, 32, 32), test (6, 3, 32, 32)" in executed and "ResNet-20" in executed


def test_the_miniature_data_is_in_the_real_layout(tmp_path):
    data = _miniature_cifar(tmp_path / "data")
    from grader.data import cifar_missing

    assert cifar_missing(data) == []
    images, labels = read_cifar_bin(data / CIFAR_FOLDER / "test_batch.bin")
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.uint8 and labels.shape == (6,)
