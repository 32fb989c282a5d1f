"""One browser journey against a real llama.cpp server: chat, regenerate, stop.

Parley runs as the README tells a new user to run it against a local server: only
OPENAI_BASE_URL, no key. The model is tiny and random (make_model.py), so the replies
are garbage; what is checked is that they arrive, are saved and can be stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import bubbles, conversation_id, send, sidebar
from tests.peers.conftest import LlamaServer
from tests.waits import WAIT

pytestmark = pytest.mark.peers
WORKSPACE = "local"
MAX_TOKENS = "Max output tokens (0 = model default)"


def set_max_tokens(page: Page, value: int) -> None:
    """The sidebar's Model & parameters: how many tokens a reply may have."""
    box = sidebar(page).get_by_label(MAX_TOKENS)
    if not box.is_visible():
        sidebar(page).get_by_text("Model & parameters").click()
    box.fill(str(value))
    with rerun(page):
        box.press("Enter")


def wait_for_reply(page: Page, index: int) -> None:
    """Wait until bubble `index` is a saved reply (the rerun after the stream drew its footer)."""
    expect(bubbles(page).nth(index)).to_contain_text("out tokens")
    wait_for_idle(page)


def disconnects(server: LlamaServer) -> int:
    return server.log_text().count("Disconnected from client")


def wait_for_disconnects(server: LlamaServer, count: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if disconnects(server) >= count:
            return True
        time.sleep(0.1)  # a log file has nothing to wait on but itself
    return False


def wait_for_streaming(store: ConversationStore, cid: str) -> bool:
    """Wait until the reply being streamed has been saved with some text (about a second
    after it began: `lib.chat` saves a streaming reply as it arrives)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        last = store.all_messages(cid)[-1]
        if last.status == "streaming" and last.content:
            return True
        time.sleep(0.1)  # the database has nothing to wait on but itself
    return False


def test_chat_regenerate_and_stop_against_llama_cpp(
    streamlit_app: Callable[..., StreamlitServer],
    open_page: Callable[[str], Page],
    llama_server: LlamaServer,
) -> None:
    app = streamlit_app(key=None, OPENAI_BASE_URL=llama_server.base_url)
    store = ConversationStore(open_backend(app.data_dir), WORKSPACE)
    page = open_page(app.url)
    set_max_tokens(page, 48)

    send(page, "Hello there, who are you?")
    wait_for_reply(page, 1)
    cid = conversation_id(page)
    user, answer = store.all_messages(cid)
    assert (user.content, answer.status) == ("Hello there, who are you?", "ok")
    assert answer.content.strip(), "an empty reply was saved as ok"

    with rerun(page):
        page.get_by_role("button", name="Regenerate").click()
    wait_for_reply(page, 1)
    _, again = store.all_messages(cid)
    assert again.status == "ok" and again.meta["alternatives"][0] == answer.content

    set_max_tokens(page, 0)  # the server's default: on to the end of its context
    assert store.get(cid).params.max_tokens is None
    before = disconnects(llama_server)
    send(page, "Tell me a very long story.")
    assert wait_for_streaming(store, cid), "the long reply never started"
    page.get_by_test_id("stChatInputStopButton").click()
    assert wait_for_disconnects(llama_server, before + 1), "the HTTP stream stayed open"
    page.reload()
    wait_for_idle(page)
    expect(bubbles(page)).to_have_count(4)
    expect(bubbles(page).nth(3)).to_contain_text("Stopped by you")
    stopped = store.all_messages(cid)[-1]
    assert stopped.status == "stopped" and stopped.content

    # Required by issue 11: new chats use the model the server offers (it lists one).
    assert {m.model for m in store.all_messages(cid)[1::2]} == {llama_server.model}
