import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edge_fer.demo import decline_openvino_telemetry  # light: no torch, no openvino

# The tests run in a home of their own, so nothing lands in the user's (ONNX Runtime and
# OpenVINO keep ids and caches under ~), and there OpenVINO's and NNCF's usage telemetry is
# declined: with it on, every model conversion forks this process to send an event, and the
# export tests took 1.34x as long, one run each (docs/export.md). Set before anything imports
# openvino or nncf.
_HOME = Path(tempfile.mkdtemp(prefix="edge-fer-tests-home-"))
decline_openvino_telemetry(_HOME)
os.environ["HOME"] = str(_HOME)
os.environ["XDG_CACHE_HOME"] = str(_HOME / ".cache")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
# QAT on NNCF's pure-torch fake-quantize kernels, as the demo runs it: in a fresh home the C++
# kernels would be compiled again by every test run (~35 s of 2 cores). They compute the same
# (tests/test_qat_kernels.py compares the two, in the slow run); the QAT tests check our code.
os.environ.setdefault("EDGE_FER_QAT_KERNELS", "torch")

import isa  # noqa: E402 - before torch: a capped run (EDGE_FER_ISA_CAP) must set the libraries' caps first

if isa.requested():
    isa.apply_cap(isa.requested())

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


def pytest_report_header(config):
    """Say which ISA the engines run with; in a capped run, prove the cap is in force."""
    import platform

    flags = set()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        flags = set(
            next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
        )
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    lines = [f"CPU: {platform.machine()}, features: {' '.join(f for f in wanted if f in flags) or 'unknown'}"]
    cap = isa.requested()
    if cap:
        lines.append(f"ISA capped to {cap} ({isa.CAP_ENV}):")
        try:
            lines += ["  " + line for line in isa.verify_cap(cap)]
        except AssertionError as exc:
            pytest.exit(f"the ISA cap is not in force: {exc}", returncode=3)
    return lines


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def dfer_data(tmp_path_factory):
    """35 synthetic DFER videos in DFEW's layout (shared by the export and bench tests)."""
    from edge_fer.data.synth import write_dfer

    return write_dfer(tmp_path_factory.mktemp("dfer"), clips=35, seed=4, workers=2)


@pytest.fixture(scope="session")
def trained_stt(dfer_data, tmp_path_factory):
    """``stt_tiny`` trained 15 epochs on ``dfer_data`` (about 25 s on 2 cores).

    Engine-parity tests need a trained network: an untrained one has near-constant class
    features, so its final LayerNorm amplifies rounding noise and its logits are too close
    together for top-1 to mean anything."""
    out = tmp_path_factory.mktemp("trained") / "run"
    command = [sys.executable, "-m", "train.stt", "--dataset", "dfew", "--root", str(dfer_data), "--fold", "2"]
    # A fixed thread count: otherwise training drops threads while another process is busy, and a
    # float sum split over another number of threads rounds otherwise - a different network each
    # run (one, in a full CI run on an Intel Xeon, quantized 17 units from FP32 where the bound is 16).
    command += ["--epochs", "15", "--batch-size", "4", "--workers", "0", "--threads", "2", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / "last.pt"


@pytest.fixture(scope="session")
def openvino_export(trained_stt, dfer_data, tmp_path_factory):
    """``openvino_export(precision)``: the folder of ``trained_stt`` exported to OpenVINO IR at
    "fp16" or "int8" (the full model and the streaming pair), exported once per session: the
    export tests check it, the choice tests choose among copies of it (an INT8 export takes
    ~25 s). INT8: post-training on 14 clips of fold 2, and evaluated on fold 2, so its sidecar
    records a UAR; FP16 records none. Treat the folders as read-only."""
    done = {}

    def export(precision):
        if precision not in done:
            out = tmp_path_factory.mktemp(f"ov_{precision}") / precision
            command = [sys.executable, "-m", "export.openvino", "--checkpoint", str(trained_stt)]
            command += ["--precision", precision, "--out", str(out)]
            if precision == "int8":
                command += ["--calib", f"dataset=dfew,root={dfer_data},fold=2,samples=14"]
                command += ["--dataset", "dfew", "--root", str(dfer_data), "--fold", "2"]
            result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)
            assert result.returncode == 0, result.stderr[-2000:]
            done[precision] = out
        return done[precision]

    return export
