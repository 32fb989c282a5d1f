"""Voice input in a real browser: Chromium's fake microphone (a beep, permission granted
without a prompt) records into the Chat page's box, and the words the server heard come
back into the box to edit, not sent; on a server without transcription there is no
microphone."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    CHROMIUM_ARGS,
    chromium_executable,
    new_context,
    rerun,
    wait_for_idle,
)
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser
FAKE_MEDIA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def media_browser(browser: Browser) -> Iterator[Browser]:
    """A second Chromium from the same Playwright, with a fake microphone."""
    launched = browser.browser_type.launch(
        executable_path=chromium_executable(), args=[*CHROMIUM_ARGS, *FAKE_MEDIA]
    )
    yield launched
    launched.close()


def opened(media_browser: Browser, streamlit_app, server: FakeOpenAI, transcribes: bool) -> Page:  # noqa: ANN001
    server.transcription_enabled = transcribes
    app = streamlit_app()
    context = new_context(media_browser, permissions=["microphone"])
    page = context.new_page()
    page.goto(app.url)
    wait_for_idle(page)
    return page


def test_a_recording_fills_the_box_and_is_not_sent(
    media_browser: Browser,
    streamlit_app,
    browser_server: FakeOpenAI,  # noqa: ANN001
) -> None:
    page = opened(media_browser, streamlit_app, browser_server, transcribes=True)
    text = page.get_by_test_id("stChatInputTextArea")
    text.fill("Tell me")
    page.get_by_test_id("stChatInputMicButton").click()
    expect(page.get_by_test_id("stChatInputWaveform")).to_be_visible()  # recording
    with rerun(page):
        page.get_by_test_id("stChatInputApproveButton").click()
    heard = [r for r in browser_server.requests_to("/audio/transcriptions") if "file" in r.json]
    assert len(heard) == 1 and heard[0].json["file"].startswith(b"RIFF")  # a WAV recording
    expect(text).to_have_value(re.compile(r"^Tell me Heard \d+ bytes\.$"))
    assert not [
        r for r in browser_server.requests_to("/chat/completions") if r.json.get("messages")
    ]
    expect(page.get_by_test_id("stChatMessage")).to_have_count(0)


def test_no_microphone_without_transcription(
    media_browser: Browser,
    streamlit_app,
    browser_server: FakeOpenAI,  # noqa: ANN001
) -> None:
    page = opened(media_browser, streamlit_app, browser_server, transcribes=False)
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible()
    expect(page.get_by_test_id("stChatInputMicButton")).to_have_count(0)
