"""Twenty sessions chatting at once against the local test server, in twenty browser tabs
(twenty Streamlit sessions): no errors, no lost messages, and each transcript holds only
its own messages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from lib.conversations import ConversationStore
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, wait_for_idle
from tests.browser.session import Sessions, bubbles, conversation_id, send
from tests.fake_openai import FakeOpenAI
from tests.waits import UI_TIMEOUT

pytestmark = pytest.mark.browser

SESSIONS = 20
ROUNDS = 2
TIMEOUT = 2 * UI_TIMEOUT  # twenty pages share two cores
SMALL = {"width": 800, "height": 600}  # twenty pages paint less
TOKEN = re.compile(r"tok\d\d[0-9a-f]{8}")


@pytest.fixture
def sessions(browser: Browser) -> Iterator[Sessions]:
    opened = Sessions(browser)
    yield opened
    opened.close()


def question(token: str, round_: int) -> str:
    return f"Session {token} asks question {round_}"


def test_twenty_sessions_chat_at_once_and_keep_to_themselves(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    sessions: Sessions,
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    browser_server.chunk_delay = 0.05  # each reply streams for about half a second
    tokens = [f"tok{i:02d}{uuid.uuid4().hex[:8]}" for i in range(SESSIONS)]
    # Tabs of one context: each is its own Streamlit session, and they load faster
    # sharing the browser's cache (no sign-in here, so shared cookies change nothing).
    pages = sessions.open_many(
        app.url, SESSIONS, timeout=TIMEOUT, viewport=SMALL, shared_context=True
    )

    for round_ in range(ROUNDS):
        # Everyone sends before anyone's reply is awaited, so the streams overlap.
        for page, token in zip(pages, tokens, strict=True):
            send(page, question(token, round_))
        for page, token in zip(pages, tokens, strict=True):
            reply = bubbles(page).nth(2 * round_ + 1)
            expect(reply).to_contain_text(f"Echo: {question(token, round_)}", timeout=TIMEOUT)
            expect(reply).to_contain_text("out tokens", timeout=TIMEOUT)
        for page in pages:
            wait_for_idle(page, timeout=TIMEOUT)

    store = ConversationStore(open_backend(app.data_dir), "local")
    assert len(store.list()) == SESSIONS
    for page, token in zip(pages, tokens, strict=True):
        expect(bubbles(page)).to_have_count(2 * ROUNDS)
        expect(page.get_by_test_id("stException")).to_have_count(0)
        # The sidebar lists every conversation of the (shared) local workspace; the
        # transcript must hold this session's messages only.
        transcript = " ".join(bubbles(page).all_inner_texts())
        assert set(TOKEN.findall(transcript)) == {token}
        saved = store.all_messages(conversation_id(page))
        expected = []
        for round_ in range(ROUNDS):
            expected += [
                ("user", question(token, round_)),
                ("assistant", f"Echo: {question(token, round_)}"),
            ]
        assert [(m.role, m.content) for m in saved] == expected
        assert all(m.status == "ok" for m in saved)

    # Each request to the model carried one session's history only.
    chats = browser_server.requests_to("/chat/completions")
    assert len(chats) == SESSIONS * ROUNDS
    for request in chats:
        sent = " ".join(str(m["content"]) for m in request.json["messages"])
        assert len(set(TOKEN.findall(sent))) == 1
    assert browser_server.errors == []
    assert "Traceback" not in Path(app.log).read_text()
