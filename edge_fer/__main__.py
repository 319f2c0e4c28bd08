import sys

from edge_fer.cli.main import main

sys.exit(main())
