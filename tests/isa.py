"""Run the engine tests again with the CPU's instruction set capped (the test run's second ISA).

A parity bound that holds only on the developers' AVX-512 machine is a bug on a user's AVX2
laptop, so ``scripts/test.sh`` runs the tests marked ``isa`` a second time with
``EDGE_FER_ISA_CAP=avx2``. What honours the cap, in these versions:

- torch's ATen kernels: ``ATEN_CPU_CAPABILITY`` (checked: ``torch.backends.cpu.get_cpu_capability()``);
- oneDNN, inside torch and inside OpenVINO's CPU plugin (convolutions, brgemm matmuls, most
  of OpenVINO's own JIT kernels, which ask oneDNN's ``mayiuse``): ``ONEDNN_MAX_CPU_ISA``
  (checked: the kernel names in OpenVINO's execution graph);
- not capped: ONNX Runtime's MLAS kernels and the MLAS GEMMs inside OpenVINO (they read
  CPUID themselves; no run-time switch exists), nor OpenVINO kernels that test the CPU
  directly (``OV_CPU_MAX_ISA`` would, but only in OpenVINO's debug builds);
- not emulated: an INT8 Q/DQ ONNX in OpenVINO (its plugin picks INT8 kernels by CPUID, oneDNN's
  are capped: wrong logits or a failed primitive), which the backend refuses under a cap
  (``test_openvino_refuses_a_qdq_onnx_under_an_isa_cap``).
"""

from __future__ import annotations

import os
from collections import Counter

__all__ = ["CAP_ENV", "apply_cap", "verify_cap", "openvino_kernels"]

CAP_ENV = "EDGE_FER_ISA_CAP"
# our name -> (oneDNN's ONEDNN_MAX_CPU_ISA, torch's ATEN_CPU_CAPABILITY, what a kernel name must not contain)
CAPS = {"avx2": ("AVX2", "avx2", ("avx512", "amx", "avx10"))}


def requested() -> str | None:
    cap = os.environ.get(CAP_ENV, "").strip().lower()
    if cap and cap not in CAPS:
        raise SystemExit(f"{CAP_ENV}={cap!r}: supported caps are {', '.join(CAPS)}")
    return cap or None


def apply_cap(cap: str) -> None:
    """Set the libraries' own variables; must run before torch or OpenVINO is imported.
    Subprocesses the tests start inherit them."""
    onednn, aten, _ = CAPS[cap]
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", onednn)
    os.environ.setdefault("ATEN_CPU_CAPABILITY", aten)


def openvino_kernels(precision: str = "f32") -> Counter:
    """Kernel (primitive) names OpenVINO's CPU plugin picks for a small conv + LayerNorm + FC
    network: the evidence of which ISA its kernels were built for."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([2, 8, 16, 16], np.float32, name="x")
    rng = np.random.default_rng(0)
    conv = ops.convolution(
        x, ops.constant(rng.standard_normal((16, 8, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1]
    )
    flat = ops.reshape(ops.relu(conv), ops.constant(np.array([2, -1], np.int64)), False)
    norm = ops.mvn(flat, ops.constant(np.array([1], np.int64)), True, 1e-5, "inside_sqrt")
    fc = ops.matmul(norm, ops.constant(rng.standard_normal((16 * 16 * 16, 32), np.float32)), False, False)
    model = ov.Model([ops.softmax(fc, 1)], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    compiled.create_infer_request().infer({0: np.ones((2, 8, 16, 16), np.float32)})
    ops_run = compiled.get_runtime_model().get_ordered_ops()
    return Counter(op.get_rt_info()["primitiveType"].astype(str) for op in ops_run)


def verify_cap(cap: str) -> list[str]:
    """Lines that show the cap in force. Raises AssertionError where torch ignores it or OpenVINO
    cannot run under it; OpenVINO kernels left above the cap are listed, not fatal (they are
    the ones its release builds dispatch by CPUID, see the module docstring)."""
    import torch

    _, aten, forbidden = CAPS[cap]
    lines = []
    capability = torch.backends.cpu.get_cpu_capability()
    assert capability.lower() in (aten, "default"), (
        f"{CAP_ENV}={cap} but torch runs {capability} kernels (was torch imported before the cap was set?)"
    )
    lines.append(f"torch ATen kernels: {capability}")
    try:
        kernels = openvino_kernels()
    except RuntimeError as exc:  # OpenVINO cannot run with its oneDNN part capped: say so, loudly
        raise AssertionError(f"OpenVINO does not run under {CAP_ENV}={cap}: {str(exc).splitlines()[-1]}") from None
    shown = ", ".join(sorted(k for k in kernels if not k.startswith("unknown")))
    above = sorted(k for k in kernels if any(f in k.lower() for f in forbidden))
    if above:  # kernels OpenVINO dispatches by CPUID itself: the cap is partial there, the run goes on
        lines.append(f"OpenVINO kernels: {shown} - NOT capped: {', '.join(above)}")
    else:
        lines.append(f"OpenVINO kernels: {shown}")
    return lines
