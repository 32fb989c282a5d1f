"""Keyword search on PostgreSQL: the BM25 of `lib/documents/bm25.py`, its postings kept in
the database instead of a file per document.

A document's passages are analysed as on SQLite (`bm25.Segment.build`: the same words,
stemming, stop words and tables of contents left out), and each of its terms becomes one
row of `keyword_postings`: (workspace, term hash, document, how many of its passages have
the term, and those postings packed as bytes, `POSTING` each: the chunk id, the term's
frequency there, the passage's length in words). `keyword_documents` holds a document's
count of searchable passages and their total length, for the average length and the idf.
A question reads the rows of its few terms for the workspace's ready documents through the
primary key, (workspace, term, document), and scores them with numpy: the same Okapi BM25
(k1, b and idf from `bm25`), document frequencies and the average length taken over the
workspace's ready documents as the SQLite pack takes them, so both backends rank alike.

Why not PostgreSQL's own full-text search: a `tsvector` column with a GIN index finds the
passages holding any of the question's words quickly, but `ts_rank` then reads and ranks
every one of them, and at bench/query.py's 100,000 passages a question matched 11,000 or
more: 145 ms a query (235 ms for commoner words) against 20 ms for the whole retrieval.
And `ts_rank` has no idf, so its order differed from SQLite's BM25 (73% of the top 10 in
common). Here a query reads one row per (term, document), a few thousand at most, and
scores their postings in a few milliseconds; and ingestion no longer updates a GIN index.

Nothing is held between queries. Deleting a document deletes its rows (foreign keys with
ON DELETE CASCADE); re-indexing one replaces them (`store` deletes before it writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lib.documents import bm25

if TYPE_CHECKING:
    from lib.store.postgres import PgConnection

# One posting: the chunk's row id, the term's frequency in it, its length in words.
POSTING = np.dtype([("chunk", "<i8"), ("tf", "<u2"), ("length", "<i4")])

_COPY = (
    "COPY keyword_postings (workspace, term, document_id, n, postings) FROM STDIN (FORMAT BINARY)"
)


def store(
    conn: PgConnection,
    workspace: str,
    document_id: str,
    chunk_ids: Sequence[int],
    texts: Sequence[str],
) -> None:
    """Make these passages the document's keyword postings, replacing any it had (call
    inside a transaction)."""
    segment = bm25.Segment.build(chunk_ids, texts)
    remove(conn, document_id)
    postings = np.empty(len(segment.local), dtype=POSTING)
    postings["chunk"] = segment.chunk_ids[segment.local]
    postings["tf"] = segment.tf
    postings["length"] = segment.lengths[segment.local]
    packed = memoryview(postings.tobytes())
    size = POSTING.itemsize
    offsets = segment.offsets.tolist()
    terms = segment.terms.view(np.int64).tolist()  # bigint holds the hash's 64 bits
    with conn.raw.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(["text", "int8", "text", "int4", "bytea"])
        for term, start, end in zip(terms, offsets, offsets[1:], strict=False):
            copy.write_row(
                (workspace, term, document_id, end - start, packed[start * size : end * size])
            )
    searchable = ~segment.listing
    conn.execute(
        "INSERT INTO keyword_documents (document_id, chunks, words) VALUES (?, ?, ?)",
        (document_id, int(searchable.sum()), int(segment.lengths[searchable].sum())),
    )


def remove(conn: PgConnection, document_id: str) -> None:
    conn.execute("DELETE FROM keyword_postings WHERE document_id = ?", (document_id,))
    conn.execute("DELETE FROM keyword_documents WHERE document_id = ?", (document_id,))


def search(
    conn: PgConnection, workspace: str, question: str, document_ids: Sequence[str], k: int
) -> list[tuple[int, float]]:
    """The k best (chunk id, BM25 score) among these documents, best first."""
    query = np.array(list(dict.fromkeys(bm25.query_terms(question))), dtype=np.uint64)
    if not len(query) or not document_ids or k <= 0:
        return []
    chunks, words = conn.execute(
        "SELECT coalesce(sum(k.chunks), 0), coalesce(sum(k.words), 0) "
        "FROM keyword_documents k JOIN documents d ON d.id = k.document_id "
        "WHERE d.workspace = ? AND d.status = 'ready'",
        (workspace,),
    ).fetchone()
    # Every ready document's rows count towards the document frequencies; only the
    # chosen documents' postings are read.
    rows = conn.execute(
        "SELECT p.term, p.n, CASE WHEN p.document_id = ANY(?) THEN p.postings END "
        "FROM keyword_postings p JOIN documents d ON d.id = p.document_id "
        "WHERE p.workspace = ? AND p.term = ANY(?) AND d.status = 'ready'",
        (list(document_ids), workspace, query.view(np.int64).tolist()),
    ).fetchall()
    if not rows:
        return []
    searchable = max(int(chunks), 1)
    order = {term: i for i, term in enumerate(query.view(np.int64).tolist())}
    df = np.zeros(len(query))
    parts, term_of_part = [], []
    for term, n, packed in rows:
        df[order[term]] += n
        if packed is not None:
            parts.append(np.frombuffer(packed, dtype=POSTING))
            term_of_part.append(order[term])
    if not parts:
        return []
    postings = np.concatenate(parts)
    idf = bm25.idf(searchable, df)
    weight = np.repeat(idf[term_of_part], [len(p) for p in parts])
    norm = bm25.norms(postings["length"], float(words) / searchable)
    chunk_ids, position = np.unique(postings["chunk"], return_inverse=True)
    scores = np.bincount(
        position, weights=bm25.term_scores(weight, postings["tf"], norm), minlength=len(chunk_ids)
    )
    top = bm25.top(scores, k)
    return list(zip(chunk_ids[top].tolist(), scores[top].tolist(), strict=True))


def backfill(conn: PgConnection, limit: int | None = None) -> int:
    """Give keyword postings to documents with passages but none (a database's from before
    them, or those migrate-store moved in), at most `limit` of them; how many."""
    missing = conn.execute(
        "SELECT d.id, d.workspace FROM documents d "
        "WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id) "
        "AND NOT EXISTS (SELECT 1 FROM keyword_documents k WHERE k.document_id = d.id) "
        f"ORDER BY d.id{f' LIMIT {int(limit)}' if limit else ''}"
    ).fetchall()
    for document_id, workspace in missing:
        rows = conn.execute(
            "SELECT id, text FROM chunks WHERE document_id = ? ORDER BY id", (document_id,)
        ).fetchall()
        store(conn, workspace, document_id, [r[0] for r in rows], [r[1] for r in rows])
    return len(missing)
