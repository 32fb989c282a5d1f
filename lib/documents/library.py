"""A workspace's document library: rows in parley.db, files and indexes on disk.

Every method takes the workspace first and every query filters on it. Uploaded files are
kept (so a document can be re-indexed) under generated names, `<document id>.<ext>`, in
the workspace's own directory, `<data dir>/documents/<sha256(workspace)[:32]>/`; the
uploaded file name is only ever displayed, never used as a path.

The search indexes beside the files (FAISS per embedding model, BM25 per document) are
handled by the methods in `lib/documents/indexes.py`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lib.documents.chunking import Chunk
from lib.documents.embeddings import EmbeddingCache
from lib.documents.extract import Page
from lib.documents.indexes import IndexesMixin
from lib.documents.records import ChunkRecord, DocumentRecord, PageRecord
from lib.errors import NotFoundError
from lib.store import sqlite_schema as db
from lib.workspaces import require_workspace

EXTENSIONS = {"pdf": "pdf", "text": "txt", "markdown": "md"}


def workspace_key(workspace: str) -> str:
    require_workspace(workspace)
    return hashlib.sha256(workspace.encode("utf-8")).hexdigest()[:32]


class DocumentLibrary(IndexesMixin):
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "parley.db"
        self.cache = EmbeddingCache(self.db_path)
        self.repairs: list[str] = []  # notices of damaged indexes rebuilt (indexes.py)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = db.connect(self.db_path)
        try:
            yield conn
        finally:
            conn.close()

    def workspace_dir(self, workspace: str) -> Path:
        path = self.data_dir / "documents" / workspace_key(workspace)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # Documents

    def list(self, workspace: str) -> list[DocumentRecord]:
        workspace_key(workspace)
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT * FROM documents WHERE workspace = ? ORDER BY created_at DESC",
                (workspace,),
            ).fetchall()
        return [DocumentRecord.from_row(r) for r in rows]

    def versions(self, workspace: str) -> list[tuple[str, float]]:
        """(id, indexed_at) of the ready documents: a cheap check that nothing changed."""
        workspace_key(workspace)
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT id, indexed_at FROM documents WHERE workspace = ? AND status = 'ready' "
                "ORDER BY created_at DESC",
                (workspace,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def get(self, workspace: str, document_id: str) -> DocumentRecord:
        workspace_key(workspace)
        with self._conn() as conn:
            return self._get(conn, workspace, document_id)

    def _get(self, conn: sqlite3.Connection, workspace: str, document_id: str) -> DocumentRecord:
        workspace_key(workspace)
        row = conn.execute(
            "SELECT * FROM documents WHERE id = ? AND workspace = ?", (document_id, workspace)
        ).fetchone()
        if row is None:
            raise NotFoundError("Document not found.")
        return DocumentRecord.from_row(row)

    def find_by_hash(self, workspace: str, sha256: str) -> DocumentRecord | None:
        workspace_key(workspace)
        with self._conn() as conn:
            row = conn.execute(
                "SELECT * FROM documents WHERE workspace = ? AND sha256 = ?", (workspace, sha256)
            ).fetchone()
        return DocumentRecord.from_row(row) if row else None

    def create(
        self,
        workspace: str,
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
        """Store the file and its rows (status "indexing"); returns the chunk ids."""
        workspace_key(workspace)
        doc_id = uuid.uuid4().hex
        stored_as = f"{doc_id}.{EXTENSIONS[kind]}"
        path = self.workspace_dir(workspace) / stored_as
        path.write_bytes(data)
        try:
            with self._conn() as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO documents (id, workspace, name, sha256, size, kind, stored_as, "
                    "status, report, tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (doc_id, workspace, name, sha256, len(data), kind, stored_as, "indexing",
                     json.dumps(report), sum(page_tokens), time.time()),
                )  # fmt: skip
                ids = self._insert_content(conn, doc_id, pages, page_tokens, chunks)
                conn.execute("COMMIT")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return self.get(workspace, doc_id), ids

    def replace_content(
        self,
        workspace: str,
        document_id: str,
        *,
        report: dict[str, Any],
        pages: Sequence[Page],
        page_tokens: Sequence[int],
        chunks: Sequence[Chunk],
    ) -> tuple[list[int], list[int]]:
        """Swap a document's pages and chunks (re-index); returns (old ids, new ids)."""
        workspace_key(workspace)
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            self._get(conn, workspace, document_id)
            old = [r[0] for r in conn.execute(
                "SELECT id FROM chunks WHERE document_id = ?", (document_id,))]  # fmt: skip
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            conn.execute("DELETE FROM document_pages WHERE document_id = ?", (document_id,))
            ids = self._insert_content(conn, document_id, pages, page_tokens, chunks)
            conn.execute(
                "UPDATE documents SET status = 'indexing', report = ?, tokens = ? WHERE id = ?",
                (json.dumps(report), sum(page_tokens), document_id),
            )
            conn.execute("COMMIT")
        return old, ids

    def _insert_content(
        self,
        conn: sqlite3.Connection,
        document_id: str,
        pages: Sequence[Page],
        page_tokens: Sequence[int],
        chunks: Sequence[Chunk],
    ) -> list[int]:
        conn.executemany(
            "INSERT INTO document_pages VALUES (?, ?, ?, ?, ?, ?)",
            [(document_id, i, p.number, p.label, n, p.text)
             for i, (p, n) in enumerate(zip(pages, page_tokens, strict=True), start=1)],
        )  # fmt: skip
        ids = []
        for c in chunks:  # one transaction: the ids come out consecutive
            cur = conn.execute(
                "INSERT INTO chunks (document_id, page, label, start, end, tokens, hash, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (document_id, c.page, c.label, c.start, c.end, c.tokens, c.hash, c.text),
            )
            ids.append(cur.lastrowid)
        return ids

    def mark_ready(
        self, workspace: str, document_id: str, embedding_model: str | None, report: dict
    ) -> None:
        workspace_key(workspace)
        with self._conn() as conn:
            conn.execute(
                "UPDATE documents SET status = 'ready', embedding_model = ?, report = ?, "
                "indexed_at = ? WHERE id = ? AND workspace = ?",
                (embedding_model, json.dumps(report), time.time(), document_id, workspace),
            )

    def read_file(self, workspace: str, document: DocumentRecord) -> bytes:
        workspace_key(workspace)
        if document.workspace != workspace:
            raise NotFoundError("Document not found.")
        return (self.workspace_dir(workspace) / document.stored_as).read_bytes()

    def delete(self, workspace: str, document_id: str) -> None:
        """Delete a document: its rows, vectors, unshared cache entries and stored file."""
        workspace_key(workspace)
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            doc = self._get(conn, workspace, document_id)
            rows = conn.execute(
                "SELECT id, hash FROM chunks WHERE document_id = ?", (document_id,)
            ).fetchall()
            conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            hashes = sorted({r["hash"] for r in rows})
            for i in range(0, len(hashes), 500):
                part = hashes[i : i + 500]
                conn.execute(
                    f"DELETE FROM embedding_cache WHERE workspace = ? AND hash IN "
                    f"({', '.join('?' * len(part))}) AND hash NOT IN (SELECT c.hash FROM chunks c "
                    "JOIN documents d ON d.id = c.document_id WHERE d.workspace = ?)",
                    [workspace, *part, workspace],
                )
            conn.execute("COMMIT")
        if doc.embedding_model:
            with self.update_index(workspace, doc.embedding_model) as store:
                store.remove(r["id"] for r in rows)
        (self.workspace_dir(workspace) / doc.stored_as).unlink(missing_ok=True)
        self._keywords_path(workspace, doc.id).unlink(missing_ok=True)

    # Chunks and pages

    def chunks(self, workspace: str, ids: Sequence[int]) -> dict[int, ChunkRecord]:
        workspace_key(workspace)
        found: dict[int, ChunkRecord] = {}
        with self._conn() as conn:
            for i in range(0, len(ids), 500):
                part = list(ids[i : i + 500])
                rows = conn.execute(
                    "SELECT c.*, d.name AS file FROM chunks c JOIN documents d "
                    f"ON d.id = c.document_id WHERE d.workspace = ? AND c.id IN "
                    f"({', '.join('?' * len(part))})",
                    [workspace, *part],
                ).fetchall()
                for r in rows:
                    found[r["id"]] = ChunkRecord(
                        r["id"], r["document_id"], r["file"], r["page"], r["label"],
                        r["start"], r["end"], r["tokens"], r["text"],
                    )  # fmt: skip
        return found

    def chunk_ids(self, workspace: str, document_ids: Sequence[str]) -> np.ndarray:
        """The chunk ids of these documents, from each one's id range.

        A document's chunks are inserted in one transaction, so their AUTOINCREMENT ids
        are consecutive; two indexed lookups per document (min, max) then give them all,
        where selecting every id would cost a scan per query at 100k chunks.
        """
        workspace_key(workspace)
        ranges = []
        with self._conn() as conn:
            for doc_id in document_ids:
                owned = conn.execute(
                    "SELECT 1 FROM documents WHERE id = ? AND workspace = ?", (doc_id, workspace)
                ).fetchone()
                if owned is None:
                    continue
                low = conn.execute(
                    "SELECT min(id) FROM chunks WHERE document_id = ?", (doc_id,)
                ).fetchone()[0]
                high = conn.execute(
                    "SELECT max(id) FROM chunks WHERE document_id = ?", (doc_id,)
                ).fetchone()[0]
                if low is not None:
                    ranges.append(np.arange(low, high + 1, dtype=np.int64))
        return np.concatenate(ranges) if ranges else np.zeros(0, dtype=np.int64)

    def pages(self, workspace: str, document_ids: Sequence[str]) -> list[PageRecord]:
        """Every page of these documents, in the order given, then page order."""
        workspace_key(workspace)
        with self._conn() as conn:
            out = []
            for doc_id in document_ids:
                rows = conn.execute(
                    "SELECT p.*, d.name AS file FROM document_pages p JOIN documents d "
                    "ON d.id = p.document_id WHERE d.workspace = ? AND d.id = ? ORDER BY p.page",
                    (workspace, doc_id),
                ).fetchall()
                out += [
                    PageRecord(r["document_id"], r["file"], r["page"], r["number"], r["label"],
                               r["tokens"], r["text"])
                    for r in rows
                ]  # fmt: skip
        return out

    # Conversations' document choices

    def conversation_documents(self, workspace: str, conversation_id: str) -> list[str]:
        workspace_key(workspace)
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT cd.document_id FROM conversation_documents cd "
                "JOIN documents d ON d.id = cd.document_id "
                "JOIN conversations c ON c.id = cd.conversation_id "
                "WHERE cd.conversation_id = ? AND d.workspace = ? AND c.workspace = ? "
                "ORDER BY d.created_at",
                (conversation_id, workspace, workspace),
            ).fetchall()
        return [r[0] for r in rows]

    def set_conversation_documents(
        self, workspace: str, conversation_id: str, document_ids: Sequence[str]
    ) -> None:
        workspace_key(workspace)
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            owned = conn.execute(
                "SELECT 1 FROM conversations WHERE id = ? AND workspace = ?",
                (conversation_id, workspace),
            ).fetchone()
            if owned is None:
                conn.execute("ROLLBACK")
                raise NotFoundError("Conversation not found.")
            conn.execute(
                "DELETE FROM conversation_documents WHERE conversation_id = ?", (conversation_id,)
            )
            conn.executemany(
                "INSERT INTO conversation_documents SELECT ?, id FROM documents "
                "WHERE id = ? AND workspace = ?",
                [(conversation_id, d, workspace) for d in document_ids],
            )
            conn.execute("COMMIT")

    def chat_settings(self, workspace: str, conversation_id: str) -> tuple[str, int]:
        """(mode, top_k) of a document conversation: mode "auto" or "retrieval"."""
        workspace_key(workspace)
        with self._conn() as conn:
            row = conn.execute(
                "SELECT s.mode, s.top_k FROM document_chats s JOIN conversations c "
                "ON c.id = s.conversation_id WHERE s.conversation_id = ? AND c.workspace = ?",
                (conversation_id, workspace),
            ).fetchone()
        return (row["mode"], row["top_k"]) if row else ("auto", 6)

    def set_chat_settings(
        self, workspace: str, conversation_id: str, mode: str, top_k: int
    ) -> None:
        workspace_key(workspace)
        if mode not in ("auto", "retrieval") or not 1 <= top_k <= 20:
            raise ValueError("mode must be auto or retrieval, top_k 1..20")
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO document_chats SELECT id, ?, ? FROM conversations "
                "WHERE id = ? AND workspace = ? ON CONFLICT (conversation_id) "
                "DO UPDATE SET mode = excluded.mode, top_k = excluded.top_k",
                (mode, top_k, conversation_id, workspace),
            )
