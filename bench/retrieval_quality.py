"""Retrieval quality on the R manuals: hit@1, hit@5 and MRR, keyword-only and hybrid.

The question set is tests/retrieval_set.py's: every section heading of R-admin, R-data
and R-exts, as written and asked as a question, the gold being the section's pages, the
three manuals searched together. They are ingested through Parley's own path
(`lib/documents/ingest.py`) into a fresh library, embedded by the test server
(tests/fake_openai.py: feature-hashed words, a lexical embedder with no synonyms).

    .venv/bin/python bench/retrieval_quality.py [--backend sqlite|postgresql]

Targets (issue 13): hit@1 at least 0.75 keyword-only and 0.85 hybrid, hit@5 0.98.
Measured (hit@1 / hit@5, all 642 queries):

                   SQLite + FAISS                  PostgreSQL + pgvector
    keyword-only   0.941 / 0.984 -> 0.972 / 0.994  0.947 / 0.984 -> 0.972 / 0.994
    hybrid         0.930 / 0.975 -> 0.988 / 0.997  0.924 / 0.969 -> 0.983 / 0.997

before and after the heading list read the first 100 of both searches and weighed as
much as the searches together (lib/documents/retrieval.py, lib/documents/phrases.py).
`--misses N` prints the queries whose gold page is not first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from lib.documents.embeddings import Embedder  # noqa: E402
from lib.documents.library import DocumentLibrary  # noqa: E402
from lib.store.sqlite import SQLiteBackend  # noqa: E402
from tests import retrieval_set  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

MODEL = "text-embedding-3-small"


def backend_for(kind: str, data_dir: Path):  # noqa: ANN201 - a Backend
    if kind == "sqlite":
        return SQLiteBackend(data_dir)
    from lib.store.postgres import PostgresBackend
    from tests import postgres

    (data_dir / "pg").mkdir()
    server = postgres.TestPostgres(data_dir / "pg").start()
    return PostgresBackend(data_dir, server.fresh_database())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--misses", type=int, default=0, help="print this many misses a mode")
    args = parser.parse_args()
    items = retrieval_set.queries()
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
        backend = backend_for(args.backend, Path(tmp))
        library = DocumentLibrary(backend, "bench")
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        embedder = Embedder(client, MODEL, cache=library.cache)
        started = time.perf_counter()
        ids = retrieval_set.index_manuals(library, embedder)
        print(f"indexed {len(ids)} manuals in {time.perf_counter() - started:.1f} s; "
              f"{len(items)} queries ({args.backend})")  # fmt: skip
        scores = retrieval_set.measure(library, ids, embedder, items)
        for form in ("heading", "question"):
            part = [q for q in items if q.form == form]
            by_form = retrieval_set.measure(library, ids, embedder, part)
            for mode, s in by_form.items():
                print(f"  {form:8} {mode:7} hit@1 {s.hit1:.3f}  hit@5 {s.hit5:.3f}  "
                      f"MRR {s.mrr:.3f}")  # fmt: skip
        for mode, s in scores.items():
            print(f"all      {mode:7} hit@1 {s.hit1:.3f}  hit@5 {s.hit5:.3f}  MRR {s.mrr:.3f}")
            for miss in s.misses[: args.misses]:
                print(f"    miss: {miss}")
        backend.close()


if __name__ == "__main__":
    main()
