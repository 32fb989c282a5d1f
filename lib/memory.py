"""Which part of a conversation's history goes into the next request.

Two limits apply, in order: the user's memory window (keep the last N rounds, as the
original tutorials did with `num_of_round`), then the model's context window minus the
output budget. History is dropped oldest-first in whole rounds, so the model never sees
a reply without the question it answered. Token counts are read from the messages
(cached in the database), never recounted here, which keeps trimming O(kept messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lib.conversations import Message
from lib.errors import ContextTooLong
from lib.tokens import TOKENS_PER_REPLY


@dataclass(frozen=True)
class TrimResult:
    kept: list[Message]  # the history that goes into the request, oldest first
    system_tokens: int
    history_tokens: int
    new_tokens: int
    dropped: int  # earlier messages left out, of those considered
    budget: int  # tokens available for the prompt

    @property
    def prompt_tokens(self) -> int:
        return self.system_tokens + self.history_tokens + self.new_tokens + TOKENS_PER_REPLY


def output_reserve(context_window: int, max_tokens: int | None) -> int:
    """Tokens kept free for the reply: max_tokens if set, else a share of the window."""
    if max_tokens:
        return max_tokens
    return min(4096, context_window // 4)


def trim_to_budget(
    history: Sequence[Message],
    *,
    system_tokens: int,
    new_tokens: int,
    max_rounds: int,
    context_window: int,
    output_budget: int,
) -> TrimResult:
    """Keep the most recent whole rounds of `history` that fit both limits.

    `history` is the conversation before the new user message, each message with
    `tokens` already counted (including per-message overhead).
    """
    budget = context_window - output_budget - TOKENS_PER_REPLY
    if system_tokens + new_tokens > budget:
        raise ContextTooLong(
            f"The message and system prompt need {system_tokens + new_tokens:,} tokens, but "
            f"only {max(budget, 0):,} fit in this model's context after reserving "
            f"{output_budget:,} for the reply."
        )
    room = budget - system_tokens - new_tokens
    used = 0
    start = len(history)
    rounds = 0
    pending = 0  # tokens of the round being read, not yet committed
    index = len(history) - 1
    while index >= 0 and rounds < max_rounds:
        message = history[index]
        pending += message.tokens or 0
        if message.role == "user" or index == 0:
            if used + pending > room:
                break
            used += pending
            pending = 0
            start = index
            rounds += 1
        index -= 1
    kept = list(history[start:])
    return TrimResult(
        kept=kept,
        system_tokens=system_tokens,
        history_tokens=used,
        new_tokens=new_tokens,
        dropped=len(history) - len(kept),
        budget=budget,
    )
