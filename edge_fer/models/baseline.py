"""Single-frame baseline: the STT trunk on one frame, pooled, then a linear classifier.

It exists to measure what the clip adds: trained on random single frames of the training
clips, evaluated on the middle frame of each test clip. Same trunk and input as the STT
preset it is built from.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_fer.models.resnet import ResNet18Trunk
from edge_fer.presets import ModelPreset

__all__ = ["FrameBaseline"]


class FrameBaseline(nn.Module):
    """Input ``frame``: (B, 3, H, W) normalised RGB. Output ``logits``: (B, num_classes)."""

    parts = ("full",)
    io_names = {"full": ("frame", "logits")}

    def __init__(self, *, num_classes: int, trunk_width: int = 64, input_size: int = 112, dropout: float = 0.0) -> None:
        super().__init__()
        self.input_size = input_size
        self.trunk = ResNet18Trunk(num_layers=3, width=trunk_width)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.trunk.out_channels, num_classes)

    @classmethod
    def from_preset(cls, preset: ModelPreset) -> FrameBaseline:
        return cls(
            num_classes=preset.num_classes,
            trunk_width=preset.arch.get("trunk_width", 64),
            input_size=preset.preprocessing.input_size[0],
            dropout=preset.arch.get("dropout", 0.0),
        )

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        features = self.trunk(frame).mean(dim=(2, 3))  # (B, C)
        return self.fc(self.drop(features))

    def part(self, name: str) -> nn.Module:
        if name != "full":
            raise KeyError(f"FrameBaseline has only the 'full' part, not {name!r}")
        return self

    def example_input(self, part: str = "full", batch: int = 2) -> torch.Tensor:
        return torch.randn(batch, 3, self.input_size, self.input_size)
