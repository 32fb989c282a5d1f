"""The Documents page's per-message actions in a real browser, the Chat page's own row:
Copy puts an answer's raw Markdown on the clipboard, Edit re-asks the documents with the
new question, and Regenerate answers again from a fresh search, each leaving the earlier
version one "‹" away; what the model server was sent is checked at each step."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from lib.conversations import ConversationStore
from lib.documents import rag
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, new_context, rerun, wait_for_idle
from tests.browser.session import bubbles
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

NOTES = (
    "# Herons\n\nThe heron nests by the river in spring.\n\n"
    "# Cranes\n\nThe crane winters in the south and dances in March.\n"
) * 20
FIRST = "Herons **nest** by the river [1]."
# Long enough to be caught streaming (about 10 s at the pace it is sent), then ended.
NEW_ANSWER = " ".join(f"n{i}" for i in range(300)) + " THE END [1]."


@pytest.fixture
def app(streamlit_app) -> StreamlitServer:  # noqa: ANN001 - the fixture's factory
    return streamlit_app()


@pytest.fixture
def page(browser: Browser, app: StreamlitServer) -> Iterator[Page]:
    context = new_context(browser, viewport={"width": 1300, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab = context.new_page()
    tab.goto(f"{app.url}/documents")
    wait_for_idle(tab)
    yield tab
    context.close()


def sent(server: FakeOpenAI) -> tuple[str, list[str]]:
    """The system message of the last chat request, and the rest of its messages."""
    messages = server.requests_to("/chat/completions")[-1].json["messages"]
    return messages[0]["content"], [m["content"] for m in messages[1:]]


def answered(page: Page, count: int, text: str) -> None:
    """`count` bubbles, the last an answer showing `text` with its first source."""
    expect(bubbles(page)).to_have_count(count)
    last = bubbles(page).nth(count - 1)
    expect(last).to_contain_text(text)
    expect(last.get_by_test_id("stExpander").filter(has_text="[1] notes.md")).to_be_visible()
    wait_for_idle(page)


def tools(page: Page, message_id: int):  # noqa: ANN201 - a playwright Locator
    return page.locator(f".st-key-parley-tools-{message_id}")


def test_copy_edit_and_regenerate_an_answer(
    page: Page, app: StreamlitServer, browser_server: FakeOpenAI
) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        {"name": "notes.md", "mimeType": "text/markdown", "buffer": NOTES.encode()}
    )
    with rerun(page):
        page.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text("notes.md: 1 page")
    with rerun(page):  # passages, so each answer is a search
        page.get_by_text("Passages only").click()
    browser_server.script(FIRST)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("Where do herons nest?")
    with rerun(page):
        box.press("Enter")
    answered(page, 2, "Herons nest by the river [1 · notes.md, lines")
    store = ConversationStore(open_backend(app.data_dir), "local")
    cid = store.list(kind=rag.KIND)[0].id
    question, answer = store.path(cid)

    # Copy: the answer's own Markdown, "[1]" as the model wrote it.
    bubbles(page).nth(1).hover()
    expect(tools(page, answer.id)).to_have_css("opacity", "1")
    copy = tools(page, answer.id).get_by_role("button", name="Copy as Markdown")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == FIRST

    # Edit the question: the documents are searched for the new one.
    bubbles(page).nth(0).hover()
    with rerun(page):
        tools(page, question.id).get_by_role("button", name="Edit").click()
    edit = bubbles(page).nth(0).get_by_role("textbox", name="Edit your message")
    edit.fill("When do cranes dance?")
    browser_server.script("Cranes dance in March [1].")
    with rerun(page):  # a form: the text goes with the click
        bubbles(page).nth(0).get_by_role("button", name="Send").click()
    answered(page, 2, "Cranes dance in March [1 · notes.md, lines")
    system, messages = sent(browser_server)
    assert messages == ["When do cranes dance?"]
    assert system.startswith(rag.INSTRUCTIONS) and "dances in March" in system
    expect(page.get_by_text("Searched for: When do cranes dance?")).to_be_visible()
    first = bubbles(page).nth(0)
    expect(first.get_by_test_id("stCaptionContainer").filter(has_text="2/2")).to_be_visible()

    # Regenerate the answer: a fresh search and request, streamed in the old answer's
    # place (turn_slot.Slot), the old answer kept as a version.
    _, cranes = store.path(cid)
    requests = len(browser_server.requests_to("/chat/completions"))
    browser_server.script(NEW_ANSWER, chunk_size=6, chunk_delay=0.1)
    bubbles(page).nth(1).hover()
    tools(page, cranes.id).get_by_role("button", name="Regenerate").click()
    expect(bubbles(page).last).to_contain_text("n12 ")  # streaming
    shown = page.get_by_test_id("stMainBlockContainer").inner_text()  # stale ones included
    assert "THE END" not in shown, "the answer ended before the check: stream it slower"
    assert "Cranes dance in March" not in shown and bubbles(page).count() == 2
    answered(page, 2, "THE END [1 · notes.md, lines")
    assert len(browser_server.requests_to("/chat/completions")) == requests + 1
    system, messages = sent(browser_server)
    assert messages == ["When do cranes dance?"] and "[1] notes.md" in system
    reply = bubbles(page).nth(1)
    expect(reply.get_by_test_id("stCaptionContainer").filter(has_text="2/2")).to_be_visible()
    with rerun(page):
        reply.get_by_role("button", name="‹").click()
    expect(bubbles(page).nth(1)).to_contain_text("Cranes dance in March [1 · notes.md, lines")
    expect(bubbles(page).nth(1).get_by_text("1/2")).to_be_visible()
