#!/usr/bin/env bash
# Install edge-fer with everything its tests need, then run the default test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
python -m pytest "$@"
