"""Bring your own key: a key typed into the sidebar is used by that browser session only.

One context types a key and runs the journeys (chat, search, export, documents, images);
afterwards the key appears nowhere under the data directory, in the server's log, in any
URL either browser requested or visited, or in the other context's pages.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import Sessions, chat, goto, search_conversations, sidebar
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser


@pytest.fixture
def sessions(browser: Browser) -> Iterator[Sessions]:
    opened = Sessions(browser)
    yield opened
    opened.close()


def type_key(page: Page, key: str) -> None:
    bar = sidebar(page)
    bar.get_by_text("Connection").click()
    box = bar.get_by_role("textbox", name="API key")
    box.fill(key)
    with rerun(page):
        box.press("Enter")
    expect(page.get_by_test_id("stChatInput")).to_be_visible()


def test_a_typed_key_stays_in_its_session(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    sessions: Sessions,
    tmp_path: Path,
) -> None:
    typed = f"sk-proj-typed-{uuid.uuid4().hex}"
    browser_server.api_key = typed  # any request made with another key fails with 401
    app = streamlit_app(key=None, PARLEY_PROVIDER="openai", PARLEY_CHAT_MODEL="gpt-5-mini")

    mine = sessions.open(app.url)
    type_key(mine, typed)
    chat(mine, "Hello with my own key")
    chat(mine, "And a second question")
    search_conversations(mine, "second")
    expect(sidebar(mine).get_by_role("button", name="Hello with my own key")).to_be_visible()
    search_conversations(mine, "")  # the list again, with each conversation's menu
    sidebar(mine).locator('[class*="st-key-menu_"]').first.get_by_role("button").click()
    mine.get_by_role("menuitem", name=re.compile("Export")).click()
    as_json = mine.get_by_role("dialog").get_by_role("button", name="JSON")
    expect(as_json).to_be_visible()
    with mine.expect_download() as download:
        as_json.click()
    exported = download.value.path().read_text()
    assert "And a second question" in exported and typed not in exported
    mine.get_by_role("dialog").get_by_role("button", name="Close").click()
    expect(mine.get_by_role("dialog")).to_have_count(0)
    wait_for_idle(mine)

    goto(mine, "Documents")
    notes = tmp_path / "kites.md"
    notes.write_text("# Kites\n\nRed kites nest in tall trees and hunt over open hills.\n")
    mine.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(notes))
    with rerun(mine):
        mine.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    expect(mine.get_by_test_id("stAlertContentSuccess")).to_contain_text("kites.md: 1 page")
    chat(mine, "Where do red kites nest?")

    goto(mine, "Images")
    mine.get_by_label("Prompt", exact=True).fill("a red kite over the hills")
    with rerun(mine):
        mine.get_by_role("button", name="Generate", exact=True).click()
    tile = mine.locator('[class*="st-key-img-tile-"]').filter(has_text="a red kite")
    expect(tile).to_have_count(1)

    calls = [r for r in browser_server.requests if r.path.startswith("/v1/")]
    assert {r.path for r in calls} >= {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/images/generations",
    }
    assert {r.headers.get("authorization") for r in calls} == {f"Bearer {typed}"}

    # Another visitor of the same server has no key: the typed one stayed in its session.
    other = sessions.open(app.url)
    expect(other.get_by_text("Add an API key to start chatting")).to_be_visible()
    goto(other, "Images")
    expect(other.get_by_text("Add an API key to generate images")).to_be_visible()
    assert typed not in other.content()
    expect(mine.get_by_test_id("stException")).to_have_count(0)

    assert [url for url in sessions.urls if typed in url] == []
    log = Path(app.log).read_text()
    assert typed not in log and "Traceback" not in log
    stored = [p for p in app.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "parley.db" for p in stored)
    for path in stored:
        assert typed.encode() not in path.read_bytes(), f"the key reached {path}"
