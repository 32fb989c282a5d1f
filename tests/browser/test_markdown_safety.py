"""Model output is Markdown with HTML disabled: a reply carrying <script>, an <img onerror>
or a javascript: link shows as text and runs nothing, while it streams and once saved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import StreamlitServer, wait_for_idle
from tests.browser.session import Sessions, bubbles, chat
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

SCRIPT = "<script>window.parleyPwned = 'script'</script>"
IMG = '<img src="x" onerror="window.parleyPwned = \'img\'">'
SVG = "<svg onload=\"window.parleyPwned = 'svg'\"></svg>"
REPLY = (
    f"Here is a script: {SCRIPT} and an image: {IMG}\n\n{SVG}\n\n"
    "And a [harmless looking link](javascript:window.parleyPwned='link') to click."
)
# Anything the payloads would have put into the page.
INJECTED = """() => ({
  flag: window.parleyPwned ?? null,
  scripts: document.querySelectorAll('[data-testid="stMarkdownContainer"] script').length,
  imgs: document.querySelectorAll('[data-testid="stMarkdownContainer"] img[src="x"]').length,
  svgs: document.querySelectorAll('[data-testid="stMarkdownContainer"] svg[onload]').length,
  jsLinks: [...document.querySelectorAll('a')].filter(a => a.href.startsWith('javascript:'))
    .length,
})"""
CLEAN = {"flag": None, "scripts": 0, "imgs": 0, "svgs": 0, "jsLinks": 0}


@pytest.fixture
def sessions(browser: Browser) -> Iterator[Sessions]:
    opened = Sessions(browser)
    yield opened
    opened.close()


def test_html_in_a_reply_is_shown_as_text_and_never_runs(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    sessions: Sessions,
) -> None:
    app = streamlit_app()
    page = sessions.open(app.url)
    browser_server.script(REPLY, chunk_size=7, chunk_delay=0.01)
    chat(page, f"Show me {IMG} please", reply="Here is a script:")

    reply = bubbles(page).nth(1)
    expect(reply).to_contain_text(SCRIPT)
    expect(reply).to_contain_text(IMG)
    expect(bubbles(page).nth(0)).to_contain_text(IMG)  # the user's own text, too
    assert page.evaluate(INJECTED) == CLEAN

    # The link is drawn, but not as a javascript: URL; clicking it runs nothing.
    reply.get_by_text("harmless looking link").click()
    wait_for_idle(page)
    assert page.evaluate(INJECTED) == CLEAN

    # Drawn again from storage, as after a reload.
    page.reload()
    wait_for_idle(page)
    expect(bubbles(page).nth(1)).to_contain_text(SCRIPT)
    assert page.evaluate(INJECTED) == CLEAN
    assert "Traceback" not in Path(app.log).read_text()
