import dataclasses

import numpy as np
import pytest
import torch

from edge_fer.models import CompactSoftmaxCrossEntropy, build_model
from edge_fer.presets import PRESETS, get_preset

STT_PRESETS = sorted(n for n, p in PRESETS.items() if p.family == "stt")


@pytest.mark.parametrize("name", STT_PRESETS)
def test_forward_shapes(name):
    preset = get_preset(name)
    model = build_model(preset).eval()
    clip = model.example_input("full", batch=2)
    assert clip.shape == (2, preset.preprocessing.clip_len, 3, *preset.preprocessing.input_size)
    tokens = model.backbone(clip[:, 0])
    assert tokens.shape == (2, model.num_tokens, model.embed_dim)
    logits = model(clip)
    assert logits.shape == (2, preset.num_classes)
    assert torch.isfinite(logits).all()


def test_stt_base_is_the_paper_family_geometry():
    model = build_model("stt_base")
    assert model.num_tokens == 49 and model.embed_dim == 512 and len(model.head.blocks) == 4
    assert model.backbone.trunk.out_channels == 256
    params = sum(p.numel() for p in model.parameters())
    assert 15e6 < params < 25e6  # Former-DFER, the same family, reports 18M


@pytest.mark.isa
@pytest.mark.parametrize("name", STT_PRESETS)
def test_split_equals_full(name):
    """head(stack(backbone(frame_t))) == full(clip): the basis of streaming inference."""
    model = build_model(name).eval()
    clip = model.example_input("full", batch=2)
    with torch.no_grad():
        full = model(clip)
        per_frame = [model.backbone(clip[:, t]) for t in range(clip.shape[1])]  # as frames arrive
        split = model.head(torch.stack(per_frame, dim=1))
    assert (full - split).abs().max().item() <= 1e-5


@pytest.mark.isa
def test_class_only_last_block_is_exact():
    """The last block updates only the class token (its frame-token updates never reach the
    output): the same logits as the full block, for about a third less of that block's work."""
    torch.manual_seed(0)
    model = build_model("stt_base").eval()
    tokens = model.example_input("head", batch=2)
    block = model.head.blocks[-1]
    cls = torch.randn(2, 1, model.embed_dim)
    with torch.no_grad():
        _, full_cls = block(tokens, cls)
        kept_tokens, class_only_cls = block(tokens, cls, class_only=True)
        attn = block.spatial_attn
        x = torch.randn(3, 50, model.embed_dim)
        assert (attn(x, queries=1) - attn(x)[:, :1]).abs().max().item() <= 1e-5
    assert (class_only_cls - full_cls).abs().max().item() <= 1e-5
    assert kept_tokens is tokens


def test_every_parameter_gets_a_gradient():
    model = build_model("stt_tiny").train()
    clip = model.example_input("full", batch=4)
    loss = CompactSoftmaxCrossEntropy(0.1)(model(clip), torch.tensor([0, 1, 1, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert any(p.grad.abs().sum() > 0 for p in model.head.blocks[0].temporal_attn.parameters())


def test_temporal_order_matters():
    """A clip model, not a bag of frames: reversing time changes the prediction."""
    model = build_model("stt_tiny").eval()
    clip = model.example_input("full", batch=1)
    with torch.no_grad():
        assert not torch.allclose(model(clip), model(clip.flip(1)), atol=1e-6)


@pytest.mark.slow
def test_head_learns_frame_order():
    """The head fits a task no single frame and no bag of frames can solve: the order.

    Two classes hold the same frames' tokens, once forwards, once backwards. Order reaches
    the head only through the temporal position embeddings, so this takes ~150 steps.
    """
    torch.manual_seed(1)
    model = build_model(get_preset("stt_tiny").with_classes(("forwards", "backwards")))
    head = model.head.train()
    content = torch.randn(model.clip_len, model.num_tokens, model.embed_dim)  # (T, P, D)
    clips = torch.stack([content, content.flip(0)] * 4)
    labels = torch.tensor([0, 1] * 4)
    optim = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(250):
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(clips), labels)
        loss.backward()
        optim.step()
    head.eval()
    with torch.no_grad():
        assert (head(clips).argmax(1) == labels).all()
    assert loss.item() < 0.1


def _frame_path_model():
    preset = get_preset("stt_tiny")
    return build_model(dataclasses.replace(preset, arch={**preset.arch, "frame_path": True})).eval()


@pytest.mark.isa
def test_frame_path_streams_and_exports(tmp_path):
    """The frame path (a linear reading of the mean token) keeps the streaming split exact, also
    for a clip still filling, and exports: ONNX Runtime reads the head as torch does. Without
    it the model has the keys it always had, so earlier checkpoints still load."""
    import onnxruntime as ort

    from export.onnx import export_onnx

    torch.manual_seed(0)
    model = _frame_path_model()
    assert "head.frame_fc.weight" in model.state_dict()
    assert not any("frame_fc" in key for key in build_model("stt_tiny").state_dict())
    clip = model.example_input("full", batch=2)
    with torch.no_grad():
        tokens = torch.stack([model.backbone(clip[:, t]) for t in range(clip.shape[1])], dim=1)
        assert (model(clip) - model.head(tokens)).abs().max().item() <= 1e-5
        early = tokens[:, :5]  # five frames in: the path reads their mean, the transformer adds to it
        path_reading = model.head.frame_fc(early.mean(dim=(1, 2)))
        assert not torch.allclose(model.head(early), path_reading, atol=1e-3)
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        assert torch.allclose(model.head(early), path_reading, atol=1e-6)
    path = export_onnx(model, tmp_path / "head.onnx", part="head")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"tokens": tokens.numpy()})
    with torch.no_grad():
        assert np.abs(got - model.head(tokens).numpy()).max() <= 1e-4
