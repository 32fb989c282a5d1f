"""The prompt for the next reply: which messages are sent, and with which options.

The history is the conversation's recent window, without records (illustrations) or
failed replies, trimmed to the memory setting and the model's context (`lib.memory`);
token counts are cached on the messages, so no message is counted twice.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from lib.conversations import Conversation, Message
from lib.memory import TrimResult, output_reserve, trim_to_budget
from lib.models import context_window
from lib.tokens import Counter, counter_for

if TYPE_CHECKING:
    from lib.chat import ChatContext

# Providers that want `max_completion_tokens`; other servers still expect `max_tokens`.
COMPLETION_TOKENS_PROVIDERS = {"openai", "azure"}
# Messages Parley adds to a conversation that are records, not dialogue: an illustration
# is shown in the transcript but its prompt text is not a reply the model gave.
NOT_SENT_KINDS = {"illustration"}


def is_record(message: Message) -> bool:
    """Whether a message is a record Parley added (an illustration), not dialogue."""
    return message.meta.get("kind") in NOT_SENT_KINDS


def for_model(message: Message) -> bool:
    """Whether a message is part of the dialogue the model sees (records, failed replies
    and empty ones are not)."""
    return not is_record(message) and message.status != "failed" and bool(message.content)


def prepare(
    ctx: ChatContext, conv: Conversation, *, shrink: bool = False, system: str | None = None
) -> tuple[list[dict[str, str]], TrimResult, Counter]:
    """The API messages for the next reply, and how the history was trimmed.

    `system` replaces the conversation's system prompt (a document answer's sources)."""
    system_prompt = conv.system_prompt if system is None else system
    counter = counter_for(conv.model)
    rounds = conv.params.memory_rounds
    recent = ctx.store.recent_messages(ctx.workspace, conv.id, 2 * rounds + 1)
    _cache_counts(ctx, conv, recent, counter)
    *history, new = [m for m in recent if for_model(m)]
    window = context_window(conv.model, conv.params.context_window)
    reserve = output_reserve(window, conv.params.max_tokens)
    system_tokens = counter.count_message(system_prompt) if system_prompt else 0
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
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
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
