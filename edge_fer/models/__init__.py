"""The models (torch): STT for dynamic expressions, HTNet for micro-expressions.

``build_model(preset)`` turns a registered preset (or a ``ModelPreset``) into its module.
"""

from __future__ import annotations

from torch import nn

from edge_fer.errors import PresetError
from edge_fer.models.htnet import HTNet
from edge_fer.models.losses import CompactSoftmaxCrossEntropy
from edge_fer.models.resnet import ResNet18Trunk
from edge_fer.models.stt import STT
from edge_fer.presets import ModelPreset, get_preset

__all__ = ["STT", "HTNet", "ResNet18Trunk", "CompactSoftmaxCrossEntropy", "build_model"]


def build_model(preset: ModelPreset | str) -> nn.Module:
    """Build the untrained model a preset describes.

    The number of classes comes from ``preset.classes``, the input geometry from
    ``preset.preprocessing``, the rest from ``preset.arch``.
    """
    if isinstance(preset, str):
        preset = get_preset(preset)
    pre = preset.preprocessing
    height, width = pre.input_size
    if height != width:
        raise PresetError(f"preset {preset.name!r}: the models take square inputs, got {pre.input_size}")
    try:
        if preset.family == "stt":
            return STT(num_classes=preset.num_classes, clip_len=pre.clip_len, input_size=height, **preset.arch)
        return HTNet(num_classes=preset.num_classes, image_size=height, channels=len(pre.channels), **preset.arch)
    except (TypeError, ValueError) as exc:
        raise PresetError(f"preset {preset.name!r} does not describe a valid {preset.family} model: {exc}") from None
