"""The conversation's domain objects: parameters, messages, conversations, search hits,
sibling versions and totals. Plain dataclasses with no storage in them;
`lib/conversations.py` persists them, and `from_row` reads a row of either backend
(anything `dict(row)` turns into columns).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any

from lib.errors import InvalidInputError


@dataclass
class ChatParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    memory_rounds: int = 10
    context_window: int | None = None  # overrides the model catalogue, e.g. for local models

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validate(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise InvalidInputError("Temperature must be between 0 and 2.")
        if not 0 < self.top_p <= 1:
            raise InvalidInputError("top_p must be above 0 and at most 1.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidInputError("Max output tokens must be at least 1.")
        if not 1 <= self.n <= 8:
            raise InvalidInputError("n must be between 1 and 8.")
        if len(self.stop) > 4:
            raise InvalidInputError("At most 4 stop sequences are allowed.")
        if self.memory_rounds < 0:
            raise InvalidInputError("The memory window cannot be negative.")


@dataclass
class Message:
    role: str
    content: str
    # ok | streaming (still arriving) | stopped (by the user) | interrupted (cut off) |
    # truncated (at the size cap) | failed (no usable reply; meta["error"] says why)
    status: str = "ok"
    model: str | None = None
    tokens: int | None = None  # cached count of `content`, in `tokens_encoding`
    tokens_encoding: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_exact: bool = False  # True when the counts came from the API's usage
    cost: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    id: int | None = None
    # The message before this one on its path (None for a first message). Set by the store
    # when the message is added; a conversation is a tree of these (`lib/conversations.py`).
    parent_id: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> Message:
        data = dict(row)
        data.pop("conversation_id", None)
        data["meta"] = json.loads(data["meta"] or "{}")
        data["usage_exact"] = bool(data["usage_exact"])
        return cls(**data)


@dataclass
class Conversation:
    id: str
    workspace: str
    title: str
    model: str
    system_prompt: str = ""
    params: ChatParams = field(default_factory=ChatParams)
    kind: str = "chat"
    created_at: float = 0.0
    updated_at: float = 0.0
    pinned: bool = False  # kept at the top of the conversation list
    leaf_id: int | None = None  # the last message of the path shown and sent (None: empty)
    folder: str | None = None  # the one folder it is in, by name (None: no folder)

    @classmethod
    def from_row(cls, row: Any) -> Conversation:
        data = dict(row)
        data["params"] = ChatParams.from_dict(json.loads(data["params"] or "{}"))
        data["pinned"] = bool(data.get("pinned"))  # SQLite stores 0 or 1
        return cls(**data)


@dataclass(frozen=True)
class Folder:
    name: str
    count: int  # conversations in it


@dataclass(frozen=True)
class SearchHit:
    conversation_id: str
    title: str
    snippet: str
    updated_at: float
    message_id: int | None = None  # the message matched (maybe on a branch not shown)


@dataclass(frozen=True)
class Siblings:
    """The versions of one message on the path: the ids of every message with the same
    parent, oldest first, and which of them the path takes ("‹ 2/3 ›" is index 1 of 3)."""

    ids: tuple[int, ...]
    index: int

    def __len__(self) -> int:
        return len(self.ids)

    def step(self, by: int) -> int | None:
        """The sibling `by` places away (-1 the one before), or None past either end."""
        at = self.index + by
        return self.ids[at] if 0 <= at < len(self.ids) else None


@dataclass(frozen=True)
class Totals:
    prompt_tokens: int
    completion_tokens: int
    cost: float
    replies: int
    unpriced: int = 0  # replies whose cost is unknown (model missing from the price table)
