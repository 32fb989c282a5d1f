"""The BM25 keyword index: scores equal to the textbook formula, stemming, filtering by
document, pickle-free segments; and keyword search, on both backends, following the
library."""

from __future__ import annotations

import math
import pickle
from collections import Counter
from pathlib import Path

import pytest

from lib.documents import bm25
from lib.documents.bm25 import Pack, Segment, analyse
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.store.backend import Backend

DOCS = {
    "a": ["The matrix has eigenvalues.", "Eigenvalues of a symmetric matrix are real.", "Cats."],
    "b": ["A data frame is read from a file.", "The header line names the columns.", "Matrix"],
}


def textbook(question: str, docs: dict[str, list[str]]) -> dict[tuple[str, int], float]:
    """BM25 written out longhand, independent of the numpy code."""
    chunks = {(d, i): analyse(t) for d, texts in docs.items() for i, t in enumerate(texts)}
    n = len(chunks)
    average = sum(len(w) for w in chunks.values()) / n
    scores = {}
    for key, words in chunks.items():
        tf = Counter(words)
        score = 0.0
        for term in dict.fromkeys(analyse(question)):
            df = sum(term in w for w in chunks.values())
            if tf[term]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                norm = bm25.K1 * (1 - bm25.B + bm25.B * len(words) / average)
                score += idf * tf[term] * (bm25.K1 + 1) / (tf[term] + norm)
        if score > 0:
            scores[key] = score
    return scores


def pack_of(docs: dict[str, list[str]]) -> Pack:
    segments, base = {}, 0
    for doc_id, texts in docs.items():
        segments[doc_id] = Segment.build(range(base, base + len(texts)), texts)
        base += 100
    return Pack.of(segments)


@pytest.mark.parametrize("question", ["symmetric matrix eigenvalue", "header of the data file"])
def test_scores_match_the_textbook_formula(question: str) -> None:
    expected = textbook(question, DOCS)
    got = bm25.search(pack_of(DOCS), question, 10)
    as_keys = {(("a", "b")[i // 100], i % 100): s for i, s in got}
    assert as_keys.keys() == expected.keys()
    for key, score in expected.items():
        assert as_keys[key] == pytest.approx(score, rel=1e-9)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_stemming_and_stop_words() -> None:
    assert analyse("Eigenvalues") == analyse("eigenvalue")
    assert analyse("the of and") == []
    hits = bm25.search(pack_of(DOCS), "an eigenvalue", 5)
    assert {i for i, _ in hits} == {0, 1}


def test_search_can_be_limited_to_documents() -> None:
    pack = pack_of(DOCS)
    assert {i // 100 for i, _ in bm25.search(pack, "matrix", 10)} == {0, 1}
    assert [i for i, _ in bm25.search(pack, "matrix", 10, ["b"])] == [102]
    assert bm25.search(pack, "matrix", 10, []) == []
    assert bm25.search(pack, "zebra", 10) == []
    assert bm25.search(Pack.of({}), "matrix", 10) == []


def test_segments_round_trip_without_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment = Segment.build([7, 8, 9], DOCS["a"])
    segment.save(tmp_path / "s.bm25.npz")
    monkeypatch.setattr(pickle, "loads", lambda *_a, **_k: pytest.fail("pickle used"))
    again = Segment.load(tmp_path / "s.bm25.npz")
    for name in Segment.__dataclass_fields__:
        assert (getattr(again, name) == getattr(segment, name)).all()


def test_keyword_search_follows_uploads_deletes_and_lost_files(backend: Backend) -> None:
    library = DocumentLibrary(backend, "w")
    ingest = Ingestor(library, None, limit_bytes=1 << 20)
    first = ingest.ingest("a.md", "\n\n".join(DOCS["a"]).encode())
    search = library.search
    assert search.keywords("eigenvalues", [first.document_id], 5)
    second = ingest.ingest("b.md", "\n\n".join(DOCS["b"]).encode())
    assert search.keywords("header line", [second.document_id], 5)
    if backend.dialect == "sqlite":  # the session's pack of segment files
        pack = search.pack()
        assert search.pack() is pack  # unchanged library: the same pack, not rebuilt
        # A lost segment file is rebuilt from the chunks in SQLite.
        path = search.folder / f"{second.document_id}.bm25.npz"
        path.unlink()
        fresh = DocumentLibrary(backend, "w").search
        assert fresh.keywords("header line", [second.document_id], 5)
        assert path.exists()
    library.delete(second.document_id)
    assert search.keywords("header line", [second.document_id], 5) == []
    assert search.keywords("header line", [first.document_id, second.document_id], 5) == []
