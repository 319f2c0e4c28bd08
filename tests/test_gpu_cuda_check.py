"""scripts/gpu_cuda_check.py, the GPU check of the TensorRT backend's CUDA parts.

Without a CUDA device the script must say so and succeed (SKIP lines, exit code 0); that is
what this machine shows. The logic of its checks runs here against test doubles - FakeCuda,
DeviceMemory and FakePyCudaDriver from test_tensorrt_backend and FakeDriver below - so these
tests check the script, neither CUDA nor TensorRT. On a GPU, the gpu-marked test runs the
script itself.
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from test_tensorrt_backend import DeviceMemory, FakeCuda, install_pycuda

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_cuda_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_cuda_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check = load_script()


def cuda_device_here() -> bool:
    try:
        check.Driver.load()
    except check.NoDevice:
        return False
    return True


class FakeDriver:
    """Test double of the script's Driver (its ctypes view of libcuda); not a CUDA run.

    One context, PRIMARY, current on every thread except those whose names start with one of
    ``bare`` (none current there); device memory is a DeviceMemory shared with FakeCuda.
    """

    PRIMARY = 0xC0

    def __init__(self, memory: DeviceMemory, bare: tuple[str, ...] = ()):
        self.memory, self.bare = memory, bare

    def current_context(self) -> int:
        return 0 if self.bare and threading.current_thread().name.startswith(self.bare) else self.PRIMARY

    def primary_context(self) -> int:
        return self.PRIMARY

    def memory_type(self, pointer: int) -> str:
        return "device" if pointer in self.memory else "host"

    def pointer_context(self, pointer: int) -> int:
        return self.PRIMARY

    def shift(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self.memory[dst][: nbytes - 4] = self.memory[src][4:nbytes]
        self.memory[dst][nbytes - 4 : nbytes] = check.MARK.tobytes()


class LosingCuda(FakeCuda):
    """Test double of a CUDA binding whose device->host copies never arrive."""

    def to_host(self, array: np.ndarray, pointer: int) -> None:
        pass


# --- the script on this machine ------------------------------------------------------------------


def test_without_a_cuda_device_every_part_is_skip_with_the_reason_and_exit_0(tmp_path, capsys):
    if cuda_device_here():
        pytest.skip("a CUDA device is present: test_script_passes_on_a_gpu runs the script")
    assert check.main(["--json", str(tmp_path / "report.json")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if check.LINE.match(line)]
    assert [line.split(":")[0] for line in lines] == [f"SKIP {part}" for part in check.PARTS]
    assert all("not run, no CUDA device here: " in line and "libcuda" in line for line in lines), lines
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["device"] is None and "libcuda" in report["no_device"] and report["exit_code"] == 0
    assert report["counts"] == {"PASS": 0, "FAIL": 0, "SKIP": len(check.PARTS)}
    assert report["versions"]["tensorrt"] == "not installed" and "no TensorRT was run" in report["tensorrt"]


def test_the_command_with_no_visible_device_skips_and_exits_0(tmp_path):
    """As a command, where the driver shows no device (CUDA_VISIBLE_DEVICES="" hides any)."""
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(SCRIPT), "--json", str(tmp_path / "report.json")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 passed, 0 failed, 4 skipped" in done.stdout
    assert json.loads((tmp_path / "report.json").read_text())["no_device"]


def test_each_part_runs_in_a_process_of_its_own(monkeypatch, capsys):
    """With a device reported (a test double of the driver), main runs one child per part and reads its lines."""
    if cuda_device_here():
        pytest.skip("a CUDA device is present: the children would run the real checks")

    class DeviceReported:
        def device_name(self):
            return "test double"

        def device_count(self):
            return 1

        def version(self):
            return "0.0"

    monkeypatch.setattr(check.Driver, "load", classmethod(lambda cls: DeviceReported()))
    assert check.main([]) == 0
    out = capsys.readouterr().out
    assert "INFO device.name: test double" in out
    for part in check.PARTS:  # each child found no device itself (nothing is reachable here)
        assert f"SKIP {part}: not run, no CUDA device here" in out


def test_a_crashed_part_is_a_fail_that_keeps_its_lines(monkeypatch, capsys):
    crashed = subprocess.CompletedProcess([], -11, stdout="PASS pycuda.open: opened\n", stderr="Segmentation fault\n")
    monkeypatch.setattr(check.subprocess, "run", lambda *args, **kwargs: crashed)
    results = check.part_in_child("pycuda", {})
    assert [(r.status, r.name) for r in results] == [("PASS", "pycuda.open"), ("FAIL", "pycuda")]
    assert "ended with code -11: Segmentation fault" in results[1].detail


# --- the checks' logic, on test doubles ----------------------------------------------------------


def test_expected_output_follows_the_backends_split():
    x = np.arange(19 * 2, dtype=np.float32).reshape(19, 2)
    y = check.expected_y(x, 8)
    assert y.shape == x.shape and y[0, 0] == 1 and y[8, 0] == x[8, 1]
    assert [row for row, value in enumerate(y[:, 1]) if value == check.MARK] == [7, 15, 18]


@pytest.mark.parametrize("worker", [False, True])
def test_copy_and_backend_checks_pass_on_test_doubles(worker):
    memory = DeviceMemory()
    driver = FakeDriver(memory)
    backend = check.run_check("backend", check.check_backend, lambda: FakeCuda(memory), driver, worker=worker)
    copies = check.run_check("copies", check.check_copies, lambda: FakeCuda(memory), driver, worker=worker)
    assert (backend.status, copies.status) == ("PASS", "PASS"), (backend, copies)
    assert "runs [5, 8, 8, 3, 1, 8, 8, 8, 3]" in backend.detail and "no TensorRT was run" in backend.detail


def test_concurrent_check_passes_on_test_doubles():
    memory = DeviceMemory()
    result = check.run_check("concurrent", check.check_concurrent, lambda: FakeCuda(memory), FakeDriver(memory))
    assert result.status == "PASS", result


def test_lost_copies_are_fails():
    memory = DeviceMemory()
    driver = FakeDriver(memory)
    backend = check.run_check("backend", check.check_backend, lambda: LosingCuda(memory), driver, worker=False)
    copies = check.run_check("copies", check.check_copies, lambda: LosingCuda(memory), driver, worker=False)
    assert backend.status == "FAIL" and "batch 5 of width 37: wrong output" in backend.detail
    assert copies.status == "FAIL" and "came back with" in copies.detail


def test_a_worker_run_without_the_primary_context_is_a_fail():
    memory = DeviceMemory()
    driver = FakeDriver(memory, bare=("edge-fer-head",))
    result = check.run_check("backend", check.check_backend, lambda: FakeCuda(memory), driver, worker=True)
    assert result.status == "FAIL" and "had context 0x0 current, not the primary" in result.detail


def test_fallback_check_on_test_doubles_of_cuda_python_and_pycuda(monkeypatch):
    """The stand-in cuda-python fails as on a too-old driver; the pycuda test double takes over."""
    memory = DeviceMemory()
    driver = install_pycuda(monkeypatch, memory)
    before = {name: sys.modules.get(name) for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime")}
    result = check.run_check("fallback", check.check_fallback, FakeDriver(memory))
    assert result.status == "PASS" and "fell back to pycuda" in result.detail, result
    assert driver.retained == driver.released == 1 and driver.stack() == []
    assert {name: sys.modules.get(name) for name in before} == before  # the stand-in modules are gone again


def test_fallback_check_without_pycuda_checks_the_error_and_skips(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)  # import pycuda raises ImportError
    result = check.run_check("fallback", check.check_fallback, FakeDriver(DeviceMemory()))
    assert result.status == "SKIP" and "it names both causes" in result.detail, result


# --- on a GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_script_passes_on_a_gpu(tmp_path):
    """The real run (not yet run on a GPU by this project). No TensorRT is needed or used."""
    command = [sys.executable, str(SCRIPT), "--json", str(tmp_path / "report.json")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
