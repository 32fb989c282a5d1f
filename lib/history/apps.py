"""Each app's export, one conversation at a time, into `ImportedConversation`.

`parse(item)` takes one conversation as the app wrote it (a JSON object) and tells the
app by its shape:
- **ChatGPT** (`conversations.json`, or the newer `conversations-000.json`... files):
  `mapping` is a tree of nodes `{id, message, parent, children}` and `current_node` its
  shown leaf. Hidden system nodes, tool calls and their output, and the model's thoughts
  are left out, and their children hang from the nearest message kept. Image parts
  (`image_asset_pointer`) become file names looked for in the zip.
- **Open WebUI** (Settings > Chats > Export): `chat.history.messages` keyed by id with
  `parentId`, `chat.history.currentId` the leaf; timestamps in seconds (or milliseconds).
- **LibreChat** (a conversation's Export, JSON): `messages` with `parentMessageId`, or a
  nested `messagesTree` of `children`; the root parent is the all-zeros UUID.
- **Parley** (`lib/export.py`'s JSON): `parley_export` and `messages`, each with `id` and
  `parent_id` since branches (version 2); version 1's flat list is one path.

A conversation of an unknown shape, or one that has no message left, raises
`UnreadableExport` with the reason; the importer counts it as failed and goes on.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from lib.errors import UnreadableExport
from lib.history.model import ROLES, ImportedConversation, ImportedMessage
from lib.history.parley_meta import checked_meta

LIBRECHAT_ROOT = "00000000-0000-0000-0000-000000000000"


def parse(item: Any) -> ImportedConversation:
    if not isinstance(item, dict):
        raise UnreadableExport("A conversation in this export is not a JSON object.")
    if "mapping" in item:
        conv = _chatgpt(item)
    elif isinstance(item.get("chat"), dict):
        conv = _openwebui(item)
    elif "conversationId" in item and ("messages" in item or "messagesTree" in item):
        conv = _librechat(item)
    elif "parley_export" in item:
        conv = _parley(item)
    else:
        keys = ", ".join(sorted(map(str, item))[:6]) or "none"
        raise UnreadableExport(
            "This is not an export from ChatGPT, Open WebUI, LibreChat or Parley "
            f"(a conversation with the keys {keys})."
        )
    if not conv.messages:
        raise UnreadableExport(f"“{conv.title}” has no messages to import.")
    return conv


# ChatGPT

_CHATGPT_SKIPPED = {"tool"}  # tool calls' output; the reply that used it is kept


def _chatgpt(item: dict) -> ImportedConversation:
    mapping = item.get("mapping")
    if not isinstance(mapping, dict):
        raise UnreadableExport("A ChatGPT conversation has no message tree (`mapping`).")
    kept: dict[str, ImportedMessage] = {}
    nearest: dict[str, str | None] = {}  # node id -> the nearest kept node at or above it
    for node_id in _chatgpt_order(mapping):
        node = mapping[node_id]
        parent = node.get("parent")
        above = nearest.get(parent) if parent is not None else None
        message = _chatgpt_message(node_id, node.get("message"), above)
        if message is not None:
            kept[node_id] = message
            nearest[node_id] = node_id
        else:
            nearest[node_id] = above
    current = item.get("current_node")
    return ImportedConversation(
        app="chatgpt",
        source_id=str(item.get("conversation_id") or item.get("id") or ""),
        title=_title(item.get("title")),
        messages=list(kept.values()),
        current=nearest.get(current) if isinstance(current, str) else None,
        created_at=_seconds(item.get("create_time")),
        updated_at=_seconds(item.get("update_time")),
        model=item.get("default_model_slug") or None,
    )


def _chatgpt_order(mapping: dict) -> list[str]:
    """Node ids, each after its parent (roots first; a cycle or a dangling parent ends
    that walk rather than loop)."""
    children: dict[str | None, list[str]] = {}
    for node_id, node in mapping.items():
        parent = node.get("parent") if isinstance(node, dict) else None
        children.setdefault(parent if parent in mapping else None, []).append(node_id)
    order, seen, stack = [], set(), list(reversed(children.get(None, [])))
    while stack:
        node_id = stack.pop()
        if node_id in seen or not isinstance(mapping.get(node_id), dict):
            continue
        seen.add(node_id)
        order.append(node_id)
        stack.extend(reversed(children.get(node_id, [])))
    return order


def _chatgpt_message(node_id: str, message: Any, parent: str | None) -> ImportedMessage | None:
    if not isinstance(message, dict):
        return None
    role = (message.get("author") or {}).get("role")
    metadata = message.get("metadata") or {}
    if role not in ROLES or role in _CHATGPT_SKIPPED:
        return None
    if metadata.get("is_visually_hidden_from_conversation"):
        return None
    content = message.get("content") or {}
    kind = content.get("content_type")
    texts, files = [], []
    if kind in ("text", "multimodal_text"):
        for part in content.get("parts") or []:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("content_type") == "image_asset_pointer":
                files.append(_asset_name(str(part.get("asset_pointer") or "")))
    elif kind == "code" and isinstance(content.get("text"), str):
        texts.append(f"```{content.get('language') or ''}\n{content['text']}\n```")
    else:
        return None  # thoughts, reasoning recaps, browsing quotes: not the conversation
    # Files the user uploaded (a PDF, a spreadsheet) are named in the message's metadata;
    # the zip holds them as "<id>-<name>", as it holds images.
    for upload in metadata.get("attachments") or []:
        if isinstance(upload, dict) and upload.get("id"):
            files.append(str(upload["id"]))
    text = "\n\n".join(t for t in texts if t.strip())
    if not text and not files:
        return None
    return ImportedMessage(
        key=str(node_id),  # what children name as their parent (the message's id may differ)
        parent=parent,
        role=role,
        content=text,
        created_at=_seconds(message.get("create_time")),
        model=metadata.get("model_slug") or None,
        files=[f for f in files if f],
    )


def _asset_name(pointer: str) -> str:
    """`file-service://file-AbC` or `sediment://file_123` -> the id the zip's file names
    start with."""
    return pointer.split("://", 1)[-1]


# Open WebUI


def _openwebui(item: dict) -> ImportedConversation:
    chat = item["chat"]
    history = chat.get("history") or {}
    nodes = history.get("messages")
    if isinstance(nodes, dict) and nodes:
        ordered = _tree_order(nodes, lambda m: m.get("parentId"))
    else:  # an old export: the flat list only
        flat = [m for m in chat.get("messages") or [] if isinstance(m, dict)]
        ordered = [(str(m.get("id") or i), m) for i, m in enumerate(flat)]
        for i, (_, m) in enumerate(ordered):
            m.setdefault("parentId", ordered[i - 1][0] if i else None)
    messages = []
    for key, m in ordered:
        role = m.get("role")
        if role not in ROLES or not isinstance(m.get("content"), str):
            continue
        files = [
            str(f.get("name") or f.get("id") or "") for f in m.get("files") or []
            if isinstance(f, dict)
        ]  # fmt: skip
        messages.append(
            ImportedMessage(
                key=key,
                parent=m.get("parentId"),
                role=role,
                content=m["content"],
                created_at=_seconds(m.get("timestamp")),
                model=m.get("model") or None,
                files=[f for f in files if f],
            )
        )
    models = chat.get("models") or []
    return ImportedConversation(
        app="openwebui",
        source_id=str(item.get("id") or chat.get("id") or ""),
        title=_title(item.get("title") or chat.get("title")),
        messages=_reparented(messages),
        current=history.get("currentId"),
        created_at=_seconds(item.get("created_at") or chat.get("timestamp")),
        updated_at=_seconds(item.get("updated_at")),
        model=models[0] if models and isinstance(models[0], str) else None,
        system_prompt=str((chat.get("params") or {}).get("system") or chat.get("system") or ""),
        # folder_id is an opaque id: the chat export holds no folder names to put back.
        pinned=bool(item.get("pinned")),
    )


# LibreChat


def _librechat(item: dict) -> ImportedConversation:
    if isinstance(item.get("messagesTree"), list):
        flat: list[dict] = []
        stack = [(m, None) for m in reversed(item["messagesTree"])]
        while stack:
            m, parent = stack.pop()
            if not isinstance(m, dict):
                continue
            flat.append({**m, "parentMessageId": m.get("parentMessageId") or parent})
            stack.extend((c, m.get("messageId")) for c in reversed(m.get("children") or []))
    else:
        flat = [m for m in item.get("messages") or [] if isinstance(m, dict)]
    nodes = {str(m.get("messageId") or i): m for i, m in enumerate(flat)}
    ordered = _tree_order(nodes, lambda m: _librechat_parent(m.get("parentMessageId")))
    messages = []
    for key, m in ordered:
        text = m.get("text")
        if not isinstance(text, str) or not text:
            parts = m.get("content") if isinstance(m.get("content"), list) else []
            texts = [p.get("text") for p in parts if isinstance(p, dict)]
            text = "\n\n".join(t for t in texts if isinstance(t, str))
        if not text:
            continue
        user = m.get("isCreatedByUser")
        messages.append(
            ImportedMessage(
                key=key,
                parent=_librechat_parent(m.get("parentMessageId")),
                role="user" if user else "assistant",
                content=text,
                created_at=_seconds(m.get("createdAt")),
                model=None if user else (m.get("model") or None),
                files=[str(f.get("filename") or "") for f in m.get("files") or []
                       if isinstance(f, dict) and f.get("filename")],
            )
        )  # fmt: skip
    options = item.get("options") or {}
    return ImportedConversation(
        app="librechat",
        source_id=str(item.get("conversationId") or ""),
        title=_title(item.get("title")),
        messages=_reparented(messages),
        current=None,  # LibreChat keeps no shown leaf: the newest one
        created_at=_seconds(item.get("createdAt")),
        updated_at=_seconds(item.get("updatedAt") or item.get("exportAt")),
        model=options.get("model") or item.get("model") or None,
        system_prompt=str(options.get("promptPrefix") or ""),
    )  # fmt: skip


def _librechat_parent(parent: Any) -> str | None:
    return None if not parent or parent == LIBRECHAT_ROOT else str(parent)


# Parley


def _parley(item: dict) -> ImportedConversation:
    raw = [m for m in item.get("messages") or [] if isinstance(m, dict)]
    messages, previous = [], None
    for i, m in enumerate(raw):
        role = m.get("role")
        if role not in ROLES or not isinstance(m.get("content"), str):
            continue
        key = str(m.get("id") if m.get("id") is not None else f"#{i}")
        attached = _parley_attachments(m.get("attachments"))
        parent = m.get("parent_id") if "id" in m else previous
        messages.append(
            ImportedMessage(
                key=key,
                parent=None if parent is None else str(parent),
                role=role,
                content=m["content"],
                created_at=_seconds(m.get("created_at")),
                model=m.get("model") or None,
                files=[name for name, _ in attached],
                inline={name: data for name, data in attached if data is not None},
                kept=_parley_kept(m),
            )
        )
        previous = key
    leaf = item.get("leaf_id")
    return ImportedConversation(
        app="parley",
        source_id=str(item.get("id") or ""),
        title=_title(item.get("title")),
        messages=_reparented(messages),
        current=None if leaf is None else str(leaf),
        created_at=_seconds(item.get("created_at")),
        updated_at=_seconds(item.get("updated_at")),
        model=item.get("model") or None,
        system_prompt=str(item.get("system_prompt") or ""),
        folder=item.get("folder") if isinstance(item.get("folder"), str) else None,
        pinned=bool(item.get("pinned")),
        kind=item["kind"] if item.get("kind") in PARLEY_KINDS else "chat",
        params=item["params"] if isinstance(item.get("params"), dict) else {},
    )


PARLEY_KINDS = ("chat", "documents")  # lib/documents/rag.py's KIND
PARLEY_STATUSES = ("ok", "streaming", "stopped", "interrupted", "truncated", "failed")
_PARLEY_KEPT = {  # a Parley message's fields beyond its text, and the types they must have
    "status": str, "model": str, "tokens": int, "tokens_encoding": str,
    "prompt_tokens": int, "completion_tokens": int, "usage_exact": bool,
    "cost": (int, float), "meta": dict,
}  # fmt: skip


def _parley_kept(m: dict) -> dict[str, Any]:
    """The fields of `lib/export.py`'s message that Parley keeps beyond role, text and time,
    where present with the right type (an older export has fewer; a status Parley does not
    know is left out, so the message is "ok")."""
    kept = {}
    for name, kind in _PARLEY_KEPT.items():
        value = m.get(name)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            kept[name] = value
    if kept.get("status") not in PARLEY_STATUSES:
        kept.pop("status", None)
    elif kept["status"] == "streaming":  # exported mid-reply: no process writes this copy
        kept["status"] = "interrupted"
    if "meta" in kept:
        kept["meta"] = checked_meta(kept["meta"])
    elif older := checked_meta({k: m[k] for k in ("citations", "images") if k in m}):
        kept["meta"] = older  # before `meta`, the export held these two of it
    return kept


def _parley_attachments(entries: Any) -> list[tuple[str, bytes | None]]:
    """(name, bytes or None) of each attachment: a name, or `AttachmentStore.export_entries`'
    entry, whose `data_base64` carries the file (None where absent or not base64)."""
    out: list[tuple[str, bytes | None]] = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            out.append((entry, None))
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]:
            data = entry.get("data_base64")
            try:
                raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
            except ValueError:
                raw = None
            out.append((entry["name"], raw))
    return out


# Shared


def _tree_order(nodes: dict, parent_of: Any) -> list[tuple[str, dict]]:
    """(id, node) with each after its parent, siblings by time; a node whose parent is
    missing counts as a root."""
    items = {str(k): v for k, v in nodes.items() if isinstance(v, dict)}
    children: dict[str | None, list[str]] = {}
    for key, node in items.items():
        parent = parent_of(node)
        parent = str(parent) if parent is not None and str(parent) in items else None
        children.setdefault(parent, []).append(key)
    order, seen, stack = [], set(), list(reversed(children.get(None, [])))
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        order.append((key, items[key]))
        stack.extend(reversed(children.get(key, [])))
    return order


def _reparented(messages: Iterable[ImportedMessage]) -> list[ImportedMessage]:
    """Messages whose parent was left out (a tool call, an empty node) hang from the
    nearest kept ancestor; one whose parent is unknown becomes a root."""
    kept = list(messages)
    keys = {m.key for m in kept}
    parents = {m.key: m.parent for m in kept}
    for m in kept:
        parent, hops = m.parent, 0
        while parent is not None and parent not in keys and hops < len(kept):
            parent, hops = parents.get(parent), hops + 1
        m.parent = parent if parent in keys else None
    return kept


def _title(value: Any) -> str:
    text = " ".join(str(value or "").split())
    return text[:200] or "Imported chat"


def _seconds(value: Any) -> float | None:
    """Seconds since the epoch from seconds, milliseconds or an ISO 8601 string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            return None
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
