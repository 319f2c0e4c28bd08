"""This process's memory: resident now and at its peak, as the kernel counts its own pages.

Not ``getrusage``'s ``ru_maxrss``: on Linux a process's maximum RSS survives ``exec``, and
``subprocess`` starts children with ``vfork``, so a child reports at least its parent's peak.
A 13 MiB child of a 400 MiB parent reads 413 MiB there (``wait4`` says the same) and 13 MiB
here. ``/proc/self/status`` counts the address space the process runs in now.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["rss_mib", "peak_rss_mib"]


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mib() -> float | None:
    """Resident memory now, MiB (None where the OS does not say)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float | None:
    """The most resident memory this process has held, MiB (None where the OS does not say)."""
    peak = _status_mib("VmHWM")
    if peak is not None or sys.platform.startswith("linux"):
        return peak
    try:  # macOS and the BSDs: no /proc; ru_maxrss (bytes on macOS, KiB elsewhere)
        import resource
    except ImportError:  # Windows
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 2**20 if sys.platform == "darwin" else value / 1024
