"""A workspace's search indexes on disk: the FAISS index per embedding model and the BM25
keyword segment per document (a mixin of `DocumentLibrary`, kept apart for size).

Each workspace has one FAISS index per embedding model (vectors of different models are
not comparable), written atomically and versioned by a generation number in SQLite. A
session keeps its loaded index and reloads it only when the generation has moved, so a
query never reads the index file. Writers take a per-workspace file lock, which also
serialises a terminal and the web app working on the same data directory.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from langchain_core.documents import Document

from lib.documents.bm25 import Segment
from lib.documents.records import DocumentRecord
from lib.documents.vectorstore import ParleyFAISS
from lib.errors import NotFoundError
from lib.workspaces import require_workspace


class IndexesMixin:
    """Index methods of DocumentLibrary; they use its `_conn`, `workspace_dir` and `chunks`."""

    # Keyword (BM25) segments

    def _keywords_path(self, workspace: str, document_id: str) -> Path:
        return self.workspace_dir(workspace) / f"{document_id}.bm25.npz"

    def save_keywords(
        self, workspace: str, document_id: str, chunk_ids: Sequence[int], texts: Sequence[str]
    ) -> None:
        require_workspace(workspace)
        Segment.build(chunk_ids, texts).save(self._keywords_path(workspace, document_id))

    def keyword_segment(self, workspace: str, document: DocumentRecord) -> Segment:
        """The document's BM25 postings, rebuilt from its chunks if the file is missing."""
        require_workspace(workspace)
        if document.workspace != workspace:
            raise NotFoundError("Document not found.")
        path = self._keywords_path(workspace, document.id)
        try:
            return Segment.load(path)
        except (OSError, ValueError, KeyError):
            with self._conn() as conn:
                rows = conn.execute(
                    "SELECT id, text FROM chunks WHERE document_id = ? ORDER BY id",
                    (document.id,),
                ).fetchall()
            segment = Segment.build([r["id"] for r in rows], [r["text"] for r in rows])
            segment.save(path)
            return segment

    # Vector indexes

    def _index_path(self, workspace: str, model: str) -> Path:
        digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:16]
        return self.workspace_dir(workspace) / f"index-{digest}.faiss"

    def _generation(self, workspace: str, model: str) -> int | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT generation FROM vector_indexes WHERE workspace = ? AND model = ?",
                (workspace, model),
            ).fetchone()
        return row[0] if row else None

    def lookup(self, workspace: str):  # noqa: ANN201 - a vectorstore.Lookup
        require_workspace(workspace)

        def find(ids: list[int]) -> dict[int, Document]:
            return {i: c.to_langchain() for i, c in self.chunks(workspace, ids).items()}

        return find

    def open_index(
        self, workspace: str, model: str, cached: ParleyFAISS | None = None
    ) -> ParleyFAISS | None:
        """The workspace's index for `model`: `cached` if still current, else from disk."""
        require_workspace(workspace)
        generation = self._generation(workspace, model)
        if generation is None:
            return None
        if cached is not None and getattr(cached, "generation", None) == (
            workspace,
            model,
            generation,
        ):
            return cached
        path = self._index_path(workspace, model)
        if not path.exists():
            return None
        store = ParleyFAISS.load(path, lookup=self.lookup(workspace))
        store.generation = (workspace, model, generation)
        return store

    @contextmanager
    def update_index(self, workspace: str, model: str) -> Iterator[ParleyFAISS]:
        """Lock, load, let the caller change, then save the index and bump its generation."""
        require_workspace(workspace)
        lock_path = self.workspace_dir(workspace) / ".index.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                store = self.open_index(workspace, model) or ParleyFAISS(
                    lookup=self.lookup(workspace)
                )
                yield store
                if store.index is None:
                    return
                path = self._index_path(workspace, model)
                store.save(path)
                with self._conn() as conn:
                    conn.execute(
                        "INSERT INTO vector_indexes (workspace, model, file, generation) "
                        "VALUES (?, ?, ?, 1) ON CONFLICT (workspace, model) DO UPDATE SET "
                        "generation = generation + 1",
                        (workspace, model, path.name),
                    )
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
