"""The library list's line about each document (`documents_view.summary`): its parts
named as its citations name them (slides, sections, sheets), as the upload report does."""

from __future__ import annotations

import pytest

from lib.documents.records import DocumentRecord
from lib.ui.documents_view import summary


def record(kind: str, **report: object) -> DocumentRecord:
    return DocumentRecord(
        "d1", "alice", f"file.{kind}", "0" * 64, 2048, kind, "local", "ready",
        report={"chunks": 3, **report}, tokens=120, embedding_model="m",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "report", "starts", "has"),
    [
        ("pdf", {"pages": 12, "empty_pages": [3]}, "12 pages · 3 chunks", "1 page without text"),
        ("pdf", {"pages": 1}, "1 page · ", "120 tokens"),
        ("pptx", {"pages": 3, "empty_pages": [2, 3]}, "3 slides · ", "2 slides without text"),
        ("docx", {"pages": 1}, "1 section · ", "2 KB"),
        ("xlsx", {"pages": 14, "sheets": 2}, "2 sheets, 14 blocks of rows · ", "3 chunks"),
        ("csv", {"pages": 4}, "4 blocks of rows · ", "3 chunks"),
    ],
)
def test_the_summary_names_a_documents_parts_as_its_kind_does(
    kind: str, report: dict, starts: str, has: str
) -> None:
    line = summary(record(kind, **report), "m")
    assert line.startswith(starts) and has in line, line
    assert kind == "pdf" or " page" not in line
