"""A slow embeddings server: wall time for a 244-chunk file, adaptive batches against the
old fixed batch, side by side.

The server is Parley's fake (`tests/fake_openai.py`) in a process of its own, made a CPU
embedder with `--embedding-delay`: SECONDS_PER_CHUNK per input, one request at a time,
still working on a request its client gave up on (as llama.cpp does). Seen in the issue:
about 0.25 s a chunk against a 60 s timeout, so one 244-chunk request (61 s) could never
finish. `--scale` shrinks both alike (the default, 0.1, is 0.025 s a chunk against 6 s;
`--scale 1` runs the real figures, about 16 minutes; the default takes under 2).

Strategies, each on 244 chunks of R-intro.pdf (Debian's r-doc-pdf):
- fixed, as before this change: every chunk in one request (MAX_INPUTS is 256), a timeout
  reported and the file left for keyword search;
- fixed, resent whole: the same, with the SDK's two retries (what the issue saw:
  175 s for one file);
- adaptive: `Embedder` as it is now (start at 8, grow while fast, split on a timeout);
- each again with a timeout long enough for the whole batch, to show what the small first
  batches cost when nothing times out.

    .venv/bin/python bench/embed_batches.py [--scale 0.1]

Printed per strategy: wall seconds, requests, chunks sent, progress ticks, and whether the
file got its vectors; then the adaptive time over the fixed one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx2  # noqa: E402
import openai  # noqa: E402

from lib.documents.chunking import split_pages  # noqa: E402
from lib.documents.embeddings import MAX_BATCH_TOKENS, MAX_INPUTS, Embedder, batches  # noqa: E402
from lib.documents.extract import open_document  # noqa: E402
from lib.errors import ParleyError  # noqa: E402
from tests.browser.conftest import free_port  # noqa: E402

MANUAL = Path("/usr/share/R/doc/manual/R-intro.pdf")
MODEL = "text-embedding-3-small"
CHUNKS = 244
SECONDS_PER_CHUNK = 0.25  # the CPU embedder of the issue
TIMEOUT = 60.0  # Parley's default client timeout (PARLEY_TIMEOUT)
ROOMY = 3.0  # a timeout this many times the whole batch's time: nothing times out


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port),
         "--embedding-delay", str(delay)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()  # "fake OpenAI listening on ..." once it is ready
    if "listening" not in line:
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}/v1"


def chunk_texts() -> tuple[list[str], list[int]]:
    opened = open_document(MANUAL.name, MANUAL.read_bytes())
    chunks = split_pages(opened.pages())[:CHUNKS]
    if len(chunks) < CHUNKS:
        raise SystemExit(f"{MANUAL} gave only {len(chunks)} chunks")
    return [c.text for c in chunks], [c.tokens for c in chunks]


class Counted:
    """Requests and chunks that left this process, whoever sent them (the SDK's retries
    included), counted by an httpx event hook."""

    def __init__(self) -> None:
        self.requests = self.chunks = 0

    def __call__(self, request: httpx2.Request) -> None:
        self.requests += 1
        self.chunks += len(json.loads(request.content)["input"])


def fixed(client: openai.OpenAI, texts: list[str], tokens: list[int]) -> tuple[int, bool]:
    """The loop before this change: MAX_INPUTS a request, a timeout ends the file."""
    ticks = 0
    try:
        for part in batches(tokens, MAX_INPUTS, MAX_BATCH_TOKENS):
            client.embeddings.create(model=MODEL, input=[texts[i] for i in part])
            ticks += 1
    except openai.APITimeoutError:
        return ticks, False
    return ticks, True


def adaptive(client: openai.OpenAI, texts: list[str], tokens: list[int]) -> tuple[int, bool]:
    done: set[int] = set()
    try:
        Embedder(client, MODEL).embed(texts, tokens=tokens, progress=lambda p: done.add(p.done))
    except ParleyError as exc:  # the file would be left for keyword search
        print(f"  adaptive failed: {exc}")
        return len(done) - 1, False
    return len(done) - 1, True  # the first report (0 done) is not a move


def run(name: str, strategy, url: str, timeout: float, retries: int, data) -> dict:  # noqa: ANN001
    count = Counted()
    http = httpx2.Client(timeout=timeout, event_hooks={"request": [count]})
    client = openai.OpenAI(
        base_url=url, api_key="sk-bench", timeout=timeout, max_retries=retries, http_client=http
    )
    started = time.perf_counter()
    ticks, vectors = strategy(client, *data)
    seconds = time.perf_counter() - started
    time.sleep(CHUNKS * SECONDS_PER_CHUNK * timeout / TIMEOUT)  # an abandoned request drains
    return {"name": name, "timeout": timeout, "seconds": seconds, "requests": count.requests,
            "sent": count.chunks, "ticks": ticks, "vectors": vectors}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="of 0.25 s a chunk and 60 s")
    args = parser.parse_args()
    delay, timeout = SECONDS_PER_CHUNK * args.scale, TIMEOUT * args.scale
    roomy = CHUNKS * delay * ROOMY
    data = chunk_texts()
    proc, url = start_server(delay)
    try:
        rows = [
            run("fixed 256, timeout reported", fixed, url, timeout, 0, data),
            run("fixed 256, resent whole (SDK)", fixed, url, timeout, 2, data),
            run("adaptive", adaptive, url, timeout, 0, data),
            run("fixed 256, roomy timeout", fixed, url, roomy, 0, data),
            run("adaptive, roomy timeout", adaptive, url, roomy, 0, data),
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"{CHUNKS} chunks of {MANUAL.name}, {delay:.3f} s a chunk (one request at a time), "
          f"scale {args.scale:g} of the issue's 0.25 s and 60 s")  # fmt: skip
    print(f"{'strategy':32} {'timeout':>8} {'wall s':>8} {'requests':>8} {'sent':>6} "
          f"{'ticks':>6}  vectors")  # fmt: skip
    for r in rows:
        print(f"{r['name']:32} {r['timeout']:8.1f} {r['seconds']:8.2f} {r['requests']:8d} "
              f"{r['sent']:6d} {r['ticks']:6d}  {'yes' if r['vectors'] else 'NO'}")  # fmt: skip
    by = {r["name"]: r for r in rows}
    slow = by["adaptive"]["seconds"] / by["fixed 256, resent whole (SDK)"]["seconds"]
    fast = by["adaptive, roomy timeout"]["seconds"] / by["fixed 256, roomy timeout"]["seconds"]
    print(
        f"adaptive / resent whole, at the issue's timeout: {slow:.2f} "
        f"(and only adaptive gets the vectors: {by['adaptive']['vectors']})"
    )
    print(f"adaptive / fixed, when nothing times out: {fast:.2f}")


if __name__ == "__main__":
    main()
