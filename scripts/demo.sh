#!/usr/bin/env bash
# Install edge-fer with what the demo needs (training, export, both CPU backends, the face
# detector, the FER2013 teacher the demo distils from), then run `edge-fer demo` into
# ./edge-fer-demo. Extra arguments go to `edge-fer demo` (e.g. `bash scripts/demo.sh --quick`, `--out DIR`, `--force`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh train,export,openvino,onnxruntime,teacher
edge-fer demo "$@"
