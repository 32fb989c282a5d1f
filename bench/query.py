"""Retrieval latency and memory at 10k and 100k chunks of 1,536 dimensions.

The corpus is built from real text: the ~1,500 chunks of seven R manuals, embedded at
1,536 dimensions by the test server's feature-hashing embedder, then repeated with noise
(each copy a slightly different vector, its text tagged) up to 10,000 and 100,000 chunks
in documents of 1,000 chunks, stored through Parley's library (SQLite, BM25) and index.

Timed per query, with the query's embedding computed beforehand (excluded):
- Parley: `retrieve()`, the whole hybrid path (BM25 from the session's keyword index,
  FAISS, rank fusion, fetching the passages from SQLite), and FAISS alone; exact index at
  10k, IVF at 100k. Also with half the documents chosen (an id filter on both searches).
- Reference, side by side: what `FAISS.from_documents` builds, `IndexFlatL2` over every
  vector, FAISS's default threads, texts in a dict.
Also printed, the measurements behind the choices in lib/documents/vectorstore.py: exact
against IVF latency and recall by size (the exact/approximate threshold), 1 against 2
OpenMP threads for one query, and batched exact search with the wheel's
`distance_compute_blas_threshold` against 20.

Memory: a fresh process loads the 100k FAISS index and the keyword index as a session
would and answers queries; its resident memory growth is compared with the raw float32
vectors (100k x 1,536 x 4 bytes).

    .venv/bin/python bench/query.py [--queries 200] [--sizes 10000,100000]

Targets: p50 at most 10 ms at 100k; memory at most 1.5x the raw vectors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from lib.documents import vectorstore  # noqa: E402,F401 - sets FAISS's process-wide options
from lib.documents.chunking import Chunk, split_pages  # noqa: E402
from lib.documents.extract import open_document  # noqa: E402
from lib.documents.library import DocumentLibrary  # noqa: E402
from lib.documents.retrieval import KeywordIndex, retrieve  # noqa: E402
from lib.documents.vectorstore import ParleyFAISS, build_ivf  # noqa: E402
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
TARGET_P50_MS = 10.0
TARGET_MEMORY = 1.5


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


def build(data_dir: Path, texts: list[str], vectors: np.ndarray) -> tuple[DocumentLibrary, list]:
    library = DocumentLibrary(data_dir)
    doc_ids, all_ids = [], []
    for start in range(0, len(texts), PER_DOC):
        part = texts[start : start + PER_DOC]
        chunks = [Chunk(i + 1, None, 0, len(t), t, len(t) // 4) for i, t in enumerate(part)]
        doc, ids = library.create(
            WS,
            name=f"doc-{start // PER_DOC}.pdf",
            data=f"%PDF-bench {start}".encode(),
            sha256=f"{start:064d}",
            kind="pdf",
            report={},
            pages=[],  # only whole-document answers read pages; retrieval never does
            page_tokens=[],
            chunks=chunks,
        )
        library.save_keywords(WS, doc.id, ids, part)
        library.mark_ready(WS, doc.id, MODEL, {})
        doc_ids.append(doc.id)
        all_ids += ids
    with library.update_index(WS, MODEL) as store:
        store.add_vectors(all_ids, vectors)
    return library, doc_ids


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


def size_run(n: int, base: tuple[list[str], np.ndarray], queries: int) -> dict:
    texts, vectors = corpus(n, *base)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        library, doc_ids = build(Path(tmp), texts, vectors)
        build_s = time.perf_counter() - started
        store = library.open_index(WS, MODEL)
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(queries)]
        qvecs = {q: np.array(embed(q, DIM), dtype=np.float32) for q in questions}
        half = doc_ids[: max(1, len(doc_ids) // 2)]
        keywords = KeywordIndex(library, WS)  # the session's, as the page keeps it

        def hybrid(q: str) -> None:
            retrieve(library, WS, q, doc_ids, store=store, query_vector=qvecs[q],
                     keywords=keywords, whole_index=True)  # fmt: skip

        def hybrid_half(q: str) -> None:
            retrieve(library, WS, q, half, store=store, query_vector=qvecs[q], keywords=keywords)

        def dense(q: str) -> None:
            store.search_vector(qvecs[q], 30)

        reference = faiss.IndexFlatL2(DIM)
        reference.add(vectors)
        docstore = dict(enumerate(texts))

        def tutorial(q: str) -> None:
            _, ids = reference.search(qvecs[q].reshape(1, -1), 4)
            [docstore[int(i)] for i in ids[0]]

        results = {"n": n, "kind": store.kind, "build_s": build_s}
        for name, fn in (("hybrid", hybrid), ("hybrid_half", hybrid_half), ("dense", dense)):
            fn(questions[0])  # warm caches
            results[name] = p50_p95(timed(fn, questions))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(2)  # the wheel's default on these machines
        results["reference"] = p50_p95(timed(tutorial, questions))
        faiss.omp_set_num_threads(threads)
        if n == max(args.sizes):
            results["memory"] = memory(Path(tmp), n)

    return results


def memory(data_dir: Path, n: int) -> dict:
    """Resident memory of a fresh process that loads the index and answers queries."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss", str(data_dir)],
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


def rss_child(data_dir: Path) -> None:
    library = DocumentLibrary(data_dir)
    docs = [d.id for d in library.list(WS)]
    vector = np.array(embed(QUESTIONS[0], DIM), dtype=np.float32)
    library.chunks(WS, [1])  # SQLite loaded before the baseline
    before = rss_mb()
    store = library.open_index(WS, MODEL)
    keywords = KeywordIndex(library, WS)
    for q in QUESTIONS * 5:
        retrieve(library, WS, q, docs, store=store, query_vector=vector, keywords=keywords,
                 whole_index=True)  # fmt: skip
    after = rss_mb()
    print(json.dumps({"before_mb": before, "after_mb": after, "grew_mb": after - before}))


def thresholds(base: tuple[list[str], np.ndarray]) -> list[tuple[int, float, float, float]]:
    """(n, exact p50 ms, IVF p50 ms, IVF recall@10) by size: where exact stops paying.

    The queries are questions (not perturbed copies of stored vectors, which any index
    finds easily), and recall is against exact search's top 10.
    """
    rows = []
    _, vectors = corpus(100_000, *base)
    queries = [np.array(embed(f"{q} {w}", DIM), dtype=np.float32)
               for q in QUESTIONS for w in ("", "in R", "example")]  # fmt: skip
    for n in (5_000, 10_000, 20_000, 50_000):  # 100k: see the main runs
        ids = np.arange(n)
        exact = ParleyFAISS(index=faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)))
        exact.index.add_with_ids(vectors[:n], ids)
        ivf = ParleyFAISS(index=build_ivf(ids, vectors[:n]))
        truth = [{i for i, _ in exact.search_vector(q, 10)} for q in queries]
        exact_ms = timed(lambda q, s=exact: s.search_vector(q, 10), queries)
        ivf_ms = timed(lambda q, s=ivf: s.search_vector(q, 10), queries)
        found = [{i for i, _ in ivf.search_vector(q, 10)} for q in queries]
        recall = statistics.mean(len(f & t) / 10 for f, t in zip(found, truth, strict=True))
        rows.append((n, statistics.median(exact_ms), statistics.median(ivf_ms), recall))
    return rows


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


def report(results: list[dict], rows: list, trap: dict[str, float]) -> None:
    print(f"query latency, {DIM} dimensions, {args.queries} queries, embedding excluded")
    for r in results:
        print(f"  {r['n']:,} chunks ({r['kind']} index, built in {r['build_s']:.0f} s):")
        for key, label in (
            ("hybrid", "parley hybrid retrieve (BM25 + FAISS + RRF + SQLite)"),
            ("hybrid_half", "parley hybrid, half the documents chosen"),
            ("dense", "parley FAISS search alone"),
            ("reference", "reference IndexFlatL2, default threads"),
        ):
            p50, p95 = r[key]
            print(f"    {label:<55} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms")
        ratio = r["reference"][0] / r["hybrid"][0]
        print(f"    ratio reference/parley p50: {ratio:.1f}x")
        if "memory" in r:
            m = r["memory"]
            print(f"    memory: +{m['grew_mb']:.0f} MB resident for {m['raw_mb']:.0f} MB of raw "
                  f"vectors = {m['ratio']:.2f}x (target <= {TARGET_MEMORY}x)")  # fmt: skip
    print("  exact vs IVF by size (the threshold in vectorstore.py):")
    for n, exact_ms, ivf_ms, recall in rows:
        print(f"    {n:>7,}: exact p50 {exact_ms:6.2f} ms, IVF p50 {ivf_ms:5.2f} ms, "
              f"IVF recall@10 {recall:.3f}")  # fmt: skip
    print(
        f"  one query on 10k exact: 1 thread {trap['single_1_threads_ms']:.2f} ms, 2 threads "
        f"{trap['single_2_threads_ms']:.2f} ms "
        f"({trap['single_2_threads_ms'] / trap['single_1_threads_ms']:.1f}x slower)"
    )
    print(
        f"  64 queries batched on 10k exact: blas threshold 128000 "
        f"{trap['batch64_threshold_128000_ms']:.1f} ms, 20 {trap['batch64_threshold_20_ms']:.1f}"
        f" ms ({trap['batch64_threshold_128000_ms'] / trap['batch64_threshold_20_ms']:.1f}x)"
    )
    big = max(results, key=lambda r: r["n"])
    ok = big["hybrid"][0] <= TARGET_P50_MS and big.get("memory", {}).get("ratio", 0) <= 1.5
    print(f"  ratio: {big['reference'][0] / big['hybrid'][0]:.2f}")
    print(
        f"  p50 at {big['n']:,}: {big['hybrid'][0]:.2f} ms (target <= {TARGET_P50_MS:g} ms); "
        + ("targets met" if ok else "TARGETS MISSED")
    )


def main() -> None:
    base = base_corpus()
    results = [size_run(n, base, args.queries) for n in args.sizes]
    rows = thresholds(base)
    trap = traps(corpus(10_000, *base)[1])
    report(results, rows, trap)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        rss_child(args.rss)
    else:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        main()
