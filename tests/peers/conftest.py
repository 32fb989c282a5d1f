"""The peer run's fixtures: a real llama.cpp server (llama-cpp-python's) on loopback.

`make test-peers` builds .venv-peers once (tests/peers/build_venv.sh); these fixtures
write the tiny random model with it (make_model.py) and start
`python -m llama_cpp.server` on a free port with embeddings on, once per session (a
second server, for the one test of a chat model's per-token embeddings, only if asked). Every
test here is marked `peers`, which `make test` deselects (pyproject.toml's addopts).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.browser import conftest as browser_suite
from tests.browser.conftest import free_port, stop_process
from tests.waits import WAIT

# The journey's fixtures, from the browser suite's conftest (which pytest does not share).
browser, open_page = browser_suite.browser, browser_suite.open_page
browser_server, streamlit_app = browser_suite.browser_server, browser_suite.streamlit_app

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PEERS_VENV = Path(os.environ.get("PARLEY_PEERS_VENV", REPO / ".venv-peers"))
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
N_CTX = 2048


@dataclass
class LlamaServer:
    """A running llama-cpp-python server and what the tests need to reach it."""

    base_url: str  # ends in /v1, as OPENAI_BASE_URL does
    root: str  # the server's root, for its non-OpenAI routes (/extras/tokenize)
    model: str  # the one id /v1/models lists
    log: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def tokens(self, text: str) -> int:
        """The server's own token count of `text` (llama-cpp-python's /extras/tokenize)."""
        body = {"input": text, "model": self.model}
        r = httpx2.post(f"{self.root}/extras/tokenize/count", json=body, timeout=WAIT)
        r.raise_for_status()
        return r.json()["count"]


def write_model(directory: Path, pooling: str) -> Path:
    if not PEERS_PYTHON.exists():
        pytest.fail(f"No {PEERS_VENV}: run `make test-peers`, which builds it.")
    path = directory / f"parley-peer-tiny-{pooling}.gguf"
    subprocess.run([PEERS_PYTHON, HERE / "make_model.py", path, pooling], check=True, timeout=WAIT)
    return path


@contextmanager
def running_server(model: Path, directory: Path) -> Iterator[LlamaServer]:
    """`python -m llama_cpp.server` for `model` on a free loopback port, until the end."""
    port = free_port()
    log = directory / "llama_cpp.server.log"
    log_file = log.open("w")
    command = [
        PEERS_PYTHON, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX),
        "--embedding", "true",
    ]  # fmt: skip
    # PYTHONUNBUFFERED: the server prints "Disconnected from client" lines the stop test reads.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    root = f"http://127.0.0.1:{port}"
    try:
        model_id = _wait_for_models(root, proc, log)
        yield LlamaServer(f"{root}/v1", root, model_id, log, proc)
    finally:
        stop_process(proc, log_file)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The server with a model whose file names mean pooling, as an embedding model's does."""
    directory = tmp_path_factory.mktemp("peer-mean")
    with running_server(write_model(directory, "mean"), directory) as server:
        yield server


@pytest.fixture(scope="session")
def chat_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The server with a model that names no pooling, as a chat model's file does: its
    /v1/embeddings returns one vector per token."""
    directory = tmp_path_factory.mktemp("peer-none")
    with running_server(write_model(directory, "none"), directory) as server:
        yield server


def _wait_for_models(root: str, proc: subprocess.Popen, log: Path) -> str:
    """Wait until /v1/models answers; return the one model id it lists."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited:\n{log.read_text()[-3000:]}")
        try:
            r = httpx2.get(f"{root}/v1/models", timeout=2)
            if r.status_code == 200:
                return r.json()["data"][0]["id"]
        except httpx2.TransportError:
            pass
        time.sleep(0.2)  # polling a starting process: nothing to wait on but the port
    pytest.fail(f"llama_cpp.server did not answer /v1/models in {WAIT} s:\n{log.read_text()}")
