"""The upload pipeline and the library, on both backends: reports, failures beside
successes, duplicates, cancelling, keyword-only indexing, delete, re-index and workspace
isolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openai
import pytest

from lib.conversations import ConversationStore
from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor, Progress, upload_limit_mb
from lib.documents.library import DocumentLibrary
from lib.errors import IngestCancelled, NotFoundError
from lib.store.backend import Backend
from tests import doc_samples as samples
from tests.fake_openai import FakeOpenAI

MODEL = "text-embedding-3-small"
NOTES = ("# Field notes\n\nThe heron nests by the river in spring.\n\n" * 40).encode()


@pytest.fixture
def library(backend: Backend) -> DocumentLibrary:
    return DocumentLibrary(backend, "alice")


@pytest.fixture
def client(openai_server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")


def ingestor(
    library: DocumentLibrary, client: openai.OpenAI | None, *, ocr: bool = True, **kw
) -> Ingestor:
    embedder = Embedder(client, MODEL, cache=library.cache, **kw) if client else None
    return Ingestor(library, embedder, limit_bytes=upload_limit_mb() * 1_048_576, ocr=ocr)


def rows(library: DocumentLibrary, sql: str) -> int:
    with library.backend.connection() as conn:
        return conn.execute(sql).fetchone()[0]


def stored_files(library: DocumentLibrary, *suffixes: str) -> list[str]:
    """The keys of the workspace's uploaded files in the blob store."""
    prefix = library.blob_key("documents", "x").rsplit("/", 1)[0]
    return [k for k in library.blobs.keys(prefix) if k.endswith(suffixes)]


def test_the_upload_limit_comes_from_streamlit_config(tmp_path: Path) -> None:
    assert upload_limit_mb() == 50
    config = tmp_path / "config.toml"
    config.write_text("[server]\nmaxUploadSize = 7\n")
    assert upload_limit_mb(config) == 7
    assert upload_limit_mb(tmp_path / "missing.toml") == 200  # Streamlit's own default


def test_a_manual_is_indexed_with_an_honest_report_and_progress(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    events: list[Progress] = []
    (report,) = ingestor(library, client, max_inputs=64).ingest_many(
        [("R-intro.pdf", samples.manual())], events.append
    )
    assert report.status == "indexed", report.message
    assert (report.pages, report.empty_pages, report.keyword_only) == (113, [], False)
    assert report.chars > 200_000 and report.chunks > 200
    assert report.message.startswith("R-intro.pdf: 113 pages, ")
    reading = [e for e in events if e.stage == "reading"]
    assert [e.done for e in reading] == list(range(1, 114))  # a tick per page
    embedding = [e for e in events if e.stage == "embedding"]
    assert len(embedding) >= report.chunks // 64  # a tick per batch
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0
    doc = library.get(report.document_id)
    assert doc.status == "ready" and doc.embedding_model == MODEL and doc.tokens > 50_000
    assert doc.report["chunks"] == report.chunks
    assert library.search.vector_count(MODEL) == report.chunks
    if library.dialect == "sqlite":
        assert library.search.open_index(MODEL).kind == "flat"


def test_bad_files_are_reported_and_the_good_ones_still_indexed(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    upload = [
        ("broken.pdf", samples.corrupt_pdf()),
        ("intro-p14.pdf", samples.pdf_of_pages([14, 15])),
        ("scan.pdf", samples.image_only_pdf(3)),
        ("locked.pdf", samples.encrypted_pdf("secret")),
        ("empty.txt", b""),
        ("half.pdf", samples.truncated_pdf()),
        ("notes.md", NOTES),
        ("photo.txt", samples.png_bytes()),
    ]
    # OCR off (PARLEY_OCR): the scan is refused as one (tests/test_documents_ocr.py reads it)
    reports = {r.name: r for r in ingestor(library, client, ocr=False).ingest_many(upload)}
    assert {n for n, r in reports.items() if r.status == "indexed"} == {
        "intro-p14.pdf",
        "notes.md",
    }
    assert "no text that can be extracted" in reports["scan.pdf"].message
    assert "3 pages" in reports["scan.pdf"].message and "OCR" in reports["scan.pdf"].message
    assert "password" in reports["locked.pdf"].message
    assert "empty" in reports["empty.txt"].message
    assert "damaged or truncated" in reports["half.pdf"].message
    assert "damaged or truncated" in reports["broken.pdf"].message
    assert "PNG" in reports["photo.txt"].message
    assert sorted(d.name for d in library.list()) == ["intro-p14.pdf", "notes.md"]
    assert len(stored_files(library, ".pdf", ".md", ".txt")) == 2  # nothing from failures


def test_pages_without_text_are_counted_but_the_rest_is_indexed(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    report = ingestor(library, client, ocr=False).ingest("mixed.pdf", samples.mixed_pdf())
    assert report.status == "indexed"
    assert report.pages == 3 and report.empty_pages == [2]
    assert "1 without text" in report.message


def test_a_file_over_the_limit_is_refused(library: DocumentLibrary) -> None:
    small = Ingestor(library, None, limit_bytes=1_000)
    report = small.ingest("big.md", NOTES)
    assert report.status == "failed"
    assert report.message == "big.md is 2 KB; the limit is 1 KB per file."
    assert library.list() == []


def test_uploading_the_same_file_again_is_instant_and_adds_nothing(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    ing = ingestor(library, client)
    first = ing.ingest("R-intro.pdf", samples.manual())
    chunks = rows(library, "SELECT count(*) FROM chunks")
    openai_server.reset()
    again = ing.ingest("copy of R-intro.pdf", samples.manual())
    assert again.status == "duplicate" and again.document_id == first.document_id
    assert "already in your library as R-intro.pdf" in again.message
    assert again.chunks == first.chunks and again.pages == 113
    assert again.seconds < first.seconds * 0.05
    assert rows(library, "SELECT count(*) FROM chunks") == chunks
    assert openai_server.requests == []
    assert library.search.vector_count(MODEL) == chunks


def test_cancelling_leaves_nothing_and_a_retry_reuses_paid_embeddings(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    ing = ingestor(library, client, max_inputs=32)
    events: list[Progress] = []

    def cancel_after_two_batches() -> bool:
        return len([e for e in events if e.stage == "embedding"]) > 2

    with pytest.raises(IngestCancelled):
        ing.ingest("R-intro.pdf", samples.manual(), _tick(events), cancel_after_two_batches)
    assert library.list() == []
    assert rows(library, "SELECT count(*) FROM chunks") == 0
    assert stored_files(library, ".pdf") == []
    sent_before = sum(len(r.json["input"]) for r in openai_server.requests_to("/embeddings"))
    openai_server.reset()
    report = ing.ingest("R-intro.pdf", samples.manual())
    assert report.status == "indexed" and report.cached == sent_before
    sent_after = sum(len(r.json["input"]) for r in openai_server.requests_to("/embeddings"))
    assert sent_after == report.chunks - sent_before


def test_cancelling_during_reading_stops_the_rest_of_the_upload(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    events: list[Progress] = []
    reports = ingestor(library, client).ingest_many(
        [("a.md", NOTES), ("R-intro.pdf", samples.manual()), ("c.md", NOTES + b"more")],
        events.append,
        cancelled=lambda: any(e.file == "R-intro.pdf" and e.done == 10 for e in events),
    )
    assert [(r.name, r.status) for r in reports] == [
        ("a.md", "indexed"),
        ("R-intro.pdf", "cancelled"),
        ("c.md", "cancelled"),
    ]
    assert [d.name for d in library.list()] == ["a.md"]


def _tick(events: list[Progress]):  # noqa: ANN202
    def tick(stage: str, done: int, total: int, message: str, fraction: float) -> None:
        events.append(Progress("f", 0, 1, stage, done, total, fraction, message))

    return tick


def test_without_an_embeddings_endpoint_files_are_indexed_for_keywords(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    openai_server.embeddings_enabled = False
    report = ingestor(library, client).ingest("R-intro.pdf", samples.manual())
    assert report.status == "indexed" and report.keyword_only
    assert "keywords only" in " ".join(report.notes)
    assert "(keyword search only)" in report.message
    doc = library.get(report.document_id)
    assert doc.embedding_model is None and library.search.vector_count(MODEL) == 0
    hits = library.search.keywords("eigenvalues symmetric matrix", [doc.id], 5)
    assert hits and library.chunks([hits[0][0]])[hits[0][0]].page == 31

    # Later the server gains embeddings: re-indexing adds the vectors.
    openai_server.embeddings_enabled = True
    again = ingestor(library, client).reindex(doc.id)
    assert again.status == "indexed" and not again.keyword_only
    assert library.get(doc.id).embedding_model == MODEL
    assert library.search.vector_count(MODEL) == again.chunks


def test_reindexing_rebuilds_chunks_and_vectors_from_the_cache(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    ing = ingestor(library, client)
    first = ing.ingest("R-intro.pdf", samples.manual())
    old_ids = set(library.chunk_ids([first.document_id]).tolist())
    openai_server.reset()
    again = ing.reindex(first.document_id)
    assert again.status == "indexed" and again.cached == again.chunks
    assert openai_server.requests_to("/embeddings") == []
    new_ids = set(library.chunk_ids([first.document_id]).tolist())
    assert new_ids.isdisjoint(old_ids) and len(new_ids) == first.chunks
    assert set(vector_ids(library)) == new_ids


def vector_ids(library: DocumentLibrary) -> list[int]:
    """The chunk ids the workspace's vector index holds, on either backend."""
    if library.dialect == "sqlite":
        return library.search.open_index(MODEL).all_vectors()[0].tolist()
    with library.backend.connection() as conn:
        return [r[0] for r in conn.execute(
            "SELECT chunk_id FROM chunk_vectors WHERE workspace = ? AND model = ?",
            (library.workspace, MODEL))]  # fmt: skip


def test_delete_removes_rows_vectors_unshared_cache_and_file(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    ing = ingestor(library, client)
    intro = ing.ingest("R-intro.pdf", samples.manual())
    part = ing.ingest("p14.pdf", samples.pdf_of_pages([14]))  # shares its text with intro
    notes = ing.ingest("notes.md", NOTES)
    stored = library.get(intro.document_id).stored_as
    cache_before = library.cache.count()
    library.delete(intro.document_id)
    with pytest.raises(NotFoundError):
        library.get(intro.document_id)
    assert not library.blobs.exists(stored)
    remaining = part.chunks + notes.chunks
    assert rows(library, "SELECT count(*) FROM chunks") == remaining
    assert rows(library, "SELECT count(*) FROM document_pages") == 2
    if library.dialect == "sqlite":
        assert not (library.search.folder / f"{intro.document_id}.bm25.npz").exists()
    every = [d.id for d in library.list()]
    assert library.search.keywords("eigenvalues", every, 5) == []  # only R-intro had it
    assert library.search.vector_count(MODEL) == remaining
    # Page 14's chunks are identical in both files, so their cache entries stay.
    shared = library.cache.get(MODEL, [c.hash for c in _chunks(library, part)])
    assert len(shared) == part.chunks
    assert library.cache.count() < cache_before


def _chunks(library: DocumentLibrary, report):  # noqa: ANN001, ANN202
    from lib.documents.chunking import split_pages
    from lib.documents.extract import open_document

    return split_pages(open_document(report.name, samples.pdf_of_pages([14])).pages())


def test_workspaces_never_see_each_other(
    library: DocumentLibrary, client: openai.OpenAI, backend: Backend
) -> None:
    alice = ingestor(library, client).ingest("../../etc/passwd.pdf", samples.manual())
    bobs = DocumentLibrary(backend, "bob")
    bob = ingestor(bobs, client).ingest("notes.md", NOTES)
    assert [d.name for d in bobs.list()] == ["notes.md"]
    with pytest.raises(NotFoundError):
        bobs.get(alice.document_id)
    with pytest.raises(NotFoundError):
        bobs.delete(alice.document_id)
    with pytest.raises(NotFoundError):
        bobs.read_file(library.get(alice.document_id))
    assert bobs.search.keywords("eigenvalues", [alice.document_id], 5) == []
    question = library.cache.get(MODEL, [c.hash for c in _chunks(library, alice)])
    vector = next(iter(question.values()))
    assert bobs.search.vectors(MODEL, vector, [alice.document_id], 5) == []
    alice_ids = library.chunk_ids([alice.document_id]).tolist()
    assert len(alice_ids) == alice.chunks and bobs.chunk_ids([alice.document_id]).size == 0
    assert bobs.chunks(alice_ids) == {}
    assert bobs.pages([alice.document_id]) == []
    assert bobs.cache.get(MODEL, list(question)) == {}
    # The uploaded name is never part of a key: a generated name in alice's own folder.
    doc = library.get(alice.document_id)
    assert doc.stored_as == library.blob_key("documents", f"{doc.id}.pdf")
    assert doc.stored_as.split("/")[0] != bobs.blob_key("documents", "x").split("/")[0]
    assert not any("passwd" in key for key in backend.blobs.keys())
    assert not any("passwd" in p.name for p in backend.data_dir.rglob("*"))
    # Bob cannot attach alice's document to his conversation.
    conv = ConversationStore(backend, "bob").create(model="gpt-5-mini", kind="documents")
    bobs.set_conversation_documents(conv.id, [alice.document_id, bob.document_id])
    assert bobs.conversation_documents(conv.id) == [bob.document_id]
    assert bobs.search.vector_count(MODEL) == bob.chunks


def test_the_same_file_added_by_two_sessions_at_once_is_kept_once(
    library: DocumentLibrary, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ingestor(library, client).ingest("notes.md", NOTES)
    real = library.find_by_hash
    calls = []

    def racing(sha: str):  # noqa: ANN202 - the first check misses the other session's
        calls.append(sha)
        return None if len(calls) == 1 else real(sha)

    monkeypatch.setattr(library, "find_by_hash", racing)
    again = ingestor(library, client).ingest("notes again.md", NOTES)
    assert again.status == "duplicate" and again.document_id == first.document_id
    assert [d.name for d in library.list()] == ["notes.md"]
    assert len(stored_files(library, ".md")) == 1


def test_the_index_reads_back_the_vectors_the_embedder_gave(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    # The index adds a file's vectors from the embedding cache, a block at a time, after
    # the embedder's array is gone: the same ids, the same vectors.
    report = ingestor(library, client).ingest("R-intro.pdf", samples.manual())
    assert report.status == "indexed" and not report.keyword_only
    ids, texts = library.chunk_texts(report.document_id)
    assert sorted(vector_ids(library)) == sorted(ids)
    if library.dialect == "sqlite":
        got_ids, got = library.search.open_index(MODEL).all_vectors()
        want = Embedder(client, MODEL).embed(texts)
        order = {int(i): n for n, i in enumerate(ids)}
        np.testing.assert_allclose(got, want[[order[int(i)] for i in got_ids]], atol=1e-6)


def test_vectors_gone_from_the_cache_before_the_index_reads_them_fail_the_file(
    library: DocumentLibrary, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    embed = Embedder.embed

    def embed_then_clear(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        vectors = embed(self, *args, **kwargs)
        with library.backend.transaction() as conn:
            conn.execute("DELETE FROM embedding_cache")  # another session clearing it
        return vectors

    monkeypatch.setattr(Embedder, "embed", embed_then_clear)
    report = ingestor(library, client).ingest("notes.md", NOTES)
    assert report.status == "failed" and "left the cache" in report.message
    assert library.list() == [] and rows(library, "SELECT count(*) FROM chunks") == 0
