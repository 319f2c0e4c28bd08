"""NNCF's first-use kernel build never kills a run: missing tools and hangs give one line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENSURE = "from edge_fer.models.qat import ensure_quantization_kernels as e; e(); print('ready')"


def run(env_changes, tmp_path, code=ENSURE):
    """``code`` in a fresh interpreter that builds (or finds) the compiled kernels under tmp_path
    (the test session itself runs QAT on the pure-torch ones: tests/conftest.py)."""
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "EDGE_FER_QAT_KERNELS": "compiled"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def build_dir(tmp_path):
    import torch

    return tmp_path / "ext" / "nncf" / "quantized_functions_cpu" / torch.__version__


def test_without_a_compiler_qat_goes_on_and_says_what_to_install(tmp_path):
    result = run({"CXX": str(tmp_path / "no-such-compiler")}, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ready"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("edge-fer:")]
    assert len(said) == 1 and "apt install g++" in said[0] and "pure-torch kernels" in said[0], lines
    assert not any("Could not compile" in line for line in lines)  # NNCF's own multi-line warning is held back


def test_a_build_that_hangs_ends_with_one_line(tmp_path):
    # another build's lock that never goes away (a build killed moments ago looks the same)
    build_dir(tmp_path).mkdir(parents=True)
    (build_dir(tmp_path) / "lock").touch()
    result = run({"NNCF_EXTENSION_LOAD_TIMEOUT": "3"}, tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "ToolchainError" in last and "took over 3 s" in last and "remove" in last, result.stderr[-2000:]


def test_torch_kernels_build_nothing(tmp_path):
    code = (
        "import numpy as np, torch; from edge_fer.models.qat import prepare_qat;"
        "from edge_fer.models import build_model;"
        "torch.manual_seed(0); m = build_model('stt_tiny');"
        "x = np.random.default_rng(0).standard_normal((2, 16, 3, 64, 64)).astype(np.float32);"
        "q = prepare_qat(m, x, target='tensorrt'); out = q(torch.from_numpy(x)); out.sum().backward();"
        "print('ok', float(out.abs().sum()))"
    )
    result = run({"EDGE_FER_QAT_KERNELS": "torch"}, tmp_path, code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("ok") and "compiling" not in result.stderr
    assert not list((tmp_path / "ext").rglob("*.so"))


# Slow: the build takes ~35 s of 2 cores. CI runs it (`-m slow`).
@pytest.mark.slow
def test_compiled_kernels_compute_what_the_torch_ones_do(tmp_path):
    """The two kernel sets agree, forward and backward: the pure-torch ones stand in for the
    compiled ones in the rest of the tests (and in the demo)."""
    code = """
import types
import torch
from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
from nncf.torch.quantization.reference import torch_executor as reference
from edge_fer.models.qat import ensure_quantization_kernels

ensure_quantization_kernels()
assert isinstance(QuantizedFunctionsCPU._loaded_namespace, types.ModuleType)  # the built extension
rng = torch.Generator().manual_seed(0)
x = torch.randn(4, 8, 5, 5, generator=rng) * 3
low, width = torch.full((1, 8, 1, 1), -2.0), torch.full((1, 8, 1, 1), 3.9)
compiled = QuantizedFunctionsCPU.get("Quantize_forward")(x, low, width, 256)
assert torch.equal(compiled, reference.forward(x, low, width, 256))
grad = torch.randn(x.shape, generator=rng)
ours = QuantizedFunctionsCPU.get("Quantize_backward")(grad, x, low, width, 256, -128, 127, True)
theirs = reference.backward(grad, x, low, width, 256, -128, 127, True)
for a, b in zip(ours, theirs):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
print("agree")
"""
    result = run({}, tmp_path, code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "agree"
    assert list((tmp_path / "ext").rglob("*.so"))  # it did build: the comparison is of the compiled kernels
