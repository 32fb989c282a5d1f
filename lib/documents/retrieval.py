"""Hybrid retrieval: dense (vector) results and keyword results, fused by RRF.

Dense search finds passages that mean the same as the question; keyword search finds the
ones that share its rare words, such as a function name. Both come from the library's
search (`lib/documents/search.py`: FAISS and BM25 files on SQLite, pgvector and BM25
postings in the database on PostgreSQL). Reciprocal rank fusion (Cormack et al., 2009)
combines the two lists by rank alone, `sum(1 / (RRF_K + rank))`, so the incomparable raw
scores never need calibrating against each other. With no embeddings (no endpoint, or
documents indexed before one existed) retrieval is keyword-only, and says so.

A third list holds the candidates with a heading that is the question's key phrase
(`lib/documents/phrases.py`), read from the first HEADING_POOL of both searches though
only the first CANDIDATES of each are fused: BM25 and cosine similarity favour a short
passage full of the question's words over the section that starts with them ("5
Running R" is 131st by BM25 of R-admin, R-data and R-exts' chunks for "Running R").
That list weighs as much as the searches together, so a named passage comes first in
hybrid retrieval as it already did keyword-only; with equal weights, a passage first in
both searches outranked the section's own heading.

Measured on tests/retrieval_set.py (642 queries, bench/retrieval_quality.py), hit@1 /
hit@5, before and after the deeper pool, the heading's weight and phrases.py's changes
of the same commit:

                      SQLite + FAISS                  PostgreSQL + pgvector
    keyword-only      0.941 / 0.984 -> 0.972 / 0.994  0.947 / 0.984 -> 0.972 / 0.994
    hybrid            0.930 / 0.975 -> 0.988 / 0.997  0.924 / 0.969 -> 0.983 / 0.997

Each part alone taken back (SQLite, hybrid): equal weights 0.942 / 0.984; the pool
at 60 0.981 / 0.991 (keyword-only hit@5 0.988). The pool of 100 keeps the whole
retrieval's p50 on this set at 2.1 ms, as before (1.6 ms at 60, 3.5 ms at 200, where
reading the passages and checking their lines cost 2.8 ms of it); on bench/query.py's
corpus, the old and new retrieval alternating in one process (load about 5 on 2 cores),
9.6 against 8.8 ms at 100,000 chunks on SQLite and 92.1 against 91.4 ms at 20,000 on
PostgreSQL, whose keyword search alone took 25 ms of it there.

On PostgreSQL the two searches run at once when there are both, the keyword search in a
worker thread while the vector search runs in the caller's: each mostly waits for the
server, on a connection of its own (bench/query.py at 100k passages, alternating: the
whole retrieval 20.0 against 22.3 ms one after the other). A busy process (every worker
taken) runs them one after the other; so does SQLite, whose searches gained nothing
from it.

`score` on a source is the fused score scaled so that 1.0 means first in every list that
took part; the cosine similarity and the keyword rank are kept beside it for display.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from lib.documents import phrases
from lib.documents.library import ChunkRecord, DocumentLibrary
from lib.documents.rerank import RERANK_POOL, Reranker
from lib.documents.search import Hits
from lib.errors import ParleyError

log = logging.getLogger(__name__)

RRF_K = 60  # the constant from the RRF paper; robust across collections
CANDIDATES = 60  # taken from each list before fusing
HEADING_POOL = 100  # of each list, read for a heading that names the key phrase
TOP_K = 6
BESIDE = 4  # keyword searches a process runs beside vector searches at once

_workers = ThreadPoolExecutor(max_workers=BESIDE, thread_name_prefix="parley-keywords")
_free = threading.BoundedSemaphore(BESIDE)


@dataclass(frozen=True)
class Source:
    chunk: ChunkRecord
    score: float  # fused, 0..1
    similarity: float | None = None  # cosine similarity, when dense search found it
    dense_rank: int | None = None
    keyword_rank: int | None = None


@dataclass(frozen=True)
class Retrieval:
    sources: list[Source]
    mode: str  # "hybrid" | "keyword"
    note: str | None = None
    reranked: bool = False  # ordered by the server's reranking model


def rrf(
    rankings: Sequence[Sequence[int]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse ranked id lists; returns (id, score) best first, ties broken by first list."""
    scores: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def retrieve(
    library: DocumentLibrary,
    question: str,
    document_ids: Sequence[str],
    *,
    model: str | None = None,
    query_vector: np.ndarray | None = None,
    dense_document_ids: Sequence[str] | None = None,
    k: int = TOP_K,
    note: str | None = None,
    reranker: Reranker | None = None,
) -> Retrieval:
    """The k best passages of `document_ids` for `question`.

    `model` and `query_vector` enable dense search over `dense_document_ids` (by default
    all of `document_ids`: those with vectors from `model`). A `reranker` reorders the
    first RERANK_POOL fused candidates (`lib/documents/rerank.py`).
    """
    if not document_ids:
        return Retrieval([], "keyword", "No documents are selected.")
    search = library.search
    pool = max(CANDIDATES, HEADING_POOL)
    dense_on = model is not None and query_vector is not None
    dense_docs = document_ids if dense_document_ids is None else dense_document_ids
    dense: list[tuple[int, float]] = []
    if dense_on and dense_docs and search.side_by_side:
        pending = _beside(search.keywords, question, document_ids, pool)
        dense = search.vectors(model, query_vector, dense_docs, pool)
        keyword = pending.result() if isinstance(pending, Future) else pending
    else:
        keyword = search.keywords(question, document_ids, pool)
        if dense_on and dense_docs:
            dense = search.vectors(model, query_vector, dense_docs, pool)
    rankings = [[i for i, _ in dense[:CANDIDATES]]] if dense_on else []
    rankings.append([i for i, _ in keyword[:CANDIDATES]])
    fused = rrf(rankings)
    # The heading is looked for further down both lists than fusion reads.
    read = list(dict.fromkeys([i for i, _ in fused] + [i for i, _ in keyword + dense]))
    chosen = set(document_ids)
    # A chunk deleted since the search, or of a document still being indexed, is skipped.
    chunks = {i: c for i, c in library.chunks(read).items() if c.document_id in chosen}
    named = phrases.naming(question, [(i, chunks[i].text) for i in read if i in chunks])
    weights = [1.0] * len(rankings)
    if named:  # a third list: the candidates with a heading that is the question's phrase
        rankings.append(named)
        weights.append(float(len(rankings) - 1))  # as much as the searches together
        fused = rrf(rankings, weights=weights)
    fused = [(i, score) for i, score in fused if i in chunks]
    reranked = False
    if reranker is not None and fused:
        fused, reranked, note = _reranked(reranker, question, fused, chunks, note)
    sources = _sources(chunks, fused[:k], dense, keyword, sum(weights))
    return Retrieval(sources, "hybrid" if dense_on else "keyword", note, reranked)


def _beside(search: Callable[..., Hits], *args: Any) -> Future[Hits] | Hits:
    """`search(*args)` started in a worker thread; or done here when none is free."""
    if not _free.acquire(blocking=False):
        return search(*args)
    try:
        future = _workers.submit(search, *args)
    except BaseException:
        _free.release()
        raise
    future.add_done_callback(lambda _: _free.release())
    return future


def _reranked(
    reranker: Reranker,
    question: str,
    fused: list[tuple[int, float]],
    chunks: dict[int, ChunkRecord],
    note: str | None,
) -> tuple[list[tuple[int, float]], bool, str | None]:
    """`fused` with its first RERANK_POOL in the reranker's order, or as it was (and a
    note why) when the server cannot rerank."""
    head = fused[:RERANK_POOL]
    try:
        order = reranker.order(question, [chunks[i].text for i, _ in head])
    except ParleyError as exc:
        log.info("rerank failed: %s", type(exc).__name__)
        why = f"Reranking is unavailable ({exc.message}): passages in search order."
        return fused, False, f"{note} {why}" if note else why
    return [head[j] for j in order] + fused[RERANK_POOL:], True, note


def _sources(
    chunks: dict[int, ChunkRecord],
    fused: list[tuple[int, float]],
    dense: list[tuple[int, float]],
    keyword: list[tuple[int, float]],
    weight: float,
) -> list[Source]:
    similarity = dict(dense)
    dense_rank = {i: r for r, (i, _) in enumerate(dense, start=1)}
    keyword_rank = {i: r for r, (i, _) in enumerate(keyword, start=1)}
    best = weight / (RRF_K + 1)  # first in every list
    return [
        Source(
            chunk=chunks[i],
            score=round(score / best, 4),
            similarity=round(similarity[i], 4) if i in similarity else None,
            dense_rank=dense_rank.get(i),
            keyword_rank=keyword_rank.get(i),
        )
        for i, score in fused
    ]
