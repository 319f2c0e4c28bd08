"""Every model part exports to ONNX with a dynamic batch axis and matches torch in ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edge_fer.errors import OutputExistsError
from edge_fer.models import build_model
from edge_fer.presets import PRESETS
from export.onnx import export_onnx

CASES = [(name, part) for name in sorted(PRESETS) for part in build_model(name).parts]


@pytest.mark.isa
@pytest.mark.parametrize("name,part", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_onnx_matches_torch_at_another_batch_size(tmp_path, name, part):
    model = build_model(name).eval()
    path = export_onnx(model, tmp_path / f"{name}-{part}.onnx", part=part)
    graph = onnx.load(str(path), load_external_data=False)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert (inp.name, out.name) == model.io_names[part]
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"

    x = model.example_input(part, batch=3)  # exported with batch 2
    with torch.no_grad():
        expected = model.part(part)(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {inp.name: x.numpy()})
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


def test_export_refuses_to_overwrite_without_force(tmp_path):
    model = build_model("htnet_light")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        export_onnx(model, path)
    assert path.read_bytes() == b"keep me"
    export_onnx(model, path, force=True)
    onnx.checker.check_model(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temp files left behind
