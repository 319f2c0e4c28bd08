"""The runtime backends run an exported model and agree with torch."""

import numpy as np
import pytest
import torch

from edge_fer.errors import BackendError
from edge_fer.models import build_model
from edge_fer.runtime.backends import available_backends, open_backend
from export.onnx import export_onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_model("htnet_light").eval()
    path = export_onnx(model, tmp_path_factory.mktemp("m") / "htnet.onnx")
    x = model.example_input("full", batch=3)
    with torch.no_grad():
        return path, x.numpy(), model(x).numpy()


@pytest.mark.isa
@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_backend_matches_torch(exported, name):
    if name not in available_backends():
        pytest.skip(f"{name} not installed")
    path, x, expected = exported
    with open_backend(path, backend=name, precision="f32" if name == "openvino" else None) as backend:
        assert backend.inputs == {"image": (None, 3, 28, 28)} and backend.outputs == ["logits"]
        out = backend.infer({"image": x})["logits"]
    assert np.abs(out - expected).max() < 1e-4


def test_wrong_input_is_a_clear_error(exported):
    path, x, _ = exported
    backend = open_backend(path, backend="onnxruntime")
    with pytest.raises(BackendError, match=r"expects shape \(\?, 3, 28, 28\), got \(3, 3, 27, 28\)"):
        backend.infer({"image": x[:, :, :27]})
    with pytest.raises(BackendError, match="missing input"):
        backend.infer({"frames": x})


def test_missing_file_and_unknown_backend(tmp_path, exported):
    with pytest.raises(BackendError, match="does not exist"):
        open_backend(tmp_path / "none.onnx")
    with pytest.raises(BackendError, match="unknown backend"):
        open_backend(exported[0], backend="tflite")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError, match="cannot load"):
        open_backend(tmp_path / "bad.onnx", backend="onnxruntime")
