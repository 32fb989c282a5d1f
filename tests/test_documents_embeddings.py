"""Embeddings through the local OpenAI-compatible server: batching, backoff, and the cache
(on both backends)."""

from __future__ import annotations

import base64
import socket

import numpy as np
import openai
import pytest

from lib.documents import embeddings, windows
from lib.documents.chunking import count_tokens, text_hash
from lib.documents.embeddings import Embedder, EmbeddingCache, EmbedProgress, batches
from lib.errors import IngestCancelled, ModelRejected, ProviderError, RateLimited, ServerFailed
from lib.store.backend import Backend
from tests.fake_images import embed as fake_embed
from tests.fake_openai import FakeOpenAI

TEXTS = [f"Passage {i} about matrices, vectors and the number {i * 7}." for i in range(40)]


@pytest.fixture
def client(openai_server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=3)


@pytest.fixture
def cache(backend: Backend) -> EmbeddingCache:
    return EmbeddingCache(backend, "alice")


def embedder(client: openai.OpenAI, cache: EmbeddingCache | None, **kw) -> Embedder:
    return Embedder(client, "text-embedding-3-small", cache=cache, **kw)


@pytest.mark.parametrize(
    ("tokens", "max_inputs", "max_tokens", "expected"),
    [
        ([1] * 10, 4, 100, [4, 4, 2]),
        ([30, 30, 30, 30], 10, 70, [2, 2]),
        ([80, 10, 10], 10, 50, [1, 2]),  # one input over the token limit goes alone
        ([], 4, 100, []),
    ],
)
def test_batches_respect_count_and_token_limits(
    tokens: list[int], max_inputs: int, max_tokens: int, expected: list[int]
) -> None:
    parts = list(batches(tokens, max_inputs, max_tokens))
    assert [len(p) for p in parts] == expected
    assert [i for p in parts for i in p] == list(range(len(tokens)))


def test_requests_are_batched_and_vectors_are_unit_length(
    client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    counts = [count_tokens(t) for t in TEXTS]
    emb = embedder(client, None, max_inputs=16, max_batch_tokens=sum(counts[:10]))
    vectors = emb.embed(TEXTS)
    assert vectors.shape == (40, openai_server.embedding_dimensions)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sent = [r.json["input"] for r in openai_server.requests_to("/embeddings")]
    assert sum(len(s) for s in sent) == 40
    assert all(len(s) <= 16 for s in sent)
    assert all(sum(count_tokens(t) for t in s) <= sum(counts[:10]) for s in sent)
    assert all(r.json["encoding_format"] == "base64" for r in openai_server.requests)
    # Related texts are near each other, unrelated ones are not: the vectors mean something.
    assert vectors[1] @ vectors[2] > emb.embed_query("chocolate cake recipe") @ vectors[1]


def test_the_cache_means_nothing_is_sent_twice(
    client: openai.OpenAI, cache: EmbeddingCache, openai_server: FakeOpenAI
) -> None:
    first = embedder(client, cache).embed(TEXTS[:10])
    openai_server.reset()
    again = embedder(client, cache)
    second = again.embed(TEXTS[:12])
    assert np.allclose(first, second[:10])
    assert [r.json["input"] for r in openai_server.requests_to("/embeddings")] == [TEXTS[10:12]]
    assert again.last_cached == 10


def test_the_cache_is_per_workspace(
    client: openai.OpenAI, cache: EmbeddingCache, openai_server: FakeOpenAI
) -> None:
    embedder(client, cache).embed(TEXTS[:5])
    bobs = EmbeddingCache(cache.backend, "bob")
    other = Embedder(client, "text-embedding-3-small", cache=bobs)
    other.embed(TEXTS[:5])
    assert other.last_cached == 0
    assert cache.count() == 5 and bobs.count() == 5


def test_a_429_is_retried_after_its_retry_after_and_the_wait_is_reported(
    client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    openai_server.fail(429, retry_after=1.2, route="/embeddings")
    seen: list[EmbedProgress] = []
    vectors = embedder(client, None).embed(TEXTS[:3], progress=seen.append)
    assert vectors.shape[0] == 3
    waits = [p for p in seen if p.waiting]
    assert waits and waits[0].reason == "rate limited (429)" and waits[0].attempt == 1
    assert 1.0 < waits[0].waiting <= 1.2
    assert len(waits) >= 2  # the countdown ticks while it waits
    assert [w.waiting for w in waits] == sorted((w.waiting for w in waits), reverse=True)
    assert len(openai_server.requests_to("/embeddings")) == 2  # our retry, not the SDK's
    assert seen[-1] == EmbedProgress(3, 3, 0)


def test_rate_limiting_that_never_ends_gives_a_clear_error(
    client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    openai_server.fail(429, retry_after=0, route="/embeddings", times=10)
    with pytest.raises(RateLimited, match="still rate-limiting after 3 attempts"):
        embedder(client, None, max_attempts=3).embed(TEXTS[:3])
    assert len(openai_server.requests_to("/embeddings")) == 3


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_not_resent(
    client: openai.OpenAI, openai_server: FakeOpenAI, status: int
) -> None:
    # The server may have done (and billed) the work: report it, never pay twice.
    openai_server.fail(status, route="/embeddings", times=10)
    slept: list[float] = []
    with pytest.raises(ServerFailed):
        embedder(client, None, sleep=slept.append).embed(TEXTS[:2])
    assert slept == [] and len(openai_server.requests_to("/embeddings")) == 1


def test_a_refused_connection_is_resent_with_backoff(client: openai.OpenAI) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late = FakeOpenAI(port=port)
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the server comes up while the embedder waits
        slept.append(seconds)
        late.start()

    down = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test")
    try:
        assert embedder(down, None, sleep=sleep).embed(TEXTS[:2]).shape[0] == 2
        assert slept and 0.5 < sum(slept) < 1.5  # first backoff: about a second
    finally:
        late.stop()


def test_waiting_can_be_cancelled(client: openai.OpenAI, openai_server: FakeOpenAI) -> None:
    openai_server.fail(429, retry_after=30, route="/embeddings")
    ticks: list[EmbedProgress] = []
    with pytest.raises(IngestCancelled):
        embedder(client, None).embed(
            TEXTS[:2], progress=ticks.append, cancelled=lambda: len(ticks) > 2
        )


def test_a_missing_embeddings_endpoint_is_a_model_error(
    client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    openai_server.embeddings_enabled = False
    with pytest.raises(ModelRejected):
        embedder(client, None).embed(TEXTS[:2])
    assert len(openai_server.requests_to("/embeddings")) == 1  # a 404 is not retried


def test_long_queries_are_truncated_to_the_input_limit(
    client: openai.OpenAI, openai_server: FakeOpenAI
) -> None:
    vector = embedder(client, None).embed_query("matrix " * 20_000)
    assert vector.shape == (openai_server.embedding_dimensions,)
    sent = openai_server.requests_to("/embeddings")[0].json["input"][0]
    assert count_tokens(sent) <= 8_000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([1.0, 2.0], [1.0, 2.0]),
        # A chat model served with no pooling type: one vector per token, mean-pooled.
        ([[1.0, 2.0], [3.0, 6.0]], [2.0, 4.0]),
        (base64.b64encode(np.asarray([0.5, -1.0], dtype="<f4").tobytes()).decode(), [0.5, -1.0]),
    ],
)
def test_embeddings_of_every_shape_a_server_sends(raw: object, expected: list[float]) -> None:
    assert embeddings._decode(raw).tolist() == expected


@pytest.mark.parametrize("raw", [[], [[]], [[[1.0]]], [float("nan"), 1.0]])
def test_unusable_embeddings_are_a_clear_error(raw: object) -> None:
    with pytest.raises(ProviderError, match="not vectors Parley can use"):
        embeddings._decode(raw)


# One array filled as batches arrive (from the cache or the server), normalised in place:
# the same vectors as the old path, which kept a dict of per-text vectors, stacked it and
# normalised into a third copy.


def _old_path(texts: list[str], dim: int) -> np.ndarray:
    """What the old path returned: the server's vectors per text, stacked, `normalise`d."""
    return embeddings.normalise(np.stack([np.asarray(fake_embed(t, dim), "<f4") for t in texts]))


@pytest.mark.parametrize(
    ("cached", "texts"),
    [
        ([], TEXTS),  # nothing cached: every vector from the server, in batches of 8+16+16
        (TEXTS, TEXTS),  # everything cached: no request
        (TEXTS[::3], TEXTS),  # some cached, the rest sent around them
        (TEXTS[:4], TEXTS[:10] + TEXTS[:10]),  # each text twice: both rows filled
    ],
    ids=["none-cached", "all-cached", "some-cached", "repeated"],
)
def test_vectors_equal_the_old_paths(
    client: openai.OpenAI,
    cache: EmbeddingCache,
    openai_server: FakeOpenAI,
    cached: list[str],
    texts: list[str],
) -> None:
    if cached:
        embedder(client, cache).embed(cached)
    emb = embedder(client, cache, max_inputs=16)
    vectors = emb.embed(texts)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    assert vectors.shape == (len(texts), openai_server.embedding_dimensions)
    assert np.allclose(vectors, _old_path(texts, openai_server.embedding_dimensions), atol=1e-6)
    assert emb.last_cached == sum(t in cached for t in texts)


def test_a_cached_vector_of_another_dimension_is_an_error_not_a_silent_mix(
    client: openai.OpenAI, cache: EmbeddingCache
) -> None:
    cache.put("text-embedding-3-small", [text_hash(TEXTS[0])], np.ones((1, 8), np.float32))
    cache.put("text-embedding-3-small", [text_hash(TEXTS[1])], np.ones((1, 4), np.float32))
    with pytest.raises(ValueError):
        embedder(client, cache).embed(TEXTS[:2])


def test_the_cache_fills_one_array_row_per_hash(cache: EmbeddingCache) -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put("m", ["a", "b", "c"], vectors)
    out, found = cache.fill("m", ["c", "x", "a", "c"])
    assert found.tolist() == [True, False, True, True]
    assert out is not None and out.dtype == np.float32
    assert np.array_equal(out[[0, 2, 3]], vectors[[2, 0, 2]])
    assert cache.fill("m", ["x", "y"])[0] is None
    assert cache.fill("other model", ["a"])[0] is None
    assert cache.known("m", ["a", "x", "c", "a"]) == {"a", "c"}


@pytest.mark.parametrize("rows", [0, 1, 5, 7, 8, 9, 23])
def test_normalising_in_place_equals_normalise(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    monkeypatch.setattr(embeddings, "NORM_ROWS", 4)  # blocks, and a part block at the end
    vectors = np.random.default_rng(rows).normal(size=(rows, 6)).astype(np.float32)
    if rows:
        vectors[rows // 2] = 0.0  # a zero vector stays zero, as before
    expected = embeddings.normalise(vectors)
    same = embeddings.normalise_in_place(vectors)
    assert same is vectors
    assert np.array_equal(vectors, expected)


def test_chunks_over_the_window_pool_their_parts_as_before(
    client: openai.OpenAI, cache: EmbeddingCache, openai_server: FakeOpenAI
) -> None:
    dim = openai_server.embedding_dimensions
    long = " ".join(f"word{i} about matrices" for i in range(60))  # about 180 tokens
    texts = [TEXTS[0], long, TEXTS[1], long + " again", TEXTS[2]]
    budget = int(64 * windows.WINDOW_SHARE)

    def old_pooled(text: str) -> np.ndarray:  # the parts' unit vectors, summed, normalised
        pieces = windows.parts(text, budget) if count_tokens(text) > budget else [text]
        summed = _old_path(pieces, dim).sum(axis=0)
        return summed / max(np.linalg.norm(summed), 1e-12)

    expected = np.stack([old_pooled(t) for t in texts])
    first = embedder(client, cache, window=64)
    assert np.allclose(first.embed(texts), expected, atol=1e-6)
    assert first.last_windowed == 2
    # Again: the pooled vectors come from the cache under the chunks' own hashes.
    openai_server.reset()
    again = embedder(client, cache, window=64)
    assert np.allclose(again.embed(texts), expected, atol=1e-6)
    assert again.last_cached == len(texts) and openai_server.requests_to("/embeddings") == []
