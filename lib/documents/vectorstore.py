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

Index type by size (`bench/query.py` prints the measurements behind these numbers; the
figures below are from one run on these shared 2-core machines, questions as queries):
- Exact (`IndexIDMap2(IndexFlatIP)`) while vectors x dimension <= EXACT_MAX_FLOATS, about
  5,000 chunks of 1,536 dimensions (31,000 of 256). Exact search reads every vector: a
  query took 4 ms at 5k x 1,536, 8 ms at 10k and 41 ms at 50k, so past ~5k it would eat
  most of the 10 ms budget for the whole retrieval.
- Above it, an inverted file (`IndexIVFFlat`, 2 sqrt(N) lists, probing 1/32 of them and
  at least 16): 0.4-1.7 ms from 5k to 50k and about 3 ms at 100k, with top-10 recall
  against exact search of 0.92-0.95. IVF rather than HNSW because IVF supports
  `remove_ids`, which deleting a document needs, and keeps no graph, so its memory stays
  at the raw vectors plus 8 bytes of id each. The lists are retrained when the index grows
  past RETRAIN_GROWTH times its training size.

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
from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np

from lib.atomic_files import atomic_write

faiss.omp_set_num_threads(1)
faiss.cvar.distance_compute_blas_threshold = 20

EXACT_MAX_FLOATS = 8_000_000
NPROBE_FRACTION = 1 / 32
MIN_NPROBE = 16
RETRAIN_GROWTH = 4
TRAIN_POINTS_PER_LIST = 40  # FAISS warns below 39
MAGIC = b"PARLEY-FAISS-v1\n"
_HEADER = struct.Struct("<16sQ32s")  # magic, payload length, payload SHA-256
_READ_BLOCK = 1 << 20


class IndexDamaged(ValueError):
    """An index file that is truncated, overwritten, or not in Parley's checked format."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def exact_is_enough(count: int, dim: int) -> bool:
    return count * dim <= EXACT_MAX_FLOATS


def ivf_lists(count: int) -> int:
    # 2 sqrt(N), but never more than FAISS's 39 training points per list allow.
    return max(16, min(int(2 * math.sqrt(count)), count // 39))


class ParleyFAISS:
    """A FAISS index of unit vectors keyed by int64 ids (chunk row ids)."""

    def __init__(self, index: faiss.Index | None = None) -> None:
        self.index = index

    # Properties

    @property
    def size(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    @property
    def dim(self) -> int | None:
        return int(self.index.d) if self.index is not None else None

    @property
    def kind(self) -> str:
        if self.index is None:
            return "empty"
        return "ivf" if isinstance(faiss.downcast_index(self.index), faiss.IndexIVF) else "flat"

    # Vectors

    def add_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Add unit vectors under the given ids, switching index type when size says so."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids_array = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids_array) == 0:
            return
        if self.size == 0:
            self.index = None  # an empty index takes the dimension of its first vectors
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise ValueError(
                f"vectors have {vectors.shape[1]} dimensions, the index has {self.dim}"
            )
        dim = vectors.shape[1]
        total = self.size + len(ids_array)
        if self.index is None and exact_is_enough(total, dim):
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if self.index is not None and self._fits_current(total, dim):
            self.index.add_with_ids(vectors, ids_array)
            return
        old_ids, old_vectors = self.all_vectors()
        self.index = None  # free the old index before the new one is built
        all_ids = np.concatenate([old_ids, ids_array])
        all_vectors = np.concatenate([old_vectors, vectors]) if len(old_ids) else vectors
        del old_vectors
        self.index = build_ivf(all_ids, all_vectors)

    def _fits_current(self, total: int, dim: int) -> bool:
        if self.kind == "flat":
            return exact_is_enough(total, dim)
        ivf = faiss.downcast_index(self.index)
        return total <= RETRAIN_GROWTH * (ivf.nlist / 2) ** 2  # nlist = 2 sqrt(trained size)

    def remove(self, ids: Iterable[int]) -> int:
        ids_array = np.fromiter(ids, dtype=np.int64)
        if self.index is None or len(ids_array) == 0:
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids_array)))

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) in the index, as copies."""
        if self.index is None or self.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim or 0), dtype=np.float32)
        index = faiss.downcast_index(self.index)
        dim = index.d
        if isinstance(index, faiss.IndexIVF):
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

    def search_vector(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The k nearest ids with their cosine similarity, only among `allowed` if given."""
        if self.index is None or self.size == 0 or k <= 0:
            return []
        if allowed is not None and len(allowed) == 0:
            return []
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        bitmap = None
        selector = None
        if allowed is not None:
            bitmap = _bitmap(allowed)
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        if self.kind == "ivf":
            ivf = faiss.downcast_index(self.index)
            nprobe = max(MIN_NPROBE, math.ceil(ivf.nlist * NPROBE_FRACTION))
            if allowed is not None:
                # A small subset spreads thinly over the lists: probe more so k are found.
                nprobe = math.ceil(nprobe * self.size / max(len(allowed), 1))
            params = faiss.SearchParametersIVF(nprobe=min(ivf.nlist, nprobe), sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, ids = self.index.search(query, k, params=params)
        del bitmap  # the selector points into it; it had to live until the search ended
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i != -1]

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


def build_ivf(ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """An inverted-file index trained on (a sample of) `vectors`, holding all of them."""
    count, dim = vectors.shape
    nlist = ivf_lists(count)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = min(count, nlist * TRAIN_POINTS_PER_LIST)
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(count, size=sample, replace=False))
    index.train(vectors[picked])
    index.add_with_ids(vectors, ids)
    return index


def _bitmap(ids: np.ndarray) -> np.ndarray:
    """A little-endian bit set of `ids`, as FAISS's IDSelectorBitmap reads it."""
    ids = np.asarray(ids, dtype=np.int64)
    bits = np.zeros(int(ids.max()) + 1, dtype=bool)
    bits[ids] = True
    return np.packbits(bits, bitorder="little")
