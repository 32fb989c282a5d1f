"""The vectors of a move: a `chunk_vectors` row (pgvector) for every chunk of a document
that has an embedding model, from the embedding cache by the chunk's hash, normalised as
the FAISS index normalises them (as `Embedder` does), so a search on PostgreSQL ranks as
one on FAISS did.

They go in through the library's own search seam (`DocumentLibrary.search.add`), as an
upload's do, with the HNSW upkeep held back until the copy ends
(`lib/documents/pgindexing.py`): each (model, dimension) then gets its index built over
every copied vector at once, which is several times cheaper than one insert at a time;
chunks that have their vector in the target already are left out first, so a rerun adds
none. A chunk whose vector the cache lacks cannot be searched by meaning after the move;
it is counted per document and reported as a failed check, never dropped in silence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import groupby
from typing import Any

import numpy as np

from lib.store.migrate.run import Digest, Run

Missing = Counter  # (workspace, document name) -> chunks without a vector

_EMBEDDED_CHUNKS = (
    "SELECT d.workspace, c.document_id, d.embedding_model, d.name, c.id, c.text, e.vector "
    "FROM chunks c JOIN documents d ON d.id = c.document_id "
    "LEFT JOIN embedding_cache e ON e.workspace = d.workspace "
    "AND e.model = d.embedding_model AND e.hash = c.hash "
    "WHERE d.embedding_model IS NOT NULL ORDER BY d.workspace, c.document_id, c.id"
)
_TARGET = "SELECT chunk_id, document_id, workspace, model, dim, embedding FROM chunk_vectors"


def copy_vectors(run: Run) -> tuple[Digest, Missing]:
    """Add the vectors the target lacks; their digest, and the chunks lacking one."""
    from lib.documents.pgindexing import indexer  # loads the documents stack: only here

    with indexer(run.target).deferred():
        return _copy(run)


def _copy(run: Run) -> tuple[Digest, Missing]:
    from lib.documents.embeddings import normalise
    from lib.documents.library import DocumentLibrary

    tally, source, missing = run.tally("vectors"), Digest(), Counter()
    libraries: dict[str, DocumentLibrary] = {}
    for rows in run.batches(_EMBEDDED_CHUNKS):
        there = _in_target(run, [r[4] for r in rows])
        for (workspace, document_id, model, name), group in groupby(rows, key=lambda r: r[:4]):
            ids, texts, vectors = [], [], []
            for *_, chunk_id, text, blob in group:
                if blob is None:
                    missing[(workspace, name)] += 1
                    continue
                vector = normalise(np.frombuffer(blob, dtype="<f4")[None, :])[0]
                source.add(
                    _canonical_row((chunk_id, document_id, workspace, model, len(vector), vector))
                )
                if chunk_id in there:
                    tally.present += 1
                    continue
                ids.append(chunk_id)
                texts.append(text)
                vectors.append(vector)
            if ids:
                if workspace not in libraries:
                    libraries[workspace] = DocumentLibrary(run.target, workspace)
                libraries[workspace].search.add_vectors(document_id, ids, model, np.stack(vectors))
                tally.copied += len(ids)
        run.progress(tally)
    run.finish(tally)
    return source, missing


def _in_target(run: Run, chunk_ids: list[int]) -> set[int]:
    with run.target.connection() as conn:
        rows = conn.execute(
            "SELECT chunk_id FROM chunk_vectors WHERE chunk_id = ANY(?)", (chunk_ids,)
        ).fetchall()
    return {r[0] for r in rows}


def check_vectors(run: Run, source: Digest, missing: Missing) -> None:
    target = run.target_digest(_TARGET, lambda row: _canonical_row((*row[:5], row[5].to_numpy())))
    run.compare("vectors", source, target, "vectors")
    if missing:
        names = ", ".join(f"{name} ({ws}): {n}" for (ws, name), n in sorted(missing.items()))
        run.fail(
            "vectors",
            f"{sum(missing.values()):,} chunks have no saved vector, so none was copied "
            f"for them: {names}. Re-index those documents after the move to search them "
            "by meaning.",
        )


def _canonical_row(values: Sequence[Any]) -> tuple:
    *head, vector = values
    return (*head, np.asarray(vector, dtype="<f4").tobytes())
