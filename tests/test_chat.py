"""lib.chat against the local OpenAI-compatible server: streaming, usage, faults."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

import openai
import pytest

from lib import chat, errors, inflight
from lib import client as client_module
from lib.client import MAX_RETRY_WAIT, build_client, send_once
from lib.conversations import ChatParams, ConversationStore, Message
from lib.pricing import PriceTable
from lib.settings import resolve_settings
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT


@pytest.fixture
def ctx(openai_server: FakeOpenAI, store: ConversationStore, data_dir: Path) -> chat.ChatContext:
    settings = resolve_settings(
        {}, {}, {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test"}
    )
    settings = dataclasses.replace(settings, provider="openai", timeout=WAIT)
    return chat.ChatContext(store, build_client(settings), PriceTable.load(data_dir))


def new_conv(ctx: chat.ChatContext, **params) -> str:  # noqa: ANN003
    return ctx.store.create(
        model="gpt-4o", system_prompt="Be brief.", params=ChatParams(**params)
    ).id


def test_streams_and_saves_with_api_usage(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx)
    openai_server.script("Pelicans are large water birds.", chunk_size=5)
    reply = chat.send(ctx, cid, "What is a pelican?")
    chunks = list(reply)
    assert len(chunks) > 3 and "".join(chunks) == "Pelicans are large water birds."
    saved = ctx.store.all_messages(cid)
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
    answer = ctx.store.all_messages(cid)[-1]
    assert answer.meta["usage_source"] == "tiktoken" and answer.usage_exact
    assert answer.completion_tokens == 2 + 3  # "hello world" plus the reply priming


def test_local_model_counts_are_marked_estimates(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = ctx.store.create(model="llama3.2").id
    openai_server.script("hi there", usage=False)
    list(chat.send(ctx, cid, "hi"))
    answer = ctx.store.all_messages(cid)[-1]
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
    answer = ctx.store.all_messages(cid)[-1]
    assert answer.meta["context"]["dropped"] == 4
    # Every message's count was cached, so the next request recounts nothing.
    assert all(m.tokens for m in ctx.store.all_messages(cid))


def test_n_alternatives_and_choosing(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx, n=3)
    openai_server.script(["First answer", "Second answer", "Third answer"])
    reply = chat.send(ctx, cid, "options?")
    assert "".join(reply) == "First answer"
    # Choices 1.. are sibling versions of choice 0, which the path takes.
    assert [m.content for m in ctx.store.path(cid)] == ["options?", "First answer"]
    versions = ctx.store.siblings(cid, ctx.store.path(cid))[reply.message.id]
    assert len(versions) == 3 and versions.index == 0
    assert [m.content for m in reply.alternatives] == ["Second answer", "Third answer"]
    chat.switch(ctx.store, cid, reply.alternatives[1].id)
    list(chat.send(ctx, cid, "continue"))
    sent = openai_server.requests_to("/chat/completions")[-1].json["messages"]
    assert {"role": "assistant", "content": "Third answer"} in sent
    assert {"role": "assistant", "content": "First answer"} not in sent


@pytest.mark.parametrize(("end", "status"), [("stop", "stopped"), ("close", "interrupted")])
def test_ending_early_closes_the_http_stream_and_keeps_the_partial_reply(
    ctx: chat.ChatContext, openai_server: FakeOpenAI, end: str, status: str
) -> None:
    # Only the user's Stop (`stop`) is "stopped"; any other early end is "interrupted".
    cid = new_conv(ctx)
    openai_server.script("word " * 200, chunk_size=5, chunk_delay=0.01)
    reply = chat.send(ctx, cid, "long story please")
    stream = iter(reply)
    got = [next(stream) for _ in range(3)]
    getattr(reply, end)()
    assert openai_server.wait_for_disconnects(1)
    answer = ctx.store.all_messages(cid)[-1]
    assert answer.status == status and answer.content == "".join(got)
    assert len(ctx.store.all_messages(cid)) == 2  # the streaming row, finished


def test_regenerate_keeps_the_earlier_version(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("first take")
    list(chat.send(ctx, cid, "q"))
    openai_server.script("second take")
    list(chat.regenerate(ctx, cid))
    assert [m.content for m in ctx.store.path(cid)] == ["q", "second take"]
    # The first take is kept as the earlier version, beside the second.
    assert [m.content for m in ctx.store.all_messages(cid)] == ["q", "first take", "second take"]


def test_edit_last_message_and_resend(ctx: chat.ChatContext, openai_server: FakeOpenAI) -> None:
    cid = new_conv(ctx)
    list(chat.send(ctx, cid, "teh question"))
    first = ctx.store.path(cid)[0]
    list(chat.edit(ctx, cid, first.id, "the question"))
    assert [m.content for m in ctx.store.path(cid)] == ["the question", "Echo: the question"]


def test_empty_message_is_refused(ctx: chat.ChatContext) -> None:
    with pytest.raises(errors.InvalidInputError):
        chat.send(ctx, new_conv(ctx), "   ")


@pytest.mark.parametrize(
    ("status", "code", "error", "sent"),
    [
        (401, None, errors.AuthenticationFailed, 1),
        (429, None, errors.RateLimited, 4),  # refused before any work: resent 3 times
        (500, None, errors.ServerFailed, 1),  # it may have run (and been billed): never resent
        (503, None, errors.ServerFailed, 1),
        (404, "model_not_found", errors.ModelRejected, 1),
    ],
)
def test_http_errors_become_domain_errors_and_the_question_is_kept(
    ctx: chat.ChatContext,
    openai_server: FakeOpenAI,
    status: int,
    code: str | None,
    error: type,
    sent: int,
) -> None:
    cid = new_conv(ctx)
    openai_server.fail(status, code=code, times=10, retry_after=0.01)
    with pytest.raises(error) as raised:
        list(chat.send(ctx, cid, "keep me"))
    # The turn is kept as failed, with the reason, for the page to show in its place.
    question, failed = ctx.store.all_messages(cid)
    assert (question.content, failed.role, failed.status) == ("keep me", "assistant", "failed")
    assert failed.meta["error"] == str(raised.value)
    if error is not errors.ServerFailed:  # refused before any work: nothing billed
        assert failed.cost == 0.0
    assert len(openai_server.requests_to("/chat/completions")) == sent


def test_rate_limit_is_retried_before_failing(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.fail(429, retry_after=0.05, times=2)
    assert "".join(chat.send(ctx, cid, "eventually")) == "Echo: eventually"
    assert len(openai_server.requests_to("/chat/completions")) == 3


def test_a_429_longer_than_the_cap_is_reported_not_waited_out(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    openai_server.fail(429, retry_after=MAX_RETRY_WAIT + 10)
    with pytest.raises(errors.RateLimited):
        list(chat.send(ctx, new_conv(ctx), "now?"))
    assert len(openai_server.requests_to("/chat/completions")) == 1


def test_a_timed_out_request_is_sent_once_and_can_be_retried(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    settings = dataclasses.replace(
        resolve_settings({}, {}, {"OPENAI_BASE_URL": openai_server.base_url}), timeout=0.3
    )
    fast = dataclasses.replace(ctx, client=build_client(settings))
    cid = new_conv(fast)
    openai_server.hang(2)
    started = time.monotonic()
    with pytest.raises(errors.RequestTimedOut, match="timed out"):
        list(chat.send(fast, cid, "slow?"))
    assert time.monotonic() - started < 1.5  # one timeout, not four
    # It may be running (and billed) on the server: never sent again by itself.
    assert len(openai_server.requests_to("/chat/completions")) == 1
    question, failed = fast.store.all_messages(cid)
    assert failed.status == "failed" and chat.needs_retry(failed)  # the page offers Retry
    assert failed.prompt_tokens  # it may have run: counted, not taken as free
    assert "".join(chat.regenerate(fast, cid)) == "Echo: slow?"


def test_an_sdk_client_with_retries_is_never_left_to_resend(
    ctx: chat.ChatContext, openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=5)
    own = chat.ChatContext(store, sdk)
    openai_server.fail(500, times=10)
    with pytest.raises(errors.ServerFailed):
        list(chat.send(own, new_conv(own), "once"))
    assert len(openai_server.requests_to("/chat/completions")) == 1


def test_a_refused_connection_is_resent_once_the_server_is_up() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = FakeOpenAI(port=port)
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    client = build_client(settings)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the server comes up while Parley waits
        waits.append(seconds)
        late.start()

    try:
        models = send_once(lambda: client.models.list(), sleep=sleep)
        assert [m.id for m in models][:1] == ["gpt-5-mini"]
        assert len(waits) == 1 and len(late.requests) == 1
    finally:
        late.stop()


def test_unreachable_server(ctx: chat.ChatContext, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[int] = []
    monkeypatch.setattr(client_module, "_backoff", lambda attempt: waits.append(attempt) or 0.0)
    settings = resolve_settings({}, {}, {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    down = dataclasses.replace(ctx, client=build_client(settings))
    with pytest.raises(errors.ServerUnreachable):
        list(chat.send(down, new_conv(down), "anyone?"))
    assert waits == [0, 1, 2]  # refused before any work: resent, then given up


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
    answer = ctx.store.all_messages(cid)[-1]
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


# Odd answers from a server that said 200: each is a clear error, saved as a failed turn.
ODD_ANSWERS = [  # (id, fault, error, message, partial text kept)
    ("html", lambda s: s.misbehave("html"), errors.BadReply, "web page", ""),
    ("malformed", lambda s: s.misbehave("malformed", after=2), errors.BadReply, "malformed",
     "aaaabbbb"),
    ("error event", lambda s: s.misbehave("error", after=1), errors.ContextTooLong,
     "exceed context window", "aaaa"),
    ("ended early", lambda s: s.misbehave("end"), errors.BadReply, "empty reply", ""),
    ("empty", lambda s: s.misbehave("empty"), errors.BadReply, "empty reply", ""),
    ("dropped at once", lambda s: s.drop_after(0), errors.BadReply, "dropped before", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "error", "message", "partial"),
    [case[1:] for case in ODD_ANSWERS],
    ids=[case[0] for case in ODD_ANSWERS],
)
def test_odd_answers_are_clear_failures_saved_as_failed_and_retried(
    ctx: chat.ChatContext,
    openai_server: FakeOpenAI,
    fault,  # noqa: ANN001
    error: type,
    message: str,
    partial: str,
) -> None:
    cid = new_conv(ctx)
    openai_server.script("aaaabbbbccccdddd", chunk_size=4)
    fault(openai_server)
    with pytest.raises(error, match=message):
        list(chat.send(ctx, cid, "hello?"))
    question, failed = ctx.store.all_messages(cid)
    assert (failed.role, failed.status, failed.content) == ("assistant", "failed", partial)
    assert message in failed.meta["error"] and chat.needs_retry(failed)
    assert len(openai_server.requests_to("/chat/completions")) == 1  # never resent by itself

    retry = chat.regenerate(ctx, cid)
    assert "".join(retry) == "Echo: hello?"
    assert [(m.content, m.status) for m in ctx.store.all_messages(cid)] == [
        ("hello?", "ok"),
        ("Echo: hello?", "ok"),
    ]
    assert len(ctx.store.all_messages(cid)) == 2  # a failed reply is no version to keep
    assert [m["content"] for m in openai_server.requests_to("/chat/completions")[-1].json[
        "messages"] if m["role"] != "system"] == ["hello?"]  # fmt: skip


def test_a_failed_reply_is_not_sent_back_to_the_model(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("half an answer", chunk_size=4)
    openai_server.misbehave("malformed", after=2)
    with pytest.raises(errors.BadReply):
        list(chat.send(ctx, cid, "first"))
    list(chat.send(ctx, cid, "second"))
    sent = openai_server.requests_to("/chat/completions")[-1].json["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "user"]


def test_a_stream_without_a_usage_chunk_is_estimated(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    openai_server.send_usage = False
    cid = new_conv(ctx)
    assert "".join(chat.send(ctx, cid, "hi")) == "Echo: hi"
    answer = ctx.store.all_messages(cid)[-1]
    assert answer.status == "ok" and answer.meta["usage_source"] == "tiktoken"


def test_a_reply_past_the_size_cap_is_cut_kept_marked_and_its_stream_closed(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    capped = dataclasses.replace(ctx, max_reply_chars=2_000)
    cid = new_conv(capped)
    openai_server.script("x" * 50_000, chunk_size=100, chunk_delay=0.01)  # ~5 s in full
    shown = "".join(chat.send(capped, cid, "go on forever"))
    assert len(shown) == 2_000
    assert openai_server.wait_for_disconnects(1)  # the server saw Parley hang up
    answer = capped.store.all_messages(cid)[-1]
    assert (answer.status, answer.content) == ("truncated", shown)
    assert answer.meta["limit"] == 2_000


def test_a_streaming_reply_is_saved_as_it_arrives_cheaply(
    ctx: chat.ChatContext, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    updates: list[int] = []
    update = ctx.store.update_streaming
    monkeypatch.setattr(
        ctx.store, "update_streaming", lambda *a, **k: updates.append(1) or update(*a, **k)
    )
    cid = new_conv(ctx)
    story = " ".join(f"w{i}" for i in range(400))  # ~1,900 characters in ~2.5 s
    openai_server.script(story, chunk_size=6, chunk_delay=0.008)
    received, worst_behind, behind_since = "", 0, None
    for n, piece in enumerate(chat.send(ctx, cid, "a long one")):
        received += piece
        if n == 0:
            continue  # the row is written just after the first piece is on screen
        row = ctx.store.all_messages(cid)[-1]
        assert row.role == "assistant" and row.status == "streaming"
        assert received.startswith(row.content)
        lag = len(received) - len(row.content)
        behind_since = None if lag == len(piece) else (behind_since or time.monotonic())
        if behind_since is not None:
            worst_behind = max(worst_behind, lag)
            assert time.monotonic() - behind_since < chat.SAVE_EVERY_S + 0.5
    assert worst_behind < 4 * chat.SAVE_EVERY_CHARS
    assert 1 <= len(updates) <= 12, updates  # about one a second (or 500 characters), not 320
    answer = ctx.store.all_messages(cid)[-1]
    assert (answer.status, answer.content) == ("ok", story)
    assert len(ctx.store.all_messages(cid)) == 2


def test_a_reply_left_streaming_by_a_dead_process_reads_as_interrupted(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = new_conv(ctx)
    openai_server.script("word " * 100, chunk_size=5, chunk_delay=0.01)
    stream = iter(chat.send(ctx, cid, "tell me"))
    next(stream), next(stream)  # the row is saved once the first piece is shown
    row = ctx.store.all_messages(cid)[-1]
    # A reply this process is still writing is live, for every session of the process.
    assert inflight.settle(ctx.store, cid, [row])[0].status == "streaming"
    dead = Message(
        "assistant",
        "half of it",
        "streaming",
        "gpt-4o",
        meta={"owner": {"pid": 2**22 + 7, "boot": "gone", "reply": "r"}},
    )
    ctx.store.add_message(cid, dead)
    settled = inflight.settle(ctx.store, cid, ctx.store.all_messages(cid))
    assert [m.status for m in settled] == ["ok", "streaming", "interrupted"]
    assert settled[-1].meta["error"] == inflight.CUT_OFF
    assert ctx.store.all_messages(cid)[-1].status == "interrupted"
    assert chat.needs_retry(ctx.store.all_messages(cid)[-1])
    stream.close()


def test_another_hosts_reply_is_live_while_its_heartbeat_is_fresh(
    ctx: chat.ChatContext, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas on other hosts share PostgreSQL: their pids mean nothing here, so a reply
    of theirs is live while its writer keeps stamping it, and cut off once it stops."""
    monkeypatch.setattr(inflight, "HEARTBEAT_S", 0.05)
    cid = new_conv(ctx)
    openai_server.script("word " * 400, chunk_size=5, chunk_delay=0.02)
    stream = iter(chat.send(ctx, cid, "tell me"))
    next(stream), next(stream)
    first = ctx.store.all_messages(cid)[-1].meta["owner"]
    assert first["host"] == inflight.HOST
    deadline = time.monotonic() + WAIT
    while ctx.store.all_messages(cid)[-1].meta["owner"]["beat"] == first["beat"]:
        assert time.monotonic() < deadline, "the writer never stamped its heartbeat"
        time.sleep(0.02)
    stream.close()

    def elsewhere(beat_age: float) -> Message:
        owner = {"pid": os.getpid(), "boot": "another", "host": "replica-b/boot", "reply": "r",
                 "beat": time.time() - beat_age}  # fmt: skip
        return ctx.store.add_message(
            cid, Message("assistant", "half", "streaming", "gpt-4o", meta={"owner": owner})
        )

    fresh, stale = elsewhere(1), elsewhere(inflight.STALE_AFTER_S + 5)
    settled = {m.id: m.status for m in inflight.settle(ctx.store, cid, ctx.store.all_messages(cid))}
    assert (settled[fresh.id], settled[stale.id]) == ("streaming", "interrupted")
