"""The conversation list's sections: Pinned, then by the date of last use, as ChatGPT
and Open WebUI group theirs (Today, Yesterday, Previous 7 days, Previous 30 days, then one
section per month, newest first).

Dates are the user's calendar dates: `now` carries the browser's time zone, and each
conversation's `updated_at` (seconds since the epoch) is read in that zone, so a chat at
23:30 in Auckland is "Today" there even while it is already tomorrow in UTC. `now` is a
parameter, so tests set the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lib.conversation import Conversation

PINNED = "Pinned"
TODAY = "Today"
YESTERDAY = "Yesterday"
WEEK = "Previous 7 days"
MONTH = "Previous 30 days"


@dataclass
class Section:
    title: str
    conversations: list[Conversation] = field(default_factory=list)


def section_of(updated: date, today: date) -> str:
    """The section a conversation last used on `updated` belongs in, seen on `today`."""
    days = (today - updated).days
    if days <= 0:  # today, or a clock a little ahead of the browser's
        return TODAY
    if days == 1:
        return YESTERDAY
    if days <= 7:
        return WEEK
    if days <= 30:
        return MONTH
    return f"{updated:%B %Y}"


def group(conversations: Iterable[Conversation], now: datetime) -> list[Section]:
    """Sections in the order shown: pinned first, then as the conversations come (the store
    lists them pinned first, then newest first), each section once."""
    today = now.date()
    sections: dict[str, Section] = {}
    for conv in conversations:
        if conv.pinned:
            title = PINNED
        else:
            title = section_of(datetime.fromtimestamp(conv.updated_at, now.tzinfo).date(), today)
        sections.setdefault(title, Section(title)).conversations.append(conv)
    ordered = sorted(sections.values(), key=lambda s: s.title != PINNED)  # stable
    return ordered


def zone(name: str | None) -> ZoneInfo | None:
    """The browser's time zone by its IANA name, or None (the server's) when it sent none
    or one this system does not know."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
