"""Sending a conversation to the model and streaming the reply back.

`send` saves the user's message first (so no failure can lose it), then `Reply` builds
the request from the trimmed history, streams text chunks for `st.write_stream` or a
terminal, and saves the assistant message when the stream ends, fails or is stopped.
Closing a `Reply` early closes the HTTP stream and keeps the partial text, marked.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai

from lib import errors
from lib.client import TRANSPORT_ERRORS, provider_errors
from lib.conversations import Conversation, ConversationStore, Message
from lib.memory import TrimResult, output_reserve, trim_to_budget
from lib.models import context_window
from lib.pricing import PriceTable
from lib.tokens import TOKENS_PER_REPLY, Counter, counter_for

log = logging.getLogger(__name__)
# Providers that want `max_completion_tokens`; other servers still expect `max_tokens`.
COMPLETION_TOKENS_PROVIDERS = {"openai", "azure"}
# Messages Parley adds to a conversation that are records, not dialogue: an illustration
# is shown in the transcript but its prompt text is not a reply the model gave.
NOT_SENT_KINDS = {"illustration"}


@dataclass
class ChatContext:
    """Everything a reply needs besides the conversation itself."""

    store: ConversationStore
    workspace: str
    client: openai.OpenAI
    prices: PriceTable = field(default_factory=PriceTable)
    provider: str = "openai"


def for_model(message: Message) -> bool:
    """Whether a message is part of the dialogue the model sees (illustrations are not)."""
    return message.meta.get("kind") not in NOT_SENT_KINDS


def send(ctx: ChatContext, conversation_id: str, text: str) -> Reply:
    """Save the user's message, then return the (not yet started) reply stream."""
    text = text.strip()
    if not text:
        raise errors.InvalidInputError("The message is empty.")
    conv = ctx.store.get(ctx.workspace, conversation_id)
    ctx.store.add_message(ctx.workspace, conv.id, Message(role="user", content=text))
    return Reply(ctx, conv)


def regenerate(ctx: ChatContext, conversation_id: str) -> Reply:
    """Drop the last reply (keeping it as an alternative) and answer the last question again."""
    conv = ctx.store.get(ctx.workspace, conversation_id)
    last = ctx.store.recent_messages(ctx.workspace, conv.id, 1)
    previous: list[str] = []
    if last and not for_model(last[0]):
        raise errors.InvalidInputError(
            "The last message is an illustration, not a reply: send a new message instead."
        )
    if last and last[0].role == "assistant":
        previous = [*last[0].meta.get("alternatives", [last[0].content])]
        ctx.store.delete_messages_from(ctx.workspace, conv.id, last[0].id)
    if not ctx.store.recent_messages(ctx.workspace, conv.id, 1):
        raise errors.InvalidInputError("There is no message to answer yet.")
    return Reply(ctx, conv, earlier_versions=previous)


def edit_last_user_message(ctx: ChatContext, conversation_id: str, text: str) -> Reply:
    """Replace the last user message (and what followed it) with `text`, and resend."""
    conv = ctx.store.get(ctx.workspace, conversation_id)
    recent = ctx.store.recent_messages(ctx.workspace, conv.id, 2)
    users = [m for m in recent if m.role == "user"]
    if not users:
        raise errors.InvalidInputError("There is no message to edit.")
    ctx.store.delete_messages_from(ctx.workspace, conv.id, users[-1].id)
    return send(ctx, conv.id, text)


def prepare(
    ctx: ChatContext, conv: Conversation, *, shrink: bool = False
) -> tuple[list[dict[str, str]], TrimResult, Counter]:
    """The API messages for the next reply, and how the history was trimmed."""
    counter = counter_for(conv.model)
    rounds = conv.params.memory_rounds
    recent = ctx.store.recent_messages(ctx.workspace, conv.id, 2 * rounds + 1)
    _cache_counts(ctx, conv, recent, counter)
    *history, new = [m for m in recent if for_model(m)]
    window = context_window(conv.model, conv.params.context_window)
    reserve = output_reserve(window, conv.params.max_tokens)
    system_tokens = counter.count_message(conv.system_prompt) if conv.system_prompt else 0
    trim = trim_to_budget(
        history,
        system_tokens=system_tokens,
        new_tokens=new.tokens or 0,
        max_rounds=rounds,
        context_window=window,
        output_budget=reserve,
    )
    # Count what was left out of the whole conversation, not just of the loaded window.
    earlier = ctx.store.count_messages(ctx.workspace, conv.id) - len(recent)
    trim = dataclasses.replace(trim, dropped=trim.dropped + earlier)
    kept = trim.kept
    if shrink and kept:
        # The server said the prompt was too long: its real window is smaller than ours.
        kept = kept[len(kept) // 2 :]
        while kept and kept[0].role != "user":
            kept = kept[1:]
        trim = dataclasses.replace(
            trim,
            kept=kept,
            history_tokens=sum(m.tokens or 0 for m in kept),
            dropped=trim.dropped + len(trim.kept) - len(kept),
        )
    messages = [{"role": "system", "content": conv.system_prompt}] if conv.system_prompt else []
    messages += [{"role": m.role, "content": m.content} for m in [*kept, new]]
    return messages, trim, counter


def _cache_counts(
    ctx: ChatContext, conv: Conversation, messages: list[Message], counter: Counter
) -> None:
    fresh = []
    for m in messages:
        if m.tokens is None or m.tokens_encoding != counter.name:
            m.tokens = counter.count_message(m.content)
            m.tokens_encoding = counter.name
            fresh.append((m.id, m.tokens, counter.name))
    if fresh:
        ctx.store.cache_token_counts(ctx.workspace, conv.id, fresh)


def request_options(conv: Conversation, provider: str) -> dict[str, Any]:
    """Only what differs from the API defaults, so strict models and servers accept it."""
    p = conv.params
    options: dict[str, Any] = {}
    if p.temperature != 1.0:
        options["temperature"] = p.temperature
    if p.top_p != 1.0:
        options["top_p"] = p.top_p
    if p.max_tokens:
        key = "max_completion_tokens" if provider in COMPLETION_TOKENS_PROVIDERS else "max_tokens"
        options[key] = p.max_tokens
    if p.stop:
        options["stop"] = p.stop
    if p.n > 1:
        options["n"] = p.n
    return options


class Reply:
    """An assistant reply as an iterator of text chunks (choice 0 when n > 1).

    After iteration, or after `close()`, `message` is the saved assistant message.
    """

    def __init__(
        self, ctx: ChatContext, conv: Conversation, earlier_versions: list[str] | None = None
    ) -> None:
        self.ctx = ctx
        self.conv = conv
        self.earlier_versions = earlier_versions or []
        self.trim: TrimResult | None = None
        self.message: Message | None = None
        self.started_at = time.perf_counter()
        self.first_token_at: float | None = None
        self._texts: dict[int, str] = {}
        self._usage: Any = None
        self._finish: dict[int, str | None] = {}
        self._stream: Any = None
        self._counter: Counter | None = None
        self._done = False

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._run()
        finally:
            # Also runs when the consumer stops early (GeneratorExit): keep the partial text.
            self.close()

    def _run(self) -> Iterator[str]:
        self._open()
        try:
            for chunk in self._stream:
                if chunk.usage is not None:
                    self._usage = chunk.usage
                for choice in chunk.choices:
                    piece = choice.delta.content or ""
                    self._texts[choice.index] = self._texts.get(choice.index, "") + piece
                    if choice.finish_reason:
                        self._finish[choice.index] = choice.finish_reason
                    if choice.index == 0 and piece:
                        if self.first_token_at is None:
                            self.first_token_at = time.perf_counter()
                        yield piece
        except (openai.APIError, *TRANSPORT_ERRORS) as exc:
            log.warning("stream interrupted: %s", type(exc).__name__)
            self._save(status="interrupted")
            raise errors.StreamInterrupted(
                "The connection dropped in the middle of the reply."
            ) from exc
        self._save(status="ok")

    def _open(self) -> None:
        request: dict[str, Any] = dict(
            model=self.conv.model,
            stream=True,
            stream_options={"include_usage": True},
            **request_options(self.conv, self.ctx.provider),
        )
        for attempt in (0, 1):
            messages, self.trim, self._counter = prepare(self.ctx, self.conv, shrink=attempt > 0)
            try:
                with provider_errors():
                    self._stream = self.ctx.client.chat.completions.create(
                        messages=messages, **request
                    )
                return
            except errors.ContextTooLong:
                if attempt == 1 or not self.trim.kept:
                    raise

    def close(self) -> None:
        """Stop the reply: close the HTTP stream and save what arrived, marked stopped."""
        if self._stream is not None:
            self._stream.close()
        if not self._done and self._stream is not None:
            self._save(status="stopped")

    @property
    def text(self) -> str:
        return self._texts.get(0, "")

    def _save(self, status: str) -> None:
        if self._done:
            return
        self._done = True
        texts = [self._texts.get(i, "") for i in range(max(self._texts, default=0) + 1)]
        if not any(texts) and status == "interrupted":
            return  # nothing arrived: the error message is enough, no empty bubble
        meta: dict[str, Any] = {"finish_reason": self._finish.get(0)}
        alternatives = (
            self.earlier_versions + texts if len(texts) > 1 or self.earlier_versions else []
        )
        if alternatives:
            meta["alternatives"] = alternatives
            meta["chosen"] = len(self.earlier_versions)
        if self.first_token_at is not None:
            meta["first_token_s"] = round(self.first_token_at - self.started_at, 3)
        message = Message(
            role="assistant", content=texts[0], status=status, model=self.conv.model, meta=meta
        )
        self._account(message, texts)
        self.message = self.ctx.store.add_message(self.ctx.workspace, self.conv.id, message)

    def _account(self, message: Message, texts: list[str]) -> None:
        counter = self._counter or counter_for(self.conv.model)
        message.tokens = counter.count_message(message.content)
        message.tokens_encoding = counter.name
        if self._usage is not None:
            message.prompt_tokens = self._usage.prompt_tokens
            message.completion_tokens = self._usage.completion_tokens
            message.usage_exact = True
            message.meta["usage_source"] = "api"
        else:
            message.prompt_tokens = self.trim.prompt_tokens if self.trim else None
            message.completion_tokens = sum(counter.count(t) for t in texts) + TOKENS_PER_REPLY
            message.usage_exact = counter.exact
            message.meta["usage_source"] = "tiktoken" if counter.exact else "estimate"
        if self.trim is not None:
            window = context_window(self.conv.model, self.conv.params.context_window)
            message.meta["context"] = {
                "system": self.trim.system_tokens,
                "history": self.trim.history_tokens,
                "new": self.trim.new_tokens,
                "dropped": self.trim.dropped,
                "window": window,
            }
        message.cost = self.ctx.prices.cost(
            self.conv.model,
            message.prompt_tokens or 0,
            message.completion_tokens or 0,
            provider=self.ctx.provider,
        )


def choose_alternative(ctx: ChatContext, conversation_id: str, message_id: int, index: int) -> None:
    """Make alternative `index` of an n > 1 reply the one the conversation continues from."""
    for message in ctx.store.recent_messages(ctx.workspace, conversation_id, 2):
        if message.id == message_id:
            alternatives = message.meta.get("alternatives") or []
            if not 0 <= index < len(alternatives):
                raise errors.InvalidInputError("There is no such alternative.")
            message.content = alternatives[index]
            message.meta["chosen"] = index
            message.tokens = None
            ctx.store.update_message(ctx.workspace, conversation_id, message)
            return
    raise errors.InvalidInputError("Only the latest reply's alternatives can be chosen.")
