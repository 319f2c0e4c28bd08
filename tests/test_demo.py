"""edge-fer demo: the whole chain, offline, with nothing written outside its folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_writes_report_and_nothing_outside(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TMPDIR", None)
    result = subprocess.run(
        [sys.executable, "-m", "edge_fer", "demo", "--quick", "--out", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    demo = cwd / "demo"
    report = (demo / "report.md").read_text()
    assert "SYNTHETIC" in report
    # the synthetic set's realism (with the teacher installed, as in the dev install: its picks too)
    assert "Realism meter: the FER2013 teacher reads" in report or "Realism meter: not measured" in report
    # the real-face row, or why it is missing (no CK+ folder on this machine)
    assert "Zero-shot on REAL faces" in report or "Zero-shot on real faces: not measured" in report
    # with CK+ here, bench's accuracy column is its real faces; the synthetic test fold otherwise
    bench_data = "UAR on **REAL** data (ckplus" if "Zero-shot on REAL faces" in report else "UAR on **SYNTHETIC**"
    assert bench_data in report
    # the expected time at start, the measured one at the end
    assert "expected about" in result.stderr.splitlines()[0]
    assert "demo finished in" in result.stderr and "expected about" in result.stderr.strip().splitlines()[-1]
    # the camera chose its model among the exports, by recorded accuracy and a timing here
    assert "`edge-fer camera --model models` chose" in report and "ms/frame" in report
    for linked in ("bench/pareto.png", "runs/stt/confusion.png", "camera/annotated.mp4", "camera/events.jsonl"):
        assert linked in report and (demo / linked).stat().st_size > 0, linked
    assert (demo / "bench" / "results.json").is_file() and (demo / "models" / "ov_int8" / "model.xml").is_file()
    assert (demo / "models" / "trt_int8" / "model.int8.onnx").is_file()
    events = [json.loads(line) for line in (demo / "camera" / "events.jsonl").read_text().splitlines()]
    assert events and all(e["kind"] in ("expression", "micro") for e in events)
    assert sorted(p.name for p in cwd.iterdir()) == ["demo"]
    assert not (demo / "tmp").exists()
    assert list(home.iterdir()) == [], list(home.rglob("*"))[:10]
    # a second run refuses to overwrite
    again = subprocess.run(
        [sys.executable, "-m", "edge_fer", "demo", "--quick", "--out", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "--force" in again.stderr


def test_expected_time_follows_the_cpu():
    from edge_fer.demo import FULL, QUICK, _expected
    from edge_fer.runtime.cpu import cpu_info

    zen3 = cpu_info("model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n")
    zen4 = cpu_info("model name\t: AMD EPYC 9B14\nflags\t\t: sse2 avx2 avx512f avx512_vnni avx512_bf16\n")
    assert _expected(FULL, zen4) == (FULL.expected_s, "2 Intel Xeon cores (AVX-512)")
    seconds, where = _expected(FULL, zen3)
    assert seconds == FULL.expected_avx2_s > FULL.expected_s and "AVX2" in where
    assert _expected(QUICK, zen3)[0] == QUICK.expected_s  # not timed apart
