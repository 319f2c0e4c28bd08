"""What this CPU can do for INT8 and BF16, from the OS (and OpenVINO where it is installed).

INT8 is not always faster than FP32. Its speed-up comes from dot-product instructions that
multiply-accumulate four 8-bit pairs into a 32-bit sum in one step: VNNI (AVX-512 VNNI on
Cascade Lake and Zen 4 onwards, AVX-VNNI on Alder Lake), AMX on Sapphire Rapids, the
dot-product extension (``asimddp``) on ARMv8.2+ cores such as the Jetson Orin's Cortex-A78AE.
Without them (AVX2-only x86: Zen 3 and older, Skylake) OpenVINO's INT8 GEMM measured
55.7 GMAC/s against 67.7 for FP32 on a Zen 3 - slower. Benchmarks and the camera's
precision choice record these features with every figure.

oneDNN's instruction-set cap (``ONEDNN_MAX_CPU_ISA``, honoured by torch's and OpenVINO's
kernels; e.g. ``AVX2`` to see on an AVX-512 machine what an AVX2 CPU runs) is applied to the
features: a capped CPU reports what its kernels may use, and says it is capped.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuInfo", "cpu_info", "isa_cap"]

# /proc/cpuinfo flag -> our name. x86 first, then ARM (``Features`` line on aarch64).
_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
    "asimd": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "bf16": "arm_bf16",
    "sve": "sve",
}
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx_int8", "dotprod", "i8mm")
BF16_HARDWARE = ("avx512_bf16", "amx_bf16", "arm_bf16")
# ONEDNN_MAX_CPU_ISA values below AVX-512 -> the features of ours they leave usable. (Caps at
# or above AVX-512 change kernels within a family; not modelled.)
ISA_CAPS = {
    "SSE41": (),
    "AVX": (),
    "AVX2": ("avx2",),
    "AVX2_VNNI": ("avx2", "avx_vnni"),
    "AVX2_VNNI_2": ("avx2", "avx_vnni"),
}


def isa_cap() -> str | None:
    """oneDNN's instruction-set cap where it is one of ``ISA_CAPS`` (below AVX-512), else None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return cap if cap in ISA_CAPS else None


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and the features that decide INT8/BF16 speed.

    Attributes:
        model: e.g. "AMD EPYC 7B13" (from /proc/cpuinfo; the machine type where absent).
        arch: "x86_64", "aarch64", ...
        features: names from ``_FLAGS`` present on this CPU, in that order.
        cores: logical CPUs the OS reports.
        capped: the ``ONEDNN_MAX_CPU_ISA`` cap the features were cut to, if any.
    """

    model: str
    arch: str
    features: tuple[str, ...]
    cores: int
    capped: str | None = None

    @property
    def int8_dot_product(self) -> bool:
        """True when the CPU has 8-bit dot-product instructions (INT8 can beat FP32)."""
        return any(f in self.features for f in INT8_DOT_PRODUCT)

    @property
    def bf16(self) -> bool:
        return any(f in self.features for f in BF16_HARDWARE)

    @property
    def summary(self) -> str:
        """One phrase for tables: "AVX2 only (no VNNI, no BF16)", "AVX-512 + VNNI + BF16", ..."""
        f = set(self.features)
        if self.arch in ("aarch64", "arm64"):
            parts = ["ARM NEON" if "neon" in f else "ARM"]
            extras = (("dotprod", "dot-product"), ("i8mm", "i8mm"), ("arm_bf16", "BF16"), ("sve", "SVE"))
            parts += [name for key, name in extras if key in f]
            return " + ".join(parts) + ("" if "dotprod" in f else " (no INT8 dot product)")
        if "avx512" in f:
            parts = ["AVX-512"]
        elif "avx2" in f:
            parts = ["AVX2"]
        else:
            parts = [self.arch]
        if "avx512_vnni" in f or "avx_vnni" in f:
            parts.append("VNNI")
        if "amx_int8" in f:
            parts.append("AMX")
        if self.bf16:
            parts.append("BF16")
        text = " + ".join(parts)
        if len(parts) == 1:
            text += " only (no VNNI, no BF16)"
        elif not self.int8_dot_product:
            text += " (no VNNI)"
        if self.capped:
            text += f", capped by ONEDNN_MAX_CPU_ISA={self.capped}"
        return text

    @property
    def key(self) -> str:
        """Identifies the CPU for per-CPU caches (model name and features)."""
        return f"{self.model} [{','.join(self.features)}]" + (f" capped {self.capped}" if self.capped else "")

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "arch": self.arch,
            "cores": self.cores,
            "features": list(self.features),
            "summary": self.summary,
            "int8_dot_product": self.int8_dot_product,
            "capped": self.capped,
        }


def cpu_info(cpuinfo_text: str | None = None) -> CpuInfo:
    """Read the CPU's model and features (``cpuinfo_text``: /proc/cpuinfo's content, for tests),
    cut to oneDNN's cap where one is set (x86)."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo_text = ""
    model, flags = "", set()
    for line in cpuinfo_text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif name in ("flags", "features") and not flags:
            flags = set(value.split())
    arch = "aarch64" if "asimd" in flags else "x86_64" if "sse2" in flags else platform.machine()
    features = tuple(ours for flag, ours in _FLAGS.items() if flag in flags)
    cap = isa_cap() if arch == "x86_64" else None
    if cap:
        features = tuple(f for f in features if f in ISA_CAPS[cap])
    return CpuInfo(
        model=model or platform.processor() or platform.machine(),
        arch=arch,
        features=features,
        cores=os.cpu_count() or 1,
        capped=cap,
    )
