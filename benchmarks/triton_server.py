"""A real Triton Inference Server on this machine, for the Triton tests and benchmark.

    python -m benchmarks.triton_server --setup                  # once: builds .triton/env
    python -m benchmarks.triton_server --repo REPO [--http-port 8000 --grpc-port 8001]

The ``nvidia-pytriton`` wheel (0.7.0) carries a ``tritonserver`` binary (Triton 2.51) with
the Python backend only, and Python-backend stubs built for CPython 3.8-3.13 that link the
*system's* ``libpython`` (``/lib/x86_64-linux-gnu/libpython3.X.so``). The stub embeds
whichever Python comes first on ``PATH`` for its standard library, so run from a venv of
pyenv's 3.11.7 it pairs Debian's 3.11.2 ``libpython`` with 3.11.7's ``multiprocessing``,
which calls ``RLock._recursion_count`` that 3.11.2's C ``RLock`` lacks: the
``'_thread.RLock' object has no attribute '_recursion_count'`` of PyTriton's own start-up.
The combination that works: the server's Python environment is a venv of the system
interpreter the stub links (here ``/usr/bin/python3.11``, 3.11.2), with ``numpy<2`` (the
stub's tensors; pytriton pins it) and the model's runtime (onnxruntime, openvino); the stub
for that version is copied into the Python backend's folder. ``--setup`` builds exactly
that in ``.triton/env``; the repository's models use ``export.triton --flavour python``
(no ONNX Runtime/OpenVINO backends in this binary). PyTriton's own ``Triton.bind`` is not
used: Triton serves the exported files directly.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from edge_fer.cli.args import Parser
from edge_fer.errors import EdgeFerError

__all__ = ["ENV", "ServerUnavailable", "TritonServer", "server_unavailable", "setup"]

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".triton" / "env"
PYTRITON = "nvidia-pytriton==0.7.0"
SERVER_PACKAGES = [PYTRITON, "onnxruntime>=1.17", "openvino>=2024.0"]  # pytriton brings numpy<2


class ServerUnavailable(EdgeFerError):
    """The local Triton cannot be set up or started here (the message says why)."""


def _tritonserver_dir(env: Path = ENV) -> Path:
    found = sorted(env.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    if not found:
        raise ServerUnavailable(f"{env} has no nvidia-pytriton; run python -m benchmarks.triton_server --setup")
    return found[0]


def _system_python() -> Path:
    """The interpreter whose libpython the stubs link: the system's python3 (not a pyenv one)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).is_file():
            return Path(candidate)
    raise ServerUnavailable("no system python3 (/usr/bin/python3): the Triton Python stub links its libpython")


def setup(env: Path = ENV, *, log=print) -> Path:
    """Build the server's Python environment (see the module docstring); idempotent."""
    python = _system_python()
    version = subprocess.run(
        [str(python), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not (env / "bin" / "python").exists():
        log(f"creating {env} from {python} (Python {version})")
        result = subprocess.run([str(python), "-m", "venv", str(env)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ServerUnavailable(f"{python} -m venv failed: {result.stderr.strip()[-300:]}")
    log(f"installing {', '.join(SERVER_PACKAGES)} into {env}")
    result = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "-q", *SERVER_PACKAGES], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ServerUnavailable(f"pip install into {env} failed: {result.stderr.strip()[-500:]}")
    server = _tritonserver_dir(env)
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerUnavailable(f"{PYTRITON} has no Python-backend stub for Python {version}")
    shutil.copy2(stub, server / "backends" / "python" / "triton_python_backend_stub")
    log(f"ready: {server / 'bin' / 'tritonserver'} with the Python {version} stub")
    return env


def server_unavailable(env: Path = ENV) -> str | None:
    """Why the local server cannot run here (None when it can): for tests' skip reasons."""
    try:
        server = _tritonserver_dir(env)
    except ServerUnavailable as exc:
        return str(exc)
    if not (server / "backends" / "python" / "triton_python_backend_stub").is_file():
        return f"{env} is not set up; run python -m benchmarks.triton_server --setup"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TritonServer:
    """``tritonserver`` on 127.0.0.1 serving ``repo``; a context manager (stops it on exit).

    Attributes:
        http, grpc: ``HOST:PORT`` of each endpoint once started.

    Raises:
        ServerUnavailable: not set up, or the server did not become ready within ``timeout``
            (the message ends with its log).
    """

    def __init__(self, repo: str | os.PathLike, *, env: Path = ENV, http_port: int = 0, grpc_port: int = 0,
                 timeout: float = 90.0, log_path: Path | None = None) -> None:  # fmt: skip
        reason = server_unavailable(env)
        if reason:
            raise ServerUnavailable(reason)
        server = _tritonserver_dir(env)
        ports = [http_port or _free_port(), grpc_port or _free_port(), _free_port()]
        self.http, self.grpc = f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"
        self.log_path = log_path or Path(repo).with_name(Path(repo).name + ".tritonserver.log")
        command = [
            str(server / "bin" / "tritonserver"),
            f"--model-repository={Path(repo).resolve()}",
            f"--backend-directory={server / 'backends'}",
            f"--http-port={ports[0]}",
            f"--grpc-port={ports[1]}",
            f"--metrics-port={ports[2]}",
            "--exit-timeout-secs=5",
        ]
        environment = dict(os.environ, PATH=f"{env / 'bin'}:{os.environ.get('PATH', '')}")
        environment.pop("PYTHONPATH", None)  # the stub's Python is the server env's alone
        environment.pop("VIRTUAL_ENV", None)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=environment)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-1500:]
        raise ServerUnavailable(f"tritonserver did not become ready: {_first_error(tail)}\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _first_error(log: str) -> str:
    match = re.search(r"^E\d+ .*$", log, re.MULTILINE)
    return match.group(0)[:300] if match else "see its log"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m benchmarks.triton_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true", help="build .triton/env (the server's Python environment)")
    parser.add_argument("--repo", type=Path, help="a model repository (python -m export.triton --flavour python)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    args = parser.parse_args(argv)
    if args.setup:
        setup()
    if args.repo is not None:
        with TritonServer(args.repo, http_port=args.http_port, grpc_port=args.grpc_port) as server:
            print(f"Triton serving {args.repo}: http {server.http}, grpc {server.grpc} (Ctrl-C stops it)", flush=True)
            try:
                server.process.wait()
            except KeyboardInterrupt:
                pass
    if not args.setup and args.repo is None:
        parser.error("give --setup, --repo REPO or both")
    return 0


if __name__ == "__main__":
    from edge_fer.cli.main import run_tool

    run_tool(main, "python -m benchmarks.triton_server")
