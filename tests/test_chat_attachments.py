"""Files attached to chat messages, on both backends: what reaches the model (image parts,
short documents whole, long ones as cited passages), what is stored and where, the bad
files refused with the Documents page's messages, exports, and deletion."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import openai
import pytest
from PIL import Image

from lib import backup, chat, export
from lib.chat import attachments, with_documents
from lib.chat.attachments import AttachmentStore, image_tokens
from lib.conversations import ConversationStore, Message
from lib.documents import rag
from lib.documents.embeddings import Embedder
from lib.documents.library import DocumentLibrary
from lib.errors import DocumentError, InvalidInputError, NotFoundError, ProviderError
from lib.history.workspace_export import export_workspace
from lib.store.backend import Backend, open_backend
from lib.store.base import workspace_dir_name
from tests import doc_samples as samples
from tests.fake_openai import FakeOpenAI

WS = "alice"
LIMIT = 8 * 1_048_576
NOTES = "Heron notes\n\nThe grey heron nests in colonies by the river, in tall trees."


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def ctx(backend: Backend, openai_server: FakeOpenAI) -> chat.ChatContext:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    return chat.ChatContext(ConversationStore(backend, WS), client)


@pytest.fixture
def docs(ctx: chat.ChatContext) -> rag.DocContext:
    library = DocumentLibrary(ctx.store.backend, WS)
    embedder = Embedder(ctx.client, "text-embedding-3-small", cache=library.cache)
    return rag.DocContext(ctx, library, embedder)


def read(files: list[tuple[str, bytes]], docs: rag.DocContext | None = None) -> list:
    return with_documents.read_files(files, limit_bytes=LIMIT, docs=docs)


def last_request(server: FakeOpenAI) -> dict:
    return server.requests_to("/chat/completions")[-1].json


def test_an_image_goes_to_the_model_as_an_image_part_and_is_stored_under_a_generated_key(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    data = png()
    name = "../../my holiday ![x](http://evil.example/a.png).png"
    reply = chat.send(ctx, conv.id, "What colour is this?", read([(name, data)]))
    assert "".join(reply).startswith("Echo: What colour is this?")
    user = last_request(openai_server)["messages"][-1]
    assert user["role"] == "user"
    assert user["content"][0] == {"type": "text", "text": "What colour is this?"}
    url = user["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == data  # small: sent as uploaded

    saved = ctx.store.all_messages(conv.id)[0]
    assert saved.content == "What colour is this?"  # the file is not in the text
    (att,) = ctx.attachments.of([saved])[saved.id]
    assert (att.kind, att.name, att.mime, att.size, att.width) == ("image", name, "image/png",
                                                                   len(data), 64)  # fmt: skip
    prefix = f"{workspace_dir_name(WS)}/attachments/{conv.id}/"
    for key in (att.blob, att.thumb):
        assert key.startswith(prefix) and "holiday" not in key and ".." not in key
    assert ctx.attachments.read(att) == data
    assert Image.open(io.BytesIO(ctx.attachments.read(att, "thumb"))).size == (64, 48)


def test_a_large_image_is_sent_scaled_to_2048_and_kept_whole(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    data = jpeg(4032, 3024)  # a phone photo's size
    list(chat.send(ctx, conv.id, "Describe it.", read([("photo.jpg", data)])))
    url = last_request(openai_server)["messages"][-1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (2048, 1536)
    saved = ctx.store.all_messages(conv.id)[0]
    (att,) = ctx.attachments.of([saved])[saved.id]
    assert ctx.attachments.read(att) == data and att.meta == {"scaled_from": [4032, 3024]}
    assert att.tokens == 765  # what OpenAI counts for it: 2 x 2 tiles at 1024 x 768


@pytest.mark.parametrize(
    ("size", "tokens"),
    [((512, 512), 255), ((1024, 1024), 765), ((4032, 3024), 765), ((2048, 4096), 1105)],
)
def test_image_tokens_follow_openais_tiles(size: tuple[int, int], tokens: int) -> None:
    assert image_tokens(*size) == tokens


def test_the_image_counts_towards_the_prompt(ctx: chat.ChatContext) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    reply = chat.send(ctx, conv.id, "And this?", read([("a.png", png(1024, 1024))]))
    list(reply)
    assert reply.trim.new_tokens >= 765 + ctx.server.counter("gpt-5-mini").count("And this?")


def test_a_model_known_not_to_take_images_is_refused_and_nothing_is_saved(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="llama3.2")
    ctx.accepts_images = lambda model: model != "llama3.2"
    with pytest.raises(InvalidInputError, match="llama3.2 does not accept images"):
        chat.send(ctx, conv.id, "What is this?", read([("a.png", png())]))
    assert ctx.store.all_messages(conv.id) == []
    assert list(ctx.store.blobs.keys(ctx.attachments.blob_key("attachments", conv.id))) == []
    assert openai_server.requests_to("/chat/completions") == []


def test_an_image_earlier_in_the_history_goes_as_a_note_to_a_model_without_images(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    list(chat.send(ctx, conv.id, "Look.", read([("cat.png", png())])))
    ctx.store.update_settings(conv.id, model="llama3.2")
    ctx.accepts_images = lambda model: model != "llama3.2"
    list(chat.send(ctx, conv.id, "What did I show you?"))
    first = last_request(openai_server)["messages"][0]
    assert first == {
        "role": "user",
        "content": "Look.\n\n[Image cat.png was not sent: llama3.2 does not accept images.]",
    }


def test_a_short_document_goes_whole_under_its_name_and_files_alone_are_a_message(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    files = read([("heron notes.md", NOTES.encode()), ("intro.pdf", samples.pdf_of_pages([14]))])
    assert [f.kind for f in files] == ["text", "text"]
    list(chat.send(ctx, conv.id, "", files))
    content = last_request(openai_server)["messages"][-1]["content"]
    assert isinstance(content, str)  # no image: plain text, which every server takes
    assert content.startswith(f'<file name="heron notes.md">\n{NOTES}\n</file>')
    assert '<file name="intro.pdf">\n--- page 1 ---\n' not in content  # one page: no marker
    assert "An Introduction to R" in content or "R" in content.split('name="intro.pdf"')[1]
    saved = ctx.store.all_messages(conv.id)
    assert saved[0].content == "" and saved[1].role == "assistant"


def test_a_long_pdf_is_indexed_and_its_passages_are_cited_each_turn(
    ctx: chat.ChatContext, docs: rag.DocContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    manual = samples.pdf_of_pages(list(range(14, 26)))  # 12 pages, 6,724 tokens
    files = read([("R-intro part.pdf", manual)], docs)
    assert [f.kind for f in files] == ["document"]
    reply = chat.send(ctx, conv.id, "How do I compute eigenvalues of a matrix?", files)
    with_documents.link(docs, conv.id, files)
    answer = with_documents.answer_for(docs, reply)
    assert isinstance(answer, with_documents.AttachedAnswer)
    openai_server.script("Use eigen() [1].")
    assert "".join(answer) == "Use eigen() [1]."
    sent = last_request(openai_server)["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith(
        with_documents.CHAT_INSTRUCTIONS
    )
    assert "[1] R-intro part.pdf, page " in sent[0]["content"]
    assert sent[-1]["content"].startswith("How do I compute eigenvalues of a matrix?\n\n<file ")
    cites = answer.message.meta["citations"]
    assert cites[0]["file"] == "R-intro part.pdf" and cites[0]["cited"]
    (doc,) = docs.library.list()  # in the workspace's library, on the Documents page too
    assert doc.name == "R-intro part.pdf" and doc.id == files[0].document_id
    # The next turn, with no new file, is again answered from the document.
    nxt = with_documents.answer_for(docs, chat.send(ctx, conv.id, "And determinants?"))
    assert isinstance(nxt, with_documents.AttachedAnswer)
    # The same file again is stored once.
    again = read([("copy.pdf", manual)], docs)
    assert again[0].document_id == doc.id and len(docs.library.list()) == 1


def test_a_chat_without_documents_keeps_its_plain_reply(
    ctx: chat.ChatContext, docs: rag.DocContext
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    reply = chat.send(ctx, conv.id, "Hello")
    assert with_documents.answer_for(docs, reply) is reply


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.png", b"", "empty.png is empty (0 bytes)."),
        ("photo.png", b"just some text", "photo.png is not an image that can be read."),
        ("cut.png", png(200, 200)[:120], "cut.png is not an image that can be read"),
        ("doc.png", samples.pdf_of_pages([14]), "doc.png is not an image that can be read: it"),
        ("report.pdf", png(), "report.pdf is not a PDF: it looks like a PNG image."),
        ("locked.pdf", samples.encrypted_pdf("secret"), "locked.pdf is protected by a password."),
        ("blank.pdf", samples.blank_pdf(2), "blank.pdf has 2 pages, all blank"),  # scans: OCR
        ("broken.pdf", samples.corrupt_pdf(), "broken.pdf is damaged or truncated"),
        ("tool.exe", b"MZ\x90\x00", "not .exe files"),
        ("big.txt", b"a" * (LIMIT + 1), "big.txt is 8.0 MB; the limit is 8.0 MB per file."),
    ],
)
def test_bad_files_are_refused_with_the_documents_pages_messages_and_nothing_is_saved(
    ctx: chat.ChatContext, docs: rag.DocContext, name: str, data: bytes, message: str
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    with pytest.raises((InvalidInputError, DocumentError)) as caught:
        read([("fine.png", png()), (name, data)], docs)
    assert message in str(caught.value)
    assert ctx.store.all_messages(conv.id) == [] and docs.library.list() == []


def test_exports_name_the_files_and_json_carries_them(ctx: chat.ChatContext) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    image = png()
    list(chat.send(ctx, conv.id, "See.", read([("a `b`.png", image), ("n.md", NOTES.encode())])))
    messages = ctx.store.all_messages(conv.id)
    files = ctx.attachments.export_entries(messages, data=True)
    data = json.loads(export.to_json(conv, messages, files))
    entries = data["messages"][0]["attachments"]
    assert [(e["name"], e["kind"], e["mime"]) for e in entries] == [
        ("a `b`.png", "image", "image/png"),
        ("n.md", "text", "text/markdown"),
    ]
    assert base64.b64decode(entries[0]["data_base64"]) == image
    assert "attachments" not in data["messages"][1]
    md = export.to_markdown(conv, messages, ctx.attachments.export_entries(messages, data=False))
    assert "Attached: `a 'b'.png` (image, 0 KB), `n.md` (text, 0 KB)" in md


def test_deleting_the_conversation_deletes_its_files_and_other_workspaces_see_none(
    ctx: chat.ChatContext, backend: Backend
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    list(chat.send(ctx, conv.id, "See.", read([("a.png", png())])))
    message = ctx.store.all_messages(conv.id)[0]
    (att,) = ctx.attachments.of([message])[message.id]
    bob = AttachmentStore(backend, "bob")
    assert bob.get_many([att.id]) == {}
    with pytest.raises(NotFoundError):
        bob.read(att)
    ctx.store.delete(conv.id)
    assert not backend.blobs.exists(att.blob) and not backend.blobs.exists(att.thumb)
    assert ctx.attachments.get_many([att.id]) == {}


def test_a_failed_save_leaves_no_file_behind(ctx: chat.ChatContext, backend: Backend) -> None:
    files = read([("a.png", png())])
    with pytest.raises(NotFoundError):
        ctx.attachments.save_message("no-such-conversation", Message("user", "x"), files)
    assert list(backend.blobs.keys(workspace_dir_name(WS))) == []


def test_too_many_pixels_are_refused_from_the_header() -> None:
    huge = io.BytesIO()
    Image.new("1", (5000, 5000)).save(huge, format="PNG")  # 25 MP, a few KB
    with pytest.raises(InvalidInputError, match="5000 x 5000 pixels"):
        attachments.checked_image("huge.png", huge.getvalue())


def test_a_server_that_refuses_the_image_says_so_and_the_message_waits_for_retry(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    reply = chat.send(ctx, conv.id, "What is it?", read([("a.png", png())]))
    openai_server.fail(400, message="Image input is not supported by this model.")
    with pytest.raises(ProviderError, match="Image input is not supported by this model"):
        list(reply)
    (question,) = [m for m in ctx.store.all_messages(conv.id) if m.role == "user"]
    assert chat.needs_retry(question) and ctx.attachments.of([question])[question.id]


def test_a_backup_copies_attachment_files_and_names_a_missing_one(
    data_dir: Path, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    # A file backup is of the SQLite data directory (PostgreSQL has its own tools).
    backend = open_backend(data_dir)
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    ctx = chat.ChatContext(ConversationStore(backend, WS), client)
    conv = ctx.store.create(model="gpt-5-mini")
    list(chat.send(ctx, conv.id, "See.", read([("a.png", png()), ("b.png", png(8, 8))])))
    message = ctx.store.all_messages(conv.id)[0]
    first, second = ctx.attachments.of([message])[message.id]
    backend.blobs.delete(second.blob)
    report = backup.backup(data_dir, tmp_path / "backup")
    assert (tmp_path / "backup" / first.blob).read_bytes() == ctx.attachments.read(first)
    assert report.missing == [second.blob]


def test_the_workspace_export_carries_attachments(ctx: chat.ChatContext, tmp_path: Path) -> None:
    conv = ctx.store.create(model="gpt-5-mini")
    image = png()
    list(chat.send(ctx, conv.id, "See.", read([("a.png", image)])))
    target = tmp_path / "everything.zip"
    export_workspace(ctx.store.backend, WS, target)
    with zipfile.ZipFile(target) as archive:
        data = json.loads(archive.read(f"conversations/{conv.id}.json"))
        (md,) = [n for n in archive.namelist() if n.startswith("markdown/")]
        assert "Attached: `a.png` (image, 0 KB)" in archive.read(md).decode()
    (entry,) = data["messages"][0]["attachments"]
    assert base64.b64decode(entry["data_base64"]) == image
