"""Retrieval latency and memory at 10k and 100k chunks of 1,536 dimensions, on each backend.

The corpus is built from real text: the ~1,500 chunks of seven R manuals, embedded at
1,536 dimensions by the test server's feature-hashing embedder, then repeated with noise
(each copy a slightly different vector, the same text) up to 10,000 and 100,000 chunks
in documents of 1,000 chunks, stored through Parley's library and its search
(`lib/documents/search.py`): FAISS and BM25 files on SQLite, pgvector's HNSW index and
BM25 postings in the database on PostgreSQL.

Timed per query, with the query's embedding computed beforehand (excluded):
- `retrieve()`, the whole hybrid path (keyword search, vector search, rank fusion,
  fetching the passages), with every document chosen and with half of them (a document
  filter on both searches); vector search alone; keyword search alone.
- The same hybrid path through langchain-core's interfaces (`VectorStore`, `Embeddings`:
  `LangChainStore` below), the way production would go if it used them: the query
  vector as a list of floats, each list's hits as `Document`s with their text.
- On PostgreSQL, vector recall@10 against exact search (all documents, and half). On
  SQLite, the same against exact search put in the FAISS index's place (an
  `IndexFlatIP` of the same vectors), with how many of `retrieve()`'s passages are the
  ones exact search gives, and the dense-only and hybrid p50 with exact search beside
  the shipped index's.
- Reference, side by side: what `FAISS.from_documents` builds, `IndexFlatL2` over every
  vector, FAISS's default threads, texts in a dict.
Also printed (FAISS only), the measurements behind the choices in
lib/documents/vectorstore.py, from 5k to 100k vectors: exact search, the shipped index
(a 4-bit PQ fast scan re-scored exactly), the IVF index Parley used before probing 1/32
to 1/4 of its lists, and HNSW, each with recall@10 against exact, p50, build time and
the bytes it adds to the raw vectors; 1 against 2 OpenMP threads for one query, and
batched exact search with the wheel's `distance_compute_blas_threshold` against 20.

Memory: a fresh process opens the largest library as a session would and answers
queries; its resident memory growth is compared with the raw float32 vectors (N x 1,536 x
4 bytes). On SQLite the session loads the FAISS index and the keyword pack; on PostgreSQL
it holds nothing.

PostgreSQL is the tests' server (tests/postgres.py) unless --database-url names one, with
shared_buffers raised to --shared-buffers (the server's default, 128 MB, holds neither the
100k table nor its HNSW index).

    .venv/bin/python bench/query.py [--queries 200] [--sizes 10000,100000]
        [--backends sqlite,postgresql] [--database-url URL] [--shared-buffers 2GB]

Targets: p50 at most 10 ms at 100k on SQLite, 20 ms on PostgreSQL; memory at most 1.5x
the raw vectors; on SQLite, dense recall@10 at least 0.98 at every size.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402

from lib.documents import vectorstore  # noqa: E402 - also sets FAISS's process-wide options
from lib.documents.chunking import Chunk, split_pages  # noqa: E402
from lib.documents.extract import open_document  # noqa: E402
from lib.documents.library import DocumentLibrary  # noqa: E402
from lib.documents.retrieval import CANDIDATES, retrieve, rrf  # noqa: E402
from lib.documents.vectorstore import ParleyFAISS  # noqa: E402
from lib.store.backend import Backend  # noqa: E402
from tests.fake_images import embed  # noqa: E402

DIM = 1536
MODEL = "text-embedding-3-small"
WS = "bench"
PER_DOC = 1_000
MANUALS = ["R-intro", "R-exts", "R-admin", "R-data", "R-lang", "R-ints", "R-FAQ"]
QUESTIONS = [
    "How do I compute the eigenvalues of a symmetric matrix?",
    "How do I solve a system of linear equations?",
    "What happens when lists are concatenated?",
    "How do I divert all output to a file instead of the console?",
    "How do I pass arguments to an R script from the command line?",
    "How should a package declare its dependencies in the DESCRIPTION file?",
    "How do I debug compiled code with gdb?",
    "What is lazy loading of data in packages?",
    "How do I set up the environment variables for building R from source?",
    "Which encodings does R support for character strings?",
    "How do I read a data frame from a file with a header line?",
    "How can I define my own binary operator?",
    "Which command-line option prints the version information?",
    "How do I install packages from CRAN?",
    "How do I register native routines in a package?",
    "What does R CMD check do with the examples?",
    "How are missing values represented?",
    "How do I write a vignette for my package?",
    "Which compression formats can R read files in?",
]
TARGET_P50_MS = {"sqlite": 10.0, "postgresql": 20.0}
TARGET_MEMORY = 1.5
TARGET_RECALL = 0.98


# The corpus


def base_corpus() -> tuple[list[str], np.ndarray]:
    texts = []
    for name in MANUALS:
        path = Path(f"/usr/share/R/doc/manual/{name}.pdf")
        opened = open_document(path.name, path.read_bytes())
        texts += [c.text for c in split_pages(list(opened.pages()))]
        opened.close()
    vectors = np.array([embed(t, DIM) for t in texts], dtype=np.float32)
    return texts, vectors


def corpus(n: int, texts: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """n chunks: the base ones, then noisy copies (a unit vector near its original)."""
    rng = np.random.default_rng(n)
    picks = np.arange(n) % len(texts)
    out = vectors[picks] + rng.standard_normal((n, DIM), dtype=np.float32) * 0.01
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return [texts[p] for p in picks], out


def build(backend: Backend, texts: list[str], vectors: np.ndarray) -> tuple[DocumentLibrary, list]:
    """The library, as ingesting would leave it (FAISS in one write on SQLite, since
    per-document writes would rewrite a growing file a hundred times; on PostgreSQL the
    HNSW index built once at the end, as `migrate-store` does, and waited for: timed
    while the background pass still builds it, every query compared all 100k vectors
    exactly, 230 ms, and competed with the build for the two cores)."""
    if backend.dialect == "postgresql":
        from lib.documents.pgindexing import indexer

        with indexer(backend).deferred():  # leaving it runs the one pass, in this thread
            return _build(backend, texts, vectors)
    return _build(backend, texts, vectors)


def _build(backend: Backend, texts: list[str], vectors: np.ndarray) -> tuple[DocumentLibrary, list]:
    library = DocumentLibrary(backend, WS)
    with backend.connection() as conn:  # a --database-url database may hold an earlier run's
        conn.execute("DELETE FROM documents WHERE workspace = ?", (WS,))
    doc_ids, all_ids = [], []
    for start in range(0, len(texts), PER_DOC):
        part = texts[start : start + PER_DOC]
        chunks = [Chunk(i + 1, None, 0, len(t), t, len(t) // 4) for i, t in enumerate(part)]
        doc, ids = library.create(
            name=f"doc-{start // PER_DOC}.pdf",
            data=f"%PDF-bench {start}".encode(),
            sha256=f"{start:064d}",
            kind="pdf",
            report={},
            pages=[],  # only whole-document answers read pages; retrieval never does
            page_tokens=[],
            chunks=chunks,
        )
        on_pg = backend.dialect == "postgresql"
        part_vectors = vectors[start : start + len(part)] if on_pg else None
        library.search.add(doc.id, ids, part, MODEL if on_pg else None, part_vectors)
        library.mark_ready(doc.id, MODEL, {})
        doc_ids.append(doc.id)
        all_ids += ids
    if backend.dialect == "sqlite":
        with library.search.update_index(MODEL) as store:
            store.add_vectors(all_ids, vectors)
    return library, doc_ids


# Going through langchain-core's interfaces, as production would if it used them


class QueryVector(Embeddings):
    """An `Embeddings` whose query vector is already known (the request is excluded)."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text].tolist()


def as_document(chunk: Any) -> Document:
    meta = {k: getattr(chunk, k) for k in ("document_id", "file", "page", "label", "start", "end")}
    return Document(chunk.text, metadata=meta, id=str(chunk.id))


class LangChainStore(VectorStore):
    """The library's vector search as a langchain-core `VectorStore` (either backend)."""

    def __init__(self, library: DocumentLibrary, embedding: Embeddings) -> None:
        self.library = library
        self._embedding = embedding

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: dict | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = np.asarray(embedding, dtype=np.float32)
        hits = self.library.search.vectors(MODEL, vector, filter["document_ids"], k)
        chunks = self.library.chunks([i for i, _ in hits])
        return [(as_document(chunks[i]), score) for i, score in hits if i in chunks]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        vector = self._embedding.embed_query(query)
        pairs = self.similarity_search_with_score_by_vector(vector, k, **kwargs)
        return [d for d, _ in pairs]

    def add_texts(self, texts: Any, metadatas: Any = None, **kwargs: Any) -> list[str]:
        raise NotImplementedError("ingestion goes through the library")

    @classmethod
    def from_texts(cls, texts: Any, embedding: Any, metadatas: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError("ingestion goes through the library")


def langchain_retrieve(
    library: DocumentLibrary, store: LangChainStore, question: str, doc_ids: list[str]
) -> list[Document]:
    """`retrieve()`'s hybrid fusion with both lists as Documents (keywords too: a
    retriever returns Documents), so every candidate's text is read, not the top k's."""
    vector = store.embeddings.embed_query(question)
    dense = store.similarity_search_with_score_by_vector(
        vector, CANDIDATES, filter={"document_ids": doc_ids}
    )
    keyword_hits = library.search.keywords(question, doc_ids, CANDIDATES)
    chunks = library.chunks([i for i, _ in keyword_hits])
    keyword = [as_document(chunks[i]) for i, _ in keyword_hits if i in chunks]
    by_id = {d.id: d for d, _ in dense} | {d.id: d for d in keyword}
    fused = rrf([[d.id for d, _ in dense], [d.id for d in keyword]])
    return [by_id[i] for i, _ in fused[:6]]


# Timing


def timed(fn, queries: list) -> list[float]:  # noqa: ANN001
    out = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def p50_p95(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def size_run(n: int, kind: str, base: tuple[list[str], np.ndarray], queries: int) -> dict:
    texts, vectors = corpus(n, *base)
    with tempfile.TemporaryDirectory() as tmp:
        backend = open_bench_backend(kind, Path(tmp))
        started = time.perf_counter()
        library, doc_ids = build(backend, texts, vectors)
        if kind == "postgresql":
            with backend.connection() as conn:
                conn.execute("VACUUM ANALYZE chunks")
                conn.execute("VACUUM ANALYZE chunk_vectors")
                pending = conn.execute(
                    "SELECT count(*) FROM chunk_vectors WHERE NOT indexed"
                ).fetchone()[0]
            if pending:
                raise RuntimeError(f"{pending} vectors were left out of the HNSW index")
        build_s = time.perf_counter() - started
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(queries)]
        qvecs = {q: np.array(embed(q, DIM), dtype=np.float32) for q in questions}
        half = doc_ids[: max(1, len(doc_ids) // 2)]
        search = library.search
        lc_store = LangChainStore(library, QueryVector(qvecs))

        runs = {
            "hybrid": lambda q: retrieve(library, q, doc_ids, model=MODEL, query_vector=qvecs[q]),
            "hybrid_half": lambda q: retrieve(library, q, half, model=MODEL, query_vector=qvecs[q]),
            "langchain": lambda q: langchain_retrieve(library, lc_store, q, doc_ids),
            "dense": lambda q: search.vectors(MODEL, qvecs[q], doc_ids, CANDIDATES),
            "keyword": lambda q: search.keywords(q, doc_ids, CANDIDATES),
        }
        results: dict[str, Any] = {"n": n, "backend": kind, "build_s": build_s}
        if kind == "sqlite":
            results["kind"] = search.open_index(MODEL).kind
        for name, fn in runs.items():
            for q in QUESTIONS:  # warm caches
                fn(q)
            results[name] = p50_p95(timed(fn, questions))
        # Alternate the two hybrid paths, so drift in the machine hits both alike.
        paired = {"hybrid": [], "langchain": []}
        for q in questions:
            for name in paired:
                paired[name] += timed(runs[name], [q])
        results["paired"] = {k: statistics.median(v) for k, v in paired.items()}
        if kind == "postgresql":
            results["recall"] = recall(library, vectors, doc_ids, half, n)
        else:
            results["exact"] = exact_baseline(library, doc_ids, half)
        results["reference"] = reference(vectors, texts, qvecs, questions)
        if n == max(args.sizes):
            results["memory"] = memory(kind, Path(tmp), backend, n)
        backend.close()
    return results


def recall(
    library: DocumentLibrary, vectors: np.ndarray, all_docs: list, half: list, n: int
) -> dict:
    """HNSW's recall@10 against exact search, over all documents and over half."""
    queries = [np.array(embed(f"{q} {w}", DIM), dtype=np.float32)
               for q in QUESTIONS for w in ("", "in R", "example")]  # fmt: skip
    ids = library.chunk_ids(all_docs)  # in corpus order
    in_half = np.zeros(n, dtype=bool)
    in_half[: len(half) * PER_DOC] = True
    out = {}
    for label, docs, mask in (("all", all_docs, None), ("half", half, in_half)):
        found = []
        for q in queries:
            scores = vectors @ q
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            truth = {int(ids[i]) for i in np.argsort(-scores)[:10]}
            got = {i for i, _ in library.search.vectors(MODEL, q, docs, 10)}
            found.append(len(got & truth) / 10)
        out[label] = statistics.mean(found)
    return out


def exact_baseline(library: DocumentLibrary, all_docs: list, half: list) -> dict:
    """The shipped FAISS index against exact search in its place (the same vectors in an
    `IndexFlatIP`), on SQLite: dense recall@10 over all documents and over half, how many
    of retrieve()'s passages are the ones it returns with exact search (hybrid recall),
    and the p50 of both paths with exact search."""
    search = library.search
    generation, shipped = search._stores[MODEL]  # the session's loaded index, swapped below
    ids, vectors = shipped.all_vectors()
    exact = ParleyFAISS(index=faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)))
    exact.index.add_with_ids(vectors, ids)
    del vectors
    texts = [f"{q} {w}".strip() for q in QUESTIONS for w in ("", "in R", "example")]
    qvecs = dict(zip(texts, recall_queries(), strict=True))

    def dense(docs: list, k: int = 10):  # noqa: ANN202
        return lambda q: {i for i, _ in search.vectors(MODEL, qvecs[q], docs, k)}

    def hybrid(q: str) -> list[int]:
        found = retrieve(library, q, all_docs, model=MODEL, query_vector=qvecs[q])
        return [source.chunk.id for source in found.sources]

    runs = {"all": dense(all_docs), "half": dense(half), "hybrid": hybrid}
    got = {name: [fn(q) for q in texts] for name, fn in runs.items()}
    search._stores[MODEL] = (generation, exact)
    try:
        truth = {name: [fn(q) for q in texts] for name, fn in runs.items()}
        out = {
            "dense_ms": statistics.median(timed(dense(all_docs, CANDIDATES), texts)),
            "hybrid_ms": statistics.median(timed(hybrid, texts)),
        }
    finally:
        search._stores[MODEL] = (generation, shipped)
    for name in runs:
        pairs = zip(got[name], truth[name], strict=True)
        out[name] = statistics.mean(len(set(g) & set(t)) / max(len(t), 1) for g, t in pairs)
    return out


def reference(vectors: np.ndarray, texts: list[str], qvecs: dict, questions: list) -> tuple:
    index = faiss.IndexFlatL2(DIM)
    index.add(vectors)
    docstore = dict(enumerate(texts))

    def tutorial(q: str) -> None:
        _, ids = index.search(qvecs[q].reshape(1, -1), 4)
        [docstore[int(i)] for i in ids[0]]

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)  # the wheel's default on these machines
    try:
        return p50_p95(timed(tutorial, questions))
    finally:
        faiss.omp_set_num_threads(threads)


# Backends


_postgres: Any = None


def open_bench_backend(kind: str, data_dir: Path) -> Backend:
    if kind == "sqlite":
        from lib.store.sqlite import SQLiteBackend

        return SQLiteBackend(data_dir)
    from lib.store.postgres import PostgresBackend

    return PostgresBackend(data_dir, database_url(), files_in_database=True)


def database_url() -> str:
    """A fresh database on --database-url's server, or on a server started here."""
    global _postgres
    if args.database_url:
        return args.database_url
    if _postgres is None:
        from tests.postgres import TestPostgres

        root = Path(tempfile.mkdtemp(prefix="parley-bench-pg-"))
        _postgres = TestPostgres(root).start()
        import psycopg

        with psycopg.connect(_postgres.admin_url, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{args.shared_buffers}'")
        _postgres.stop()  # restarted with the new setting
        _postgres = TestPostgres(root).start()
    return _postgres.fresh_database()


# Memory


def memory(kind: str, data_dir: Path, backend: Backend, n: int) -> dict:
    """Resident memory of a fresh process that opens the library and answers queries."""
    where = str(data_dir) if kind == "sqlite" else backend.url
    out = subprocess.run(
        [sys.executable, __file__, "--rss", kind, where],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    raw = n * DIM * 4
    return {**measured, "raw_mb": raw / 2**20, "ratio": measured["grew_mb"] * 2**20 / raw}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def rss_child(kind: str, where: str) -> None:
    if kind == "sqlite":
        from lib.store.sqlite import SQLiteBackend

        backend: Backend = SQLiteBackend(Path(where))
    else:
        from lib.store.postgres import PostgresBackend

        backend = PostgresBackend(Path(tempfile.mkdtemp()), where)
    library = DocumentLibrary(backend, WS)
    docs = [d.id for d in library.list()]
    vector = np.array(embed(QUESTIONS[0], DIM), dtype=np.float32)
    library.chunks([1])  # the database connected before the baseline
    retrieve(library, QUESTIONS[0], docs[:1])
    before = rss_mb()
    for q in QUESTIONS * 5:
        retrieve(DocumentLibrary(backend, WS) if kind != "sqlite" else library, q, docs,
                 model=MODEL, query_vector=vector)  # fmt: skip
    after = rss_mb()
    print(json.dumps({"before_mb": before, "after_mb": after, "grew_mb": after - before}))


# FAISS's own choices


def thresholds(base: tuple[list[str], np.ndarray]) -> list[dict]:
    """By size: exact search, the shipped index and the two alternatives measured for it
    (the inverted file Parley used before, probing more and more of its lists, and HNSW),
    each with its recall@10 against exact search, p50, build time and the bytes it adds
    to the raw vectors: where exact stops paying, and why the shipped index was chosen.

    The queries are questions (not perturbed copies of stored vectors, which any index
    finds easily), and recall is against exact search's top 10.
    """
    rows = []
    queries = recall_queries()
    for n in (5_000, 10_000, 20_000, 50_000, 100_000):
        _, vectors = corpus(n, *base)
        ids = np.arange(n)
        truth, exact_ms = exact_search(ids, vectors, queries)
        row = {"n": n, "exact_ms": exact_ms, "raw": n * DIM * 4}
        row["shipped"] = shipped_index(ids, vectors, queries, truth, row["raw"])
        row["ivf"], row["ivf_build"] = ivf_index(ids, vectors, queries, truth, row["raw"])
        row["hnsw"], row["hnsw_build"] = hnsw_index(vectors, queries, truth, row["raw"])
        rows.append(row)
    return rows


def exact_search(ids: np.ndarray, vectors: np.ndarray, queries: list) -> tuple[list, float]:
    exact = ParleyFAISS(index=faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)))
    exact.index.add_with_ids(vectors, ids)
    truth = [{i for i, _ in exact.search_vector(q, 10)} for q in queries]
    return truth, statistics.median(timed(lambda q: exact.search_vector(q, 10), queries))


def shipped_index(ids: np.ndarray, vectors: np.ndarray, queries: list, truth: list, raw: int):  # noqa: ANN201
    """(recall@10, p50 ms, build s, bytes beyond the raw vectors) of what Parley builds."""
    started = time.perf_counter()
    shipped = ParleyFAISS(index=vectorstore.build_pq(ids, vectors))
    built = time.perf_counter() - started
    found = index_recall(lambda q: shipped.search_vector(q, 10), queries, truth)
    return (*found, built, index_bytes(shipped.index) - raw)


def ivf_index(ids: np.ndarray, vectors: np.ndarray, queries: list, truth: list, raw: int):  # noqa: ANN201
    started = time.perf_counter()
    ivf = build_ivf(ids, vectors)
    built = time.perf_counter() - started
    probes = {f: ivf_recall(ivf, queries, truth, f) for f in IVF_PROBES}
    return probes, (built, index_bytes(ivf) - raw, ivf.nlist)


def hnsw_index(vectors: np.ndarray, queries: list, truth: list, raw: int):  # noqa: ANN201
    started = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(vectors)
    built = time.perf_counter() - started

    def search(q: np.ndarray, ef: int) -> np.ndarray:
        return hnsw.search(q[None], 10, params=faiss.SearchParametersHNSW(efSearch=ef))[1][0]

    efs = {ef: index_recall(lambda q, e=ef: search(q, e), queries, truth) for ef in HNSW_EF}
    return efs, (built, index_bytes(hnsw) - raw)


IVF_PROBES = (1 / 32, 1 / 16, 1 / 8, 1 / 4)
HNSW_M = 32
HNSW_EF = (64, 256)


def recall_queries() -> list[np.ndarray]:
    return [np.array(embed(f"{q} {w}", DIM), dtype=np.float32)
            for q in QUESTIONS for w in ("", "in R", "example")]  # fmt: skip


def index_recall(search, queries: list, truth: list) -> tuple[float, float]:  # noqa: ANN001
    """(recall@10, p50 ms) of `search(query)`, which returns ids or (id, score) pairs."""

    def ids(q: np.ndarray) -> set[int]:
        return {int(h[0]) if isinstance(h, tuple) else int(h) for h in search(q)} - {-1}

    found = [ids(q) for q in queries]
    ms = timed(search, queries)
    recall_10 = statistics.mean(len(f & t) / 10 for f, t in zip(found, truth, strict=True))
    return recall_10, statistics.median(ms)


def index_bytes(index: faiss.Index) -> int:
    """The size FAISS writes for `index`, counted as it streams (no copy is held)."""
    size = 0

    def count(chunk: bytes) -> int:
        nonlocal size
        size += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return size


def build_ivf(ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """The inverted file Parley used before (2 sqrt(N) lists, 40 training points each)."""
    count, dim = vectors.shape
    nlist = max(16, min(int(2 * math.sqrt(count)), count // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    index.train(vectors[np.sort(rng.choice(count, size=min(count, nlist * 40), replace=False))])
    index.add_with_ids(vectors, ids)
    return index


def ivf_recall(ivf: faiss.Index, queries: list, truth: list, fraction: float) -> tuple:
    """(recall@10, p50 ms) of `ivf` probing `fraction` of its lists (at least 16)."""
    params = faiss.SearchParametersIVF(
        nprobe=min(ivf.nlist, max(16, math.ceil(ivf.nlist * fraction)))
    )
    return index_recall(lambda q: ivf.search(q[None], 10, params=params)[1][0], queries, truth)


def traps(vectors: np.ndarray) -> dict[str, float]:
    """The two FAISS defaults measured: OpenMP threads, and the BLAS threshold."""
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors[:10_000])
    single = [vectors[i : i + 1] for i in range(0, 2000, 10)]
    batch = vectors[:64]
    out = {}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        out[f"single_{threads}_threads_ms"] = statistics.median(
            timed(lambda q: index.search(q, 10), single)
        )
    faiss.omp_set_num_threads(1)
    for threshold in (128_000, 20):
        faiss.cvar.distance_compute_blas_threshold = threshold
        out[f"batch64_threshold_{threshold}_ms"] = statistics.median(
            timed(lambda q: index.search(q, 10), [batch] * 5)
        )
    faiss.cvar.distance_compute_blas_threshold = 20
    return out


# The report

LABELS = (
    ("hybrid", "hybrid retrieve (keywords + vectors + RRF + passages)"),
    ("hybrid_half", "hybrid, half the documents chosen"),
    ("langchain", "hybrid through langchain-core's interfaces"),
    ("dense", "vector search alone"),
    ("keyword", "keyword search alone"),
    ("reference", "reference IndexFlatL2, default threads"),
)


def report(results: list[dict], rows: list, trap: dict[str, float] | None) -> None:
    print(f"query latency, {DIM} dimensions, {args.queries} queries, embedding excluded")
    for r in results:
        index = f"{r['kind']} index" if "kind" in r else "HNSW index"
        print(f"  {r['backend']}, {r['n']:,} chunks ({index}, built in {r['build_s']:.0f} s):")
        for key, label in LABELS:
            p50, p95 = r[key]
            print(f"    {label:<55} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
        paired = r["paired"]
        cost = paired["langchain"] - paired["hybrid"]
        share = cost / paired["hybrid"]
        print(f"    langchain interfaces, paired runs: p50 {paired['langchain']:.2f} ms against "
              f"{paired['hybrid']:.2f} ms: {cost:+.2f} ms ({share:+.0%})")  # fmt: skip
        if "recall" in r:
            print(f"    HNSW recall@10 against exact: all documents {r['recall']['all']:.3f}, "
                  f"half {r['recall']['half']:.3f}")  # fmt: skip
        if "exact" in r:
            e = r["exact"]
            print(f"    against exact vector search in the index's place: dense recall@10 "
                  f"{e['all']:.3f} (half the documents {e['half']:.3f}; target >= 0.98), "
                  f"hybrid passages as with exact {e['hybrid']:.3f}")  # fmt: skip
            print(f"      p50 dense {r['dense'][0]:.2f} ms (exact {e['dense_ms']:.2f} ms), "
                  f"hybrid {r['hybrid'][0]:.2f} ms (exact {e['hybrid_ms']:.2f} ms)")  # fmt: skip
        if "memory" in r:
            m = r["memory"]
            print(f"    memory of a session: +{m['grew_mb']:.0f} MB resident for "
                  f"{m['raw_mb']:.0f} MB of raw vectors = {m['ratio']:.2f}x "
                  f"(target <= {TARGET_MEMORY}x)")  # fmt: skip
    if trap is not None:
        print("  FAISS by size, one query, recall@10 against exact (lib/documents/vectorstore.py):")
        for row in rows:
            print_threshold_row(row)
        single_1, single_2 = trap["single_1_threads_ms"], trap["single_2_threads_ms"]
        print(f"  one query on 10k exact: 1 thread {single_1:.2f} ms, 2 threads {single_2:.2f} ms "
              f"({single_2 / single_1:.1f}x slower)")  # fmt: skip
        slow, fast = trap["batch64_threshold_128000_ms"], trap["batch64_threshold_20_ms"]
        print(f"  64 queries batched on 10k exact: blas threshold 128000 {slow:.1f} ms, "
              f"20 {fast:.1f} ms ({slow / fast:.1f}x)")  # fmt: skip
    for kind in args.backends:
        big = max((r for r in results if r["backend"] == kind), key=lambda r: r["n"])
        target = TARGET_P50_MS[kind]
        ok = big["hybrid"][0] <= target and big.get("memory", {}).get("ratio", 0) <= TARGET_MEMORY
        recalls = [r["exact"]["all"] for r in results if r["backend"] == kind and "exact" in r]
        if recalls:
            ok = ok and min(recalls) >= TARGET_RECALL
        worst = f", lowest dense recall@10 {min(recalls):.3f}" if recalls else ""
        print(f"  {kind} p50 at {big['n']:,}: {big['hybrid'][0]:.2f} ms (target <= {target:g} ms)"
              f"{worst}; " + ("targets met" if ok else "TARGETS MISSED"))  # fmt: skip


def print_threshold_row(row: dict) -> None:
    shipped_recall, shipped_ms, shipped_s, shipped_extra = row["shipped"]
    print(f"    {row['n']:>7,}: exact p50 {row['exact_ms']:6.2f} ms; shipped (4-bit PQ scan, "
          f"{vectorstore.RERANK_POOL:,} re-scored) {shipped_recall:.3f} in {shipped_ms:.2f} ms, "
          f"built in {shipped_s:.1f} s, +{shipped_extra / 2**20:.1f} MB")  # fmt: skip
    built, extra, nlist = row["ivf_build"]
    probes = ", ".join(
        f"1/{round(1 / f)} {r:.3f} ({ms:.2f} ms)" for f, (r, ms) in row["ivf"].items()
    )
    print(f"             IVF {nlist} lists probing {probes}; built in {built:.1f} s, "
          f"+{extra / 2**20:.1f} MB")  # fmt: skip
    built, extra = row["hnsw_build"]
    efs = ", ".join(f"efSearch {ef} {r:.3f} ({ms:.2f} ms)" for ef, (r, ms) in row["hnsw"].items())
    print(f"             HNSW M={HNSW_M} {efs}; built in {built:.1f} s, +{extra / 2**20:.1f} MB")


def main() -> None:
    base = base_corpus()
    results = [size_run(n, kind, base, args.queries) for kind in args.backends for n in args.sizes]
    faiss_checks = "sqlite" in args.backends and not args.skip_faiss_checks
    rows = thresholds(base) if faiss_checks else []
    trap = traps(corpus(10_000, *base)[1]) if faiss_checks else None
    report(results, rows, trap)
    if _postgres is not None:
        _postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--database-url", help="a PostgreSQL server to use (a database on it)")
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--skip-faiss-checks", action="store_true")
    parser.add_argument("--rss", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        rss_child(*args.rss)
    else:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        args.backends = args.backends.split(",")
        main()
