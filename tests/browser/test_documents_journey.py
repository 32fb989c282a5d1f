"""The Documents page in a real browser: upload a real PDF through the file input, watch
it index, ask a question, get a streamed answer with citations, and open a source.
"""

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
ANSWER = "Call eigen() on the matrix [1]; its values component holds the eigenvalues [1]."


@pytest.fixture
def page(browser: Browser, streamlit_app) -> Iterator[Page]:  # noqa: ANN001
    server = streamlit_app()
    context = new_context(browser, viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.goto(f"{server.url}/documents")
    wait_for_idle(tab)
    yield tab
    context.close()


def test_upload_ask_and_open_a_source(page: Page, browser_server: FakeOpenAI) -> None:
    expect(page.get_by_text("Your library is empty")).to_be_visible()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        str(samples.R_INTRO)
    )
    with rerun(page):
        page.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    report = page.get_by_test_id("stAlertContentSuccess")
    expect(report).to_contain_text("R-intro.pdf: 113 pages")
    expect(page.get_by_text(re.compile(r"113 pages · \d+ chunks"))).to_be_visible()
    # Always retrieve passages, so the answer cites a passage rather than a whole page.
    with rerun(page):
        page.get_by_text("Passages only").click()

    browser_server.script(ANSWER, chunk_size=6, chunk_delay=0.03)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(QUESTION)
    with rerun(page):
        box.press("Enter")
    answer = page.get_by_test_id("stChatMessage").last
    expect(answer).to_contain_text("Call eigen() on the matrix [1 · R-intro.pdf p. 31]")
    expect(page).to_have_url(re.compile(r"[?&]c=[0-9a-f]{32}"))
    progress = page.get_by_test_id("stProgress").last
    expect(progress).to_contain_text("Retrieval: 6 passages (hybrid search)")

    source = answer.get_by_test_id("stExpander").filter(has_text="[1] R-intro.pdf, page 31")
    source.locator("summary").click()
    expect(source).to_contain_text("eigen(Sm)")
    expect(source).to_contain_text(re.compile(r"cosine similarity \d\.\d\d"))
    source.get_by_text("Show the page").click()
    image = source.get_by_role("img")
    expect(image).to_be_visible()
    # Visible is not loaded: wait for the browser to decode the page image.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 500", arg=image.element_handle()
    )

    # The answer came from the model with the passages in its system message.
    request = browser_server.requests_to("/chat/completions")[-1].json
    assert "R-intro.pdf, page 31 (printed 25)" in request["messages"][0]["content"]
