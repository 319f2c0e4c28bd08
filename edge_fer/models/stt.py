"""STT: spatio-temporal transformer for dynamic facial expression recognition.

Ma, Sun, Li, "Spatio-Temporal Transformer for Dynamic Facial Expression Recognition in the
Wild" (2022). No official code is public; this follows the paper and its family's public
conventions (Former-DFER, LOGO-Former): a ResNet-18 trunk to ``layer3`` turns each frame
into 7x7 = 49 visual tokens, projected to the embedding dimension; each transformer block
applies spatial attention (tokens of one frame) and temporal attention (one location
across frames) *jointly* - both read the same normalised tokens and their outputs are
summed into the residual stream - then an MLP. Learnable spatial and temporal position
embeddings and a class token; the class token joins every frame's spatial attention and
every location's temporal attention and takes the mean of those updates, so each block's
temporal attention reaches the output (also in the last block). The last block's frame-token
updates never reach the output, so it updates the class token only (the same logits, about
8% less work for the head; see ``SpatioTemporalBlock``).

Model card
    Input ``clip``: (B, T, 3, H, W) float32, RGB, pixels / 255 normalised with ImageNet
        mean/std; T = ``clip_len`` (16), H = W = ``input_size`` (112 for ``stt_base``).
    Output ``logits``: (B, num_classes); classes in the preset's order (DFEW: happy, sad,
        neutral, angry, surprise, disgust, fear).

Streaming split: the trunk works per frame, so ``STT.backbone`` maps one frame to its
tokens (computed once per arriving frame and cached) and ``STT.head`` maps a clip's
cached tokens to logits. ``head(stack(backbone(frame_t)))`` equals ``forward(clip)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_fer.models.resnet import ResNet18Trunk, trunk_output_size

__all__ = ["Attention", "Mlp", "SpatioTemporalBlock", "STTBackbone", "STTHead", "STT"]


class Attention(nn.Module):
    """Multi-head self-attention over (N, L, D) written with plain MatMul/Softmax.

    Explicit ops (rather than a fused kernel) export to ONNX as MatMul nodes that INT8
    quantizers and TensorRT recognise.
    """

    def __init__(self, dim: int, num_heads: int, *, attn_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, queries: int | None = None) -> torch.Tensor:
        """x: (N, L, D) -> (N, L, D); with ``queries=Q`` only the first Q tokens ask, all L
        answer: (N, Q, D), the same values as ``forward(x)[:, :Q]`` at a fraction of the cost."""
        n, length, dim = x.shape
        if queries is None:
            qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, head_dim)
        else:
            # Split by the module's own width (a Python int), not x.shape: exporters then see
            # constant weight slices, fold them, and quantize these MatMuls like any other.
            width, weight, bias = self.num_heads * self.head_dim, self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, :queries], weight[:width], bias[:width])
            q = q.reshape(n, queries, self.num_heads, self.head_dim).transpose(1, 2)  # (N, heads, Q, head_dim)
            kv = F.linear(x, weight[width:], bias[width:]).reshape(n, length, 2, self.num_heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (N, heads, Q or L, L)
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(n, q.shape[2], dim)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SpatioTemporalBlock(nn.Module):
    """Joint spatial + temporal attention, then an MLP, both pre-norm with residuals."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.spatial_attn = Attention(dim, num_heads, dropout=dropout)
        self.temporal_attn = Attention(dim, num_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(
        self, x: torch.Tensor, cls: torch.Tensor, *, class_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T, P, D) frame tokens; cls: (B, 1, D) class token.

        ``class_only``: update only the class token (x is returned as it came). Exact for the
        last block, whose frame-token updates never reach the output: the frame tokens then
        only answer (keys and values), which saves about a third of that block's work.
        """
        b, t, p, d = x.shape
        h = self.norm1(x)
        h_cls = self.norm1(cls).unsqueeze(1)  # (B, 1, 1, D)
        # Spatial: the tokens of one frame, with the class token in front.
        spatial_in = torch.cat([h_cls.expand(b, t, 1, d), h], dim=2).reshape(b * t, 1 + p, d)
        # Temporal: one token location across the frames, with the class token in front.
        temporal_in = torch.cat([h_cls.expand(b, p, 1, d), h.transpose(1, 2)], dim=2).reshape(b * p, 1 + t, d)
        if class_only:
            spatial = self.spatial_attn(spatial_in, queries=1).reshape(b, t, 1, d)
            temporal = self.temporal_attn(temporal_in, queries=1).reshape(b, p, 1, d)
        else:
            spatial = self.spatial_attn(spatial_in).reshape(b, t, 1 + p, d)
            temporal = self.temporal_attn(temporal_in).reshape(b, p, 1 + t, d)
            x = x + spatial[:, :, 1:] + temporal[:, :, 1:].transpose(1, 2)
        # The class token joins every frame's and every location's attention; it takes the
        # mean of those updates, so it sees space and time in every block.
        cls = cls + spatial[:, :, 0].mean(dim=1, keepdim=True) + temporal[:, :, 0].mean(dim=1, keepdim=True)
        if not class_only:
            x = x + self.mlp(self.norm2(x))
        cls = cls + self.mlp(self.norm2(cls))
        return x, cls


class STTBackbone(nn.Module):
    """One frame -> its visual tokens.

    Input ``frames``: (N, 3, H, W) normalised RGB. Output ``tokens``: (N, P, D), P = (H/16)^2.
    """

    def __init__(self, *, embed_dim: int, trunk_width: int = 64) -> None:
        super().__init__()
        self.trunk = ResNet18Trunk(num_layers=3, width=trunk_width)
        self.proj = nn.Linear(self.trunk.out_channels, embed_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        features = self.trunk(frames)  # (N, C, h, w)
        tokens = features.flatten(2).transpose(1, 2)  # (N, h*w, C)
        return self.proj(tokens)  # (N, P, D)


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """(length, dim) sine/cosine position table of the original transformer."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


def sinusoids_2d(num_tokens: int, dim: int) -> torch.Tensor:
    """(num_tokens, dim) table for a square token grid: half the dims encode the row, half the column."""
    side = round(num_tokens**0.5)
    if side * side != num_tokens or dim % 4:
        return sinusoids(num_tokens, dim)
    half = dim // 2
    rows = sinusoids(side, half)[:, None].expand(side, side, half)
    cols = sinusoids(side, half)[None].expand(side, side, half)
    return torch.cat([rows, cols], dim=-1).reshape(num_tokens, dim)


class STTHead(nn.Module):
    """A clip's tokens -> logits.

    Input ``tokens``: (B, T, P, D) from ``STTBackbone``, T <= ``clip_len``, oldest frame
    first. Output ``logits``: (B, num_classes).

    With ``frame_path`` a linear reading of the clip's mean token is added to the logits: a
    frame model's classifier carried over (``train.stt --frame-path``), so what the trunk
    learnt to read from single frames stays in the clip model and the transformer adds to it.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        clip_len: int,
        num_tokens: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float = 0.0,
        frame_path: bool = False,
    ) -> None:
        super().__init__()
        self.frame_fc = nn.Linear(embed_dim, num_classes) if frame_path else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_space = nn.Parameter(torch.zeros(1, 1, num_tokens, embed_dim))
        self.pos_time = nn.Parameter(torch.zeros(1, clip_len, 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(SpatioTemporalBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, num_classes)
        # The last block updates only the class token (exact, ~8% less work). Off for NNCF's
        # torch QAT, which cannot quantize a Linear whose weight is sliced at run time.
        self.class_only_last = True
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        # Learnable position embeddings, initialised with fixed sinusoids rather than small
        # noise: order is then visible from the first step (measured on the synthetic
        # benchmark: about 2x fewer steps to the same accuracy).
        with torch.no_grad():
            self.pos_time.copy_(sinusoids(clip_len, embed_dim)[None, :, None])
            self.pos_space.copy_(sinusoids_2d(num_tokens, embed_dim)[None, None])
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.pos_drop(tokens + self.pos_space + self.pos_time[:, :t])  # (B, T, P, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        for index, block in enumerate(self.blocks):
            x, cls = block(x, cls, class_only=self.class_only_last and index == len(self.blocks) - 1)
        logits = self.fc(self.norm(cls[:, 0]))  # (B, num_classes)
        if self.frame_fc is not None:
            logits = logits + self.frame_fc(tokens.mean(dim=(1, 2)))
        return logits


class STT(nn.Module):
    """Spatio-temporal transformer; see the module docstring for the model card.

    Args:
        num_classes: number of expression classes.
        clip_len: frames per clip (16).
        input_size: frame height = width (112); must give a trunk output of at least 1x1.
        embed_dim: token dimension (512).
        depth: number of spatio-temporal blocks (4).
        num_heads: attention heads (8).
        mlp_ratio: MLP hidden size / embed_dim (4).
        trunk_width: first-stage channels of the ResNet-18 trunk (64 loads published weights).
        dropout: dropout in the transformer head.
        frame_path: add a linear reading of the clip's mean token to the logits (``STTHead``).
    """

    parts = ("full", "backbone", "head")

    def __init__(
        self,
        *,
        num_classes: int,
        clip_len: int = 16,
        input_size: int = 112,
        embed_dim: int = 512,
        depth: int = 4,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        trunk_width: int = 64,
        dropout: float = 0.0,
        frame_path: bool = False,
    ) -> None:
        super().__init__()
        grid = trunk_output_size(input_size, num_layers=3)
        self.clip_len = clip_len
        self.input_size = input_size
        self.num_tokens = grid * grid
        self.embed_dim = embed_dim
        self.backbone = STTBackbone(embed_dim=embed_dim, trunk_width=trunk_width)
        self.head = STTHead(
            num_classes=num_classes,
            clip_len=clip_len,
            num_tokens=self.num_tokens,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            frame_path=frame_path,
        )

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        tokens = self.backbone(clip.flatten(0, 1))  # (B*T, P, D)
        return self.head(tokens.reshape(b, t, self.num_tokens, self.embed_dim))  # (B, num_classes)

    def part(self, name: str) -> nn.Module:
        """The module behind an export part: "full", "backbone" or "head"."""
        return {"full": self, "backbone": self.backbone, "head": self.head}[name]

    def example_input(self, part: str, batch: int = 2) -> torch.Tensor:
        """A random input of the right layout for ``part`` (for export and tests)."""
        size, t, p, d = self.input_size, self.clip_len, self.num_tokens, self.embed_dim
        shapes = {"full": (batch, t, 3, size, size), "backbone": (batch, 3, size, size), "head": (batch, t, p, d)}
        return torch.randn(shapes[part])

    io_names = {"full": ("clip", "logits"), "backbone": ("frames", "tokens"), "head": ("tokens", "logits")}
