"""Our ``python -m`` tools run in this process, where a fresh interpreter would only add start-up.

A ``train.stt`` process spends ~6 s before and around its work on 2 cores: the interpreter and
torch (~3.5 s), then torch._dynamo, which torch imports in the first optimizer's constructor
(~2.5 s). A test that checks what a run wrote, or a refusal's message, need not pay that each
time: ``edge_fer.cli.main.run_tool`` turns any ``EdgeFerError`` into one line and exit code 1,
and tests that need a real process (signals, the one-line print, exit codes) still start one.
"""

import contextlib
import importlib
import io

import pytest
import torch

from edge_fer.errors import EdgeFerError


def ran(module: str, *args: str) -> str:
    """``python -m MODULE ARGS`` (e.g. "train.stt") run by the module's ``main``; its stdout.
    torch's thread count is put back after it (a run sets its own).

    Data loading must stay in this process (``--workers 0``; train.stt's default is one worker
    process): a DataLoader worker forked from the test process, which by then holds OpenVINO's,
    ONNX Runtime's and TFLite's threads, crashed it with a segmentation fault."""
    workers = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--workers"]
    assert workers == ["0"] or (not workers and module != "train.stt"), "pass --workers 0 in-process"
    threads = torch.get_num_threads()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            assert importlib.import_module(module).main(list(args)) in (0, None)
    finally:
        torch.set_num_threads(threads)
    return out.getvalue()


def refused(module: str, *args: str) -> str:
    """The message ``python -m MODULE`` refuses ``args`` with (its ``EdgeFerError``)."""
    threads = torch.get_num_threads()
    try:
        with pytest.raises(EdgeFerError) as caught:
            importlib.import_module(module).main(list(args))
    finally:
        torch.set_num_threads(threads)
    return str(caught.value)
