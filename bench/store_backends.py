"""The two storage backends side by side: ingestion time, and memory per session.

1. **Ingestion.** `Ingestor.ingest` on the same files (the seven smaller R manuals by
   default, Debian's r-doc-pdf) into a fresh library on each backend: SQLite (rows in
   parley.db, a FAISS index and BM25 segments in files) and PostgreSQL (rows, pgvector
   vectors under an HNSW index, BM25 keyword postings, the file in the `blobs` table).
   PostgreSQL's HNSW upkeep runs in the background once an upload is stored and
   searchable (lib/documents/pgindexing.py), so the time until that pass ends is printed
   too.
   Runs alternate (SQLite, PostgreSQL, SQLite...), so drift in the machine's speed hits
   both alike, after an untimed warm-up on each. Target: PostgreSQL within 1.5x of SQLite.
2. **Memory per session.** One `streamlit run Home.py` per backend, on the library its
   last ingestion left. Sessions are opened one at a time over Streamlit's websocket (no
   browser; tests/replicas.py's ChatSession) and stay open; each opens the Documents page
   and asks one question, so retrieval runs over the whole library. After each, the
   server process's resident memory (VmRSS) is read; the figure is its growth per added
   session (a least-squares slope over sessions 2..N: the first pays for imports and
   caches). Today's SQLite sessions each hold their own FAISS and BM25 copy; on
   PostgreSQL a session holds no index, so the figure should not grow with the library.

The embeddings come from the local OpenAI-compatible test server, run as a separate
process (so it does not share this one's GIL), with text-embedding-3-small's 1536
dimensions. PostgreSQL is the tests' real server (`tests/postgres.py`, on a local Unix
socket). Nothing touches `data/`.

    .venv/bin/python bench/store_backends.py [--runs 2] [--sessions 6] [--files R-intro.pdf,...]

Prints figures side by side and their ratios; it asserts no times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from lib.documents.embeddings import Embedder  # noqa: E402
from lib.documents.ingest import Ingestor  # noqa: E402
from lib.documents.library import DocumentLibrary  # noqa: E402
from lib.documents.pgindexing import wait_all as wait_for_indexing  # noqa: E402
from lib.store.backend import Backend, forget_backends, open_backend  # noqa: E402
from tests.browser.conftest import StreamlitServer, free_port  # noqa: E402
from tests.postgres import TestPostgres  # noqa: E402
from tests.replicas import ChatSession  # noqa: E402

MANUALS = Path("/usr/share/R/doc/manual")
FILES = "R-FAQ.pdf,R-admin.pdf,R-data.pdf,R-exts.pdf,R-intro.pdf,R-ints.pdf,R-lang.pdf"
MODEL = "text-embedding-3-small"
DIMENSIONS = 1536
WORKSPACE = "local"  # the web app's workspace with no gate
TARGET_INGEST = 1.5
QUESTION = "How do I compute the eigenvalues of a symmetric matrix?"

# The test server in a process of its own, answering embeddings with 1536 dimensions.
SERVE = """
import signal, sys, threading
from tests.fake_openai import FakeOpenAI
server = FakeOpenAI(port=int(sys.argv[1])).start()
server.embedding_dimensions = int(sys.argv[2])
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
print("listening", flush=True)
done.wait()
server.stop()
"""


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port), str(DIMENSIONS)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if "listening" not in line:
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}/v1"


def ingest(backend: Backend, client: openai.OpenAI, files: list[tuple[str, bytes]]) -> dict:
    """Every file into a fresh library on `backend`: seconds, chunks, pages."""
    library = DocumentLibrary(backend, WORKSPACE)
    embedder = Embedder(client, MODEL, cache=library.cache)
    ingestor = Ingestor(library, embedder, limit_bytes=1 << 30)
    started = time.perf_counter()
    reports = [ingestor.ingest(name, data) for name, data in files]
    seconds = time.perf_counter() - started
    wait_for_indexing()  # PostgreSQL's HNSW upkeep, in the background once searchable
    indexed = time.perf_counter() - started
    assert all(r.status == "indexed" for r in reports), [r.message for r in reports]
    return {
        "seconds": seconds,
        "indexed": indexed,
        "chunks": sum(r.chunks for r in reports),
        "pages": sum(r.pages for r in reports),
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def session_memory(app: StreamlitServer, sessions: int) -> list[float]:
    """The server's RSS (MB) after each of `sessions` sessions asked a question (all kept
    open), preceded by its RSS before any session."""
    readings = [rss_mb(app.proc.pid)]
    opened: list[ChatSession] = []
    try:
        for _ in range(sessions):
            session = ChatSession(app.url).__enter__()
            opened.append(session)
            session.run()  # Home.py registers the pages
            session.page = "documents"
            session.run()
            session.chat(QUESTION)
            if session.exceptions():
                raise RuntimeError(f"the Documents page failed: {session.exceptions()}")
            readings.append(rss_mb(app.proc.pid))
    finally:
        for session in opened:
            session.__exit__(None, None, None)
    return readings


def per_session(readings: list[float]) -> float:
    """MB per added session: the slope over sessions 2..N (the first pays for warm-up)."""
    after = readings[2:] if len(readings) > 3 else readings[1:]
    xs = list(range(len(after)))
    return statistics.linear_regression(xs, after).slope if len(after) > 1 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="ingestions per backend")
    parser.add_argument("--sessions", type=int, default=6, help="sessions per backend")
    parser.add_argument("--files", default=FILES, help="comma-separated names in " + str(MANUALS))
    args = parser.parse_args(argv)
    paths = [MANUALS / n.strip() for n in args.files.split(",") if n.strip()]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        parser.error(f"missing {missing}: install Debian's r-doc-pdf")
    files = [(p.name, p.read_bytes()) for p in paths]

    postgres = TestPostgres().start()
    server, base_url = start_server()
    client = openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    apps: list[StreamlitServer] = []
    try:
        with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
            root = Path(tmp)
            os.environ["PARLEY_DATA_DIR"] = str(root / "unused")  # never the real data/
            # Untimed: the first ingestion in a process pays for imports and first calls.
            ingest(open_backend(root / "warm-up"), client, files[:1])
            ingest(open_backend(root / "warm-up", postgres.fresh_database()), client, files[:1])
            results: dict[str, list[dict]] = {"SQLite": [], "PostgreSQL": []}
            last: dict[str, dict[str, str]] = {}
            for run in range(args.runs):
                data_dir = root / f"sqlite-{run}"
                results["SQLite"].append(ingest(open_backend(data_dir), client, files))
                last["SQLite"] = {"PARLEY_DATA_DIR": str(data_dir)}
                url = postgres.fresh_database()
                pg_dir = root / f"pg-{run}"
                results["PostgreSQL"].append(ingest(open_backend(pg_dir, url), client, files))
                last["PostgreSQL"] = {"PARLEY_DATA_DIR": str(pg_dir), "PARLEY_DATABASE_URL": url}
            forget_backends()

            first = results["SQLite"][0]
            print(
                f"Ingestion of {len(files)} files ({first['pages']} pages, {first['chunks']} "
                f"chunks, {DIMENSIONS}-dimensional embeddings), median of {args.runs} runs"
            )
            medians = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
            for name, seconds in medians.items():
                runs = ", ".join(f"{r['seconds']:.1f}" for r in results[name])
                print(
                    f"  {name:<11} {seconds:7.1f} s  {first['pages'] / seconds:6.1f} pages/s  "
                    f"runs: {runs} s"
                )
            ratio = medians["PostgreSQL"] / medians["SQLite"]
            indexed = statistics.median(r["indexed"] for r in results["PostgreSQL"])
            print(
                f"ingestion ratio PostgreSQL / SQLite: {ratio:.2f} (target <= {TARGET_INGEST}: "
                f"{'met' if ratio <= TARGET_INGEST else 'MISSED'}); every upload searchable "
                f"when its ingestion returns\n"
                f"  PostgreSQL until the background HNSW pass ends: {indexed:.1f} s "
                f"({indexed / medians['SQLite']:.2f}x SQLite's ingestion)\n"
            )

            growth: dict[str, float] = {}
            for name, env in last.items():
                app = StreamlitServer(
                    root / f"app-{name}",
                    {
                        **env,
                        "OPENAI_BASE_URL": base_url,
                        "OPENAI_API_KEY": "sk-bench",
                        "STREAMLIT_SECRETS_FILES": str(root / "no-secrets.toml"),
                        "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
                    },
                    root / f"app-{name}.log",
                )
                apps.append(app)
                readings = session_memory(app, args.sessions)
                app.stop()
                growth[name] = per_session(readings)
                print(
                    f"{name:<11} server RSS (MB) before any session, then after each: "
                    + " ".join(f"{r:.0f}" for r in readings)
                )
            raw = first["chunks"] * DIMENSIONS * 4 / 2**20
            print(
                f"\nmemory per added session, library of {first['chunks']} chunks "
                f"(raw vectors {raw:.1f} MB):"
            )
            for name, mb in growth.items():
                print(f"  {name:<11} {mb:6.1f} MB per session ({mb / raw:.2f}x the raw vectors)")
            print(f"ratio PostgreSQL / SQLite: {growth['PostgreSQL'] / growth['SQLite']:.2f}")
            print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        for app in apps:
            if app.proc.poll() is None:
                app.stop()
        server.terminate()
        server.wait(10)
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
