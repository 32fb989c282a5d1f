"""BM25's document filter, which a search of every document skips (bm25.search): the
same hits whichever way the documents are named."""

from __future__ import annotations

import pytest

from lib.documents import bm25
from lib.documents.bm25 import Pack, Segment

DOCS = {
    "a": ["The matrix has eigenvalues.", "Eigenvalues of a symmetric matrix are real."],
    "b": ["A data frame is read from a file.", "Matrix algebra on data frames."],
    "c": ["Matrix", "Contents ........ 1\nMatrix ........ 2\nFrames ........ 3"],
}


def pack() -> Pack:
    return Pack.of({d: Segment.build(range(i * 10, i * 10 + 2), t) for i, (d, t) in
                    enumerate(DOCS.items())})  # fmt: skip


@pytest.mark.parametrize(
    "documents",
    [["a", "b", "c"], ["c", "b", "a", "a"], ["a", "b", "c", "not in the pack"]],
)
def test_naming_every_document_is_searching_all(documents: list[str]) -> None:
    assert bm25.search(pack(), "matrix data", 10, documents) == bm25.search(
        pack(), "matrix data", 10
    )


@pytest.mark.parametrize(
    ("documents", "expected"),
    [(["a"], {0, 1}), (["b", "not in the pack"], {11}), (["a", "c"], {0, 1, 20}), ([], set())],
)
def test_naming_some_documents_keeps_the_others_out(documents: list[str], expected) -> None:  # noqa: ANN001
    hits = bm25.search(pack(), "matrix", 10, documents)
    assert {i for i, _ in hits} == expected
    scores = dict(bm25.search(pack(), "matrix", 10))
    assert all(score == scores[i] for i, score in hits)  # statistics of the whole pack
