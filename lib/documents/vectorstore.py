"""Parley's FAISS index: vector search on SQLite (`lib/documents/indexes.py` keeps one per
workspace and embedding model; PostgreSQL uses pgvector instead).

langchain-community's FAISS is not used: the package was sunset in 2026 and it persists
its docstore with pickle, so loading an index could run code. Here the index is saved
with `faiss.write_index` and read with `faiss.read_index` (FAISS's own binary format);
chunk text and metadata live in the database, found by the ids a search returns.

Nor does this implement langchain-core's `VectorStore` (nor the embedder its
`Embeddings`): measured with bench/query.py (its "langchain" rows), going through those
interfaces (the query vector as a list of floats, every candidate of both lists read back
as a `Document` before fusing) made SQLite's hybrid retrieval 61% slower at 10k chunks
(+0.7 ms) and 68% at 100k (+3.2 ms), and PostgreSQL's 1% at 10k (+0.4 ms), for no caller
that needs them.

The file is FAISS's bytes behind a 56-byte header (a magic string, the payload's length
and its SHA-256), written atomically with fsync (`lib/atomic_files.py`). `load` checks
the header before FAISS reads a byte, so a truncated, overwritten or foreign file raises
`IndexDamaged` (and is rebuilt from the embedding cache by `lib/documents/indexes.py`)
instead of reaching FAISS, which would fail with a raw message or misread it.

Vectors are unit length and compared by inner product, i.e. cosine similarity. Each
vector's FAISS id is its chunk's SQLite row id, so search results map straight to rows.

Index type by size (`bench/query.py` prints the measurements behind these numbers: its
corpus is seven R manuals' ~1,560 passages, each repeated with noise up to N, and 57
questions as queries; recall@10 is against exact search; one thread, load 1.5-2.8 on
these shared 2-core machines):
- Exact (`IndexIDMap2(IndexFlatIP)`) while vectors x dimension <= EXACT_MAX_FLOATS, about
  1,950 chunks of 1,536 dimensions (11,700 of 256). Exact search reads every vector, about
  10 GB/s here: 2.9 ms at 5k x 1,536, 6.9 ms at 10k, 16 ms at 20k, 64 ms at 50k.
- Above it, a quantized scan re-scored exactly: `IndexIDMap2(IndexRefineFlat(
  IndexPQFastScan))`. The scan reads 4-bit product-quantization codes (one per
  DIMS_PER_CODE dimensions: 96 bytes per 1,536-d vector, 1/64 of the floats) with SIMD
  lookups, and its best RERANK_POOL (2,000) candidates are re-scored against the raw
  vectors, so the results and their scores are exact whenever the true top k are in the
  pool. Recall@10 1.000 at 5k, 10k, 20k, 50k and 100k, in 0.8, 0.9, 1.0, 1.5 and 1.8 ms
  (a pool of 1,000: 0.993 at 50k, 0.986 at 100k, 1.2 ms). Built in 5 s at 100k (training
  the codes on a sample of TRAIN_SAMPLE vectors: 1.2 s); memory is the raw vectors plus
  1.6% for the codes and 8 bytes of id each. The codes are retrained each time the index
  grows RETRAIN_GROWTH times (`training_level`).
- Not an inverted file (`IndexIVFFlat`, what Parley used before): probing more lists does
  not buy recall, because the near-duplicates of a passage share one list, and when the
  query's nearest centroids miss that list all of them are missed at once. At 100k with
  2 sqrt(N) lists, probing 1/32 of them gave recall@10 0.947 (2.2 ms), 1/16 0.981
  (5.2 ms), 1/8 0.981 (14 ms), 1/4 0.982 (25 ms), 1/2 1.000 (43 ms). An IVF index from an
  older Parley is `outdated`: it is rebuilt from its own vectors when first loaded
  (`lib/documents/indexes.py` saves it), or when searched.
- Not HNSW (`IndexHNSWFlat`, M=32): near-duplicate passages link mostly to each other,
  so the graph is badly connected between topics. At 100k it took 23 s to build and gave
  recall@10 0.55 at efSearch 64 and 0.81 at 256 (0.5 ms); 0.96 and 1.0 at 10k. It also
  has no `remove_ids`, which deleting a document needs.
- `IndexRefine` has no `remove_ids` either; `remove` takes the positions out of the codes
  and the raw vectors (each keeps the others' order) and rewrites the id map. Nor can
  the fast scan take an id filter: a filtered search widens the pool by the share of the
  index its ids hold and filters the pool before re-scoring, which for a small share is
  exact search over just those ids.

Two FAISS defaults are wrong for these machines, and are set once, process-wide, here:
- OpenMP threads: with 2 threads a single query is 2-3x slower than with 1 (thread
  start-up dominates such a small job), so `omp_set_num_threads(1)`.
- `distance_compute_blas_threshold`: the wheel ships 128,000 (upstream's is 20), so
  batched flat searches skip BLAS and run about 10x slower; it is set back to 20.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np

from lib.atomic_files import atomic_write

faiss.omp_set_num_threads(1)
faiss.cvar.distance_compute_blas_threshold = 20

EXACT_MAX_FLOATS = 3_000_000
DIMS_PER_CODE = 8  # 4-bit PQ codes over 8 dimensions each: 96 bytes per 1,536-d vector
RERANK_POOL = 2_000  # coarse candidates re-scored exactly (at least, for k <= 500)
RERANK_PER_RESULT = 4  # ... and at least 4 per result asked for
TRAIN_SAMPLE = 20_000
RETRAIN_GROWTH = 4
MAGIC = b"PARLEY-FAISS-v1\n"
_HEADER = struct.Struct("<16sQ32s")  # magic, payload length, payload SHA-256
_READ_BLOCK = 1 << 20
ADD_BLOCK = 1_000  # vectors read from the cache and added at a time (6 MB at 1,536 dims)


class IndexDamaged(ValueError):
    """An index file that is truncated, overwritten, or not in Parley's checked format."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def exact_is_enough(count: int, dim: int) -> bool:
    return count * dim <= EXACT_MAX_FLOATS


def training_level(count: int, dim: int) -> int:
    """Which growth step `count` is in: the codes are retrained when it changes, each
    RETRAIN_GROWTH times as many vectors as the last (at 2k, 8k, 31k, 125k of 1,536-d)."""
    exact_max = max(EXACT_MAX_FLOATS // dim, 1)
    return int(math.log(max(count, exact_max) / exact_max, RETRAIN_GROWTH))


class ParleyFAISS:
    """A FAISS index of unit vectors keyed by int64 ids (chunk row ids)."""

    def __init__(self, index: faiss.Index | None = None) -> None:
        self.index = index
        self._views: tuple | None = None  # pq: (index, size, ids, vectors)

    # Properties

    @property
    def size(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    @property
    def dim(self) -> int | None:
        return int(self.index.d) if self.index is not None else None

    @property
    def kind(self) -> str:
        """ "flat" (exact), "pq" (quantized scan, exact rerank), "ivf" (an older Parley's
        inverted file, upgraded on use) or "empty"."""
        if self.index is None:
            return "empty"
        outer = faiss.downcast_index(self.index)
        if isinstance(outer, faiss.IndexIVF):
            return "ivf"
        inner = faiss.downcast_index(outer.index)
        return "pq" if isinstance(inner, faiss.IndexRefine) else "flat"

    @property
    def outdated(self) -> bool:
        """An index of a type this size no longer calls for (an IVF index from an older
        Parley, or exact search grown past the threshold): `upgrade` rebuilds it."""
        if self.kind == "ivf":
            return True
        return self.kind == "flat" and not exact_is_enough(self.size, self.dim or 0)

    # Vectors

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray | Blocks) -> None:
        """Add unit vectors under the given ids, switching index type when size says so.
        `vectors` is an array or `Blocks` (a file's vectors read back from the embedding
        cache block by block, so the embedder's array need not be alive beside the index's
        copy: the peak of a big file's upload, bench/hostile_files.py)."""
        source = vectors if isinstance(vectors, Blocks) else ArrayBlocks(vectors)
        ids_array = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids_array) == 0:
            return
        if len(source) != len(ids_array):
            raise ValueError(f"{len(ids_array)} ids for {len(source)} vectors")
        if self.size == 0:
            self.index = None  # an empty index takes the dimension of its first vectors
        dim = source.dim
        if self.dim is not None and dim != self.dim:
            raise ValueError(f"vectors have {dim} dimensions, the index has {self.dim}")
        total = self.size + len(ids_array)
        if self.index is None and exact_is_enough(total, dim):
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._views = None
        if self.index is not None and self._fits_current(total, dim):
            _add_blocks(self.index, ids_array, source, total)
            return
        old_ids, old_vectors = self.all_vectors()
        self.index, self._views = None, None  # free the old index before the new one is built
        all_ids = np.concatenate([old_ids, ids_array])
        if len(old_ids):
            source = Stacked([ArrayBlocks(old_vectors), source])
        del old_vectors
        self.index = build_pq(all_ids, source)

    def _fits_current(self, total: int, dim: int) -> bool:
        if self.kind == "flat":
            return exact_is_enough(total, dim)
        return self.kind == "pq" and training_level(total, dim) == training_level(self.size, dim)

    def upgrade(self) -> None:
        """Rebuild as the type its size calls for (see `outdated`)."""
        ids, vectors = self.all_vectors()
        self.index, self._views = None, None
        if exact_is_enough(len(ids), vectors.shape[1]):
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
            self.index.add_with_ids(vectors, ids)
        else:
            self.index = build_pq(ids, vectors)

    def remove(self, ids: Iterable[int]) -> int:
        ids_array = np.fromiter(ids, dtype=np.int64)
        if self.index is None or len(ids_array) == 0:
            return 0
        if self.kind != "pq":
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids_array)))
        # IndexRefine has no remove_ids: remove the positions from both of its parts (each
        # keeps the others' order), then the ids from the id map.
        id_map = self._pq_views()[0]
        drop = np.isin(id_map, ids_array)
        if not drop.any():
            return 0
        outer = faiss.downcast_index(self.index)
        refine = faiss.downcast_index(outer.index)
        positions = faiss.IDSelectorBatch(np.flatnonzero(drop).astype(np.int64))
        faiss.downcast_index(refine.base_index).remove_ids(positions)
        faiss.downcast_index(refine.refine_index).remove_ids(positions)
        kept = np.ascontiguousarray(id_map[~drop])
        faiss.copy_array_to_vector(kept, outer.id_map)
        refine.ntotal = outer.ntotal = len(kept)
        outer.construct_rev_map()
        self._views = None
        return int(drop.sum())

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) in the index, as copies."""
        if self.index is None or self.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim or 0), dtype=np.float32)
        if self.kind == "pq":
            ids, vectors = self._pq_views()
            return ids.copy(), vectors.copy()
        index = faiss.downcast_index(self.index)
        dim = index.d
        if isinstance(index, faiss.IndexIVF):  # an older Parley's index, read to upgrade it
            lists = index.invlists
            ids, vecs = [], []
            for list_no in range(index.nlist):
                size = lists.list_size(list_no)
                if size:
                    ids.append(faiss.rev_swig_ptr(lists.get_ids(list_no), size).copy())
                    codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * dim * 4)
                    vecs.append(codes.view(np.float32).reshape(size, dim).copy())
            return np.concatenate(ids), np.concatenate(vecs)
        flat = faiss.downcast_index(index.index)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), self.size * dim).reshape(self.size, dim)
        return faiss.vector_to_array(index.id_map).copy(), vectors.copy()

    def _pq_views(self) -> tuple[np.ndarray, np.ndarray]:
        """(id of each position, the raw vectors without a copy), made again whenever the
        index changed (the vectors are FAISS's memory: a stale view would read freed memory)."""
        if self._views is None or self._views[0] is not self.index or self._views[1] != self.size:
            outer = faiss.downcast_index(self.index)
            flat = faiss.downcast_index(faiss.downcast_index(outer.index).refine_index)
            count, dim = self.size, self.dim
            vectors = faiss.rev_swig_ptr(flat.get_xb(), count * dim).reshape(count, dim)
            self._views = (self.index, count, faiss.vector_to_array(outer.id_map), vectors)
        return self._views[2], self._views[3]

    def search_vector(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The k nearest ids with their cosine similarity, only among `allowed` if given."""
        if self.index is None or self.size == 0 or k <= 0:
            return []
        if allowed is not None and len(allowed) == 0:
            return []
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        kind = self.kind
        if kind == "ivf":  # its probing would miss neighbours (see the module's docstring)
            self.upgrade()
            kind = self.kind
        if kind == "pq":
            return self._search_pq(query, k, allowed)
        bitmap = None
        selector = None
        if allowed is not None:
            bitmap = _bitmap(allowed)
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, ids = self.index.search(query, k, params=params)
        del bitmap  # the selector points into it; it had to live until the search ended
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i != -1]

    def _search_pq(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[tuple[int, float]]:
        """The coarse scan's best RERANK_POOL positions (more when only some ids are
        allowed, as a filter keeps a share of them), re-scored exactly."""
        id_map = self._pq_views()[0]
        keep = None
        pool = max(RERANK_POOL, RERANK_PER_RESULT * k)
        if allowed is not None:
            keep = np.zeros(max(int(id_map.max()), int(np.max(allowed))) + 1, dtype=bool)
            keep[allowed] = True
            share = max(int(keep[id_map].sum()), 1) / self.size
            pool = math.ceil(pool / share)
        refine = faiss.downcast_index(faiss.downcast_index(self.index).index)
        if pool >= self.size:
            positions = np.arange(self.size)
        else:
            _, found = refine.base_index.search(query, pool)
            positions = found[0][found[0] >= 0]
        if keep is not None:
            positions = positions[keep[id_map[positions]]]
        # FAISS reads the rows in place: numpy's `vectors[positions] @ q` copies 12 MB for
        # 2,000 rows first, 8.4 ms against 0.7 ms at 100k x 1,536.
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        scores = np.empty(len(positions), dtype=np.float32)
        faiss.downcast_index(refine.refine_index).compute_distance_subset(
            1, faiss.swig_ptr(query), len(positions), faiss.swig_ptr(scores),
            faiss.swig_ptr(positions),
        )  # fmt: skip
        best = np.argsort(-scores, kind="stable")[:k] if len(scores) <= k else _top(scores, k)
        return [(int(id_map[positions[i]]), float(scores[i])) for i in best]

    # Persistence

    @classmethod
    def empty(cls, dim: int) -> ParleyFAISS:
        """An index with no vectors yet, which can be saved."""
        return cls(index=faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    def save(self, path: Path) -> None:
        """Write the index atomically and durably (a reader never sees half a file)."""
        if self.index is None:
            raise ValueError("nothing to save")
        with atomic_write(path) as file:
            file.write(_HEADER.pack(MAGIC, 0, bytes(32)))  # rewritten once the size is known
            digest, size = hashlib.sha256(), 0

            def write(chunk: bytes) -> int:
                nonlocal size
                file.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                return len(chunk)

            faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
            file.seek(0)
            file.write(_HEADER.pack(MAGIC, size, digest.digest()))

    @classmethod
    def load(cls, path: Path) -> ParleyFAISS:
        """Read a saved index; FileNotFoundError if there is none, IndexDamaged if broken."""
        return cls(index=read_checked(path))


def read_checked(path: Path) -> faiss.Index:
    """The index in `path`, after its header's length and checksum have been verified."""
    with path.open("rb") as file:
        header = file.read(_HEADER.size)
        if len(header) < _HEADER.size or not header.startswith(MAGIC):
            raise IndexDamaged("not a checked Parley index: overwritten, or from an older version")
        _magic, size, expected = _HEADER.unpack(header)
        found = os.fstat(file.fileno()).st_size - _HEADER.size
        if found != size:
            raise IndexDamaged(
                f"{size:,} bytes expected, {found:,} found: truncated or overwritten"
            )
        digest = hashlib.sha256()
        while block := file.read(_READ_BLOCK):
            digest.update(block)
        if digest.digest() != expected:
            raise IndexDamaged("its checksum does not match: the file was changed on disk")
        file.seek(_HEADER.size)
        try:
            return faiss.read_index(faiss.PyCallbackIOReader(file.read, _READ_BLOCK))
        except RuntimeError as exc:  # checksummed but unreadable: written by another FAISS?
            raise IndexDamaged("FAISS could not read it") from exc


def build_pq(ids: np.ndarray, vectors: np.ndarray | Blocks) -> faiss.Index:
    """A quantized-scan index (4-bit PQ codes trained on a sample of `vectors`) that keeps
    the raw vectors to re-score its candidates exactly; `Blocks` are read for the sample,
    then again block by block as they are added."""
    source = vectors if isinstance(vectors, Blocks) else ArrayBlocks(vectors)
    count, dim = len(source), source.dim
    coarse = faiss.IndexPQFastScan(dim, pq_codes(dim), 4, faiss.METRIC_INNER_PRODUCT)
    sample = min(count, TRAIN_SAMPLE)
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(count, size=sample, replace=False))
    coarse.train(source.rows(picked))
    index = faiss.IndexIDMap2(faiss.IndexRefineFlat(coarse))
    _add_blocks(index, np.ascontiguousarray(ids, dtype=np.int64), source, count)
    return index


class Blocks:
    """Vectors to add, read a block at a time (`lib/documents/embeddings.CachedVectors`
    reads them from the embedding cache): their count, dimension, a block by position, and
    any rows (a training sample)."""

    dim: int

    def __len__(self) -> int:
        raise NotImplementedError

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Unit float32 rows at these positions, in C order."""
        raise NotImplementedError

    def blocks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first position, rows) for consecutive blocks of `size` rows (ADD_BLOCK)."""
        size = size or ADD_BLOCK
        for start in range(0, len(self), size):
            yield start, self.rows(np.arange(start, min(start + size, len(self))))


class ArrayBlocks(Blocks):
    """An array's rows, as views (no copy)."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.dim = int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.vectors)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.vectors[positions])

    def blocks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.vectors  # FAISS adds an array in one call without a copy


class Stacked(Blocks):
    """One source after another (an index's own vectors, then a file's)."""

    def __init__(self, parts: list[Blocks]) -> None:
        self.parts = parts
        self.dim = parts[0].dim
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def rows(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), self.dim), dtype=np.float32)
        which = np.searchsorted(self.starts, positions, side="right") - 1
        for i, part in enumerate(self.parts):
            mine = which == i
            if mine.any():
                out[mine] = part.rows(positions[mine] - self.starts[i])
        return out

    def blocks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        for i, part in enumerate(self.parts):
            for start, block in part.blocks(size):
                yield int(self.starts[i]) + start, block


def _add_blocks(index: faiss.Index, ids: np.ndarray, source: Blocks, total: int) -> None:
    """Add `source` under `ids`; the raw vectors' storage is reserved for `total` first, so
    adding block by block never reallocates it (std::vector doubling would hold the old and
    a twice-as-big new buffer at once)."""
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    flat = inner if isinstance(inner, faiss.IndexFlat) else inner.refine_index
    flat = faiss.downcast_index(flat)
    used = flat.ntotal * flat.code_size
    flat.codes.resize(total * flat.code_size)  # std::vector keeps the capacity on shrinking
    flat.codes.resize(used)
    for start, block in source.blocks():
        index.add_with_ids(block, ids[start : start + len(block)])


def pq_codes(dim: int) -> int:
    """Sub-vectors per code: about DIMS_PER_CODE dimensions each, and dividing `dim`."""
    most = max(1, dim // DIMS_PER_CODE)
    return next(m for m in range(most, 0, -1) if dim % m == 0)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k highest scores, highest first."""
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best], kind="stable")]


def _bitmap(ids: np.ndarray) -> np.ndarray:
    """A little-endian bit set of `ids`, as FAISS's IDSelectorBitmap reads it."""
    ids = np.asarray(ids, dtype=np.int64)
    bits = np.zeros(int(ids.max()) + 1, dtype=bool)
    bits[ids] = True
    return np.packbits(bits, bitorder="little")
