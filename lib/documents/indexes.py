"""A workspace's search indexes on disk: the FAISS index per embedding model and the BM25
keyword segment per document (a mixin of `DocumentLibrary`, kept apart for size).

Each workspace has one FAISS index per embedding model (vectors of different models are
not comparable), written atomically and versioned by a generation number in SQLite. A
session keeps its loaded index and reloads it only when the generation has moved, so a
query never reads the index file. Writers take a per-workspace file lock, which also
serialises a terminal and the web app working on the same data directory.

Every index is derived data, so a damaged one is rebuilt, never fatal: a FAISS index
that is missing or fails its checksum is rebuilt from the chunks in SQLite and their
vectors in the embedding cache (no embedding request is sent), and a damaged BM25 segment
from its document's chunks. Each rebuild adds a notice to `repairs` for the UI to show.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from langchain_core.documents import Document

from lib import locks
from lib.documents.bm25 import Segment, SegmentDamaged
from lib.documents.embeddings import normalise
from lib.documents.records import DocumentRecord
from lib.documents.vectorstore import IndexDamaged, ParleyFAISS
from lib.errors import NotFoundError
from lib.workspaces import require_workspace

log = logging.getLogger(__name__)
REBUILD_BATCH = 5_000  # cached vectors read per query while rebuilding


class IndexesMixin:
    """Index methods of DocumentLibrary; they use its `_conn`, `workspace_dir`, `cache`,
    `chunks` and `repairs` (the notices of indexes rebuilt by this library object)."""

    repairs: list[str]

    # Keyword (BM25) segments

    def _keywords_path(self, workspace: str, document_id: str) -> Path:
        return self.workspace_dir(workspace) / f"{document_id}.bm25.npz"

    def save_keywords(
        self, workspace: str, document_id: str, chunk_ids: Sequence[int], texts: Sequence[str]
    ) -> None:
        require_workspace(workspace)
        Segment.build(chunk_ids, texts).save(self._keywords_path(workspace, document_id))

    def keyword_segment(self, workspace: str, document: DocumentRecord) -> Segment:
        """The document's BM25 postings, rebuilt from its chunks if missing or damaged."""
        require_workspace(workspace)
        if document.workspace != workspace:
            raise NotFoundError("Document not found.")
        path = self._keywords_path(workspace, document.id)
        try:
            segment = Segment.load(path)
            self._check_chunks(document.id, segment)
            return segment
        except FileNotFoundError:
            pass  # documents indexed before keyword segments existed get one on first use
        except SegmentDamaged as exc:
            log.warning("keyword segment %s: %s; rebuilding it", path.name, exc)
            self.repairs.append(
                f"The keyword index of {document.name} was damaged and has been rebuilt "
                "from its stored passages."
            )
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT id, text FROM chunks WHERE document_id = ? ORDER BY id", (document.id,)
            ).fetchall()
        segment = Segment.build([r["id"] for r in rows], [r["text"] for r in rows])
        segment.save(path)
        return segment

    def _check_chunks(self, document_id: str, segment: Segment) -> None:
        # A document's chunk ids are consecutive (see `chunk_ids`): count and ends suffice.
        with self._conn() as conn:
            count, low, high = conn.execute(
                "SELECT count(*), min(id), max(id) FROM chunks WHERE document_id = ?",
                (document_id,),
            ).fetchone()
        ids = segment.chunk_ids
        if len(ids) != count or (count and (ids[0] != low or ids[-1] != high)):
            raise SegmentDamaged("its chunks are not the document's")

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
        try:
            store = ParleyFAISS.load(
                self._index_path(workspace, model), lookup=self.lookup(workspace)
            )
        except (FileNotFoundError, IndexDamaged):
            with self._index_lock(workspace):  # another session may be rebuilding it
                store = self._load_or_rebuild(workspace, model)
                generation = self._generation(workspace, model)
        store.generation = (workspace, model, generation)
        return store

    @contextmanager
    def update_index(self, workspace: str, model: str) -> Iterator[ParleyFAISS]:
        """Lock, load, let the caller change, then save the index and bump its generation."""
        require_workspace(workspace)
        with self._index_lock(workspace):
            if self._generation(workspace, model) is None:
                store = ParleyFAISS(lookup=self.lookup(workspace))
            else:
                store = self._load_or_rebuild(workspace, model)
            yield store
            if store.index is not None:
                self._save_index(workspace, model, store)

    def _index_lock(self, workspace: str):  # noqa: ANN202 - a context manager
        # Also taken by lib/backup.py while it copies the database and these files.
        return locks.exclusive(self.workspace_dir(workspace) / locks.INDEX_LOCK)

    def _save_index(self, workspace: str, model: str, store: ParleyFAISS) -> None:
        path = self._index_path(workspace, model)
        store.save(path)
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO vector_indexes (workspace, model, file, generation) "
                "VALUES (?, ?, ?, 1) ON CONFLICT (workspace, model) DO UPDATE SET "
                "generation = generation + 1",
                (workspace, model, path.name),
            )

    def _load_or_rebuild(self, workspace: str, model: str) -> ParleyFAISS:
        """The saved index, or (missing or damaged) one rebuilt and saved; hold the lock."""
        path = self._index_path(workspace, model)
        try:
            return ParleyFAISS.load(path, lookup=self.lookup(workspace))
        except FileNotFoundError:
            reason = "its file is missing"
        except IndexDamaged as exc:
            reason = exc.reason
        log.warning("vector index %s (%s): %s; rebuilding it", path.name, model, reason)
        store, keyword_only = self._rebuild_index(workspace, model)
        self._save_index(workspace, model, store)
        notice = (
            f"The search index for {model} could not be used ({reason}), so Parley rebuilt "
            f"it from your stored passages and their saved embeddings: {store.size:,} "
            "passages, with no new embedding requests."
        )
        if keyword_only:
            notice += (
                f" Keyword search only for {', '.join(keyword_only)}: their embeddings "
                "were not saved; re-index them to add semantic search."
            )
        self.repairs.append(notice)
        return store

    def _rebuild_index(self, workspace: str, model: str) -> tuple[ParleyFAISS, list[str]]:
        """The index rebuilt from the embedding cache, and the documents it lacks vectors for
        (made keyword-only, as if they had been indexed without embeddings)."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT c.id, c.hash, c.document_id, d.name FROM chunks c JOIN documents d "
                "ON d.id = c.document_id WHERE d.workspace = ? AND d.embedding_model = ? "
                "ORDER BY c.id",
                (workspace, model),
            ).fetchall()
        vectors, found = self._cached_vectors(workspace, model, [r["hash"] for r in rows])
        lacking = {r["document_id"]: r["name"] for r, ok in zip(rows, found, strict=True) if not ok}
        keep = np.array([r["document_id"] not in lacking for r in rows], dtype=bool)
        store = ParleyFAISS(lookup=self.lookup(workspace))
        if keep.any():
            ids = np.array([r["id"] for r in rows], dtype=np.int64)[keep]
            store.add_vectors(ids, normalise(vectors[keep]))
        else:
            store = ParleyFAISS.empty(vectors.shape[1] or 1, lookup=self.lookup(workspace))
        if lacking:
            with self._conn() as conn:
                conn.executemany(
                    "UPDATE documents SET embedding_model = NULL WHERE id = ? AND workspace = ?",
                    [(doc_id, workspace) for doc_id in lacking],
                )
        return store, sorted(lacking.values())

    def _cached_vectors(
        self, workspace: str, model: str, hashes: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, found): one row per hash, zeros where the cache has none."""
        vectors: np.ndarray | None = None
        found = np.zeros(len(hashes), dtype=bool)
        for start in range(0, len(hashes), REBUILD_BATCH):
            part = hashes[start : start + REBUILD_BATCH]
            cached = self.cache.get(workspace, model, part)
            for i, h in enumerate(part, start):
                vector = cached.get(h)
                if vector is None:
                    continue
                if vectors is None:  # the dimension is known from the first vector
                    vectors = np.zeros((len(hashes), len(vector)), dtype=np.float32)
                if len(vector) == vectors.shape[1]:
                    vectors[i], found[i] = vector, True
        if vectors is None:
            vectors = np.zeros((len(hashes), 0), dtype=np.float32)
        return vectors, found
