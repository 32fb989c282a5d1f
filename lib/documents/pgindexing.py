"""HNSW upkeep on PostgreSQL, off the upload's path.

Inserting each vector into pgvector's HNSW index as it was stored cost 2.9 s of a 5.4 s
ingestion of seven R manuals (bench/store_backends.py, 1536 dimensions: 2.03x SQLite's
ingestion, against a target of 1.5x), while storing the same vectors unindexed took
0.05 s and building the index over them afterwards 0.8 s. So a vector is stored with
`indexed = false` and searched exactly (`lib/documents/pgsearch.py` asks both halves and
merges) until a pass here marks it indexed; each HNSW index is partial on `indexed`, so
an unindexed row costs the index nothing. A pass runs in a background thread started by
the upload that stored the vectors, and again on page load if rows are left pending (a
replica that died mid-pass). Exact search over the few pending rows costs about 8 µs a
vector at 1536 dimensions, and they stay pending for seconds.

A pass, per (model, dimension) with pending rows:
- no index yet (a model's first upload, `migrate-store`, migration 0008): mark them all
  and build the index over the whole set in one statement, the cheap way;
- an index already: mark them BATCH at a time, each batch its own transaction with
  `FOR UPDATE SKIP LOCKED`, so replicas passing at once share the work, searches never
  wait, and an interrupted pass keeps what it did.

`deferred(backend)` holds passes back while a bulk copy stores many vectors (`migrate-
store`), so the copy ends with one build instead of row-by-row upkeep.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import weakref
from collections.abc import Iterator

from lib.store.backend import Backend

log = logging.getLogger(__name__)

BATCH = 256  # rows marked per transaction once an index exists
VECTOR_MAX_DIM = 2_000  # HNSW on `vector`; above it, `halfvec`
HALFVEC_MAX_DIM = 4_000  # HNSW on `halfvec`; above it, exact search (nothing to upkeep)


def vector_type(dim: int) -> str:
    return f"vector({dim})" if dim <= VECTOR_MAX_DIM else f"halfvec({dim})"


def index_name(model: str, dim: int) -> str:
    return f"chunk_vectors_hnsw_{hashlib.sha256(f'{model}|{dim}'.encode()).hexdigest()[:16]}"


def literal(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings, PostgreSQL's default
    since 9.1: only the quote is special). Used for the model name the partial indexes
    name, which the queries must repeat as a literal for the planner to prove the index
    applies; a `?` in it would be taken for a placeholder, so such a model is refused."""
    if "?" in text or "\0" in text:
        raise ValueError(f"unsupported embedding model name: {text!r}")
    return "'" + text.replace("'", "''") + "'"


class Indexer:
    """The passes for one database: at most one thread at a time per process."""

    def __init__(self, backend: Backend) -> None:
        self._backend = weakref.ref(backend)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._deferred = 0

    def schedule(self) -> None:
        """Start a pass in the background, or ask the running one to look again."""
        with self._lock:
            if self._deferred:
                return
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._again = False
            self._thread = threading.Thread(
                target=self._background, name="parley-hnsw-upkeep", daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background pass; True when none is running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def run(self) -> int:
        """One pass now, in this thread: how many vectors it indexed."""
        backend = self._backend()
        if backend is None:
            return 0
        with backend.connection() as conn:
            groups = conn.execute(
                "SELECT DISTINCT model, dim FROM chunk_vectors WHERE NOT indexed"
            ).fetchall()
        return sum(_index_group(backend, model, dim) for model, dim in groups)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        with self._lock:
            self._deferred += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferred -= 1
        self.wait()
        self.run()

    def _background(self) -> None:
        while True:
            try:
                self.run()
            except Exception:  # noqa: BLE001 - a thread has nobody to raise to
                log.exception("Indexing stored vectors failed; they stay searched exactly")
                return
            with self._lock:
                if not self._again:
                    self._thread = None
                    return
                self._again = False


def _index_group(backend: Backend, model: str, dim: int) -> int:
    if dim > HALFVEC_MAX_DIM:
        return 0  # no HNSW index takes so many dimensions: every search is exact anyway
    name = index_name(model, dim)
    where = f"model = {literal(model)} AND dim = {dim}"
    with backend.transaction() as conn:
        # Replicas building a model's first index at once: one builds, the others wait.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (name,))
        if conn.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] is None:
            marked = conn.execute(
                f"UPDATE chunk_vectors SET indexed = true WHERE {where} AND NOT indexed"
            ).rowcount
            ops = "vector_ip_ops" if dim <= VECTOR_MAX_DIM else "halfvec_ip_ops"
            conn.execute(
                f"CREATE INDEX {name} ON chunk_vectors USING hnsw "
                f"((embedding::{vector_type(dim)}) {ops}) WHERE {where} AND indexed"
            )
            return marked
    total = 0
    while True:
        with backend.transaction() as conn:
            marked = conn.execute(
                "UPDATE chunk_vectors SET indexed = true WHERE chunk_id IN "
                f"(SELECT chunk_id FROM chunk_vectors WHERE {where} AND NOT indexed "
                f"ORDER BY chunk_id LIMIT {BATCH} FOR UPDATE SKIP LOCKED)"
            ).rowcount
        total += marked
        if marked < BATCH:
            return total


_indexers: weakref.WeakKeyDictionary[Backend, Indexer] = weakref.WeakKeyDictionary()
_indexers_lock = threading.Lock()


def indexer(backend: Backend) -> Indexer:
    with _indexers_lock:
        found = _indexers.get(backend)
        if found is None:
            found = _indexers[backend] = Indexer(backend)
        return found


def wait_all(timeout: float | None = None) -> bool:
    """Wait for every background pass in this process (tests, and before a clean exit)."""
    with _indexers_lock:
        running = list(_indexers.values())
    return all(each.wait(timeout) for each in running)
