"""Parley's FAISS index (SQLite's vector search): exact vs IVF by size, filtering, deletion,
pickle-free persistence."""

from __future__ import annotations

import pickle
from pathlib import Path

import faiss
import numpy as np
import pytest

from lib.documents import vectorstore
from lib.documents.vectorstore import ParleyFAISS, exact_is_enough


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres, like embeddings of documents on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return [int(ids[i]) for i in np.argsort(-(x @ q))[:k]]


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    # 32-dimensional vectors: exact up to 100 of them, so IVF is exercised at test sizes.
    monkeypatch.setattr(vectorstore, "EXACT_MAX_FLOATS", 100 * 32)


def test_faiss_is_configured_for_these_machines() -> None:
    assert faiss.omp_get_max_threads() == 1
    assert faiss.cvar.distance_compute_blas_threshold == 20


def test_threshold_is_in_vectors_times_dimensions() -> None:
    assert exact_is_enough(5_000, 1536)
    assert not exact_is_enough(6_000, 1536)
    assert exact_is_enough(20_000, 384)
    assert exact_is_enough(31_000, 256) and not exact_is_enough(32_000, 256)


def test_exact_search_matches_brute_force_and_keeps_ids() -> None:
    x = clustered(500, 32)
    ids = np.arange(1000, 1500)
    store = ParleyFAISS()
    store.add_vectors(ids, x)
    assert store.kind == "flat" and store.size == 500 and store.dim == 32
    for q in x[:20]:
        hits = store.search_vector(q, 5)
        assert [i for i, _ in hits] == brute_force(x, ids, q, 5)
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_growing_past_the_threshold_switches_to_ivf_with_good_recall(small_threshold) -> None:
    x = clustered(3000, 32)
    ids = np.arange(3000) * 3 + 7
    store = ParleyFAISS()
    store.add_vectors(ids[:80], x[:80])
    assert store.kind == "flat"
    store.add_vectors(ids[80:], x[80:])  # crosses the threshold: rebuilt as IVF
    assert store.kind == "ivf" and store.size == 3000
    recall = np.mean(
        [
            len({i for i, _ in store.search_vector(q, 10)} & set(brute_force(x, ids, q, 10))) / 10
            for q in x[::30]
        ]
    )
    assert recall >= 0.9
    got_ids, got_vectors = store.all_vectors()
    order = np.argsort(got_ids)
    assert np.array_equal(got_ids[order], ids) and np.allclose(got_vectors[order], x)


@pytest.mark.parametrize("size", [60, 2000])  # flat, then IVF
def test_search_can_be_limited_to_some_ids(size: int, small_threshold) -> None:
    x = clustered(size, 32)
    ids = np.arange(size, dtype=np.int64)
    store = ParleyFAISS()
    store.add_vectors(ids, x)
    allowed = ids[ids % 7 == 0]
    hits = store.search_vector(x[3], 5, allowed)
    assert len(hits) == 5
    assert all(i % 7 == 0 for i, _ in hits)
    assert [i for i, _ in hits] == brute_force(x[allowed], allowed, x[3], 5)
    assert store.search_vector(x[3], 5, np.zeros(0, dtype=np.int64)) == []


@pytest.mark.parametrize("size", [60, 2000])
def test_removed_vectors_are_never_found(size: int, small_threshold) -> None:
    x = clustered(size, 32)
    store = ParleyFAISS()
    store.add_vectors(np.arange(size), x)
    assert store.remove(range(0, size, 2)) == size // 2
    assert store.size == size - size // 2
    found = {i for q in x[:10] for i, _ in store.search_vector(q, 10)}
    assert found and all(i % 2 == 1 for i in found)


def test_mismatched_dimensions_are_refused() -> None:
    store = ParleyFAISS()
    store.add_vectors([1], clustered(1, 32))
    with pytest.raises(ValueError, match="dimensions"):
        store.add_vectors([2], clustered(1, 16))


@pytest.mark.parametrize("size", [60, 2000])
def test_saved_index_loads_without_pickle(
    size: int, small_threshold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = clustered(size, 32)
    store = ParleyFAISS()
    store.add_vectors(np.arange(size), x)
    path = tmp_path / "index.faiss"
    store.save(path)
    assert not path.with_name("index.faiss.tmp").exists()

    def refuse(*_a, **_k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = ParleyFAISS.load(path)
    assert loaded.kind == store.kind and loaded.size == size
    assert loaded.search_vector(x[5], 3) == store.search_vector(x[5], 3)
