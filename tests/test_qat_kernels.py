"""NNCF's first-use kernel build never kills a run: missing tools and hangs give one line."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENSURE = "from calibration.qat import ensure_quantization_kernels as e; e(); print('ready')"


def run(env_changes, tmp_path):
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), **env_changes}
    return subprocess.run(
        [sys.executable, "-c", ENSURE], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )


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
