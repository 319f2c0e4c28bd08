"""Training shares the CPU: fewer torch threads while other processes keep cores busy."""

import os
import signal
import subprocess
import sys
import time

import torch

from train.threads import CpuShare, cpu_sample


class Clock:
    """Samples as (machine busy CPU-s, ours CPU-s, wall s), advanced by hand."""

    def __init__(self):
        self.busy = self.ours = 0.0
        self.wall = time.monotonic() - 100

    def __call__(self):
        return self.busy, self.ours, self.wall

    def advance(self, seconds, *, ours_cores, others_cores):
        self.wall += seconds
        self.ours += seconds * ours_cores
        self.busy += seconds * (ours_cores + others_cores)


def test_threads_follow_the_cores_others_leave(monkeypatch):
    lines = []
    clock = Clock()
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        share = CpuShare(lines.append, sample=clock, min_interval=1.0)
        clock.advance(5, ours_cores=4, others_cores=0.1)
        assert share.update() == 4 and not lines  # idle machine: every core
        clock.advance(5, ours_cores=2.5, others_cores=1.9)
        assert share.update() == 2 and torch.get_num_threads() == 2  # two cores taken
        assert "other processes use 1.9 of 4 cores; training on 2 threads" in lines[-1]
        clock.advance(0.5, ours_cores=2, others_cores=0)
        assert share.update() == 2  # too soon to judge
        clock.advance(5, ours_cores=2, others_cores=3.5)
        assert share.update() == 1  # never below one
        clock.advance(5, ours_cores=1, others_cores=0)
        assert share.update() == 4 and torch.get_num_threads() == 4  # the others left
    finally:
        torch.set_num_threads(before)


def test_a_busy_process_is_measured_as_another_core():
    first = cpu_sample()
    assert first is not None
    # started through a shell that exits at once: the hog is not our child, as another user's job
    started = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    hog = int(started.stdout)
    try:
        time.sleep(3)
        share = CpuShare(lambda _: None, sample=lambda: first)
        others = share.others(cpu_sample())
    finally:
        os.kill(hog, signal.SIGKILL)
    # the hog holds one core (it may start late or share it with the test runner)
    assert 0.6 <= others, others
