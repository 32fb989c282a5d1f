"""The prompt for the next reply: which messages are sent, and with which options.

The history is the recent window of the conversation's path that ends at the message
being answered (`ConversationStore.recent_messages`: a branch's other versions are never
sent), without records (illustrations) or
failed replies, trimmed to the memory setting and the model's context (`lib.memory`);
token counts are cached on the messages, so no message is counted twice.

The counter and the window come from `ChatContext.server` (`lib.server.facts`): the
server's own tokenizer and window where it has them. Trimming fills the window the
server states, the conversation's override, or `UNKNOWN_WINDOW` when neither says, less
a margin when counts are estimates (`lib.server.window.trim_window`), divided by what
overflow errors showed of the server's tokens per counted token (`lib.server.overflow`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lib.conversations import Conversation, Message
from lib.memory import TrimResult, output_reserve, trim_to_budget
from lib.server.overflow import Fit
from lib.server.tokenizer import TokenCounter
from lib.server.window import ContextWindow, trim_window
from lib.tokens import TOKENS_PER_REPLY

if TYPE_CHECKING:
    from lib.chat import ChatContext

# Providers that want `max_completion_tokens`; other servers still expect `max_tokens`.
COMPLETION_TOKENS_PROVIDERS = {"openai", "azure"}
MIN_REPLY_SHARE = 16  # a long message may leave as little as 1/16 of the window for the reply
# Messages Parley adds to a conversation that are records, not dialogue: an illustration
# is shown in the transcript but its prompt text is not a reply the model gave.
NOT_SENT_KINDS = {"illustration"}


def is_record(message: Message) -> bool:
    """Whether a message is a record Parley added (an illustration), not dialogue."""
    return message.meta.get("kind") in NOT_SENT_KINDS


def for_model(message: Message) -> bool:
    """Whether a message is part of the dialogue the model sees (records, failed replies
    and empty ones are not; files alone are a message)."""
    said = bool(message.content or message.meta.get("attachments"))
    return not is_record(message) and message.status != "failed" and said


@dataclass(frozen=True)
class Limit:
    """The window trimming fills, in the counter's tokens, and where it comes from."""

    window: ContextWindow  # what is known of the model's window
    tokens: int  # what trimming fills (`trim_window`, after the conversation's override)
    override: int | None = None  # the conversation's own figure
    fit: Fit = Fit()  # what overflow errors taught

    @property
    def shown(self) -> int:
        """The window as the gauge shows it: the override, the server's, or the assumed."""
        return self.override or self.window.for_trimming


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]  # as sent (a content with images is a list of parts)
    trim: TrimResult
    counter: TokenCounter
    limit: Limit
    end: int | None = None  # the id of the path's last message: what the reply follows


def trim_limit(
    ctx: ChatContext, conv: Conversation, counter: TokenCounter, fit: Fit | None = None
) -> Limit:
    """The window trimming fills for `conv`'s model, in `counter`'s tokens; `fit` is what
    this reply's overflow taught, else what the server's last one did."""
    fit = fit or Fit(scale=ctx.server.scale(conv.model))
    window = ctx.server.window(conv.model)
    caps = [c for c in (conv.params.context_window, fit.cap) if c]
    override = min(caps) if caps else None
    tokens = trim_window(window, counts_exact=counter.exact, override=override)
    return Limit(window, int(tokens / fit.scale), conv.params.context_window, fit)


def prepare(
    ctx: ChatContext,
    conv: Conversation,
    *,
    shrink: bool = False,
    system: str | None = None,
    fit: Fit | None = None,
    end: int | None = None,
) -> Prompt:
    """The API messages for the next reply, and how the history was trimmed.

    `end` is the message the reply follows (by default the end of the path shown).
    `system` replaces the conversation's system prompt (a document answer's sources);
    `shrink` halves the history that fits; `fit` is what an overflow error taught."""
    system_prompt = conv.system_prompt if system is None else system
    counter = ctx.server.counter(conv.model)
    rounds = conv.params.memory_rounds
    recent, path_length = ctx.store.window(conv.id, 2 * rounds + 1, end=end)
    _cache_counts(ctx, conv, recent, counter)
    # Attached files count towards their message and go with it (`lib.chat.attachments`).
    files = ctx.attachments.for_prompt(recent, conv.model, ctx.accepts_images, counter.count)
    *history, new = [files.counted(m) for m in recent if for_model(m)]
    limit = trim_limit(ctx, conv, counter, fit)
    system_tokens = counter.count_message(system_prompt) if system_prompt else 0
    trim = trim_to_budget(
        history,
        system_tokens=system_tokens,
        new_tokens=new.tokens or 0,
        max_rounds=rounds,
        context_window=limit.tokens,
        output_budget=_reserve(
            limit.tokens, conv.params.max_tokens, system_tokens + (new.tokens or 0)
        ),
    )
    # Count what was left out of the whole path, not just of the loaded window.
    earlier = path_length - len(recent)
    trim = dataclasses.replace(trim, dropped=trim.dropped + earlier)
    if shrink and trim.kept:
        trim = _halved(trim)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages += [{"role": m.role, "content": files.content(m)} for m in [*trim.kept, new]]
    return Prompt(messages, trim, counter, limit, recent[-1].id if recent else end)


def _reserve(window: int, max_tokens: int | None, prompt: int) -> int:
    """Room kept for the reply (`output_reserve`). With no max_tokens set, a message too
    long for the usual share keeps less, down to `MIN_REPLY_SHARE` of the window, rather
    than be refused: a small local window need not refuse what the server would take."""
    reserve = output_reserve(window, max_tokens)
    if max_tokens:
        return reserve
    return max(min(reserve, window - prompt - TOKENS_PER_REPLY), window // MIN_REPLY_SHARE)


def _halved(trim: TrimResult) -> TrimResult:
    """The newer half of the kept history, starting with a question."""
    kept = trim.kept[len(trim.kept) // 2 :]
    while kept and kept[0].role != "user":
        kept = kept[1:]
    return dataclasses.replace(
        trim,
        kept=kept,
        history_tokens=sum(m.tokens or 0 for m in kept),
        dropped=trim.dropped + len(trim.kept) - len(kept),
    )


def _cache_counts(
    ctx: ChatContext, conv: Conversation, messages: list[Message], counter: TokenCounter
) -> None:
    fresh = []
    for m in messages:
        if m.tokens is None or m.tokens_encoding != counter.name:
            m.tokens = counter.count_message(m.content)
            m.tokens_encoding = counter.name
            fresh.append((m.id, m.tokens, counter.name))
    if fresh:
        ctx.store.cache_token_counts(conv.id, fresh)


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
