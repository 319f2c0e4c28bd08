"""``python -m benchmarks ...`` is ``edge-fer bench ...``."""

import sys

from edge_fer.cli.main import main

sys.exit(main(["bench", *sys.argv[1:]]))
