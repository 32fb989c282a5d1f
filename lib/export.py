"""Exporting a conversation as Markdown or JSON (including any citations in its messages,
and the files attached to them: `AttachmentStore.export_entries`, by message id; JSON can
carry each file's bytes as base64, Markdown names them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime

from lib.conversations import Conversation, Message

# 2: a conversation is a tree. JSON holds every message with its `id` and `parent_id`, and
# `leaf_id` the end of the path shown; Markdown holds that path only (pass `store.path`).
# Since folders, JSON also holds `folder` (a name, or null), `pinned` and `updated_at`, which
# Parley's importer puts back (lib/history/apps.py); older readers ignore them. Since the
# workspace round trip, each message also holds `meta` (but `_LOCAL_META`), its cached
# `tokens` with their `tokens_encoding`, and `usage_exact`; `citations` and `images` stay
# beside it for readers of the older shape.
EXPORT_VERSION = 2


# Meta that means something only here: attachments' ids and a streaming reply's process
# (lib/inflight.py: host, pid), which has no place in a file given to someone. (The same
# as lib/history/parley_meta.LOCAL, which the importer drops; lib/ does not import
# lib/history from here.)
_LOCAL_META = ("attachments", "owner")
Files = Mapping[int, list[dict]]  # message id -> its attachments, as exported


def to_json(conv: Conversation, messages: list[Message], files: Files | None = None) -> str:
    files = files or {}
    data = {
        "parley_export": EXPORT_VERSION,
        "id": conv.id,
        "title": conv.title,
        "kind": conv.kind,
        "model": conv.model,
        "system_prompt": conv.system_prompt,
        "params": asdict(conv.params),
        "created_at": _iso(conv.created_at),
        "updated_at": _iso(conv.updated_at),
        "folder": conv.folder,
        "pinned": conv.pinned,
        "leaf_id": conv.leaf_id,
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "model": m.model,
                "created_at": _iso(m.created_at),
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "usage_exact": m.usage_exact,
                "cost": m.cost,
                "tokens": m.tokens,
                "tokens_encoding": m.tokens_encoding,
                "meta": {k: v for k, v in m.meta.items() if k not in _LOCAL_META},
                **({"citations": m.meta["citations"]} if m.meta.get("citations") else {}),
                **({"images": m.meta["images"]} if m.meta.get("images") else {}),
                **({"attachments": files[m.id]} if files.get(m.id) else {}),
            }
            for m in messages
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


def to_markdown(conv: Conversation, messages: list[Message], files: Files | None = None) -> str:
    files = files or {}
    lines = [f"# {conv.title}", "", f"*Model: {conv.model} · exported from Parley*", ""]
    if conv.system_prompt:
        lines += ["> **System:** " + conv.system_prompt.replace("\n", "\n> "), ""]
    for m in messages:
        label = {"user": "You", "assistant": "Assistant"}.get(m.role, m.role.title())
        suffix = f" *({m.status})*" if m.status != "ok" else ""
        lines += [f"## {label}{suffix}", "", m.content, ""]
        attached = [_attached(f) for f in files.get(m.id) or []]
        if attached:
            lines += [f"Attached: {', '.join(attached)}", ""]
        cited = [
            (cite.get("n", i), cite)
            for i, cite in enumerate(m.meta.get("citations") or [], start=1)
            if cite.get("cited", True)  # retrieved but unused sources stay in the JSON only
        ]
        lines += [f"[{n}] {_where(cite)}" for n, cite in cited]
        if cited:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def filename(conv: Conversation, extension: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_ " else "" for c in conv.title).strip()
    return f"{safe.replace(' ', '-')[:40] or 'conversation'}.{extension}"


def _where(cite: dict) -> str:
    """'file.pdf, page 12' for PDFs, 'notes.md, lines 3–9' for text files."""
    if cite.get("page") is not None:
        return f"{cite.get('file', '?')}, page {cite['page']}"
    if cite.get("label"):
        return f"{cite.get('file', '?')}, {cite['label']}"
    return str(cite.get("file", "?"))


def _attached(entry: dict) -> str:
    """`photo.png (image, 52 KB)`: the name in a code span, where nothing in it renders."""
    name = str(entry.get("name", "?")).replace("`", "'")
    size = entry.get("size") or 0
    shown = f"{size / 1024:.0f} KB" if size < 1_048_576 else f"{size / 1_048_576:.1f} MB"
    return f"`{name}` ({entry.get('kind', 'file')}, {shown})"


def _iso(ts: float) -> str:
    """To the millisecond: a re-import keeps the list's order (to the second, chats made a
    moment apart would tie)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
