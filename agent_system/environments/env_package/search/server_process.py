"""Run ``examples/search/retriever/retrieval_server.py`` as a child process (tests, benchmarks, scripts).

    with RetrievalServer(index_dir) as server:
        ... env.search.search_url = server.url ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from verl.utils.fs import REPO_ROOT

SERVER_SCRIPT = REPO_ROOT / "examples" / "search" / "retriever" / "retrieval_server.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RetrievalServer:
    """The retrieval server on a free local port; started on construction, stopped by :meth:`stop`.

    ``script`` runs another server with the same command line (``--index_path``, ``--port``) and
    ``GET /health``, e.g. the reference-design baseline of ``benchmarks/compare.py``.
    """

    def __init__(self, index_dir: str | os.PathLike, *extra_args: str, start_timeout_s: float = 300.0,
                 script: str | os.PathLike = SERVER_SCRIPT):
        self.index_dir = Path(index_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base_url}/retrieve"
        self._log = tempfile.TemporaryFile(mode="w+")
        self._command = [sys.executable, str(script), "--index_path", str(index_dir), "--port", str(self.port),
                         *extra_args]
        self.start(start_timeout_s)

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the server process (again, after :meth:`stop` or :meth:`kill`: same port, same URL)."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(self._command, env=env, stdout=self._log, stderr=subprocess.STDOUT, text=True)
        self._wait_until_healthy(timeout_s)

    def _wait_until_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"retrieval server exited with code {self.process.returncode}:\n{self.log()}")
            if self.healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"retrieval server was not healthy after {timeout_s:.0f}s:\n{self.log()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def kill(self) -> None:
        """SIGKILL the server, as a crash or an OOM kill would (no graceful shutdown)."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RetrievalServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
