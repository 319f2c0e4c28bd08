"""Quantization-aware training with NNCF: prepare a model, save it, restore it.

``prepare_qat(model, calib, target=...)`` inserts NNCF fake-quantizers (initialised on the
calibration set) into each export part separately - the STT backbone and head, or the whole
HTNet - so every part can later be exported on its own. Quantizers are symmetric
(PERFORMANCE preset: zero-point 0 everywhere, per-channel weights). The target decides the
activation grid:

- ``openvino`` (default): NNCF's grid - activations after ReLU are *unsigned* 8-bit
  (0..255), which Intel CPUs execute natively (u8 x s8 VNNI).
- ``tensorrt``: TensorRT takes only *signed* INT8 with zero-point 0, and NNCF refuses to
  force signedness for its targets. We flip the unsigned quantizers to signed before
  fine-tuning: the scale (the range's upper end) is kept and the grid becomes -128..127,
  i.e. the positive range keeps its extent at half the resolution - exactly what TensorRT
  executes. Fine-tuning then learns on the deployed grid, so no trained model is ever
  re-quantized. A test reads the exported graph: every Q/DQ int8, every zero-point 0.

On the synthetic benchmark the signed grid cost one test clip of 140 against the unsigned
one (stt_tiny's 16-channel trunk is small), which is why the CPU target keeps NNCF's grid.

A QAT checkpoint stores NNCF's description of the inserted quantizers (as JSON, so it
loads with ``torch.load(weights_only=True)``) next to the weights; ``restore_qat`` rebuilds
the quantized model from it.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_fer.errors import ArtifactError, ToolchainError
from edge_fer.models.stt import STTHead
from edge_fer.presets import ModelPreset

__all__ = [
    "QAT_TARGETS",
    "ensure_quantization_kernels",
    "qat_parts",
    "prepare_qat",
    "qat_state",
    "restore_qat",
    "set_qdq_export",
    "quantizer_summary",
    "tensorrt_compatible",
]


# NNCF gives its kernel build 60 s by default, then raises: on a busy 2-core machine the
# first build takes longer than that (seen: the demo died there). The build is a one-off, so
# wait for it; a build that hangs (a stale lock of a killed build) is caught separately.
KERNEL_BUILD_TIMEOUT_S = 1800
STALE_LOCK_S = 900  # torch's build lock older than this belongs to a dead build
# "compiled" (default): NNCF's C++ fake-quantize kernels, built on first use (50 s on 2 idle
# Zen 3 cores, more when busy). "torch": NNCF's own pure-torch kernels, the ones it falls back
# to when it cannot compile - same arithmetic, nothing to build; measured on stt_tiny, one QAT
# epoch took 60.6 s against 50.6 s compiled, so short runs (the demo's) are faster without
# the build.
KERNELS_ENV = "EDGE_FER_QAT_KERNELS"
_kernels_ready = False


def _say(message: str) -> None:
    print(f"edge-fer: {message}", file=sys.stderr, flush=True)


def ensure_quantization_kernels() -> None:
    """Make NNCF's CPU fake-quantize kernels ready before any training time is spent.

    ``EDGE_FER_QAT_KERNELS=torch`` selects NNCF's pure-torch kernels (nothing is compiled).
    Otherwise the C++ kernels are compiled on first use: one progress line while it builds,
    and without a C++ compiler or ninja one line saying what to install while QAT goes on
    with the pure-torch kernels (NNCF's own fallback).

    Raises:
        ToolchainError: the build did not finish within ``KERNEL_BUILD_TIMEOUT_S``, or an
            unknown ``EDGE_FER_QAT_KERNELS``.
    """
    global _kernels_ready
    if _kernels_ready:
        return
    choice = os.environ.get(KERNELS_ENV, "compiled").strip().lower()
    if choice not in ("compiled", "torch"):
        raise ToolchainError(f"{KERNELS_ENV}={choice!r}: use 'compiled' (NNCF's C++ kernels) or 'torch'")
    if choice == "torch":
        _use_torch_kernels()
        _kernels_ready = True
        return
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", str(KERNEL_BUILD_TIMEOUT_S))  # NNCF reads it at load
    import torch.utils.cpp_extension as cpp_extension
    from nncf.torch.extensions import ExtensionLoaderTimeoutException
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU, QuantizedFunctionsCPULoader

    build_dir = Path(QuantizedFunctionsCPULoader.get_build_dir())
    built = any(build_dir.glob("*.so"))
    missing = [] if built else _missing_build_tools(cpp_extension)
    lock = build_dir / "lock"
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
        _say(f"removing a stale build lock left by an interrupted build: {lock}")
        lock.unlink(missing_ok=True)
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    if missing:
        _say(
            f"NNCF's C++ fake-quantize kernels cannot be compiled here ({' and '.join(missing)} not found); "
            "QAT runs on its pure-torch kernels (same results, slower). To compile them: "
            f"apt install g++ (or set CXX) and pip install ninja; to say so up front: {KERNELS_ENV}=torch"
        )
        nncf_log.setLevel(logging.ERROR)  # its own multi-line warning says the same
    elif not built:
        _say(
            f"compiling NNCF's C++ fake-quantize kernels (first use only, 1-3 min on 2 cores; "
            f"{KERNELS_ENV}=torch skips it) into {build_dir} ..."
        )
    started = time.perf_counter()
    try:
        QuantizedFunctionsCPU.get("Quantize_forward")
    except ExtensionLoaderTimeoutException:
        raise ToolchainError(
            f"building NNCF's C++ kernels took over {os.environ['NNCF_EXTENSION_LOAD_TIMEOUT']} s; if no build is "
            f"running, remove {build_dir} and retry, raise NNCF_EXTENSION_LOAD_TIMEOUT, or set {KERNELS_ENV}=torch"
        ) from None
    finally:
        nncf_log.setLevel(level)
    if not built and not missing:
        _say(f"NNCF's kernels ready in {time.perf_counter() - started:.0f} s (kept in {build_dir} for later runs)")
    _kernels_ready = True


def _use_torch_kernels() -> None:
    """Point NNCF's lazily loaded CPU kernel namespace at its pure-torch implementation - what
    NNCF itself does when its build fails - before anything triggers the build. Eager, not
    NNCF's torch.compile wrapper of it: that would compile C++ per tensor shape instead."""
    from nncf.torch.quantization import reference
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU

    if not hasattr(QuantizedFunctionsCPU, "_loaded_namespace") or not hasattr(reference, "torch_executor"):
        raise ToolchainError(
            f"{KERNELS_ENV}=torch is not supported with this NNCF version; unset it to use the compiled kernels"
        )

    class EagerTorchKernels:
        Quantize_forward = staticmethod(reference.torch_executor.forward)
        Quantize_backward = staticmethod(reference.torch_executor.backward)

    if QuantizedFunctionsCPU._loaded_namespace is None:
        QuantizedFunctionsCPU._loaded_namespace = EagerTorchKernels


def _missing_build_tools(cpp_extension) -> list[str]:
    missing = []
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        missing.append(f"a C++ compiler ({compiler})")
    if not cpp_extension.is_ninja_available():
        missing.append("ninja")
    return missing


def qat_parts(model: nn.Module) -> dict[str, nn.Module]:
    """The submodules quantized (and exported) separately."""
    if hasattr(model, "backbone") and hasattr(model, "head"):
        return {"backbone": model.backbone, "head": model.head}
    return {"full": model}


def _set_part(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    if name == "full":
        return module
    setattr(model, name, module)
    return model


def _part_samples(model: nn.Module, inputs: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Calibration inputs of each part: frames for the backbone, float tokens for the head."""
    parts = qat_parts(model)
    if "full" in parts:
        return {"full": [inputs[i : i + 1] for i in range(len(inputs))]}
    b, t = inputs.shape[:2]
    frames = inputs.flatten(0, 1)
    with torch.no_grad():
        tokens = model.backbone(frames).reshape(b, t, model.num_tokens, model.embed_dim)
    return {
        "backbone": [frames[i : i + t] for i in range(0, len(frames), t)],
        "head": [tokens[i : i + 1] for i in range(b)],
    }


QAT_TARGETS = ("openvino", "tensorrt")


def _full_last_block(model: nn.Module) -> None:
    """Compute the STT head's last block in full: its class-only shortcut slices the q/kv
    weights at run time, which NNCF's torch quantizer cannot follow (same outputs either way)."""
    for module in model.modules():
        if isinstance(module, STTHead):
            module.class_only_last = False


def prepare_qat(model: nn.Module, calibration_inputs: np.ndarray, *, target: str = "openvino") -> nn.Module:
    """Insert INT8 fake-quantizers for ``target``, initialised on calibration inputs.

    Args:
        model: the trained float model (eval mode is set for calibration).
        calibration_inputs: float32 model inputs (normalised), (N, ...) of the full model.
        target: "openvino" (NNCF's grid) or "tensorrt" (signed INT8 everywhere).
    """
    import nncf

    if target not in QAT_TARGETS:
        raise ValueError(f"QAT target must be one of {QAT_TARGETS}, got {target!r}")
    ensure_quantization_kernels()
    model.eval()
    _full_last_block(model)
    samples = _part_samples(model, torch.from_numpy(calibration_inputs))
    for name, module in qat_parts(model).items():
        quantized = nncf.quantize(
            module,
            nncf.Dataset(samples[name]),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric: zero-point 0 everywhere
            subset_size=len(samples[name]),
        )
        model = _set_part(model, name, quantized)
    if target == "tensorrt":
        _make_signed(model)
    return model


def _make_signed(model: nn.Module) -> int:
    from nncf.torch.quantization.layers import SymmetricQuantizer

    flipped = 0
    for module in model.modules():
        if isinstance(module, SymmetricQuantizer) and not module.signed:
            module.signed = True
            flipped += 1
    return flipped


def tensorrt_compatible(model: nn.Module) -> bool:
    """True when every quantizer is symmetric and signed (TensorRT's only INT8 form)."""
    return all(k.startswith("symmetric/signed") for k in quantizer_summary(model))


def quantizer_summary(model: nn.Module) -> dict[str, int]:
    """Counts of quantizers by kind and signedness (for logs and tests)."""
    from nncf.torch.quantization.layers import BaseQuantizer, SymmetricQuantizer

    summary: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, BaseQuantizer):
            kind = "symmetric" if isinstance(module, SymmetricQuantizer) else type(module).__name__
            key = f"{kind}/{'signed' if getattr(module, 'signed', True) else 'unsigned'}"
            summary[key] = summary.get(key, 0) + 1
    return summary


def set_qdq_export(model: nn.Module) -> None:
    """Export quantizers as standard QuantizeLinear/DequantizeLinear pairs (not FakeQuantize)."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    for module in model.modules():
        if isinstance(module, BaseQuantizer):
            module.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)


# NNCF's quantizer description holds a few enums and tuples; JSON keeps them tagged.
def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__module__}.{type(value).__qualname__}", "value": value.value}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    import importlib

    if isinstance(value, dict):
        if "__enum__" in value:
            module_name, _, class_name = value["__enum__"].rpartition(".")
            if not module_name.startswith("nncf."):  # only NNCF's own enums, nothing else is imported
                raise ArtifactError(f"QAT checkpoint names a foreign type {value['__enum__']!r}")
            return getattr(importlib.import_module(module_name), class_name)(value["value"])
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def qat_state(model: nn.Module) -> dict[str, str]:
    """JSON descriptions of each part's quantizers, for the checkpoint."""
    import nncf.torch

    return {name: json.dumps(_encode(nncf.torch.get_config(module))) for name, module in qat_parts(model).items()}


def restore_qat(float_model: nn.Module, state: dict[str, str], preset: ModelPreset) -> nn.Module:
    """Re-insert the quantizers described by ``qat_state`` into a fresh float model.

    NNCF instantiates only its own modules from the description (``allowed_modules``).
    """
    import nncf.torch

    ensure_quantization_kernels()
    model = float_model.eval()
    _full_last_block(model)
    parts = qat_parts(model)
    if set(state) != set(parts):
        raise ArtifactError(
            f"QAT checkpoint describes parts {sorted(state)}, the {preset.name} model has {sorted(parts)}"
        )
    for name, text in state.items():
        restored = nncf.torch.load_from_config(parts[name], _decode(json.loads(text)), allowed_modules=("nncf.*",))
        model = _set_part(model, name, restored)
    return model
