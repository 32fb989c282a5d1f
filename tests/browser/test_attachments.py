"""Attachments in the Chat page's chat box, in a real browser: attach an image and a page
of a real R manual through the box's file input, send, and see both in the transcript
(the image's thumbnail loaded, the names as plain text) and in what the model received.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests import doc_samples as samples
from tests.browser.conftest import new_context, rerun, wait_for_idle
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

QUESTION = "What do the picture and the page show?"


@pytest.fixture
def page(browser: Browser, streamlit_app) -> Iterator[Page]:  # noqa: ANN001
    server = streamlit_app()
    context = new_context(browser, viewport={"width": 1300, "height": 900})
    tab = context.new_page()
    tab.goto(server.url)
    wait_for_idle(tab)
    yield tab
    context.close()


def test_an_image_and_a_pdf_attached_in_the_chat_box(
    page: Page, browser_server: FakeOpenAI, tmp_path: Path
) -> None:
    image = io.BytesIO()
    Image.new("RGB", (640, 480), "orange").save(image, format="PNG")
    picture = tmp_path / "orange square.png"
    picture.write_bytes(image.getvalue())
    manual = tmp_path / "R-intro page 14.pdf"
    manual.write_bytes(samples.pdf_of_pages([14]))

    box = page.get_by_test_id("stChatInput")
    box.locator('input[type="file"]').set_input_files([str(picture), str(manual)])
    for name in ("orange square.png", "R-intro page 14.pdf"):
        expect(box.get_by_text(name)).to_be_visible()  # the box lists what is attached
    browser_server.script("An orange square, and a page about R.", chunk_size=8)
    text = page.get_by_test_id("stChatInputTextArea")
    text.fill(QUESTION)
    # The files upload as they are attached: Enter is taken once they are in.
    expect(page.get_by_test_id("stChatInputSubmitButton")).to_be_enabled()
    with rerun(page):
        text.press("Enter")

    user = page.get_by_test_id("stChatMessage").first
    expect(user).to_contain_text(QUESTION)
    expect(user).to_contain_text("orange square.png · 640 × 480")
    expect(user).to_contain_text("R-intro page 14.pdf")
    expect(user).to_contain_text("sent in full")
    thumb = user.get_by_test_id("stImageContainer").get_by_role("img")
    expect(thumb).to_be_visible()
    page.wait_for_function(  # visible is not loaded: the thumbnail decoded
        "img => img.complete && img.naturalWidth >= 160", arg=thumb.element_handle()
    )
    expect(page.get_by_test_id("stChatMessage").last).to_contain_text(
        "An orange square, and a page about R."
    )

    # What the model received: the question, the page's text under its name, the image.
    requests = [r.json for r in browser_server.requests_to("/chat/completions")]
    sent = [r for r in requests if "messages" in r][-1]["messages"][-1]["content"]
    assert sent[0]["type"] == "text"
    assert sent[0]["text"].startswith(f'{QUESTION}\n\n<file name="R-intro page 14.pdf">\n')
    assert "</file>" in sent[0]["text"]
    url = sent[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == image.getvalue()

    # Kept with the conversation: a reload shows both again.
    page.reload()  # a new page: its run counter starts again, so wait for idle instead
    wait_for_idle(page)
    user = page.get_by_test_id("stChatMessage").first
    expect(user).to_contain_text("orange square.png · 640 × 480")
    expect(user.get_by_test_id("stImageContainer").get_by_role("img")).to_be_visible()
