"""parley.db: its schema, as numbered migrations, and how the stores open it.

The schema changes only through the migrations below: one function each, registered in
the order they run and numbered in that order (`migration` refuses a name that would
sort before the last one). Each runs in its own transaction and is recorded in
`schema_migrations`, so running `migrate` again is a no-op; never edit one that has
shipped, add a new one at the end.

Several processes may open a fresh database at once (the web app and the terminal chat
start together): `migrate` takes SQLite's write lock (`BEGIN IMMEDIATE`, waiting up to the
busy timeout) before it reads which migrations are applied, so only one process applies
each, and the others find it recorded. How connections are opened and reused is
`lib/store/sqlite_pool.py`'s job; this module only says what "prepared" means for parley.db.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from lib.errors import DatabaseCorrupt
from lib.store import sqlite_pool

Step = Callable[[sqlite3.Connection], None]


class Migration(NamedTuple):
    name: str
    apply: Step


MIGRATIONS: list[Migration] = []
# Until 2026 the migrations were numbered in the order they were written, not run
# (0004_images ran before 0003_documents); databases made then recorded these names.
# Never reuse an old name for a new migration.
RENUMBERED = {
    "0004_images": "0003_images",
    "0003_documents": "0004_documents",
    "0003_documents_drop_fts": "0005_documents_drop_fts",
}


def migration(name: str) -> Callable[[Step], Step]:
    """Register the decorated function as the next migration, called `name`."""

    def register(step: Step) -> Step:
        if MIGRATIONS and name <= MIGRATIONS[-1].name:
            raise ValueError(f"migration {name} must sort after {MIGRATIONS[-1].name}")
        MIGRATIONS.append(Migration(name, step))
        return step

    return register


def run_script(conn: sqlite3.Connection, sql: str) -> None:
    """Run each statement of `sql` inside the caller's transaction.

    `executescript` would commit first, so a failed migration could not be rolled back.
    """
    statement = ""
    for part in sql.split(";"):
        statement += part + ";"
        if sqlite3.complete_statement(statement):  # not inside a trigger body or string
            if statement.strip("; \n"):
                conn.execute(statement)
            statement = ""
    if statement:
        raise ValueError(f"incomplete SQL statement: {statement.strip()[:60]}")


@migration("0001_conversations")
def conversations(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        """
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            workspace TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'chat',
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            system_prompt TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX conversations_by_workspace ON conversations (workspace, updated_at DESC);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'ok',
            model TEXT,
            tokens INTEGER,
            tokens_encoding TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            usage_exact INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            meta TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        );
        CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
        """,
    )


@migration("0002_message_search")
def message_search(conn: sqlite3.Connection) -> None:
    """Full-text search over messages (FTS5), kept in step by triggers."""
    run_script(
        conn,
        """
        CREATE VIRTUAL TABLE messages_fts USING fts5 (
            content, content='messages', content_rowid='id', tokenize='unicode61'
        );
        CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END;
        CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
        END;
        CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END;
        INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
        """,
    )


@migration("0003_images")
def images(conn: sqlite3.Connection) -> None:
    """Generated images: the file lives under the data directory (path relative to it);
    tokens are those of the request (batch) that made the image, cost is its share."""
    run_script(
        conn,
        """
        CREATE TABLE images (
            id TEXT PRIMARY KEY,
            workspace TEXT NOT NULL,
            batch TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            file TEXT NOT NULL,
            thumb TEXT,
            mime TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            prompt TEXT NOT NULL,
            revised_prompt TEXT,
            model TEXT NOT NULL,
            size TEXT NOT NULL,
            quality TEXT,
            background TEXT,
            conversation_id TEXT REFERENCES conversations (id) ON DELETE SET NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost REAL,
            meta TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        );
        CREATE INDEX images_by_workspace ON images (workspace, created_at DESC);
        CREATE INDEX images_by_conversation ON images (conversation_id);
        """,
    )


@migration("0004_documents")
def documents(conn: sqlite3.Connection) -> None:
    """The document library: files, pages, chunks, the embedding cache and the vector
    index generations, and which documents each conversation searches."""
    run_script(
        conn,
        """
        CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            workspace TEXT NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            kind TEXT NOT NULL,
            stored_as TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'indexing',
            report TEXT NOT NULL DEFAULT '{}',
            tokens INTEGER NOT NULL DEFAULT 0,
            embedding_model TEXT,
            created_at REAL NOT NULL,
            indexed_at REAL,
            UNIQUE (workspace, sha256)
        );
        CREATE INDEX documents_by_workspace ON documents (workspace, created_at DESC);
        CREATE TABLE document_pages (
            document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            page INTEGER NOT NULL,
            number INTEGER,
            label TEXT,
            tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (document_id, page)
        ) WITHOUT ROWID;
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            page INTEGER,
            label TEXT,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            hash TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX chunks_by_document ON chunks (document_id, id);
        CREATE VIRTUAL TABLE chunks_fts USING fts5 (
            text, content='chunks', content_rowid='id', tokenize='porter unicode61'
        );
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
        CREATE TABLE embedding_cache (
            workspace TEXT NOT NULL,
            model TEXT NOT NULL,
            hash TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (workspace, model, hash)
        ) WITHOUT ROWID;
        CREATE TABLE vector_indexes (
            workspace TEXT NOT NULL,
            model TEXT NOT NULL,
            file TEXT NOT NULL,
            generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (workspace, model)
        );
        CREATE TABLE conversation_documents (
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
            PRIMARY KEY (conversation_id, document_id)
        ) WITHOUT ROWID;
        CREATE INDEX conversation_documents_by_document ON conversation_documents (document_id);
        CREATE TABLE document_chats (
            conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
            mode TEXT NOT NULL DEFAULT 'auto',
            top_k INTEGER NOT NULL DEFAULT 6
        );
        """,
    )


@migration("0005_documents_drop_fts")
def documents_drop_fts(conn: sqlite3.Connection) -> None:
    """Keyword search moved to per-document BM25 segments (lib/documents/bm25.py): FTS5's
    bm25() scored every matching row, 15-75 ms a query at 100k chunks."""
    run_script(
        conn,
        """
        DROP TRIGGER IF EXISTS chunks_fts_insert;
        DROP TRIGGER IF EXISTS chunks_fts_delete;
        DROP TABLE IF EXISTS chunks_fts;
        """,
    )


@migration("0006_message_totals_index")
def message_totals_index(conn: sqlite3.Connection) -> None:
    """The running totals are read on every rerun; a covering index keeps that cheap
    for long conversations (8.5 ms -> 1.5 ms at 10,000 messages)."""
    run_script(
        conn,
        """
        CREATE INDEX messages_totals
            ON messages (conversation_id, role, prompt_tokens, completion_tokens, cost);
        """,
    )


@migration("0007_preferences")
def preferences(conn: sqlite3.Connection) -> None:
    """The model and system prompt each workspace last chose per server (`lib/preferences.py`);
    they were JSON files under `<data dir>/preferences/`, read in on first use."""
    run_script(
        conn,
        """
        CREATE TABLE preferences (
            workspace TEXT NOT NULL,
            server TEXT NOT NULL,
            model TEXT,
            system_prompt TEXT,
            used_at REAL NOT NULL,
            PRIMARY KEY (workspace, server)
        );
        CREATE INDEX preferences_by_use ON preferences (workspace, used_at);
        """,
    )


@migration("0008_password_failures")
def password_failures(conn: sqlite3.Connection) -> None:
    """Wrong-password counts (`lib/access.py`), per client address and server-wide: in the
    database, so every process on it counts together and a restart forgets nothing."""
    run_script(
        conn,
        """
        CREATE TABLE password_failures (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            failures INTEGER NOT NULL,
            last_failure REAL NOT NULL,
            PRIMARY KEY (scope, key)
        );
        CREATE INDEX password_failures_by_age ON password_failures (scope, last_failure);
        """,
    )


@migration("0009_attachments")
def attachments(conn: sqlite3.Connection) -> None:
    """Files attached to chat messages (`lib/chat/attachments.py`): the row says what the
    file is and where its blobs are; it goes with its message and its conversation."""
    run_script(
        conn,
        """
        CREATE TABLE attachments (
            id TEXT PRIMARY KEY,
            workspace TEXT NOT NULL,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            message_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            mime TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            blob TEXT NOT NULL,
            thumb TEXT,
            sent TEXT,
            width INTEGER,
            height INTEGER,
            text TEXT,
            tokens INTEGER NOT NULL DEFAULT 0,
            document_id TEXT REFERENCES documents (id) ON DELETE SET NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL
        );
        CREATE INDEX attachments_by_message ON attachments (message_id);
        CREATE INDEX attachments_by_conversation ON attachments (conversation_id);
        """,
    )


@migration("0010_branches")
def branches(conn: sqlite3.Connection) -> None:
    """Conversations become trees (`lib/conversations.py`): a message's `parent_id` is the
    one before it on its path, `conversations.leaf_id` the last message of the path shown.
    Each existing conversation becomes one path, in id order, ending at its newest message;
    a reply's earlier versions and n > 1 choices (`meta["alternatives"]`, until now) become
    its siblings, in their old order around the one chosen."""
    run_script(
        conn,
        """
        ALTER TABLE messages ADD COLUMN parent_id INTEGER;
        ALTER TABLE conversations ADD COLUMN leaf_id INTEGER;
        UPDATE messages SET parent_id = (
            SELECT max(p.id) FROM messages p
            WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id
        );
        UPDATE conversations SET leaf_id = (
            SELECT max(m.id) FROM messages m WHERE m.conversation_id = conversations.id
        );
        CREATE INDEX messages_by_parent ON messages (conversation_id, parent_id, created_at);
        """,
    )
    legacy = conn.execute(
        "SELECT id, conversation_id, parent_id, model, meta, created_at FROM messages "
        "WHERE role = 'assistant' AND meta LIKE '%\"alternatives\"%'"
    ).fetchall()
    for mid, cid, parent, model, meta_text, created in legacy:
        meta = json.loads(meta_text or "{}")
        versions, chosen = meta.pop("alternatives", None), meta.pop("chosen", 0)
        if not isinstance(versions, list):
            continue
        conn.execute("UPDATE messages SET meta = ? WHERE id = ?", (json.dumps(meta), mid))
        for i, text in enumerate(versions):
            if i != chosen and isinstance(text, str):
                conn.execute(
                    "INSERT INTO messages (conversation_id, parent_id, role, content, model, "
                    "created_at) VALUES (?, ?, 'assistant', ?, ?, ?)",
                    (cid, parent, text, model, created + (i - chosen) * 1e-3),
                )


@migration("0011_chunk_listings")
def chunk_listings(conn: sqlite3.Connection) -> None:
    """`chunks.listing`: 1 for a table of contents or an index (`lib/documents/listings.py`),
    kept out of retrieval. Chunks stored before are flagged here; their keyword segments
    are rebuilt on first use (`lib/documents/bm25.py`: a segment without flags is old)."""
    from lib.documents.listings import is_listing  # the one definition, pure Python

    conn.execute("ALTER TABLE chunks ADD COLUMN listing INTEGER NOT NULL DEFAULT 0")
    rows = conn.execute("SELECT id, text FROM chunks").fetchall()
    flagged = [(row[0],) for row in rows if is_listing(row[1])]
    conn.executemany("UPDATE chunks SET listing = 1 WHERE id = ?", flagged)


@migration("0012_imports")
def imports(conn: sqlite3.Connection) -> None:
    """What was imported from other apps' exports (`lib/history/importer.py`), so the same
    conversation is never imported twice into a workspace; deleting the conversation
    forgets it, so importing the export again brings it back."""
    run_script(
        conn,
        """
        CREATE TABLE imports (
            workspace TEXT NOT NULL,
            app TEXT NOT NULL,
            source_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            imported_at REAL NOT NULL,
            PRIMARY KEY (workspace, app, source_id, fingerprint)
        );
        """,
    )


@migration("0013_pinned")
def pinned(conn: sqlite3.Connection) -> None:
    """Pinned conversations stay at the top of the list (`ConversationStore.list`); the
    index serves its order, pinned first and then newest, one kind at a time."""
    run_script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX conversations_listed
            ON conversations (workspace, kind, pinned DESC, updated_at DESC);
        """,
    )


@migration("0014_folders")
def folders(conn: sqlite3.Connection) -> None:
    """A conversation may be in one folder, by name (`ConversationStore.set_folder`); NULL
    is no folder. The index serves a folder's list, pinned first and then newest."""
    run_script(
        conn,
        """
        ALTER TABLE conversations ADD COLUMN folder TEXT;
        CREATE INDEX conversations_foldered
            ON conversations (workspace, folder, pinned DESC, updated_at DESC)
            WHERE folder IS NOT NULL;
        """,
    )


# Applying them


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations in order; return the names applied now.

    Each runs in its own write transaction, taken before the applied ones are read, so a
    second process waits and then finds the work done. A migration that fails is rolled
    back and not recorded; those before it stay applied.
    """
    steps = MIGRATIONS if migrations is None else migrations
    applied = []
    while True:
        with _write_lock(conn):
            done = _recorded(conn)
            pending = next((m for m in steps if m.name not in done), None)
            if pending is None:
                return applied
            pending.apply(conn)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (pending.name, time.time()))
        applied.append(pending.name)


@contextmanager
def _write_lock(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")  # waits for another writer up to the busy timeout
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _recorded(conn: sqlite3.Connection) -> set[str]:
    """The applied migrations' names, old-style names renamed first (idempotent)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)"
    )
    conn.executemany(
        "UPDATE schema_migrations SET name = ? WHERE name = ?",
        [(new, old) for old, new in RENUMBERED.items()],
    )
    return {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """The recorded migrations, in the order they ran (which is also name order)."""
    return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


# Opening parley.db


def connect(path: Path) -> sqlite3.Connection:
    """A new connection to the database at `path`, created and migrated as needed."""
    return _open(sqlite_pool.connect, path)


def thread_connection(path: Path) -> sqlite3.Connection:
    """This thread's reused connection to `path` (see `sqlite_pool.thread_connection`)."""
    return _open(sqlite_pool.thread_connection, path)


def _open(
    opener: Callable[[Path, sqlite_pool.Prepare], sqlite3.Connection], path: Path
) -> sqlite3.Connection:
    try:
        return opener(path, _prepare)
    except sqlite3.DatabaseError as exc:
        _raise_if_corrupt(path, exc)
        raise


def check(path: Path) -> None:
    """Open `path` and read its header: raises DatabaseCorrupt if it is not a database."""
    conn = thread_connection(path)
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        _raise_if_corrupt(path, exc)
        raise


def _prepare(conn: sqlite3.Connection) -> None:
    migrate(conn)


def _raise_if_corrupt(path: Path, exc: sqlite3.DatabaseError) -> None:
    """SQLite's "not a database" and "malformed" errors become a DatabaseCorrupt."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _CORRUPT:
        return
    raise DatabaseCorrupt(
        f"The database {path} is damaged ({exc}).",
        hint=f"Stop Parley, then either move {path.name} and its -wal and -shm files aside "
        "to start with an empty database, or move the whole data directory aside and "
        "restore your latest backup into it with `python -m lib.cli restore BACKUP`.",
    ) from exc


_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
