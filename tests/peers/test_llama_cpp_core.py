"""Parley's core against a real llama.cpp server (llama-cpp-python's, see conftest.py).

Set up as the README tells a new user: only OPENAI_BASE_URL, no key. The model is tiny
and random (make_model.py): its text is garbage, it never ends a reply by itself, and
its tokenizer spells most text one character per token, so a 2,048-token context fills
with about 2,000 characters.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lib import chat, errors
from lib.client import build_client
from lib.conversations import ChatParams, ConversationStore, Message
from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.documents.retrieval import retrieve
from lib.pricing import PriceTable
from lib.server.facts import Probed
from lib.settings import resolve_settings
from lib.store.backend import open_backend
from tests.peers.conftest import N_CTX, LlamaServer
from tests.waits import WAIT

pytestmark = pytest.mark.peers
WS = "local"
# Distinct words, so a history of them is long in the server's tokens (about one per
# character) but ordinary prose to tiktoken.
PROSE = (
    "Herons wade through the shallow reeds at dawn, patient and grey, watching the water "
    "for the flicker of a fish. "
)


@pytest.fixture
def ctx(llama_server: LlamaServer, store: ConversationStore, data_dir: Path) -> chat.ChatContext:
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": llama_server.base_url})
    client = build_client(settings)
    # As the terminal chat does: the server's own tokenizer and window, asked once.
    facts = Probed(client, settings.provider)
    prices = PriceTable.load(data_dir)
    return chat.ChatContext(
        store, client, prices, settings.provider, base_url=settings.base_url, server=facts
    )


def new_conv(ctx: chat.ChatContext, server: LlamaServer, **params: object) -> str:
    conv = ctx.store.create(model=server.model, params=ChatParams(**params))  # type: ignore[arg-type]
    return conv.id


def saved(ctx: chat.ChatContext, cid: str) -> list[Message]:
    return ctx.store.all_messages(cid)


def wait_for_log_count(server: LlamaServer, text: str, count: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if server.log_text().count(text) >= count:
            return True
        time.sleep(0.1)  # a log file has nothing to wait on but itself
    return False


def test_a_reply_streams_in_pieces_and_is_saved(
    ctx: chat.ChatContext, llama_server: LlamaServer
) -> None:
    cid = new_conv(ctx, llama_server, max_tokens=40)
    chunks = list(chat.send(ctx, cid, "Hello there, who are you?"))
    assert len(chunks) > 5, chunks  # streamed token by token, not in one piece
    user, answer = saved(ctx, cid)
    assert (user.role, answer.role, answer.status) == ("user", "assistant", "ok")
    assert answer.content == "".join(chunks) and answer.content.strip()
    assert answer.meta["finish_reason"] == "length"  # the model never ends by itself
    assert answer.cost == 0  # a local server's replies are free


def test_stop_closes_the_http_stream_and_keeps_the_partial(
    ctx: chat.ChatContext, llama_server: LlamaServer
) -> None:
    cid = new_conv(ctx, llama_server, max_tokens=1500)  # far longer than the test waits
    disconnects = llama_server.log_text().count("Disconnected from client")
    reply = chat.send(ctx, cid, "Tell me a very long story.")
    pieces = iter(reply)
    partial = "".join(next(pieces) for _ in range(5))
    reply.stop()
    answer = saved(ctx, cid)[-1]
    assert (answer.status, answer.content) == ("stopped", partial)
    # The server noticed: it logs each client that went away mid-stream, then stops.
    assert wait_for_log_count(llama_server, "Disconnected from client", disconnects + 1)
    # And it is free at once for the next request (it serves one at a time).
    list(chat.send(ctx, cid, "Short one now."))
    assert saved(ctx, cid)[-1].status == "ok"


def test_regenerate_keeps_the_earlier_version(
    ctx: chat.ChatContext, llama_server: LlamaServer
) -> None:
    cid = new_conv(ctx, llama_server, max_tokens=20)
    list(chat.send(ctx, cid, "Name a bird."))
    first = saved(ctx, cid)[-1].content
    again = "".join(chat.regenerate(ctx, cid))
    user, answer = saved(ctx, cid)
    assert user.content == "Name a bird." and answer.status == "ok"
    assert answer.content == again and again.strip()
    assert answer.meta["alternatives"] == [first, again] and answer.meta["chosen"] == 1


def long_history(ctx: chat.ChatContext, cid: str, rounds: int) -> str:
    """Saved rounds of question and answer; returns their text."""
    texts = []
    for i in range(rounds):
        for role in ("user", "assistant"):
            text = f"{role} {i}: " + PROSE * 3
            ctx.store.add_message(cid, Message(role=role, content=text, model="x"))
            texts.append(text)
    return "\n".join(texts)


def test_a_history_longer_than_the_context_is_trimmed_and_answered(
    ctx: chat.ChatContext, llama_server: LlamaServer
) -> None:
    cid = new_conv(ctx, llama_server, max_tokens=32)
    history = long_history(ctx, cid, rounds=5)
    assert llama_server.tokens(history) > N_CTX  # the premise: the server cannot take it all
    try:
        text = "".join(chat.send(ctx, cid, "Sum it up."))
    except errors.ParleyError as exc:
        pytest.fail(f"a trimmable history should be trimmed and answered, got: {exc}")
    answer = saved(ctx, cid)[-1]
    assert answer.role == "assistant" and answer.status == "ok"
    assert answer.content == text and text.strip()  # never an empty "ok" reply


def test_a_message_longer_than_the_context_gets_a_clear_message(
    ctx: chat.ChatContext, llama_server: LlamaServer
) -> None:
    cid = new_conv(ctx, llama_server, max_tokens=32)
    question = PROSE * 30
    assert llama_server.tokens(question) > N_CTX
    with pytest.raises(errors.ParleyError) as raised:
        list(chat.send(ctx, cid, question))
    # llama-cpp-python names its window only in its log for a streamed request (QUIRKS.md).
    assert "context" in str(raised.value).lower(), raised.value
    last = saved(ctx, cid)[-1]
    # The question is kept; no reply, or a failed one saying why: never an empty "ok".
    assert last.role == "user" or (last.status == "failed" and last.meta.get("error")), last


def test_documents_are_embedded_by_the_server_and_found_again(
    llama_server: LlamaServer, data_dir: Path
) -> None:
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": llama_server.base_url})
    library = DocumentLibrary(open_backend(data_dir), WS)
    embedder = Embedder(build_client(settings), llama_server.model, cache=library.cache)
    notes = "\n\n".join(
        [
            "# Herons\n\nThe grey heron nests in colonies by rivers and lakes in spring.",
            "# Kestrels\n\nThe kestrel hovers over motorway verges, hunting voles.",
            "# Puffins\n\nPuffins dig burrows on sea cliffs and carry sand eels crosswise.",
        ]
    )
    ingestor = Ingestor(library, embedder, limit_bytes=1 << 20)
    report = ingestor.ingest("birds.md", notes.encode())
    assert report.status == "indexed", report.message
    assert not report.keyword_only, report.message  # the server's embeddings were used
    assert embedder.requests >= 1
    doc = library.get(report.document_id)
    assert doc.embedding_model == llama_server.model
    assert library.search.vector_count(llama_server.model) == report.chunks > 0
    question = "Where do puffins dig their burrows?"
    result = retrieve(
        library,
        question,
        [report.document_id],
        model=llama_server.model,
        query_vector=embedder.embed_query(question),
    )
    assert result.mode == "hybrid"  # dense (the server's vectors) and keyword together
    assert "Puffins dig burrows" in result.sources[0].chunk.text


def test_a_chat_models_per_token_embeddings_still_leave_the_file_searchable(
    chat_model_server: LlamaServer, data_dir: Path
) -> None:
    """The issue's setup: one chat model served with --embedding true. Its GGUF names no
    pooling, so /v1/embeddings returns a list of per-token vectors for each input."""
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": chat_model_server.base_url})
    library = DocumentLibrary(open_backend(data_dir), WS)
    client = build_client(settings)
    embedder = Embedder(client, chat_model_server.model, cache=library.cache)
    ingestor = Ingestor(library, embedder, limit_bytes=1 << 20)
    report = ingestor.ingest("birds.md", b"# Puffins\n\nPuffins dig burrows on sea cliffs.")
    # Indexed either way: with vectors Parley pooled itself, or for keyword search with a
    # report that says why (never "too many values to unpack").
    assert report.status == "indexed", report.message
    if report.keyword_only:
        assert "embedding" in report.message.lower(), report.message
    result = retrieve(library, "Where do puffins dig?", [report.document_id])
    assert "Puffins dig burrows" in result.sources[0].chunk.text
