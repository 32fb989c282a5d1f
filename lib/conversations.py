"""Conversations and their messages, on either backend (the objects are in
`lib/conversation.py`).

`ConversationStore(backend, workspace)` owns the `conversations` and `messages` tables
for one workspace: a conversation's settings (model, system prompt, parameters), its
messages as they are saved and streamed, the cached token counts that spare recounting the
history, and the search over both. The workspace is bound when the store is opened
(`lib.store.base.WorkspaceStore`) and every statement filters on it; a message is reached
only through a conversation of this workspace, so one workspace can never see, change or
delete another's messages even by guessing an id.

Writes of more than one statement (a message and its conversation's title and time) run in
one transaction, so a failure leaves neither half. Every delete of messages (Reset, delete
from a message, the whole conversation) also deletes the attachment files no remaining row
names, after the commit (`_delete_with_files`). A full disk arrives as `DiskFull` from
the backend, which the chat page turns into "not sent, try again".

Search is the one statement that differs by backend: FTS5 on SQLite, a GIN index on
`to_tsvector('simple', content)` on PostgreSQL (`postgres_schema` 0002). Both match every
word of the query as a word prefix, mark matches `**like this**` in a short snippet, and
fall back to conversation titles.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, fields
from typing import Any

from lib.conversation import (
    ChatParams,
    Conversation,
    Folder,
    Message,
    SearchHit,
    Siblings,
    Totals,
)
from lib.errors import InvalidInputError, NotFoundError
from lib.store.backend import Connection
from lib.store.base import WorkspaceStore

log = logging.getLogger(__name__)
TITLE_LENGTH = 60
FOLDER_LENGTH = 40
SNIPPET_WORDS = 12


def folder_name(text: str | None) -> str | None:
    """A folder's name as kept: spaces tidied, at most FOLDER_LENGTH; None when blank."""
    return " ".join((text or "").split())[:FOLDER_LENGTH] or None


_CONVERSATION_COLUMNS = ", ".join(
    ["id", "workspace", "kind", "title", "model", "system_prompt", "params"]
    + ["created_at", "updated_at", "pinned"]
)
_CONVERSATION_FIELDS = _CONVERSATION_COLUMNS + ", leaf_id, folder"
# parent_id is set once, when a message is added, never by an update of its other columns.
_MESSAGE_COLUMNS = [f.name for f in fields(Message) if f.name not in ("id", "parent_id")]
_INSERT_MESSAGE = (
    f"INSERT INTO messages (conversation_id, parent_id, {', '.join(_MESSAGE_COLUMNS)}) "
    f"VALUES (?, ?, {', '.join('?' * len(_MESSAGE_COLUMNS))}) RETURNING id"
)
# The same after the path's last message, read in the statement that also checks the
# conversation is this workspace's: no row comes back for another's.
_INSERT_AT_LEAF = (
    f"INSERT INTO messages (conversation_id, parent_id, {', '.join(_MESSAGE_COLUMNS)}) "
    f"SELECT id, leaf_id, {', '.join('?' * len(_MESSAGE_COLUMNS))} FROM conversations "
    "WHERE id = ? AND workspace = ? RETURNING id, parent_id"
)
AT_LEAF: Any = object()  # add_message's default parent: the last message of the path shown
_IN_WORKSPACE = "conversation_id IN (SELECT id FROM conversations WHERE workspace = ?)"
# The path ending at a message (by default the conversation's leaf), walked up one parent
# at a time; `n` counts from the end, and stops the walk at a limit. Parameters:
# conversation, workspace, end (or NULL), limit.
_PATH = """path(id, parent_id, n) AS (
    SELECT m.id, m.parent_id, 1 FROM conversations c JOIN messages m ON m.conversation_id = c.id
    WHERE c.id = ? AND c.workspace = ? AND m.id = coalesce(?, c.leaf_id)
    UNION ALL
    SELECT m.id, m.parent_id, p.n + 1 FROM path p JOIN messages m ON m.id = p.parent_id
    WHERE p.n < ?
)"""
# A message and every message after it on any branch. Parameters: message, conversation twice.
_SUBTREE = """sub(id) AS (
    SELECT id FROM messages WHERE id = ? AND conversation_id = ?
    UNION ALL
    SELECT m.id FROM sub JOIN messages m ON m.parent_id = sub.id AND m.conversation_id = ?
)"""
_NO_LIMIT = 2**31 - 1
_WORD = re.compile(r"[^\W_]")  # a term with no letter or digit matches nothing on either side
# ts_headline's match markers: characters no message contains, so the snippet can be told
# apart from text that itself holds "**" before the markers become "**".
_START, _STOP = "\x02", "\x03"

_SEARCH_SQLITE = """
    WITH hits AS MATERIALIZED (
        SELECT rowid AS mid, bm25(messages_fts) AS score,
               snippet(messages_fts, 0, '**', '**', '…', {words}) AS snippet
        FROM messages_fts WHERE messages_fts MATCH ?
    )
    SELECT c.id, c.title, c.updated_at, h.snippet, NULL AS content, min(h.score) AS score,
           h.mid AS message_id
    FROM hits h
    JOIN messages m ON m.id = h.mid
    JOIN conversations c ON c.id = m.conversation_id
    WHERE c.workspace = ? {scope}
    GROUP BY c.id ORDER BY score LIMIT ?
"""
# The best-ranked message of each conversation, then a headline for that one only
# (ts_headline reparses the text, so it runs on at most `limit` rows).
_SEARCH_POSTGRESQL = """
    WITH q AS (SELECT to_tsquery('simple', ?) AS query),
    best AS (
        SELECT DISTINCT ON (m.conversation_id) m.conversation_id, m.content, m.id,
               ts_rank(to_tsvector('simple', m.content), q.query) AS score
        FROM q, messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE c.workspace = ? {scope} AND to_tsvector('simple', m.content) @@ q.query
        ORDER BY m.conversation_id, score DESC, m.id
    )
    SELECT c.id, c.title, c.updated_at, b.content, b.score, b.id AS message_id,
           ts_headline('simple', b.content, q.query, ?) AS snippet
    FROM q, best b JOIN conversations c ON c.id = b.conversation_id
    ORDER BY b.score DESC, c.updated_at DESC LIMIT ?
"""
_HEADLINE_OPTIONS = (
    f"StartSel={_START}, StopSel={_STOP}, MaxWords={SNIPPET_WORDS}, MinWords=6, "
    "ShortWord=0, MaxFragments=1"
)


class ConversationStore(WorkspaceStore):
    """One workspace's conversations and messages, on SQLite or PostgreSQL."""

    # Conversations

    def create(
        self,
        *,
        model: str,
        system_prompt: str = "",
        params: ChatParams | None = None,
        title: str = "New chat",
        kind: str = "chat",
        created_at: float | None = None,
    ) -> Conversation:
        now = created_at or time.time()
        conv = Conversation(
            id=uuid.uuid4().hex,
            workspace=self.workspace,
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
                f"INSERT INTO conversations ({_CONVERSATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conv.id,
                    self.workspace,
                    kind,
                    title,
                    model,
                    system_prompt,
                    json.dumps(asdict(conv.params)),
                    now,
                    now,
                    0,  # not pinned (0/1 on both backends)
                ),
            )
        return conv

    def get(self, conversation_id: str) -> Conversation:
        with self._conn() as conn:
            return self._get(conn, conversation_id)

    def _get(self, conn: Connection, conversation_id: str) -> Conversation:
        row = conn.execute(
            f"SELECT {_CONVERSATION_FIELDS} FROM conversations WHERE id = ? AND workspace = ?",
            (conversation_id, self.workspace),
        ).fetchone()
        if row is None:
            raise NotFoundError("Conversation not found.")
        return Conversation.from_row(row)

    def list(
        self, *, kind: str | None = None, folder: str | None = None, limit: int = 200
    ) -> list[Conversation]:
        """Pinned first, then newest first; with `folder`, only that folder's."""
        sql = f"SELECT {_CONVERSATION_FIELDS} FROM conversations WHERE workspace = ?"
        args: list[Any] = [self.workspace]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if folder is not None:
            sql += " AND folder = ?"
            args.append(folder)
        sql += " ORDER BY pinned DESC, updated_at DESC LIMIT ?"
        with self._conn() as conn:
            rows = conn.execute(sql, [*args, limit]).fetchall()
        return [Conversation.from_row(r) for r in rows]

    def search(
        self, query: str, *, kind: str | None = None, folder: str | None = None, limit: int = 50
    ) -> list[SearchHit]:
        """Conversations whose messages hold every word of `query` (each as a word prefix),
        best matches first, then those whose title holds it; with `folder`, only that
        folder's. The query is text, never syntax: each word is quoted, so no operator in
        it reaches FTS5 or tsquery."""
        terms = query.split()
        if not terms:
            return []
        words = [t for t in terms if _WORD.search(t)]
        scope_sql = ("AND c.kind = ? " if kind else "") + ("AND c.folder = ?" if folder else "")
        scope_args = ([kind] if kind else []) + ([folder] if folder else [])
        with self._conn() as conn:
            rows = []
            if words and self.dialect == "postgresql":
                rows = conn.execute(
                    _SEARCH_POSTGRESQL.format(scope=scope_sql),
                    [_tsquery(words), self.workspace, *scope_args, _HEADLINE_OPTIONS, limit],
                ).fetchall()
            elif words:
                rows = conn.execute(
                    _SEARCH_SQLITE.format(scope=scope_sql, words=SNIPPET_WORDS),
                    [_fts5_query(words), self.workspace, *scope_args, limit],
                ).fetchall()
            hits = [
                SearchHit(
                    r["id"],
                    r["title"],
                    _snippet(r["snippet"], r["content"]),
                    r["updated_at"],
                    r["message_id"],
                )
                for r in rows
            ]
            seen = {h.conversation_id for h in hits}
            like = "%" + "%".join(_like_escape(t) for t in terms) + "%"
            title_like = "title ILIKE ?" if self.dialect == "postgresql" else "title LIKE ?"
            for r in conn.execute(
                f"SELECT id, title, updated_at FROM conversations c "
                f"WHERE workspace = ? {scope_sql} AND {title_like} ESCAPE '\\' "
                "ORDER BY updated_at DESC LIMIT ?",
                [self.workspace, *scope_args, like, limit],
            ):
                if r["id"] not in seen:
                    hits.append(SearchHit(r["id"], r["title"], "", r["updated_at"]))
        return hits[:limit]

    def restamp(self, conversation_id: str, updated_at: float | None) -> None:
        """Date a conversation by its source's last change (an import), not by now."""
        if updated_at is None:
            return
        with self._conn() as conn:
            conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ? AND workspace = ?",
                (updated_at, conversation_id, self.workspace),
            )

    def rename(self, conversation_id: str, title: str) -> None:
        title = " ".join(title.split())[:TITLE_LENGTH]
        if not title:
            raise InvalidInputError("A conversation needs a title.")
        self._update(conversation_id, title=title)

    def update_settings(
        self,
        conversation_id: str,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
        params: ChatParams | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if model is not None:
            changes["model"] = model
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if params is not None:
            params.validate()
            changes["params"] = json.dumps(asdict(params))
        if changes:
            self._update(conversation_id, touch=False, **changes)

    def _update(self, conversation_id: str, *, touch: bool = True, **changes: Any) -> None:
        if touch:
            changes["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in changes)  # names from this module only
        with self._conn() as conn:
            cur = conn.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ? AND workspace = ?",
                [*changes.values(), conversation_id, self.workspace],
            )
        if cur.rowcount == 0:
            raise NotFoundError("Conversation not found.")

    def set_pinned(self, conversation_id: str, pinned: bool) -> None:
        """Pin to the top of the list, or unpin; not a use, so its place by date stays."""
        self._update(conversation_id, touch=False, pinned=int(bool(pinned)))  # 0/1 on both

    def set_folder(self, conversation_id: str, folder: str | None) -> None:
        """Move into the folder called `folder` (made by the first conversation put in it,
        gone with the last taken out), or out of any (None or blank). A move is not a use:
        its place by date stays."""
        self._update(conversation_id, touch=False, folder=folder_name(folder))

    def rename_folder(self, name: str, new_name: str, *, merge: bool = False) -> int:
        """Give the folder called `name` the name `new_name` (spaces tidied and cut as
        `set_folder` does); returns how many conversations it holds. A name another folder
        already has is refused unless `merge`, which puts the two folders' conversations
        together under it. Like a move, not a use: every place by date stays."""
        new = folder_name(new_name)
        if new is None:
            raise InvalidInputError("A folder needs a name: type one, or delete the folder.")
        with self._transaction() as conn:
            held = self._folder_count(conn, name)
            if new == name:
                return held
            taken = self._folder_count(conn, new, missing_ok=True)
            if taken and not merge:
                raise InvalidInputError(
                    f"There is already a folder called “{new}” ({taken:,} conversation"
                    f"{'s' * (taken != 1)}).",
                    hint="Choose another name, or merge the two folders into it.",
                )
            conn.execute(
                "UPDATE conversations SET folder = ? WHERE workspace = ? AND folder = ?",
                (new, self.workspace, name),
            )
        return held + taken

    def delete_folder(self, name: str) -> int:
        """Take every conversation out of the folder called `name`, which is then gone (a
        folder exists while it holds one); the conversations stay, in no folder. Returns
        how many were in it."""
        with self._transaction() as conn:
            held = self._folder_count(conn, name)
            conn.execute(
                "UPDATE conversations SET folder = NULL WHERE workspace = ? AND folder = ?",
                (self.workspace, name),
            )
        return held

    def _folder_count(self, conn: Connection, name: str, *, missing_ok: bool = False) -> int:
        held = conn.execute(
            "SELECT count(*) FROM conversations WHERE workspace = ? AND folder = ?",
            (self.workspace, name),
        ).fetchone()[0]
        if not held and not missing_ok:
            raise NotFoundError(f"There is no folder called “{name}” (any more).")
        return int(held)

    def folders(self, *, kind: str | None = None) -> list[Folder]:
        """The folders in use, by name, each with how many conversations it holds."""
        sql = "SELECT folder, count(*) FROM conversations WHERE workspace = ? "
        sql += "AND folder IS NOT NULL"
        args: list[Any] = [self.workspace]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        with self._conn() as conn:
            rows = conn.execute(sql + " GROUP BY folder", args).fetchall()
        return sorted((Folder(r[0], r[1]) for r in rows), key=lambda f: (f.name.casefold(), f.name))

    def delete(self, conversation_id: str) -> None:
        """Delete the conversation; its messages and attachments go with it (ON DELETE
        CASCADE), and so does the folder of its attachments' files, including any a save
        that never finished left without a row."""

        def conversation(conn: Connection) -> int:
            return conn.execute(
                "DELETE FROM conversations WHERE id = ? AND workspace = ?",
                (conversation_id, self.workspace),
            ).rowcount

        self._delete_with_files(conversation_id, conversation)
        self._remove_files(self.blobs.keys(self.blob_key("attachments", conversation_id) + "/"))

    # Messages

    def add_message(
        self,
        conversation_id: str,
        message: Message,
        *,
        parent: int | None = AT_LEAF,
        current: bool = True,
    ) -> Message:
        """Add a message after `parent` (by default the last message of the path shown;
        None starts a new first message) and, if `current`, make it the path's end. The
        first user message also titles a new conversation."""
        # Two statements after the path's end (the INSERT also checks the workspace and
        # reads the leaf), three after a given parent (checked to be this conversation's).
        title = (_title_from(message.content) or None) if message.role == "user" else None
        with self._transaction() as conn:
            if parent is AT_LEAF:
                row = conn.execute(
                    _INSERT_AT_LEAF, [*_message_values(message), conversation_id, self.workspace]
                ).fetchone()
                if row is None:
                    raise NotFoundError("Conversation not found.")
                message.id, message.parent_id = row[0], row[1]
            else:
                self._get(conn, conversation_id)
                if parent is not None:
                    _check_message(conn, conversation_id, parent)  # never another's
                message.id = conn.execute(
                    _INSERT_MESSAGE, [conversation_id, parent, *_message_values(message)]
                ).fetchone()[0]
                message.parent_id = parent
            conn.execute(
                "UPDATE conversations SET updated_at = ?, title = CASE "
                "WHEN title = 'New chat' THEN coalesce(?, title) ELSE title END"
                + (", leaf_id = ?" if current else "")
                + " WHERE id = ? AND workspace = ?",
                (time.time(), title, *([message.id] if current else []), conversation_id,
                 self.workspace),
            )  # fmt: skip
        return message

    def add_tree(
        self, conversation_id: str, messages: Sequence[tuple[Message, int | None]]
    ) -> list[Message]:
        """Add many messages at once (an import): each with the index, in `messages`, of
        its parent (None for a first message), parents before children. One workspace
        check, then one INSERT a message: a tenth of `add_message`'s statements for a
        long conversation. The path shown is left as it was (see `set_leaf`)."""
        with self._transaction() as conn:
            self._get(conn, conversation_id)
            for message, parent in messages:
                if parent is not None and not 0 <= parent < len(messages):
                    raise ValueError(f"parent index {parent} is outside the messages")
                after = None if parent is None else messages[parent][0].id
                if parent is not None and after is None:
                    raise ValueError("a parent must come before its children")
                message.id = conn.execute(
                    _INSERT_MESSAGE, [conversation_id, after, *_message_values(message)]
                ).fetchone()[0]
                message.parent_id = after
        return [m for m, _ in messages]

    def update_message(self, conversation_id: str, message: Message) -> None:
        if message.id is None:
            raise ValueError("update_message needs a saved message")
        assignments = ", ".join(f"{c} = ?" for c in _MESSAGE_COLUMNS)
        with self._transaction() as conn:
            updated = conn.execute(
                f"UPDATE messages SET {assignments} "
                f"WHERE id = ? AND conversation_id = ? AND {_IN_WORKSPACE}",
                [*_message_values(message), message.id, conversation_id, self.workspace],
            ).rowcount
            if not updated:
                self._get(conn, conversation_id)  # not this workspace's: say so

    def update_streaming(
        self,
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
        with self._conn() as conn:
            cur = conn.execute(
                "UPDATE messages SET content = coalesce(?, content), "
                "status = coalesce(?, status), meta = coalesce(?, meta) "
                "WHERE id = ? AND conversation_id = ? AND status = 'streaming' "
                f"AND {_IN_WORKSPACE}",
                (
                    content,
                    status,
                    None if meta is None else json.dumps(meta),
                    message_id,
                    conversation_id,
                    self.workspace,
                ),
            )
        return cur.rowcount == 1

    def cache_token_counts(self, conversation_id: str, counts: list[tuple[int, int, str]]) -> None:
        """Store (message id, tokens, encoding) so the history is never counted twice."""
        with self._transaction() as conn:
            updated = conn.executemany(
                "UPDATE messages SET tokens = ?, tokens_encoding = ? "
                f"WHERE id = ? AND conversation_id = ? AND {_IN_WORKSPACE}",
                [(n, enc, mid, conversation_id, self.workspace) for mid, n, enc in counts],
            ).rowcount
            if not updated:
                self._get(conn, conversation_id)  # none, or not this workspace's?

    def delete_messages_from(self, conversation_id: str, message_id: int) -> int:
        """Delete the message with this id and every message after it on any branch (its
        subtree), with the files no other message's attachments name; a path that ran
        through it ends at its parent instead."""

        def subtree(conn: Connection) -> int:
            row = conn.execute(
                "SELECT parent_id FROM messages WHERE id = ? AND conversation_id = ?",
                (message_id, conversation_id),
            ).fetchone()
            if row is None:
                return 0
            deleted = conn.execute(
                # The CTE inside: sqlite3 counts no rows for a statement opening with WITH.
                f"DELETE FROM messages WHERE id IN (WITH RECURSIVE {_SUBTREE} SELECT id FROM sub)",
                (message_id, conversation_id, conversation_id),
            ).rowcount
            conn.execute(
                "UPDATE conversations SET leaf_id = ? WHERE id = ? AND leaf_id IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = conversations.leaf_id)",
                (row[0], conversation_id),
            )
            return deleted

        return self._delete_with_files(conversation_id, subtree)

    def clear_messages(self, conversation_id: str) -> int:
        """Delete every message (Reset), with every attachment's file."""

        def every(conn: Connection) -> int:
            conn.execute("UPDATE conversations SET leaf_id = NULL WHERE id = ?", (conversation_id,))
            return conn.execute(
                "DELETE FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).rowcount

        return self._delete_with_files(conversation_id, every)

    def _delete_with_files(self, conversation_id: str, delete: Callable[[Connection], int]) -> int:
        """Run `delete` (statements removing messages, whose attachment rows go with them:
        ON DELETE CASCADE) in one transaction, then delete each file that only the removed
        rows named. Every path that deletes messages comes here.

        Rows of one conversation may share a file (an edited question's copies, see
        `AttachmentStore.save_version`), and a row only ever names files in its own
        conversation's folder, so a file is kept while any row of the conversation names
        it. The first statement locks the conversation's row (a no-op UPDATE) until the
        commit, and `save_version` copies rows only after taking the same lock: on
        PostgreSQL an edit saved at the same moment either copies rows that are then
        counted here, or finds them gone (SQLite's BEGIN IMMEDIATE serializes both anyway).
        The files go after the commit: a delete that fails leaves a file no row names
        (logged), never a row whose file is gone."""
        with self._transaction() as conn:
            if not conn.execute(
                "UPDATE conversations SET updated_at = updated_at WHERE id = ? AND workspace = ?",
                (conversation_id, self.workspace),
            ).rowcount:
                raise NotFoundError("Conversation not found.")
            named = self._file_keys(conn, conversation_id)
            count = delete(conn)
            unnamed = named - self._file_keys(conn, conversation_id)
        self._remove_files(sorted(unnamed))
        return count

    def _file_keys(self, conn: Connection, conversation_id: str) -> set[str]:
        """Every file the conversation's attachment rows name (original, thumbnail, sent)."""
        rows = conn.execute(
            "SELECT blob, thumb, sent FROM attachments WHERE conversation_id = ? AND workspace = ?",
            (conversation_id, self.workspace),
        ).fetchall()
        return {key for r in rows for key in r if key}

    def _remove_files(self, keys: Iterable[str]) -> None:
        """Delete these files, each on its own: the rows naming them are already gone, so a
        failure only leaves a file behind, which is logged and never raised."""
        try:
            for key in list(keys):
                try:
                    self.blobs.delete(key)
                except Exception as exc:  # noqa: BLE001 - the rows are committed; keep going
                    log.warning("could not delete an attachment file %s: %s", key, exc)
        except Exception as exc:  # noqa: BLE001 - listing a folder failed: files stay
            log.warning("could not list attachment files to delete: %s", exc)

    # The path shown, and its branches

    def recent_messages(
        self,
        conversation_id: str,
        limit: int,
        *,
        before_id: int | None = None,
        end: int | None = None,
    ) -> list[Message]:
        """The last `limit` messages of the path that ends at `end` (by default the path
        shown; with `before_id`, the one ending just before that message), oldest first.
        This is what the transcript shows and what the model is sent."""
        with self._conn() as conn:
            if before_id is not None:
                row = conn.execute(
                    "SELECT parent_id FROM messages WHERE id = ? AND conversation_id = ?",
                    (before_id, conversation_id),
                ).fetchone()
                if row is None or row[0] is None:
                    self._get(conn, conversation_id)
                    return []
                end = row[0]
            rows = conn.execute(
                f"WITH RECURSIVE {_PATH} SELECT m.* FROM path JOIN messages m ON m.id = path.id "
                "ORDER BY path.n DESC",
                (conversation_id, self.workspace, end, limit),
            ).fetchall()
            if not rows:
                self._get(conn, conversation_id)  # none, or not this workspace's?
        return [Message.from_row(r) for r in rows]

    def window(
        self, conversation_id: str, limit: int, *, end: int | None = None
    ) -> tuple[list[Message], int]:
        """`recent_messages(conversation_id, limit, end=end)` and how many messages the
        whole path holds, in one statement: what the prompt needs before every request.
        It walks the whole path, as `path_length` would have, but one round trip less
        (bench/chat_overhead.py on PostgreSQL: 1.9 ms and 3.0 ms as two statements)."""
        with self._conn() as conn:
            rows = conn.execute(
                f"WITH RECURSIVE {_PATH} SELECT m.*, (SELECT max(n) FROM path) AS path_length "
                "FROM path JOIN messages m ON m.id = path.id WHERE path.n <= ? "
                "ORDER BY path.n DESC",
                (conversation_id, self.workspace, end, _NO_LIMIT, limit),
            ).fetchall()
            if not rows:
                self._get(conn, conversation_id)  # none, or not this workspace's?
                return [], 0
        length = rows[0]["path_length"]
        messages = []
        for r in rows:
            data = dict(r)
            data.pop("path_length")
            messages.append(Message.from_row(data))
        return messages, length

    def get_message(self, conversation_id: str, message_id: int) -> Message:
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT * FROM messages WHERE id = ? AND conversation_id = ? AND {_IN_WORKSPACE}",
                (message_id, conversation_id, self.workspace),
            ).fetchone()
        if row is None:
            raise NotFoundError("Message not found.")
        return Message.from_row(row)

    def path(self, conversation_id: str) -> list[Message]:
        """The whole path shown, oldest first (what a Markdown export holds)."""
        return self.recent_messages(conversation_id, _NO_LIMIT)

    def path_length(self, conversation_id: str, *, end: int | None = None) -> int:
        """How many messages the path ending at `end` (by default, the one shown) holds:
        one primary-key step each, 31 ms for 10,000 on SQLite and 46 ms on PostgreSQL
        (bench/branches.py), so the prompt asks only when the path outgrows its window."""
        with self._conn() as conn:
            count = conn.execute(
                f"WITH RECURSIVE {_PATH} SELECT count(*) FROM path",
                (conversation_id, self.workspace, end, _NO_LIMIT),
            ).fetchone()[0]
            if not count:
                self._get(conn, conversation_id)
        return count

    def siblings(self, conversation_id: str, messages: list[Message]) -> dict[int, Siblings]:
        """For each message of `messages` (a stretch of one path) that has other versions,
        its `Siblings`: one statement for the whole stretch."""
        parents = {m.parent_id for m in messages if m.parent_id is not None}
        roots = any(m.parent_id is None for m in messages)
        if not messages or (not parents and not roots):
            return {}
        match = [f"parent_id IN ({', '.join('?' * len(parents))})"] if parents else []
        match += ["parent_id IS NULL"] if roots else []
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT id, parent_id FROM messages WHERE conversation_id = ? AND "
                f"{_IN_WORKSPACE} AND ({' OR '.join(match)}) ORDER BY created_at, id",
                [conversation_id, self.workspace, *parents],
            ).fetchall()
        groups: dict[int | None, list[int]] = {}
        for r in rows:
            groups.setdefault(r["parent_id"], []).append(r["id"])
        found = {}
        for m in messages:
            ids = groups.get(m.parent_id, [])
            if len(ids) > 1 and m.id in ids:
                found[m.id] = Siblings(tuple(ids), ids.index(m.id))
        return found

    def show_branch(self, conversation_id: str, message_id: int) -> int:
        """Show the path through `message_id`: it ends at the newest message after it (the
        branch last added to), which is returned."""
        with self._transaction() as conn:
            leaf = conn.execute(
                f"WITH RECURSIVE {_SUBTREE} SELECT max(id) FROM sub",
                (message_id, conversation_id, conversation_id),
            ).fetchone()[0]
            if leaf is None:
                self._get(conn, conversation_id)
                raise NotFoundError("Message not found.")
            self._set_leaf(conn, conversation_id, leaf)
        return leaf

    def set_leaf(self, conversation_id: str, message_id: int | None) -> None:
        """End the path shown at `message_id` (None: show no message), e.g. at the question
        a reply is about to answer again."""
        with self._transaction() as conn:
            if message_id is not None:
                _check_message(conn, conversation_id, message_id)
            self._set_leaf(conn, conversation_id, message_id)

    def _set_leaf(self, conn: Connection, conversation_id: str, leaf: int | None) -> None:
        if not conn.execute(
            "UPDATE conversations SET leaf_id = ? WHERE id = ? AND workspace = ?",
            (leaf, conversation_id, self.workspace),
        ).rowcount:
            raise NotFoundError("Conversation not found.")

    def all_messages(self, conversation_id: str) -> list[Message]:
        with self._conn() as conn:
            self._get(conn, conversation_id)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return [Message.from_row(r) for r in rows]

    def count_messages(self, conversation_id: str) -> int:
        with self._conn() as conn:
            count = conn.execute(
                f"SELECT count(*) FROM messages WHERE conversation_id = ? AND {_IN_WORKSPACE}",
                (conversation_id, self.workspace),
            ).fetchone()[0]
            if not count:
                self._get(conn, conversation_id)  # none, or not this workspace's?
            return count

    def totals(self, conversation_id: str) -> Totals:
        with self._conn() as conn:
            self._get(conn, conversation_id)
            row = conn.execute(
                "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), "
                "coalesce(sum(cost), 0), count(*), count(*) - count(cost) FROM messages "
                "WHERE conversation_id = ? AND role = 'assistant'",
                (conversation_id,),
            ).fetchone()
        return Totals(*row)


def _check_message(conn: Connection, conversation_id: str, message_id: int) -> None:
    if not conn.execute(
        "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
        (message_id, conversation_id),
    ).fetchone():
        raise NotFoundError("Message not found.")


def _message_values(message: Message) -> list[Any]:
    values = []
    for name in _MESSAGE_COLUMNS:
        value = getattr(message, name)
        if name == "meta":
            value = json.dumps(value)
        elif name == "usage_exact":
            value = int(value)  # an integer column on both backends
        values.append(value)
    return values


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= TITLE_LENGTH:
        return words
    return words[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"


def _fts5_query(words: list[str]) -> str:
    """Each word as a quoted FTS5 phrase with a prefix star: `"it""s"* "tax"*`."""
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


def _tsquery(words: list[str]) -> str:
    """Each word as a quoted tsquery lexeme with a prefix mark, ANDed: `'it''s':* & 'tax':*`.

    Inside quotes `&|!():*<>` are plain characters; only the quote and the backslash need
    escaping. PostgreSQL's parser then splits a quoted word as it split the message text
    ("e-mail", "don't"), so the word matches as a phrase, as in FTS5.
    """
    quoted = ("'" + w.replace("\\", "\\\\").replace("'", "''") + "':*" for w in words)
    return " & ".join(quoted)


def _like_escape(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _snippet(headline: str | None, content: str | None) -> str:
    """FTS5's snippet as it comes; PostgreSQL's headline with FTS5's marks: `**` around
    matches and `…` where the message goes on before or after it."""
    if not headline or content is None:
        return headline or ""
    plain = headline.replace(_START, "").replace(_STOP, "").strip()
    text = content.strip()
    marked = headline.strip().replace(_START, "**").replace(_STOP, "**")
    return ("" if text.startswith(plain) else "…") + marked + ("" if text.endswith(plain) else "…")
