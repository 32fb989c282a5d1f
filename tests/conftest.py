"""Shared fixtures, layered like `llm`'s: pure objects, the local OpenAI-compatible
server, AppTest pages, and (in tests/browser/) a real browser.

Every test gets a fresh data directory, so no test sees another's database, and the
Streamlit caches are cleared between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lib import settings
from lib.conversations import ConversationStore
from lib.documents.pgindexing import wait_all as wait_for_indexing
from lib.store.backend import Backend, forget_backends, open_backend
from tests.fake_openai import FakeOpenAI
from tests.postgres import TestPostgres, truncate_all
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    # The developer's own settings must not leak into tests: every variable Parley reads.
    for name in settings.KEYS.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(path))  # after the loop, which clears it too
    return path


@pytest.fixture(autouse=True)
def clear_streamlit_caches() -> Iterator[None]:
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def postgres() -> Iterator[TestPostgres]:
    """The real PostgreSQL server (started once, on first use; see tests/postgres.py)."""
    server = TestPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _shared_database(postgres: TestPostgres) -> str:
    return postgres.fresh_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    """Each backend in turn: every test that takes it runs on SQLite and on PostgreSQL.

    On PostgreSQL, PARLEY_DATABASE_URL is set too, so pages and the CLI use the same
    database; the tables are emptied afterwards (cheaper than a database per test).
    """
    if request.param == "sqlite":
        yield open_backend(data_dir)
        forget_backends()
        return
    url = request.getfixturevalue("_shared_database")
    monkeypatch.setenv("PARLEY_DATABASE_URL", url)
    try:
        yield open_backend(data_dir, url)
    finally:
        wait_for_indexing()
        forget_backends()
        truncate_all(url)


@pytest.fixture(scope="session")
def _server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def openai_server(_server: FakeOpenAI) -> FakeOpenAI:
    """The local OpenAI-compatible server, with no scripts, faults or records left over."""
    _server.reset()
    return _server


@pytest.fixture
def store(backend: Backend) -> ConversationStore:
    """The "local" workspace's conversations (the web app's and CLI's local mode), on each
    backend in turn: a test that takes it runs on SQLite and on PostgreSQL."""
    return ConversationStore(backend, "local")


@pytest.fixture
def app(openai_server: FakeOpenAI) -> Callable[..., AppTest]:
    """Build an AppTest of Home.py pointed at the local server through `at.secrets`."""

    def make(page: str | None = None, *, key: str | None = "sk-test", **secrets: str) -> AppTest:
        at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=WAIT)
        if key:
            at.secrets["OPENAI_API_KEY"] = key
        at.secrets["OPENAI_BASE_URL"] = openai_server.base_url
        for name, value in secrets.items():
            at.secrets[name] = value
        if page:
            at.switch_page(page)
        return at

    return make


@pytest.fixture
def recognised(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The pictures given to tesseract, which still runs: to check that OCR ran, or that
    a setting kept it from running."""
    from lib.documents import ocr

    seen: list[bytes] = []
    run = ocr.Pool._recognise

    def recording(pool: ocr.Pool, png: bytes) -> str:
        seen.append(png)
        return run(pool, png)

    monkeypatch.setattr(ocr.Pool, "_recognise", recording)
    return seen
