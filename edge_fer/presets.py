"""Model presets: plain data that travel with every checkpoint and artifact.

A preset says which architecture to build (``family`` + ``arch`` constructor arguments),
which classes it predicts and in what order, and exactly how its input is prepared
(``Preprocessing``). Training, export and the runtime all read it from here or from the
artifact that carries it; nobody hard-codes 112 or the class order twice.

This module imports neither torch nor OpenCV, so the edge runtime can use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from edge_fer.errors import PresetError

__all__ = [
    "DFER_CLASSES",
    "MICRO_CLASSES",
    "CLASS_SYNONYMS",
    "canonical_class",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocessing",
    "ModelPreset",
    "PRESETS",
    "get_preset",
    "list_presets",
]

# DFEW / AFEW / FERV39k label order (DFEW's labels 1..7 minus one).
DFER_CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
# MEGC2019 composite micro-expression classes.
MICRO_CLASSES = ("negative", "positive", "surprise")
# Datasets name the same emotion differently (CK+ and MAFW "anger"/"sadness"/"happiness",
# DFEW "angry"/"sad"/"happy"). The one table that says which names are the same class, so a
# model of one dataset can be scored on another by name (``canonical_class``).
CLASS_SYNONYMS = {"anger": "angry", "sadness": "sad", "happiness": "happy"}


def canonical_class(name: str) -> str:
    """A class name in the DFER vocabulary ("Anger" -> "angry"); unknown names lower-cased as they are."""
    name = name.strip().lower()
    return CLASS_SYNONYMS.get(name, name)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FAMILIES = ("stt", "htnet")


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input tensor is made from images.

    ``model_input = (pixels / value_scale - mean) / std`` per channel, in ``channels``
    order, resized to ``input_size``.

    Attributes:
        input_size: (height, width) of one frame or image fed to the model.
        clip_len: frames per clip (1 for single-image models such as HTNet).
        fps: frame rate the clip is sampled at when streaming (None: not a clip model).
        channels: channel order of the input, e.g. ("R", "G", "B") or ("u", "v", "strain").
        value_scale: divide raw 0-255 values by this first (255 gives 0..1, 1 keeps 0..255).
        mean: per-channel mean subtracted after scaling.
        std: per-channel standard deviation divided by after subtracting the mean.
        patch_convention: HTNet only: how the four patches are cropped from the flow image
            ("official": the official code's transposed crop; "xy": geometric). See
            ``edge_fer.preprocessing.micro_input``.
    """

    input_size: tuple[int, int]
    clip_len: int
    fps: float | None
    channels: tuple[str, ...]
    value_scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    patch_convention: str | None = None

    def __post_init__(self) -> None:
        if self.patch_convention not in (None, "official", "xy"):
            raise PresetError(
                f"preprocessing: patch_convention must be 'official', 'xy' or None, got {self.patch_convention!r}"
            )
        n = len(self.channels)
        if len(self.mean) != n or len(self.std) != n:
            raise PresetError(
                f"preprocessing: mean/std need one value per channel {self.channels}, "
                f"got mean={self.mean}, std={self.std}"
            )
        if self.clip_len < 1 or min(self.input_size) < 1:
            raise PresetError(
                f"preprocessing: clip_len and input_size must be positive, "
                f"got clip_len={self.clip_len}, input_size={self.input_size}"
            )


@dataclass(frozen=True)
class ModelPreset:
    """Everything needed to rebuild a model and feed it correctly.

    Attributes:
        name: registry name, e.g. "stt_base".
        family: architecture family: "stt" or "htnet".
        classes: class names in the order of the model's logits.
        preprocessing: how the input is prepared.
        arch: keyword arguments of the family's model constructor (besides the number of
            classes and the input geometry, which come from ``classes``/``preprocessing``).
        description: one line for humans.
    """

    name: str
    family: str
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    arch: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise PresetError(f"preset {self.name!r}: unknown family {self.family!r}; expected one of {FAMILIES}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise PresetError(f"preset {self.name!r}: need two or more distinct class names, got {self.classes}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_classes(self, classes: tuple[str, ...] | list[str]) -> ModelPreset:
        """The same architecture for another label set (e.g. MAFW's 11 classes)."""
        return dataclasses.replace(self, classes=tuple(classes))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; ``ModelPreset.from_dict`` reverses it."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelPreset:
        """Rebuild a preset from ``to_dict`` output (e.g. a checkpoint or sidecar)."""
        try:
            pre = dict(data["preprocessing"])
            preprocessing = Preprocessing(
                input_size=tuple(pre["input_size"]),
                clip_len=int(pre["clip_len"]),
                fps=None if pre.get("fps") is None else float(pre["fps"]),
                channels=tuple(pre["channels"]),
                value_scale=float(pre["value_scale"]),
                mean=tuple(float(v) for v in pre["mean"]),
                std=tuple(float(v) for v in pre["std"]),
                patch_convention=pre.get("patch_convention"),
            )
            return cls(
                name=str(data["name"]),
                family=str(data["family"]),
                classes=tuple(str(c) for c in data["classes"]),
                preprocessing=preprocessing,
                arch={k: _tupled(v) for k, v in dict(data.get("arch", {})).items()},
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PresetError(
                f"malformed preset record ({type(exc).__name__}: {exc}); expected the output of ModelPreset.to_dict()"
            ) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    # JSON has no tuples; constructor arguments such as block_repeats were tuples.
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


_RGB_112 = Preprocessing(
    input_size=(112, 112),
    clip_len=16,
    fps=8.0,
    channels=("R", "G", "B"),
    value_scale=255.0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)
# Official HTNet input: a 28x28 optical-flow image (u, v, optical strain), each channel
# min-max normalised to 0..255 and fed raw, without mean/std.
_FLOW_28 = Preprocessing(
    input_size=(28, 28),
    clip_len=1,
    fps=None,
    channels=("u", "v", "strain"),
    value_scale=1.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="stt_base",
            family="stt",
            classes=DFER_CLASSES,
            preprocessing=_RGB_112,
            arch=dict(embed_dim=512, depth=4, num_heads=8, mlp_ratio=4.0, trunk_width=64, dropout=0.1),
            description="STT as in the paper family: ResNet-18 to layer3 (7x7x256 per frame), 4 blocks, dim 512",
        ),
        ModelPreset(
            name="stt_tiny",
            family="stt",
            classes=DFER_CLASSES,
            preprocessing=dataclasses.replace(_RGB_112, input_size=(64, 64)),
            arch=dict(embed_dim=96, depth=2, num_heads=4, mlp_ratio=2.0, trunk_width=16, dropout=0.1),
            description="small STT for CPU training in minutes: 64x64 input, quarter-width trunk, 2 blocks, dim 96",
        ),
        ModelPreset(
            name="htnet_official",
            family="htnet",
            classes=MICRO_CLASSES,
            preprocessing=dataclasses.replace(_FLOW_28, patch_convention="official"),
            arch=dict(patch_size=7, dim=256, heads=3, num_hierarchies=3, block_repeats=(2, 2, 10), mlp_mult=4),
            description="HTNet exactly as the official code builds it (loads its state dicts), ~140M parameters",
        ),
        ModelPreset(
            name="htnet_light",
            family="htnet",
            classes=MICRO_CLASSES,
            preprocessing=dataclasses.replace(_FLOW_28, patch_convention="xy"),
            arch=dict(patch_size=7, dim=64, heads=2, num_hierarchies=3, block_repeats=(1, 1, 2), mlp_mult=2),
            description="official architecture, quarter width, 4 blocks instead of 14 (~1.6M params), for CPUs",
        ),
    )
}


def list_presets() -> list[str]:
    """Names of the registered presets."""
    return sorted(PRESETS)


def get_preset(name: str) -> ModelPreset:
    """Look up a registered preset by name.

    Raises:
        PresetError: the name is not registered (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; known presets: {', '.join(list_presets())}") from None
