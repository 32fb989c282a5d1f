"""Extraction and chunking: real R manuals, generated edge-case PDFs, text encodings."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pypdf
import pytest

from lib.documents.extract import Page, clean_text, open_document
from lib.documents.ocr import Ocr
from lib.errors import EncryptedDocument, NoTextFound, UnreadableDocument
from tests import doc_samples as samples


def read(name: str, data: bytes, ocr: Ocr | None = None) -> tuple[list[Page], list[str], str]:
    opened = open_document(name, data, ocr)
    try:
        return list(opened.pages()), opened.notes, opened.extractor
    finally:
        opened.close()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{4,}", text.lower()))


def test_r_intro_is_read_page_by_page_with_pdfium_and_page_labels() -> None:
    pages, notes, extractor = read("R-intro.pdf", samples.manual())
    assert extractor == "pypdfium2" and notes == []
    assert len(pages) == 113
    assert [p.number for p in pages] == list(range(1, 114))
    page = pages[13]  # section 2.1, printed as page 8
    assert page.label == "8"
    assert "assignment operator" in page.text
    assert "\r" not in page.text and "\ufffe" not in page.text


@pytest.mark.parametrize("name", ["R-intro.pdf", "R-exts.pdf", "R-data.pdf"])
def test_pdfium_reads_the_same_text_as_pypdf(name: str) -> None:
    pages, _, _ = read(name, samples.manual(name))
    reader = pypdf.PdfReader(io.BytesIO(samples.manual(name)))
    assert len(pages) == len(reader.pages)
    for index in range(10, len(pages), max(1, len(pages) // 12)):
        ours, theirs = words(pages[index].text), words(reader.pages[index].extract_text())
        overlap = len(ours & theirs) / max(1, len(ours | theirs))
        assert overlap > 0.9, f"{name} page {index + 1}: word overlap {overlap:.2f}"


def test_hyphenated_line_breaks_are_joined() -> None:
    assert clean_text("re\ufffe\r\nspectively\r\nnext") == "respectively\nnext"
    assert clean_text("co\u00ad\nordinate") == "coordinate"


def test_pdf_with_an_empty_user_password_is_opened() -> None:
    pages, _, _ = read("locked.pdf", samples.encrypted_pdf(""))
    assert "assignment operator" in pages[0].text


def test_pdf_that_pdfium_refuses_is_read_by_pypdf() -> None:
    pages, notes, extractor = read("prefixed.pdf", samples.junk_prefixed_pdf())
    assert extractor == "pypdf"
    assert "assignment operator" in pages[0].text
    assert any("pypdf" in n for n in notes)


def test_a_pdf_named_txt_is_read_as_a_pdf_and_says_so() -> None:
    pages, notes, _ = read("notes.txt", samples.pdf_of_pages([14]))
    assert "assignment operator" in pages[0].text
    assert notes == ["Named .txt but it is a PDF, so it was read as a PDF."]


def test_scanned_pages_come_back_empty_rather_than_failing_when_ocr_is_off() -> None:
    pages, _, _ = read("mixed.pdf", samples.mixed_pdf(), Ocr(False, "OCR is off"))
    assert [bool(p.text.strip()) for p in pages] == [True, False, True]
    assert [(p.source, p.problem) for p in pages] == [
        ("text", ""),
        ("scan", "OCR is off"),
        ("text", ""),
    ]


BAD_FILES: list[tuple[str, Callable[[], bytes], type[Exception], str]] = [
    ("empty.pdf", lambda: b"", UnreadableDocument, "empty.pdf is empty (0 bytes)"),
    ("empty.txt", lambda: b"", UnreadableDocument, "empty.txt is empty (0 bytes)"),
    ("locked.pdf", lambda: samples.encrypted_pdf("s3cret"), EncryptedDocument, "password"),
    ("broken.pdf", samples.corrupt_pdf, UnreadableDocument, "damaged or truncated"),
    ("half.pdf", samples.truncated_pdf, UnreadableDocument, "damaged or truncated"),
    ("photo.pdf", samples.png_bytes, UnreadableDocument, "is not a PDF: it looks like a PNG"),
    ("page.pdf", lambda: b"<!DOCTYPE html><html>hi</html>", UnreadableDocument, "an HTML page"),
    ("notes.txt", samples.png_bytes, UnreadableDocument, "is not a text file: it looks like a PNG"),
    ("report.pages", lambda: b"PK\x03\x04rest", UnreadableDocument, "not .pages files"),
    ("blank.md", lambda: b"  \n\n \t", NoTextFound, "contains no text"),
    ("bin.txt", lambda: b"abc\x00\x00\x00def" * 50, UnreadableDocument, "not a text file"),
]


@pytest.mark.parametrize(
    ("name", "make", "error", "fragment"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_unreadable_files_get_a_clear_message(
    name: str, make: Callable[[], bytes], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        read(name, make())
    assert fragment in str(info.value)
    assert name in str(info.value)


TEXTS = "Naïve café owners said “déjà vu” — 20 € for crème brûlée.\nSecond line.\n"


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf_16"),
        ("cp1252", "cp1252"),
    ],
)
def test_text_encodings_are_detected_not_assumed(encoding: str, expected: str) -> None:
    data = (TEXTS * 20).encode(encoding)
    opened = open_document("notes.txt", data)
    (page,) = list(opened.pages())
    assert page.text == TEXTS * 20
    assert opened.encoding == expected
    assert page.number is None


def test_latin1_text_is_decoded() -> None:
    text = "Le garçon a mangé à la fenêtre. Où est la bibliothèque?\n" * 30
    opened = open_document("french.md", text.encode("latin-1"))
    assert opened.kind == "markdown"
    assert next(opened.pages()).text == text
