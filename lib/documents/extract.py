"""Turning an uploaded file's bytes into pages of text, or a clear reason why not.

PDFs are read with pypdfium2 (PDFium, Apache/BSD), which `bench/ingest.py` measures at
roughly 15-20x the pages per second of pypdf on the R manuals with the same text; pypdf
is the fallback for files PDFium refuses (it repairs some damaged cross-reference tables
PDFium will not). Pages come out one at a time so the caller can show progress per page.

Text and Markdown files are decoded as UTF-8 when they are valid UTF-8, and otherwise
with the encoding charset-normalizer detects, so a Latin-1 or UTF-16 file reads correctly.

The file's type comes from its content, not only its name: a "report.pdf" that is really
an HTML page, or a "notes.txt" that is really a PNG, gets a message saying so.
"""

from __future__ import annotations

import io
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import PurePath

import charset_normalizer
import pypdf
import pypdfium2 as pdfium

from lib.documents import ocr as ocr_engine
from lib.documents import pdfguard
from lib.documents.formats import kinds as formats
from lib.errors import EncryptedDocument, NoTextFound, UnreadableDocument

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown"}
IMAGE_SUFFIXES = {s: "image" for s in (".png", ".jpg", ".jpeg", ".tif", ".tiff")}  # OCR'd
SUFFIXES = {".pdf": "pdf", **TEXT_SUFFIXES, **formats.FORMAT_SUFFIXES, **IMAGE_SUFFIXES}
_IMAGES = ("a PNG image", "a JPEG image", "a TIFF image")
# Some generators put junk (mail or HTTP headers) before "%PDF-". PDFium accepts 1 KB of
# it and pypdf more, so a header found within 4 KB means "a PDF", read by pypdf if need be.
PDF_HEADER_WINDOW = 4096
_FPDF_ERR_PASSWORD = 4
_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive (Word and other Office files are ZIP archives)"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{\\rtf", "an RTF document"),
    (b"\x7fELF", "a program"),
]
_HTML = re.compile(rb"^\s*(<!doctype html|<html)", re.IGNORECASE)


@dataclass(frozen=True)
class Page:
    number: int | None  # 1-based page of a PDF; None for a text file
    label: str | None  # the printed page label, when the PDF has one that differs
    text: str
    # How the text was had: "text" (a text layer), "ocr", or why there is none:
    # "blank", "scan" (a picture of a page, OCR off), "error" (see `problem`).
    source: str = "text"
    problem: str = ""

    @property
    def has_text(self) -> bool:
        """Whether any of the text is not whitespace: `text.strip()` would copy it all
        (95 MB for a 48 MB text file with curly quotes in it, which Python holds in two
        bytes a character)."""
        return bool(self.text) and not self.text.isspace()


@dataclass
class Opened:
    """An opened document whose pages are read lazily, one at a time."""

    kind: str  # "pdf" | "text" | "markdown"
    page_count: int
    extractor: str  # "pypdfium2" | "pypdf" | "text"
    read_pages: Callable[[], Iterator[Page]]
    close: Callable[[], None] = lambda: None
    encoding: str | None = None
    notes: list[str] = field(default_factory=list)

    def pages(self) -> Iterator[Page]:
        return self.read_pages()


def describe_content(data: bytes) -> str | None:
    """What the bytes look like, for a message about a mislabelled file."""
    head = data[:16]
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if b"%PDF-" in data[:PDF_HEADER_WINDOW]:
        return "a PDF"
    if _HTML.match(data[:512]):
        return "an HTML page"
    return None


def detect_kind(name: str, data: bytes) -> tuple[str, list[str]]:
    """The kind to read the file as, and notes; raises UnreadableDocument when refused."""
    if not data:
        raise UnreadableDocument(f"{name} is empty (0 bytes).")
    suffix = PurePath(name).suffix.lower()
    looks_like = describe_content(data)
    if suffix and suffix not in SUFFIXES:
        raise UnreadableDocument(
            f"{name}: Parley reads PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB, "
            f"OpenDocument text, TXT, Markdown, PNG, JPEG and TIFF files, not {suffix} files."
        )
    if suffix in IMAGE_SUFFIXES or (not suffix and looks_like in _IMAGES):
        if looks_like in _IMAGES:
            return "image", []
        if looks_like != "a PDF":
            detail = f": it looks like {looks_like}" if looks_like else ""
            raise UnreadableDocument(f"{name} is not a PNG, JPEG or TIFF image{detail}.")
    if looks_like == "a PDF":
        if suffix and suffix != ".pdf":
            return "pdf", [f"Named {suffix} but it is a PDF, so it was read as a PDF."]
        return "pdf", []
    if suffix == ".pdf":
        detail = f": it looks like {looks_like}" if looks_like else ""
        raise UnreadableDocument(f"{name} is not a PDF{detail}.", hint="Check the file.")
    found = formats.detect(name, suffix, data, looks_like)  # ZIP, OLE, CSV, HTML
    if found:
        return found
    if looks_like and looks_like != "an HTML page":
        raise UnreadableDocument(f"{name} is not a text file: it looks like {looks_like}.")
    return TEXT_SUFFIXES.get(suffix, "text"), []


def open_document(name: str, data: bytes, ocr: ocr_engine.Ocr | None = None) -> Opened:
    """Open `data` (the bytes of the file called `name`) for page-by-page reading.

    `ocr` says whether pages that are pictures are OCR'd (by default: where installed)."""
    kind, notes = detect_kind(name, data)
    ocr = ocr or ocr_engine.configured(True)
    if kind in formats.READERS:
        opened = formats.open_format(name, data, kind)
    elif kind == "pdf":
        opened = _open_pdf(name, data, ocr)
    elif kind == "image":
        opened = _open_image(name, data, ocr)
    else:
        opened = _open_text(name, data, kind)
    opened.notes[:0] = notes
    return opened


# PDFs


def _open_pdf(name: str, data: bytes, ocr: ocr_engine.Ocr) -> Opened:
    try:
        pdfguard.check_streams(data)
    except pdfguard.StreamTooLarge as exc:
        raise UnreadableDocument(
            f"{name} was refused: {exc}, which is how a decompression bomb is built.",
            hint="If it is a real document, print it to a new PDF and upload that.",
        ) from exc
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _FPDF_ERR_PASSWORD:
            raise EncryptedDocument(f"{name} is protected by a password.") from exc
        log.info("PDFium could not open %s (%s); trying pypdf", name, exc)
        return _open_with_pypdf(name, data)
    pool = ocr_engine.Pool(ocr.workers) if ocr.on else None

    def close() -> None:
        if pool is not None:
            pool.close()  # first: kills OCR still running (Cancel)
        doc.close()

    return Opened(
        kind="pdf",
        page_count=len(doc),
        extractor="pypdfium2",
        read_pages=lambda: _pdfium_pages(doc, pool, ocr.why_off),
        close=close,
    )


def _pdfium_pages(
    doc: pdfium.PdfDocument, pool: ocr_engine.Pool | None, why_off: str
) -> Iterator[Page]:
    """Pages in order; pages to OCR go to `pool` while the next ones are read, up to
    two per worker ahead, so every core is busy and memory stays a few pages."""
    ahead: deque[Page | tuple[Page, Future[str]]] = deque()
    depth = 2 * pool.workers if pool else 0
    for index in range(len(doc)):
        ahead.append(_pdfium_page(doc, index, pool, why_off))
        while ahead and (len(ahead) > depth or _ready(ahead[0])):
            yield _finished(ahead.popleft())
    while ahead:
        yield _finished(ahead.popleft())


def _pdfium_page(
    doc: pdfium.PdfDocument, index: int, pool: ocr_engine.Pool | None, why_off: str
) -> Page | tuple[Page, Future[str]]:
    page_label = _label(doc.get_page_label(index), index + 1)
    try:
        page = doc[index]
    except pdfium.PdfiumError as exc:
        log.warning("page %d could not be read: %s", index + 1, exc)
        return Page(index + 1, page_label, "", "error", f"PDFium could not load it ({exc})")
    try:
        textpage = page.get_textpage()
        text = clean_text(textpage.get_text_range())
        textpage.close()
        if text.strip():
            return Page(index + 1, page_label, text)
        if not any(True for _ in page.get_objects(max_depth=1)):
            return Page(index + 1, page_label, "", "blank")
        image = page.render(scale=ocr_engine.SCALE, grayscale=True).to_pil()
    except pdfium.PdfiumError as exc:
        log.warning("page %d could not be read: %s", index + 1, exc)
        return Page(index + 1, page_label, "", "error", f"PDFium could not read it ({exc})")
    finally:
        page.close()
    if ocr_engine.looks_blank(image):
        return Page(index + 1, page_label, "", "blank")
    if pool is None:
        return Page(index + 1, page_label, "", "scan", why_off)
    return Page(index + 1, page_label, "", "ocr"), pool.submit(ocr_engine.png(image))


def _ready(item: Page | tuple[Page, Future[str]]) -> bool:
    return isinstance(item, Page) or item[1].done()


def _finished(item: Page | tuple[Page, Future[str]]) -> Page:
    if isinstance(item, Page):
        return item
    page, future = item
    try:
        text = clean_text(future.result())
    except ocr_engine.OcrFailed as exc:
        return replace(page, source="error", problem=f"OCR failed: {exc}")
    if not text.strip():
        return replace(page, source="blank", problem="OCR found no text")
    return replace(page, text=text)


def _open_image(name: str, data: bytes, ocr: ocr_engine.Ocr) -> Opened:
    """A PNG, JPEG or TIFF: one page a frame, OCR'd (a TIFF's pages side by side)."""
    if not ocr.on:
        raise NoTextFound(
            f"{name} is an image, and {ocr.why_off}, so it was not indexed.",
            hint="Upload a PDF with a text layer instead, or ask the operator to turn OCR on.",
        )
    try:
        kind, frames, images = ocr_engine.image_frames(name, data)
    except ValueError as exc:
        raise UnreadableDocument(str(exc)) from exc
    pool = ocr_engine.Pool(ocr.workers)

    def pages() -> Iterator[Page]:
        ahead: deque[Page | tuple[Page, Future[str]]] = deque()
        try:
            for index, image in enumerate(images):
                label = f"page {index + 1}" if frames > 1 else None
                if ocr_engine.looks_blank(image):
                    ahead.append(Page(None, label, "", "blank"))
                else:
                    ahead.append((Page(None, label, "", "ocr"), pool.submit(ocr_engine.png(image))))
                while ahead and (len(ahead) > 2 * pool.workers or _ready(ahead[0])):
                    yield _finished(ahead.popleft())
        except ValueError as exc:
            raise UnreadableDocument(str(exc)) from exc
        while ahead:
            yield _finished(ahead.popleft())

    return Opened(
        kind=kind, page_count=frames, extractor="tesseract", read_pages=pages, close=pool.close
    )


def _open_with_pypdf(name: str, data: bytes) -> Opened:
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedDocument(f"{name} is protected by a password.")
        count = len(reader.pages)
    except EncryptedDocument:
        raise
    except Exception as exc:  # pypdf raises many unrelated types on broken files
        raise UnreadableDocument(
            f"{name} is damaged or truncated: neither PDFium nor pypdf could read it.",
            hint="Download or export it again and re-upload.",
        ) from exc
    if count == 0:
        raise UnreadableDocument(f"{name} is damaged: it has no pages.")
    return Opened(
        kind="pdf",
        page_count=count,
        extractor="pypdf",
        read_pages=lambda: _pypdf_pages(reader),
        notes=["PDFium could not read this file; it was repaired and read with pypdf."],
    )


def _pypdf_pages(reader: pypdf.PdfReader) -> Iterator[Page]:
    try:
        labels = reader.page_labels
    except Exception:  # broken label trees are common and harmless: fall back to numbers
        labels = []
    for index, page in enumerate(reader.pages):
        label = _label(labels[index] if index < len(labels) else None, index + 1)
        try:
            text = clean_text(page.extract_text() or "")
        except Exception as exc:  # one bad page must not lose the rest of the document
            log.warning("page %d could not be read: %s", index + 1, exc)
            yield Page(index + 1, label, "", "error", f"pypdf could not read it ({exc})")
            continue
        # pypdf cannot render: a page without text is told blank only when it draws nothing.
        if text.strip():
            yield Page(index + 1, label, text)
        elif _draws_nothing(page):
            yield Page(index + 1, label, "", "blank")
        else:
            yield Page(index + 1, label, "", "scan", _NO_RENDER)


_NO_RENDER = "PDFium could not open the file, and pypdf, which did, cannot render pages for OCR"


def _draws_nothing(page: pypdf.PageObject) -> bool:
    try:
        return not page.get_contents() or not page.get_contents().get_data().strip()
    except Exception:  # an unreadable content stream draws nothing pypdf can see
        return False


def _label(label: str | None, number: int) -> str | None:
    return label if label and label != str(number) else None


_SOFT_HYPHEN_BREAK = re.compile("[\ufffe\u00ad]\r?\n")


def clean_text(text: str) -> str:
    """Normalise extracted text: join hyphenated line breaks, unify newlines, drop NULs."""
    text = _SOFT_HYPHEN_BREAK.sub("", text)
    text = text.replace("\ufffe", "").replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "")


# Text files


def decode_text(name: str, data: bytes) -> tuple[str, str]:
    """The text and the encoding it was read with."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        raise UnreadableDocument(f"{name} is not a text file, or its encoding is unknown.")
    best = matches[0]
    # Short Western European texts fit several single-byte code pages equally well, and
    # the detector may pick a Baltic one, turning "ï" into "ļ". Windows-1252 is by far the
    # most common of them, so it wins a near tie.
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos + 0.1:
            best = match
            break
    return str(best), best.encoding


def _open_text(name: str, data: bytes, kind: str) -> Opened:
    text, encoding = decode_text(name, data)
    if "\x00" in text:
        raise UnreadableDocument(f"{name} is not a text file: it contains binary data.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text or text.isspace():  # not strip(): a copy of the whole text
        raise NoTextFound(f"{name} contains no text.", hint="Check the file.")
    return Opened(
        kind=kind,
        page_count=1,
        extractor="text",
        read_pages=lambda: iter([Page(None, None, text)]),
        encoding=encoding,
    )


def render_pdf_page(data: bytes, number: int, width: int = 900) -> bytes:
    """PNG of page `number` (1-based) of a PDF, `width` pixels wide, for "show the page"."""
    doc = pdfium.PdfDocument(data)
    try:
        page = doc[number - 1]
        scale = width / page.get_width()
        image = page.render(scale=scale).to_pil()
        page.close()
    finally:
        doc.close()
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
