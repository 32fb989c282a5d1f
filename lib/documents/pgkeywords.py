"""Keyword search on PostgreSQL: the BM25 of `lib/documents/bm25.py`, its postings kept in
the database instead of a file per document.

A document's passages are analysed as on SQLite (`bm25.Segment.build`: the same words,
stemming, stop words and tables of contents left out), and each of its terms becomes one
row of `keyword_postings`: (workspace, term hash, document, how many of its passages have
the term, and those postings packed as bytes, 8 each (`POSTING`: the chunk id less the
row's `base`, the term's frequency there, the passage's length in words); stored
uncompressed, read in binary). `keyword_documents` holds a document's
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
common). Here a question reads one row per (term, document), a few hundred at 100k
passages with about 60,000 postings among them, and scores them in numpy: 7 ms in all
(2.9 of it the statement), where the same postings packed as 14 bytes and read as hex
took 21 ms; the server joining each term's bytes (string_agg) saved nothing. Ingestion
no longer updates a GIN index. Since then the workspace's totals come in the same
statement (cast to bigint: a numeric sum was decoded as a Decimal in each of the ~400
rows), rows arrive as plain tuples, and the k best are taken from the bincount without
building its range of ids: 8.9 against 10.4 ms, alternating in one process with the
version before, on a slower machine than the 7 ms's.

Nothing is held between queries. Deleting a document deletes its rows (foreign keys with
ON DELETE CASCADE); re-indexing one replaces them (`store` deletes before it writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lib.documents import bm25
from lib.store.postgres import array

if TYPE_CHECKING:
    from lib.store.postgres import PgConnection

# One posting, 8 bytes: the chunk's row id less the row's `base` (the least of them), the
# term's frequency there and the passage's length in words (capped, as the frequency is).
POSTING = np.dtype([("chunk", "<u4"), ("tf", "<u2"), ("length", "<u2")])
_MAX = np.iinfo(np.uint16).max

_COPY = (
    "COPY keyword_postings (workspace, term, document_id, n, base, postings) "
    "FROM STDIN (FORMAT BINARY)"
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
    starts, sizes = segment.offsets[:-1], np.diff(segment.offsets)
    chunks = segment.chunk_ids[segment.local]
    bases = np.minimum.reduceat(chunks, starts) if len(chunks) else chunks
    relative = chunks - np.repeat(bases, sizes)
    if len(relative) and relative.max() > np.iinfo(np.uint32).max:
        raise ValueError("a document's chunk ids are too far apart to pack")
    postings = np.empty(len(chunks), dtype=POSTING)
    postings["chunk"] = relative
    postings["tf"] = segment.tf
    postings["length"] = np.minimum(segment.lengths[segment.local], _MAX)
    packed = memoryview(postings.tobytes())
    size = POSTING.itemsize
    offsets = segment.offsets.tolist()
    terms = segment.terms.view(np.int64).tolist()  # bigint holds the hash's 64 bits
    rows = zip(terms, bases.tolist(), offsets, offsets[1:], strict=False)
    with conn.raw.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(["text", "int8", "text", "int4", "int8", "bytea"])
        for term, base, start, end in rows:
            copy.write_row(
                (workspace, term, document_id, end - start, base, packed[start * size : end * size])
            )
    searchable = ~segment.listing
    conn.execute(
        "INSERT INTO keyword_documents (document_id, chunks, words) VALUES (?, ?, ?)",
        (document_id, int(searchable.sum()), int(segment.lengths[searchable].sum())),
    )


def remove(conn: PgConnection, document_id: str) -> None:
    conn.execute("DELETE FROM keyword_postings WHERE document_id = ?", (document_id,))
    conn.execute("DELETE FROM keyword_documents WHERE document_id = ?", (document_id,))


# The question's rows, with the workspace's totals beside each (one round trip): every
# ready document's rows count towards the document frequencies, only the chosen
# documents' postings are read. (Binary results: bytea as raw bytes, half the time of hex
# for ~1 MB of postings.)
_SEARCH = (
    "SELECT p.term, p.n, p.base, CASE WHEN p.document_id = ANY(?::text[]) THEN p.postings END, "
    "totals.chunks, totals.words "
    "FROM keyword_postings p JOIN documents d ON d.id = p.document_id CROSS JOIN "
    "(SELECT coalesce(sum(k.chunks), 0)::bigint AS chunks, "
    "coalesce(sum(k.words), 0)::bigint AS words "
    "FROM keyword_documents k JOIN documents r ON r.id = k.document_id "
    "WHERE r.workspace = ? AND r.status = 'ready') totals "
    "WHERE p.workspace = ? AND p.term = ANY(?) AND d.status = 'ready'"
)


def search(
    conn: PgConnection, workspace: str, question: str, document_ids: Sequence[str], k: int
) -> list[tuple[int, float]]:
    """The k best (chunk id, BM25 score) among these documents, best first."""
    terms = np.array(list(dict.fromkeys(bm25.query_terms(question))), dtype=np.uint64)
    if not len(terms) or not document_ids or k <= 0:
        return []
    query = terms.view(np.int64).tolist()  # bigint holds the hash's 64 bits
    rows = conn.execute(
        _SEARCH, (array(document_ids), workspace, workspace, query), binary=True, plain=True
    ).fetchall()
    order = {term: i for i, term in enumerate(query)}
    df = [0] * len(query)
    for term, n, *_ in rows:
        df[order[term]] += n
    chosen = [row for row in rows if row[3]]
    if not chosen:
        return []
    chunks, words = max(int(rows[0][4]), 1), int(rows[0][5])
    postings = np.frombuffer(b"".join([row[3] for row in chosen]), dtype=POSTING)
    sizes = np.array([len(row[3]) for row in chosen]) // POSTING.itemsize
    idf = bm25.idf(chunks, np.array(df, dtype=np.float64))
    weight = np.repeat(idf[[order[row[0]] for row in chosen]], sizes)
    norm = bm25.norms(postings["length"], words / chunks)
    shares = bm25.term_scores(weight, postings["tf"], norm)
    ids = np.repeat(np.array([row[2] for row in chosen], dtype=np.int64), sizes)
    ids += postings["chunk"]
    return _best(ids, shares, k)


def _best(ids: np.ndarray, shares: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k chunk ids with the highest sums of their postings' shares, and the sums, best
    first. A workspace's chunk ids are mostly close together, so a bincount over their
    range is the quick way (its ids never built: only the k best are); when they lie too
    far apart for that, a sort (np.unique: 5 ms at 60,000 postings)."""
    low, high = int(ids.min()), int(ids.max())
    if high - low < 4 * len(ids) + 65_536:
        scores = np.bincount(ids - low, weights=shares, minlength=high - low + 1)
        best = bm25.top(scores, k)
        chosen = best + low
    else:
        unique, position = np.unique(ids, return_inverse=True)
        scores = np.bincount(position, weights=shares, minlength=len(unique))
        best = bm25.top(scores, k)
        chosen = unique[best]
    return list(zip(chosen.tolist(), scores[best].tolist(), strict=True))


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
