"""Untrusted text never makes the browser fetch anything by itself (issue 9, part 4).

A loopback "beacon" listener counts every request it gets. A streamed reply, the
conversation title taken from the first message, search snippets, a model-written image
prompt, a revised prompt, a document's file name and the rewritten question all point
images (inline, by reference, inside a link), HTML and autolinks at it. After the test
walks every place they show, in Chromium, the only request the listener has seen is the
control the test makes the page load on purpose at the very end, which proves the page
could reach the listener all along.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from lib import markup
from tests.browser.conftest import StreamlitServer, rerun, wait_for_idle
from tests.browser.session import bubbles, goto, search_conversations, send, sidebar
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1400, "height": 1000}
GIF = bytes.fromhex(
    "47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b"
)
DECODED = "img => img.complete && img.naturalWidth > 0"
LOAD_CONTROL = """url => new Promise(done => {
  const image = new Image();
  image.onload = image.onerror = () => done(image.naturalWidth);
  image.src = url;
})"""


def seen(text: str) -> str:
    """`text` as the page shows it once escaped: lib.markup puts an invisible word joiner
    inside "http://", "www." and "a@b" so Markdown makes no autolink of them."""
    return markup.break_autolinks(text)


class Beacon:
    """An HTTP listener on 127.0.0.1 that answers every request with a 1×1 GIF and
    remembers its path."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        beacon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                beacon.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(GIF)))
                self.end_headers()
                self.wfile.write(GIF)

            do_POST = do_HEAD = do_GET  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def assert_silent(self, where: str) -> None:
        assert self.paths == [], f"{where} loaded {self.paths}"

    def assert_only_the_control(self, page: Page) -> None:
        """Load the control image from the page, then: it is the one request seen."""
        assert page.evaluate(LOAD_CONTROL, f"{self.url}/control.gif") == 1
        assert self.paths == ["/control.gif"], f"untrusted text loaded {self.paths}"


@pytest.fixture
def beacon() -> Iterator[Beacon]:
    listener = Beacon()
    yield listener
    listener.stop()


def hostile_reply(u: str) -> str:
    """A reply that tries every way Markdown and HTML have to load something."""
    return (
        f"Here is the chart ![inline]({u}/inline.gif?q=secret) and ![ref][logo] too.\n\n"
        f"[![badge]({u}/nested.gif)](https://example.invalid/page) and ![logo]\n\n"
        f'<img src="{u}/html.gif"> <video src="{u}/video.mp4"></video> '
        f'<iframe src="{u}/iframe"></iframe> <{u}/autolink.gif>\n\n'
        f"$\\includegraphics[height=1em]{{{u}/katex.gif}}$\n\n"
        f"```markdown\n![code]({u}/code.gif)\n```\n\n"
        f"[logo]: {u}/reference.gif\n"
    )


def decoded(image) -> bool:  # noqa: ANN001 - a playwright Locator
    image.page.wait_for_function(DECODED, arg=image.element_handle())
    return image.evaluate(DECODED)


def test_chat_titles_search_illustrations_and_gallery_load_nothing(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
    beacon: Beacon,
) -> None:
    u = beacon.url
    host = u.removeprefix("http://")
    # A model Parley does not know is asked without streaming: the server revises prompts.
    app = streamlit_app(PARLEY_CHAT_MODEL="gpt-5-mini", PARLEY_IMAGE_MODEL="local-diffusion")
    browser_server.revise_prompts = True
    page = open_page(app.url)

    # The first message becomes the title; the reply streams in small pieces, so every
    # half-written state of each image is drawn on the way.
    browser_server.script(hostile_reply(u), chunk_size=3, chunk_delay=0.005)
    with rerun(page):
        send(page, f"![t]({u}/title.gif) hi")
    reply = bubbles(page).nth(1)
    expect(reply).to_contain_text("out tokens")
    beacon.assert_silent("the streamed reply and its title")
    expect(reply).to_contain_text(f"image: inline — {host}/inline.gif")  # says where
    expect(reply.get_by_role("link", name=re.compile("image: inline"))).to_have_attribute(
        "href", f"{u}/inline.gif?q=secret"
    )
    expect(reply.get_by_test_id("stCode")).to_contain_text(f"![code]({u}/code.gif)")
    expect(bubbles(page).nth(0)).to_contain_text(f"image: t — {host}/title.gif")

    page.reload()
    wait_for_idle(page)
    beacon.assert_silent("the stored reply")
    expect(bubbles(page).nth(1)).to_contain_text("image: ref")
    expect(page.get_by_role("heading", level=1)).to_contain_text(seen(f"![t]({u}/title.gif) hi"))
    expect(sidebar(page).get_by_role("button", name=re.compile(r"!\[t\]"))).to_be_visible()

    search_conversations(page, "hi")
    hit = sidebar(page).get_by_role("button", name=re.compile(r"!\[t\]"))
    hit.hover()  # the snippet shows in the hit's tooltip
    expect(page.get_by_test_id("stTooltipContent")).to_contain_text(seen(f"![t]({u}/title.gif)"))
    beacon.assert_silent("search")
    search_conversations(page, "")

    # Illustrate: the chat model writes the prompt, the picture is Parley's own file.
    browser_server.script(f"A kite ![p]({u}/prompt.gif) over the sea")
    with rerun(page):
        page.get_by_role("button", name="Illustrate").click()
    expect(page.get_by_label("Image prompt")).to_have_value(
        f"A kite ![p]({u}/prompt.gif) over the sea"
    )
    with rerun(page):
        page.get_by_role("button", name="Generate image").click()
    picture = bubbles(page).nth(2)
    beacon.assert_silent("the illustration")
    expect(picture).to_contain_text(seen(f"Illustration: A kite ![p]({u}/prompt.gif) over the sea"))
    assert decoded(picture.locator("img"))

    # The gallery shows that prompt; a picture made here shows the server's revised one.
    goto(page, "Images")
    page.get_by_label("Prompt", exact=True).fill(f"a heron ![g]({u}/gallery.gif)")
    with rerun(page):
        page.get_by_role("button", name="Generate", exact=True).click()
    expect(
        page.get_by_text("Revised prompt: A detailed, vivid illustration of a heron")
    ).to_contain_text(seen(f"![g]({u}/gallery.gif)"))
    beacon.assert_silent("the gallery")
    tiles = page.locator('[class*="st-key-img-tile-"]')
    expect(tiles).to_have_count(2)
    expect(tiles.filter(has_text=seen(f"A kite ![p]({u}/prompt.gif)"))).to_have_count(1)
    assert decoded(tiles.first.locator("img"))
    page.reload()
    wait_for_idle(page)
    expect(tiles).to_have_count(2)

    beacon.assert_only_the_control(page)


def test_documents_names_sources_and_the_rewritten_question_load_nothing(
    streamlit_app: Callable[..., StreamlitServer],
    browser_server: FakeOpenAI,
    open_page: Callable[[str], Page],
    beacon: Beacon,
) -> None:
    u = beacon.url
    app = streamlit_app()
    page = open_page(app.url)
    goto(page, "Documents")
    expect(page.get_by_text("Your library is empty")).to_be_visible()

    # A file name can hold a whole image (the browser sends it as the uploader typed it).
    name = f"notes ![n]({u}/name.gif).md"
    text = b"# Kites\n\nA kite flies on the wind. Kites were first made in China.\n"
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        {"name": name, "mimeType": "text/markdown", "buffer": text}
    )
    with rerun(page):
        page.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    beacon.assert_silent("the upload report")
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(seen(name))
    library = page.get_by_test_id("stMainBlockContainer").get_by_test_id("stExpander").first
    expect(library).to_contain_text(seen(name))
    library.get_by_role("button", name="Delete").click()  # the popover names the file
    expect(page.get_by_test_id("stPopoverBody")).to_contain_text(seen(f"Delete {name}"))
    page.keyboard.press("Escape")

    browser_server.script(hostile_reply(u) + "\nKites came from China [1].")
    with rerun(page):
        send(page, "Where do kites come from?")
    answer = bubbles(page).nth(1)
    expect(answer).to_contain_text("out tokens")
    beacon.assert_silent("the streamed answer")
    expect(answer).to_contain_text(seen(f"[1 · {name}"))
    expect(answer.get_by_test_id("stExpander").first).to_contain_text(seen(name))
    answer.get_by_test_id("stExpander").first.locator("summary").click()

    # A follow-up is rewritten by the model before the search: that text is shown too.
    browser_server.script(f"Who made the first ![q]({u}/question.gif) kite?")
    browser_server.script("The first kites were made in China [1].")
    with rerun(page):
        send(page, "Who made the first?")
    expect(bubbles(page).nth(3)).to_contain_text("out tokens")
    beacon.assert_silent("the rewritten question")
    expect(page.get_by_text("Searched for:")).to_contain_text(seen(f"![q]({u}/question.gif)"))

    page.reload()
    wait_for_idle(page)
    expect(bubbles(page).nth(1)).to_contain_text("image: inline")
    library.locator("summary").click()
    expect(library).to_contain_text(seen(name))

    beacon.assert_only_the_control(page)
