"""The floor plan is a contract (``[tool.importlinter]`` in pyproject.toml): imports run
downwards only, the installed ``edge_fer`` never imports a tool package, and the edge side
never imports torch. The checker runs on the tree, and on a copy of it with one wrong-way
import added, to show the contract catches what it is there for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_fer", "train", "export", "calibration", "benchmarks")
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (bash scripts/install.sh dev installs it)")
    # PYTHONPATH first: the copy's packages are found before the editable install's.
    env = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
        capture_output=True, text=True, cwd=root, env=env, timeout=300,
    )  # fmt: skip


def test_the_tree_keeps_its_import_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("edge_fer/preprocessing/align.py", "from edge_fer.runtime import cpu", "each layer imports only"),
        ("edge_fer/models/checkpoint.py", "import calibration.sets", "tool packages sit on"),
        ("edge_fer/runtime/cpu.py", "import torch", "never imports torch"),
    ],
)
def test_a_wrong_way_import_breaks_the_contract(module, wrong_import, contract, tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # wrong way, on purpose\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken and module.removesuffix(".py").replace("/", ".") in broken
