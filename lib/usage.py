"""How a reply's tokens and cost read, the same in the web app and the terminal."""

from __future__ import annotations

from lib.conversations import Message


def money(cost: float | None) -> str:
    if cost is None:
        return "cost unknown"
    if cost == 0:
        return "$0"
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


def usage_line(message: Message, *, with_model: bool = False) -> str:
    """Tokens and cost of one reply; "≈" marks counts estimated offline, not exact."""
    approx = "" if message.usage_exact else "≈"
    parts = []
    if message.prompt_tokens is not None:
        parts.append(
            f"{approx}{message.prompt_tokens:,} in · "
            f"{approx}{message.completion_tokens or 0:,} out tokens"
        )
    parts.append(money(message.cost))
    if with_model and message.model:
        parts.append(message.model)
    if not message.usage_exact:
        parts.append("estimated count")
    return " · ".join(parts)
