"""The ``edge-fer`` command line: one subcommand per action, each in its own module."""
