#!/usr/bin/env bash
# Install edge-fer with everything its tests need, then run the default test suite, then the
# engine-parity tests (marked `isa`) a second time with the CPU capped to AVX2, so a machine
# with AVX-512 also catches what breaks on AVX2-only CPUs. tests/isa.py says what the cap
# reaches; the second run's header shows it in force (the kernels torch and OpenVINO picked).
# Extra arguments go to pytest instead (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
if [ "$#" -gt 0 ]; then
  exec python -m pytest "$@"
fi
python -m pytest
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  echo "+ second ISA: the engine-parity tests again, capped to AVX2 (EDGE_FER_ISA_CAP=avx2)"
  EDGE_FER_ISA_CAP=avx2 python -m pytest -m isa
else
  echo "+ second ISA: not needed, this CPU has no AVX-512 - the run above already used AVX2 (or less)"
fi
