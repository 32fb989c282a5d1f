"""Peak memory growth while Parley ingests hostile files, each in a process of its own.

Three files, made here in a temporary folder:
- bomb.pdf: a 1.2 MB PDF whose one content stream inflates to 1.2 GB (a line of text,
  then spaces), the issue's bomb, which was once indexed as a success for +2.17 GB;
- big.txt: 48 MB of the R manuals' text (Debian's r-doc-pdf) repeated;
- one-line.txt: 20 MB on a single line with no whitespace (base64 of random bytes);
- big.html: 58 MB of the R manuals' paragraphs under a heading every 20 (bench/formats.py's
  page), 393,000 tags;
- dense.html: 24 MB of small tags (4.8 million), which lxml's tree made +882 MB: refused.

Each goes through `Ingestor.ingest` (keyword search only: no embeddings server) in a new
Python process on a fresh SQLite data directory; big.txt and one-line.txt go through
again with embeddings ("+ vectors" rows), from Parley's fake server (`tests/fake_openai.py`,
in a process of its own on 127.0.0.1) at EMBED_DIM dimensions, into the embedding cache
and the FAISS index as the Documents page does. The child reads the file, notes its
RSS, ingests, and prints how far its peak (VmHWM) rose past that, and the report's status
and message: the growth past what the process held with the file in memory. Not
ru_maxrss: Linux keeps it across exec, so a child started by this (big) parent began with
the parent's peak, and big.html's +470 MB showed as +238.

    .venv/bin/python bench/hostile_files.py [--bomb-mb 1200] [--text-mb 48] [--line-mb 20]
        [--html-mb 58] [--dense-mb 24] [--only big.txt,one-line.txt+vectors]

Target: under 500 MB of growth for each file; the bomb and the dense page refused with a
clear message.

With vectors (1,536 dimensions, load 2-7): big.txt +734 MB and one-line.txt +901 MB while
the embedder kept three copies of a file's vectors (a dict per text, np.stack, normalise);
+689 and +670 MB with one array filled in place, the peak as the FAISS index (223 and 254
MB: 38,064 and 43,407 chunks x 1,536 x 4 bytes) copied them in while the embedder's array
was still held. Now the index reads them back from the embedding cache 1,000 at a time
(`embeddings.CachedVectors`) and the array is dropped before: +563 and +492 MB in blocks
of 5,000, +477 and +426 MB in blocks of 1,000 (run twice, load 1.9-3.1; keyword only,
big.txt +433 MB and one-line.txt +188 at load 4.2). The peak is still the index's build
(`vectorstore.build_pq`): the text, chunks and SQLite's copy of the stored text (about
236 MB for big.txt), plus the index's 223 MB, plus a block.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MANUALS = Path("/usr/share/R/doc/manual")
TARGET_MB = 500
EMBED_DIM = 1536  # text-embedding-3-small's
EMBED_MODEL = "text-embedding-3-small"
HELLO = b"BT /F1 12 Tf 72 712 Td (A page that looks harmless) Tj ET\n"


def bomb_pdf(inflated_mb: int) -> bytes:
    packer = zlib.compressobj(9)
    spaces = b" " * (1 << 20)
    body = packer.compress(HELLO) + b"".join(packer.compress(spaces) for _ in range(inflated_mb))
    body += packer.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(body), body),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def manual_text(megabytes: int) -> bytes:
    import pypdfium2 as pdfium

    parts = []
    for name in ("R-exts.pdf", "R-intro.pdf", "R-data.pdf", "R-admin.pdf"):
        doc = pdfium.PdfDocument(MANUALS / name)
        parts += [doc[i].get_textpage().get_text_range() for i in range(len(doc))]
        doc.close()
    text = "\n".join(parts).encode()
    size = megabytes * 1_000_000
    return (text * (size // len(text) + 1))[:size]


def one_line(megabytes: int) -> bytes:
    return base64.b64encode(os.urandom(megabytes * 750_000))[: megabytes * 1_000_000]


def html_page(megabytes: int) -> bytes:
    from formats import html_of, paragraphs  # bench/formats.py

    return html_of(paragraphs(megabytes * 965_000))  # escaping and tags: 3.5% more


def dense_html(megabytes: int) -> bytes:
    section = "<h2>S</h2>" + "<p><b>a</b> <i>b</i> <span>c</span></p>" * 50
    body = section * (megabytes * 1_000_000 // len(section))
    return f"<!DOCTYPE html><html><body><main>{body}</main></body></html>".encode()


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def child(path: str, embed_url: str | None) -> None:
    """In the child: ingest `path` (with embeddings from `embed_url` if given) and print a
    JSON line with the peak RSS growth, and what the FAISS index holds of it."""
    import openai

    from lib.documents.embeddings import Embedder
    from lib.documents.ingest import Ingestor
    from lib.documents.library import DocumentLibrary
    from lib.store.sqlite import SQLiteBackend

    data = Path(path).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        library = DocumentLibrary(SQLiteBackend(Path(tmp)), "bench")
        embedder = None
        if embed_url:
            client = openai.OpenAI(base_url=embed_url, api_key="bench", timeout=600)
            embedder = Embedder(client, EMBED_MODEL, cache=library.cache)
        before = _status_kb("VmRSS")
        started = time.perf_counter()
        report = Ingestor(library, embedder, limit_bytes=1 << 30).ingest(Path(path).name, data)
        seconds = time.perf_counter() - started
        peak = _status_kb("VmHWM")
        vectors = library.search.vector_count(EMBED_MODEL) if embed_url else 0
    print(json.dumps({"growth_mb": (peak - before) / 1024, "seconds": seconds,
                      "status": report.status, "message": report.message,
                      "index_mb": vectors * EMBED_DIM * 4 / 2**20}))  # fmt: skip


def serve(dim: int) -> None:
    """The fake embeddings server at `dim` dimensions (its command line has no option)."""
    import signal
    import threading

    from tests.fake_openai import FakeOpenAI

    server = FakeOpenAI("127.0.0.1", 0)
    server.embedding_dimensions = dim
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with server:
        print(f"listening on {server.base_url}", flush=True)
        done.wait()


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(EMBED_DIM)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()  # "listening on http://127.0.0.1:port/v1" once it is ready
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"the fake server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip()


def run_case(path: Path, what: str, embed_url: str | None) -> float:
    """Ingest `path` in a child process, print its line, and return its peak growth."""
    command = [sys.executable, __file__, "--child", str(path)]
    command += ["--embed-url", embed_url] if embed_url else []
    run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    label = path.name + (" + vectors" if embed_url else "")
    if run.returncode != 0:
        print(f"{label}: the child failed ({run.returncode}):\n{run.stderr[-2000:]}")
        return float("inf")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    size = path.stat().st_size / 1e6
    index = f" (index {result['index_mb']:.0f} MB)" if embed_url else ""
    print(f"{label:23} {size:7.1f} MB ({what}): peak RSS +{result['growth_mb']:6.0f} MB{index}, "
          f"{result['seconds']:6.1f} s, {result['status']}: "
          f"{result['message'][:140]}", flush=True)  # fmt: skip
    return result["growth_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bomb-mb", type=int, default=1200)
    parser.add_argument("--text-mb", type=int, default=48)
    parser.add_argument("--line-mb", type=int, default=20)
    parser.add_argument("--html-mb", type=int, default=58)
    parser.add_argument("--dense-mb", type=int, default=24)
    parser.add_argument("--only", help="comma-separated case names, e.g. big.txt+vectors")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--embed-url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.child:
        child(args.child, args.embed_url)
        return
    cases = [
        ("bomb.pdf", lambda: bomb_pdf(args.bomb_mb), f"inflates to {args.bomb_mb:,} MB"),
        ("big.txt", lambda: manual_text(args.text_mb), "the R manuals' text"),
        ("one-line.txt", lambda: one_line(args.line_mb), "base64, no whitespace"),
        ("big.html", lambda: html_page(args.html_mb), "the R manuals' paragraphs"),
        ("dense.html", lambda: dense_html(args.dense_mb), "small tags"),
    ]
    embedded = {"big.txt", "one-line.txt"}
    runs = [(name, False) for name, _, _ in cases]
    runs += [(name, True) for name, _, _ in cases if name in embedded]
    if args.only:
        wanted = set(args.only.split(","))
        runs = [(n, e) for n, e in runs if (n + "+vectors" if e else n) in wanted]
    worst = 0.0
    server, url = start_server() if any(e for _, e in runs) else (None, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, make, what in cases:
                if not any(n == name for n, _ in runs):
                    continue
                path = Path(tmp) / name
                path.write_bytes(make())
                for vectors in [e for n, e in runs if n == name]:
                    worst = max(worst, run_case(path, what, url if vectors else None))
                path.unlink()
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    verdict = "meets" if worst < TARGET_MB else "MISSES"
    print(f"worst peak growth {worst:.0f} MB: {verdict} the target of under {TARGET_MB} MB a file")


if __name__ == "__main__":
    main()
