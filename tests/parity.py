"""Bounds for comparing engines, derived from the arithmetic rather than from one CPU.

Two engines running the same quantized network (torch fake-quant, ONNX Runtime Q/DQ,
OpenVINO) are not bit-identical: their accumulation orders differ by ISA (AVX2, AVX-512,
VNNI kernels), so a value that lands within float rounding of an INT8 rounding boundary
is rounded one step up in one engine and one step down in the other. Such a flip then
spreads through every later layer's receptive field and compounds with depth. What
survives at the output is a few *quantization steps of the last layer*, whatever the
ISA; it is not a fraction of the logits (an untrained network's logits are tiny, a
trained one's large).

So the unit of every INT8 comparison here is ``classifier_unit``: how far each logit moves
when every input of the final Linear moves by one INT8 step (the step of a symmetric
8-bit quantizer calibrated on the same inputs). Bounds are a small number of those units.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["classifier_unit", "assert_within_units", "FLOAT32_RELATIVE"]

# Float engines (torch, ONNX Runtime f32, OpenVINO f32) differ only by float32 summation
# order: |error| <~ depth x sqrt(fan-in) x 2^-24 relative to the values summed. For these
# networks (< 60 layers, fan-in < 10^4) that is < 1e-5 of the logit scale; 1e-4 leaves a
# factor of ten for FMA vs non-FMA kernels.
FLOAT32_RELATIVE = 1e-4


def classifier_unit(model: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Per class: |Δlogit| when every classifier input moves one INT8 step.

    The classifier is the last ``nn.Linear`` the forward pass runs; its input's step is
    ``max|x| / 127`` over ``inputs`` (symmetric signed INT8, as calibration sets it), so
    ``unit[k] = step * sum_j |W[k, j]|``.
    """
    seen: list[tuple[torch.nn.Linear, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].detach())) or None)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(inputs))
    finally:
        for hook in hooks:
            hook.remove()
    linear = seen[-1][0]
    x = torch.cat([x.flatten(0, -2) for mod, x in seen if mod is linear])
    step = x.abs().max().item() / 127
    return (step * linear.weight.detach().abs().sum(1)).numpy()


def assert_within_units(got: np.ndarray, expected: np.ndarray, unit: np.ndarray, *, units: float, what: str) -> None:
    """|got - expected| <= ``units`` x unit, logit by logit.

    Top-1 is not asserted separately: under this bound it can change only on clips whose
    margin is below twice the bound, which is what the bound already says."""
    error = np.abs(got - expected) / unit
    assert error.max() <= units, f"{what}: logits differ by {error.max():.2f} units of the last layer (bound {units})"
    agree = (got.argmax(1) == expected.argmax(1)).mean()
    # shown with pytest -rP: how close each comparison came to its bound on this CPU
    print(f"{what}: max {error.max():.2f} units (bound {units}); top-1 agrees on {agree:.0%} of {len(got)} clips")
