"""Shared-password mode in a real browser: a session that has not passed the gate sees
nothing, not even through a conversation URL on a freshly started server, and wrong
passwords from its address make it wait (tests/browser/test_password_guessing.py shows
the wait holds across fresh sessions)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from lib.access import FIRST_DELAY, FREE_FAILURES, SHARED_WORKSPACE
from lib.conversations import ConversationStore, Message
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import Sessions, bubbles, chat, sidebar, submit_password

pytestmark = pytest.mark.browser

PASSWORD = "c0rrect-h0rse-battery"


@pytest.fixture
def sessions(browser: Browser) -> Iterator[Sessions]:
    opened = Sessions(browser)
    yield opened
    opened.close()


def assert_gated(page: Page, secret: str) -> None:
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    expect(page.get_by_test_id("stChatInput")).to_have_count(0)
    expect(bubbles(page)).to_have_count(0)
    assert secret not in page.content()


def delay_in(message: str) -> float:
    match = re.search(r"Wait (\d+(?:\.\d+)?) s", message)
    assert match, f"no delay in {message!r}"
    return float(match.group(1))


def test_the_gate_hides_everything_and_wrong_passwords_slow_down(
    streamlit_app: Callable[..., StreamlitServer], sessions: Sessions
) -> None:
    app = streamlit_app(APP_PASSWORD=PASSWORD)
    secret = f"quokka{uuid.uuid4().hex[:8]}"
    store = ConversationStore(open_backend(app.data_dir), SHARED_WORKSPACE)
    conv = store.create(model="gpt-5-mini", title=f"Plans for {secret}")
    store.add_message(conv.id, Message("user", f"About {secret}"))

    # The server's very first request is a page URL with a conversation id: it is gated
    # like any other (with a pages/ directory, Streamlit once ran it without Home.py).
    page = sessions.open(f"{app.url}/chat?c={conv.id}")
    assert_gated(page, secret)
    for path in ("/images", "/documents", f"/?c={conv.id}"):
        page.goto(app.url + path)
        wait_for_idle(page)
        assert_gated(page, secret)

    # A few wrong passwords are answered at once; then the address has to wait.
    for attempt in range(FREE_FAILURES):
        message = submit_password(page, f"wrong-guess-{attempt}")
        assert "Wrong password" in message, message
        expect(page.get_by_label("Password", exact=True)).to_have_value("")  # not kept
        assert_gated(page, secret)
    delay = delay_in(message)
    assert delay == FIRST_DELAY, message
    # The right password before the delay is over is refused: the delay is applied.
    assert "Too soon" in submit_password(page, PASSWORD)
    assert_gated(page, secret)
    time.sleep(delay + 0.2)  # the throttle's own clock: nothing to watch for

    assert submit_password(page, PASSWORD) == ""
    expect(sidebar(page)).to_contain_text("Shared workspace")
    expect(page.get_by_label("Password", exact=True)).to_have_count(0)
    # The conversation link that met the gate opens once the gate is passed.
    expect(bubbles(page).first).to_contain_text(f"About {secret}")
    expect(sidebar(page).get_by_role("button", name=f"Plans for {secret}")).to_be_visible()
    chat(page, "Shared question")

    # Passing the gate is per session: a new visit to the same URL meets the gate again.
    other = sessions.open(page.url)
    assert_gated(other, secret)

    with rerun(page):
        sidebar(page).get_by_role("button", name="Sign out").click()
    assert_gated(page, secret)

    # The password never shows up in a page, a URL or the log.
    assert PASSWORD not in page.content() and PASSWORD not in other.content()
    assert not [url for url in sessions.urls if PASSWORD in url]
    log = Path(app.log).read_text()
    assert PASSWORD not in log
    assert "Traceback" not in log
