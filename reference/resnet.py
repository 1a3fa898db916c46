"""Reference implementation of the w5-resnet assignment (CNN deep dive: ResNet on CIFAR-10).

Everything the student template asks for, in one self-contained file, ordered from the building
blocks up: the basic and bottleneck residual blocks, the CIFAR ResNet built from them (and its
parameter count), data augmentation, the warm-up + cosine learning-rate schedule, the
label-smoothing loss, class activation maps, and the bonus pieces (compound scaling, knowledge
distillation, magnitude pruning).

Conventions the template fixes (the grader loads its own parameters into the student's blocks by
these names and compares outputs and gradients, in eval mode, with BN's running statistics):
- ``BasicBlock(in_channels, out_channels, stride)``: ``conv1`` (3x3, stride, no bias), ``bn1``,
  ``conv2`` (3x3, no bias), ``bn2``, ``shortcut`` (empty ``nn.Sequential()`` for the identity, else
  ``shortcut.0`` a 1x1 conv with the stride and no bias, ``shortcut.1`` a BatchNorm2d);
  ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.
- ``Bottleneck(in_channels, planes, stride)``: expansion 4; ``conv1`` 1x1, ``bn1``, ``conv2`` 3x3
  with the stride, ``bn2``, ``conv3`` 1x1 to ``4 * planes``, ``bn3``, ``shortcut`` as above.
- ``ResNet.features(x)``: the last feature maps ``(N, C, H/4, W/4)``; ``forward`` is
  ``fc(global average pool(features(x)))``, which is what makes a CAM possible.
- images are ``(N, 3, 32, 32)``; a CAM is ``(N, H, W)``, bilinear upsampling, min-max normalised.

References:
- He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition" (CVPR): residual
  learning, projection shortcuts (option B), the bottleneck block, the 6n+2 CIFAR ResNets
  (Sec. 4.2: widths 16/32/64, global average pooling, 4-pixel padding + random crop + flips).
- He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks" (ECCV): bottleneck
  CIFAR ResNets with 9n+2 layers.
- Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network Training by Reducing
  Internal Covariate Shift".
- Zhou, Khosla, Lapedriza, Oliva, Torralba 2016, "Learning Deep Features for Discriminative
  Localization" (CVPR): class activation maps.
- Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision" (label smoothing).
- Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts" (cosine
  annealing); Goyal et al. 2017, "Accurate, Large Minibatch SGD" (linear warm-up).
- Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network".
- Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"
  (compound scaling; ``round_filters``).
- Han, Pool, Tran, Dally 2015, "Learning both Weights and Connections for Efficient Neural
  Networks" (magnitude pruning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Type

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ResNetConfig",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet_cifar",
    "resnet_parameter_count",
    "augment_batch",
    "warmup_cosine_lr",
    "make_scheduler",
    "smoothed_cross_entropy",
    "cam_from_features",
    "class_activation_map",
    "compound_scaling",
    "distillation_loss",
    "magnitude_prune",
]


@dataclass(frozen=True)
class ResNetConfig:
    """A CIFAR ResNet: three stages of ``n`` blocks at widths ``w, 2w, 4w`` (times the expansion).

    ``depth`` counts the weighted layers on the main path: ``6n + 2`` with basic blocks (ResNet-20:
    n = 3), ``9n + 2`` with bottleneck blocks (ResNet-29: n = 3).
    """

    depth: int = 20
    num_classes: int = 10
    bottleneck: bool = False
    base_width: int = 16

    @property
    def blocks_per_stage(self) -> int:
        layers_per_block = 3 if self.bottleneck else 2
        n, rest = divmod(self.depth - 2, 3 * layers_per_block)
        if rest or n < 1:
            kind = "9n+2 (bottleneck)" if self.bottleneck else "6n+2 (basic)"
            raise ValueError(f"depth {self.depth} is not {kind} for some n >= 1")
        return n

    @property
    def block(self) -> Type[nn.Module]:
        return Bottleneck if self.bottleneck else BasicBlock


# -----------------------------------------------------------------------------
# Building blocks


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The shortcut: empty (identity) when the shape is kept, else 1x1 conv with the stride + BN (option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN, added to the shortcut, then ReLU (He et al. 2016, Fig. 2)."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = _projection(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (N, C_out, H/s, W/s)
        out = self.bn2(self.conv2(out))  # (N, C_out, H/s, W/s)
        return F.relu(out + self.shortcut(x))  # (N, C_out, H/s, W/s)


class Bottleneck(nn.Module):
    """1x1 (reduce) - 3x3 (with the stride) - 1x1 (expand x4), each with BN; ReLU after the sum."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _projection(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (N, P, H, W)
        out = F.relu(self.bn2(self.conv2(out)))  # (N, P, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (N, 4P, H/s, W/s)
        return F.relu(out + self.shortcut(x))  # (N, 4P, H/s, W/s)


# -----------------------------------------------------------------------------
# The CIFAR ResNet


class ResNet(nn.Module):
    """3x3 stem, three stages (stride 1, 2, 2), global average pooling, a linear classifier."""

    def __init__(self, block: Type[nn.Module], num_blocks: Sequence[int], num_classes: int = 10,
                 base_width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        channels = base_width
        stages = []
        for index, (blocks, stride) in enumerate(zip(num_blocks, (1, 2, 2))):
            planes = base_width * 2 ** index
            layers = []
            for b in range(blocks):
                layers.append(block(channels, planes, stride if b == 0 else 1))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: Tensor) -> Tensor:
        """The last feature maps, before pooling: (N, 3, H, W) -> (N, C, H/4, W/4)."""
        out = F.relu(self.bn1(self.conv1(x)))  # (N, w, H, W)
        out = self.layer1(out)  # (N, w * e, H, W)
        out = self.layer2(out)  # (N, 2w * e, H/2, W/2)
        return self.layer3(out)  # (N, 4w * e, H/4, W/4)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.features(x).mean(dim=(2, 3))  # (N, C)
        return self.fc(pooled)  # (N, num_classes)


def resnet_cifar(depth: int = 20, num_classes: int = 10, bottleneck: bool = False, base_width: int = 16) -> ResNet:
    """The CIFAR ResNet of ``depth`` layers (6n+2 with basic blocks, 9n+2 with bottlenecks)."""
    config = ResNetConfig(depth, num_classes, bottleneck, base_width)
    n = config.blocks_per_stage
    return ResNet(config.block, (n, n, n), num_classes=num_classes, base_width=base_width)


def _conv_bn(in_channels: int, out_channels: int, kernel: int) -> int:
    return in_channels * out_channels * kernel * kernel + 2 * out_channels  # conv weight + BN (gamma, beta)


def resnet_parameter_count(config: ResNetConfig) -> int:
    """Trainable parameters of ``resnet_cifar(config...)``, by the formula (BN buffers excluded)."""
    n, w = config.blocks_per_stage, config.base_width
    expansion = 4 if config.bottleneck else 1
    total = _conv_bn(3, w, 3)
    channels = w
    for index in range(3):
        planes = w * 2 ** index
        for b in range(n):
            stride = 2 if index > 0 and b == 0 else 1
            out = planes * expansion
            if config.bottleneck:
                total += _conv_bn(channels, planes, 1) + _conv_bn(planes, planes, 3) + _conv_bn(planes, out, 1)
            else:
                total += _conv_bn(channels, out, 3) + _conv_bn(out, out, 3)
            if stride != 1 or channels != out:
                total += _conv_bn(channels, out, 1)
            channels = out
    return total + channels * config.num_classes + config.num_classes


# -----------------------------------------------------------------------------
# Training: augmentation, schedule, regularisation


def augment_batch(images: Tensor, labels: Tensor, padding: int = 4, flip_prob: float = 0.5,
                  generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """Random crop of the zero-padded image (same size) and horizontal flip with ``flip_prob``,
    independently per image; the labels are returned unchanged, in the same order."""
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))  # (N, C, H + 2p, W + 2p)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(images.device)  # (2, N)
    rows = (offsets[0][:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (offsets[1][:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]  # (N, 1, 1, 1)
    channel = torch.arange(c, device=images.device)[None, :, None, None]  # (1, C, 1, 1)
    crops = padded[batch, channel, rows, cols]  # (N, C, H, W)
    flip = (torch.rand(n, generator=generator) < flip_prob).to(images.device)  # (N,)
    return torch.where(flip[:, None, None, None], crops.flip(-1), crops), labels.clone()


def warmup_cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int) -> float:
    """The learning rate at optimiser step ``step`` (0-based): linear warm-up to ``base_lr`` over
    ``warmup_steps`` steps, then a cosine decay towards 0 at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                   warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler whose learning rates are ``warmup_cosine_lr`` of the optimiser's lr."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_lr(step, total_steps, 1.0, warmup_steps))


def smoothed_cross_entropy(logits: Tensor, targets: Tensor, smoothing: float = 0.1) -> Tensor:
    """Cross-entropy against ``(1 - smoothing) * one_hot + smoothing / K``, averaged over the batch."""
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (N, K)
    nll = -log_probs.gather(1, targets.long()[:, None]).squeeze(1)  # (N,)
    uniform = -log_probs.mean(dim=-1)  # (N,)
    return ((1.0 - smoothing) * nll + smoothing * uniform).mean()


# -----------------------------------------------------------------------------
# Class activation maps


def cam_from_features(features: Tensor, fc_weight: Tensor, class_idx: Tensor, size: tuple[int, int]) -> Tensor:
    """CAM_k = sum_c w_kc F_c (Zhou et al. 2016), upsampled bilinearly to ``size`` and min-max
    normalised to [0, 1] per map (a constant map gives zeros)."""
    weights = fc_weight[class_idx.long()]  # (N, C)
    cams = torch.einsum("nc,nchw->nhw", weights.float(), features.float())  # (N, h, w)
    cams = F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]  # (N, H, W)
    low = cams.amin(dim=(1, 2), keepdim=True)  # (N, 1, 1)
    high = cams.amax(dim=(1, 2), keepdim=True)  # (N, 1, 1)
    return (cams - low) / (high - low).clamp_min(1e-12)


def class_activation_map(model: ResNet, images: Tensor, class_idx: Optional[Tensor] = None) -> Tensor:
    """CAMs (N, H, W) of ``model`` for ``images`` (N, 3, H, W), for ``class_idx`` or the predicted class."""
    features = model.features(images)  # (N, C, h, w)
    if class_idx is None:
        class_idx = model.fc(features.mean(dim=(2, 3))).argmax(dim=1)  # (N,)
    return cam_from_features(features, model.fc.weight, class_idx, tuple(images.shape[-2:]))


# -----------------------------------------------------------------------------
# Bonus: compound scaling, knowledge distillation, magnitude pruning


def _round_filters(width: float, divisor: int = 8) -> int:
    """EfficientNet's rounding of a channel count to a multiple of ``divisor`` (never down by > 10%)."""
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


def compound_scaling(depths: Tensor, widths: Tensor, phi: float, alpha: float = 1.2, beta: float = 1.1,
                     gamma: float = 1.15, resolution: int = 224) -> tuple[Tensor, Tensor, Tensor]:
    """Scale depth by alpha^phi (ceil), width by beta^phi (round_filters), resolution by gamma^phi
    (nearest integer); alpha * beta^2 * gamma^2 ~ 2, so FLOPs grow about 2^phi."""
    depth_mult, width_mult, resolution_mult = alpha ** phi, beta ** phi, gamma ** phi
    new_depths = torch.tensor([math.ceil(depth_mult * int(d)) for d in depths], dtype=torch.int64)  # (S,)
    new_widths = torch.tensor([_round_filters(width_mult * int(w)) for w in widths], dtype=torch.int64)  # (S,)
    return new_depths, new_widths, torch.tensor(int(round(resolution * resolution_mult)), dtype=torch.int64)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                      temperature: float = 4.0, alpha: float = 0.9) -> Tensor:
    """alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (N, K)
    teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)  # (N, K)
    soft = F.kl_div(log_student, teacher, reduction="batchmean") * temperature ** 2
    hard = F.cross_entropy(student_logits.float(), targets.long())
    return alpha * soft + (1.0 - alpha) * hard


def magnitude_prune(weight: Tensor, sparsity: float) -> tuple[Tensor, Tensor]:
    """Unstructured magnitude pruning: the round(sparsity * numel) smallest |w| are set to 0.
    Returns (pruned weight, mask) with mask True where a weight is kept."""
    k = int(round(sparsity * weight.numel()))
    order = weight.abs().flatten().argsort()  # (numel,)
    keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)  # (numel,)
    keep[order[:k]] = False
    mask = keep.view_as(weight)  # (*weight.shape)
    return weight * mask, mask

