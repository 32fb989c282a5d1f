"""Parley's FAISS index (SQLite's vector search): exact, then a quantized scan re-scored
exactly, by size; filtering, deletion, pickle-free persistence, and the upgrade of an
older Parley's IVF index."""

from __future__ import annotations

import pickle
from pathlib import Path

import faiss
import numpy as np
import pytest

from lib.documents import vectorstore
from lib.documents.chunking import Chunk
from lib.documents.library import DocumentLibrary
from lib.documents.vectorstore import ParleyFAISS, exact_is_enough, training_level
from lib.store.backend import open_backend

MODEL = "text-embedding-3-small"


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres, like embeddings of documents on a few topics."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.4 * rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return [int(ids[i]) for i in np.argsort(-(x @ q))[:k]]


def recall_at_10(store: ParleyFAISS, x: np.ndarray, ids: np.ndarray, queries) -> float:  # noqa: ANN001
    found = [{i for i, _ in store.search_vector(q, 10)} for q in queries]
    truth = [set(brute_force(x, ids, q, 10)) for q in queries]
    return float(np.mean([len(f & t) / 10 for f, t in zip(found, truth, strict=True)]))


def near(x: np.ndarray) -> np.ndarray:
    """Queries about as near the stored vectors as a question is to its passage (cosine
    about 0.9), not the vectors themselves, which any index finds."""
    rng = np.random.default_rng(1)
    q = x + 0.5 * rng.standard_normal(x.shape).astype(np.float32) / np.sqrt(x.shape[1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    # 32-dimensional vectors: exact up to 100 of them, and 200 candidates re-scored, so the
    # quantized scan, and its pool, are exercised at test sizes.
    monkeypatch.setattr(vectorstore, "EXACT_MAX_FLOATS", 100 * 32)
    monkeypatch.setattr(vectorstore, "RERANK_POOL", 200)


def test_faiss_is_configured_for_these_machines() -> None:
    assert faiss.omp_get_max_threads() == 1
    assert faiss.cvar.distance_compute_blas_threshold == 20


def test_threshold_is_in_vectors_times_dimensions() -> None:
    assert exact_is_enough(1_900, 1536) and not exact_is_enough(2_000, 1536)
    assert exact_is_enough(7_800, 384) and not exact_is_enough(7_900, 384)
    assert exact_is_enough(11_700, 256) and not exact_is_enough(11_800, 256)


def test_codes_are_retrained_each_fourfold_growth() -> None:
    levels = [training_level(n, 1536) for n in (1, 1_953, 7_000, 7_900, 31_000, 32_000, 10**5)]
    assert levels == [0, 0, 0, 1, 1, 2, 2]


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


def test_growing_past_the_threshold_switches_to_a_rescored_scan(small_threshold) -> None:
    x = clustered(3000, 32)
    ids = np.arange(3000) * 3 + 7
    store = ParleyFAISS()
    store.add_vectors(ids[:80], x[:80])
    assert store.kind == "flat"
    store.add_vectors(ids[80:], x[80:])  # crosses the threshold: rebuilt
    assert store.kind == "pq" and store.size == 3000
    queries = near(x[::60])
    assert recall_at_10(store, x, ids, queries) >= 0.98
    hits = store.search_vector(queries[0], 10)
    exact = x[np.searchsorted(ids, [i for i, _ in hits])] @ queries[0]
    assert [s for _, s in hits] == pytest.approx(list(exact), abs=1e-5)  # exact scores
    got_ids, got_vectors = store.all_vectors()
    order = np.argsort(got_ids)
    assert np.array_equal(got_ids[order], ids) and np.allclose(got_vectors[order], x)


def test_adding_within_a_training_step_keeps_the_codes(small_threshold) -> None:
    x = clustered(2000, 32)
    store = ParleyFAISS()
    store.add_vectors(np.arange(150), x[:150])
    index = store.index
    store.add_vectors(np.arange(150, 350), x[150:350])  # 350 < 4 x 100: same step
    assert store.index is index and store.size == 350
    store.add_vectors(np.arange(350, 2000), x[350:])  # past 400: retrained
    assert store.index is not index and store.size == 2000
    assert store.search_vector(x[1900], 1)[0][0] == 1900


@pytest.mark.parametrize("size", [60, 2000])  # flat, then the rescored scan
@pytest.mark.parametrize("every", [2, 7, 200])  # a filter keeping half, a seventh, ten ids
def test_search_can_be_limited_to_some_ids(size: int, every: int, small_threshold) -> None:
    x = clustered(size, 32)
    ids = np.arange(size, dtype=np.int64) + 10
    store = ParleyFAISS()
    store.add_vectors(ids, x)
    allowed = ids[ids % every == 0]
    hits = store.search_vector(x[3], 5, allowed)
    assert len(hits) == min(5, len(allowed))
    assert all(i % every == 0 for i, _ in hits)
    assert [i for i, _ in hits] == brute_force(x[allowed - 10], allowed, x[3], 5)
    assert store.search_vector(x[3], 5, np.zeros(0, dtype=np.int64)) == []


@pytest.mark.parametrize("size", [60, 2000])
def test_removed_vectors_are_never_found(size: int, small_threshold) -> None:
    x = clustered(size, 32)
    store = ParleyFAISS()
    store.add_vectors(np.arange(size), x)
    assert store.remove(range(0, size, 2)) == size // 2
    assert store.remove([0, 2, size * 5]) == 0  # gone already, or never there
    assert store.size == size - size // 2
    found = {i for q in x[:10] for i, _ in store.search_vector(q, 10)}
    assert found and all(i % 2 == 1 for i in found)
    assert store.search_vector(x[7], 1)[0][0] == 7
    got_ids, got_vectors = store.all_vectors()
    assert np.array_equal(np.sort(got_ids), np.arange(1, size, 2))
    assert np.allclose(got_vectors[np.argsort(got_ids)], x[1::2])
    store.add_vectors([size * 5], x[:1])  # the id map and the vectors still line up
    assert store.search_vector(x[0], 1)[0][0] == size * 5


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
    assert loaded.kind == store.kind and loaded.size == size and not loaded.outdated
    assert loaded.search_vector(x[5], 3) == store.search_vector(x[5], 3)
    assert loaded.remove([5]) == 1 and loaded.search_vector(x[5], 1)[0][0] != 5


# An older Parley's index


def old_ivf(ids: np.ndarray, x: np.ndarray) -> faiss.Index:
    """What Parley wrote above its exact threshold before: an inverted file, no id map."""
    dim = x.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, 16, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add_with_ids(x, ids)
    return index


def old_flat(ids: np.ndarray, x: np.ndarray) -> faiss.Index:
    """Exact search, which an older Parley kept up to more vectors than it does now."""
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
    index.add_with_ids(x, ids)
    return index


@pytest.mark.parametrize(
    ("count", "make", "outdated"),
    [(1000, old_ivf, True), (150, old_flat, True), (90, old_flat, False)],
)
def test_which_saved_indexes_are_outdated(count: int, make, outdated: bool, small_threshold):  # noqa: ANN001
    x = clustered(count, 32)
    store = ParleyFAISS(index=make(np.arange(count), x))
    assert store.outdated is outdated
    store.upgrade()
    assert not store.outdated and store.kind == ("pq" if count > 100 else "flat")
    assert store.search_vector(x[17], 1)[0][0] == 17


def test_an_ivf_index_is_outdated_and_searching_it_upgrades_it(small_threshold) -> None:
    x = clustered(1000, 32)
    ids = np.arange(1000) + 500
    store = ParleyFAISS(index=old_ivf(ids, x))
    assert store.kind == "ivf" and store.outdated
    queries = near(x[::33])
    assert recall_at_10(store, x, ids, queries) >= 0.98
    assert store.kind == "pq" and store.size == 1000 and not store.outdated


def add_document(library: DocumentLibrary, x: np.ndarray) -> list[int]:
    texts = [f"passage {i}" for i in range(len(x))]
    chunks = [Chunk(i + 1, None, 0, len(t), t, 2) for i, t in enumerate(texts)]
    doc, ids = library.create(name="manual.pdf", data=b"%PDF-test", sha256="0" * 64,
                              kind="pdf", report={}, pages=[], page_tokens=[],
                              chunks=chunks)  # fmt: skip
    library.search.add(doc.id, ids, texts, MODEL, x)
    library.mark_ready(doc.id, MODEL, {})
    return ids


def test_an_older_ivf_file_is_rebuilt_and_saved_on_first_use(data_dir: Path, small_threshold):
    x = clustered(600, 32)
    library = DocumentLibrary(open_backend(data_dir), "ws")
    ids = np.array(add_document(library, x))
    (path,) = data_dir.glob("documents/*/index-*.faiss")
    ParleyFAISS(index=old_ivf(ids, x)).save(path)  # as the last version left it
    fresh = DocumentLibrary(open_backend(data_dir), "ws")  # a new session
    before = fresh.search._generation(MODEL)
    hits = fresh.search.vectors(MODEL, x[42], [d.id for d in fresh.list()], 10)
    assert [i for i, _ in hits] == brute_force(x, ids, x[42], 10)
    assert ParleyFAISS.load(path).kind == "pq"  # saved, so the next session reads it as is
    assert fresh.search._generation(MODEL) == before + 1
    assert fresh.search.repairs == []  # nothing was wrong: nothing to tell the user


class _Counted(vectorstore.Blocks):
    """An array served a block at a time, counting the rows read, as the cache serves them."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.dim, self.read = x, x.shape[1], 0

    def __len__(self) -> int:
        return len(self.x)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        self.read += len(positions)
        return np.ascontiguousarray(self.x[positions])


@pytest.mark.parametrize(
    ("first", "second"),
    [(50, 30), (50, 0), (0, 90), (150, 200), (150, 1_850), (0, 2_000)],
    ids=["flat", "flat-once", "flat-fresh", "pq-same-step", "pq-retrained", "pq-fresh"],
)
def test_vectors_added_in_blocks_make_the_same_index_as_an_array(
    small_threshold: None, monkeypatch: pytest.MonkeyPatch, first: int, second: int
) -> None:
    monkeypatch.setattr(vectorstore, "ADD_BLOCK", 64)  # several blocks at test sizes
    x = clustered(first + second, 32)
    ids = np.arange(first + second) * 3 + 7
    whole, blocked = ParleyFAISS(), ParleyFAISS()
    for store in (whole, blocked):
        store.add_vectors(ids[:first], x[:first])
    whole.add_vectors(ids[first:], x[first:])
    source = _Counted(x[first:])
    blocked.add_vectors(ids[first:], source)
    assert blocked.kind == whole.kind and blocked.size == whole.size
    assert source.read >= second  # read from the source, never handed over whole
    got_ids, got = blocked.all_vectors()
    want_ids, want = whole.all_vectors()
    assert got_ids.tolist() == want_ids.tolist()
    np.testing.assert_array_equal(got, want)
    for q in near(x[::37]):
        assert blocked.search_vector(q, 10) == whole.search_vector(q, 10)


def test_blocks_of_the_wrong_length_or_dimension_are_refused() -> None:
    store = ParleyFAISS()
    store.add_vectors([1], clustered(1, 32))
    with pytest.raises(ValueError, match="ids for"):
        store.add_vectors([2, 3], _Counted(clustered(1, 32)))
    with pytest.raises(ValueError, match="dimensions"):
        store.add_vectors([2], _Counted(clustered(1, 16)))
