"""The upload pipeline and the library: reports, failures beside successes, duplicates,
cancelling, keyword-only indexing, delete, re-index and workspace isolation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest

from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor, Progress, upload_limit_mb
from lib.documents.library import DocumentLibrary
from lib.documents.retrieval import KeywordIndex
from lib.errors import IngestCancelled, NotFoundError
from tests import doc_samples as samples
from tests.fake_openai import FakeOpenAI

MODEL = "text-embedding-3-small"
NOTES = ("# Field notes\n\nThe heron nests by the river in spring.\n\n" * 40).encode()


@pytest.fixture
def library(data_dir: Path) -> DocumentLibrary:
    return DocumentLibrary(data_dir)


@pytest.fixture
def client(openai_server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")


def ingestor(
    library: DocumentLibrary, client: openai.OpenAI | None, ws: str = "alice", **kw
) -> Ingestor:
    embedder = Embedder(client, MODEL, workspace=ws, cache=library.cache, **kw) if client else None
    return Ingestor(library, ws, embedder, limit_bytes=upload_limit_mb() * 1_048_576)


def rows(library: DocumentLibrary, sql: str) -> int:
    with sqlite3.connect(library.db_path) as conn:
        return conn.execute(sql).fetchone()[0]


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
    doc = library.get("alice", report.document_id)
    assert doc.status == "ready" and doc.embedding_model == MODEL and doc.tokens > 50_000
    assert doc.report["chunks"] == report.chunks
    store = library.open_index("alice", MODEL)
    assert store.size == report.chunks and store.kind == "flat"


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
    reports = {r.name: r for r in ingestor(library, client).ingest_many(upload)}
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
    assert sorted(d.name for d in library.list("alice")) == ["intro-p14.pdf", "notes.md"]
    stored = sorted(p.name for p in library.workspace_dir("alice").glob("*.*") if p.is_file())
    assert len([p for p in stored if p.endswith((".pdf", ".md"))]) == 2  # nothing from failures


def test_pages_without_text_are_counted_but_the_rest_is_indexed(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    report = ingestor(library, client).ingest("mixed.pdf", samples.mixed_pdf())
    assert report.status == "indexed"
    assert report.pages == 3 and report.empty_pages == [2]
    assert "1 without text" in report.message


def test_a_file_over_the_limit_is_refused(library: DocumentLibrary) -> None:
    small = Ingestor(library, "alice", None, limit_bytes=1_000)
    report = small.ingest("big.md", NOTES)
    assert report.status == "failed"
    assert report.message == "big.md is 2 KB; the limit is 1 KB per file."
    assert library.list("alice") == []


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
    assert library.open_index("alice", MODEL).size == chunks


def test_cancelling_leaves_nothing_and_a_retry_reuses_paid_embeddings(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    ing = ingestor(library, client, max_inputs=32)
    events: list[Progress] = []

    def cancel_after_two_batches() -> bool:
        return len([e for e in events if e.stage == "embedding"]) > 2

    with pytest.raises(IngestCancelled):
        ing.ingest("R-intro.pdf", samples.manual(), _tick(events), cancel_after_two_batches)
    assert library.list("alice") == []
    assert rows(library, "SELECT count(*) FROM chunks") == 0
    assert [p for p in library.workspace_dir("alice").iterdir() if p.suffix == ".pdf"] == []
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
    assert [d.name for d in library.list("alice")] == ["a.md"]


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
    doc = library.get("alice", report.document_id)
    assert doc.embedding_model is None and library.open_index("alice", MODEL) is None
    hits = KeywordIndex(library, "alice").search("eigenvalues symmetric matrix", [doc.id], 5)
    assert hits and library.chunks("alice", [hits[0][0]])[hits[0][0]].page == 31

    # Later the server gains embeddings: re-indexing adds the vectors.
    openai_server.embeddings_enabled = True
    again = ingestor(library, client).reindex(doc.id)
    assert again.status == "indexed" and not again.keyword_only
    assert library.get("alice", doc.id).embedding_model == MODEL
    assert library.open_index("alice", MODEL).size == again.chunks


def test_reindexing_rebuilds_chunks_and_vectors_from_the_cache(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    ing = ingestor(library, client)
    first = ing.ingest("R-intro.pdf", samples.manual())
    old_ids = set(library.chunk_ids("alice", [first.document_id]).tolist())
    openai_server.reset()
    again = ing.reindex(first.document_id)
    assert again.status == "indexed" and again.cached == again.chunks
    assert openai_server.requests_to("/embeddings") == []
    new_ids = set(library.chunk_ids("alice", [first.document_id]).tolist())
    assert new_ids.isdisjoint(old_ids) and len(new_ids) == first.chunks
    store = library.open_index("alice", MODEL)
    found, _ = store.all_vectors()
    assert set(found.tolist()) == new_ids


def test_delete_removes_rows_vectors_unshared_cache_and_file(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    ing = ingestor(library, client)
    intro = ing.ingest("R-intro.pdf", samples.manual())
    part = ing.ingest("p14.pdf", samples.pdf_of_pages([14]))  # shares its text with intro
    notes = ing.ingest("notes.md", NOTES)
    stored = library.get("alice", intro.document_id).stored_as
    cache_before = library.cache.count("alice")
    library.delete("alice", intro.document_id)
    with pytest.raises(NotFoundError):
        library.get("alice", intro.document_id)
    assert not (library.workspace_dir("alice") / stored).exists()
    remaining = part.chunks + notes.chunks
    assert rows(library, "SELECT count(*) FROM chunks") == remaining
    assert rows(library, "SELECT count(*) FROM document_pages") == 2
    assert not (library.workspace_dir("alice") / f"{intro.document_id}.bm25.npz").exists()
    keywords = KeywordIndex(library, "alice")
    every = [d.id for d in library.list("alice")]
    assert [i for i, _ in keywords.search("eigenvalues", every, 5)] == []  # only R-intro had it
    assert library.open_index("alice", MODEL).size == remaining
    # Page 14's chunks are identical in both files, so their cache entries stay.
    shared = library.cache.get("alice", MODEL, [c.hash for c in _chunks(library, part)])
    assert len(shared) == part.chunks
    assert library.cache.count("alice") < cache_before


def _chunks(library: DocumentLibrary, report):  # noqa: ANN001, ANN202
    from lib.documents.chunking import split_pages
    from lib.documents.extract import open_document

    return split_pages(open_document(report.name, samples.pdf_of_pages([14])).pages())


def test_workspaces_never_see_each_other(
    library: DocumentLibrary, client: openai.OpenAI, store
) -> None:
    alice = ingestor(library, client, "alice").ingest("../../etc/passwd.pdf", samples.manual())
    bob = ingestor(library, client, "bob").ingest("notes.md", NOTES)
    assert [d.name for d in library.list("bob")] == ["notes.md"]
    with pytest.raises(NotFoundError):
        library.get("bob", alice.document_id)
    with pytest.raises(NotFoundError):
        library.delete("bob", alice.document_id)
    assert KeywordIndex(library, "bob").search("eigenvalues", [alice.document_id], 5) == []
    alice_ids = library.chunk_ids("alice", [alice.document_id]).tolist()
    assert library.chunks("bob", alice_ids) == {}
    assert library.pages("bob", [alice.document_id]) == []
    assert library.workspace_dir("alice") != library.workspace_dir("bob")
    # The uploaded name is never a path: the file has a generated name in alice's folder.
    doc = library.get("alice", alice.document_id)
    assert doc.stored_as == f"{doc.id}.pdf"
    assert not any("passwd" in p.name for p in library.data_dir.rglob("*"))
    # Bob cannot attach alice's document to his conversation.
    conv = store.create("bob", model="gpt-5-mini", kind="documents")
    library.set_conversation_documents("bob", conv.id, [alice.document_id, bob.document_id])
    assert library.conversation_documents("bob", conv.id) == [bob.document_id]
    assert library.open_index("bob", MODEL).size == bob.chunks


def test_the_same_file_added_by_two_sessions_at_once_is_kept_once(
    library: DocumentLibrary, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ingestor(library, client).ingest("notes.md", NOTES)
    real = library.find_by_hash
    calls = []

    def racing(workspace: str, sha: str):  # noqa: ANN202 - the first check misses the other
        calls.append(sha)
        return None if len(calls) == 1 else real(workspace, sha)

    monkeypatch.setattr(library, "find_by_hash", racing)
    again = ingestor(library, client).ingest("notes again.md", NOTES)
    assert again.status == "duplicate" and again.document_id == first.document_id
    assert [d.name for d in library.list("alice")] == ["notes.md"]
    stored = [p for p in library.workspace_dir("alice").iterdir() if p.suffix == ".md"]
    assert len(stored) == 1
