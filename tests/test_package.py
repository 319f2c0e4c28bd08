"""The distribution: importable packages, the CLI, and a torch-free edge runtime."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

import edge_fer
from edge_fer.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edge_fer", *args], capture_output=True, text=True, cwd=ROOT)


def test_top_level_packages_import():
    import benchmarks  # noqa: F401
    import calibration  # noqa: F401
    import export  # noqa: F401
    import train  # noqa: F401


def test_version_and_help():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"edge-fer {edge_fer.__version__}"
    result = run_cli("--help")
    assert result.returncode == 0 and "presets" in result.stdout


def test_user_error_is_one_line_and_nonzero(capsys):
    assert main(["presets", "no_such_preset"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown preset 'no_such_preset'" in err and "stt_base" in err


def test_presets_json_lists_every_preset(capsys):
    assert main(["presets", "--json"]) == 0
    names = {p["name"] for p in json.loads(capsys.readouterr().out)}
    assert {"stt_base", "stt_tiny", "htnet_official", "htnet_light"} <= names


# Make `import torch` fail exactly as it does where torch is not installed.
NO_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'", name=name)
sys.meta_path.insert(0, _NoTorch())
"""


def test_runtime_side_imports_without_torch():
    code = (
        NO_TORCH
        + """
import edge_fer, edge_fer.runtime, edge_fer.presets, edge_fer.preprocessing, edge_fer.errors, edge_fer.fileio
import edge_fer.preprocessing.clips, edge_fer.preprocessing.flow, edge_fer.preprocessing.micro_input
import edge_fer.data
from edge_fer.cli.main import main
assert main(["presets"]) == 0
try:
    import torch
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the torch blocker did not work")
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
print("ok")
"""
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_runtime_sources_never_import_torch():
    pattern = re.compile(r"^\s*(import torch|from torch)", re.MULTILINE)
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "edge_fer" / "runtime").rglob("*.py") if pattern.search(p.read_text())
    ]
    assert offenders == []


def test_edge_dependencies_are_numpy_and_opencv_only():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~;\[ ]", dep)[0] for dep in project["dependencies"]}
    assert names == {"numpy", "opencv-python-headless"}
    assert any("<5" in dep for dep in project["dependencies"] if dep.startswith("opencv"))
    assert project["scripts"]["edge-fer"] == "edge_fer.cli.main:main"
