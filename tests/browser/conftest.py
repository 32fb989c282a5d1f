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
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.fake_openai import FakeOpenAI
from tests.waits import JOURNEY_LIMIT, UI_TIMEOUT, WAIT

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

# Every expect() waits as long as every other wait (Playwright's own default is 5 s).
expect.set_options(timeout=UI_TIMEOUT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A journey is many waits in a row: its hang guard is JOURNEY_LIMIT, not the suite's
    per-test timeout (one loaded run took 170 s for a journey that takes 40 alone)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(JOURNEY_LIMIT))


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

    def _wait_ready(self, timeout: float = WAIT) -> None:
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
        context = new_context(browser, viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        wait_for_idle(page)
        return page

    yield open_
    for context in contexts:
        context.close()


# Counts the script runs a page has seen finish, from Streamlit's own messages: a
# ForwardMsg whose field 6 (script_finished) is set, with any status but 2
# (FINISHED_EARLY_FOR_RERUN, which another run follows). The count goes up two tasks after
# the message, once the app has handled it. Installed in every context by new_context().
COUNT_RUNS = """(() => {
  window.parleyRuns = 0;
  const varint = (bytes, at) => {
    let value = 0, shift = 0, byte;
    do { byte = bytes[at.i++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; }
    while (byte & 0x80 && at.i < bytes.length);
    return value;
  };
  const finishedStatus = (bytes) => {
    const at = {i: 0};
    while (at.i < bytes.length) {
      const tag = varint(bytes, at), field = Math.floor(tag / 8), wire = tag & 7;
      if (field === 6 && wire === 0) return varint(bytes, at);
      if (wire === 0) varint(bytes, at);
      else if (wire === 1) at.i += 8;
      // Not `at.i += varint(...)`: that reads at.i before varint moves it past the length.
      else if (wire === 2) { const length = varint(bytes, at); at.i += length; }
      else if (wire === 5) at.i += 4;
      else return null;
    }
    return null;
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        if (!(event.data instanceof ArrayBuffer)) return;
        const status = finishedStatus(new Uint8Array(event.data));
        if (status !== null && status !== 2)
          setTimeout(() => setTimeout(() => { window.parleyRuns += 1; }));
      });
    }
  };
})();"""

# Streamlit is idle: connected, no script running, no status widget saying so, and no
# element left stale (drawn by an earlier run and not yet replaced).
IDLE = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  return app !== null
    && app.dataset.testConnectionState === 'CONNECTED'
    && app.dataset.testScriptState === 'notRunning'
    && (status === null || !/running/i.test(status.innerText))
    && document.querySelector('[data-stale="true"]') === null;
}"""


def new_context(browser, **options):  # noqa: ANN001, ANN201 - playwright Browser, BrowserContext
    """A browser context whose every wait is UI_TIMEOUT and whose pages count script runs."""
    context = browser.new_context(**options)
    context.set_default_timeout(UI_TIMEOUT)
    context.set_default_navigation_timeout(UI_TIMEOUT)
    context.add_init_script(COUNT_RUNS)
    return context


def wait_for_idle(page, timeout: float = UI_TIMEOUT) -> None:  # noqa: ANN001 - playwright Page
    """Wait until Streamlit has finished its script run (see IDLE).

    Right after an input the page can still look idle from the run before: when an action
    surely starts a run, wrap it in `with rerun(page):` instead.
    """
    page.wait_for_function(IDLE, timeout=timeout)


@contextmanager
def rerun(page, timeout: float = UI_TIMEOUT) -> Iterator[None]:  # noqa: ANN001 - playwright Page
    """`with rerun(page): button.click()`: wait until the run the action starts has finished.

    Only for actions that always rerun the script (a button, a chat message, a page link, a
    changed input); for anything else the wait would run out.
    """
    before = page.evaluate("window.parleyRuns")
    assert isinstance(before, int), "this page's context was not made by new_context()"
    yield
    page.wait_for_function(
        f"(before) => window.parleyRuns > before && ({IDLE})()", arg=before, timeout=timeout
    )
