"""Images in a real browser: `streamlit run Home.py` driven by Chromium.

What only a browser shows: the live status counting seconds and the partial previews
arriving before the final image, the picture actually decoding in the page, the download,
the gallery after a reload, and an illustrated conversation keeping its picture.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore
from lib.gallery import ImageStore
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import goto
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1400, "height": 1000}
WORKSPACE = "local"

# Records every status label, and the text of status bodies that hold a picture (the
# preview and its caption), as the DOM changes.
RECORD_PROGRESS = """() => {
  window.parleySeen = new Set();
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('[data-testid="stMain"] details')) {
      const label = el.querySelector('summary').innerText.trim();
      window.parleySeen.add(label);
      const body = el.querySelector('[data-testid="stExpanderDetails"]');
      if (el.open && body.querySelector('img'))
        window.parleySeen.add('picture: ' + body.innerText.trim());
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
DECODED = "img => img.complete && img.naturalWidth > 0"


def decoded(image) -> bool:  # noqa: ANN001 - a playwright Locator
    """Whether the browser decodes the image, waiting for it to load (it may still be on
    the wire when the tile appears)."""
    image.page.wait_for_function(DECODED, arg=image.element_handle())
    return image.evaluate(DECODED)


def tiles(page: Page):  # noqa: ANN201 - a Playwright Locator
    """The gallery's tiles (keyed containers, which Streamlit marks with a class)."""
    return page.locator('[class*="st-key-img-tile-"]')


def goto_images(page: Page) -> None:
    # Through the navigation, as a user would.
    goto(page, "Images")


def gallery_of(app: StreamlitServer) -> ImageStore:
    """The app's images, read as the app stores them (its data directory's backend)."""
    return ImageStore(open_backend(app.data_dir), WORKSPACE)


def test_generate_watch_it_arrive_download_and_find_it_after_a_reload(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app()
    page = open_page(app.url)
    goto_images(page)
    # A slow server: the first byte after 1.5 s, then a preview every 0.8 s.
    browser_server.default_first_token_delay = 1.5
    browser_server.chunk_delay = 0.8
    page.evaluate(RECORD_PROGRESS)
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk, oil painting")
    with rerun(page):
        page.get_by_role("button", name="Generate", exact=True).click()

    tile = tiles(page).filter(has_text="a lighthouse at dusk, oil painting")
    expect(tile).to_have_count(1)
    seen = page.evaluate("[...window.parleySeen]")
    counting = [s for s in seen if s.startswith("Generating 1 image with gpt-image-2…")]
    assert any(s.endswith(" 1 s") or s.endswith(" 2 s") for s in counting), seen
    assert {"picture: Preview 1 of image 1", "picture: Preview 2 of image 1"} <= set(seen), seen
    request = browser_server.requests_to("/images/generations")[-1].json
    assert request["stream"] is True and request["partial_images"] == 2

    images = gallery_of(app)
    (saved,) = images.list()
    assert decoded(tile.locator("img"))
    with page.expect_download() as download:
        tile.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == saved.download_name()
    assert download.value.path().read_bytes() == images.read(saved)

    page.reload()
    wait_for_idle(page)
    tile = tiles(page).filter(has_text="a lighthouse at dusk, oil painting")
    expect(tile).to_have_count(1)
    expect(tile.locator("img")).to_be_visible()
    assert decoded(tile.locator("img"))
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_illustrate_a_conversation_and_keep_the_picture(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini")
    page = open_page(app.url)
    browser_server.script("Waves crash against a white tower under a bruised sky.")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("Describe a lighthouse in a storm")
    with rerun(page):
        box.press("Enter")
    bubbles = page.get_by_test_id("stChatMessage")
    expect(bubbles.nth(1)).to_contain_text("bruised sky")
    expect(bubbles.nth(1)).to_contain_text("out tokens")

    browser_server.script("A white lighthouse in a violent storm, oil painting")
    with rerun(page):
        page.get_by_role("button", name="Illustrate").click()
    prompt = page.get_by_label("Image prompt")
    expect(prompt).to_have_value("A white lighthouse in a violent storm, oil painting")
    assert browser_server.requests_to("/images/generations") == []  # the user decides first
    prompt.fill("A white lighthouse in a storm, watercolour")
    with rerun(page):
        page.get_by_role("button", name="Generate image").click()

    picture = bubbles.nth(2)
    expect(picture).to_contain_text("A white lighthouse in a storm, watercolour")
    expect(picture.locator("img")).to_be_visible()
    assert decoded(picture.locator("img"))
    expect(page.get_by_label("Image prompt")).to_have_count(0)

    page.reload()
    wait_for_idle(page)
    picture = page.get_by_test_id("stChatMessage").nth(2)
    expect(picture.locator("img")).to_be_visible()
    (conv,) = ConversationStore(open_backend(app.data_dir), WORKSPACE).list()
    (image,) = gallery_of(app).list()
    assert image.conversation_id == conv.id and image.prompt.endswith("watercolour")

    gallery = open_page(app.url)
    goto_images(gallery)
    expect(
        tiles(gallery).filter(has_text="A white lighthouse in a storm, watercolour")
    ).to_have_count(1)


def test_leaving_the_page_mid_generation_keeps_the_image(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
) -> None:
    app = streamlit_app()
    page = open_page(app.url)
    goto_images(page)
    browser_server.hang(4, route="/images")
    page.get_by_label("Prompt", exact=True).fill("a patient heron")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.get_by_text("Generating 1 image with gpt-image-2")).to_be_visible()

    # Off to the Chat page while the server is still working on it.
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Chat").click()
    expect(page.get_by_test_id("stChatInput")).to_be_visible()
    store = gallery_of(app)
    deadline = time.monotonic() + WAIT
    while not store.list() and time.monotonic() < deadline:
        time.sleep(0.2)
    (saved,) = store.list()  # saved by the session's job, with nobody watching
    assert saved.prompt == "a patient heron"

    goto_images(page)
    expect(page.get_by_role("heading", name="Latest")).to_be_visible()
    expect(tiles(page).filter(has_text="a patient heron")).to_have_count(1)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a patient heron")
