"""Real-browser fixtures: `streamlit run Home.py` in a subprocess, driven by Playwright
with Debian's Chromium (/usr/bin/chromium), against the local OpenAI-compatible server.

Where there is no Debian Chromium (no apt), `make test` downloads Playwright's own
Chromium instead and the `browser` fixture falls back to it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, log_file) -> None:  # noqa: ANN001 - an open file
    """Stop a test's server process (politely, then firmly) and close its log."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log_file.close()


class StreamlitServer:
    """One `streamlit run Home.py` process with its own data directory and log."""

    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.data_dir = data_dir
        full_env = {**os.environ, "PARLEY_DATA_DIR": str(data_dir), **env}
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "Home.py",
                "--server.port",
                str(self.port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=REPO,
            env=full_env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("streamlit did not become healthy in time")

    def stop(self) -> None:
        stop_process(self.proc, self._log_file)


def chromium_executable() -> str | None:
    """Debian's (or $PARLEY_CHROMIUM) Chromium if present, else None: Playwright's own."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
        except Error as exc:
            pytest.fail(f"No usable Chromium ({exc.message.splitlines()[0]}): run `make test`.")
        yield browser
        browser.close()


@pytest.fixture
def browser_server() -> Iterator[FakeOpenAI]:
    """A dedicated local OpenAI-compatible server for the Streamlit subprocess."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def streamlit_app(
    tmp_path: Path, browser_server: FakeOpenAI
) -> Iterator[Callable[..., StreamlitServer]]:
    """Start Parley; keyword arguments become environment variables of the app."""
    started: list[StreamlitServer] = []

    def start(*, key: str | None = "sk-test", **env: str) -> StreamlitServer:
        values = {
            "OPENAI_BASE_URL": browser_server.base_url,
            # Not the developer's .streamlit/secrets.toml: an APP_PASSWORD or [auth] there
            # would put every journey behind a gate. A test may pass its own file.
            "STREAMLIT_SECRETS_FILES": str(tmp_path / "no-secrets.toml"),
            **env,
        }
        if key:
            values["OPENAI_API_KEY"] = key
        server = StreamlitServer(tmp_path / "data", values, tmp_path / "streamlit.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def open_page(browser, request: pytest.FixtureRequest) -> Iterator[Callable[[str], object]]:  # noqa: ANN001
    """Open a URL in a fresh browser context (a new Streamlit session) and wait for it.

    The test module's VIEWPORT, if it has one, sizes the window (screenshots depend on it).
    """
    viewport = getattr(request.module, "VIEWPORT", {"width": 1300, "height": 900})
    contexts = []

    def open_(url: str):  # noqa: ANN202 - a playwright Page
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        wait_for_idle(page)
        return page

    yield open_
    for context in contexts:
        context.close()


def wait_for_idle(page, timeout: float = 30_000) -> None:  # noqa: ANN001 - playwright Page
    """Wait until Streamlit finished its script run.

    Streamlit 1.67 shows no status widget with toolbarMode "minimal", so this reads the
    run state the app root exposes. Right after an input the state can still read
    "notRunning" from the previous run: wait for something the new run draws first.
    """
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && document.querySelector('[data-testid=\"stApp\"]')"
        ".dataset.testScriptState === 'notRunning'",
        timeout=timeout,
    )
