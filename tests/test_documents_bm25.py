"""The BM25 keyword index: scores equal to the textbook formula, stemming, filtering by
document, pickle-free segments; and keyword search, on both backends, scored by that
formula, following the library, and ranking a real manual's passages alike on both."""

from __future__ import annotations

import math
import pickle
from collections import Counter
from pathlib import Path

import pytest

from lib.documents import bm25
from lib.documents.bm25 import Pack, Segment, analyse
from lib.documents.chunking import Chunk
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.store.backend import Backend
from lib.store.postgres import PostgresBackend
from lib.store.sqlite import SQLiteBackend
from tests import doc_samples, postgres, retrieval_set

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


def add_passages(library: DocumentLibrary, name: str, texts: list[str]) -> tuple[str, list[int]]:
    """A ready document of exactly these passages, keyword-only."""
    chunks = [Chunk(1, None, 0, len(t), t, len(t.split())) for t in texts]
    sha = name.encode().hex().ljust(64, "0")
    doc, ids = library.create(name=name, data=name.encode(), sha256=sha, kind="markdown",
                              report={}, pages=[], page_tokens=[], chunks=chunks)  # fmt: skip
    library.search.add(doc.id, ids, texts, None, None)
    library.mark_ready(doc.id, None, {})
    return doc.id, ids


@pytest.mark.parametrize("question", ["symmetric matrix eigenvalue", "header of the data file"])
def test_each_backend_scores_by_the_textbook_formula(backend: Backend, question: str) -> None:
    """SQLite's segment files and PostgreSQL's postings table give the same scores, those
    of the formula written out, the other document's passages counting towards the idf."""
    library = DocumentLibrary(backend, "w")
    keys = {}
    for name, texts in DOCS.items():
        doc_id, ids = add_passages(library, name, texts)
        keys.update({chunk_id: (name, i) for i, chunk_id in enumerate(ids)})
        keys[name] = doc_id
    expected = textbook(question, DOCS)
    got = library.search.keywords(question, [keys["a"], keys["b"]], 10)
    assert {keys[i]: pytest.approx(s, rel=1e-9) for i, s in got} == expected
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    only_a = library.search.keywords(question, [keys["a"]], 10)
    assert {keys[i]: s for i, s in only_a} == {
        key: pytest.approx(s, rel=1e-9) for key, s in expected.items() if key[0] == "a"
    }


def test_postgres_scores_passages_whose_ids_lie_far_apart(
    data_dir: Path, postgres: postgres.TestPostgres
) -> None:
    """Two documents whose chunk ids are fifty million apart (a sequence moved on, rows
    restored from elsewhere) are scored by the formula too: the sums then go by sort,
    not by a count over the range between them."""
    url = postgres.fresh_database()
    backend = PostgresBackend(data_dir, url)
    try:
        library = DocumentLibrary(backend, "w")
        a, a_ids = add_passages(library, "a", DOCS["a"])
        with backend.connection() as conn:
            conn.execute("SELECT setval(pg_get_serial_sequence('chunks', 'id'), 50000000)")
        b, b_ids = add_passages(library, "b", DOCS["b"])
        assert min(b_ids) - max(a_ids) > 40_000_000
        keys = {i: ("a", n) for n, i in enumerate(a_ids)} | {
            i: ("b", n) for n, i in enumerate(b_ids)
        }
        for question in ("symmetric matrix eigenvalue", "header of the data file"):
            got = library.search.keywords(question, [a, b], 10)
            expected = textbook(question, DOCS)
            assert {keys[i]: pytest.approx(s, rel=1e-9) for i, s in got} == expected
            assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    finally:
        backend.close()
        postgres.drop(url)


def test_both_backends_rank_a_real_manual_alike(
    data_dir: Path, postgres: postgres.TestPostgres
) -> None:
    """R-data's every section heading, as written and as a question, asked of the manual
    and a second document on SQLite and on PostgreSQL: the same ten passages, in the same
    order, with the same scores."""
    url = postgres.fresh_database()
    backends = [SQLiteBackend(data_dir), PostgresBackend(data_dir / "pg", url)]
    try:
        ranked = []
        for backend in backends:
            library = DocumentLibrary(backend, "w")
            ingest = Ingestor(library, None, limit_bytes=1 << 30)
            manual = ingest.ingest("R-data.pdf", doc_samples.manual("R-data.pdf"))
            other = ingest.ingest("a.md", "\n\n".join(DOCS["a"]).encode())
            ids = [manual.document_id, other.document_id]
            answers = []
            headings = [h for h, _ in retrieval_set.sections("R-data.pdf")]
            for question in headings + [retrieval_set.as_question(h) for h in headings]:
                hits = library.search.keywords(question, ids, 10)
                chunks = library.chunks([i for i, _ in hits])
                answers.append([(chunks[i].page, chunks[i].start, round(s, 9)) for i, s in hits])
            ranked.append(answers)
        sqlite, pg = ranked
        assert len(sqlite) > 80 and sum(map(len, sqlite)) > 500
        assert pg == sqlite
    finally:
        for backend in backends:
            backend.close()
        postgres.drop(url)


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
    # Re-indexing gives the passages new ids: the old ones are no longer found.
    before = search.keywords("header line", [second.document_id], 5)
    Ingestor(library, None, limit_bytes=1 << 20).reindex(second.document_id)
    after = search.keywords("header line", [second.document_id], 5)
    assert [s for _, s in after] == pytest.approx([s for _, s in before])
    assert set(library.chunks([i for i, _ in after])) == {i for i, _ in after}
    assert not {i for i, _ in before} & {i for i, _ in after}
    library.delete(second.document_id)
    assert search.keywords("header line", [second.document_id], 5) == []
    assert search.keywords("header line", [first.document_id, second.document_id], 5) == []
    if backend.dialect == "postgresql":  # nothing of it is left in the postings table
        with backend.connection() as conn:
            left = conn.execute(
                "SELECT count(*) FROM keyword_postings WHERE document_id = ?",
                (second.document_id,),
            ).fetchone()[0]
        assert left == 0
