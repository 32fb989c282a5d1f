"""The vectors of a move: a `chunk_vectors` row (pgvector) for every chunk of a document
that has an embedding model, from the embedding cache by the chunk's hash, normalised as
the FAISS index normalises them, so a search on PostgreSQL ranks as one on FAISS did.

A chunk whose vector the cache lacks cannot be searched by meaning after the move; it
is counted per document and reported as a failed check, never dropped in silence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lib.store.migrate.run import Digest, Run

Missing = Counter  # (workspace, document name) -> chunks without a vector

_EMBEDDED_CHUNKS = (
    "SELECT c.id, c.document_id, d.workspace, d.embedding_model, d.name, e.vector "
    "FROM chunks c JOIN documents d ON d.id = c.document_id "
    "LEFT JOIN embedding_cache e ON e.workspace = d.workspace "
    "AND e.model = d.embedding_model AND e.hash = c.hash "
    "WHERE d.embedding_model IS NOT NULL ORDER BY c.id"
)
_INSERT = (
    "INSERT INTO chunk_vectors (chunk_id, document_id, workspace, model, dim, embedding) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chunk_id) DO NOTHING"
)
_TARGET = "SELECT chunk_id, document_id, workspace, model, dim, embedding FROM chunk_vectors"


def copy_vectors(run: Run) -> tuple[Digest, Missing]:
    """Insert the vectors the target lacks; their digest, and the chunks lacking one."""
    from lib.documents.embeddings import normalise  # loads the embeddings stack: only here

    tally, source, missing = run.tally("vectors"), Digest(), Counter()
    for rows in run.batches(_EMBEDDED_CHUNKS):
        values = []
        for chunk_id, document_id, workspace, model, name, blob in rows:
            if blob is None:
                missing[(workspace, name)] += 1
                continue
            vector = normalise(np.frombuffer(blob, dtype="<f4")[None, :])[0]
            values.append((chunk_id, document_id, workspace, model, len(vector), vector))
            source.add(_canonical_row(values[-1]))
        copied = run.insert("chunk_vectors", _INSERT, values)
        tally.copied += copied
        tally.present += len(values) - copied
        run.progress(tally)
    run.finish(tally)
    return source, missing


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
