"""The one seam between the library and its search indexes, with one implementation per
backend.

Retrieval (`lib/documents/retrieval.py`) asks two questions of a workspace's passages:
which share the question's words (`keywords`), and which mean the same as its vector
(`vectors`), each among chosen documents. Ingesting adds a document's passages (`add`),
deleting or re-indexing removes them (`remove`). Where the answers come from:

- SQLite (`lib/documents/indexes.py`, `FileSearch`): files beside the database, a FAISS
  index per embedding model and a BM25 segment per document, loaded into the session
  that searches them and rebuilt from the database if damaged.
- PostgreSQL (`lib/documents/pgsearch.py`, `PostgresSearch`): the database itself,
  pgvector's HNSW index over `chunk_vectors` and BM25 postings in `keyword_postings`
  (`lib/documents/pgkeywords.py`), scored as SQLite's segments are. A
  session holds nothing, so its memory does not grow with the library, and every
  replica sees every upload at once.

Both return chunk ids with a score, best first; the library fetches the passages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from lib.documents.library import DocumentLibrary
    from lib.documents.records import DocumentRecord
    from lib.documents.vectorstore import Blocks

Hits = list[tuple[int, float]]  # (chunk id, score), best first


class Search(Protocol):
    repairs: list[str]  # notices of damaged indexes rebuilt, for the page to show
    side_by_side: bool  # whether retrieval should run the two searches at once

    def add(
        self,
        document_id: str,
        chunk_ids: Sequence[int],
        texts: Sequence[str],
        model: str | None,
        vectors: np.ndarray | Blocks | None,
    ) -> None:
        """Make a document's new passages searchable (by vector too when given)."""

    def remove(self, document: DocumentRecord, chunk_ids: Sequence[int]) -> None:
        """Forget passages of a document deleted or about to be re-indexed."""

    def keywords(self, question: str, document_ids: Sequence[str], k: int) -> Hits:
        """The k passages of these documents that best match the question's words."""

    def vectors(self, model: str, vector: np.ndarray, document_ids: Sequence[str], k: int) -> Hits:
        """The k passages of these documents nearest `vector` (cosine similarity)."""

    def vector_count(self, model: str) -> int:
        """How many passages of the workspace have `model` vectors (reports and tests)."""

    def check(self, model: str) -> None:
        """Load what searching with `model` needs now, repairing damage (on page load, so
        a rebuilt index is said before the question)."""


def open_search(library: DocumentLibrary) -> Search:
    if library.dialect == "postgresql":
        from lib.documents.pgsearch import PostgresSearch

        return PostgresSearch(library)
    from lib.documents.indexes import FileSearch

    return FileSearch(library)
