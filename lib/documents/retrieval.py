"""Hybrid retrieval: dense (vector) results and keyword results, fused by RRF.

Dense search finds passages that mean the same as the question; keyword search finds the
ones that share its rare words, such as a function name. Both come from the library's
search (`lib/documents/search.py`: FAISS and BM25 files on SQLite, pgvector and a tsvector
index on PostgreSQL). Reciprocal rank fusion (Cormack et al., 2009) combines the two lists
by rank alone, `sum(1 / (RRF_K + rank))`, so the incomparable raw scores never need
calibrating against each other. With no embeddings (no endpoint, or documents indexed
before one existed) retrieval is keyword-only, and says so.

`score` on a source is the fused score scaled so that 1.0 means first in every list that
took part; the cosine similarity and the keyword rank are kept beside it for display.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lib.documents import phrases
from lib.documents.library import ChunkRecord, DocumentLibrary
from lib.documents.rerank import RERANK_POOL, Reranker
from lib.errors import ParleyError

log = logging.getLogger(__name__)

RRF_K = 60  # the constant from the RRF paper; robust across collections
CANDIDATES = 60  # taken from each list before fusing
TOP_K = 6


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


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked id lists; returns (id, score) best first, ties broken by first list."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
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
    keyword = search.keywords(question, document_ids, CANDIDATES)
    dense_on = model is not None and query_vector is not None
    dense: list[tuple[int, float]] = []
    if dense_on:
        dense_docs = document_ids if dense_document_ids is None else dense_document_ids
        dense = search.vectors(model, query_vector, dense_docs, CANDIDATES) if dense_docs else []
    rankings = [[i for i, _ in dense]] if dense_on else []
    rankings.append([i for i, _ in keyword])
    fused = rrf(rankings)
    chosen = set(document_ids)
    # A chunk deleted since the search, or of a document still being indexed, is skipped.
    found = library.chunks([i for i, _ in fused]).items()
    chunks = {i: chunk for i, chunk in found if chunk.document_id in chosen}
    named = phrases.naming(question, [(i, chunks[i].text) for i, _ in fused if i in chunks])
    if named:  # a third list: the candidates with a heading that is the question's phrase
        rankings.append(named)
        fused = rrf(rankings)
    fused = [(i, score) for i, score in fused if i in chunks]
    reranked = False
    if reranker is not None and fused:
        pool = fused[:RERANK_POOL]
        try:
            order = reranker.order(question, [chunks[i].text for i, _ in pool])
        except ParleyError as exc:
            log.info("rerank failed: %s", type(exc).__name__)
            why = f"Reranking is unavailable ({exc.message}): passages in search order."
            note = f"{note} {why}" if note else why
        else:
            fused, reranked = [pool[j] for j in order] + fused[RERANK_POOL:], True
    sources = _sources(chunks, fused[:k], dense, keyword, len(rankings))
    return Retrieval(sources, "hybrid" if dense_on else "keyword", note, reranked)


def _sources(
    chunks: dict[int, ChunkRecord],
    fused: list[tuple[int, float]],
    dense: list[tuple[int, float]],
    keyword: list[tuple[int, float]],
    lists: int,
) -> list[Source]:
    similarity = dict(dense)
    dense_rank = {i: r for r, (i, _) in enumerate(dense, start=1)}
    keyword_rank = {i: r for r, (i, _) in enumerate(keyword, start=1)}
    best = lists / (RRF_K + 1)
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
