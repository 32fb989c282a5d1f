"""Errors, Stop and streaming in a real browser: what only the drawn page shows.

The test server is stopped mid-conversation: the error appears inside the reply's bubble,
under the question, with Retry there (not at the top of the page), the Connection panel
says the server does not answer, a reload still shows the failed turn, and once the
server is back Retry answers. Stop draws the stopped reply complete without a reload or a
click. While a reply streams, the previous reply's action row is not drawn between the
old and the new message.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import bubbles, chat, conversation_id, send
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

UNREACHABLE = "Could not connect to the model server"
STORY = " ".join(f"w{i}" for i in range(800))  # about 40 s at the pace below


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A test server on a fixed port, so it can be stopped and started again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeOpenAI(port=port).start()
    yield fake
    fake.stop()


@pytest.fixture
def app(streamlit_app: Callable[..., StreamlitServer], server: FakeOpenAI) -> StreamlitServer:
    return streamlit_app(OPENAI_BASE_URL=server.base_url)


def connection_panel(page: Page):  # noqa: ANN201 - a playwright Locator
    return (
        page.get_by_test_id("stSidebar").get_by_test_id("stExpander").filter(has_text="Connection")
    )


def test_the_server_stopped_mid_conversation_shows_the_error_in_place_and_retry_works(
    app: StreamlitServer, server: FakeOpenAI, open_page: Callable[[str], Page]
) -> None:
    page = open_page(app.url)
    chat(page, "First question")
    expect(connection_panel(page)).to_contain_text("key accepted")

    server.stop()
    with rerun(page):
        send(page, "Are you still there?")
    expect(bubbles(page)).to_have_count(4)
    failed = bubbles(page).nth(3)
    expect(failed).to_contain_text(UNREACHABLE)
    expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    # Only there: not above the title, and the question above it is kept.
    expect(page.get_by_test_id("stAlert").filter(has_text=UNREACHABLE)).to_have_count(1)
    expect(bubbles(page).nth(2)).to_contain_text("Are you still there?")
    title = page.get_by_role("heading", level=1).bounding_box()
    assert failed.bounding_box()["y"] > bubbles(page).nth(2).bounding_box()["y"] > title["y"]
    expect(connection_panel(page)).to_contain_text("No answer")

    cid = conversation_id(page)
    page.reload()
    wait_for_idle(page)
    failed = bubbles(page).nth(3)
    expect(failed).to_contain_text(UNREACHABLE)
    store = ConversationStore(open_backend(app.data_dir), "local")
    assert [m.status for m in store.all_messages(cid)] == ["ok", "ok", "ok", "failed"]

    server.start()
    with rerun(page):
        failed.get_by_role("button", name="Retry").click()
    expect(bubbles(page).nth(3)).to_contain_text("Echo: Are you still there?")
    expect(bubbles(page).nth(3)).to_contain_text("out tokens")
    wait_for_idle(page)
    expect(bubbles(page)).to_have_count(4)
    expect(page.get_by_text(UNREACHABLE)).to_have_count(0)
    expect(connection_panel(page)).to_contain_text("key accepted")  # known at once
    assert [m.status for m in store.all_messages(cid)] == ["ok"] * 4


def test_stop_draws_the_stopped_reply_complete_at_once(
    app: StreamlitServer, server: FakeOpenAI, open_page: Callable[[str], Page]
) -> None:
    page = open_page(app.url)
    server.script(STORY, chunk_size=6, chunk_delay=0.05)
    send(page, "Tell me a very long story")
    expect(bubbles(page).nth(1)).to_contain_text("w20 ")
    page.get_by_test_id("stChatInputStopButton").click()
    assert server.wait_for_disconnects(1), "the HTTP stream stayed open"

    # No reload, no click: the run after the Stop draws the reply's caption and controls.
    reply = bubbles(page).nth(1)
    expect(reply).to_contain_text("Stopped by you")
    expect(reply).to_contain_text("out tokens")
    expect(action_row(page)).to_have_count(1)
    expect(page.get_by_text("Context:")).to_be_visible()
    wait_for_idle(page)
    expect(bubbles(page)).to_have_count(2)


def action_row(page: Page):  # noqa: ANN201 - a playwright Locator
    """The Regenerate of the row under the transcript (not a bubble's own)."""
    return page.locator("button:not([data-testid='stChatMessage'] button)", has_text="Regenerate")


# Records, on every DOM change while a reply streams, whether the row's Regenerate or the
# context gauge stands above the last bubble (between the old messages and the new one).
WATCH_ROW = """() => {
  window.parleyRowAbove = 0;
  window.parleyObserved = 0;
  const outside = (el) => !el.closest('[data-testid="stChatMessage"]');
  new MutationObserver(() => {
    const all = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (all.length < 4) return;
    window.parleyObserved += 1;
    const last = all[all.length - 1].getBoundingClientRect();
    const controls = [...document.querySelectorAll('button')]
      .filter((b) => outside(b) && b.innerText.includes('Regenerate'))
      .concat([...document.querySelectorAll('[data-testid="stProgress"]')]);
    for (const el of controls) {
      const box = el.getBoundingClientRect();
      if (box.height > 0 && box.top < last.top) window.parleyRowAbove += 1;
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_the_previous_action_row_is_not_drawn_between_the_old_and_the_new_reply(
    app: StreamlitServer, server: FakeOpenAI, open_page: Callable[[str], Page]
) -> None:
    page = open_page(app.url)
    chat(page, "First question")
    expect(action_row(page)).to_have_count(1)

    page.evaluate(WATCH_ROW)
    server.script(" ".join(f"v{i}" for i in range(120)), chunk_size=6, chunk_delay=0.03)
    with rerun(page):
        send(page, "Second question")
    expect(bubbles(page).nth(3)).to_contain_text("v119")
    expect(bubbles(page).nth(3)).to_contain_text("out tokens")
    assert page.evaluate("window.parleyObserved") > 0, "the stream was never watched"
    assert page.evaluate("window.parleyRowAbove") == 0, "the old action row sat above"
    row = action_row(page)
    expect(row).to_have_count(1)
    assert row.bounding_box()["y"] > bubbles(page).nth(3).bounding_box()["y"]
