"""HTNet against the official code's layout and arithmetic.

The official code is not vendored. Instead this file (1) writes out the state-dict key
names and shapes that the official ``Model.py`` produces for a config, fills them with
random values, and (2) computes the official forward pass directly from that dict with
explicit loops (patch by patch, block by block, head by head), independently of the
module under test. ``HTNet.from_official`` must load the dict strictly and agree.
"""

import pytest
import torch
import torch.nn.functional as F

from edge_fer.errors import ArtifactError
from edge_fer.models import HTNet, build_model
from edge_fer.models.htnet import official_config_from_state_dict

OFFICIAL = dict(
    image_size=28,
    patch_size=7,
    dim=256,
    heads=3,
    num_hierarchies=3,
    block_repeats=(2, 2, 10),
    mlp_mult=4,
    num_classes=3,
)


def official_state_dict(image_size, patch_size, dim, heads, num_hierarchies, block_repeats, mlp_mult, num_classes):
    """Key names and shapes of the official HTNet's state_dict, random values."""
    g = torch.Generator().manual_seed(1)

    def rnd(*shape, scale=None):
        fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1) if len(shape) > 1 else 1
        return torch.randn(*shape, generator=g) * (scale if scale is not None else fan_in**-0.5)

    sd = {}
    fmap = image_size // patch_size
    seq_len = (fmap // 2 ** (num_hierarchies - 1)) ** 2
    sd["to_patch_embedding.1.weight"] = rnd(dim, 3 * patch_size**2, 1, 1)
    sd["to_patch_embedding.1.bias"] = rnd(dim, scale=0.1)
    for level in range(num_hierarchies):
        d, h = dim * 2**level, heads * 2**level
        inner = (d // h) * h  # the official head size is dim // heads
        p = f"layers.{level}.0."
        sd[p + "pos_emb"] = rnd(seq_len, scale=1.0)
        for j in range(block_repeats[level]):
            q = f"{p}layers.{j}."
            sd[q + "0.norm.g"] = 1 + rnd(1, d, 1, 1, scale=0.1)
            sd[q + "0.norm.b"] = rnd(1, d, 1, 1, scale=0.1)
            sd[q + "0.fn.to_qkv.weight"] = rnd(inner * 3, d, 1, 1)
            sd[q + "0.fn.to_out.0.weight"] = rnd(d, inner, 1, 1)
            sd[q + "0.fn.to_out.0.bias"] = rnd(d, scale=0.1)
            sd[q + "1.norm.g"] = 1 + rnd(1, d, 1, 1, scale=0.1)
            sd[q + "1.norm.b"] = rnd(1, d, 1, 1, scale=0.1)
            sd[q + "1.fn.net.0.weight"] = rnd(d * mlp_mult, d, 1, 1)
            sd[q + "1.fn.net.0.bias"] = rnd(d * mlp_mult, scale=0.1)
            sd[q + "1.fn.net.3.weight"] = rnd(d, d * mlp_mult, 1, 1)
            sd[q + "1.fn.net.3.bias"] = rnd(d, scale=0.1)
        if level < num_hierarchies - 1:
            sd[f"layers.{level}.1.0.weight"] = rnd(2 * d, d, 3, 3)
            sd[f"layers.{level}.1.0.bias"] = rnd(2 * d, scale=0.1)
            sd[f"layers.{level}.1.1.g"] = 1 + rnd(1, 2 * d, 1, 1, scale=0.1)
            sd[f"layers.{level}.1.1.b"] = rnd(1, 2 * d, 1, 1, scale=0.1)
    last = dim * 2 ** (num_hierarchies - 1)
    sd["mlp_head.0.g"] = 1 + rnd(1, last, 1, 1, scale=0.1)
    sd["mlp_head.0.b"] = rnd(1, last, 1, 1, scale=0.1)
    sd["mlp_head.2.weight"] = rnd(num_classes, last)
    sd["mlp_head.2.bias"] = rnd(num_classes, scale=0.1)
    return sd


def chan_ln(x, g, b):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), g.flatten(), b.flatten(), eps=1e-5).permute(0, 3, 1, 2)


def reference_forward(sd, img, *, patch_size, heads, num_hierarchies):
    """The official forward pass, computed from the state dict with explicit loops."""
    img = img.double()
    sd = {k: v.double() for k, v in sd.items()}
    b, c, height, width = img.shape
    grid = height // patch_size
    emb = torch.zeros(b, patch_size * patch_size * c, grid, grid, dtype=torch.float64)
    for i in range(grid):
        for j in range(grid):
            patch = img[:, :, i * patch_size : (i + 1) * patch_size, j * patch_size : (j + 1) * patch_size]
            emb[:, :, i, j] = patch.permute(0, 2, 3, 1).reshape(b, -1)  # (p1 p2 c) order
    x = F.conv2d(emb, sd["to_patch_embedding.1.weight"], sd["to_patch_embedding.1.bias"])
    for level in range(num_hierarchies):
        blocks = 2 ** (num_hierarchies - 1 - level)
        side = x.shape[-1] // blocks
        n_heads = heads * 2**level
        pre = f"layers.{level}.0."
        depth = len({k.split(".")[4] for k in sd if k.startswith(pre + "layers.")})
        out = torch.empty_like(x)
        for bi in range(blocks):
            for bj in range(blocks):
                xb = x[:, :, bi * side : (bi + 1) * side, bj * side : (bj + 1) * side]
                xb = xb + sd[pre + "pos_emb"][: side * side].reshape(1, 1, side, side)
                for j in range(depth):
                    q = f"{pre}layers.{j}."
                    h = chan_ln(xb, sd[q + "0.norm.g"], sd[q + "0.norm.b"])
                    qkv = F.conv2d(h, sd[q + "0.fn.to_qkv.weight"]).flatten(2)  # (B, 3*inner, n)
                    inner = qkv.shape[1] // 3
                    dh = inner // n_heads
                    heads_out = []
                    for hd in range(n_heads):
                        qh = qkv[:, hd * dh : (hd + 1) * dh]
                        kh = qkv[:, inner + hd * dh : inner + (hd + 1) * dh]
                        vh = qkv[:, 2 * inner + hd * dh : 2 * inner + (hd + 1) * dh]
                        att = torch.softmax(qh.transpose(1, 2) @ kh * dh**-0.5, dim=-1)  # (B, n, n)
                        heads_out.append((att @ vh.transpose(1, 2)).transpose(1, 2))  # (B, dh, n)
                    attn = torch.cat(heads_out, 1).reshape(b, inner, side, side)
                    xb = F.conv2d(attn, sd[q + "0.fn.to_out.0.weight"], sd[q + "0.fn.to_out.0.bias"]) + xb
                    h = chan_ln(xb, sd[q + "1.norm.g"], sd[q + "1.norm.b"])
                    h = F.gelu(F.conv2d(h, sd[q + "1.fn.net.0.weight"], sd[q + "1.fn.net.0.bias"]))
                    xb = F.conv2d(h, sd[q + "1.fn.net.3.weight"], sd[q + "1.fn.net.3.bias"]) + xb
                out[:, :, bi * side : (bi + 1) * side, bj * side : (bj + 1) * side] = xb
        x = out
        if level < num_hierarchies - 1:
            a = f"layers.{level}.1."
            x = F.conv2d(x, sd[a + "0.weight"], sd[a + "0.bias"], padding=1)
            x = F.max_pool2d(chan_ln(x, sd[a + "1.g"], sd[a + "1.b"]), 3, stride=2, padding=1)
    x = chan_ln(x, sd["mlp_head.0.g"], sd["mlp_head.0.b"]).mean(dim=(2, 3))
    return x @ sd["mlp_head.2.weight"].T + sd["mlp_head.2.bias"]


@pytest.mark.isa
def test_official_default_config_loads_and_matches():
    sd = official_state_dict(**OFFICIAL)
    model = HTNet.from_official(sd).eval()
    assert set(model.state_dict()) == set(sd)
    img = torch.rand(3, 3, 28, 28) * 255  # raw 0..255, as the official code feeds it
    with torch.no_grad():
        ours = model(img).double()
    ref = reference_forward(sd, img, patch_size=7, heads=3, num_hierarchies=3)
    assert (ours - ref).abs().max().item() <= 1e-4
    assert ref.std() > 0.1  # the comparison is not between two near-constant outputs


def test_inner_width_quirk():
    """dim // heads per head: 85 * 3 = 255 channels inside the first level's attention."""
    model = build_model("htnet_official")
    assert model.layers[0][0].layers[0][0].fn.to_qkv.weight.shape == (765, 256, 1, 1)
    assert model.layers[2][0].layers[0][0].fn.to_out[0].weight.shape == (1024, 1020, 1, 1)
    assert 135e6 < sum(p.numel() for p in model.parameters()) < 145e6


def test_config_is_read_from_the_weights():
    """The training script of the official repo uses block_repeats=(2, 2, 8)."""
    config = dict(OFFICIAL, dim=32, block_repeats=(2, 2, 8), num_classes=5)
    sd = official_state_dict(**config)
    inferred = official_config_from_state_dict(sd)
    assert {k: inferred[k] for k in config} == config
    model = HTNet.from_official({f"module.{k}": v for k, v in sd.items()}).eval()
    img = torch.rand(2, 3, 28, 28) * 255
    with torch.no_grad():
        ours = model(img).double()
    assert (ours - reference_forward(sd, img, patch_size=7, heads=3, num_hierarchies=3)).abs().max() <= 1e-4


@pytest.mark.isa
def test_multi_token_blocks_attend_correctly():
    """At 56x56 every local block holds 4 tokens, so attention is more than a V projection."""
    config = dict(OFFICIAL, image_size=56, dim=24, block_repeats=(1, 1, 2))
    sd = official_state_dict(**config)
    model = HTNet.from_official(sd).eval()
    assert model.image_size == 56
    img = torch.rand(2, 3, 56, 56) * 255
    with torch.no_grad():
        ours = model(img).double()
    assert (ours - reference_forward(sd, img, patch_size=7, heads=3, num_hierarchies=3)).abs().max() <= 1e-4


def test_not_an_htnet_state_dict_is_refused():
    with pytest.raises(ArtifactError, match="not an official HTNet"):
        HTNet.from_official({"conv1.weight": torch.zeros(1)})
    sd = official_state_dict(**dict(OFFICIAL, dim=32))
    sd["mlp_head.2.weight"] = torch.zeros(3, 7)
    with pytest.raises(ArtifactError, match="does not fit"):
        HTNet.from_official(sd)


@pytest.mark.parametrize("name", ["htnet_official", "htnet_light"])
def test_forward_and_gradients(name):
    model = build_model(name).train()
    img = model.example_input("full", batch=4)
    logits = model(img)
    assert logits.shape == (4, 3)
    F.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
