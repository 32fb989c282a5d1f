"""HNSW upkeep off the upload's path (lib/documents/pgindexing.py), on the real PostgreSQL:
vectors are found while they wait for their pass and after it, the first pass builds each
index in one go and later ones mark batches into it, replicas passing at once index each
vector once, a pass left undone resumes on page load, and migration 0008 replaces the
indexes made before it; and the other PostgreSQL-only migrations (0015, 0016) keep what
was there."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest

from lib.documents.chunking import Chunk
from lib.documents.library import DocumentLibrary
from lib.documents.pgindexing import BATCH, Indexer, index_name, indexer, wait_all
from lib.store import postgres_schema
from lib.store.backend import Backend, forget_backends, open_backend
from lib.store.postgres import PostgresBackend
from tests import postgres as pg_server
from tests.waits import WAIT

MODEL = "text-embedding-3-small"
DIM = 64


@pytest.fixture
def url(postgres: pg_server.TestPostgres) -> str:
    url = postgres.fresh_database()
    yield url
    wait_all(WAIT)
    forget_backends()
    postgres.drop(url)


@pytest.fixture
def pg(url: str, data_dir: Path) -> Backend:
    return open_backend(data_dir, url)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def store(library: DocumentLibrary, name: str, vectors: np.ndarray) -> tuple[str, list[int]]:
    chunks = [Chunk(1, None, 0, 4, f"{name} passage {i}", 3) for i in range(len(vectors))]
    sha = name.encode().hex().ljust(64, "0")
    doc, ids = library.create(name=name, data=name.encode(), sha256=sha, kind="markdown",
                              report={}, pages=[], page_tokens=[], chunks=chunks)  # fmt: skip
    library.search.add(doc.id, ids, [c.text for c in chunks], MODEL, vectors)
    library.mark_ready(doc.id, MODEL, {})
    return doc.id, ids


def pending(backend: Backend) -> int:
    with backend.connection() as conn:
        return conn.execute("SELECT count(*) FROM chunk_vectors WHERE NOT indexed").fetchone()[0]


def index_definition(backend: Backend) -> str | None:
    with backend.connection() as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = ?", (index_name(MODEL, DIM),)
        ).fetchone()
    return row[0] if row else None


def nearest(vectors: np.ndarray, query: np.ndarray, ids: list[int], k: int) -> set[int]:
    order = np.argsort(-(vectors @ query))[:k]
    return {ids[i] for i in order}


def test_vectors_are_found_while_pending_and_after_the_pass_builds_the_index(pg) -> None:
    library = DocumentLibrary(pg, "alice")
    rng = np.random.default_rng(1)
    vectors = unit(rng, 1_500)  # more than EXACT_MAX_ROWS chosen: the search walks HNSW
    with indexer(pg).deferred():
        doc, ids = store(library, "a.md", vectors)
        assert pending(pg) == 1_500 and index_definition(pg) is None
        query = vectors[7]
        hits = library.search.vectors(MODEL, query, [doc], 10)
        assert {i for i, _ in hits} == nearest(vectors, query, ids, 10)  # exact while pending
    assert pending(pg) == 0
    assert "indexed" in index_definition(pg)  # partial on the indexed rows
    hits = library.search.vectors(MODEL, query, [doc], 10)
    assert hits[0][0] == ids[7]
    assert len({i for i, _ in hits} & nearest(vectors, query, ids, 10)) >= 9


def test_a_later_upload_is_found_at_once_and_marked_into_the_index_in_batches(pg) -> None:
    library = DocumentLibrary(pg, "alice")
    rng = np.random.default_rng(2)
    with indexer(pg).deferred():
        first, _ = store(library, "a.md", unit(rng, 1_200))
    later = unit(rng, BATCH * 2 + 10)
    upkeep = indexer(pg)
    with upkeep.deferred():
        second, ids = store(library, "b.md", later)
        assert pending(pg) == len(later)
        hits = library.search.vectors(MODEL, later[3], [first, second], 5)
        assert hits[0][0] == ids[3]  # the pending half of the search found it
    assert pending(pg) == 0
    hits = library.search.vectors(MODEL, later[3], [first, second], 5)
    assert hits[0][0] == ids[3]


def test_an_upload_schedules_its_own_pass_in_the_background(pg) -> None:
    library = DocumentLibrary(pg, "alice")
    store(library, "a.md", unit(np.random.default_rng(3), 300))
    assert indexer(pg).wait(WAIT)
    assert pending(pg) == 0 and index_definition(pg) is not None


def test_replicas_passing_at_once_index_every_vector_exactly_once(url, pg, tmp_path) -> None:
    library = DocumentLibrary(pg, "alice")
    rng = np.random.default_rng(4)
    with indexer(pg).deferred():
        store(library, "a.md", unit(rng, 400))
    with indexer(pg).deferred():
        store(library, "b.md", unit(rng, BATCH * 6))
        replicas = [PostgresBackend(tmp_path / f"r{n}", url) for n in range(3)]
        marked: list[int] = []
        start = threading.Barrier(len(replicas))

        def run(backend: Backend) -> None:
            start.wait()
            marked.append(Indexer(backend).run())

        threads = [threading.Thread(target=run, args=(b,)) for b in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        for backend in replicas:
            backend.close()
    assert sum(marked) == BATCH * 6 and pending(pg) == 0


def test_page_load_resumes_a_pass_a_stopped_replica_left_undone(pg) -> None:
    library = DocumentLibrary(pg, "alice")
    with indexer(pg).deferred():
        store(library, "a.md", unit(np.random.default_rng(5), 200))
    with pg.transaction() as conn:  # as if a replica stopped before its pass
        conn.execute("UPDATE chunk_vectors SET indexed = false WHERE chunk_id % 2 = 0")
    assert pending(pg) == 100
    library.search.check(MODEL)
    assert indexer(pg).wait(WAIT)
    assert pending(pg) == 0


def test_migration_0008_replaces_indexes_that_covered_every_row(
    postgres: pg_server.TestPostgres,
) -> None:
    url = postgres.empty_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            pg_server.migrate_before(conn, "0008")
            old = index_name(MODEL, DIM)
            conn.execute(
                f"CREATE INDEX {old} ON chunk_vectors USING hnsw "
                f"((embedding::vector({DIM})) vector_ip_ops) "
                f"WHERE model = '{MODEL}' AND dim = {DIM}"
            )
            applied = postgres_schema.migrate(conn)
            assert "0008_vector_upkeep" in applied
            assert conn.execute("SELECT to_regclass(%s)", (old,)).fetchone()[0] is None
            assert postgres_schema.migrate(conn) == []  # safe to run twice
    finally:
        postgres.drop(url)


def test_migration_0015_makes_pinned_an_integer_keeping_each_pin(
    postgres: pg_server.TestPostgres,
) -> None:
    """(Here with the other PostgreSQL-only migration test.) A database migrated before
    0015 keeps which conversations were pinned, now as 1 and 0."""
    url = postgres.empty_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            pg_server.migrate_before(conn, "0015")
            for cid, pinned in (("a", True), ("b", False)):
                conn.execute(
                    "INSERT INTO conversations (id, workspace, kind, title, model, system_prompt, "
                    "params, created_at, updated_at, pinned) "
                    "VALUES (%s, 'w', 'chat', 't', 'm', '', '{}', 0, 0, %s)",
                    (cid, pinned),
                )
            assert "0015_pinned_integer" in postgres_schema.migrate(conn)
            rows = conn.execute("SELECT id, pinned FROM conversations ORDER BY id").fetchall()
            kind = conn.execute(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'conversations' AND column_name = 'pinned'"
            ).fetchone()[0]
        assert rows == [("a", 1), ("b", 0)] and kind == "integer"
    finally:
        postgres.drop(url)


def test_migration_0016_gives_existing_passages_keyword_postings(
    postgres: pg_server.TestPostgres, data_dir: Path
) -> None:
    """A database from before the postings table: its documents are found by keyword after
    the migration, scored as any upload's are, and the tsvector column is gone."""
    url = postgres.empty_database()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            pg_server.migrate_before(conn, "0016")
            conn.execute(
                "INSERT INTO documents (id, workspace, name, sha256, size, kind, stored_as, "
                "status, created_at) VALUES ('d', 'alice', 'herons.md', 's', 1, 'markdown', "
                "'d.md', 'ready', 0)"
            )
            for i, text in enumerate(["The grey heron nests by rivers.", "Sculls and oars."]):
                conn.execute(
                    'INSERT INTO chunks (document_id, start, "end", tokens, hash, text) '
                    "VALUES ('d', %s, %s, 5, %s, %s)",
                    (i, i + 1, f"h{i}", text),
                )
            assert "0016_keyword_postings" in postgres_schema.migrate(conn)
            assert postgres_schema.migrate(conn) == []
            column = conn.execute(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_name = 'chunks' AND column_name = 'keywords'"
            ).fetchone()[0]
        assert column == 0
        library = DocumentLibrary(open_backend(data_dir, url), "alice")
        (found, score), *rest = library.search.keywords("heron nests", ["d"], 5)
        assert library.chunks([found])[found].text.startswith("The grey heron") and not rest
        assert score > 0
        assert (
            DocumentLibrary(open_backend(data_dir, url), "bob").search.keywords(
                "heron nests", ["d"], 5
            )
            == []
        )
    finally:
        forget_backends()
        postgres.drop(url)
