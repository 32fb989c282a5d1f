"""lib.chat on servers other than OpenAI's: the server's token counter and context window,
and overflow from each (trim to the window the error states, retry once, then a clear
message), against the fake server's llama-server, llama-cpp-python and vLLM flavours."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lib import chat, errors
from lib.client import build_client
from lib.conversations import ChatParams, ConversationStore, Message
from lib.pricing import PriceTable
from lib.server.facts import Offline, Probed
from lib.settings import resolve_settings
from tests.fake_images import count_words
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

WS = "local"
MODEL = "tiny-llama"
N_CTX = 2048
# 70 words a message: 50 such messages are about 3,500 words, 7,000 of a server's tokens
# at two a word, with the question and the fake's reply on top.
PROSE = (
    "Herons wade through the shallow reeds at dawn, patient and grey, watching the water "
    "for the flicker of a fish while the mist lifts slowly off the lake and the first "
    "swallows skim the surface, and far off a dog barks twice at the passing boats that "
    "carry nets, baskets and sleepy fishermen home across the still water."
)


def make_ctx(
    server: FakeOpenAI, store: ConversationStore, data_dir: Path, *, probed: bool, **kw: object
) -> chat.ChatContext:
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": server.base_url})
    settings = dataclasses.replace(settings, timeout=WAIT)
    client = build_client(settings)
    facts = Probed(client, settings.provider) if probed else Offline(settings.provider)
    return chat.ChatContext(
        store,
        client,
        PriceTable.load(data_dir),
        settings.provider,
        base_url=settings.base_url,
        server=facts,
        **kw,  # type: ignore[arg-type]
    )


def long_conversation(ctx: chat.ChatContext, rounds: int = 25) -> str:
    """`rounds` of about 70 words a message, every one remembered (no memory limit)."""
    conv = ctx.store.create(model=MODEL, params=ChatParams(memory_rounds=100))
    for i in range(rounds):
        for role in ("user", "assistant"):
            ctx.store.add_message(conv.id, Message(role, f"{role} {i}: {PROSE}", model=MODEL))
    return conv.id


def chats(server: FakeOpenAI) -> list[dict]:
    return [r.json for r in server.requests_to("/chat/completions")]


def server_tokens(request: dict, word_tokens: int) -> int:
    return sum(count_words(m["content"]) for m in request["messages"]) * word_tokens


@pytest.mark.parametrize("probed", [True, False], ids=["probed", "offline"])
def test_a_long_history_on_llama_cpp_python_is_trimmed_to_the_window_its_error_states(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path, probed: bool
) -> None:
    # Three tokens a word: the server splits finer than tiktoken, as a small llama does.
    openai_server.flavour("llama-cpp-python", n_ctx=N_CTX, word_tokens=3)
    openai_server.models = [MODEL]
    ctx = make_ctx(openai_server, store, data_dir, probed=probed)
    cid = long_conversation(ctx)
    text = "".join(chat.send(ctx, cid, "Sum it up."))
    answer = ctx.store.all_messages(cid)[-1]
    assert (answer.status, answer.content) == ("ok", text) and text.strip()
    sent = chats(openai_server)
    # The first request overflowed (an empty stream), the second asked why (not streamed,
    # one token), and the third, trimmed to the window, fits.
    assert [r["stream"] if "stream" in r else False for r in sent] == [True, False, True]
    assert sent[1]["max_tokens"] == 1
    assert server_tokens(sent[0], 3) > N_CTX > server_tokens(sent[2], 3)
    learnt = ctx.server.window(MODEL)
    assert learnt.tokens == N_CTX and learnt.source == "overflow error"
    assert answer.meta["context"]["window"] == N_CTX
    assert answer.meta["context"]["window_known"] is True
    assert answer.meta["context"]["dropped"] > 0
    # llama-cpp-python sends no usage: the server's own tokenizer counted, exactly.
    assert answer.meta["usage_source"] == ("tokenizer" if probed else "estimate")
    assert answer.usage_exact is probed
    # The next message is trimmed at once: the session remembers the window.
    before = len(chats(openai_server))
    list(chat.send(ctx, cid, "And again."))
    assert len(chats(openai_server)) == before + 1


def test_llama_server_states_its_window_up_front(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path
) -> None:
    openai_server.flavour("llama-server", n_ctx=N_CTX)
    openai_server.models = [MODEL]
    ctx = make_ctx(openai_server, store, data_dir, probed=True)
    cid = long_conversation(ctx)
    list(chat.send(ctx, cid, "Sum it up."))
    [sent] = chats(openai_server)  # trimmed before sending: no overflow, no retry
    assert server_tokens(sent, 1) < N_CTX
    context = ctx.store.all_messages(cid)[-1].meta["context"]
    assert (context["window"], context["window_source"]) == (N_CTX, "llama-server /props")
    assert context["estimate"] is False  # counted with the server's /tokenize


@pytest.mark.parametrize("flavour", ["llama-server", "vllm"])
def test_a_400_overflow_is_learnt_and_retried_once(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path, flavour: str
) -> None:
    openai_server.flavour(flavour, n_ctx=N_CTX)
    openai_server.models = [MODEL]
    ctx = make_ctx(openai_server, store, data_dir, probed=False)  # the window not asked
    cid = long_conversation(ctx)
    assert "".join(chat.send(ctx, cid, "Sum it up.")).strip()
    first, retry = chats(openai_server)
    assert server_tokens(first, 1) > N_CTX > server_tokens(retry, 1)
    assert ctx.server.window(MODEL).tokens == N_CTX
    assert ctx.store.all_messages(cid)[-1].status == "ok"


def test_an_error_event_before_any_text_is_retried_once(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path
) -> None:
    ctx = make_ctx(openai_server, store, data_dir, probed=False)
    cid = long_conversation(ctx, rounds=3)
    openai_server.misbehave("error", after=0)  # "exceed context window of 4096", no text
    assert "".join(chat.send(ctx, cid, "final")) == "Echo: final"
    assert len(chats(openai_server)) == 2
    assert ctx.server.window(MODEL).tokens == 4096
    saved = ctx.store.all_messages(cid)
    assert [m.status for m in saved[-2:]] == ["ok", "ok"]  # no failed turn left behind


def test_a_message_longer_than_the_window_is_a_clear_error_never_an_empty_reply(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path
) -> None:
    openai_server.flavour("llama-cpp-python", n_ctx=N_CTX, word_tokens=3)
    openai_server.models = [MODEL]
    ctx = make_ctx(openai_server, store, data_dir, probed=True)
    cid = ctx.store.create(model=MODEL).id
    with pytest.raises(errors.ContextTooLong, match="2,048 tokens") as raised:
        list(chat.send(ctx, cid, PROSE * 20))
    assert "shorten" in str(raised.value)
    question, last = ctx.store.all_messages(cid)
    # The question is kept, answered by a failed turn saying why, for Retry; no "ok" reply.
    assert (question.role, last.status) == ("user", "failed") and "shorten" in last.meta["error"]


def test_openai_is_never_asked_why_a_stream_was_empty(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path
) -> None:
    # A silent stream from a server that bills: resending could be charged, so it is not.
    openai_server.flavour("llama-cpp-python", n_ctx=N_CTX)
    ctx = make_ctx(openai_server, store, data_dir, probed=False)
    ctx.provider = "openai"
    cid = long_conversation(ctx)
    with pytest.raises(errors.BadReply, match="empty reply"):
        list(chat.send(ctx, cid, "Sum it up."))
    assert len(chats(openai_server)) == 1


def test_a_local_reply_is_free_unless_its_server_is_priced(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path
) -> None:
    ctx = make_ctx(openai_server, store, data_dir, probed=False)
    cid = ctx.store.create(model="gpt-5-mini").id
    list(chat.send(ctx, cid, "hello"))
    assert ctx.store.all_messages(cid)[-1].cost == 0  # not OpenAI's gpt-5-mini price
    (data_dir / "prices.toml").write_text(
        f'[server."{openai_server.base_url}".chat."gpt-5-mini"]\ninput = 1.0\noutput = 2.0\n'
    )
    ctx.prices = PriceTable.load(data_dir)
    list(chat.send(ctx, cid, "again"))
    answer = ctx.store.all_messages(cid)[-1]
    assert answer.cost == pytest.approx((answer.prompt_tokens + 2 * answer.completion_tokens) / 1e6)


def test_llama_cpp_python_streams_are_read_as_it_sends_them(
    openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path
) -> None:
    openai_server.flavour("llama-cpp-python", empty_deltas=True)
    openai_server.models = [MODEL]
    ctx = make_ctx(openai_server, store, data_dir, probed=True)
    raw = ctx.client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw)
    # The quirks: no usage even when asked, a role-only first delta, empty content deltas.
    assert all(c.usage is None for c in chunks) and chunks[0].choices[0].delta.content is None
    assert any(c.choices and c.choices[0].delta.content == "" for c in chunks)
    cid = ctx.store.create(model=MODEL).id
    openai_server.script("A heron stands in the reeds.")
    assert "".join(chat.send(ctx, cid, "What stands in the reeds?")) == (
        "A heron stands in the reeds."
    )
    answer = ctx.store.all_messages(cid)[-1]
    assert answer.status == "ok" and answer.usage_exact
    assert answer.meta["usage_source"] == "tokenizer"  # the server's own /extras/tokenize
    assert answer.completion_tokens == 6 + 3  # its words, and the reply's priming
