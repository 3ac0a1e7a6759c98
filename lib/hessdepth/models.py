"""CIFAR ResNet-(6n+2) and its "simple" twin with the skip additions removed.

He et al. (2016), section 4.2: a 3x3 input conv, three stages of n basic blocks (two 3x3 convs
each) with w, 2w, 4w filters at 32x32, 16x16, 8x8, BatchNorm after every conv, global average
pooling and one linear layer. Shortcuts are parameter-free (option A: stride-2 subsampling and
zero-padded channels), so ``resnet`` and ``simple`` nets of one depth have identical parameter
lists; ``simple`` only drops the addition.

Initialisation: Kaiming normal (fan_out, ReLU gain) for convs, BatchNorm weight 1 and bias 0,
PyTorch's default uniform init for the linear layer.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

ARCHS = ("resnet", "simple")
_MODEL_ID = re.compile(r"^(resnet|simple)(\d+)$")


def check_depth(depth: int) -> int:
    """Return n for a depth of 6n+2 layers (n >= 1), or raise ValueError."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), got {depth!r}")
    return (depth - 2) // 6


def model_id(arch: str, depth: int) -> str:
    """The one name of a model everywhere: ``resnet20``, ``simple80``."""
    return f"{arch}{depth}"


def parse_model_id(name: str) -> tuple[str, int]:
    """``"simple80"`` -> ``("simple", 80)``."""
    match = _MODEL_ID.match(name)
    if not match:
        raise ValueError(f"model id must look like 'resnet20' or 'simple80', got {name!r}")
    arch, depth = match.group(1), int(match.group(2))
    check_depth(depth)
    return arch, depth


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the extra channels."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.extra = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            front = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, front, self.extra - front))
        return x


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = ZeroPadShortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images; ``residual=False`` gives the simple net."""

    def __init__(self, depth: int, residual: bool, width: int = 16, num_classes: int = 10):
        super().__init__()
        n = check_depth(depth)
        self.depth, self.residual, self.width = depth, residual, width
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_planes = [], width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, residual))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def build_model(arch: str, depth: int, width: int = 16, num_classes: int = 10) -> CifarResNet:
    """A CIFAR ``resnet`` or ``simple`` net of ``depth = 6n+2`` layers (float32, on the CPU)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return CifarResNet(depth, residual=(arch == "resnet"), width=width, num_classes=num_classes)


def resnet_blocks() -> dict[str, tuple[str, ...]]:
    """The natural parameter blocks of a :class:`CifarResNet` (either arch), as name -> prefixes:
    the input conv with its BatchNorm, each of the three stages, and the classifier."""
    return {
        "input": ("conv1.", "bn1."),
        "stage1": ("layer1.",),
        "stage2": ("layer2.",),
        "stage3": ("layer3.",),
        "classifier": ("fc.",),
    }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_count(depth: int, width: int = 16, num_classes: int = 10) -> int:
    """Parameters of :func:`build_model` (either arch: the shortcuts have none), without building it."""
    n = check_depth(depth)
    total = 3 * width * 9 + 2 * width + 4 * width * num_classes + num_classes  # conv1, bn1, fc
    for c_in, c in ((width, width), (width, 2 * width), (2 * width, 4 * width)):
        total += 9 * c_in * c + 9 * c * c + 4 * c  # the stage's first block (two convs, two BNs)
        total += (n - 1) * (18 * c * c + 4 * c)  # its other blocks
    return total
