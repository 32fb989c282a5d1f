"""OCR of scanned PDF pages and image uploads with Debian's tesseract (lib/documents/ocr.py).

The scans are real: pages of R-intro rendered to pictures (as a scanner would make them,
no text layer), so what OCR reads can be checked against the manual's own text layer.
"""

from __future__ import annotations

import functools
import io
import os
import re
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from lib.documents import ocr
from lib.documents.extract import Page, open_document
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.documents.retrieval import retrieve
from lib.errors import ConfigError, IngestCancelled
from lib.settings import resolve_settings
from lib.store.backend import Backend
from tests import doc_samples as samples

PAGES = [14, 16]  # R-intro: the assignment operator; sequences


@functools.cache
def pictures(*numbers: int) -> tuple[Image.Image, ...]:
    doc = pdfium.PdfDocument(samples.manual())
    try:
        return tuple(doc[n - 1].render(scale=2).to_pil().convert("RGB") for n in numbers)
    finally:
        doc.close()


@functools.cache
def layer_text(number: int) -> str:
    doc = pdfium.PdfDocument(samples.manual())
    try:
        return doc[number - 1].get_textpage().get_text_range()
    finally:
        doc.close()


def scan_pdf(*numbers: int) -> bytes:
    """A PDF whose pages are only pictures of R-intro's pages, at 144 dpi."""
    images = [image.copy() for image in pictures(*numbers)]
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=144, save_all=True, append_images=list(images[1:]))
    return out.getvalue()


def image_file(fmt: str, *numbers: int) -> bytes:
    # Copies: Pillow keeps a save's encoder settings on the image (JPEG's break TIFF's).
    images = [image.copy() for image in pictures(*numbers)]
    out = io.BytesIO()
    options = {"compression": "tiff_deflate"} if fmt == "TIFF" else {}
    images[0].save(out, fmt, save_all=len(images) > 1, append_images=images[1:], **options)
    return out.getvalue()


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{4,}", text.lower()))


def read(name: str, data: bytes, setting: ocr.Ocr | None = None) -> list[Page]:
    opened = open_document(name, data, setting)
    try:
        return list(opened.pages())
    finally:
        opened.close()


def tesseracts() -> list[int]:
    """This process's tesseract children still alive."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if comm == "tesseract" and int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def library(backend: Backend) -> DocumentLibrary:
    return DocumentLibrary(backend, "alice")


def test_tesseract_is_installed_here() -> None:
    assert ocr.installed(), "apt-get install tesseract-ocr (make test does, .ci/system-packages)"


def test_a_scanned_pdf_is_read_by_ocr_page_by_page_like_its_text_layer() -> None:
    pages = read("scan.pdf", scan_pdf(*PAGES))
    assert [(p.number, p.source) for p in pages] == [(1, "ocr"), (2, "ocr")]
    for page, number in zip(pages, PAGES, strict=True):
        expected = words(layer_text(number))
        assert len(words(page.text) & expected) >= 0.9 * len(expected), page.text[:300]
    assert "assignment" in pages[0].text and "seq(" in pages[1].text


def test_the_report_names_the_ocr_pages_and_a_citation_points_at_them(
    library: DocumentLibrary,
) -> None:
    messages: list[str] = []
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest(
        "scan.pdf", scan_pdf(*PAGES), lambda _s, _d, _t, message, _f: messages.append(message)
    )
    assert report.status == "indexed", report.message
    assert report.ocr_pages == [1, 2] and report.empty_pages == []
    assert report.message.startswith("scan.pdf: 2 pages, ") and "2 read by OCR" in report.message
    assert "Read by OCR: pages 1–2." in report.notes
    assert "scan.pdf: reading page 1 of 2 (OCR)" in messages
    stored = library.get(report.document_id)
    assert stored.report["ocr_pages"] == [1, 2]
    found = retrieve(library, "assignment operator", [stored.id], k=1)
    assert (found.sources[0].chunk.file, found.sources[0].chunk.page) == ("scan.pdf", 1)
    found = retrieve(library, "sequence seq from to by", [stored.id], k=1)
    assert found.sources[0].chunk.page == 2


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "page.png"), ("JPEG", "page.jpg")])
def test_an_image_upload_is_read_by_ocr(library: DocumentLibrary, fmt: str, name: str) -> None:
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest(name, image_file(fmt, 14))
    assert report.status == "indexed", report.message
    assert (report.pages, report.ocr_pages) == (1, [1])
    (page,) = library.pages([report.document_id])
    assert (page.number, page.label) == (None, None)  # cited by the file's name alone
    assert "assignment" in page.text


def test_a_multi_page_tiff_is_one_page_a_frame_labelled_for_citations() -> None:
    pages = read("scans.tiff", image_file("TIFF", *PAGES))
    assert [(p.number, p.label, p.source) for p in pages] == [
        (None, "page 1", "ocr"),
        (None, "page 2", "ocr"),
    ]
    assert "assignment" in pages[0].text and "seq(" in pages[1].text


def test_blank_pages_are_blank_not_a_scan_and_cost_no_ocr(library: DocumentLibrary) -> None:
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest(
        "blank.pdf", samples.blank_pdf(3000)
    )
    assert report.status == "failed"
    assert report.message == (
        "blank.pdf has 3,000 pages, all blank, so it was not indexed. Check the file."
    )
    white = Image.new("RGB", (1224, 1584), "white")
    pages = read("white.png", _png(white))
    assert [(p.source, p.text) for p in pages] == [("blank", "")]


def test_blank_pages_among_text_are_named_in_the_report(library: DocumentLibrary) -> None:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(samples.pdf_of_pages([14])))
    writer.add_blank_page(612, 792)
    writer.add_blank_page(612, 792)
    out = io.BytesIO()
    writer.write(out)
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest("gaps.pdf", out.getvalue())
    assert report.status == "indexed" and report.empty_pages == [2, 3]
    assert "Blank: pages 2–3." in report.notes and report.ocr_pages == []


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("scan.pdf", lambda: scan_pdf(14), "scan.pdf has 1 page but no text that can be "
         "extracted: page 1 is a scan (pictures of text), and OCR is turned off on this "
         "server (PARLEY_OCR), so it was not indexed. Run OCR on it"),
        ("page.png", lambda: image_file("PNG", 14), "page.png is an image, and OCR is turned "
         "off on this server (PARLEY_OCR), so it was not indexed."),
    ],
)  # fmt: skip
def test_with_ocr_off_scans_and_images_are_refused_saying_so(
    library: DocumentLibrary,
    name: str,
    data,
    message: str,  # noqa: ANN001
) -> None:
    report = Ingestor(library, None, limit_bytes=1 << 30, ocr=False).ingest(name, data())
    assert report.status == "failed" and report.message.startswith(message), report.message
    assert library.list() == []


def test_without_tesseract_ocr_is_off_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    ocr.installed.cache_clear()
    try:
        setting = ocr.configured(True)
    finally:
        monkeypatch.undo()
        ocr.installed.cache_clear()
    assert not setting.on and "install Debian's tesseract-ocr" in setting.why_off
    assert ocr.configured(True).on


@pytest.mark.parametrize(
    ("secrets", "environ", "expected"),
    [({}, {}, True), ({}, {"PARLEY_OCR": "off"}, False), ({"PARLEY_OCR": False}, {}, False),
     ({"PARLEY_OCR": "true"}, {"PARLEY_OCR": "0"}, True)],
)  # fmt: skip
def test_parley_ocr_is_an_operator_setting(secrets: dict, environ: dict, expected: bool) -> None:
    assert resolve_settings(None, secrets, environ).ocr is expected


def test_a_malformed_parley_ocr_says_how_to_fix_it() -> None:
    with pytest.raises(ConfigError, match="PARLEY_OCR must be true or false, not 'maybe'"):
        resolve_settings(None, {}, {"PARLEY_OCR": "maybe"})


def test_cancel_during_ocr_keeps_nothing_and_leaves_no_process(library: DocumentLibrary) -> None:
    seen: list[str] = []

    def cancelled() -> bool:
        return bool(seen)  # as soon as the first page is read

    with pytest.raises(IngestCancelled):
        Ingestor(library, None, limit_bytes=1 << 30).ingest(
            "long-scan.pdf",
            scan_pdf(14, 16, 17, 30, 31, 36),
            lambda _s, _d, _t, message, _f: seen.append(message),
            cancelled,
        )
    assert seen == ["long-scan.pdf: reading page 1 of 6 (OCR)"]
    assert library.list() == [] and tesseracts() == []


def test_a_damaged_or_huge_image_is_refused_before_decoding(library: DocumentLibrary) -> None:
    cut = image_file("PNG", 14)[:300]
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest("cut.png", cut)
    assert report.status == "failed" and "cut.png" in report.message
    huge = _png(Image.new("L", (1, 1)))
    # Rewrite the header's size to 20,000 x 20,000 (400 million pixels, 400 MB as grey).
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)  # over Pillow's limit too
    chunk = b"IHDR" + ihdr
    huge = (
        huge[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + huge[33:]
    )
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest("huge.png", huge)
    assert report.status == "failed" and library.list() == []
    assert report.message == "huge.png has more than the 80 million pixels Parley reads."


def test_a_file_named_png_that_is_not_an_image_says_what_it_is() -> None:
    with pytest.raises(Exception, match="notes.png is not a PNG, JPEG or TIFF image"):
        read("notes.png", b"just some text")


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_documents_page_takes_a_scan_and_says_which_pages_ocr_read(
    app,
    backend: Backend,  # noqa: ANN001 - the AppTest factory
) -> None:
    at = app("app_pages/documents.py", PARLEY_PROVIDER="openai")
    at.run()
    assert "png" in at.file_uploader[0].proto.type or ".png" in at.file_uploader[0].proto.type
    at.file_uploader[0].upload("page.png", image_file("PNG", 14), "image/png")
    at.run()
    at.button(key="parley.w.index").click().run()
    assert not at.exception, at.exception
    (report,) = [s.value for s in at.success]
    assert report.startswith("page.png: 1 page, ") and report.endswith(", 1 read by OCR.")
    assert any("Read by OCR: page 1." in c.value for c in at.caption)
    assert any("1 read by OCR" in c.value for c in at.caption)  # the library's line
