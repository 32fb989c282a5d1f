"""The format readers (lib/documents/formats/): DOCX, PPTX, XLSX, CSV, HTML, EPUB and ODT
come out as pages labelled as a citation names them; damaged, encrypted, empty and
mislabelled files get the kind of message PDFs get; zip bombs and lying entries are
refused before anything is inflated; nothing a document names is fetched; and a file of
each format goes through the real upload pipeline, on both backends, to a cited passage.

The sample files are made in tests/format_samples.py with the libraries that write
these formats (python-docx, python-pptx, XlsxWriter, msoffcrypto-tool) or by hand.
"""

from __future__ import annotations

import http.server
import io
import threading
import tracemalloc
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from streamlit.testing.v1 import AppTest

from lib.documents import rag
from lib.documents.embeddings import Embedder
from lib.documents.extract import Page, open_document
from lib.documents.formats import archive, sheets, web
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.documents.retrieval import retrieve
from lib.errors import (
    EncryptedDocument,
    FileTooLarge,
    NoTextFound,
    ParleyError,
    UnreadableDocument,
)
from lib.store.backend import Backend
from tests import doc_samples
from tests import format_samples as samples
from tests.fake_openai import FakeOpenAI

MODEL = "text-embedding-3-small"
Make = Callable[[], bytes]


def read(name: str, data: bytes) -> tuple[list[Page], list[str], str, str]:
    """(pages, notes, kind, extractor) as the upload pipeline reads them."""
    opened = open_document(name, data)
    try:
        return list(opened.pages()), opened.notes, opened.kind, opened.extractor
    finally:
        opened.close()


def text_of(pages: list[Page]) -> str:
    return "\n".join(p.text for p in pages)


# Each format, with its locators

EMPTY = ""  # as a page's only fragment: the page has no text
SIGHTINGS_ROW_1 = "Bird: bird 1; Site: Mill pond; Count: 1; Seen on: 2024-03-02; Ringed: FALSE"
READS: list[tuple[str, Make, str, str, list[tuple[str, list[str]]]]] = [
    ("birds.docx", samples.docx_file, "docx", "python-docx", [
        ("before the first heading", ["A field guide to river birds."]),
        ("§ Herons", ["Herons\n" + samples.HERON]),
        ("§ Herons › Feeding", ["Feeding\nHerons stand still", "Bird | Wingspan\n"
                                "Bird: Grey heron; Wingspan: 185 cm\n"
                                "Bird: Little egret; Wingspan: 95 cm"]),
        ("§ Kingfishers", ["The kingfisher dives from a perch above the stream."]),
    ]),
    ("styled.docx", samples.docx_styled, "docx", "python-docx", [
        ("§ River birds", ["River birds\nAn introduction."]),
        ("§ Herons", ["Herons\n" + samples.HERON]),  # based on Heading 1: a sibling of Title
        ("§ Herons › Feeding", ["Feeding\nHerons stand still in shallow water."]),
    ]),
    ("survey.pptx", samples.pptx_file, "pptx", "python-pptx", [
        ("slide 1", ["Spring survey\nCount the nests\nNote the weather\n"
                     "Notes: Start at the bridge."]),
        ("slide 2", ["Results\nSite | Nests\nSite: Mill pond; Nests: 14\nSite: Weir; Nests: 9"]),
        ("slide 3", [EMPTY]),  # a shape without text: an empty page, counted as one
        # a group's text box, then the box below it: top to bottom
        ("slide 4", ["Kingfishers were seen at the weir.\nNext survey in autumn."]),
    ]),
    ("sightings.xlsx", samples.xlsx_file, "xlsx", "calamine", [
        ("Sightings rows 1–16", ["Bird | Site | Count | Seen on | Ringed\n" + SIGHTINGS_ROW_1,
                                 "Bird: bird 3; Site: Mill pond; Count: 3; Seen on: 2024-03-04; "
                                 "Ringed: TRUE"]),
        ("Sightings rows 17–32", ["Bird: bird 16; Site: Weir; Count: 2; Seen on: 2024-03-17"]),
        ("Sightings rows 33–48", []),
        ("Sightings rows 49–64", []),
        ("Sightings rows 65–80", []),
        ("Sightings rows 81–96", []),
        ("Sightings rows 97–112", []),
        # the last row has no date and no flag: only its filled cells, each named
        ("Sightings rows 113–122", ["Bird: Bittern; Site: Reed bed; Count: 1"]),
        ("Notes rows 3–4", ["Observer\nObserver: Ada Lovelace"]),  # data starting at B3
    ]),
    ("sightings.csv", lambda: samples.CSV, "csv", "csv", [
        ("rows 1–4", ["Bird | Site | Count | Notes\n"
                      "Bird: Grey heron; Site: Mill pond; Count: 14; "
                      "Notes: nests high; by the oak\n"
                      "Bird: Kingfisher; Site: Weir; Count: 2; Notes: seen at dawn, and again "
                      "at dusk\nBird: Bittern; Site: Reed bed; Count: 1; Notes: heard from the "
                      "café"]),
    ]),
    ("birds.html", samples.html_page, "html", "lxml", [
        ("§ River birds", ["River birds\nA short guide, café edition."]),
        ("§ River birds › Herons", ["Herons\n" + samples.HERON]),
        ("§ Herons › Feeding", ["Herons stand still in shallow water.\n"
                                "Bird | Wingspan\nBird: Grey heron; Wingspan: 185 cm"]),
        ("§ River birds › Kingfishers", ["The kingfisher dives from a perch."]),
    ]),
    ("birds.epub", samples.epub_file, "epub", "lxml", [
        # text before a chapter's first heading: the chapter's title in the book's contents
        ("§ Prologue at the river", ["Morning mist lay on the water."]),
        ("§ Herons", ["Herons\n" + samples.HERON]),
        ("§ Kingfishers", ["The kingfisher dives from a perch above the stream."]),
    ]),
    ("river.odt", samples.odt_file, "odt", "lxml", [
        ("before the first heading", ["Notes from the river."]),
        ("§ Herons", ["Herons\n" + samples.HERON + "\nSeen at dawn.\nTall trees"]),
        ("§ Herons › Numbers", ["Numbers\nSite | Nests\nSite: Weir; Nests: 9"]),
    ]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "make", "kind", "extractor", "expected"), READS, ids=[r[0] for r in READS]
)
def test_each_format_is_read_with_the_locator_a_citation_names(
    name: str, make: Make, kind: str, extractor: str, expected: list[tuple[str, list[str]]]
) -> None:
    pages, notes, got_kind, got_extractor = read(name, make())
    assert (got_kind, got_extractor, notes) == (kind, extractor, [])
    assert [p.label for p in pages] == [label for label, _ in expected]
    assert all(p.number is None for p in pages)  # never shown as a PDF page
    for page, (label, fragments) in zip(pages, expected, strict=True):
        for fragment in fragments:
            assert fragment in page.text, f"{label}: {fragment!r} not in {page.text!r}"
        if fragments == [EMPTY]:
            assert page.text.strip() == "", f"{label}: {page.text!r}"


def test_what_a_reader_leaves_out() -> None:
    """Generated contents, deleted text, comments and page chrome are not indexed."""
    left_out = {
        "river.odt": (samples.odt_file, ["Herons ....... 1", "Deleted words", "A comment"]),
        "birds.epub": (samples.epub_file, ["Contents"]),  # the book's own contents page
        "birds.html": (samples.html_page, [
            "tracking", "color: red", "Home", "About", "Sitemap", "Ducks", "Geese",
            "Hidden text", "Invisible text", "Copyright footer", "heron.jpg",
        ]),
    }  # fmt: skip
    for name, (make, absent) in left_out.items():
        text = text_of(read(name, make())[0])
        assert [a for a in absent if a in text] == [], name


def test_a_workbook_keeps_dates_counts_and_flags_as_typed() -> None:
    pages, *_ = read("sightings.xlsx", samples.xlsx_file())
    first = pages[0].text.splitlines()
    assert first[1] == SIGHTINGS_ROW_1  # 1, not 1.0; a date, not 45353.0
    # every row of every block names its columns, not only the block after the header
    later = pages[3].text.splitlines()
    assert later and all(line.startswith("Bird: bird ") for line in later)


HTML_CASES: list[tuple[str, str, list[str], list[str]]] = [
    (
        "a menu without semantic markup is dropped",
        "<body><div><a href=/1>Ducks</a> · <a href=/2>Geese</a> · <a href=/3>Swans</a></div>"
        "<p>The heron <a href=/h>nests</a> by the river in tall trees.</p></body>",
        ["The heron nests by the river in tall trees."],
        ["Ducks", "Swans"],
    ),
    (
        "a page of nothing but links keeps them",
        "<ul><li><a href=/1>Ducks</a></li><li><a href=/2>Geese</a></li>"
        "<li><a href=/3>Swans</a></li></ul>",
        ["Ducks", "Geese", "Swans"],
        [],
    ),
    (
        "an article's own footer stays, the page's goes",
        "<body><article><h1>Herons</h1><p>Grey.</p><footer>Written by Ada</footer></article>"
        "<footer>Site footer</footer></body>",
        ["Herons\nGrey.\nWritten by Ada"],
        ["Site footer"],
    ),
    (
        "navigation by role and hidden parts are dropped",
        "<main><div role=navigation>Back to top</div><p aria-hidden=true>Decoration</p>"
        "<p>Herons wade.</p><noscript>Enable scripts</noscript></main>",
        ["Herons wade."],
        ["Back to top", "Decoration", "Enable scripts"],
    ),
    (
        "a table laying out the page is read as text, with its headings",
        "<table><tr><td><h1>River birds</h1><p>An old site.</p></td><td><h2>Herons</h2>"
        "<p>Grey herons nest high.</p></td></tr></table><table><tr><th>Bird</th>"
        "<th>Nests</th></tr><tr><td>Heron<br>(grey)</td><td>14</td></tr></table>",
        [
            "River birds\nAn old site.",
            "Herons\nGrey herons nest high.\nBird | Nests\nBird: Heron (grey); Nests: 14",
        ],
        ["birdsAn"],
    ),
    (
        "code keeps its lines and indentation",
        "<h2>Example</h2><pre>if heron:\n    wade()\n</pre>",
        ["if heron:\n    wade()"],
        [],
    ),
]


@pytest.mark.parametrize(
    ("case", "html", "kept", "dropped"), HTML_CASES, ids=[c[0] for c in HTML_CASES]
)
def test_html_keeps_the_main_text(
    case: str, html: str, kept: list[str], dropped: list[str]
) -> None:
    text = text_of(read("page.html", html.encode())[0])
    assert [k for k in kept if k not in text] == [], text
    assert [d for d in dropped if d in text] == [], text


CSV_CASES: list[tuple[str, bytes, str, list[str]]] = [
    ("tabs.tsv", b"Bird\tCount\nHeron\t14\n", "rows 1–2", ["Bird: Heron; Count: 14"]),
    ("bars.csv", b"Bird|Count\nHeron|14\nEgret|3\n", "rows 1–3", ["Bird: Egret; Count: 3"]),
    # a first row with a number is data, not headers: cells are kept without names
    ("plain.csv", b"Heron,14\nEgret,3\n", "rows 1–2", ["Heron; 14\nEgret; 3"]),
    ("utf16.csv", "Vogel,Ort\nReiher,Mühle\n".encode("utf-16"), "rows 1–2",
     ["Vogel: Reiher; Ort: Mühle"]),
    # blank lines are skipped, but rows keep the numbers a spreadsheet shows
    ("gaps.csv", b"\n\nBird,Site\n\nHeron,Weir\n", "rows 3–5", ["Bird: Heron; Site: Weir"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "label", "fragments"), CSV_CASES, ids=[c[0] for c in CSV_CASES]
)
def test_csv_dialects_and_encodings(
    name: str, data: bytes, label: str, fragments: list[str]
) -> None:
    (page,) = read(name, data)[0]
    assert page.label == label
    assert [f for f in fragments if f not in page.text] == [], page.text


def test_an_html_page_of_too_many_tags_is_refused_before_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(web.lxml_html, "document_fromstring", parse)
    cells = "<p><b>a</b> <i>b</i></p>\n" * 170_000  # 1,020,000 tags in 4 MB
    data = f"<!DOCTYPE html><html><body><main>{cells}</main></body></html>".encode()
    with pytest.raises(FileTooLarge) as refused:
        open_document("dense.html", data)
    assert str(refused.value) == (
        "dense.html has about 1,020,007 tags, more than the 1,000,000 Parley reads in one "
        "HTML page (each costs about 165 bytes of memory while the page is read). Save it as "
        "PDF or plain text from the browser, or split it, and upload that."
    )


@pytest.mark.parametrize("name", ["big.html", "big.odt", "big.epub"])
def test_a_text_over_libxml2s_10_mb_node_limit_is_read_whole(name: str) -> None:
    words = "heron " * 2_000_000  # 12 MB in one text node
    data = {
        "big.html": lambda: f"<h1>Big</h1><pre>{words}</pre>".encode(),
        "big.odt": lambda: samples.odt_file(body=f"<text:p>{words}</text:p>"),
        "big.epub": lambda: samples.rewritten(
            samples.epub_file(), "OEBPS/text/chapter2.xhtml",
            lambda x: x.replace(b"</body>", f"<p>{words}</p></body>".encode()),
        ),
    }[name]()  # fmt: skip
    pages, *_ = read(name, data)
    assert text_of(pages).count("heron") >= 2_000_000


def test_a_long_sheet_is_cut_into_blocks_small_enough_for_one_chunk() -> None:
    rows = "".join(f"item {i},{i * 3},note number {i}\n" for i in range(1, 1001))
    pages, *_ = read("stock.csv", f"Item,Stock,Note\n{rows}".encode())
    assert pages[0].label == "rows 1–26" and pages[-1].label.endswith("–1001")
    assert all(len(p.text) <= 1300 for p in pages)
    numbers = [int(n) for p in pages for n in p.label.removeprefix("rows ").split("–")]
    assert numbers == sorted(numbers)  # contiguous, in order, none twice


# Files that cannot be read


ENCRYPTED = "is protected by a password"
DAMAGED = "is damaged"
BAD_FILES: list[tuple[str, Make, type[Exception], str]] = [
    *[(f"empty.{s}", lambda: b"", UnreadableDocument, "is empty (0 bytes)")
      for s in ("docx", "pptx", "xlsx", "csv", "html", "epub", "odt")],
    # damaged: cut short, or a ZIP whose parts are missing or broken
    ("half.docx", lambda: samples.docx_file()[:4000], UnreadableDocument,
     "is damaged or truncated: it is not a complete ZIP archive, as a Word document is."),
    ("half.pptx", lambda: samples.pptx_file()[:9000], UnreadableDocument,
     "is damaged or truncated"),
    ("half.xlsx", lambda: samples.xlsx_file()[:3000], UnreadableDocument,
     "as an Excel workbook is"),
    ("half.epub", lambda: samples.epub_file()[:600], UnreadableDocument,
     "is damaged or truncated"),
    ("half.odt", lambda: samples.odt_file()[:700], UnreadableDocument, "is damaged or truncated"),
    ("broken.docx", lambda: samples.rewritten(samples.docx_file(), "word/document.xml",
                                              lambda x: x[: len(x) // 2]),
     UnreadableDocument, "is damaged: it is a ZIP archive, but not a Word document"),
    ("broken.pptx", lambda: samples.rewritten(samples.pptx_file(), "ppt/presentation.xml",
                                              lambda x: b"<p:presentation"),
     UnreadableDocument, "not a PowerPoint presentation that can be read"),
    ("broken.xlsx", lambda: samples.rewritten(samples.xlsx_file(), "xl/workbook.xml",
                                              lambda x: b"not xml"),
     UnreadableDocument, "not an Excel workbook that can be read"),
    ("broken.epub", lambda: samples.rewritten(samples.epub_file(), "OEBPS/content.opf",
                                              lambda x: x[:100]),
     UnreadableDocument, "not an EPUB e-book that can be read"),
    ("broken.odt", lambda: samples.rewritten(samples.odt_file(), "content.xml",
                                             lambda x: x[:200]),
     UnreadableDocument, "not an OpenDocument text document that can be read"),
    ("quote.csv", lambda: b'Bird,Note\nHeron,"never closed\n' + b"x" * 200_000,
     UnreadableDocument, "is damaged: the row starting on line 2 cannot be read as CSV"),
    # password-protected, as Office, LibreOffice, ZIP tools and DRM do it
    ("locked.docx", lambda: samples.encrypted(samples.docx_file()), EncryptedDocument,
     ENCRYPTED),
    ("locked.pptx", lambda: samples.encrypted(samples.pptx_file()), EncryptedDocument,
     ENCRYPTED),
    ("locked.xlsx", lambda: samples.encrypted(samples.xlsx_file()), EncryptedDocument,
     ENCRYPTED),
    ("zipcrypto.docx", lambda: samples.entries_encrypted(samples.docx_file()),
     EncryptedDocument, "its ZIP entries are encrypted"),
    ("locked.odt", lambda: samples.odt_file(encrypted_parts=True), EncryptedDocument,
     ENCRYPTED),
    ("drm.epub", lambda: samples.epub_file(drm=True), EncryptedDocument, "protected by DRM"),
    # no text
    ("blank.docx", lambda: samples.docx_file(empty=True), NoTextFound, "contains no text"),
    ("blank.pptx", lambda: samples.pptx_file(empty=True), NoTextFound,
     "contains no text (its slides may be pictures)"),
    ("blank.xlsx", lambda: samples.xlsx_file(empty=True), NoTextFound, "its sheets are empty"),
    ("blank.csv", lambda: b" \n,,\n , \n", NoTextFound, "contains no text"),
    ("scripts.html", lambda: b"<html><script>track()</script><nav><a href=/>Home</a></nav>",
     NoTextFound, "contains no text"),
    ("blank.odt", lambda: samples.odt_file(body="<text:p/>"), NoTextFound, "contains no text"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "make", "error", "fragment"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_unreadable_files_get_a_clear_message(
    name: str, make: Make, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        read(name, make())
    message = str(info.value)
    assert fragment in message and message.startswith(name), message


MISLABELLED: list[tuple[str, Make, str]] = [
    # the content decides, and the message names what the file really is
    ("report.docx", lambda: b"Just some notes.\n" * 20,
     "report.docx is not a Word document: it looks like plain text."),
    ("photo.docx", doc_samples.png_bytes, "is not a Word document: it looks like a PNG image"),
    ("old.docx", samples.old_word_doc, "is an old Word document (.doc), a format Parley"),
    ("files.docx", lambda: samples.zip_of({"a.txt": "hi"}),
     "is not a Word document: it is a ZIP archive of other files"),
    ("deck.pptx", lambda: b"%!PS-Adobe-3.0\n" * 20, "is not a PowerPoint presentation"),
    ("sheet.odt", lambda: samples.zip_of(
        {"mimetype": "application/vnd.oasis.opendocument.spreadsheet"}, first_stored="mimetype"),
     "is not an OpenDocument text document: it is an OpenDocument spreadsheet (.ods)"),
    ("data.csv", lambda: bytes(range(256)) * 40, "data.csv is not a CSV file: it contains binary"),
    ("nuls.csv", lambda: b"Bird,Count\x00\x00\x00\x01" * 100,
     "nuls.csv is not a CSV file: it contains binary data"),
    ("photo.csv", doc_samples.png_bytes, "is not a CSV file: it looks like a PNG image"),
    ("page.html", lambda: bytes(range(256)) * 40, "is not an HTML page: it contains binary data"),
    ("page.htm", doc_samples.png_bytes, "is not an HTML page: it looks like a PNG image"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "fragment"), MISLABELLED, ids=[m[0] for m in MISLABELLED])
def test_a_mislabelled_file_is_told_apart(name: str, make: Make, fragment: str) -> None:
    with pytest.raises(UnreadableDocument) as info:
        read(name, make())
    assert fragment in str(info.value)
    assert str(info.value).startswith(name)


MISREAD: list[tuple[str, Make, str, str]] = [
    ("report.docx", lambda: doc_samples.pdf_of_pages([14]), "pdf", "Named .docx but it is a PDF"),
    ("sightings.docx", samples.xlsx_file, "xlsx",
     "Named .docx but it is an Excel workbook, so it was read as one."),
    ("birds.epub", samples.docx_file, "docx", "Named .epub but it is a Word document"),
    ("birds.txt", samples.docx_file, "docx", "Named .txt but it is a Word document"),
    ("survey.xlsx", samples.pptx_file, "pptx", "it is a PowerPoint presentation"),
    ("river.zip.odt", samples.epub_file, "epub", "it is an EPUB e-book"),
    ("table.csv", lambda: doc_samples.pdf_of_pages([14]), "pdf", "Named .csv but it is a PDF"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "kind", "note"), MISREAD, ids=[m[0] for m in MISREAD])
def test_a_file_named_as_another_format_is_read_as_what_it_is(
    name: str, make: Make, kind: str, note: str
) -> None:
    pages, notes, got_kind, _ = read(name, make())
    assert got_kind == kind
    assert len(notes) == 1 and note in notes[0]
    assert text_of(pages).strip()


# Hostile files: refused before anything is inflated, nothing fetched


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes read out of ZIP entries (every Python reader inflates through zipfile; the
    XLSX reader hands calamine a copy it inflated here)."""
    counts: list[int] = []
    original = zipfile.ZipExtFile.read

    def counting(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = original(self, n)
        counts.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    return counts


@contextmanager
def python_peak() -> Iterator[list[int]]:
    """The peak of what Python allocated inside the block, in bytes (zlib inflates into
    Python bytes, so tracemalloc sees it; libxml2's and calamine's own memory it does
    not), appended to the list on leaving."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


ZIP_FORMATS: list[tuple[str, Make]] = [
    ("birds.docx", samples.docx_file),
    ("survey.pptx", samples.pptx_file),
    ("sightings.xlsx", samples.xlsx_file),
    ("birds.epub", samples.epub_file),
    ("river.odt", samples.odt_file),
]


@pytest.mark.parametrize(("name", "make"), ZIP_FORMATS, ids=[z[0] for z in ZIP_FORMATS])
def test_a_zip_bomb_is_refused_from_its_directory(
    name: str, make: Make, inflated: list[int]
) -> None:
    bomb = samples.bombed(make())  # the document plus 300 MB of spaces packed in 0.3 MB
    inflated.clear()
    with python_peak() as peak, pytest.raises(UnreadableDocument) as info:
        read(name, bomb)
    assert f"{name} looks like a zip bomb: its " in str(info.value)
    assert "would unpack to 300." in str(info.value)
    assert sum(inflated) == 0 and peak[0] < 1 << 20


def _padded_and_lying(make: Make, member: str) -> bytes:
    """A document whose `member` really holds 64 MB more (spaces after its XML) than its
    directory says: the declared size is the real part's."""
    data = make()
    honest = zipfile.ZipFile(io.BytesIO(data)).getinfo(member).file_size
    padded = samples.rewritten(data, member, lambda x: x + b" " * (64 << 20))
    return samples.lying_about(padded, member, honest)


LIARS = [
    ("birds.docx", samples.docx_file, "word/document.xml"),
    ("survey.pptx", samples.pptx_file, "ppt/slides/slide1.xml"),
    ("sightings.xlsx", samples.xlsx_file, "xl/worksheets/sheet1.xml"),
    ("birds.epub", samples.epub_file, "OEBPS/text/chapter2.xhtml"),
    ("river.odt", samples.odt_file, "content.xml"),
]


@pytest.mark.parametrize(("name", "make", "member"), LIARS, ids=[x[0] for x in LIARS])
def test_an_entry_lying_about_its_size_is_never_inflated_past_it(
    name: str, make: Make, member: str, inflated: list[int]
) -> None:
    data = _padded_and_lying(make, member)
    declared = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    inflated.clear()
    with python_peak() as peak, pytest.raises(UnreadableDocument) as info:
        read(name, data)
    assert f"{name} is damaged" in str(info.value)
    assert f"Bad CRC-32 for file '{member}'" in str(info.value)
    assert sum(inflated) <= declared < 1 << 20  # handed out: not the 64 MB it holds
    # nor inflated: python-docx's own ZipFile.read did all 64 MB at once (141 MB peak)
    assert peak[0] < 8 << 20, f"{peak[0] / 2**20:.0f} MB"


def test_an_archive_of_too_many_parts_is_refused(inflated: list[int]) -> None:
    members = {f"word/part{i}.xml": "" for i in range(archive.MAX_MEMBERS)}
    with zipfile.ZipFile(io.BytesIO(samples.docx_file())) as real:
        members |= {i.filename: real.read(i) for i in real.infolist()}
    crowded = samples.zip_of(members)  # a real document and 10,000 empty parts
    inflated.clear()
    with pytest.raises(UnreadableDocument) as info:
        read("crowded.docx", crowded)
    assert f"crowded.docx holds {len(members):,} files inside" in str(info.value)
    assert "Parley opens archives of at most 10,000" in str(info.value)
    assert sum(inflated) == 0


def test_a_sheet_with_a_far_stray_cell_is_refused_before_calamine_allocates_it() -> None:
    # calamine would allocate the whole rectangle from A1 to the stray cell: 32 bytes a
    # cell, 3 GB here.
    with pytest.raises(UnreadableDocument) as info:
        read("stray.xlsx", samples.xlsx_file(far_cell=(1_000_000, 100)))
    assert "spanning 1,000,001 rows by 101 columns" in str(info.value)
    assert "Delete the stray cells" in str(info.value)


def _text(value: str, ref: str = "") -> str:
    r = f' r="{ref}"' if ref else ""
    return f'<c{r} t="inlineStr"><is><t>{value}</t></is></c>'


EXTENTS: list[tuple[str, str, tuple[int, int] | None]] = [
    ("referenced cells", f'<row r="2">{_text("a", "B2")}</row><row r="6">{_text("b", "D6")}</row>',
     (5, 3)),
    ("cells and rows without references follow the one before",
     f"<row>{_text('a') * 3}</row><row>{_text('b')}</row>", (2, 3)),
    ("an unreferenced cell after a referenced one",
     f'<row r="4">{_text("a", "C4")}{_text("b")}</row>', (1, 2)),
    ("blank and formatted cells do not count", f'<row r="1">{_text("a", "A1")}'
     '<c r="XFD1" s="3"/><c r="Z1"><v></v></c></row><row r="1048576" ht="20"/>', (1, 1)),
    ("a formula without a cached value counts", f'<row r="1">{_text("a", "A1")}'
     '<c r="J1"><f>A1&amp;A1</f></c></row>', (1, 10)),
    ("a namespace prefix", '<x:row r="3"><x:c r="B3"><x:v>1</x:v></x:c>'
     '<x:c r="E3"><x:v>2</x:v></x:c></x:row>', (1, 4)),
    ("an empty sheet", '<row r="1"><c r="A1" s="1"/></row>', None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "cells", "extent"), EXTENTS, ids=[e[0] for e in EXTENTS])
def test_a_sheets_extent_is_placed_as_calamine_places_its_cells(
    case: str, cells: str, extent: tuple[int, int] | None
) -> None:
    assert sheets.sheet_extent(cells.encode()) == extent


def test_a_sheet_of_unreferenced_cells_is_measured_before_calamine_allocates_it() -> None:
    # 6 million cells in 55 KB: under the limit by references alone, over it once placed
    # (a row at 1,000,000 instead of 2,001 makes calamine abort the process: 96 GB)
    row = "<row>" + '<c t="inlineStr"><is><t>x</t></is></c>' * 3000 + "</row>"
    data = samples.xlsx_with_cells((row + "<row><c><v>1</v></c></row>" * 2000).encode())
    with pytest.raises(UnreadableDocument) as info:
        read("wide.xlsx", data)
    assert "spanning 2,001 rows by 3,000 columns (6,003,000 cells)" in str(info.value)


def test_formatting_far_from_the_data_does_not_refuse_a_workbook() -> None:
    cells = f'<row r="1">{_text("Bird", "A1")}<c r="XFD1" s="1"/></row><row r="2">'
    cells += f'{_text("Heron", "A2")}</row><row r="1048576"><c r="XFD1048576" s="1"/></row>'
    pages, *_ = read("styled.xlsx", samples.xlsx_with_cells(cells.encode()))
    assert [(p.label, p.text) for p in pages] == [("Sightings rows 1–2", "Bird\nBird: Heron")]


class Listener:
    """An HTTP server on 127.0.0.1 that records every request and answers with a
    secret a reader must never show."""

    SECRET = "FETCHED-FROM-THE-NETWORK"

    def __init__(self) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                listener.requests.append(self.path)
                body = listener.SECRET.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_remote_images_links_and_scripts_are_never_fetched(listener: Listener) -> None:
    documents = {
        "birds.docx": samples.docx_file(listener.url + "/image.png"),
        "birds.html": samples.html_page(listener.url),
        "birds.epub": samples.epub_file(listener.url),
    }
    for name, data in documents.items():
        pages, *_ = read(name, data)
        assert listener.SECRET not in text_of(pages)
    assert listener.requests == []
    # The server does answer: a request would have been recorded.
    with urllib.request.urlopen(listener.url + "/probe", timeout=10) as answer:
        assert answer.read().decode() == listener.SECRET
    assert listener.requests == ["/probe"]


XXE: list[tuple[str, Make, str, bytes, bytes]] = [
    ("birds.docx", samples.docx_file, "word/document.xml", b"w:document", b"Feeding"),
    ("survey.pptx", samples.pptx_file, "ppt/slides/slide1.xml", b"p:sld", b"Spring survey"),
    ("sightings.xlsx", samples.xlsx_file, "xl/sharedStrings.xml", b"sst", b"Observer"),
    ("river.odt", samples.odt_file, "content.xml", b"office:document-content", b"Numbers"),
    ("birds.epub", samples.epub_file, "OEBPS/text/chapter2.xhtml", b"html", b"Kingfishers"),
]


@pytest.mark.parametrize(("name", "make", "member", "root", "where"), XXE, ids=[x[0] for x in XXE])
def test_external_entities_are_neither_fetched_nor_read(
    name: str, make: Make, member: str, root: bytes, where: bytes, listener: Listener,
    tmp_path: Path,
) -> None:  # fmt: skip
    secret = tmp_path / "secret.txt"
    secret.write_text("LOCAL-FILE-SECRET")
    urls = [listener.url + "/entity", secret.as_uri()]
    data = samples.rewritten(
        make(), member, lambda xml: samples.external_entities(xml, root, urls, where)
    )
    try:
        text = text_of(read(name, data)[0])
    except ParleyError as exc:  # refusing the file is fine too; reading the entity is not
        text = str(exc)
    assert "LOCAL-FILE-SECRET" not in text and listener.SECRET not in text
    assert listener.requests == []


def test_an_html_page_with_external_entities_fetches_nothing(
    listener: Listener, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("LOCAL-FILE-SECRET")
    page = (
        f'<?xml version="1.0"?><!DOCTYPE html [<!ENTITY a SYSTEM "{listener.url}/e">'
        f'<!ENTITY b SYSTEM "{secret.as_uri()}">]><html><body><p>Herons &a; &b; wade.</p>'
        f'<img src="{listener.url}/i.png"><link rel=stylesheet href="{listener.url}/s.css">'
        "</body></html>"
    )
    text = text_of(read("entities.html", page.encode())[0])
    assert "Herons" in text and "LOCAL-FILE-SECRET" not in text and listener.SECRET not in text
    assert listener.requests == []


# Through the library: ingest, retrieve, cite


@pytest.fixture
def library(backend: Backend) -> DocumentLibrary:
    return DocumentLibrary(backend, "alice")


@pytest.fixture
def embedder(library: DocumentLibrary, openai_server: FakeOpenAI) -> Embedder:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    return Embedder(client, MODEL, cache=library.cache)


CITED: list[tuple[str, Make, str, str, int]] = [
    ("birds.docx", samples.docx_file, "Where does the grey heron nest in spring?",
     "birds.docx, § Herons", 4),
    ("survey.pptx", samples.pptx_file, "How many nests were counted at the mill pond site?",
     "survey.pptx, slide 2", 4),
    ("sightings.xlsx", samples.xlsx_file, "Was a bittern seen in the reed bed?",
     "sightings.xlsx, Sightings rows 113–122", 9),
    ("sightings.csv", lambda: samples.CSV, "Where was the kingfisher seen at dusk?",
     "sightings.csv, rows 1–4", 1),
    ("birds.html", samples.html_page, "How do herons feed: do they stand still in shallow water?",
     "birds.html, § Herons › Feeding", 4),
    ("birds.epub", samples.epub_file, "When did mist lie on the water?",
     "birds.epub, § Prologue at the river", 3),
    ("river.odt", samples.odt_file, "What are the numbers of nests per site?",
     "river.odt, § Herons › Numbers", 3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "make", "question", "cited", "pages"), CITED, ids=[c[0] for c in CITED]
)
def test_an_indexed_file_is_cited_by_its_locator(
    name: str, make: Make, question: str, cited: str, pages: int,
    library: DocumentLibrary, embedder: Embedder,
) -> None:  # fmt: skip
    ingestor = Ingestor(library, embedder, limit_bytes=50 << 20)
    report = ingestor.ingest(name, make())
    assert report.status == "indexed", report.message
    assert report.pages == pages
    assert [n for n in report.notes if not n.startswith("Read as ")] == []  # CSV: encoding
    found = retrieve(
        library, question, [report.document_id], model=MODEL,
        query_vector=embedder.embed_query(question),
    )  # fmt: skip
    assert found.mode == "hybrid"
    best = found.sources[0].chunk
    assert rag.source_location({"file": best.file, "page": best.page, "label": best.label}) == (
        cited
    )
    # The stored pages keep their labels for "show the passage" and whole-document mode.
    labels = [p.label for p in library.pages([report.document_id])]
    assert len(labels) == pages and all(labels)


PARTS: list[tuple[str, Make, str]] = [
    ("birds.docx", samples.docx_file, "4 sections"),
    ("survey.pptx", samples.pptx_file, "4 slides"),
    ("sightings.xlsx", samples.xlsx_file, "2 sheets, 9 blocks of rows"),
    ("one.xlsx", lambda: samples.xlsx_with_cells(f'<row r="1">{_text("Ada", "A1")}</row>'.encode()),
     "1 sheet, 1 block of rows"),
    ("sightings.csv", lambda: samples.CSV, "1 block of rows"),
    ("birds.html", samples.html_page, "4 sections"),
    ("birds.epub", samples.epub_file, "3 sections"),
    ("river.odt", samples.odt_file, "3 sections"),
    ("R-intro.pdf", doc_samples.manual, "113 pages"),
    ("notes.txt", lambda: b"Herons nest in tall trees.", "1 page"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "parts"), PARTS, ids=[p[0] for p in PARTS])
def test_the_report_counts_slides_sections_and_sheets_as_they_are_cited(
    library: DocumentLibrary, name: str, make: Make, parts: str
) -> None:
    data = make()
    report = Ingestor(library, None, limit_bytes=50 << 20).ingest(name, data)
    assert report.status == "indexed", report.message
    assert report.message.startswith(f"{name}: {parts}, {report.chars:,} characters, ")
    again = Ingestor(library, None, limit_bytes=50 << 20).ingest(name, data)
    assert again.status == "duplicate" and (again.pages, again.sheets) == (
        report.pages,
        report.sheets,
    )


def test_bad_files_of_every_format_are_reported_beside_the_good_ones(
    library: DocumentLibrary, embedder: Embedder
) -> None:
    upload = [
        ("locked.docx", samples.encrypted(samples.docx_file())),
        ("bomb.xlsx", samples.bombed(samples.xlsx_file())),
        ("photo.csv", doc_samples.png_bytes()),
        ("old.docx", samples.old_word_doc()),
        ("river.odt", samples.odt_file()),
        ("blank.pptx", samples.pptx_file(empty=True)),
    ]
    reports = {
        r.name: r for r in Ingestor(library, embedder, limit_bytes=50 << 20).ingest_many(upload)
    }
    assert [n for n, r in reports.items() if r.status == "indexed"] == ["river.odt"]
    assert "protected by a password" in reports["locked.docx"].message
    assert "looks like a zip bomb" in reports["bomb.xlsx"].message
    assert "looks like a PNG image" in reports["photo.csv"].message
    assert "old Word document (.doc)" in reports["old.docx"].message
    assert "contains no text" in reports["blank.pptx"].message
    assert [d.name for d in library.list()] == ["river.odt"]


# The Documents page


def test_the_documents_page_indexes_a_word_file_and_cites_its_section(
    app: Callable[..., AppTest], backend: Backend, openai_server: FakeOpenAI
) -> None:
    at = app("app_pages/documents.py", PARLEY_PROVIDER="openai")
    at.run()
    docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    at.file_uploader[0].upload("birds.docx", samples.docx_file(), docx_type)
    at.run()
    at.button(key="parley.w.index").click().run()
    assert not at.exception, at.exception
    pages, *_ = read("birds.docx", samples.docx_file())
    chars = sum(len(p.text) for p in pages)
    assert [s.value for s in at.success] == [
        f"birds.docx: 4 sections, {chars:,} characters, 4 chunks."
    ]
    assert at.multiselect[0].options == ["birds.docx"]
    # A file this small is sent whole, page by page (section by section here), so [2]
    # is its second section.
    openai_server.script("Herons nest in tall trees [2].")
    at.chat_input[0].set_value("Where does the grey heron nest in spring?").run()
    assert not at.exception, at.exception
    sources = [e.label for e in at.expander if e.label.startswith("[")]
    assert sources == ["[2] birds.docx, § Herons"]
    answer = [m.value for m in at.markdown if m.value.startswith("Herons nest")]
    assert answer == ["Herons nest in tall trees \\[2 · birds.docx, § Herons\\]."]
    # a section has no page image to show
    assert not [t for t in at.toggle if t.key and t.key.startswith("parley.w.page.")]
