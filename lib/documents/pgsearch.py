"""Search on PostgreSQL: the database does it (`PostgresSearch`, one implementation of
`lib/documents/search.py`).

Vectors are rows of `chunk_vectors` (pgvector), one per chunk, beside its workspace,
model and dimension. The column has no fixed dimension, since models differ, so each
(model, dimension) gets its own HNSW index, built after that model's first vectors are
stored: an expression index on `embedding::vector(<dim>)` (or `halfvec` above
pgvector's 2,000 dimensions for `vector`, up to halfvec's 4,000), partial on
`model = '<model>' AND dim = <dim> AND indexed`. Queries name the same expression and
predicate as literals, so the planner can prove the partial index applies whatever plan
it caches. A vector is stored unindexed and indexed in the background
(`lib/documents/pgindexing.py`: HNSW upkeep was more than half of an upload's time), so a
search asks the indexed rows through the index and the few pending ones exactly, and
merges the two.
Vectors are unit length, so inner product (`<#>`, the cheapest operator) is cosine
similarity.

The LIMIT is written into the statement and each search plans afresh
(`plan_cache_mode = force_custom_plan`): psycopg prepares a statement after its fifth run,
and PostgreSQL's generic plan for it, not knowing the LIMIT, sorted every vector instead
of walking the index (bench/query.py at 100k: 650 ms a query instead of 5 ms).

A search filters on the workspace and the chosen documents. An HNSW scan filtered after
the fact would find fewer than k of a small selection, so each query runs with
`hnsw.iterative_scan = relaxed_order` (pgvector 0.8: the scan goes on until k rows pass
the filter, in nearly sorted order, re-sorted here) and `hnsw.ef_search` = EF_SEARCH.
Left to itself, the planner compared every chosen vector once half the library was
chosen (its cost model does not believe the index at that selectivity): 170-300 ms at
100k where the index takes 2 ms. So past EXACT_MAX_ROWS chosen vectors the search walks
the index (sequential and bitmap scans off for it); below, the planner may read the few
chosen vectors by document instead, which an HNSW scan would have to search far for.

On bench/query.py's corpus (seven manuals' chunks each copied 66 times with a little
noise, so every vector has 65 near-twins) recall@10 against exact search is 0.98 at 10k
and about 0.65 at 100k at EF_SEARCH 200 (0.53 at 100): HNSW returns some twins of the
nearest passages rather than others, which for retrieval is the same passage.

Keywords: BM25 over postings kept in the database, scored as SQLite scores its segments
(`lib/documents/pgkeywords.py`), so both backends rank a question's passages alike.

Nothing is held between queries: a session's memory does not grow with the library.
Deleting a chunk deletes its vector (a foreign key with ON DELETE CASCADE); `remove`
deletes the document's keyword postings, which re-indexing then writes afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lib.documents import pgkeywords
from lib.documents.pgindexing import indexer, literal, vector_type
from lib.documents.records import DocumentRecord
from lib.documents.search import Hits
from lib.documents.vectorstore import ArrayBlocks, Blocks
from lib.store.postgres import array

if TYPE_CHECKING:
    from lib.documents.library import DocumentLibrary
    from lib.store.postgres import PgConnection

EF_SEARCH = 200  # candidates the HNSW scan keeps (pgvector's default is 40)
EXACT_MAX_ROWS = 1_000  # chosen vectors up to which the planner may compare every one


class PostgresSearch:
    side_by_side = True  # each search waits on the server, on a connection of its own

    def __init__(self, library: DocumentLibrary) -> None:
        self.library = library
        self.workspace = library.workspace
        self.repairs: list[str] = []  # nothing here is derived data that could be damaged

    def _conn(self):  # noqa: ANN202 - the backend's connection context manager
        return self.library.backend.connection()

    def add(
        self,
        document_id: str,
        chunk_ids: Sequence[int],
        texts: Sequence[str],
        model: str | None,
        vectors: np.ndarray | Blocks | None,
    ) -> None:
        embedded = bool(model) and vectors is not None and len(chunk_ids) > 0
        with self.library.backend.transaction() as conn:  # both or neither
            pgkeywords.store(conn, self.workspace, document_id, chunk_ids, texts)
            if embedded:
                self._insert_vectors(conn, document_id, chunk_ids, model, vectors)
        if embedded:
            indexer(self.library.backend).schedule()  # once committed; searched exactly until then

    def add_vectors(
        self,
        document_id: str,
        chunk_ids: Sequence[int],
        model: str,
        vectors: np.ndarray | Blocks,
    ) -> None:
        """Store these passages' vectors (and only them: migrate-store adds the vectors a
        move lacks to documents whose keywords it indexes apart)."""
        if len(chunk_ids):
            with self.library.backend.transaction() as conn:
                self._insert_vectors(conn, document_id, chunk_ids, model, vectors)
            indexer(self.library.backend).schedule()

    def _insert_vectors(
        self,
        conn: PgConnection,
        document_id: str,
        chunk_ids: Sequence[int],
        model: str,
        vectors: np.ndarray | Blocks,
    ) -> None:
        source = vectors if isinstance(vectors, Blocks) else ArrayBlocks(vectors)
        dim = source.dim
        ids = list(chunk_ids)
        if len(ids) != len(source):
            raise ValueError(f"{len(ids)} ids for {len(source)} vectors")
        for start, block in source.blocks():  # a block of the cache's vectors at a time
            conn.executemany(
                "INSERT INTO chunk_vectors (chunk_id, document_id, workspace, model, dim, "
                "embedding, listing) SELECT c.id, c.document_id, d.workspace, ?, ?, ?, "
                "c.listing FROM chunks c "
                "JOIN documents d ON d.id = c.document_id "
                "WHERE c.id = ? AND d.id = ? AND d.workspace = ? "
                "ON CONFLICT (chunk_id) DO UPDATE SET model = excluded.model, "
                "dim = excluded.dim, embedding = excluded.embedding, indexed = false",
                [(model, dim, v, int(i), document_id, self.workspace)
                 for i, v in zip(ids[start : start + len(block)], block, strict=True)],
            )  # fmt: skip

    def remove(self, document: DocumentRecord, chunk_ids: Sequence[int]) -> None:
        """The document's keyword postings go; its chunks' vectors go with their rows."""
        with self.library.backend.transaction() as conn:
            pgkeywords.remove(conn, document.id)

    def keywords(self, question: str, document_ids: Sequence[str], k: int) -> Hits:
        with self._conn() as conn:
            return pgkeywords.search(conn, self.workspace, question, document_ids, k)

    def vectors(self, model: str, vector: np.ndarray, document_ids: Sequence[str], k: int) -> Hits:
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if not document_ids or k <= 0:
            return []
        dim = len(vector)
        cast = vector_type(dim)
        documents = array(document_ids)
        with self.library.backend.transaction() as conn:
            # One round trip: this search's settings, and the planner's choice made for
            # it (a count that stops past EXACT_MAX_ROWS, from the document index alone).
            conn.execute(
                "SELECT set_config('hnsw.ef_search', ?, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('plan_cache_mode', 'force_custom_plan', true), "
                "set_config('enable_seqscan', CASE WHEN n > ? THEN 'off' ELSE 'on' END, true), "
                "set_config('enable_bitmapscan', CASE WHEN n > ? THEN 'off' ELSE 'on' END, true) "
                "FROM (SELECT count(*) AS n FROM (SELECT 1 FROM chunk_vectors "
                f"WHERE document_id = ANY(?::text[]) LIMIT {EXACT_MAX_ROWS + 1}) chosen) counted",
                (str(max(EF_SEARCH, k)), EXACT_MAX_ROWS, EXACT_MAX_ROWS, documents),
            )

            # The indexed rows through their HNSW index, the few not yet indexed exactly
            # (lib/documents/pgindexing.py), each its k nearest.
            def nearest(rows: str) -> str:
                return (
                    f"(SELECT chunk_id, embedding::{cast} <#> ?::{cast} AS distance "
                    f"FROM chunk_vectors WHERE model = {literal(model)} AND dim = {dim} "
                    f"AND {rows} AND listing = 0 AND workspace = ? "
                    "AND document_id = ANY(?::text[]) "
                    f"ORDER BY embedding::{cast} <#> ?::{cast} LIMIT {int(k)})"
                )

            chosen = (vector, self.workspace, documents, vector)
            rows = conn.execute(
                f"{nearest('indexed')} UNION ALL {nearest('NOT indexed')}", chosen + chosen
            ).fetchall()
        hits = [(r[0], -float(r[1])) for r in rows]  # <#> is the negative inner product
        return sorted(hits, key=lambda hit: -hit[1])[:k]

    def vector_count(self, model: str) -> int:
        with self._conn() as conn:
            return conn.execute(
                "SELECT count(*) FROM chunk_vectors WHERE workspace = ? AND model = ?",
                (self.workspace, model),
            ).fetchone()[0]

    def check(self, model: str) -> None:
        """Nothing to load or repair (the database holds the indexes); vectors a replica
        left unindexed when it stopped get their pass now."""
        with self._conn() as conn:
            pending = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM chunk_vectors WHERE NOT indexed)"
            ).fetchone()[0]
        if pending:
            indexer(self.library.backend).schedule()
