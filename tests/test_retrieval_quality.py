"""The right passage first: retrieval quality over three real R manuals, on both backends.

The question set is tests/retrieval_set.py's (every section heading of R-admin, R-data
and R-exts, as written and asked as a question, 642 queries; the gold is the section's
pages, the three manuals searched together). The manuals go through Parley's own ingest
path; the test server embeds them (tests/fake_images.embed: feature-hashed words and
character bigrams, 256 dimensions, so dense search is lexical and knows no synonyms).

Issue 13's targets are hit@1 at least 0.75 keyword-only and 0.85 hybrid, hit@5 0.98.
Measured (hit@1 / hit@5): keyword 0.972 / 0.994 and hybrid 0.988 / 0.997 on SQLite,
keyword 0.972 / 0.994 and hybrid 0.983 / 0.997 on PostgreSQL (hybrid 0.930 / 0.975 and
0.924 / 0.969 before the heading list read 100 candidates per search and weighed as the
searches together, lib/documents/retrieval.py). The floors sit a few queries below
those (PostgreSQL's HNSW graph, and so its dense list, varies from build to build), so a
regression fails. Before this work, on SQLite: keyword 0.474 / 0.863, hybrid 0.396 /
0.762.
"""

from __future__ import annotations

import numpy as np
import openai
import pytest

from lib.documents import bm25, phrases, windows
from lib.documents.chunking import count_tokens
from lib.documents.embeddings import Embedder
from lib.documents.library import DocumentLibrary
from lib.documents.listings import is_listing
from lib.documents.rerank import RERANK_POOL, Reranker
from lib.documents.retrieval import retrieve
from lib.errors import ConfigError
from lib.settings import resolve_settings
from lib.store.backend import Backend
from lib.store.postgres import PostgresBackend
from lib.store.sqlite import SQLiteBackend
from tests import postgres, retrieval_set
from tests.fake_images import embed
from tests.fake_openai import FakeOpenAI

MODEL = "text-embedding-3-small"
FLOORS = {"keyword": (0.96, 0.985), "hybrid": (0.975, 0.99)}  # (hit@1, hit@5)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    data_dir = tmp_path_factory.mktemp("quality")
    if request.param == "sqlite":
        made: Backend = SQLiteBackend(data_dir)
    else:
        server: postgres.TestPostgres = request.getfixturevalue("postgres")
        made = PostgresBackend(data_dir, server.fresh_database())
    request.addfinalizer(made.close)
    return made


@pytest.fixture(scope="module")
def manuals(_server: FakeOpenAI, module_backend: Backend):  # noqa: ANN201
    _server.reset()
    library = DocumentLibrary(module_backend, "w")
    client = openai.OpenAI(base_url=_server.base_url, api_key="sk-test")
    embedder = Embedder(client, MODEL, cache=library.cache)
    return library, retrieval_set.index_manuals(library, embedder), embedder


def test_the_right_page_comes_first(manuals) -> None:  # noqa: ANN001
    library, ids, embedder = manuals
    items = retrieval_set.queries()
    assert len(items) == 642 and {q.form for q in items} == {"heading", "question"}
    scores = retrieval_set.measure(library, ids, embedder, items)
    print(f"\nR manuals ({library.dialect}, {len(items)} queries):")
    for mode, s in scores.items():
        print(f"  {mode:7} hit@1 {s.hit1:.3f}  hit@5 {s.hit5:.3f}  MRR {s.mrr:.3f}")
    for mode, (hit1, hit5) in FLOORS.items():
        got = scores[mode]
        assert got.hit1 >= hit1 and got.hit5 >= hit5, (mode, got.hit1, got.hit5, got.misses)
        assert got.mrr > got.hit1 - 1e-9


def test_no_table_of_contents_or_index_is_ever_a_source(manuals) -> None:  # noqa: ANN001
    library, ids, embedder = manuals
    # Words every table of contents of these manuals is full of.
    for question in ["Installing packages", "Concept index", "Function and variable index"]:
        vector = embedder.embed_query(question)
        for dense in (False, True):
            found = retrieve(
                library, question, ids, model=MODEL if dense else None,
                query_vector=vector if dense else None, k=20,
            )  # fmt: skip
            assert found.sources and not any(is_listing(s.chunk.text) for s in found.sources)
    with library.backend.connection() as conn:
        listed = conn.execute("SELECT count(*) FROM chunks WHERE listing = 1").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert 0.05 * total < listed < 0.4 * total  # their contents and indexes, not the text


def test_a_question_of_stop_words_still_searches(manuals) -> None:  # noqa: ANN001
    library, ids, _ = manuals
    found = retrieve(library, "What is it?", ids)
    assert found.sources, "stop-word removal emptied the query"
    assert bm25.query_terms("What is it?") and bm25.query_terms("What is R?") == bm25.analyse("r")


TOC = """Table of Contents
1 Obtaining R . . . . . . . . . . . . . . . . . . . . . . . . . . 1
1.1 Getting and unpacking the sources . . . . . . . . . . . . . . 1
1.2 Getting patched and development versions . . . . . . . . . . . 1
2 Installing R under Unix-alikes . . . . . . . . . . . . . . . . . 3"""
INDEX = """Concept index
B
BLAS library. . . . . . . . . . . . . . . . . . . 47, 71
C
Cairo . . . . . . . . . . . . . . . . . . . . . . 20, 43, 61, 69"""
PLAIN_TOC = """Contents
Introduction 1
Getting started 3
Installing the tools 7
Configuration 12
Troubleshooting 19
Further reading 24"""
PROSE = """R will configure and build under most common Unix and Unix-alike platforms
including cpu-*-linux-gnu for the alpha, arm64 and ix86 architectures, and the sequence
1, 2, . . ., n of page numbers is given in Section 2.3 on page 14."""
CODE = """x <- seq(1, 10)
for (i in 1:10) print(i)
y <- x[2:5]
z <- c(1, 2, 3, 4, 5, 6)
m <- matrix(1:6, 2, 3)
w <- m %*% t(m)"""
TABLE = """Distribution R name additional arguments
beta beta shape1, shape2, ncp
binomial binom size, prob
Cauchy cauchy location, scale"""


@pytest.mark.parametrize(
    ("text", "listing"),
    [(TOC, True), (INDEX, True), (PLAIN_TOC, True), (PROSE, False), (CODE, False),
     (TABLE, False), ("", False), ("Chapter 2: Installing R under Unix-alikes 9", False)],
)  # fmt: skip
def test_listings_are_told_from_text(text: str, listing: bool) -> None:
    assert is_listing(text) is listing


@pytest.mark.parametrize(
    ("question", "text", "named"),
    [
        ("How do I install packages?", "intro\n6.3 Installing packages\nbody", True),
        ("How do I make the manuals?", "2.3 Making the manuals", True),
        ("What is Multilib?", "## Multilib", True),
        ("What is Multilib?", "Appendix A Multilib", True),
        ("Installing R under Unix-alikes", "Chapter 2: Installing R under Unix-alikes 9", False),
        ("How do I install packages?", "when installing packages from source, run", False),
        ("What is it?", "it", False),  # no key phrase left
        ("R under Windows", "R under Windows", True),  # "R " is a word, not numbering
        ("What is Multilib?", "Multilib", True),  # a title: a heading without a number
        ("What is Installer?", "body\nare not installed.\nmore", False),  # wrapped prose
        ("What is Installer?", "installed by", False),
        ("Debugging", "debug: {", False),  # code
        ("How do I embed R under Unix-alikes?", "8.1 Embedding R under Unix-alikes", True),
        ("Finding R_HOME", "8.2.3 Finding R HOME", True),  # PDF text drops the underscore
        (
            "Essential and useful other programs under a Unix-alike",
            "41\nAppendix A Essential and useful other programs\nunder a Unix-alike\nThis",
            True,
        ),
        (
            "Essential and useful other programs under a Unix-alike",
            "Appendix A: Essential and useful other programs under a Unix-alike 45",
            False,
        ),
    ],
)
def test_a_heading_names_the_key_phrase(question: str, text: str, named: bool) -> None:
    assert (phrases.naming(question, [(1, text)]) == [1]) is named


def long_passage() -> tuple[str, str]:
    """A 600-word passage whose last sentence is about something nothing before mentions."""
    filler = " ".join(f"gardening{i % 7} compost mulch seedlings" for i in range(140))
    tail = "The heron colony nests beside the estuary reeds every spring."
    return f"{filler} {tail}", tail


def test_a_chunk_longer_than_the_window_is_embedded_in_parts_not_cut_short(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.embedding_window = 256  # words: the server drops the rest silently
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    text, tail = long_passage()
    query = Embedder(client, MODEL).embed_query(tail)
    truncated = Embedder(client, MODEL).embed([text])[0]
    windowed_embedder = Embedder(client, MODEL, window=256)
    windowed = windowed_embedder.embed([text])[0]
    # Cut at 256 words, the vector knows nothing of the herons; in parts, it does.
    cut, whole = float(truncated @ query), float(windowed @ query)
    print(f"\nthe tail's similarity: cut short {cut:.3f}, embedded in parts {whole:.3f}")
    assert whole > 1.5 * cut
    assert windowed_embedder.last_windowed == 1
    assert "embedded in parts" in windowed_embedder.last_notes()[0]
    # Parts that fit are sent as they are: a short text is one input, as before.
    sent = len(openai_server.requests_to("/v1/embeddings"))
    windowed_embedder.embed(["a short text"])
    assert len(openai_server.requests_to("/v1/embeddings")) == sent + 1
    assert windowed_embedder.last_windowed == 0


def test_the_window_and_the_reranker_are_settings() -> None:
    env = {"PARLEY_EMBED_WINDOW": "256", "PARLEY_RERANK_MODEL": "bge-reranker-v2-m3"}
    current = resolve_settings(environ=env)
    assert (current.embed_window, current.rerank_model) == (256, "bge-reranker-v2-m3")
    unset = resolve_settings(environ={})
    assert (unset.embed_window, unset.rerank_model) == (None, None)
    with pytest.raises(ConfigError, match="PARLEY_EMBED_WINDOW must be a positive number"):
        resolve_settings(environ={"PARLEY_EMBED_WINDOW": "lots"})
    pieces = windows.parts(long_passage()[0], 100)
    assert len(pieces) > 5 and all(count_tokens(p) <= 101 for p in pieces)


def test_a_server_with_rerank_orders_the_candidates(manuals, openai_server: FakeOpenAI) -> None:  # noqa: ANN001
    library, ids, _ = manuals
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    reranker = Reranker(client, "bge-reranker-v2-m3")
    question = "How do I install packages?"
    plain = retrieve(library, question, ids, k=20)
    openai_server.rerank_enabled = True
    found = retrieve(library, question, ids, k=20, reranker=reranker)
    assert found.reranked and found.note is None
    (sent,) = [r.json for r in openai_server.requests_to("/v1/rerank")]
    assert sent["query"] == question and len(sent["documents"]) == RERANK_POOL
    # The server's order, its scores being the fake's cosine of query and passage.
    scores = [float(np.dot(embed(question), embed(s.chunk.text))) for s in found.sources]
    assert scores[:RERANK_POOL] == sorted(scores[:RERANK_POOL], reverse=True)
    assert {s.chunk.id for s in found.sources} == {s.chunk.id for s in plain.sources}
    # A server without the endpoint (OpenAI's): the search order, and a word why.
    openai_server.rerank_enabled = False
    fallback = retrieve(library, question, ids, k=20, reranker=reranker)
    assert not fallback.reranked and "Reranking is unavailable" in (fallback.note or "")
    assert [s.chunk.id for s in fallback.sources] == [s.chunk.id for s in plain.sources]
