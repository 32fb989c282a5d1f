"""Which suffixes the format readers take, what a file really is, and which reader opens it.

The content decides, as it does for PDFs: a ".docx" that is really an Excel workbook is
read as a workbook and the report says so; a ".docx" that is a PNG, a ZIP of other
files, a password-protected or an old binary Office file gets a message naming what it
is. Only CSV and HTML, which have no signature, are taken at their name once they are
known not to be binary.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lib.documents.formats import archive
from lib.errors import UnreadableDocument

if TYPE_CHECKING:
    from lib.documents.extract import Opened

FORMAT_SUFFIXES = {
    ".docx": "docx",
    ".pptx": "pptx",
    ".pptm": "pptx",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".csv": "csv",
    ".tsv": "csv",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".epub": "epub",
    ".odt": "odt",
}
WHAT = {
    "docx": "a Word document",
    "pptx": "a PowerPoint presentation",
    "xlsx": "an Excel workbook",
    "csv": "a CSV file",
    "html": "an HTML page",
    "epub": "an EPUB e-book",
    "odt": "an OpenDocument text document",
}
# What a report calls a document's pages, as its citations name them (the readers'
# labels: "slide 3", "§ Heading", "Sheet1 rows 2–41"); a PDF's, an image's and a text
# file's are pages.
PARTS = {
    "pptx": ("slide", "slides"),
    "docx": ("section", "sections"),
    "html": ("section", "sections"),
    "epub": ("section", "sections"),
    "odt": ("section", "sections"),
    "xlsx": ("block of rows", "blocks of rows"),
    "csv": ("block of rows", "blocks of rows"),
}
_ROWS = re.compile(r"(?:^| )rows? [0-9]+(?:–[0-9]+)?$")  # sheets.row_pages' labels
ZIP_KINDS = {"docx", "pptx", "xlsx", "epub", "odt"}
READERS = {  # kind → module under lib/documents/formats/ with `open_<kind>(name, data)`
    "docx": "office",
    "pptx": "office",
    "xlsx": "sheets",
    "csv": "sheets",
    "html": "web",
    "epub": "ebook",
    "odt": "opendoc",
}


def detect(
    name: str, suffix: str, data: bytes, looks_like: str | None
) -> tuple[str, list[str]] | None:
    """(kind, notes) when a format reader takes the file, None when it is left to the
    text path; raises UnreadableDocument (or EncryptedDocument) when it is refused.
    PDFs are recognised before this is called."""
    claimed = FORMAT_SUFFIXES.get(suffix)
    expected = WHAT.get(claimed or "", "a text file")
    if data.startswith(b"PK\x03\x04") or (claimed in ZIP_KINDS and data.startswith(b"PK")):
        kind, what = archive.sniff_zip(name, data, WHAT[claimed] if claimed in ZIP_KINDS else None)
        if kind is None:
            raise UnreadableDocument(f"{name} is not {expected}: it is {what}.")
        if kind == claimed or not suffix:
            return kind, []
        return kind, [f"Named {suffix} but it is {WHAT[kind]}, so it was read as one."]
    if data.startswith(archive.OLE_MAGIC):
        archive.refuse_ole(name, data)
    if claimed in ZIP_KINDS:
        looks_like = looks_like or ("plain text" if _text_like(data) else None)
        detail = f": it looks like {looks_like}" if looks_like else ""
        raise UnreadableDocument(f"{name} is not {expected}{detail}.", hint="Check the file.")
    if claimed is None:
        return None
    if looks_like and not (claimed == "html" and looks_like == "an HTML page"):
        raise UnreadableDocument(f"{name} is not {expected}: it looks like {looks_like}.")
    return claimed, []


def parts_text(kind: str, count: int, sheets: int = 0) -> str:
    """How many pages a document has, named as its citations name them: "12 pages",
    "3 slides", "1 section", "2 sheets, 14 blocks of rows" (`sheets` for a workbook)."""
    one, many = PARTS.get(kind, ("page", "pages"))
    text = f"{count:,} {one if count == 1 else many}"
    if kind == "xlsx" and sheets:
        text = f"{sheets:,} sheet{'s' * (sheets != 1)}, {text}"
    return text


def sheet_count(labels: Iterable[str | None]) -> int:
    """How many sheets a workbook's pages come from, by their labels ("Sheet1 rows 2–41")."""
    return len({_ROWS.sub("", label or "") for label in labels})


def _text_like(data: bytes) -> bool:
    """Whether the file starts as UTF-8 text (a character cut at 4 KB allowed)."""
    head = data[:4096]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
    return b"\x00" not in head


def open_format(name: str, data: bytes, kind: str) -> Opened:
    reader = importlib.import_module(f"lib.documents.formats.{READERS[kind]}")
    return getattr(reader, f"open_{kind}")(name, data)
