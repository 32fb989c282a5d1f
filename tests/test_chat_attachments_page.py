"""Attachments in the Chat page's chat box, under AppTest against the local server: what
the bubble shows, what the model received, and the messages for files it cannot take."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

from PIL import Image
from streamlit.testing.v1 import AppTest

from lib.chat.attachments import AttachmentStore
from lib.conversations import ConversationStore
from lib.documents.library import DocumentLibrary
from lib.markup import escape
from tests import doc_samples as samples
from tests.fake_openai import FakeOpenAI

CHAT = "app_pages/chat.py"


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "green").save(out, format="PNG")
    return out.getvalue()


def submit(at: AppTest, text: str, *files: tuple[str, bytes, str]) -> AppTest:
    box = at.chat_input[0].set_value(text)
    for name, data, mime in files:
        box.upload(name, data, mime)
    at.run()
    assert not at.exception, at.exception
    return at


def captions(at: AppTest, index: int) -> list[str]:
    return [c.value for c in at.chat_message[index].caption]


def chat_requests(server: FakeOpenAI) -> list[dict]:
    # Replies only: a capability probe posts `{}` (with a model) to the same endpoint.
    return [r.json for r in server.requests_to("/chat/completions") if "messages" in r.json]


def test_an_attached_image_is_shown_sent_as_an_image_part_and_kept(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    assert at.chat_input[0].proto.file_type  # the box offers files
    image = png()
    name = "garden ![x](http://evil.example/p.png).png"
    submit(at, "What is in it?", (name, image, "image/png"))
    user = chat_requests(openai_server)[-1]["messages"][-1]["content"]
    assert user[0] == {"type": "text", "text": "What is in it?"}
    assert base64.b64decode(user[1]["image_url"]["url"].split(",", 1)[1]) == image
    assert at.chat_message[0].markdown[0].value == "What is in it?"
    (label,) = [c for c in captions(at, 0) if "garden" in c]
    assert f"{escape(name)} · 64 × 48" in label and "![x]" not in label  # plain text
    assert len(at.chat_message[0].get("image")) == 1  # the thumbnail

    # Saved with the conversation: a fresh session shows it again.
    cid = store.list()[0].id
    fresh = app()
    fresh.query_params["c"] = cid
    fresh.run()
    assert label in captions(fresh, 0) and len(fresh.chat_message[0].get("image")) == 1
    message = store.all_messages(cid)[0]
    assert AttachmentStore(store.backend, "local").of([message])[message.id][0].size == len(image)


def test_a_model_that_takes_no_images_is_said_and_the_text_comes_back(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    openai_server.flavour("llama-server")  # /props: no vision
    at = app(PARLEY_PROVIDER="llamacpp")
    at.run()
    submit(at, "Describe this", ("cat.png", png(), "image/png"))
    assert "does not accept images" in at.error[0].value
    assert "Attach the files again" in at.error[0].value
    assert at.chat_input[0].value == "Describe this"
    assert chat_requests(openai_server) == []
    assert all(store.all_messages(c.id) == [] for c in store.list())


def test_a_bad_file_gets_the_documents_pages_message_and_nothing_is_sent(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    submit(at, "Read this", ("report.pdf", png(), "application/pdf"))
    assert "report.pdf is not a PDF: it looks like a PNG image." in at.error[0].value
    assert chat_requests(openai_server) == [] and store.list() == []


def test_a_short_text_file_goes_whole_and_a_long_pdf_is_cited_from_the_library(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    submit(at, "Summarise", ("notes.txt", b"Herons nest in colonies.", "text/plain"))
    sent = chat_requests(openai_server)[-1]["messages"][-1]["content"]
    assert sent == 'Summarise\n\n<file name="notes.txt">\nHerons nest in colonies.\n</file>'
    assert any("notes.txt · 0 KB · sent in full" in c for c in captions(at, 0))

    manual = samples.pdf_of_pages(list(range(14, 26)))  # 12 pages of R-intro, 6,724 tokens
    openai_server.script("How are eigenvalues computed in R?")  # the follow-up, rewritten
    openai_server.script("Use eigen() [1].")
    submit(at, "How are eigenvalues computed?", ("R-intro part.pdf", manual, "application/pdf"))
    system = chat_requests(openai_server)[-1]["messages"][0]
    assert system["role"] == "system" and "[1] R-intro part.pdf, page " in system["content"]
    assert any("in your library" in c for c in captions(at, 2))
    answer = at.chat_message[3]
    assert answer.markdown[0].value.startswith("Use eigen() \\[1 · R-intro part.pdf p. ")
    assert answer.expander[0].label.startswith("[1] R-intro part.pdf, page ")
    (doc,) = DocumentLibrary(store.backend, "local").list()
    assert doc.name == "R-intro part.pdf"


def test_with_ocr_off_a_scan_in_the_chat_box_is_refused_unread(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    store: ConversationStore,
    monkeypatch,  # noqa: ANN001
) -> None:
    """The operator's PARLEY_OCR reaches the chat box as it does the Documents page: a
    scan attached with OCR off gets the Documents page's message, and tesseract never
    runs."""
    from lib.documents import ocr
    from tests.test_documents_ocr import scan_pdf

    seen: list[bytes] = []
    monkeypatch.setattr(ocr.Pool, "_recognise", lambda pool, png: seen.append(png) or "")
    at = app(PARLEY_OCR="0")
    at.run()
    submit(at, "Read this", ("scan.pdf", scan_pdf(14), "application/pdf"))
    assert "and OCR is turned off on this server" in at.error[0].value
    assert seen == [] and chat_requests(openai_server) == [] and store.list() == []
