"""A citation chip in a real browser: ask over the R manual, click the chip under the
answer, and see that passage and its rendered page in a dialog."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import doc_samples as samples
from tests.browser.conftest import new_context, rerun, wait_for_idle
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

QUESTION = "How do I compute the eigenvalues of a symmetric matrix?"
ANSWER = "Call eigen() on the matrix [1]."
CHIP = "[1 · R-intro.pdf p. 31]"


@pytest.fixture
def page(browser: Browser, streamlit_app) -> Iterator[Page]:  # noqa: ANN001
    server = streamlit_app()
    context = new_context(browser, viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.goto(f"{server.url}/documents")
    wait_for_idle(tab)
    yield tab
    context.close()


def test_a_citation_chip_opens_the_passage_and_its_page(
    page: Page, browser_server: FakeOpenAI
) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        str(samples.R_INTRO)
    )
    with rerun(page):
        page.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    expect(page.get_by_text(re.compile(r"113 pages · \d+ chunks"))).to_be_visible()
    with rerun(page):
        page.get_by_text("Passages only").click()
    browser_server.script(ANSWER)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(QUESTION)
    with rerun(page):
        box.press("Enter")
    answer = page.get_by_test_id("stChatMessage").last
    expect(answer).to_contain_text(f"Call eigen() on the matrix {CHIP}.")
    expect(page.get_by_test_id("stDialog")).to_have_count(0)

    chip = answer.get_by_test_id("stButton").filter(has_text=CHIP)
    expect(chip).to_have_count(1)
    chip.click()
    dialog = page.get_by_test_id("stDialog")
    expect(dialog).to_contain_text("[1] R-intro.pdf, page 31")
    expect(dialog).to_contain_text("eigen(Sm)")
    expect(dialog.get_by_text("Show the page")).to_have_count(0)
    image = dialog.get_by_role("img")
    expect(image).to_be_visible()
    # Visible is not loaded: wait for the browser to decode the page image.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 500", arg=image.element_handle()
    )

    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
