"""SQLite connection and schema migrations for `parley.db`.

The schema changes only through the named migrations below, each applied once and
recorded in `schema_migrations`, so running `migrate` again is a no-op. Later features
(documents, images) append their own migrations to `MIGRATIONS`; never edit one that
has shipped.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_conversations",
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
    ),
    (
        "0002_message_search",
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
    ),
    (
        # Generated images: the file lives under the data directory (path relative to it);
        # tokens are those of the request (batch) that made the image, cost is its share.
        "0004_images",
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
    ),
    (
        "0003_documents",
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
    ),
    (
        # Keyword search moved to per-document BM25 segments (lib/documents/bm25.py): FTS5's
        # bm25() scored every matching row, 15-75 ms a query at 100k chunks.
        "0003_documents_drop_fts",
        """
        DROP TRIGGER IF EXISTS chunks_fts_insert;
        DROP TRIGGER IF EXISTS chunks_fts_delete;
        DROP TABLE IF EXISTS chunks_fts;
        """,
    ),
    (
        "0006_message_totals_index",
        """
        -- The running totals are read on every rerun; a covering index keeps that cheap
        -- for long conversations (8.5 ms -> 1.5 ms at 10,000 messages).
        CREATE INDEX messages_totals
            ON messages (conversation_id, role, prompt_tokens, completion_tokens, cost);
        """,
    ),
]

_migrated: set[str] = set()
_migrate_lock = threading.Lock()
# One idle connection per recently opened database, held so that closing a store call's
# short-lived connection never closes the last one: SQLite checkpoints (with an fsync) and
# deletes the WAL whenever the last connection closes, which cost ~1-20 ms per call
# (see bench/chat_overhead.py). Bounded, since tests open a fresh database each.
_ANCHOR_LIMIT = 8
_anchors: OrderedDict[str, sqlite3.Connection] = OrderedDict()


def connect(path: Path) -> sqlite3.Connection:
    """Open the database at `path`, creating and migrating it as needed.

    Connections are never shared between threads: Streamlit runs each session's script in
    its own thread. The caller closes this one; `thread_connection` reuses one per thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    # In WAL mode NORMAL is corruption-safe and survives an app crash; only a power cut or
    # OS crash can lose the last commits. FULL would fsync the WAL on every commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    key = str(path.resolve())
    if key not in _migrated:
        with _migrate_lock:
            if key not in _migrated:
                conn.execute("PRAGMA journal_mode = WAL")
                migrate(conn)
                _migrated.add(key)
                _hold_open(path, key)
    return conn


def _hold_open(path: Path, key: str) -> None:
    # Never queried again, only closed (maybe from another thread) when evicted.
    anchor = sqlite3.connect(path, timeout=30, check_same_thread=False)
    anchor.execute("PRAGMA schema_version").fetchall()  # a read opens the WAL and holds it
    _anchors[key] = anchor
    while len(_anchors) > _ANCHOR_LIMIT:
        _anchors.popitem(last=False)[1].close()


_THREAD_LIMIT = 4
_per_thread = threading.local()


def thread_connection(path: Path) -> sqlite3.Connection:
    """This thread's open connection to `path`, for callers that do not close it.

    A new connection costs ~0.3 ms before its first query (SQLite parses the whole schema),
    more than most store queries; reusing one per thread saves that on every call. Never
    shared between threads; Streamlit runs each script run in its own thread, whose
    connections close when it ends. A few per thread, since tests use a fresh database each.
    """
    conns: OrderedDict[str, sqlite3.Connection] = _per_thread.__dict__.setdefault(
        "conns", OrderedDict()
    )
    key = str(path)
    conn = conns.get(key)
    if conn is None:
        conn = conns[key] = connect(path)
        while len(conns) > _THREAD_LIMIT:
            conns.popitem(last=False)[1].close()
    else:
        conns.move_to_end(key)  # least recently used goes first
        if conn.in_transaction:
            conn.rollback()  # a caller failed mid-transaction: never carry its writes forward
    return conn


def migrate(conn: sqlite3.Connection, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply pending migrations in order; return the names applied now."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    applied = []
    for name, sql in migrations or MIGRATIONS:
        if name in done:
            continue
        # executescript commits first, so wrap each migration in its own transaction.
        try:
            conn.executescript(
                f"BEGIN;\n{sql}\n"
                f"INSERT INTO schema_migrations VALUES ('{name}', {time.time()});\nCOMMIT;"
            )
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
