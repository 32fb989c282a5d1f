"""Embedding chunks through the provider's `/v1/embeddings`, batched, retried and cached.

Batches respect both of the API's request limits: at most MAX_INPUTS inputs and at most
MAX_BATCH_TOKENS tokens summed over the inputs (OpenAI allows 2,048 inputs and 300,000
tokens per request). Within those, the batch size follows the server's speed (`BatchSizer`):
a CPU embedder took about 0.25 s a chunk, so one 244-chunk request ran past the 60 s
timeout, was resent whole twice (175 s for one file), and the progress bar stood still.
Now the first request carries START_INPUTS chunks; a batch answered in under half of
TARGET_SECONDS doubles the next one, a slower one shrinks it to fit the target, and a
batch that times out is split in halves (never resent whole), with the largest size held
below it from then on. A fast server costs a few more round trips: 244 chunks go in five
requests (8+16+32+64+124) instead of one.
`bench/embed_batches.py` prints the wall time for a 244-chunk file on a slow server.

The SDK's own retries are switched off here (`max_retries=0`) because they sleep where
nobody can see. Only a refusal made before any work (`lib.client.resendable`: a 429, or
a connection refused) is resent by `_create`, with exponential backoff that honours
Retry-After; a timeout or a 5xx may come after the server did (and billed) the work, so
it is reported, not resent; only a timed-out batch is sent again, split as above (a few
chunks embedded twice cost less than a file left without vectors). The wait is reported
through the progress callback every RETRY_TICK seconds so the UI can say "rate limited,
retrying in 4 s", and can be cancelled.

Vectors are cached in the database by (workspace, model, SHA-256 of the chunk text), so
re-indexing a document, or uploading a file that shares passages with another, sends
only the chunks never embedded before. The cache is per workspace: one user's cache can
never reveal, even by timing, what another user has uploaded.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai

from lib.client import provider_errors, resendable
from lib.documents import windows
from lib.documents.chunking import ENCODING, count_tokens, text_hash
from lib.documents.vectorstore import Blocks
from lib.errors import (
    DocumentError,
    IngestCancelled,
    ParleyError,
    ProviderError,
    RateLimited,
    RequestTimedOut,
)
from lib.store.base import WorkspaceStore
from lib.tokens import get_encoding

log = logging.getLogger(__name__)

MAX_INPUTS = 256
MAX_BATCH_TOKENS = 100_000
MAX_INPUT_TOKENS = 8_000  # text-embedding-3 takes 8,191; keep a margin for other tokenizers
MAX_ATTEMPTS = 6
MAX_WAIT = 60.0
RETRY_TICK = 0.5
START_INPUTS = 8  # the first request's size: 2 s on the 0.25 s-a-chunk CPU embedder
TARGET_SECONDS = 4.0  # a batch should take about this long (and at most a quarter of the
# client's timeout), so the progress bar moves at least this often on a slow server
MAX_TIMEOUTS = 3  # timeouts in a row before embedding gives up (the server is not answering)
NORM_ROWS = 4096  # rows normalised at a time: a 24 MB temporary at 1,536 dimensions


@dataclass(frozen=True)
class EmbedProgress:
    done: int  # chunks embedded (or found in the cache) so far
    total: int
    cached: int  # of `done`, how many came from the cache
    waiting: float = 0.0  # seconds left before a retry, 0 when not waiting
    attempt: int = 0  # which retry is being waited for
    reason: str = ""  # why we are waiting, e.g. "rate limited (429)"


ProgressFn = Callable[[EmbedProgress], None]
CancelFn = Callable[[], bool]


def _never() -> bool:
    return False


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit length, so inner product is cosine similarity."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def normalise_in_place(vectors: np.ndarray) -> np.ndarray:
    """`normalise` without a copy: `vectors` (float32, C order) scaled to unit rows, in
    blocks of NORM_ROWS (`np.linalg.norm` squares its whole input into a temporary array:
    234 MB for 38,000 x 1,536). The same numbers as `normalise`, row for row."""
    for start in range(0, len(vectors), NORM_ROWS):
        block = vectors[start : start + NORM_ROWS]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        block /= norms
    return vectors


class EmbeddingCache(WorkspaceStore):
    """One workspace's vectors by (model, chunk hash), as little-endian float32 bytes."""

    def get(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        return {
            row["hash"]: np.frombuffer(row["vector"], dtype="<f4")
            for row in self._rows("hash, vector", model, list(dict.fromkeys(hashes)))
        }

    def _rows(self, columns: str, model: str, unique: Sequence[str]) -> Iterator[Any]:
        """The cache's rows for these distinct hashes, 500 a query (SQLite's variable
        limit), read as they come rather than gathered first."""
        with self._conn() as conn:
            for i in range(0, len(unique), 500):
                part = unique[i : i + 500]
                yield from conn.execute(
                    f"SELECT {columns} FROM embedding_cache WHERE workspace = ? AND model = ? "
                    f"AND hash IN ({', '.join('?' * len(part))})",
                    [self.workspace, model, *part],
                ).fetchall()

    def fill(self, model: str, hashes: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """(vectors, found): one float32 row per hash (a hash twice fills both rows), read
        500 at a time straight into one array; None when the cache has none of them. Not
        `get`'s dict of every vector, which the array would then copy (each a 6 KB bytes
        object at 1,536 dimensions: 234 MB for a 48 MB text file's 38,000 chunks)."""
        rows_of: dict[str, list[int]] = {}
        for i, h in enumerate(hashes):
            rows_of.setdefault(h, []).append(i)
        unique = list(rows_of)
        found = np.zeros(len(hashes), dtype=bool)
        out: np.ndarray | None = None
        for row in self._rows("hash, vector", model, unique):
            vector = np.frombuffer(row["vector"], dtype="<f4")
            if out is None:  # the dimension is known from the first vector
                out = np.empty((len(hashes), len(vector)), dtype=np.float32)
            where = rows_of[row["hash"]]
            out[where] = vector  # a vector of another dimension: ValueError
            found[where] = True
        return out, found

    def known(self, model: str, hashes: Sequence[str]) -> set[str]:
        """Which of `hashes` have a vector (their hashes only, not the vectors)."""
        return {row["hash"] for row in self._rows("hash", model, list(dict.fromkeys(hashes)))}

    def put(self, model: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (self.workspace, model, h, np.asarray(v, dtype="<f4").tobytes())
            for h, v in zip(hashes, vectors, strict=True)
        ]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO embedding_cache (workspace, model, hash, vector) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (workspace, model, hash) "
                "DO UPDATE SET vector = excluded.vector",
                rows,
            )

    def count(self) -> int:
        with self._conn() as conn:
            return conn.execute(
                "SELECT count(*) FROM embedding_cache WHERE workspace = ?", (self.workspace,)
            ).fetchone()[0]


class VectorsMissing(DocumentError):
    """A file's vectors were no longer all in the cache when the index read them back."""


class CachedVectors(Blocks):
    """A file's unit vectors read back from the embedding cache a block at a time, for the
    search index to add after the embedder's array is dropped (every vector the embedder
    returns is in the cache under its chunk's hash, a long chunk's pooled one included:
    lib/documents/windows.py). The same numbers as `Embedder.embed` gave: the same rows,
    normalised the same way. Raises VectorsMissing if the cache lost some meanwhile."""

    def __init__(self, cache: EmbeddingCache, model: str, hashes: Sequence[str], dim: int) -> None:
        self.cache, self.model, self.hashes, self.dim = cache, model, list(hashes), dim

    def __len__(self) -> int:
        return len(self.hashes)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        out, found = self.cache.fill(self.model, [self.hashes[int(i)] for i in positions])
        if len(positions) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if out is None or not found.all() or out.shape[1] != self.dim:
            raise VectorsMissing(
                "Some of this file's embeddings left the cache while it was being indexed "
                "(another session cleared or changed them); index it again."
            )
        return normalise_in_place(out)


def batches(tokens: Sequence[int], max_inputs: int, max_tokens: int) -> Iterator[range]:
    """Consecutive index ranges that respect both the input-count and token limits."""
    start, used = 0, 0
    for i, n in enumerate(tokens):
        if i > start and (i - start >= max_inputs or used + n > max_tokens):
            yield range(start, i)
            start, used = i, 0
        used += n
    if start < len(tokens):
        yield range(start, len(tokens))


class BatchSizer:
    """How many inputs the next request carries, learned from how long the last ones took.

    Start small; double after a full batch answered in under half the target; after a
    slower one, shrink to what the target allows at the speed just seen; after a timeout,
    halve, and never again grow to the size that timed out.
    """

    def __init__(self, ceiling: int, target: float, start: int = START_INPUTS) -> None:
        self.ceiling = max(1, ceiling)
        self.target = target
        self.size = min(start, self.ceiling)

    def answered(self, inputs: int, seconds: float) -> None:
        if seconds > self.target:
            self.size = max(1, min(self.size, int(inputs * self.target / seconds)))
        elif inputs >= self.size and seconds < self.target / 2:
            self.size = min(self.ceiling, self.size * 2)

    def timed_out(self, inputs: int) -> None:
        self.ceiling = max(1, inputs // 2)
        self.size = min(self.size, self.ceiling)


def _timeout_seconds(timeout: object) -> float | None:
    """The read timeout of an OpenAI client's `timeout` (a number or an httpx Timeout)."""
    if isinstance(timeout, int | float):
        return float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if isinstance(read, int | float) else None


class Embedder:
    """Embeds texts with one model, using and filling a workspace's cache if given."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        cache: EmbeddingCache | None = None,
        max_inputs: int = MAX_INPUTS,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        target_seconds: float = TARGET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        window: int | None = None,
    ) -> None:
        self.client = client.with_options(max_retries=0)
        self.model = model
        self.cache = cache
        self.max_batch_tokens = max_batch_tokens
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.clock = clock
        timeout = _timeout_seconds(self.client.timeout)
        target = min(target_seconds, timeout / 4) if timeout else target_seconds
        self.sizer = BatchSizer(max_inputs, target)
        self.requests = 0  # embedding requests sent, for reports and tests
        self.last_cached = 0  # how many texts of the last `embed` came from the cache
        self.last_splits = 0  # how many batches of the last `embed` timed out and were split
        self.window = window  # the server's input window in its tokens (lib/documents/windows.py)
        self.last_windowed = 0  # chunks of the last `embed` longer than it, embedded in parts

    def embed(
        self,
        texts: Sequence[str],
        hashes: Sequence[str] | None = None,
        tokens: Sequence[int] | None = None,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelFn = _never,
    ) -> np.ndarray:
        """Unit vectors for `texts`, shape (len(texts), dim), cached ones not re-sent; a text
        longer than the server's window is embedded in parts (`lib/documents/windows.py`)."""
        self.last_windowed = 0
        if self.window is not None and len(texts):
            done = windows.embed_in_windows(
                self, self.window, texts, hashes, tokens,
                lambda t, h, n: self._embed_fitting(t, h, n, progress, cancelled),
            )  # fmt: skip
            if done is not None:
                vectors, self.last_windowed = done
                return vectors
        return self._embed_fitting(texts, hashes, tokens, progress, cancelled)

    def _embed_fitting(
        self,
        texts: Sequence[str],
        hashes: Sequence[str] | None,
        tokens: Sequence[int] | None,
        progress: ProgressFn | None,
        cancelled: CancelFn,
    ) -> np.ndarray:
        total = len(texts)
        if total == 0:
            return np.zeros((0, 0), dtype=np.float32)
        hashes = list(hashes) if hashes is not None else [text_hash(t) for t in texts]
        out, found = self.cache.fill(self.model, hashes) if self.cache else (None, None)
        missing = list(range(total)) if found is None else np.flatnonzero(~found).tolist()
        del found
        cached = self.last_cached = total - len(missing)
        self.last_splits = 0
        report = progress or (lambda _p: None)
        report(EmbedProgress(cached, total, cached))
        if missing:
            out = self._send(texts, hashes, tokens, missing, out, report, cancelled)
        return normalise_in_place(out)

    def _send(
        self,
        texts: Sequence[str],
        hashes: list[str],
        tokens: Sequence[int] | None,
        missing: list[int],
        out: np.ndarray | None,
        report: ProgressFn,
        cancelled: CancelFn,
    ) -> np.ndarray:
        """Embed `texts[i]` for i in `missing` into row i of `out`, batch by batch (see
        BatchSizer); `out` is made at the first answer's dimension when the cache had none.
        Each batch is written into the one array as it arrives, so a file's vectors exist
        once (they were kept per text, then stacked, then normalised into a third copy:
        3 x 234 MB for 38,000 chunks at 1,536 dimensions)."""
        counts = [tokens[i] if tokens else count_tokens(texts[i]) for i in missing]
        total, cached = len(texts), len(texts) - len(missing)
        in_a_row, start = 0, 0
        while start < len(missing):
            if cancelled():
                raise IngestCancelled("Indexing was cancelled.")
            part = next(batches(counts[start:], self.sizer.size, self.max_batch_tokens))
            idx = [missing[start + j] for j in part]
            done, began = cached + start, self.clock()
            try:
                vectors = self._create(
                    [texts[i] for i in idx], done, total, cached, report, cancelled
                )
            except RequestTimedOut as exc:
                in_a_row += 1
                self._split(exc, len(idx), in_a_row, done, total)
                report(EmbedProgress(done, total, cached, reason=self._split_note(len(idx))))
                continue  # the same chunks again, in the smaller size
            self.sizer.answered(len(idx), self.clock() - began)
            in_a_row = 0
            if self.cache:  # kept as each batch arrives: a failure later loses none of it
                self.cache.put(self.model, [hashes[i] for i in idx], vectors)
            if out is None:
                out = np.empty((total, vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors  # a server changing dimension mid-file: ValueError
            start += len(idx)
            report(EmbedProgress(cached + start, total, cached))
        return out

    def _split(
        self, exc: RequestTimedOut, inputs: int, in_a_row: int, done: int, total: int
    ) -> None:
        """Halve the batch after a timeout, or give up when splitting cannot help."""
        log.info("embeddings: a batch of %d timed out (%d in a row)", inputs, in_a_row)
        if inputs == 1 or in_a_row >= MAX_TIMEOUTS:
            why = (
                "on a single chunk"
                if inputs == 1
                else f"{in_a_row} times in a row, down to {inputs} chunks a request"
            )
            kept = " and are kept for the next try" if self.cache else ""
            raise RequestTimedOut(
                f"The embeddings server timed out {why}; {done} of {total} chunks were "
                f"embedded{kept}."
            ) from exc
        self.last_splits += 1
        self.sizer.timed_out(inputs)

    def last_notes(self) -> list[str]:
        """What a file's report should say about the last `embed` (windows, timeouts)."""
        notes = []
        if self.last_windowed:
            notes.append(
                f"{self.last_windowed} chunks are longer than {self.model} reads at once "
                f"({self.window} tokens), so each was embedded in parts."
            )
        if not self.last_splits:
            return notes
        times = f"{self.last_splits} time{'s' * (self.last_splits != 1)}"
        return notes + [
            f"The embeddings server timed out {times}; each batch that did was split and sent "
            f"again in smaller parts ({self.sizer.size} chunks a request at the end)."
        ]

    def _split_note(self, inputs: int) -> str:
        return f"{inputs} chunks timed out, sending {self.sizer.size} at a time"

    def embed_query(self, text: str) -> np.ndarray:
        """One unit vector for a question (never cached: questions are not documents)."""
        text = _truncate(text)
        return normalise(self._create([text], 0, 1, 0, lambda _p: None, _never))[0]

    def _create(
        self,
        texts: list[str],
        done: int,
        total: int,
        cached: int,
        report: ProgressFn,
        cancelled: CancelFn,
    ) -> np.ndarray:
        attempt = 0
        while True:
            attempt += 1
            try:
                with provider_errors():
                    return self._request(texts)
            except ParleyError as err:
                cause = err.__cause__
                if not resendable(cause):
                    raise
                if attempt >= self.max_attempts:
                    if isinstance(err, RateLimited):
                        raise RateLimited(
                            f"The embeddings endpoint was still rate-limiting after "
                            f"{attempt} attempts."
                        ) from cause
                    raise
                wait, reason = _backoff(cause, attempt)
            log.info("embeddings: %s, retry %d in %.1fs", reason, attempt, wait)
            self._wait(wait, attempt, reason, done, total, cached, report, cancelled)

    def _request(self, texts: list[str]) -> np.ndarray:
        self.requests += 1
        response = self.client.embeddings.create(
            model=self.model, input=texts, encoding_format="base64"
        )
        items = sorted(response.data, key=lambda d: d.index)
        return np.stack([_decode(item.embedding) for item in items])

    def _wait(
        self,
        seconds: float,
        attempt: int,
        reason: str,
        done: int,
        total: int,
        cached: int,
        report: ProgressFn,
        cancelled: CancelFn,
    ) -> None:
        left = seconds
        while left > 0:
            if cancelled():
                raise IngestCancelled("Indexing was cancelled.")
            report(EmbedProgress(done, total, cached, left, attempt, reason))
            step = min(RETRY_TICK, left)
            self.sleep(step)
            left -= step


def _backoff(exc: Exception, attempt: int) -> tuple[float, str]:
    response = getattr(exc, "response", None)
    retry_after = _retry_after(response.headers) if response is not None else None
    limited = isinstance(exc, openai.RateLimitError)
    reason = "rate limited (429)" if limited else "connection refused"
    if retry_after is not None:
        return min(retry_after, MAX_WAIT), reason
    # Exponential with jitter, so many sessions rate-limited together do not retry together.
    return min(2.0 ** (attempt - 1), 20.0) * random.uniform(0.8, 1.2), reason


def _retry_after(headers) -> float | None:  # noqa: ANN001 - httpx Headers
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / divisor)
            except ValueError:
                continue
    return None


def _decode(embedding: str | list[float] | list[list[float]]) -> np.ndarray:
    # We ask for base64 (a quarter of the bytes of JSON floats); servers that ignore the
    # option send floats, which work too.
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.ndim == 2 and vector.shape[0] > 0:
        # llama.cpp serving a chat model with no pooling type answers one vector per
        # token; mean pooling (what its own --pooling mean does) makes it one per text.
        vector = vector.mean(axis=0)
    if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
        raise ProviderError("The server's embeddings are not vectors Parley can use.")
    return vector


def _truncate(text: str) -> str:
    if count_tokens(text) <= MAX_INPUT_TOKENS:
        return text
    enc = get_encoding(ENCODING)
    return enc.decode(enc.encode(text, disallowed_special=())[:MAX_INPUT_TOKENS])
