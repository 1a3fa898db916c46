"""자가 점검 / Self-check for w5-resnet.

이 폴더에서 `pytest`를 실행하세요. 노트북의 코드 셀(태그 `experiment`가 붙은 실험 셀은 제외)을
작은 가짜 데이터(CIFAR-10 바이너리 형식의 무작위 이미지)로 실행한 뒤, 정답 없이도 확인할 수 있는
성질(블록의 하위 모듈 이름과 모양, 배선, 잔차 가지를 0으로 했을 때의 출력, 파라미터 수, 증강의 성질,
학습률 값, PyTorch 내장 함수와의 일치, CAM의 정의)을 검사합니다. 통과해도 만점이 보장되지는 않습니다:
채점기는 다른(비공개) 입력과 실제 데이터로 검사합니다.

Run `pytest` in this folder. It executes the notebook's code cells (except the experiment cells,
tagged `experiment`) on tiny fake data (random images in CIFAR-10's binary layout) and checks
properties that need no reference solution: the blocks' sub-module names and shapes, their wiring,
the output with the residual branch zeroed, parameter counts, the augmentation's properties, the
learning rates, agreement with PyTorch's built-ins, the CAM's definition. Passing does not
guarantee full marks: the grader uses other (private) inputs and the real data.

Another notebook can be checked with SELF_CHECK_NOTEBOOK=path/to/notebook.ipynb.
"""

from __future__ import annotations

import linecache
import math
import os
import re
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

NOTEBOOK = Path(os.environ.get("SELF_CHECK_NOTEBOOK")
                or Path(__file__).resolve().parents[1] / "resnet_implementation.ipynb")
SKIPPED_TAG = "experiment"
MAGIC = re.compile(r"^\s*[%!]")
FP32 = {"atol": 1e-5, "rtol": 1e-4}
ANSWER_KEYS = {
    "bottleneck_params": "number", "receptive_field": "number", "flops_factor": "number",
    "residual_gradient": "choice", "bn_inference": "choice", "cam_requirement": "choice",
}
RESNET20_PARAMETERS = 272_474          # resnet_cifar(20): 6n + 2 with n = 3, widths 16/32/64
RESNET29_BOTTLENECK_PARAMETERS = 313_114   # resnet_cifar(29, bottleneck=True): 9n + 2 with n = 3


# -----------------------------------------------------------------------------
# Loading the notebook


def fake_cifar(root: Path) -> Path:
    """Random images in CIFAR-10's binary layout (20 records a file), so the data cell can run."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, size=(20, 1), dtype=np.uint8)
        pixels = rng.integers(0, 256, size=(20, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n")
    return root


class NotebookNamespace:
    """The globals left by the notebook's cells, with a short repr for pytest's reports."""

    def __init__(self, namespace: dict) -> None:
        self._namespace = namespace

    def get(self, name: str, default=None):
        return self._namespace.get(name, default)

    def __repr__(self) -> str:
        return f"<globals of {NOTEBOOK.name}>"


@pytest.fixture(scope="module")
def nb() -> NotebookNamespace:
    """The namespace left by the notebook's non-experiment code cells (PROFILE smoke, fake data)."""
    if not NOTEBOOK.is_file():
        pytest.fail(f"노트북이 없습니다: {NOTEBOOK} / notebook not found: {NOTEBOOK} "
                    "(keep resnet_implementation.ipynb next to the tests/ folder)")
    notebook = nbformat.read(str(NOTEBOOK), as_version=4)
    namespace: dict = {"__name__": "__self_check__"}
    os.environ.setdefault("MPLBACKEND", "Agg")
    data = tempfile.TemporaryDirectory()
    previous_dir = os.getcwd()
    os.chdir(NOTEBOOK.parent)
    try:
        for position, cell in enumerate(notebook.cells, start=1):
            if cell.cell_type != "code" or SKIPPED_TAG in cell.metadata.get("tags", []):
                continue
            source = "\n".join("# " + line if MAGIC.match(line) else line for line in cell.source.splitlines())
            filename = f"<notebook cell {position}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # readable tracebacks
            try:
                exec(compile(source, filename, "exec"), namespace)  # noqa: S102
            except NotImplementedError:
                continue  # the model cell of a notebook whose resnet_cifar is not written yet: reported per test
            except Exception as exc:  # noqa: BLE001 - any error of the student's cell is reported
                pytest.fail(f"노트북 셀 {position}이(가) 실행 중 오류를 냈습니다 / notebook cell {position} raised "
                            f"{type(exc).__name__}: {exc}. 위에서부터 끝까지 실행되도록 고치세요 / make the notebook "
                            "run top to bottom (experiment cells excluded).")
            if "parameters" in cell.metadata.get("tags", []):
                namespace["PROFILE"] = "smoke"
                namespace["DATA_DIR"] = str(fake_cifar(Path(data.name)))
    finally:
        os.chdir(previous_dir)
    yield NotebookNamespace(namespace)
    data.cleanup()


def student(nb: NotebookNamespace, name: str, optional: bool = False):
    """The student's function or class ``name``; NotImplementedError becomes a clear failure (or a skip)."""
    fn = nb.get(name)
    if not callable(fn):
        pytest.fail(f"{name}이(가) 노트북에 없습니다 / no function or class named {name} in the notebook: "
                    "keep the template's names and signatures.")

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            pass  # reported below, outside the except block, without the chained traceback
        if optional:
            pytest.skip(f"{name}: 선택 과제, 구현하지 않음 / optional bonus, not implemented")
        pytest.fail(f"{name}: 아직 구현되지 않았습니다 (NotImplementedError) — raise 줄을 지우고 구현하세요. / "
                    f"{name} is not implemented yet (NotImplementedError): replace the raise with your code.")

    return call


def build(nb, name, *args, **kwargs):
    """An eval-mode instance of the student's class, with BN statistics and affine parameters made non-trivial."""
    module = student(nb, name)(*args, **kwargs)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.BatchNorm2d):
                sub.weight.copy_(0.5 + torch.rand(sub.weight.shape, generator=generator))
                sub.bias.copy_(0.2 * torch.randn(sub.bias.shape, generator=generator))
                sub.running_mean.copy_(0.2 * torch.randn(sub.running_mean.shape, generator=generator))
                sub.running_var.copy_(0.5 + torch.rand(sub.running_var.shape, generator=generator))
    return module.eval()


def shapes(module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


def assert_close(actual, expected, what, fix, tol=FP32):
    """torch.testing.assert_close with a bilingual message: what is compared and what to fix."""
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: 모양 {tuple(actual.shape)} != 기대 {tuple(expected.shape)} / shape "
        f"{tuple(actual.shape)} != expected {tuple(expected.shape)}. {fix}")
    try:
        torch.testing.assert_close(actual.double(), expected.double(), **tol)
    except AssertionError as err:
        raise AssertionError(f"{what}: 값이 다릅니다 / values differ. {fix}\n{err}") from None


# -----------------------------------------------------------------------------
# BasicBlock and Bottleneck


@pytest.mark.parametrize("in_c, out_c, stride", [(8, 8, 1), (8, 16, 2), (8, 16, 1)])
def test_basic_block_layout(nb, in_c, out_c, stride):
    block = build(nb, "BasicBlock", in_c, out_c, stride)
    expected = {"conv1.weight": (out_c, in_c, 3, 3), "bn1.weight": (out_c,), "bn1.bias": (out_c,),
                "conv2.weight": (out_c, out_c, 3, 3), "bn2.weight": (out_c,), "bn2.bias": (out_c,)}
    if stride != 1 or in_c != out_c:
        expected.update({"shortcut.0.weight": (out_c, in_c, 1, 1), "shortcut.1.weight": (out_c,),
                         "shortcut.1.bias": (out_c,)})
    assert shapes(block) == expected, (
        "하위 모듈 이름과 모양을 템플릿대로 쓰세요 (합성곱은 bias=False, 항등 지름길은 빈 nn.Sequential()) / use the "
        f"template's sub-module names and shapes (convolutions without bias, an empty nn.Sequential() for the "
        f"identity shortcut). Expected {expected}, got {shapes(block)}")
    out = block(torch.randn(2, in_c, 8, 8))
    side = 8 // stride
    assert tuple(out.shape) == (2, out_c, side, side), f"BasicBlock output {tuple(out.shape)} != (2, {out_c}, {side}, {side})"


@pytest.mark.parametrize("name, args, branch", [("BasicBlock", (8, 8, 1), "bn2"), ("BasicBlock", (8, 16, 2), "bn2"),
                                                 ("Bottleneck", (16, 8, 2), "bn3"), ("Bottleneck", (32, 8, 1), "bn3")])
def test_block_wiring_and_zeroed_branch(nb, name, args, branch):
    block = build(nb, name, *args)
    x = torch.randn(2, args[0], 8, 8)
    layers = ("conv1", "bn1", "conv2", "bn2") + (("conv3", "bn3") if name == "Bottleneck" else ())
    with torch.no_grad():
        out = x
        for i in range(0, len(layers), 2):
            out = getattr(block, layers[i + 1])(getattr(block, layers[i])(out))
            if i + 2 < len(layers):
                out = F.relu(out)
        expected = F.relu(out + block.shortcut(x))
        assert_close(block(x), expected, f"{name}{args}", "forward = relu(bn_last(conv_last(...)) + shortcut(x)): "
                     "ReLU는 BN 뒤, 마지막 ReLU는 합 다음에 / ReLU after each BN but the last, the last ReLU after the sum.")
        getattr(block, branch).weight.zero_()
        getattr(block, branch).bias.zero_()
        assert_close(block(x), F.relu(block.shortcut(x)), f"{name}{args} with {branch} zeroed",
                     "잔차 가지가 0이면 출력은 relu(shortcut(x)): 지름길을 더하고 있나요? / with the residual branch "
                     "zeroed the output must be relu(shortcut(x)): is the shortcut added?")


def test_bottleneck_layout_and_stride_on_the_3x3(nb):
    block = build(nb, "Bottleneck", 16, 8, 2)
    assert getattr(type(block), "expansion", None) == 4, "Bottleneck.expansion = 4"
    expected = {"conv1.weight": (8, 16, 1, 1), "conv2.weight": (8, 8, 3, 3), "conv3.weight": (32, 8, 1, 1),
                "shortcut.0.weight": (32, 16, 1, 1)}
    found = shapes(block)
    for key, shape in expected.items():
        assert found.get(key) == shape, f"{key}: 기대 / expected {shape}, got {found.get(key)}"
    assert tuple(block.conv2.stride) == (2, 2) and tuple(block.conv1.stride) == (1, 1), (
        "stride는 3x3 합성곱(conv2)에 둡니다 / the stride goes on the 3x3 convolution (conv2)")
    assert tuple(block(torch.randn(2, 16, 8, 8)).shape) == (2, 32, 4, 4)


# -----------------------------------------------------------------------------
# The CIFAR ResNet


def test_resnet_shapes_and_gradients(nb):
    net = student(nb, "resnet_cifar")(depth=8, num_classes=7, base_width=4)
    x = torch.randn(3, 3, 32, 32, requires_grad=True)
    out = net(x)
    assert tuple(out.shape) == (3, 7), f"resnet_cifar(8, num_classes=7) output {tuple(out.shape)} != (3, 7)"
    maps = net.features(x)
    assert tuple(maps.shape) == (3, 16, 8, 8), (
        f"features(x)는 풀링 전 마지막 특성 맵 (N, 4w, 8, 8) / features(x) must be the last maps (N, 4w, 8, 8), "
        f"got {tuple(maps.shape)}")
    assert_close(out, net.fc(maps.mean(dim=(2, 3))), "forward vs fc(mean(features))",
                 "forward(x) = fc(features(x).mean((2, 3)))")
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "입력까지 그래디언트가 오지 않습니다 / no gradient reaches the input"
    dead = [n for n, p in net.named_parameters() if p.grad is None]
    assert not dead, f"그래디언트를 받지 않는 파라미터 / parameters without a gradient: {dead[:5]}"


def test_resnet_parameter_counts(nb):
    make = student(nb, "resnet_cifar")
    count = sum(p.numel() for p in make(20).parameters())
    assert count == RESNET20_PARAMETERS, (
        f"ResNet-20: {count:,} != {RESNET20_PARAMETERS:,}. 폭 16/32/64, 단계마다 블록 3개, 모양이 바뀔 때만 사영 지름길, "
        "bias 없는 합성곱 / widths 16/32/64, 3 blocks a stage, projections only where the shape changes, no conv bias")
    count = sum(p.numel() for p in make(29, bottleneck=True).parameters())
    assert count == RESNET29_BOTTLENECK_PARAMETERS, f"bottleneck ResNet-29: {count:,} != {RESNET29_BOTTLENECK_PARAMETERS:,}"
    with pytest.raises(ValueError):
        make(21)


# -----------------------------------------------------------------------------
# Augmentation, schedule, label smoothing


def crop_match(source, result, padding):
    """(matched, flipped) per image: is result[i] a crop of zero-padded source[i], or its mirror?"""
    n, _, h, w = source.shape
    padded = F.pad(source, (padding,) * 4)
    matched = torch.zeros(n, dtype=torch.bool)
    flipped = torch.zeros(n, dtype=torch.bool)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, :, dy:dy + h, dx:dx + w]
            plain = (crop - result).abs().amax(dim=(1, 2, 3)) < 1e-6
            mirror = (crop - result.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6
            flipped |= mirror & ~plain & ~matched
            matched |= plain | mirror
    return matched, flipped


def test_augmentation_is_padded_crop_and_flip(nb):
    augment = student(nb, "augment_batch")
    images, labels = torch.randn(300, 3, 10, 10), torch.randint(0, 10, (300,))
    out, kept = augment(images, labels, padding=3, flip_prob=0.5)
    assert tuple(out.shape) == tuple(images.shape) and out.dtype == images.dtype, "같은 모양과 dtype / same shape and dtype"
    assert torch.equal(kept, labels), "레이블은 그대로, 같은 순서로 / labels unchanged, in the same order"
    matched, flipped = crop_match(images, out, 3)
    assert matched.all(), ("모든 출력은 0으로 패딩한 자기 입력의 잘라낸 조각(또는 좌우 반전)이어야 합니다 / every output "
                           f"must be a crop of its own zero-padded input (or its mirror); {int((~matched).sum())} are not")
    rate = flipped.float().mean().item()
    assert 0.38 < rate < 0.62, f"flip_prob=0.5인데 반전 비율 {rate:.2f} / mirrored share {rate:.2f} with flip_prob=0.5"
    out, _ = augment(images, labels, padding=3, flip_prob=0.0)
    assert not crop_match(images, out, 3)[1].any(), "flip_prob=0이면 뒤집지 않습니다 / flip_prob=0 mirrors nothing"


def declared_lr(step, total, base, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@pytest.mark.parametrize("total, warmup, base", [(40, 6, 0.1), (15, 0, 0.3)])
def test_scheduler_follows_warmup_cosine(nb, total, warmup, base):
    make = student(nb, "make_scheduler")
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=base)
    scheduler = make(optimizer, total, warmup)
    for step in range(total):
        got = optimizer.param_groups[0]["lr"]
        assert abs(got - declared_lr(step, total, base, warmup)) < 1e-9 * base + 1e-12, (
            f"step {step}: lr {got:.6g}, 선언된 식 / declared {declared_lr(step, total, base, warmup):.6g} "
            f"(total={total}, warmup={warmup}); scheduler.step()은 옵티마이저 스텝마다 / one scheduler.step() per step")
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_pytorch(nb, smoothing):
    loss = student(nb, "smoothed_cross_entropy")
    logits, targets = torch.randn(9, 10) * 3, torch.randint(0, 10, (9,))
    assert_close(loss(logits, targets, smoothing=smoothing),
                 F.cross_entropy(logits, targets, label_smoothing=smoothing), f"smoothing={smoothing}",
                 "(1 - eps) * NLL + eps * mean_k(-log p_k), 배치 평균 / batch mean")


# -----------------------------------------------------------------------------
# CAM and the grader hooks


def test_class_activation_map_definition(nb):
    cam = student(nb, "class_activation_map")
    net = student(nb, "resnet_cifar")(depth=8, base_width=4).eval()
    images, classes = torch.randn(4, 3, 32, 32), torch.tensor([0, 3, 3, 9])
    with torch.no_grad():
        maps = cam(net, images, class_idx=classes)
        raw = torch.einsum("nc,nchw->nhw", net.fc.weight[classes], net.features(images))
        up = F.interpolate(raw[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
        low, high = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
        expected = (up - low) / (high - low)
    assert_close(maps, expected, "class_activation_map", "마지막 특성 맵 x fc 가중치, bilinear 업샘플, 맵마다 min-max "
                 "/ last feature maps x fc weights, bilinear upsampling, min-max per map", tol={"atol": 1e-4, "rtol": 1e-4})


def test_grader_hooks_run(nb):
    predict = student(nb, "predict")
    lr_trace = student(nb, "lr_trace")
    images = nb.get("test_images")[:5]
    assert tuple(predict(images).shape) == (5, nb.get("NUM_CLASSES")), "predict: (N, classes)"
    assert tuple(lr_trace(10, 2, 0.1).shape) == (10,), "lr_trace: (total_steps,)"


# -----------------------------------------------------------------------------
# Theory answers and bonus


def test_answers_are_filled_in(nb):
    answers = nb.get("ANSWERS")
    assert isinstance(answers, dict), "ANSWERS 딕셔너리가 없습니다 / the ANSWERS dict is missing"
    for key, kind in ANSWER_KEYS.items():
        value = answers.get(key)
        assert value is not None, f"ANSWERS[{key!r}]를 채우세요 / fill in ANSWERS[{key!r}]"
        if kind == "number":
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"ANSWERS[{key!r}]: a number"
        else:
            assert str(value).strip().lower() in "abcd" and len(str(value).strip()) == 1, f"ANSWERS[{key!r}]: 'a'..'d'"


def test_bonus_distillation_loss(nb):
    loss = student(nb, "distillation_loss", optional=True)
    s, t, y = torch.randn(6, 10), torch.randn(6, 10) * 2, torch.randint(0, 10, (6,))
    soft = F.kl_div(F.log_softmax(s / 3.0, -1), F.softmax(t / 3.0, -1), reduction="batchmean") * 9.0
    assert_close(loss(s, t, y, temperature=3.0, alpha=0.7), 0.7 * soft + 0.3 * F.cross_entropy(s, y),
                 "distillation_loss", "alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE")


def test_bonus_magnitude_prune(nb):
    prune = student(nb, "magnitude_prune", optional=True)
    weight = torch.randn(8, 50)
    pruned, mask = prune(weight, 0.6)
    assert mask.dtype == torch.bool and int((~mask).sum()) == 240, "60% of 400 weights removed, mask True = kept"
    assert torch.equal(pruned, weight * mask)
    assert weight.abs()[~mask].max() <= weight.abs()[mask].min(), "the smallest |w| are the ones removed"


def test_bonus_compound_scaling(nb):
    scale = student(nb, "compound_scaling", optional=True)
    depths, widths = torch.tensor([1, 2, 3]), torch.tensor([16, 24, 40])
    new_depths, new_widths, resolution = scale(depths, widths, 0)
    assert all(isinstance(t, torch.Tensor) for t in (new_depths, new_widths, resolution)), "three tensors"
    assert torch.equal(new_depths, depths) and torch.equal(new_widths, widths) and int(resolution) == 224, (
        "phi = 0 leaves the network unchanged")
    new_depths, _, resolution = scale(depths, widths, 1)
    assert new_depths.tolist() == [2, 3, 4] and int(resolution) == 258, "phi = 1: ceil(1.2 d), round(224 * 1.15)"
