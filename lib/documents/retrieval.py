"""Hybrid retrieval: dense FAISS results and BM25 keyword results, fused by RRF.

Dense search finds passages that mean the same as the question; BM25 (`lib.documents.bm25`,
over stemmed words) finds the ones that share its rare words, such as a function name.
Reciprocal rank fusion (Cormack et al., 2009) combines the two lists by rank alone,
`sum(1 / (RRF_K + rank))`, so the incomparable raw scores never need calibrating against
each other. With no embeddings (no endpoint, or documents indexed
before one existed) retrieval is keyword-only, and says so.

`score` on a source is the fused score scaled so that 1.0 means first in every list that
took part; the cosine similarity and the keyword rank are kept beside it for display.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lib.documents import bm25
from lib.documents.library import ChunkRecord, DocumentLibrary
from lib.documents.vectorstore import ParleyFAISS

log = logging.getLogger(__name__)

RRF_K = 60  # the constant from the RRF paper; robust across collections
CANDIDATES = 30  # taken from each list before fusing
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


class KeywordIndex:
    """A workspace's BM25 pack, kept by a session and rebuilt only when documents change.

    The pack is derived from the user's files, so it lives in the session that built it
    (never in a cache shared across sessions); building it reads each document's segment.
    """

    def __init__(self, library: DocumentLibrary, workspace: str) -> None:
        self.library = library
        self.workspace = workspace
        self._version: tuple | None = None
        self._pack: bm25.Pack | None = None

    def pack(self) -> bm25.Pack:
        version = tuple(self.library.versions(self.workspace))
        if self._pack is None or version != self._version:
            docs = [d for d in self.library.list(self.workspace) if d.status == "ready"]
            segments = {d.id: self.library.keyword_segment(self.workspace, d) for d in docs}
            self._pack = bm25.Pack.of(segments)
            self._version = tuple((d.id, d.indexed_at) for d in docs)
        return self._pack

    def search(self, question: str, document_ids: Sequence[str], k: int) -> list[tuple[int, float]]:
        return bm25.search(self.pack(), question, k, document_ids)


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse ranked id lists; returns (id, score) best first, ties broken by first list."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def retrieve(
    library: DocumentLibrary,
    workspace: str,
    question: str,
    document_ids: Sequence[str],
    *,
    store: ParleyFAISS | None = None,
    query_vector: np.ndarray | None = None,
    keywords: KeywordIndex | None = None,
    dense_document_ids: Sequence[str] | None = None,
    whole_index: bool = False,
    k: int = TOP_K,
    note: str | None = None,
) -> Retrieval:
    """The k best passages of `document_ids` for `question`.

    `store` and `query_vector` enable dense search over `dense_document_ids` (by default
    all of `document_ids`); `keywords` is the session's BM25 index (built here if absent).
    `whole_index=True` says every vector in `store` belongs to a chosen document, so the
    search needs no id filter (the common, fastest case).
    """
    if not document_ids:
        return Retrieval([], "keyword", "No documents are selected.")
    pack = (keywords or KeywordIndex(library, workspace)).pack()
    keyword = bm25.search(pack, question, CANDIDATES, document_ids)
    dense: list[tuple[int, float]] = []
    dense_on = store is not None and store.size > 0 and query_vector is not None
    if dense_on:
        allowed = None
        if not whole_index:
            dense_docs = document_ids if dense_document_ids is None else dense_document_ids
            allowed = pack.chunk_ids_of(dense_docs)
        dense = store.search_vector(query_vector, CANDIDATES, allowed)
    rankings = [[i for i, _ in dense]] if dense_on else []
    rankings.append([i for i, _ in keyword])
    sources = _sources(library, workspace, rrf(rankings)[:k], dense, keyword, len(rankings))
    return Retrieval(sources, "hybrid" if dense_on else "keyword", note)


def _sources(
    library: DocumentLibrary,
    workspace: str,
    fused: list[tuple[int, float]],
    dense: list[tuple[int, float]],
    keyword: list[tuple[int, float]],
    lists: int,
) -> list[Source]:
    chunks = library.chunks(workspace, [i for i, _ in fused])
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
        if i in chunks  # a chunk deleted since the index was loaded is skipped
    ]
