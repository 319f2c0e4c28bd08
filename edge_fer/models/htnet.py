"""HTNet: hierarchical transformer network for micro-expression recognition.

Wang et al., "HTNet for micro-expression recognition" (Neurocomputing 2024); official code
github.com/wangzhifengharrison/HTNet (``Model.py``). This module rebuilds that
architecture with the same parameter names and the same arithmetic, so a ``state_dict``
saved by the official code loads here (``HTNet.from_official``) and gives the same logits.
It is written with reshape/permute instead of einops so it exports cleanly to ONNX.

Architecture (defaults of the official config): the 28x28x3 input is cut into 7x7 patches
(a 4x4 grid), each patch flattened in (p1, p2, c) order and embedded by a 1x1 conv to
``dim``. Three hierarchies follow; at level L the grid is split into 2^L x 2^L blocks and a
transformer runs inside each block, then an aggregation (3x3 conv -> channel LayerNorm ->
3x3/2 max-pool) halves the grid and doubles the channels: dims 256/512/1024, heads 3/6/12.
Attention, QKV and the FFN are 1x1 convs with pre-norm channel LayerNorm (``g``/``b``).
Head: channel LayerNorm -> spatial mean -> Linear.

Faithful quirks, kept for checkpoint compatibility:
- With a 4x4 patch grid every local block holds a single token, so attention reduces to a
  value projection (softmax over one key is 1).
- The head size is ``dim // heads`` (85 for 256/3), so the attention's inner width is
  ``85 * 3 = 255``, not ``dim``; the official ``dim_head`` argument is unused.
- The position embedding is one learned scalar per token of a block (one, here).

Model card
    Input ``image``: (B, 3, 28, 28) float32, raw 0..255, channels (u, v, optical strain) of
        the onset->apex optical flow, each min-max normalised to 0..255; built by
        ``edge_fer.preprocessing.micro_input.four_patch_image`` (2x2 tiles around eyes and mouth corners).
    Output ``logits``: (B, num_classes); MEGC2019 composite order: negative, positive, surprise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from edge_fer.errors import ArtifactError

__all__ = ["ChannelLayerNorm", "HTNet", "official_config_from_state_dict"]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W), with parameters ``g`` and ``b``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)  # biased, as the official code
        return (x - mean) / (var + self.eps).sqrt() * self.g + self.b


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class ConvAttention(nn.Module):
    """Self-attention over the pixels of (B, C, H, W) with 1x1-conv projections."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads  # official: floor division, inner width may be < dim
        inner = self.head_dim * heads
        self.scale = self.head_dim**-0.5
        self.to_qkv = nn.Conv2d(dim, inner * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(inner, dim, 1), nn.Dropout(dropout))
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=1)  # each (B, heads*head_dim, H, W)
        q, k, v = (t.reshape(b, self.heads, self.head_dim, h * w).transpose(-2, -1) for t in (q, k, v))
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))  # (B, heads, HW, HW)
        out = (attn @ v).transpose(-2, -1).reshape(b, self.heads * self.head_dim, h, w)
        return self.to_out(out)


class ConvFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mult, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv2d(dim * mult, dim, 1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LocalTransformer(nn.Module):
    """Transformer applied inside one block of the grid (B*blocks, C, h, w)."""

    def __init__(self, dim: int, seq_len: int, depth: int, heads: int, mlp_mult: int, dropout: float) -> None:
        super().__init__()
        self.pos_emb = nn.Parameter(torch.randn(seq_len))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, ConvAttention(dim, heads, dropout)),
                    PreNorm(dim, ConvFeedForward(dim, mlp_mult, dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x + self.pos_emb[: h * w].reshape(1, 1, h, w)
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class PatchEmbedRearrange(nn.Module):
    """(B, C, h*p, w*p) -> (B, p*p*C, h, w), flattening each patch in (p1, p2, c) order."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        p = self.patch_size
        h, w = height // p, width // p
        x = x.reshape(b, c, h, p, w, p).permute(0, 3, 5, 1, 2, 4)  # (B, p1, p2, C, h, w)
        return x.reshape(b, p * p * c, h, w)


def _to_blocks(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """(B, C, blocks*h, blocks*w) -> (B*blocks*blocks, C, h, w), row-major over blocks."""
    b, c, height, width = x.shape
    h, w = height // blocks, width // blocks
    x = x.reshape(b, c, blocks, h, blocks, w).permute(0, 2, 4, 1, 3, 5)  # (B, b1, b2, C, h, w)
    return x.reshape(b * blocks * blocks, c, h, w)


def _from_blocks(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """Inverse of ``_to_blocks``."""
    n, c, h, w = x.shape
    x = x.reshape(n // (blocks * blocks), blocks, blocks, c, h, w).permute(0, 3, 1, 4, 2, 5)  # (B, C, b1, h, b2, w)
    return x.reshape(n // (blocks * blocks), c, blocks * h, blocks * w)


class HTNet(nn.Module):
    """Hierarchical transformer over a 28x28 optical-flow patch image; see the module docstring.

    Args:
        num_classes: output classes (3 for the MEGC2019 composite).
        image_size: input height = width (28).
        patch_size: patch side (7); image_size must be divisible by it.
        dim: channels at the first hierarchy (256); doubles at each aggregation.
        heads: heads at the first hierarchy (3); doubles with the channels.
        num_hierarchies: levels (3).
        block_repeats: transformer layers per level, first level first ((2, 2, 10)).
        mlp_mult: FFN expansion (4).
        channels: input channels (3).
        dropout: dropout in attention and FFN.
    """

    parts = ("full",)
    io_names = {"full": ("image", "logits")}

    def __init__(
        self,
        *,
        num_classes: int,
        image_size: int = 28,
        patch_size: int = 7,
        dim: int = 256,
        heads: int = 3,
        num_hierarchies: int = 3,
        block_repeats: int | Sequence[int] = (2, 2, 10),
        mlp_mult: int = 4,
        channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        fmap_size = image_size // patch_size
        top_blocks = 2 ** (num_hierarchies - 1)
        if fmap_size % top_blocks:
            raise ValueError(
                f"a {fmap_size}x{fmap_size} patch grid cannot be split into {top_blocks}x{top_blocks} blocks"
            )
        if isinstance(block_repeats, int):
            block_repeats = (block_repeats,) * num_hierarchies
        if len(block_repeats) != num_hierarchies:
            raise ValueError(f"block_repeats needs {num_hierarchies} entries, got {tuple(block_repeats)}")
        self.image_size = image_size
        self.channels = channels
        seq_len = (fmap_size // top_blocks) ** 2  # tokens per block, the same at every level
        dims = [dim * 2**i for i in range(num_hierarchies)]
        self.to_patch_embedding = nn.Sequential(
            PatchEmbedRearrange(patch_size), nn.Conv2d(channels * patch_size**2, dims[0], 1)
        )
        self.layers = nn.ModuleList()
        for index, repeats in enumerate(block_repeats):
            is_last = index == num_hierarchies - 1
            dim_in = dims[index]
            dim_out = dim_in if is_last else dims[index + 1]
            aggregate = (
                nn.Identity()
                if is_last
                else nn.Sequential(
                    nn.Conv2d(dim_in, dim_out, 3, padding=1),
                    ChannelLayerNorm(dim_out),
                    nn.MaxPool2d(3, stride=2, padding=1),
                )
            )
            self.layers.append(
                nn.ModuleList(
                    [LocalTransformer(dim_in, seq_len, repeats, heads * 2**index, mlp_mult, dropout), aggregate]
                )
            )
        self.mlp_head = nn.Sequential(ChannelLayerNorm(dims[-1]), _SpatialMean(), nn.Linear(dims[-1], num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.to_patch_embedding(image)  # (B, dim, 4, 4)
        num_levels = len(self.layers)
        for index, (transformer, aggregate) in enumerate(self.layers):
            blocks = 2 ** (num_levels - 1 - index)
            x = _from_blocks(transformer(_to_blocks(x, blocks)), blocks)
            x = aggregate(x)
        return self.mlp_head(x)

    def part(self, name: str) -> nn.Module:
        if name != "full":
            raise KeyError(f"HTNet has only the 'full' part, not {name!r}")
        return self

    def example_input(self, part: str = "full", batch: int = 2) -> torch.Tensor:
        self.part(part)
        return torch.rand(batch, self.channels, self.image_size, self.image_size) * 255.0

    @classmethod
    def from_official(cls, state_dict: Mapping[str, torch.Tensor], *, heads: int = 3, dropout: float = 0.0) -> HTNet:
        """Build an HTNet from a ``state_dict`` saved by the official HTNet code.

        The configuration (patch size, dims, levels, blocks per level, MLP expansion,
        classes, image size) is read from the tensors' names and shapes; ``heads`` cannot
        always be (the inner width ``(dim // heads) * heads`` equals ``dim`` for several
        head counts), so it defaults to the official 3 and is checked against the weights.

        Raises:
            ArtifactError: the dict is not an official-layout HTNet state dict.
        """
        config = official_config_from_state_dict(state_dict, heads=heads)
        model = cls(**config, dropout=dropout)
        cleaned = {k.removeprefix("module."): v for k, v in state_dict.items()}
        try:
            model.load_state_dict(cleaned, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ArtifactError(
                f"official HTNet state dict does not fit the inferred config {config}: {' '.join(first[:3])[:300]}"
            ) from None
        return model


class _SpatialMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def official_config_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, heads: int = 3) -> dict:
    """Constructor arguments of ``HTNet`` read from an official-layout ``state_dict``."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    try:
        embed = sd["to_patch_embedding.1.weight"]  # (dim, channels * p * p, 1, 1)
        head = sd["mlp_head.2.weight"]  # (num_classes, last_dim)
    except KeyError as exc:
        raise ArtifactError(
            f"not an official HTNet state dict: key {exc.args[0]!r} is missing "
            "(expected to_patch_embedding.1.*, layers.*, mlp_head.*)"
        ) from None
    level_keys = [re.match(r"layers\.(\d+)\.0\.layers\.(\d+)\.", k) for k in sd]
    levels: dict[int, set[int]] = {}
    for match in filter(None, level_keys):
        levels.setdefault(int(match[1]), set()).add(int(match[2]))
    if not levels or sorted(levels) != list(range(len(levels))):
        raise ArtifactError("not an official HTNet state dict: no transformer layers under layers.<i>.0.layers.<j>")
    num_hierarchies = len(levels)
    dim, patch_dim = int(embed.shape[0]), int(embed.shape[1])
    channels = 3
    patch_size = math.isqrt(patch_dim // channels)
    if channels * patch_size**2 != patch_dim:
        raise ArtifactError(f"patch embedding takes {patch_dim} inputs, not 3 * p^2 for an integer p")
    seq_len = int(sd["layers.0.0.pos_emb"].numel())
    fmap_size = math.isqrt(seq_len) * 2 ** (num_hierarchies - 1)
    inner = int(sd["layers.0.0.layers.0.0.fn.to_qkv.weight"].shape[0]) // 3
    if (dim // heads) * heads != inner:
        raise ArtifactError(f"attention inner width {inner} does not match dim {dim} with {heads} heads; pass heads=")
    mlp_mult = int(sd["layers.0.0.layers.0.1.fn.net.0.weight"].shape[0]) // dim
    return dict(
        num_classes=int(head.shape[0]),
        image_size=fmap_size * patch_size,
        patch_size=patch_size,
        dim=dim,
        heads=heads,
        num_hierarchies=num_hierarchies,
        block_repeats=tuple(len(levels[i]) for i in range(num_hierarchies)),
        mlp_mult=mlp_mult,
        channels=channels,
    )
