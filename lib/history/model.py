"""What an export holds, whichever app wrote it: conversations as trees of messages.

Every app keeps a conversation as a tree (ChatGPT's `mapping`, Open WebUI's
`history.messages`, LibreChat's `parentMessageId`), with one leaf marking the path shown.
`ImportedConversation.messages` lists each message after its parent; `current` is the
leaf. `fingerprint` hashes what a person would call the same conversation (its messages'
roles and texts along every branch, and its title), so a second import of the same export,
or of a later export of the same account, is recognised even where the app's ids are
missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("user", "assistant", "system")


@dataclass
class ImportedMessage:
    key: str  # the message's id in the source (or its position)
    parent: str | None
    role: str
    content: str
    created_at: float | None = None
    model: str | None = None
    files: list[str] = field(default_factory=list)  # names of images and files it refers to
    inline: dict[str, bytes] = field(default_factory=dict)  # files carried in the JSON itself
    # What else Parley's own export says of the message, as `Message` fields (status, meta,
    # token counts, cost): put back as they were. Empty for every other app.
    kept: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportedConversation:
    app: str  # chatgpt | openwebui | librechat | parley
    source_id: str
    title: str
    messages: list[ImportedMessage]
    current: str | None = None  # the leaf of the path the source showed
    created_at: float | None = None
    updated_at: float | None = None
    model: str | None = None
    system_prompt: str = ""
    folder: str | None = None
    pinned: bool = False
    kind: str = "chat"  # Parley's: "documents" for a chat with the library
    params: dict[str, Any] = field(default_factory=dict)  # Parley's `ChatParams`, as saved

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps([self.app, self.title]).encode())
        for m in self.messages:
            digest.update(json.dumps([m.key, m.parent, m.role, m.content]).encode())
        return digest.hexdigest()

    def path(self) -> list[ImportedMessage]:
        """The messages from the root to `current` (or to the newest leaf)."""
        by_key = {m.key: m for m in self.messages}
        leaf = by_key.get(self.current or "") or self.newest_leaf()
        path = []
        while leaf is not None:
            path.append(leaf)
            leaf = by_key.get(leaf.parent or "")
        return path[::-1]

    def newest_leaf(self) -> ImportedMessage | None:
        parents = {m.parent for m in self.messages}
        leaves = [m for m in self.messages if m.key not in parents]
        if not leaves:
            return None
        return max(enumerate(leaves), key=lambda p: (p[1].created_at or 0.0, p[0]))[1]

    def branched(self) -> bool:
        parents = [m.parent for m in self.messages]
        return len(parents) != len(set(parents))
