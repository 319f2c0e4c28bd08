"""Share the CPU: fewer torch threads while other processes keep cores busy.

torch runs its CPU kernels on an OpenMP thread per core, and those threads spin while they
wait for each other. When another process holds one of the cores, every parallel region
waits for the thread that shares it, and the spinning steals from both: measured on a 2-core
Zen 3 with one CPU-bound process beside it, 3 epochs of ``stt_tiny`` took 123 s on 2 threads
against 66 s on 1 (idle: 51 s on 2 threads, 66 s on 1). So the training loop measures what
the rest of the machine uses and runs on the cores left, re-checking as it goes.

Linux only (``/proc/stat``); elsewhere the thread count is left alone.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["CpuShare", "cpu_sample"]

Sample = tuple[float, float, float]  # (CPU-seconds busy on the machine, CPU-seconds of this process tree, wall s)


def cpu_sample() -> Sample | None:
    """Busy CPU-seconds of the whole machine and of this process with its children, now."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        import psutil  # an NNCF dependency, so present wherever training runs
    except (OSError, ValueError, ImportError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    busy = (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")
    me = psutil.Process()
    ours = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):  # data-loading workers count as ours
        try:
            ours += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return busy, ours, time.monotonic()


class CpuShare:
    """Picks torch's thread count from the cores other processes leave free.

    Args:
        log: called with a line when the count changes.
        sample: the measurement (``cpu_sample``; tests pass their own).
        min_interval: seconds between measurements (shorter windows are too noisy).
    """

    def __init__(
        self,
        log: Callable[[str], None] = print,
        *,
        sample: Callable[[], Sample | None] = cpu_sample,
        min_interval: float = 2.0,
    ) -> None:
        self.log, self.sample, self.min_interval = log, sample, min_interval
        self.cores = os.cpu_count() or 1
        self.threads = self.default = torch.get_num_threads()
        self._last = sample()

    def others(self, now: Sample) -> float:
        """Cores kept busy by other processes since the last measurement."""
        busy, ours, wall = now
        busy0, ours0, wall0 = self._last
        return max(0.0, ((busy - busy0) - (ours - ours0)) / max(wall - wall0, 1e-6))

    def update(self) -> int:
        """Re-measure (at most every ``min_interval`` s) and set torch's threads; returns them."""
        if self._last is None:
            return self.threads
        now = self.sample()  # /proc/stat and our process tree: well under a millisecond
        if now is None or now[2] - self._last[2] < self.min_interval:
            return self.threads
        others = self.others(now)
        self._last = now
        # a core counts as taken when another process used most of it
        wanted = max(1, min(self.default, math.floor(self.cores - others + 0.25)))
        if wanted != self.threads:
            torch.set_num_threads(wanted)
            self.log(
                f"CPU: other processes use {others:.1f} of {self.cores} cores; "
                f"training on {wanted} thread{'s' if wanted > 1 else ''} (of {self.default})"
            )
            self.threads = wanted
        return wanted
