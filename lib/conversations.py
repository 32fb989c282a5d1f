"""Conversations and their messages in SQLite (the objects are in `lib/conversation.py`).

A `Conversation` holds the system prompt, the parameters and (a window of) the messages.
Every read and write takes the workspace explicitly, and every query filters on it, so
one workspace can never see, change or delete another's conversations.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from lib.conversation import ChatParams, Conversation, Message, SearchHit, Totals
from lib.diskfull import translate_disk_errors
from lib.errors import InvalidInputError, NotFoundError
from lib.store import sqlite_schema as db
from lib.workspaces import require_workspace

TITLE_LENGTH = 60


_MESSAGE_COLUMNS = [f.name for f in fields(Message) if f.name != "id"]


class ConversationStore:
    """Conversations in `parley.db`, always read and written within one workspace."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        # The thread's reused connection: opening one per call cost more than the queries.
        with translate_disk_errors(self.db_path.parent):
            yield db.thread_connection(self.db_path)

    # Conversations

    def create(
        self,
        workspace: str,
        *,
        model: str,
        system_prompt: str = "",
        params: ChatParams | None = None,
        title: str = "New chat",
        kind: str = "chat",
    ) -> Conversation:
        _require_workspace(workspace)
        now = time.time()
        conv = Conversation(
            id=uuid.uuid4().hex,
            workspace=workspace,
            title=title,
            model=model,
            system_prompt=system_prompt,
            params=params or ChatParams(),
            kind=kind,
            created_at=now,
            updated_at=now,
        )
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conv.id,
                    workspace,
                    kind,
                    title,
                    model,
                    system_prompt,
                    json.dumps(asdict(conv.params)),
                    now,
                    now,
                ),
            )
        return conv

    def get(self, workspace: str, conversation_id: str) -> Conversation:
        _require_workspace(workspace)
        with self._conn() as conn:
            return self._get(conn, workspace, conversation_id)

    def _get(self, conn: sqlite3.Connection, workspace: str, conversation_id: str) -> Conversation:
        _require_workspace(workspace)
        row = conn.execute(
            "SELECT * FROM conversations WHERE id = ? AND workspace = ?",
            (conversation_id, workspace),
        ).fetchone()
        if row is None:
            raise NotFoundError("Conversation not found.")
        return Conversation.from_row(row)

    def list(
        self, workspace: str, *, kind: str | None = None, limit: int = 200
    ) -> list[Conversation]:
        """Newest first."""
        _require_workspace(workspace)
        sql = "SELECT * FROM conversations WHERE workspace = ?"
        args: list[Any] = [workspace]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY updated_at DESC LIMIT ?"
        with self._conn() as conn:
            rows = conn.execute(sql, [*args, limit]).fetchall()
        return [Conversation.from_row(r) for r in rows]

    def search(self, workspace: str, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search over message content (FTS5) and titles, best matches first."""
        _require_workspace(workspace)
        terms = [t.replace('"', '""') for t in query.split() if t.strip()]
        if not terms:
            return []
        match = " ".join(f'"{t}"*' for t in terms)
        with self._conn() as conn:
            rows = conn.execute(
                """
                WITH hits AS MATERIALIZED (
                    SELECT rowid AS mid, bm25(messages_fts) AS score,
                           snippet(messages_fts, 0, '**', '**', '…', 12) AS snippet
                    FROM messages_fts WHERE messages_fts MATCH ?
                )
                SELECT c.id, c.title, c.updated_at, h.snippet, min(h.score) AS score
                FROM hits h
                JOIN messages m ON m.id = h.mid
                JOIN conversations c ON c.id = m.conversation_id
                WHERE c.workspace = ?
                GROUP BY c.id ORDER BY score LIMIT ?
                """,
                (match, workspace, limit),
            ).fetchall()
            hits = [SearchHit(r["id"], r["title"], r["snippet"], r["updated_at"]) for r in rows]
            seen = {h.conversation_id for h in hits}
            like = "%" + "%".join(terms) + "%"
            for r in conn.execute(
                "SELECT id, title, updated_at FROM conversations "
                "WHERE workspace = ? AND title LIKE ? ORDER BY updated_at DESC LIMIT ?",
                (workspace, like, limit),
            ):
                if r["id"] not in seen:
                    hits.append(SearchHit(r["id"], r["title"], "", r["updated_at"]))
        return hits[:limit]

    def rename(self, workspace: str, conversation_id: str, title: str) -> None:
        _require_workspace(workspace)
        title = " ".join(title.split())[:TITLE_LENGTH]
        if not title:
            raise InvalidInputError("A conversation needs a title.")
        self._update(workspace, conversation_id, title=title)

    def update_settings(
        self,
        workspace: str,
        conversation_id: str,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        params: ChatParams | None = None,
    ) -> None:
        _require_workspace(workspace)
        changes: dict[str, Any] = {}
        if model is not None:
            changes["model"] = model
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if params is not None:
            params.validate()
            changes["params"] = json.dumps(asdict(params))
        if changes:
            self._update(workspace, conversation_id, touch=False, **changes)

    def _update(
        self, workspace: str, conversation_id: str, *, touch: bool = True, **changes: Any
    ) -> None:
        if touch:
            changes["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in changes)
        with self._conn() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ? AND workspace = ?",
                [*changes.values(), conversation_id, workspace],
            )
        if cur.rowcount == 0:
            raise NotFoundError("Conversation not found.")

    def delete(self, workspace: str, conversation_id: str) -> None:
        _require_workspace(workspace)
        with self._conn() as conn:
            cur = conn.execute(
                "DELETE FROM conversations WHERE id = ? AND workspace = ?",
                (conversation_id, workspace),
            )
        if cur.rowcount == 0:
            raise NotFoundError("Conversation not found.")

    # Messages

    def add_message(self, workspace: str, conversation_id: str, message: Message) -> Message:
        """Append a message; the first user message also titles a new conversation."""
        _require_workspace(workspace)
        with self._conn() as conn:
            conv = self._get(conn, workspace, conversation_id)
            values = _message_values(message)
            cur = conn.execute(
                f"INSERT INTO messages (conversation_id, {', '.join(_MESSAGE_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(_MESSAGE_COLUMNS))})",
                [conversation_id, *values],
            )
            message.id = cur.lastrowid
            title = conv.title
            if message.role == "user" and conv.title == "New chat":
                title = _title_from(message.content) or title
            conn.execute(
                "UPDATE conversations SET updated_at = ?, title = ? WHERE id = ?",
                (time.time(), title, conversation_id),
            )
        return message

    def update_message(self, workspace: str, conversation_id: str, message: Message) -> None:
        _require_workspace(workspace)
        if message.id is None:
            raise ValueError("update_message needs a saved message")
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            assignments = ", ".join(f"{c} = ?" for c in _MESSAGE_COLUMNS)
            conn.execute(
                f"UPDATE messages SET {assignments} WHERE id = ? AND conversation_id = ?",
                [*_message_values(message), message.id, conversation_id],
            )

    def update_streaming(
        self,
        workspace: str,
        conversation_id: str,
        message_id: int,
        *,
        content: str | None = None,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bool:
        """Change a reply still marked "streaming": its text as it arrives, or its status
        when its process died. One statement, cheap enough to run every second; False once
        the reply was saved for good, which it never overwrites."""
        _require_workspace(workspace)
        with self._conn() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = coalesce(?, content), "
                "status = coalesce(?, status), meta = coalesce(?, meta) "
                "WHERE id = ? AND conversation_id = ? AND status = 'streaming' "
                "AND conversation_id IN (SELECT id FROM conversations WHERE workspace = ?)",
                (
                    content,
                    status,
                    None if meta is None else json.dumps(meta),
                    message_id,
                    conversation_id,
                    workspace,
                ),
            )
        return cur.rowcount == 1

    def cache_token_counts(
        self, workspace: str, conversation_id: str, counts: list[tuple[int, int, str]]
    ) -> None:
        """Store (message id, tokens, encoding) so the history is never counted twice."""
        _require_workspace(workspace)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            conn.executemany(
                "UPDATE messages SET tokens = ?, tokens_encoding = ? "
                "WHERE id = ? AND conversation_id = ?",
                [(n, enc, mid, conversation_id) for mid, n, enc in counts],
            )

    def delete_messages_from(self, workspace: str, conversation_id: str, message_id: int) -> int:
        """Delete the message with this id and every later one (for regenerate and edit)."""
        _require_workspace(workspace)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            cur = conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND id >= ?",
                (conversation_id, message_id),
            )
            return cur.rowcount

    def clear_messages(self, workspace: str, conversation_id: str) -> int:
        _require_workspace(workspace)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            return conn.execute(
                "DELETE FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).rowcount

    def recent_messages(
        self, workspace: str, conversation_id: str, limit: int, *, before_id: int | None = None
    ) -> list[Message]:
        """The last `limit` messages (before `before_id` if given), oldest first."""
        _require_workspace(workspace)
        sql = "SELECT * FROM messages WHERE conversation_id = ?"
        args: list[Any] = [conversation_id]
        if before_id is not None:
            sql += " AND id < ?"
            args.append(before_id)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [Message.from_row(r) for r in reversed(rows)]

    def all_messages(self, workspace: str, conversation_id: str) -> list[Message]:
        _require_workspace(workspace)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [Message.from_row(r) for r in rows]

    def count_messages(self, workspace: str, conversation_id: str) -> int:
        _require_workspace(workspace)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            return conn.execute(
                "SELECT count(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()[0]

    def totals(self, workspace: str, conversation_id: str) -> Totals:
        _require_workspace(workspace)
        with self._conn() as conn:
            self._get(conn, workspace, conversation_id)
            row = conn.execute(
                "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
                "coalesce(sum(cost), 0), count(*), count(*) - count(cost) FROM messages "
                "WHERE conversation_id = ? AND role = 'assistant'",
                (conversation_id,),
            ).fetchone()
        return Totals(*row)


def _message_values(message: Message) -> list[Any]:
    values = []
    for name in _MESSAGE_COLUMNS:
        value = getattr(message, name)
        if name == "meta":
            value = json.dumps(value)
        values.append(value)
    return values


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= TITLE_LENGTH:
        return words
    return words[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"


def _require_workspace(workspace: str) -> None:
    # A guard, not a formality: no query may run without knowing whose data it touches.
    require_workspace(workspace)
