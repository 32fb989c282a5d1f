"""The Chat page in a real browser: `streamlit run Home.py` driven by Chromium.

These journeys check what only a browser shows: a reply arriving piece by piece, the
conversation id in the URL surviving a reload, the Stop control closing the HTTP stream,
and a first visit with no key configured. The journey also takes the README's screenshot
(docs/screenshot.png) when it is missing or when PARLEY_UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore
from lib.store.backend import open_backend
from tests.browser.conftest import REPO, StreamlitServer, rerun, wait_for_idle
from tests.browser.session import bubbles, conversation_id, send
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

pytestmark = pytest.mark.browser

SCREENSHOT = REPO / "docs" / "screenshot.png"
VIEWPORT = {"width": 1400, "height": 900}
WORKSPACE = "local"  # single-user mode's workspace, as the app uses it

FIRST_QUESTION = "What can you help me with today?"
# Plain prose, so the rendered text equals the streamed text and prefixes can be compared.
FIRST_REPLY = (
    "I can draft and edit text, explain code, summarise documents and brainstorm ideas. "
    "Every reply streams in as it is written, and the whole conversation is saved."
)
SECOND_QUESTION = "Which servers can Parley talk to?"
SECOND_REPLY = (
    "Any server that speaks the OpenAI API:\n\n"
    "- **OpenAI** and **Azure OpenAI**, with an API key\n"
    "- **Ollama**, **LM Studio**, **vLLM** and the **llama.cpp server**, locally\n\n"
    "Pick one under *Connection* in the sidebar, or set `OPENAI_BASE_URL`."
)

# Records the last chat bubble's text on every DOM change, so a test can prove that the
# reply was shown in pieces before it was complete.
RECORD_LAST_BUBBLE = """() => {
  window.parleySeen = [];
  new MutationObserver(() => {
    const bubbles = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (bubbles.length) window.parleySeen.push(bubbles[bubbles.length - 1].innerText);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def wait_for_saved_reply(page: Page, index: int, text: str) -> None:
    """Wait until bubble `index` shows `text` and the rerun after the stream drew its footer."""
    expect(bubbles(page).nth(index)).to_contain_text(text)
    expect(bubbles(page).nth(index)).to_contain_text("out tokens")
    wait_for_idle(page)


def store_of(app: StreamlitServer) -> ConversationStore:
    return ConversationStore(open_backend(app.data_dir), WORKSPACE)


def test_chat_streams_saves_and_survives_a_reload(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    page = open_page(app.url)
    assert "c=" not in page.url

    browser_server.script(FIRST_REPLY, chunk_size=6, chunk_delay=0.03)
    page.evaluate(RECORD_LAST_BUBBLE)
    send(page, FIRST_QUESTION)
    wait_for_saved_reply(page, 1, FIRST_REPLY)

    seen = page.evaluate("window.parleySeen")
    partial = [s for s in seen if FIRST_REPLY[:12] in s and FIRST_REPLY not in s]
    assert partial, "the reply appeared all at once instead of streaming"

    cid = conversation_id(page)
    saved = store_of(app).all_messages(cid)
    assert [(m.role, m.content) for m in saved] == [
        ("user", FIRST_QUESTION),
        ("assistant", FIRST_REPLY),
    ]
    assert saved[1].status == "ok"

    browser_server.script(SECOND_REPLY, chunk_size=8, chunk_delay=0.01)
    send(page, SECOND_QUESTION)
    wait_for_saved_reply(page, 3, "Any server that speaks the OpenAI API")
    assert conversation_id(page) == cid
    # The second request carried the first exchange as history.
    history = browser_server.requests_to("/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in history] == [FIRST_QUESTION, FIRST_REPLY, SECOND_QUESTION]

    page.reload()
    wait_for_idle(page)
    assert conversation_id(page) == cid
    expect(bubbles(page)).to_have_count(4)
    for index, text in enumerate(
        [FIRST_QUESTION, FIRST_REPLY, SECOND_QUESTION, "Ollama, LM Studio, vLLM"]
    ):
        expect(bubbles(page).nth(index)).to_contain_text(text)
    title = store_of(app).get(cid).title
    expect(page.get_by_test_id("stSidebar").get_by_role("button", name=title)).to_be_visible()
    expect(page.get_by_role("heading", name=title)).to_be_visible()

    if os.environ.get("PARLEY_UPDATE_SCREENSHOT") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))


def test_stop_keeps_the_partial_reply_and_closes_the_stream(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app()
    page = open_page(app.url)
    story = " ".join(f"w{i}" for i in range(800))  # about 25 s at this pace
    browser_server.script(story, chunk_size=6, chunk_delay=0.05)
    send(page, "Tell me a very long story")
    expect(bubbles(page).nth(1)).to_contain_text("w20 ")

    page.get_by_test_id("stChatInputStopButton").click()
    assert browser_server.wait_for_disconnects(1, timeout=WAIT), "the HTTP stream stayed open"

    cid = conversation_id(page)
    page.reload()
    wait_for_idle(page)
    expect(bubbles(page)).to_have_count(2)
    expect(bubbles(page).nth(0)).to_contain_text("Tell me a very long story")
    reply = bubbles(page).nth(1)
    expect(reply).to_contain_text("w0 w1 w2")
    expect(reply).to_contain_text("Stopped by you")
    expect(reply).not_to_contain_text("w799")

    saved = store_of(app).all_messages(cid)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].status == "stopped"
    assert "w20" in saved[1].content
    assert story.startswith(saved[1].content) and len(saved[1].content) < len(story)

    # The conversation carries on normally after a stop.
    send(page, "Shorter, please")
    wait_for_saved_reply(page, 3, "Echo: Shorter, please")


def test_without_a_key_the_app_says_how_to_add_one(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app(key=None, PARLEY_PROVIDER="openai")
    page = open_page(app.url)

    expect(page.get_by_text("Add an API key to start chatting")).to_be_visible()
    expect(page.get_by_text("OPENAI_API_KEY")).to_be_visible()
    expect(page.get_by_test_id("stChatInput")).to_have_count(0)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert "Traceback" not in Path(app.log).read_text()
    assert browser_server.requests == []  # nothing is sent to OpenAI without a key


def test_a_key_typed_in_the_sidebar_is_used_by_that_session_only(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    typed = "sk-typed-in-the-browser-0123456789"
    app = streamlit_app(key=None, PARLEY_PROVIDER="openai")
    page = open_page(app.url)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Connection").click()
    key_box = sidebar.get_by_role("textbox", name="API key")
    key_box.fill(typed)
    with rerun(page):
        key_box.press("Enter")
    expect(page.get_by_test_id("stChatInput")).to_be_visible()

    send(page, "Hello with my own key")
    wait_for_saved_reply(page, 1, "Echo: Hello with my own key")
    chat = browser_server.requests_to("/chat/completions")
    assert [r.headers["authorization"] for r in chat] == [f"Bearer {typed}"]

    assert typed not in page.url
    assert typed not in Path(app.log).read_text()
    for path in app.data_dir.rglob("*"):
        if path.is_file():
            assert typed.encode() not in path.read_bytes(), f"the key reached {path}"

    # Another visitor of the same server has no key: the typed one stayed in its session.
    other = open_page(app.url)
    expect(other.get_by_text("Add an API key to start chatting")).to_be_visible()
    expect(other.get_by_test_id("stChatInput")).to_have_count(0)
