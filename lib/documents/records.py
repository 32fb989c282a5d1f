"""The document library's records: a document, one of its chunks, one of its pages.

Plain dataclasses read from the database; `lib/documents/library.py` stores them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DocumentRecord:
    id: str
    workspace: str
    name: str
    sha256: str
    size: int
    kind: str
    stored_as: str
    status: str  # "indexing" until every stage finished, then "ready"
    report: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    embedding_model: str | None = None  # None: searchable by keywords only
    created_at: float = 0.0
    indexed_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> DocumentRecord:  # a row of `SELECT * FROM documents`
        data = dict(row)
        data["report"] = json.loads(data["report"] or "{}")
        return cls(**data)


@dataclass(frozen=True)
class ChunkRecord:
    id: int
    document_id: str
    file: str
    page: int | None
    label: str | None
    start: int
    end: int
    tokens: int
    text: str


@dataclass(frozen=True)
class PageRecord:
    document_id: str
    file: str
    page: int  # position in the document, from 1
    number: int | None  # PDF page number, None for a text file
    label: str | None
    tokens: int
    text: str
