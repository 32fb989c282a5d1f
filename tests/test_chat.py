"""lib.chat against the local OpenAI-compatible server: streaming, usage, faults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lib import chat, errors
from lib.client import build_client
from lib.conversations import ChatParams, ConversationStore, Message
from lib.pricing import PriceTable
from lib.settings import resolve_settings
from tests.fake_openai import FakeOpenAI


@pytest.fixture
def ctx(openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path) -> chat.ChatContext:
    settings = resolve_settings(
        {}, {}, {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test"}
    )
    settings = dataclasses.replace(settings, provider="openai", timeout=5)
    return chat.ChatContext(store, "local", build_client(settings), PriceTable.load(data_dir))


def new_conv(ctx: chat.ChatContext, **params) -> str:  # noqa: ANN003
    return ctx.store.create(
        "local", model="gpt-4o", system_prompt="Be brief.", params=ChatParams(**params)
    ).id


def test_streams_and_saves_with_api_usage(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx)
    openai_server.script("Pelicans are large water birds.", chunk_size=5)
    reply = chat.send(ctx, cid, "What is a pelican?")
    chunks = list(reply)
    assert len(chunks) > 3 and "".join(chunks) == "Pelicans are large water birds."
    saved = ctx.store.all_messages("local", cid)
    assert [(m.role, m.status) for m in saved] == [("user", "ok"), ("assistant", "ok")]
    answer = saved[1]
    assert answer.usage_exact and answer.meta["usage_source"] == "api"
    assert answer.completion_tokens == 5  # the server's own count (words), not ours
    assert answer.cost == pytest.approx(
        (answer.prompt_tokens * 2.5 + answer.completion_tokens * 10) / 1e6
    )
    sent = openai_server.requests_to("/chat/completions")[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stream_options"] == {"include_usage": True}
    assert "temperature" not in sent  # defaults are not sent: strict models accept the request


def test_without_server_usage_tiktoken_counts(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("hello world", usage=False)
    list(chat.send(ctx, cid, "hi"))
    answer = ctx.store.all_messages("local", cid)[-1]
    assert answer.meta["usage_source"] == "tiktoken" and answer.usage_exact
    assert answer.completion_tokens == 2 + 3  # "hello world" plus the reply priming


def test_local_model_counts_are_marked_estimates(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = ctx.store.create("local", model="llama3.2").id
    openai_server.script("hi there", usage=False)
    list(chat.send(ctx, cid, "hi"))
    answer = ctx.store.all_messages("local", cid)[-1]
    assert answer.meta["usage_source"] == "estimate" and not answer.usage_exact


def test_parameters_are_sent(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx, temperature=0.2, top_p=0.9, max_tokens=50, stop=["END"])
    list(chat.send(ctx, cid, "go"))
    sent = openai_server.requests_to("/chat/completions")[-1].json
    assert (sent["temperature"], sent["top_p"], sent["max_completion_tokens"], sent["stop"]) == (
        0.2,
        0.9,
        50,
        ["END"],
    )


def test_history_is_trimmed_to_the_memory_window(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx, memory_rounds=2)
    for i in range(5):
        list(chat.send(ctx, cid, f"question {i}"))
    sent = openai_server.requests_to("/chat/completions")[-1].json["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == [
        "question 2",
        "question 3",
        "question 4",
    ]
    answer = ctx.store.all_messages("local", cid)[-1]
    assert answer.meta["context"]["dropped"] == 4
    # Every message's count was cached, so the next request recounts nothing.
    assert all(m.tokens for m in ctx.store.all_messages("local", cid))


def test_n_alternatives_and_choosing(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx, n=3)
    openai_server.script(["First answer", "Second answer", "Third answer"])
    assert "".join(chat.send(ctx, cid, "options?")) == "First answer"
    answer = ctx.store.all_messages("local", cid)[-1]
    assert answer.meta["alternatives"] == ["First answer", "Second answer", "Third answer"]
    chat.choose_alternative(ctx, cid, answer.id, 2)
    list(chat.send(ctx, cid, "continue"))
    sent = openai_server.requests_to("/chat/completions")[-1].json["messages"]
    assert {"role": "assistant", "content": "Third answer"} in sent
    with pytest.raises(errors.InvalidInputError):
        chat.choose_alternative(ctx, cid, answer.id, 7)


def test_stop_closes_the_http_stream_and_keeps_the_partial_reply(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("word " * 200, chunk_size=5, chunk_delay=0.01)
    reply = chat.send(ctx, cid, "long story please")
    stream = iter(reply)
    got = [next(stream) for _ in range(3)]
    reply.close()
    assert openai_server.wait_for_disconnects(1)
    answer = ctx.store.all_messages("local", cid)[-1]
    assert answer.status == "stopped" and answer.content == "".join(got)


def test_regenerate_keeps_the_earlier_version(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("first take")
    list(chat.send(ctx, cid, "q"))
    openai_server.script("second take")
    list(chat.regenerate(ctx, cid))
    msgs = ctx.store.all_messages("local", cid)
    assert [m.content for m in msgs] == ["q", "second take"]
    assert msgs[-1].meta["alternatives"] == ["first take", "second take"]


def test_edit_last_message_and_resend(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx)
    list(chat.send(ctx, cid, "teh question"))
    list(chat.edit_last_user_message(ctx, cid, "the question"))
    assert [m.content for m in ctx.store.all_messages("local", cid)] == [
        "the question",
        "Echo: the question",
    ]


def test_empty_message_is_refused(ctx: chat.ChatContext) -> None:
    with pytest.raises(errors.InvalidInputError):
        chat.send(ctx, new_conv(ctx), "   ")


@pytest.mark.parametrize(
    ("status", "code", "error", "times"),
    [
        (401, None, errors.AuthenticationFailed, 1),
        (429, None, errors.RateLimited, 4),  # still limited after the SDK's retries
        (500, None, errors.ServerFailed, 4),
        (404, "model_not_found", errors.ModelRejected, 1),
    ],
)
def test_http_errors_become_domain_errors_and_the_question_is_kept(
    ctx: chat.ChatContext,
    openai_server: FakeOpenAI,
    status: int,
    code: str | None,
    error: type,
    times: int,
) -> None:
    cid = new_conv(ctx)
    openai_server.fail(status, code=code, times=times, retry_after=0.01)
    with pytest.raises(error):
        list(chat.send(ctx, cid, "keep me"))
    assert [m.content for m in ctx.store.all_messages("local", cid)] == ["keep me"]


def test_rate_limit_is_retried_before_failing(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.fail(429, retry_after=0.05, times=2)
    assert "".join(chat.send(ctx, cid, "eventually")) == "Echo: eventually"
    assert len(openai_server.requests_to("/chat/completions")) == 3


def test_timeout(
    ctx: chat.ChatContext, openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    settings = dataclasses.replace(
        resolve_settings({}, {}, {"OPENAI_BASE_URL": openai_server.base_url}), timeout=0.3
    )
    fast = dataclasses.replace(ctx, client=build_client(settings))
    cid = new_conv(fast)
    openai_server.hang(2)
    with pytest.raises(errors.RequestTimedOut):
        list(chat.send(fast, cid, "slow?"))


def test_unreachable_server(ctx: chat.ChatContext) -> None:
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    down = dataclasses.replace(ctx, client=build_client(settings))
    with pytest.raises(errors.ServerUnreachable):
        list(chat.send(down, new_conv(down), "anyone?"))


def test_stream_cut_mid_reply_keeps_the_partial_text(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("one two three four five six seven", chunk_size=4)
    openai_server.drop_after(3)
    received = []
    with pytest.raises(errors.StreamInterrupted):
        for piece in chat.send(ctx, cid, "go"):
            received.append(piece)
    answer = ctx.store.all_messages("local", cid)[-1]
    assert answer.status == "interrupted" and answer.content == "".join(received) != ""


def test_context_too_long_trims_and_retries_once(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    for i in range(6):
        list(chat.send(ctx, cid, f"long question number {i} " * 5))
    openai_server.fail(400, code="context_length_exceeded")
    assert "".join(chat.send(ctx, cid, "final")) == "Echo: final"
    first, retry = openai_server.requests_to("/chat/completions")[-2:]
    assert len(retry.json["messages"]) < len(first.json["messages"])


def test_context_too_long_twice_is_a_clear_error(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    list(chat.send(ctx, cid, "one"))
    openai_server.fail(400, code="context_length_exceeded", times=2)
    with pytest.raises(errors.ContextTooLong):
        list(chat.send(ctx, cid, "two"))


def test_illustrations_are_not_sent_to_the_model_nor_regenerated(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    list(chat.send(ctx, cid, "describe a lighthouse"))
    ctx.store.add_message(
        "local",
        cid,
        Message(
            role="assistant",
            content="*Illustration:* a lighthouse at dusk",
            meta={"kind": "illustration", "images": ["img1"]},
        ),
    )
    with pytest.raises(errors.InvalidInputError, match="illustration"):
        chat.regenerate(ctx, cid)
    list(chat.send(ctx, cid, "now a harbour"))
    sent = openai_server.requests_to("/chat/completions")[-1].json["messages"]
    assert all("Illustration" not in m["content"] for m in sent)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
