"""ResNet-18 trunk with torchvision's state-dict key names.

Written here because torchvision's wheels do not import beside the CPU torch build we
pin, and because STT needs only the trunk up to ``layer3``. The parameter names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...), so
a ResNet-18 weights file (ImageNet from torchvision, or MS-Celeb-1M as used by the DFER
papers) loads with strict key matching on the layers kept.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from edge_fer.errors import ArtifactError

__all__ = ["BasicBlock", "ResNet18Trunk", "trunk_output_size"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (torchvision's ``BasicBlock``)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def trunk_output_size(input_size: int, num_layers: int) -> int:
    """Spatial size of the trunk's output for a square input.

    conv1 and maxpool halve the input; layer2..layer4 each halve it again. Every strided op
    here maps n to (n - 1) // 2 + 1.
    """
    size = input_size
    for _ in range(2 + max(0, num_layers - 1)):
        size = (size - 1) // 2 + 1
    return size


class ResNet18Trunk(nn.Module):
    """ResNet-18 from the stem up to ``layer{num_layers}``, without pooling or classifier.

    Input: (N, 3, H, W) float, RGB, normalised with ImageNet mean/std.
    Output: (N, C, H/16, W/16) for ``num_layers=3``, C = 4 * ``width`` (256 at width 64).

    Args:
        num_layers: how many residual stages to keep (1-4). STT keeps 3.
        width: channels of the first stage (64 in ResNet-18). Only width 64 can load
            published ResNet-18 weights; smaller widths make CPU-sized models.
    """

    def __init__(self, *, num_layers: int = 3, width: int = 64) -> None:
        super().__init__()
        if not 1 <= num_layers <= 4:
            raise ValueError(f"num_layers must be 1..4, got {num_layers}")
        self.num_layers = num_layers
        self.width = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = width
        for index in range(1, num_layers + 1):
            out_channels = width * 2 ** (index - 1)
            stride = 1 if index == 1 else 2
            stage = nn.Sequential(BasicBlock(channels, out_channels, stride), BasicBlock(out_channels, out_channels))
            self.add_module(f"layer{index}", stage)
            channels = out_channels
        self.out_channels = channels
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(1, self.num_layers + 1):
            x = getattr(self, f"layer{index}")(x)
        return x

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load ResNet-18 weights saved with torchvision's key names.

        Keys of stages this trunk does not keep (``layer4``, ``fc``) are dropped; a
        ``module.`` prefix (DataParallel) is removed. Every kept key must be present
        with the right shape (``num_batches_tracked`` may be absent in old files).

        Raises:
            ArtifactError: keys are missing or shapes differ; the message names them.
        """
        kept = {f"layer{i}." for i in range(1, self.num_layers + 1)} | {"conv1.", "bn1."}
        cleaned = {}
        for key, value in state_dict.items():
            key = key.removeprefix("module.")
            if any(key.startswith(prefix) for prefix in kept):
                cleaned[key] = value
        own = self.state_dict()
        missing = [k for k in own if k not in cleaned and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in cleaned if k not in own]
        wrong_shape = [
            f"{k} {tuple(cleaned[k].shape)} != {tuple(own[k].shape)}"
            for k in cleaned
            if k in own and tuple(cleaned[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or wrong_shape:
            details = "; ".join(
                part
                for part in (
                    f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}" if missing else "",
                    f"unexpected {unexpected[:3]}" if unexpected else "",
                    f"shape {wrong_shape[:2]}" if wrong_shape else "",
                )
                if part
            )
            raise ArtifactError(
                f"not a ResNet-18 state dict for this trunk (width {self.width}): {details}. "
                "Expected torchvision key names (conv1, bn1, layer1.0.conv1, ...); "
                "published weights fit width 64 only"
            )
        for key in own:
            if key.endswith("num_batches_tracked") and key not in cleaned:
                cleaned[key] = own[key]
        self.load_state_dict(cleaned, strict=True)
