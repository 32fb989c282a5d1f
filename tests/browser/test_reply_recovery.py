"""A reply survives the process that was writing it: a real `streamlit run` is killed (or
terminated) mid-stream, started again on the same data directory, and the partial reply
is in the database and on the page, marked interrupted (never "Stopped by you"), with Retry.

While the reply streams, a second session of the same server sees it as still being
written, not as interrupted.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore, Message
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, rerun
from tests.browser.test_chat_journey import bubbles, conversation_id, send, wait_for_saved_reply
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

pytestmark = pytest.mark.browser

WORKSPACE = "local"
STORY = " ".join(f"w{i}" for i in range(800))  # about 40 s at the pace below


def saved_reply(store: ConversationStore, cid: str, containing: str) -> Message:
    """Wait until the assistant's row holds `containing`: it is saved as it streams."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        messages = store.all_messages(cid)
        if len(messages) == 2 and containing in messages[1].content:
            return messages[1]
        time.sleep(0.1)
    raise AssertionError(f"no saved reply containing {containing!r}: {messages}")


@pytest.mark.parametrize("ending", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_a_reply_cut_off_by_the_process_ending_is_kept_marked_interrupted_with_retry(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
    ending: signal.Signals,
) -> None:
    app = streamlit_app()
    page = open_page(app.url)
    browser_server.script(STORY, chunk_size=6, chunk_delay=0.05)
    send(page, "Tell me a very long story")
    expect(bubbles(page).nth(1)).to_contain_text("w40 ")
    cid = conversation_id(page)
    store = ConversationStore(open_backend(app.data_dir), WORKSPACE)
    row = saved_reply(store, cid, "w40 ")
    assert row.status == "streaming" and STORY.startswith(row.content)

    # Another session of the same server: the reply is still arriving, not interrupted.
    other = open_page(page.url)
    expect(bubbles(other).nth(1)).to_contain_text("Still being written")
    expect(bubbles(other).nth(1)).not_to_contain_text("interrupted")

    app.proc.send_signal(ending)
    app.proc.wait(WAIT)
    kept = store.all_messages(cid)[1]
    assert "w40 " in kept.content and STORY.startswith(kept.content)
    assert len(kept.content) < len(STORY)
    assert kept.status in ("streaming", "interrupted")  # a SIGTERM may save it on the way out

    again = streamlit_app()
    page = open_page(page.url.replace(app.url, again.url))
    reply = bubbles(page).nth(1)
    expect(reply).to_contain_text("w0 w1 w2")
    expect(reply).to_contain_text("The partial reply was kept")
    expect(reply).not_to_contain_text("Stopped by you")
    saved = ConversationStore(open_backend(again.data_dir), WORKSPACE).all_messages(cid)
    assert saved[1].status == "interrupted" and saved[1].content == kept.content

    retry = page.get_by_role("button", name="Retry")
    with rerun(page):
        retry.click()
    wait_for_saved_reply(page, 1, "Echo: Tell me a very long story")
    # The path shown is the question and its new answer; the cut-off partial stays as the
    # answer's earlier version (a sibling, since conversations are trees).
    after = ConversationStore(open_backend(again.data_dir), WORKSPACE)
    assert [(m.role, m.status) for m in after.path(cid)] == [("user", "ok"), ("assistant", "ok")]
    versions = [(m.status, m.content) for m in after.all_messages(cid) if m.role == "assistant"]
    assert ("interrupted", kept.content) in versions and len(versions) == 2
