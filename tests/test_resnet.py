import pytest
import torch

from edge_fer.errors import ArtifactError
from edge_fer.models.resnet import ResNet18Trunk, trunk_output_size


def torchvision_resnet18_keys():
    """torchvision.models.resnet18().state_dict() key names, written out from its layout."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{s}" for s in bn)]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            keys += [
                f"{p}.conv1.weight",
                *(f"{p}.bn1.{s}" for s in bn),
                f"{p}.conv2.weight",
                *(f"{p}.bn2.{s}" for s in bn),
            ]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{s}" for s in bn)]
    return keys + ["fc.weight", "fc.bias"]


def fake_torchvision_state_dict():
    """A full ResNet-18 state dict in torchvision's layout with random values."""
    full = ResNet18Trunk(num_layers=4)
    for module in full.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    sd = dict(full.state_dict())
    sd["fc.weight"] = torch.randn(1000, 512)
    sd["fc.bias"] = torch.randn(1000)
    return sd


def test_key_names_are_torchvisions():
    sd = fake_torchvision_state_dict()
    assert list(sd) == torchvision_resnet18_keys()
    assert len(sd) == 122
    assert sd["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)


def test_loads_full_resnet18_weights_into_layer3_trunk():
    sd = fake_torchvision_state_dict()
    trunk = ResNet18Trunk(num_layers=3)
    trunk.load_torchvision_state_dict({f"module.{k}": v for k, v in sd.items()})
    own = trunk.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in own)
    assert not any(k.startswith(("layer4", "fc")) for k in own)


def test_missing_or_misshaped_weights_are_refused():
    sd = fake_torchvision_state_dict()
    del sd["layer2.1.conv2.weight"]
    with pytest.raises(ArtifactError, match="missing"):
        ResNet18Trunk(num_layers=3).load_torchvision_state_dict(sd)
    with pytest.raises(ArtifactError, match="width 16"):
        ResNet18Trunk(num_layers=3, width=16).load_torchvision_state_dict(fake_torchvision_state_dict())


@pytest.mark.parametrize("size", [64, 112, 113, 224])
def test_output_size_formula_matches_forward(size):
    trunk = ResNet18Trunk(num_layers=3, width=8).eval()
    out = trunk(torch.randn(1, 3, size, size))
    assert out.shape == (1, 32, trunk_output_size(size, 3), trunk_output_size(size, 3))
    assert trunk_output_size(112, 3) == 7
