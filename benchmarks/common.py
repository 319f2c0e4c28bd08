"""Helpers the benchmark scripts share."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["call_times_ms", "untrained_int8"]


def call_times_ms(call: Callable[[], object], *, warmup: int, iters: int) -> np.ndarray:
    """Milliseconds of each of ``iters`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def untrained_int8(preset_name: str, out: Path, calib_video: Path, *, samples: int) -> Path:
    """``OUT/<preset>_int8``: the preset with untrained (seeded) weights, exported to OpenVINO INT8
    calibrated on runtime clips of ``calib_video``. For speed and memory measurements only:
    they do not depend on the weights' values. Reused when already there."""
    folder = out / f"{preset_name}_int8"
    if (folder / "model.xml").is_file():
        return folder
    import torch

    from edge_fer.models import build_model
    from edge_fer.models.checkpoint import save_checkpoint
    from edge_fer.presets import get_preset

    torch.manual_seed(0)
    preset = get_preset(preset_name)
    checkpoint = out / f"{preset_name}_untrained.pt"
    save_checkpoint(checkpoint, model=build_model(preset), preset=preset, kind="stt")
    print(f"exporting {preset_name} (untrained weights) to OpenVINO INT8 ...", flush=True)
    command = [sys.executable, "-m", "export.openvino", "--checkpoint", str(checkpoint), "--precision", "int8"]
    command += ["--calib", f"videos={calib_video},samples={samples}", "--out", str(folder), "--force"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"export failed:\n{result.stderr[-2000:]}")
    return folder
