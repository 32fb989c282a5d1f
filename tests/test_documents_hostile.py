"""Hostile files: decompression bombs in PDFs refused before PDFium or pypdf parse them,
page failures reported as what happened, file names that are Markdown shown as typed, and
two files with one name told apart. Peak memory per file is printed by
bench/hostile_files.py (each file in its own process), not asserted here."""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from lib.documents import ocr, pdfguard
from lib.documents.extract import Page
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.errors import NoTextFound, UnreadableDocument
from lib.store.backend import Backend
from tests.test_markup import GFM_EMAIL, GFM_URL

PAGE = "app_pages/documents.py"
EVIL = "see [the docs](https://evil.example/login) **now**.txt"


def pdf(*streams: bytes, dictionary: bytes = b"/Filter /FlateDecode") -> bytes:
    """A one-page PDF whose page draws the given (already encoded) content streams."""
    first = 5
    refs = b" ".join(b"%d 0 R" % (first + i) for i in range(len(streams)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [" + refs + b"]"
        b" /Resources << /Font << /F1 4 0 R >> >> >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *(b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(s), dictionary, s) for s in streams),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def deflated(text: bytes, zeros_mb: int = 0) -> bytes:
    """`text` then `zeros_mb` MB of spaces, deflated (a megabyte of spaces is 1 KB)."""
    packer = zlib.compressobj(9)
    spaces = b" " * (1 << 20)
    return (
        packer.compress(text)
        + b"".join(packer.compress(spaces) for _ in range(zeros_mb))
        + (packer.flush())
    )


HELLO = b"BT /F1 12 Tf 72 712 Td (Hello from a small page) Tj ET\n"
LZW = b"/Filter /LZWDecode"


def lzw_spaces(count: int) -> list[int]:
    """The LZW codes an encoder emits for `count` spaces from a clear table, worked out
    from the lengths of the runs in its table (a loop per byte takes minutes at 300 MB):
    a run matched as far as the table goes, its code, the run one space longer added."""
    codes, longest, next_code, current, remaining = [256], 1, 258, 0, count
    while True:
        take = min(longest - current, remaining)
        current, remaining = current + take, remaining - take
        codes.append(32 if current == 1 else 258 + current - 2)
        if not remaining:
            return codes
        if next_code <= 4095:
            longest, next_code = current + 1, next_code + 1
        else:  # the table is full: start again
            codes.append(256)
            longest, next_code = 1, 258
        current, remaining = 1, remaining - 1


def lzw_pack(codes: list[int], early: int = 1) -> bytes:
    """Codes as PDF's LZWDecode reads them: 9 to 12 bits, high bit first, then EOD."""
    out, buffer, bits, width, next_code = bytearray(), 0, 0, 9, 258
    for code in [*codes, 257]:
        buffer, bits = buffer << width | code, bits + width
        while bits >= 8:
            bits -= 8
            out.append(buffer >> bits & 0xFF)
        buffer &= (1 << bits) - 1
        if code == 256:
            width, next_code = 9, 258
        elif code != 257:
            next_code += 1
            if next_code + early > 1 << width and width < 12:
                width += 1
    if bits:
        out.append(buffer << (8 - bits) & 0xFF)
    return bytes(out)


def lzw_bomb(spaces_mb: int, early: int = 1) -> bytes:
    """HELLO (a code a byte), then `spaces_mb` MB of spaces LZW-encoded: 12 bits per code,
    each code up to 3,839 spaces, so 300 MB is 230 KB."""
    return lzw_pack([256, *HELLO, *lzw_spaces(spaces_mb << 20)], early)


@pytest.fixture
def library(backend: Backend) -> DocumentLibrary:
    return DocumentLibrary(backend, "alice")


def test_the_sample_pdf_is_read_when_its_streams_are_small(library: DocumentLibrary) -> None:
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest("small.pdf", pdf(deflated(HELLO)))
    assert report.status == "indexed", report.message
    assert report.chars == len("Hello from a small page")


@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        # 300 MB of spaces behind a line of text: 0.3 MB on disk, PDFium would hold ~600 MB.
        ("bomb.pdf", lambda: pdf(deflated(HELLO, 300)), "a stream in it inflates to more "
         "than 64 MB"),
        ("lzw-bomb.pdf", lambda: pdf(lzw_bomb(300), dictionary=LZW), "a stream in it inflates "
         "to more than 64 MB"),
        ("lzw-many.pdf", lambda: pdf(*[lzw_bomb(63)] * 17, dictionary=LZW), "its streams "
         "inflate to more than 1,024 MB in all"),
        # 17 streams of 63 MB: each under the limit, together past 1 GB.
        ("many.pdf", lambda: pdf(*[deflated(HELLO, 63)] * 17), "its streams inflate to more "
         "than 1,024 MB in all"),
        ("pixels.pdf", lambda: pdf(b"\xff\xd8\xff", dictionary=b"/Type /XObject /Subtype "
         b"/Image /Width 200000 /Height 1000 /Filter /DCTDecode"), "an image in it claims "
         "200,000 x 1,000 pixels, more than the 100 million Parley decodes"),
    ],
)  # fmt: skip
def test_a_decompression_bomb_is_refused_saying_so_and_nothing_is_kept(
    library: DocumentLibrary, name: str, make: Callable[[], bytes], why: str
) -> None:
    data = make()
    assert len(data) < 2 << 20
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest(name, data)
    assert report.status == "failed"
    assert report.message == (
        f"{name} was refused: {why}, which is how a decompression bomb is built. If it is a "
        "real document, print it to a new PDF and upload that."
    )
    assert library.list() == []


def test_the_guard_measures_what_a_stream_inflates_to() -> None:
    assert pdfguard.check_streams(pdf(deflated(HELLO, 10))) == len(HELLO) + (10 << 20)
    # A stream zlib cannot inflate is left to PDFium and pypdf to judge.
    assert pdfguard.check_streams(pdf(b"not deflate data")) == 0


def test_the_lzw_codes_are_what_a_real_encoder_makes() -> None:
    from pypdf._codecs._codecs import LzwCodec  # pypdf's encoder, PDF 1.7 7.4.4.2

    # 700,000 spaces: 1,183 codes, past the widths of 10 and 11 bits.
    assert lzw_pack(lzw_spaces(700_000)) == LzwCodec().encode(b" " * 700_000)
    # 10 MB: the table is full and cleared twice; pypdf decodes it to exactly that.
    decoded = LzwCodec(max_output_length=1 << 30).decode(lzw_bomb(10))
    assert decoded == HELLO + b" " * (10 << 20)


@pytest.mark.parametrize(
    ("early", "parameters"), [(1, b""), (0, b" /DecodeParms << /EarlyChange 0 >>")]
)
def test_the_guard_measures_what_an_lzw_stream_decodes_to(early: int, parameters: bytes) -> None:
    data = pdf(lzw_bomb(10, early), dictionary=LZW + parameters)
    assert pdfguard.check_streams(data) == len(HELLO) + (10 << 20)
    # A stream that stops without its EOD code is counted to its /Length, no further.
    cut = lzw_bomb(10, early)[:-2]
    two = pdf(cut, lzw_pack([256, *HELLO], early), dictionary=LZW + parameters)
    assert len(HELLO) + (10 << 20) - 4000 < pdfguard.check_streams(two) - len(HELLO)
    assert pdfguard.check_streams(two) - len(HELLO) <= len(HELLO) + (10 << 20)


def test_a_small_lzw_pdf_is_read(library: DocumentLibrary) -> None:
    from pypdf._codecs._codecs import LzwCodec

    data = pdf(LzwCodec().encode(HELLO), dictionary=LZW)
    report = Ingestor(library, None, limit_bytes=1 << 30).ingest("lzw.pdf", data)
    assert report.status == "indexed", report.message
    assert report.chars == len("Hello from a small page")


def page(number: int, source: str, problem: str = "", text: str = "") -> Page:
    return Page(number, None, text, source, problem)


LIMIT = "pypdf could not read it (Limit reached while decompressing. 12 bytes remaining.)"


@pytest.mark.parametrize(
    ("pages", "error", "message"),
    [
        ([page(1, "error", LIMIT), page(2, "error", LIMIT)], UnreadableDocument,
         f"x.pdf has 2 pages, and pages 1–2 could not be read: {LIMIT}. Nothing was indexed. "
         "Download or export it again and re-upload."),
        ([page(1, "blank"), page(2, "blank")], NoTextFound,
         "x.pdf has 2 pages, all blank, so it was not indexed. Check the file."),
        ([page(1, "blank"), page(2, "scan", "OCR is off")], NoTextFound,
         "x.pdf has 2 pages but no text that can be extracted: page 2 is a scan (pictures of "
         "text), and OCR is off, so it was not indexed. Run OCR on it (for example with "
         "ocrmypdf) and upload the result."),
    ],
)  # fmt: skip
def test_a_document_without_text_says_what_happened_to_its_pages(
    pages: list[Page], error: type[Exception], message: str
) -> None:
    found = ocr.no_text("x.pdf", pages)
    assert isinstance(found, error) and str(found) == message
    assert "looks like a scan" not in str(found)


def test_the_report_of_a_partly_read_document_names_each_kind_of_page() -> None:
    pages = [
        page(1, "text", text="words"),
        page(2, "ocr", text="scanned words"),
        page(3, "ocr", text="more"),
        page(4, "blank"),
        page(5, "scan", "OCR is off"),
        page(7, "error", "PDFium could not read it (Data format error)"),
    ]
    assert ocr.page_notes(pages) == [
        "Read by OCR: pages 2–3.",
        "Blank: page 4.",
        "Scanned, not read (OCR is off): page 5.",
        "Could not be read: page 7: PDFium could not read it (Data format error).",
    ]


# The page: names as typed, and two files of one name told apart


def shown_text(markdown: str) -> str:
    """What the browser shows for `markdown`, near enough: escapes resolved."""
    return html.unescape(re.sub(r"\\(.)", r"\1", markdown))


def upload(at: AppTest, *files: tuple[str, bytes]) -> None:
    for name, data in files:
        at.file_uploader[0].upload(name, data, "text/plain")
    at.run()
    at.button(key="parley.w.index").click().run()
    assert not at.exception, at.exception


@pytest.fixture
def page_app(app: Callable[..., AppTest], backend: Backend) -> AppTest:
    at = app(PAGE, PARLEY_PROVIDER="openai")
    at.run()
    assert not at.exception
    return at


def test_a_file_name_that_is_markdown_shows_as_typed_with_no_link(page_app: AppTest) -> None:
    upload(page_app, (EVIL, b"The heron nests by the river in spring.\n" * 20))
    (report,) = [s.value for s in page_app.success]
    shown = [report, *(m.value for m in page_app.markdown if "evil" in m.value)]
    assert any("Delete" in s for s in shown), shown  # the Delete popover's question
    assert any(s.startswith("**") for s in shown), shown  # the library's title
    for markdown in shown:
        text = shown_text(markdown).replace("\u2060", "")
        assert EVIL in text, markdown  # reads as typed
        # Nothing Streamlit's Markdown would make a link: no [..](..), no autolink literal.
        assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", markdown), markdown
        assert not GFM_URL.search(shown_text(markdown)), markdown
        assert not GFM_EMAIL.search(shown_text(markdown)), markdown


def test_two_files_with_one_name_are_told_apart_in_the_library_and_the_picker(
    page_app: AppTest,
) -> None:
    upload(page_app, ("notes.md", b"# Herons\n\nThe heron nests by the river.\n"))
    upload(page_app, ("notes.md", b"# Kites\n\nThe red kite circles over the fields.\n" * 3))
    (picker,) = page_app.multiselect
    assert len(picker.options) == 2 and len(set(picker.options)) == 2, picker.options
    assert all(o.startswith("notes.md (") and ", added " in o for o in picker.options)
    titles = [m.value for m in page_app.markdown if m.value.startswith("**notes.md")]
    assert len(titles) == 2 and len(set(titles)) == 2, titles
