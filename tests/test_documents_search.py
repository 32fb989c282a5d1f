"""The search seam's contract, on both backends (FAISS and BM25 files on SQLite, pgvector
and BM25 postings in the database on PostgreSQL): a passage is found by vector and by keyword among
the chosen documents only, and a workspace never sees another's passages."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from lib.documents.chunking import Chunk
from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.documents.retrieval import retrieve
from lib.store.backend import Backend
from tests.fake_openai import FakeOpenAI

MODEL = "text-embedding-3-small"
HERONS = (
    "# Herons\n\nThe grey heron nests in colonies by rivers in early spring.\n\n" * 30
).encode()
ROWING = ("# Rowing\n\nA sculler feathers the blade on the recovery stroke.\n\n" * 30).encode()
PASSAGE = "The grey heron nests in colonies by rivers in early spring."


@pytest.fixture
def client(openai_server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")


def ingest(library: DocumentLibrary, client: openai.OpenAI, name: str, data: bytes) -> str:
    embedder = Embedder(client, MODEL, cache=library.cache)
    report = Ingestor(library, embedder, limit_bytes=1 << 20).ingest(name, data)
    assert report.status == "indexed" and not report.keyword_only, report.message
    return report.document_id


def documents_of(library: DocumentLibrary, hits: list[tuple[int, float]]) -> set[str]:
    return {c.document_id for c in library.chunks([i for i, _ in hits]).values()}


def test_a_passage_is_found_by_vector_and_by_keyword_among_the_chosen_documents(
    backend: Backend, client: openai.OpenAI
) -> None:
    library = DocumentLibrary(backend, "alice")
    herons = ingest(library, client, "herons.md", HERONS)
    rowing = ingest(library, client, "rowing.md", ROWING)
    twin = ingest(library, client, "copy.md", HERONS + b"\nA copy.")  # the same passages
    vector = Embedder(client, MODEL).embed_query(PASSAGE)
    search = library.search

    by_vector = search.vectors(MODEL, vector, [herons, rowing], 5)
    assert by_vector and documents_of(library, by_vector[:1]) == {herons}
    assert by_vector[0][1] == pytest.approx(1.0, abs=0.05)  # cosine similarity of the same text
    assert twin not in documents_of(library, by_vector)  # not chosen, though nearer than rowing
    assert documents_of(library, search.vectors(MODEL, vector, [rowing], 5)) == {rowing}

    by_keyword = search.keywords("Which sculler feathers?", [herons, rowing], 5)
    assert by_keyword and documents_of(library, by_keyword) == {rowing}
    assert search.keywords("Which sculler feathers?", [herons, twin], 5) == []
    # Stop words only: never an empty query (issue 13), so those words are searched.
    only_stop_words = search.keywords("the of and", [herons, rowing], 5)
    assert only_stop_words and documents_of(library, only_stop_words) <= {herons, rowing}

    found = retrieve(library, PASSAGE, [rowing], model=MODEL, query_vector=vector)
    assert found.mode == "hybrid" and {s.chunk.document_id for s in found.sources} == {rowing}
    found = retrieve(library, "heron colonies", [herons, rowing], model=MODEL, query_vector=vector)
    assert found.sources[0].chunk.document_id == herons
    assert found.sources[0].keyword_rank is not None and found.sources[0].dense_rank is not None


def test_one_workspace_never_sees_another_workspaces_passages(
    backend: Backend, client: openai.OpenAI
) -> None:
    alices = DocumentLibrary(backend, "alice")
    bobs = DocumentLibrary(backend, "bob")
    alice_doc = ingest(alices, client, "herons.md", HERONS)
    bob_doc = ingest(bobs, client, "herons.md", HERONS)  # the same file, in bob's workspace
    vector = Embedder(client, MODEL).embed_query(PASSAGE)
    every = [alice_doc, bob_doc]  # bob names alice's document too
    assert documents_of(bobs, bobs.search.vectors(MODEL, vector, every, 30)) == {bob_doc}
    assert documents_of(bobs, bobs.search.keywords("grey heron", every, 30)) == {bob_doc}
    assert bobs.search.vectors(MODEL, vector, [alice_doc], 30) == []
    assert bobs.search.keywords("grey heron", [alice_doc], 30) == []
    found = retrieve(bobs, PASSAGE, every, model=MODEL, query_vector=vector)
    assert {s.chunk.document_id for s in found.sources} == {bob_doc}
    assert alices.search.vector_count(MODEL) == bobs.search.vector_count(MODEL) > 0
    alices.delete(alice_doc)  # bob's copy stays searchable
    assert bobs.search.keywords("grey heron", [bob_doc], 30)
    assert alices.search.vector_count(MODEL) == 0


def test_a_small_chosen_document_among_many_still_gets_k_nearest(backend: Backend) -> None:
    """A filter that keeps 1 passage in 100 must not leave the vector search short
    (on PostgreSQL: HNSW's iterative scan; on SQLite: FAISS's id selector)."""
    library = DocumentLibrary(backend, "alice")
    rng = np.random.default_rng(7)
    docs = []
    for n in range(31):
        size = 10 if n == 0 else 100
        chunks = [Chunk(1, None, 0, 4, f"passage {n}-{i}", 3) for i in range(size)]
        doc, ids = library.create(name=f"d{n}.md", data=f"{n}".encode(), sha256=f"{n:064d}",
                                  kind="markdown", report={}, pages=[], page_tokens=[],
                                  chunks=chunks)  # fmt: skip
        vectors = rng.standard_normal((size, 64)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        library.search.add(doc.id, ids, [c.text for c in chunks], MODEL, vectors)
        library.mark_ready(doc.id, MODEL, {})
        docs.append(doc.id)
    query = rng.standard_normal(64).astype(np.float32)
    query /= np.linalg.norm(query)
    hits = library.search.vectors(MODEL, query, docs[:1], 10)
    assert len(hits) == 10 and documents_of(library, hits) == {docs[0]}
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
