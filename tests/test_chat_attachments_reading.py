"""How the chat box reads an attached document (`lib.chat.with_documents`): scans OCR'd
as the operator's PARLEY_OCR says, as on the Documents page, and each file read once."""

from __future__ import annotations

import re

import pytest

from lib.chat import with_documents
from lib.documents import extract, ingest, ocr, rag
from lib.documents.library import DocumentLibrary
from lib.errors import NoTextFound
from lib.settings import resolve_settings
from lib.store.backend import Backend
from tests import doc_samples as samples
from tests.test_documents_ocr import image_file, scan_pdf, words

LIMIT = 8 * 1_048_576
OCR_OFF = "OCR is turned off on this server (PARLEY_OCR)"


@pytest.fixture
def docs(backend: Backend) -> rag.DocContext:
    """Keyword-only: no embeddings server needed to index a long file."""
    return rag.DocContext(None, DocumentLibrary(backend, "alice"))  # type: ignore[arg-type]


def setting(value: str) -> bool:
    """PARLEY_OCR as the one settings resolver reads it (the Documents page's `current.ocr`)."""
    return resolve_settings(environ={"PARLEY_OCR": value}).ocr


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("scan.pdf", lambda: scan_pdf(14), "scan.pdf has 1 page but no text that can be "
         f"extracted: page 1 is a scan (pictures of text), and {OCR_OFF}, so it was not "
         "indexed."),
        ("page.tiff", lambda: image_file("TIFF", 14), f"page.tiff is an image, and {OCR_OFF}, "
         "so it was not indexed."),
    ],
)  # fmt: skip
def test_with_ocr_off_a_scan_in_the_chat_gets_the_documents_pages_message_and_no_ocr(
    docs: rag.DocContext,
    recognised: list[bytes],
    name: str,
    data,
    message: str,  # noqa: ANN001
) -> None:
    assert setting("0") is False
    with pytest.raises(NoTextFound) as caught:
        with_documents.read_files([(name, data())], limit_bytes=LIMIT, docs=docs, ocr=False)
    assert str(caught.value).startswith(message), caught.value
    # The Documents page's own message for the same file, word for word.
    page = ingest.Ingestor(docs.library, None, limit_bytes=LIMIT, ocr=False).ingest(name, data())
    assert page.message == str(caught.value)
    assert recognised == [] and docs.library.list() == []


def test_with_ocr_off_and_no_library_a_scan_is_not_ocrd(recognised: list[bytes]) -> None:
    with pytest.raises(NoTextFound, match=re.escape(OCR_OFF)):
        with_documents.read_files([("scan.pdf", scan_pdf(14))], limit_bytes=LIMIT, docs=None,
                                  ocr=False)  # fmt: skip
    assert recognised == []


def test_with_ocr_on_a_scan_in_the_chat_is_read(
    docs: rag.DocContext, recognised: list[bytes]
) -> None:
    assert setting("1") is True
    (file,) = with_documents.read_files(
        [("scan.pdf", scan_pdf(14))], limit_bytes=LIMIT, docs=docs, ocr=True
    )
    assert file.kind == "text" and len(recognised) == 1
    assert {"assignment", "operator"} <= words(file.text)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the PDFs opened for reading, by whichever caller of `open_document`."""
    names: list[str] = []
    real = extract._open_pdf

    def counting(name: str, data: bytes, setting: ocr.Ocr):  # noqa: ANN202
        names.append(name)
        return real(name, data, setting)

    monkeypatch.setattr(extract, "_open_pdf", counting)
    return names


def test_a_long_attached_file_is_read_once_and_indexed_from_those_pages(
    docs: rag.DocContext, opened: list[str]
) -> None:
    manual = samples.pdf_of_pages(list(range(14, 26)))  # 12 pages, 6,724 tokens
    (file,) = with_documents.read_files(
        [("R-intro part.pdf", manual)], limit_bytes=LIMIT, docs=docs, ocr=True
    )
    assert file.kind == "document" and opened == ["R-intro part.pdf"]
    (doc,) = docs.library.list()
    assert doc.id == file.document_id and doc.status == "ready"
    assert doc.report["pages"] == 12 and file.meta["tokens"] == doc.report["tokens"] > 4_000


def test_ingest_reads_the_file_itself_when_given_no_pages(
    docs: rag.DocContext, opened: list[str]
) -> None:
    ingestor = ingest.Ingestor(docs.library, None, limit_bytes=LIMIT)
    report = ingestor.ingest("R-intro part.pdf", samples.pdf_of_pages([14, 15]))
    assert report.status == "indexed" and report.pages == 2 and opened == ["R-intro part.pdf"]


def test_the_importers_call_reads_as_its_ingestor_is_set(
    docs: rag.DocContext, recognised: list[bytes]
) -> None:
    """`read_file` without `ocr` (the history importer's call) follows the ingestor's."""
    off = ingest.Ingestor(docs.library, None, limit_bytes=LIMIT, ocr=False)
    with pytest.raises(NoTextFound, match=re.escape(OCR_OFF)):
        with_documents.read_file("scan.pdf", scan_pdf(14), limit_bytes=LIMIT, ingestor=off)
    assert recognised == []
