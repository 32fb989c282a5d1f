"""A workspace's document library: documents, their pages and chunks, and which documents
each conversation searches, in the backend's database; the uploaded files in its blob
store.

`DocumentLibrary(backend, workspace)` is bound to one workspace (`WorkspaceStore`): no
method takes another, and every query filters on `self.workspace`, directly or through
the document its rows belong to. Uploaded files are kept (so a document can be
re-indexed) under generated names, `<workspace dir>/documents/<document id>.<ext>`; the
uploaded file name is only ever displayed, never part of a key. A row keeps its file's
key in `stored_as`; rows written before the blob store hold a bare name, whose file is
`documents/<sha256(workspace)[:32]>/<name>` (`legacy_folder`).

Searching goes through `self.search` (`lib/documents/search.py`): index files on SQLite,
the database itself on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from lib.documents.chunking import Chunk
from lib.documents.embeddings import EmbeddingCache
from lib.documents.extract import Page
from lib.documents.formats.kinds import READERS
from lib.documents.listings import is_listing
from lib.documents.records import ChunkRecord, DocumentRecord, PageRecord
from lib.documents.search import Search, open_search
from lib.errors import NotFoundError
from lib.store.backend import Backend, Connection
from lib.store.base import WorkspaceStore

EXTENSIONS = {"pdf": "pdf", "text": "txt", "markdown": "md", **{k: k for k in READERS}}  # docx...
EXTENSIONS.update(png="png", jpeg="jpg", tiff="tif")  # scans, OCR'd (lib/documents/ocr.py)
_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
_RECORD_COLUMNS = 'c.id, c.document_id, d.name, c.page, c.label, c.start, c."end", c.tokens, c.text'


def workspace_key(workspace: str) -> str:
    """The workspace's folder under `documents/`: where files were kept before the blob
    store, and where SQLite's index files still are (lib/backup.py locks it)."""
    return hashlib.sha256(workspace.encode("utf-8")).hexdigest()[:32]


class AlreadyStored(Exception):
    """The workspace already has a document with these bytes (another session's upload)."""


class DocumentLibrary(WorkspaceStore):
    def __init__(self, backend: Backend, workspace: str) -> None:
        super().__init__(backend, workspace)
        self.cache = EmbeddingCache(backend, workspace)
        self._search: Search | None = None

    @property
    def search(self) -> Search:
        """This library's search indexes (on SQLite, loaded once and kept with it)."""
        if self._search is None:
            self._search = open_search(self)
        return self._search

    @property
    def repairs(self) -> list[str]:
        """Notices of damaged indexes rebuilt, for the page to show once."""
        return self.search.repairs

    # Documents

    def list(self) -> list[DocumentRecord]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT * FROM documents WHERE workspace = ? ORDER BY created_at DESC",
                (self.workspace,),
            ).fetchall()
        return [DocumentRecord.from_row(r) for r in rows]

    def versions(self) -> list[tuple[str, float, str | None]]:
        """(id, indexed_at, embedding model) of the ready documents: a cheap check that
        nothing changed."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT id, indexed_at, embedding_model FROM documents WHERE workspace = ? "
                "AND status = 'ready' ORDER BY created_at DESC",
                (self.workspace,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def get(self, document_id: str) -> DocumentRecord:
        with self._conn() as conn:
            return self._get(conn, document_id)

    def _get(self, conn: Connection, document_id: str) -> DocumentRecord:
        row = conn.execute(
            "SELECT * FROM documents WHERE id = ? AND workspace = ?", (document_id, self.workspace)
        ).fetchone()
        if row is None:
            raise NotFoundError("Document not found.")
        return DocumentRecord.from_row(row)

    def find_by_hash(self, sha256: str) -> DocumentRecord | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT * FROM documents WHERE workspace = ? AND sha256 = ?",
                (self.workspace, sha256),
            ).fetchone()
        return DocumentRecord.from_row(row) if row else None

    def create(
        self,
        *,
        name: str,
        data: bytes,
        sha256: str,
        kind: str,
        report: dict[str, Any],
        pages: Sequence[Page],
        page_tokens: Sequence[int],
        chunks: Sequence[Chunk],
    ) -> tuple[DocumentRecord, list[int]]:
        """Store the file and its rows (status "indexing"); returns the chunk ids.

        Raises AlreadyStored if another session stored the same bytes meanwhile.
        """
        doc_id = uuid.uuid4().hex
        key = self.blob_key("documents", f"{doc_id}.{EXTENSIONS[kind]}")
        self.blobs.put(key, data)  # the file before its row: a row always has its file
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO documents (id, workspace, name, sha256, size, kind, stored_as, "
                    "status, report, tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (doc_id, self.workspace, name, sha256, len(data), kind, key, "indexing",
                     json.dumps(report), sum(page_tokens), time.time()),
                )  # fmt: skip
                ids = self._insert_content(conn, doc_id, pages, page_tokens, chunks)
        except BaseException as exc:
            self.blobs.delete(key)
            if _is_unique_violation(exc):
                raise AlreadyStored(sha256) from exc
            raise
        return self.get(doc_id), ids

    def replace_content(
        self,
        document_id: str,
        *,
        report: dict[str, Any],
        pages: Sequence[Page],
        page_tokens: Sequence[int],
        chunks: Sequence[Chunk],
    ) -> tuple[list[int], list[int]]:
        """Swap a document's pages and chunks (re-index); returns (old ids, new ids)."""
        with self._transaction() as conn:
            self._get(conn, document_id)
            found = conn.execute(
                "SELECT id FROM chunks WHERE document_id = ? ORDER BY id", (document_id,)
            )
            old = [r[0] for r in found]
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            conn.execute("DELETE FROM document_pages WHERE document_id = ?", (document_id,))
            ids = self._insert_content(conn, document_id, pages, page_tokens, chunks)
            conn.execute(
                "UPDATE documents SET status = 'indexing', report = ?, tokens = ? "
                "WHERE id = ? AND workspace = ?",
                (json.dumps(report), sum(page_tokens), document_id, self.workspace),
            )
        return old, ids

    def _insert_content(
        self,
        conn: Connection,
        document_id: str,
        pages: Sequence[Page],
        page_tokens: Sequence[int],
        chunks: Sequence[Chunk],
    ) -> list[int]:
        conn.executemany(
            "INSERT INTO document_pages (document_id, page, number, label, tokens, text) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(document_id, i, p.number, p.label, n, p.text)
             for i, (p, n) in enumerate(zip(pages, page_tokens, strict=True), start=1)],
        )  # fmt: skip
        if self.dialect == "sqlite":
            ids = []
            for c in chunks:  # under the write lock: the AUTOINCREMENT ids are consecutive
                cur = conn.execute(
                    'INSERT INTO chunks (document_id, page, label, start, "end", tokens, hash, '
                    "text, listing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (document_id, c.page, c.label, c.start, c.end, c.tokens, c.hash, c.text,
                     int(is_listing(c.text))),
                )  # fmt: skip
                ids.append(cur.lastrowid)
            return ids
        # PostgreSQL: the ids first, in one round trip, then the rows in one pipelined batch.
        ids = [r[0] for r in conn.execute(
            "SELECT nextval(pg_get_serial_sequence('chunks', 'id')) FROM generate_series(1, ?)",
            (len(chunks),))] if chunks else []  # fmt: skip
        conn.executemany(
            'INSERT INTO chunks (id, document_id, page, label, start, "end", tokens, hash, text, '
            "listing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i, document_id, c.page, c.label, c.start, c.end, c.tokens, c.hash, c.text,
              int(is_listing(c.text))) for i, c in zip(ids, chunks, strict=True)],
        )  # fmt: skip
        return ids

    def mark_ready(self, document_id: str, embedding_model: str | None, report: dict) -> None:
        with self._conn() as conn:
            conn.execute(
                "UPDATE documents SET status = 'ready', embedding_model = ?, report = ?, "
                "indexed_at = ? WHERE id = ? AND workspace = ?",
                (embedding_model, json.dumps(report), time.time(), document_id, self.workspace),
            )

    def file_key(self, document: DocumentRecord) -> str:
        """The blob key of a document's file (rows from before the blob store: see above)."""
        if document.workspace != self.workspace:
            raise NotFoundError("Document not found.")
        if "/" in document.stored_as:
            return document.stored_as
        return f"documents/{workspace_key(self.workspace)}/{document.stored_as}"

    def read_file(self, document: DocumentRecord) -> bytes:
        return self.blobs.get(self.file_key(document))

    def delete(self, document_id: str) -> None:
        """Delete a document: its rows, vectors, unshared cache entries and stored file."""
        with self._transaction() as conn:
            doc = self._get(conn, document_id)
            rows = conn.execute(
                "SELECT id, hash FROM chunks WHERE document_id = ?", (document_id,)
            ).fetchall()
            conn.execute(
                "DELETE FROM documents WHERE id = ? AND workspace = ?",
                (document_id, self.workspace),
            )
            hashes = sorted({r["hash"] for r in rows})
            for i in range(0, len(hashes), 500):
                part = hashes[i : i + 500]
                conn.execute(
                    f"DELETE FROM embedding_cache WHERE workspace = ? AND hash IN "
                    f"({', '.join('?' * len(part))}) AND hash NOT IN (SELECT c.hash FROM chunks c "
                    "JOIN documents d ON d.id = c.document_id WHERE d.workspace = ?)",
                    [self.workspace, *part, self.workspace],
                )
        self.search.remove(doc, [r["id"] for r in rows])
        self.blobs.delete(self.file_key(doc))

    # Chunks and pages

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        found: dict[int, ChunkRecord] = {}
        on_postgres = self.dialect == "postgresql"
        with self._conn() as conn:
            for i in range(0, len(ids), 500):
                part = [int(x) for x in ids[i : i + 500]]
                # CROSS JOIN keeps chunks the outer loop on SQLite (PostgreSQL plans it as
                # any inner join): SQLite otherwise walks every document of the workspace
                # and probes each id in each, 11.8 ms against 1.8 ms for 260 ids at 100k
                # chunks, most of a hybrid search's time (bench/query.py).
                # PostgreSQL takes the ids as one array literal: a statement of a hundred
                # parameters is parsed afresh each time (psycopg caches up to 50), 1.7 ms;
                # and its rows as plain tuples, in ChunkRecord's order (3.3 against 4.2 ms
                # of the client's time for 190 passages).
                if on_postgres:
                    from lib.store.postgres import array

                    chosen, params = "= ANY(?::bigint[])", [self.workspace, array(part)]
                else:
                    chosen, params = f"IN ({', '.join('?' * len(part))})", [self.workspace, *part]
                sql = (
                    f"SELECT {_RECORD_COLUMNS} FROM chunks c CROSS JOIN documents d "
                    f"WHERE d.id = c.document_id AND d.workspace = ? AND c.id {chosen}"
                )
                cursor = (
                    conn.execute(sql, params, plain=True)
                    if on_postgres
                    else conn.execute(sql, params)
                )
                for row in cursor.fetchall():
                    found[row[0]] = ChunkRecord(*row)
        return found

    def chunk_ids(self, document_ids: Sequence[str]) -> np.ndarray:
        """The chunk ids of these documents, in order."""
        out = []
        with self._conn() as conn:
            for doc_id in document_ids:
                rows = conn.execute(
                    "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                    "WHERE d.workspace = ? AND d.id = ? ORDER BY c.id",
                    (self.workspace, doc_id),
                )
                out += [r[0] for r in rows]
        return np.array(out, dtype=np.int64)

    def chunk_texts(self, document_id: str) -> tuple[list[int], list[str]]:
        """(ids, texts) of a document's chunks in order, to rebuild its keyword index."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT c.id, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE d.workspace = ? AND d.id = ? ORDER BY c.id",
                (self.workspace, document_id),
            ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def pages(self, document_ids: Sequence[str]) -> list[PageRecord]:
        """Every page of these documents, in the order given, then page order."""
        with self._conn() as conn:
            out = []
            for doc_id in document_ids:
                rows = conn.execute(
                    "SELECT p.document_id, p.page, p.number, p.label, p.tokens, p.text, "
                    "d.name AS file FROM document_pages p JOIN documents d "
                    "ON d.id = p.document_id WHERE d.workspace = ? AND d.id = ? ORDER BY p.page",
                    (self.workspace, doc_id),
                ).fetchall()
                out += [
                    PageRecord(r["document_id"], r["file"], r["page"], r["number"], r["label"],
                               r["tokens"], r["text"])
                    for r in rows
                ]  # fmt: skip
        return out

    # Conversations' document choices

    def conversation_documents(self, conversation_id: str) -> list[str]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT cd.document_id FROM conversation_documents cd "
                "JOIN documents d ON d.id = cd.document_id "
                "JOIN conversations c ON c.id = cd.conversation_id "
                "WHERE cd.conversation_id = ? AND d.workspace = ? AND c.workspace = ? "
                "ORDER BY d.created_at",
                (conversation_id, self.workspace, self.workspace),
            ).fetchall()
        return [r[0] for r in rows]

    def set_conversation_documents(self, conversation_id: str, document_ids: Sequence[str]) -> None:
        with self._transaction() as conn:
            owned = conn.execute(
                "SELECT 1 FROM conversations WHERE id = ? AND workspace = ?",
                (conversation_id, self.workspace),
            ).fetchone()
            if owned is None:
                raise NotFoundError("Conversation not found.")
            conn.execute(
                "DELETE FROM conversation_documents WHERE conversation_id = ?", (conversation_id,)
            )
            conn.executemany(
                "INSERT INTO conversation_documents (conversation_id, document_id) "
                "SELECT ?, id FROM documents WHERE id = ? AND workspace = ? "
                "ON CONFLICT DO NOTHING",
                [(conversation_id, d, self.workspace) for d in document_ids],
            )

    def chat_settings(self, conversation_id: str) -> tuple[str, int]:
        """(mode, top_k) of a document conversation: mode "auto" (passages, or whole when
        small), "whole" (whole when they fit) or "retrieval" (passages only); see rag."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT s.mode, s.top_k FROM document_chats s JOIN conversations c "
                "ON c.id = s.conversation_id WHERE s.conversation_id = ? AND c.workspace = ?",
                (conversation_id, self.workspace),
            ).fetchone()
        return (row["mode"], row["top_k"]) if row else ("auto", 6)

    def set_chat_settings(self, conversation_id: str, mode: str, top_k: int) -> None:
        if mode not in ("auto", "whole", "retrieval") or not 1 <= top_k <= 20:
            raise ValueError("mode must be auto, whole or retrieval, top_k 1..20")
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO document_chats (conversation_id, mode, top_k) "
                "SELECT id, ?, ? FROM conversations WHERE id = ? AND workspace = ? "
                "ON CONFLICT (conversation_id) "
                "DO UPDATE SET mode = excluded.mode, top_k = excluded.top_k",
                (mode, top_k, conversation_id, self.workspace),
            )


def _is_unique_violation(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.IntegrityError) or (
        getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION
    )
