"""A slow embeddings server (a CPU embedder): batch sizes follow its speed, a timed-out
batch is split and never resent whole, what was embedded is kept, and the progress bar
moves within a file.

Growing and shrinking are decided on the embedder's clock; here that clock is the work
the fake server was given (inputs times a cost per input), so the sizes are the same on a
loaded machine. Timeouts are real: the fake holds one request back (`hang`) past the
client's timeout.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import openai
import pytest

from lib.documents.embeddings import Embedder, EmbeddingCache, EmbedProgress
from lib.documents.ingest import Ingestor, Progress
from lib.documents.library import DocumentLibrary
from lib.errors import IngestCancelled, RequestTimedOut
from lib.store.backend import Backend
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

MODEL = "text-embedding-3-small"
TEXTS = [f"Passage {i}: the heron {i} nests by river {i * 3} in spring." for i in range(120)]
TIMEOUT = 5.0  # the client's, in seconds; only a held-back request ever reaches it


def client(server: FakeOpenAI, timeout: float = 600.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", timeout=timeout)


def sent(server: FakeOpenAI) -> list[list[str]]:
    """The inputs of every embeddings request, in the order the server got them."""
    return [r.json["input"] for r in server.requests_to("/embeddings")]


def work_clock(server: FakeOpenAI, cost: Callable[[int], float]) -> Callable[[], float]:
    """Seconds of work the server was given: request k's inputs at `cost(k)` each."""
    return lambda: sum(len(inputs) * cost(k) for k, inputs in enumerate(sent(server)))


class HoldBack:
    """A progress callback that, once `done` chunks are embedded, makes the next `times`
    requests outlast the client's timeout; it keeps every report it was given."""

    def __init__(self, server: FakeOpenAI, done: int, times: int = 1) -> None:
        self.server, self.done, self.times = server, done, times
        self.seen: list[EmbedProgress] = []

    def __call__(self, p: EmbedProgress) -> None:
        if p.done >= self.done and not any(s.done >= self.done for s in self.seen):
            for _ in range(self.times):
                self.server.hang(WAIT, route="/embeddings")
        self.seen.append(p)


def test_batches_grow_while_the_server_is_fast_and_shrink_when_it_slows(
    openai_server: FakeOpenAI,
) -> None:
    # 0.05 s an input for three requests, then 0.5 s (another job took the server's CPU).
    clock = work_clock(openai_server, lambda k: 0.05 if k < 3 else 0.5)
    emb = Embedder(client(openai_server), MODEL, target_seconds=2.0, clock=clock)
    vectors = emb.embed(TEXTS[:100])
    # 8 in 0.4 s and 16 in 0.8 s: under half the target, so doubled; 32 in 1.6 s is
    # within it; 32 in 16 s is 8 times over, so 32 * 2 / 16 = 4.
    assert [len(s) for s in sent(openai_server)] == [8, 16, 32, 32, 4, 4, 4]
    assert [t for s in sent(openai_server) for t in s] == TEXTS[:100]  # each once, in order
    assert vectors.shape == (100, openai_server.embedding_dimensions)
    assert emb.last_splits == 0 and emb.last_notes() == []


def test_a_timed_out_batch_is_split_and_no_input_is_sent_twice_after_it(
    openai_server: FakeOpenAI,
) -> None:
    emb = Embedder(client(openai_server, TIMEOUT), MODEL, clock=lambda: 0.0)  # always fast
    progress = HoldBack(openai_server, done=8 + 16 + 32)
    vectors = emb.embed(TEXTS, progress=progress)

    sizes = [len(s) for s in sent(openai_server)]
    assert sizes == [8, 16, 32, 64, 32, 32]  # the 64 timed out: halved, and held there
    timed_out, *after = sent(openai_server)[3:]
    assert after[0] + after[1] == timed_out  # split in two halves, not resent whole
    again = [t for s in after for t in s]
    assert len(again) == len(set(again)) == len(TEXTS) - 56  # nothing sent twice after it
    assert emb.last_splits == 1
    assert "64 chunks timed out, sending 32 at a time" in {p.reason for p in progress.seen}
    assert emb.last_notes() == [
        "The embeddings server timed out 1 time; each batch that did was split and sent "
        "again in smaller parts (32 chunks a request at the end)."
    ]
    openai_server.reset()
    assert np.allclose(vectors, Embedder(client(openai_server), MODEL).embed(TEXTS))


def test_a_server_that_stops_answering_fails_clearly_and_keeps_what_was_embedded(
    openai_server: FakeOpenAI, backend: Backend
) -> None:
    cache = EmbeddingCache(backend, "alice")
    emb = Embedder(client(openai_server, TIMEOUT), MODEL, cache=cache, clock=lambda: 0.0)
    with pytest.raises(RequestTimedOut) as failed:
        emb.embed(TEXTS[:100], progress=HoldBack(openai_server, done=24, times=3))
    message = str(failed.value)
    assert message.startswith("The embeddings server timed out 3 times in a row, down to 8 ")
    done = int(re.search(r"; (\d+) of 100 chunks were embedded and are kept", message)[1])
    assert done == 24 and cache.count() == 24
    assert [len(s) for s in sent(openai_server)] == [8, 16, 32, 16, 8]

    openai_server.reset()
    again = Embedder(client(openai_server), MODEL, cache=cache)
    again.embed(TEXTS[:100])
    assert again.last_cached == 24
    assert [t for s in sent(openai_server) for t in s] == TEXTS[24:100]  # only the rest


def test_a_single_chunk_that_times_out_is_not_split_further(openai_server: FakeOpenAI) -> None:
    openai_server.hang(WAIT, route="/embeddings")
    emb = Embedder(client(openai_server, TIMEOUT), MODEL)
    with pytest.raises(RequestTimedOut, match="timed out on a single chunk; 0 of 1 chunks"):
        emb.embed(TEXTS[:1])
    assert len(sent(openai_server)) == 1


@pytest.fixture
def library(backend: Backend) -> DocumentLibrary:
    return DocumentLibrary(backend, "alice")


def notes_file(paragraphs: int, bird: str = "heron") -> bytes:
    """Markdown of about one chunk per paragraph (some 300 tokens each)."""
    body = " ".join(f"The {bird} rests on stone {j} by the river." for j in range(30))
    return "\n\n".join(f"## Part {i}\n\n{body} Part {i}." for i in range(paragraphs)).encode()


def test_the_progress_bar_moves_within_a_file_and_cancel_acts_between_batches(
    library: DocumentLibrary, openai_server: FakeOpenAI
) -> None:
    emb = Embedder(client(openai_server), MODEL, cache=library.cache, clock=lambda: 0.0)
    ingest = Ingestor(library, emb, limit_bytes=1 << 30)
    events: list[Progress] = []
    report = ingest.ingest("herons.md", notes_file(100), _tick(events))
    assert report.status == "indexed" and report.chunks >= 100

    embedding = [e for e in events if e.stage == "embedding" and e.done]
    dones = [e.done for e in embedding]
    assert dones[:3] == [8, 24, 56] and dones[-1] == report.chunks  # not one jump at the end
    fractions = [e.fraction for e in embedding]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[0] < 0.5 < fractions[-1]

    # Cancel, pressed once the first batch is back, acts before the second is sent.
    openai_server.reset()
    events.clear()
    emb = Embedder(client(openai_server), MODEL, cache=library.cache, clock=lambda: 0.0)
    pressed = lambda: any(e.stage == "embedding" and e.done >= 8 for e in events)  # noqa: E731
    with pytest.raises(IngestCancelled):
        Ingestor(library, emb, limit_bytes=1 << 30).ingest(
            "egrets.md", notes_file(100, "egret"), _tick(events), pressed
        )
    assert [len(s) for s in sent(openai_server)] == [8]
    assert [d.name for d in library.list()] == ["herons.md"]


def test_a_split_is_told_in_the_files_report(
    library: DocumentLibrary, openai_server: FakeOpenAI
) -> None:
    emb = Embedder(client(openai_server, TIMEOUT), MODEL, cache=library.cache, clock=lambda: 0.0)
    events: list[Progress] = []
    openai_server.hang(WAIT, route="/embeddings")  # the very first batch
    report = Ingestor(library, emb, limit_bytes=1 << 30).ingest(
        "herons.md", notes_file(20), _tick(events)
    )
    assert report.status == "indexed" and not report.keyword_only
    assert [len(s) for s in sent(openai_server)][:3] == [8, 4, 4]
    assert any("8 chunks timed out, sending 4 at a time" in e.message for e in events)
    assert "The embeddings server timed out 1 time" in " ".join(report.notes)
    # Re-indexed from the cache, with the same embedder: nothing timed out this time.
    again = Ingestor(library, emb, limit_bytes=1 << 30).reindex(report.document_id)
    assert again.status == "indexed" and again.cached == report.chunks
    assert not [n for n in again.notes if "timed out" in n]


def _tick(events: list[Progress]) -> Callable[[str, int, int, str, float], None]:
    def tick(stage: str, done: int, total: int, message: str, fraction: float) -> None:
        events.append(Progress("f", 0, 1, stage, done, total, fraction, message))

    return tick
