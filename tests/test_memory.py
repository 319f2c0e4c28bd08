"""Memory figures are the measured process's own, not its parent's."""

import subprocess
import sys

import numpy as np
import pytest

from edge_fer.runtime.memory import peak_rss_mib, rss_mib

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")

CHILD = "from edge_fer.runtime.memory import peak_rss_mib, rss_mib; print(rss_mib(), peak_rss_mib())"


def test_rss_and_peak_follow_what_this_process_touches():
    ballast = np.ones(200 * 2**20 // 8)  # 200 MiB, every page written
    now = rss_mib()
    assert now is not None
    assert peak_rss_mib() >= now >= 200
    del ballast


def test_a_child_reports_its_own_peak_not_its_parents():
    # A process started by a large one: the benchmarks' cameras, bench's rows. getrusage's
    # ru_maxrss (and wait4's) would give the child at least this parent's peak: subprocess
    # starts it with vfork, and Linux keeps the larger maximum RSS across exec.
    ballast = np.ones(400 * 2**20 // 8)
    assert peak_rss_mib() >= 400
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    rss, peak = map(float, result.stdout.split())
    assert 0 < rss <= peak < 150, result.stdout  # a bare interpreter (~11 MiB), not the 400 MiB above
    del ballast
