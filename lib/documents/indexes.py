"""Search on SQLite: index files beside the database, a FAISS index per embedding model and
a BM25 keyword segment per document (`FileSearch`, one implementation of
`lib/documents/search.py`).

Each workspace has one FAISS index per embedding model (vectors of different models are
not comparable), written atomically and versioned by a generation number in SQLite, and
one BM25 segment per document. They live in `<data dir>/documents/<workspace key>/`
(`library.workspace_key`; lib/backup.py takes the lock there). A `FileSearch` belongs to
one library object, which a page keeps in its session: it keeps the loaded index and the
keyword pack and reloads them only when the generation or the documents have moved, so
a query never reads an index file. Writers take a per-workspace file lock, which also
serialises a terminal and the web app working on the same data directory.

Every index is derived data, so a damaged one is rebuilt, never fatal: a FAISS index
that is missing or fails its checksum is rebuilt from the chunks in SQLite and their
vectors in the embedding cache (no embedding request is sent), and a damaged BM25 segment
from its document's chunks. Each rebuild adds a notice to `repairs` for the UI to show.
A sound index of a type an older Parley wrote (an inverted file, whose recall fell to
0.92-0.95: lib/documents/vectorstore.py) is rebuilt from its own vectors on first load
and saved, under the lock, with nothing to tell.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lib import locks
from lib.documents import bm25
from lib.documents.bm25 import Segment, SegmentDamaged, SegmentOutdated
from lib.documents.embeddings import normalise
from lib.documents.records import DocumentRecord
from lib.documents.search import Hits
from lib.documents.vectorstore import Blocks, IndexDamaged, ParleyFAISS
from lib.errors import NotFoundError

if TYPE_CHECKING:
    from lib.documents.library import DocumentLibrary

log = logging.getLogger(__name__)
REBUILD_BATCH = 5_000  # cached vectors read per query while rebuilding


class FileSearch:
    side_by_side = False  # measured: no faster with the keyword search in a thread

    def __init__(self, library: DocumentLibrary) -> None:
        from lib.documents.library import workspace_key

        self.library = library
        self.folder = library.backend.data_dir / "documents" / workspace_key(library.workspace)
        self.repairs: list[str] = []
        self._stores: dict[str, tuple[int, ParleyFAISS]] = {}  # model: (generation, index)
        self._version: tuple | None = None
        self._pack: bm25.Pack | None = None
        self._models: dict[str, str | None] = {}  # ready document: its embedding model

    def _conn(self):  # noqa: ANN202 - the backend's connection context manager
        return self.library.backend.connection()

    # The seam (lib/documents/search.py)

    def add(
        self,
        document_id: str,
        chunk_ids: Sequence[int],
        texts: Sequence[str],
        model: str | None,
        vectors: np.ndarray | Blocks | None,
    ) -> None:
        self._folder()
        Segment.build(chunk_ids, texts).save(self._keywords_path(document_id))
        if model and vectors is not None:
            with self.update_index(model) as store:
                store.add_vectors(chunk_ids, vectors)

    def remove(self, document: DocumentRecord, chunk_ids: Sequence[int]) -> None:
        if document.embedding_model:
            with self.update_index(document.embedding_model) as store:
                store.remove(chunk_ids)
        self._keywords_path(document.id).unlink(missing_ok=True)

    def keywords(self, question: str, document_ids: Sequence[str], k: int) -> Hits:
        return bm25.search(self.pack(), question, k, document_ids)

    def vectors(self, model: str, vector: np.ndarray, document_ids: Sequence[str], k: int) -> Hits:
        store = self.open_index(model)
        if store is None or store.size == 0:
            return []
        pack = self.pack()
        embedded = {doc_id for doc_id, m in self._models.items() if m == model}
        # Every vector of the index belongs to a chosen document: no id filter needed
        # (the common case, and the fastest).
        whole = embedded <= set(document_ids) and not pack.listing.any()
        # Tables of contents and indexes keep their vectors (the index holds every
        # chunk's) but are never results: they are left out of the ids searched.
        allowed = None if whole else pack.searchable_ids(document_ids)
        return store.search_vector(vector, k, allowed)

    def vector_count(self, model: str) -> int:
        store = self.open_index(model)
        return store.size if store is not None else 0

    def check(self, model: str) -> None:
        self.open_index(model)

    # Keyword (BM25) segments

    def pack(self) -> bm25.Pack:
        """The workspace's segments as one, rebuilt only when its documents changed."""
        version = tuple(self.library.versions())
        if self._pack is None or version != self._version:
            docs = [d for d in self.library.list() if d.status == "ready"]
            self._pack = bm25.Pack.of({d.id: self.keyword_segment(d) for d in docs})
            self._models = {d.id: d.embedding_model for d in docs}
            self._version = tuple((d.id, d.indexed_at, d.embedding_model) for d in docs)
        return self._pack

    def _keywords_path(self, document_id: str) -> Path:
        return self.folder / f"{document_id}.bm25.npz"

    def keyword_segment(self, document: DocumentRecord) -> Segment:
        """The document's BM25 postings, rebuilt from its chunks if missing or damaged."""
        if document.workspace != self.library.workspace:
            raise NotFoundError("Document not found.")
        path = self._keywords_path(document.id)
        try:
            segment = Segment.load(path)
            self._check_chunks(document.id, segment)
            return segment
        except (FileNotFoundError, SegmentOutdated):
            pass  # documents indexed before keyword segments (or listings) get one on use
        except SegmentDamaged as exc:
            log.warning("keyword segment %s: %s; rebuilding it", path.name, exc)
            self.repairs.append(
                f"The keyword index of {document.name} was damaged and has been rebuilt "
                "from its stored passages."
            )
        segment = Segment.build(*self.library.chunk_texts(document.id))
        self._folder()
        segment.save(path)
        return segment

    def _check_chunks(self, document_id: str, segment: Segment) -> None:
        # A document's chunk ids are consecutive (inserted under one write lock): count
        # and ends suffice.
        with self._conn() as conn:
            count, low, high = conn.execute(
                "SELECT count(*), min(id), max(id) FROM chunks WHERE document_id = ?",
                (document_id,),
            ).fetchone()
        ids = segment.chunk_ids
        if len(ids) != count or (count and (ids[0] != low or ids[-1] != high)):
            raise SegmentDamaged("its chunks are not the document's")

    # Vector indexes

    def _folder(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def _index_path(self, model: str) -> Path:
        digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:16]
        return self.folder / f"index-{digest}.faiss"

    def _generation(self, model: str) -> int | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT generation FROM vector_indexes WHERE workspace = ? AND model = ?",
                (self.library.workspace, model),
            ).fetchone()
        return row[0] if row else None

    def open_index(self, model: str) -> ParleyFAISS | None:
        """The workspace's index for `model`: the one loaded before if still current."""
        generation = self._generation(model)
        if generation is None:
            return None
        loaded = self._stores.get(model)
        if loaded is not None and loaded[0] == generation:
            return loaded[1]
        try:
            store: ParleyFAISS | None = ParleyFAISS.load(self._index_path(model))
        except (FileNotFoundError, IndexDamaged):
            store = None
        if store is None or store.outdated:
            with self._index_lock():  # another session may be rebuilding or upgrading it
                store = self._load_or_rebuild(model)
                generation = self._generation(model)
        self._stores[model] = (generation, store)
        return store

    @contextmanager
    def update_index(self, model: str) -> Iterator[ParleyFAISS]:
        """Lock, load, let the caller change, then save the index and bump its generation."""
        with self._index_lock():
            if self._generation(model) is None:
                store = ParleyFAISS()
            else:
                store = self._load_or_rebuild(model)
            yield store
            if store.index is not None:
                self._save_index(model, store)

    def _index_lock(self):  # noqa: ANN202 - a context manager
        # Also taken by lib/backup.py while it copies the database and these files.
        return locks.exclusive(self._folder() / locks.INDEX_LOCK)

    def _save_index(self, model: str, store: ParleyFAISS) -> None:
        path = self._index_path(model)
        store.save(path)
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO vector_indexes (workspace, model, file, generation) "
                "VALUES (?, ?, ?, 1) ON CONFLICT (workspace, model) DO UPDATE SET "
                "generation = vector_indexes.generation + 1",
                (self.library.workspace, model, path.name),
            )

    def _load_or_rebuild(self, model: str) -> ParleyFAISS:
        """The saved index (upgraded if outdated), or (missing or damaged) one rebuilt and
        saved; hold the lock."""
        path = self._index_path(model)
        try:
            store = ParleyFAISS.load(path)
        except FileNotFoundError:
            reason = "its file is missing"
        except IndexDamaged as exc:
            reason = exc.reason
        else:
            if store.outdated:
                self._upgrade(model, store)
            return store
        log.warning("vector index %s (%s): %s; rebuilding it", path.name, model, reason)
        store, keyword_only = self._rebuild_index(model)
        self._save_index(model, store)
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

    def _upgrade(self, model: str, store: ParleyFAISS) -> None:
        """Rebuild an index of an outdated type from its own vectors (an older Parley's IVF
        index: see lib/documents/vectorstore.py), and save it; nothing to tell the user."""
        was = store.kind
        store.upgrade()
        self._save_index(model, store)
        log.info("vector index for %s: %s index of %d vectors rebuilt as %s",
                 model, was, store.size, store.kind)  # fmt: skip

    def _rebuild_index(self, model: str) -> tuple[ParleyFAISS, list[str]]:
        """The index rebuilt from the embedding cache, and the documents it lacks vectors for
        (made keyword-only, as if they had been indexed without embeddings)."""
        workspace = self.library.workspace
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT c.id, c.hash, c.document_id, d.name FROM chunks c JOIN documents d "
                "ON d.id = c.document_id WHERE d.workspace = ? AND d.embedding_model = ? "
                "ORDER BY c.id",
                (workspace, model),
            ).fetchall()
        vectors, found = self._cached_vectors(model, [r["hash"] for r in rows])
        lacking = {r["document_id"]: r["name"] for r, ok in zip(rows, found, strict=True) if not ok}
        keep = np.array([r["document_id"] not in lacking for r in rows], dtype=bool)
        store = ParleyFAISS()
        if keep.any():
            ids = np.array([r["id"] for r in rows], dtype=np.int64)[keep]
            store.add_vectors(ids, normalise(vectors[keep]))
        else:
            store = ParleyFAISS.empty(vectors.shape[1] or 1)
        if lacking:
            with self._conn() as conn:
                conn.executemany(
                    "UPDATE documents SET embedding_model = NULL WHERE id = ? AND workspace = ?",
                    [(doc_id, workspace) for doc_id in lacking],
                )
        return store, sorted(lacking.values())

    def _cached_vectors(self, model: str, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, found): one row per hash, zeros where the cache has none."""
        vectors: np.ndarray | None = None
        found = np.zeros(len(hashes), dtype=bool)
        for start in range(0, len(hashes), REBUILD_BATCH):
            part = hashes[start : start + REBUILD_BATCH]
            cached = self.library.cache.get(model, part)
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
