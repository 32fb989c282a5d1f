"""Spreadsheets (XLSX) and CSV: rows that keep their headers, in pages of a few rows.

Each data row becomes one line naming its columns ("Name: Ada; Born: 1815"), so any
chunk of rows still says what each value means, and rows are grouped into pages of at
most `BLOCK_ROWS` rows or `BLOCK_CHARS` characters, small enough to be one chunk, each
labelled with its sheet and its rows as the spreadsheet numbers them ("Sheet1 rows
2–41"; "rows 2–41" for a CSV). The header is the first non-empty row when every cell of
it is filled and none is a number; otherwise rows are read without names.

Libraries, and why:
- XLSX: python-calamine (MIT; Rust's calamine, 2.3 MB wheel, no dependencies) read a
  100,000-row, 8-column workbook in 2.0 s here where openpyxl (MIT, pure Python) took
  32.6 s in read-only mode. Cells come as typed values (dates as dates, never a formula
  evaluated: the cached result is read). What it gets wrong: it allocates the whole
  rectangle from the first to the last cell holding a value, about 32 bytes a cell (883 MB
  for one value at Z1048576 beside A1), and aborts the process when that fails: a 30 KB
  sheet with a row of 3,000 cells without references and one more row at 1,000,000 asked
  for 96 GB and killed it. `_check_extent` therefore works out each sheet's rectangle
  first, placing cells as calamine does (`sheet_extent`), and refuses one of more than
  `MAX_SHEET_CELLS`; and since its ZIP reader inflates an entry without stopping at the
  declared size, it is given `archive.stored_copy`, inflated here within the guard. A
  100,000-row, 8-column workbook reads in about 6 s in all here: calamine 1.1 s, the
  extent check 0.7-1.7 s, row lines the rest.
- `bench/formats.py`: 2.9 MB of text a second for XLSX, 3.5-5 for CSV (the R manuals'
  paragraphs as 6,700 rows of 3 columns), 18-46 MB peak RSS growth for 2-5 MB of text.
- CSV: the standard library's `csv` (its parser is C: a 13 MB, 250,000-row file became
  15,588 pages in 1.35 s here, about 10 MB/s, row lines included), the delimiter chosen
  by `_dialect` (comma, semicolon, tab or bar; tab for .tsv), the text decoded like any
  text file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator

import python_calamine as calamine

from lib.documents.extract import Opened, Page, decode_text
from lib.documents.formats import archive
from lib.documents.formats.sections import damaged, flat, header_of, opened, row_line, trimmed
from lib.errors import NoTextFound, UnreadableDocument

BLOCK_ROWS = 40
BLOCK_CHARS = 1200
MAX_SHEET_CELLS = 4_000_000  # calamine holds 32 bytes a cell: 128 MB
_SHEET_PART = re.compile(r"^xl/worksheets/[^/]+\.xml$")
# A sheet's <row> start tags and whole <c> cells, in order (a cell holds no <c>).
_SHEET_TOKEN = re.compile(
    rb"<(?:\w+:)?(?:row\b(?P<row>[^>]*)>"
    rb"|c\b(?P<cell>[^>]*?)(?:/>|>(?P<inner>.*?)</(?:\w+:)?c>))",
    re.DOTALL,
)
_FULL_REF = re.compile(rb'<(?:\w+:)?c\b[^>]*?\br="([A-Z]{1,3})([0-9]{1,7})"')
_CELL_TAG = re.compile(rb"<(?:\w+:)?c\b")
_ROW_REF = re.compile(rb'\br="([0-9]{1,7})"')
_CELL_REF = re.compile(rb'\br="([A-Z]{0,3})([0-9]{0,7})"')
_VALUE = re.compile(rb"<(?:\w+:)?(?:v>[^<]|is\b|f\b)")  # a value, inline string or formula
_SNIFF_BYTES = 64 * 1024
_SNIFF_ROWS = 100
_DELIMITERS = ",;\t|"  # comma first: it wins a tie


def row_pages(rows: Iterable[tuple[int, list[str]]], where: str) -> list[Page]:
    """Pages of row lines; `rows` are (row number, cells), `where` the sheet name or ""."""
    pages: list[Page] = []
    headers: list[str] | None = None
    block: list[tuple[int, str]] = []
    size = 0

    def flush() -> None:
        first, last = block[0][0], block[-1][0]
        span = f"row {first}" if first == last else f"rows {first}–{last}"
        label = f"{where} {span}" if where else span
        pages.append(Page(None, label, "\n".join(line for _, line in block)))

    for number, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        if headers is None:
            headers = cells if header_of(cells) else []
            if headers:
                block.append((number, " | ".join(flat(c) for c in trimmed(cells))))
                size += len(block[-1][1])
                continue
        line = row_line(headers, cells)
        if block and (len(block) >= BLOCK_ROWS or size + len(line) > BLOCK_CHARS):
            flush()
            block, size = [], 0
        block.append((number, line))
        size += len(line) + 1
    if block:
        flush()
    return pages


# XLSX


def open_xlsx(name: str, data: bytes) -> Opened:
    zipped = archive.open_zip(name, data, "an Excel workbook")
    try:
        copy = archive.stored_copy(
            zipped, skip=("xl/media/", "xl/embeddings/"), inspect=_check_extent(name)
        )
        book = calamine.CalamineWorkbook.from_filelike(io.BytesIO(copy))
        pages: list[Page] = []
        for meta in book.sheets_metadata:
            if meta.typ == calamine.SheetTypeEnum.WorkSheet:
                sheet = book.get_sheet_by_name(meta.name)
                pages += row_pages(_sheet_rows(sheet), meta.name)
    except UnreadableDocument:
        raise
    except Exception as exc:  # calamine's errors, zipfile's (a lying entry's CRC), KeyError
        raise damaged(name, "an Excel workbook", exc) from exc
    if not pages:
        raise NoTextFound(f"{name} contains no text: its sheets are empty.", hint="Check the file.")
    return opened(name, "xlsx", "calamine", pages, "")


def _check_extent(name: str):  # noqa: ANN202
    def inspect(member: str, data: bytes) -> None:
        if not _SHEET_PART.match(member):
            return
        extent = _referenced_extent(data)
        if extent is None or extent[0] * extent[1] > MAX_SHEET_CELLS:
            extent = sheet_extent(data)  # unreferenced cells, or far blank ones: exactly
        if extent is None:
            return
        height, width = extent
        if height * width > MAX_SHEET_CELLS:
            raise UnreadableDocument(
                f"{name} has a sheet spanning {height:,} rows by {width:,} columns "
                f"({height * width:,} cells); Parley reads sheets of at most "
                f"{MAX_SHEET_CELLS:,} cells.",
                hint="Delete the stray cells far from the data (or split the sheet) and "
                "save it again.",
            )

    return inspect


def _referenced_extent(xml: bytes) -> tuple[int, int] | None:
    """An upper bound of `sheet_extent` from the cells' references alone (blank cells
    count too), in 0.7 s for a 100,000-row, 8-column sheet where the exact walk takes
    4.7 s; None when some cell has no full reference, and so no place of its own."""
    refs = _FULL_REF.findall(xml)
    if not refs or len(refs) != len(_CELL_TAG.findall(xml)):
        return None
    rows = [int(number) for _, number in refs]
    cols = [_column_number(letters) for letters in set(letters for letters, _ in refs)]
    return max(rows) - min(rows) + 1, max(cols) - min(cols) + 1


def sheet_extent(xml: bytes) -> tuple[int, int] | None:
    """(rows, columns) of the rectangle calamine will allocate for a sheet's XML: from
    its first to its last cell holding a value, placed as calamine places them. A `<c>`
    or `<row>` without its optional `r` reference follows the one before it, so a row of
    3,000 unreferenced cells and one more row at 1,000,000 is 3 billion cells (calamine
    asked for 96 GB and aborted the process); a cell without a value (`<c s="3"/>`, an
    empty `<v>`, formatting only) does not count, as it does not for calamine."""
    row, col = 0, 0
    top = left = 1 << 62
    bottom = right = -1
    for match in _SHEET_TOKEN.finditer(xml):
        if match.group("row") is not None:
            ref = _ROW_REF.search(match.group("row"))
            row = int(ref.group(1)) if ref else row + 1
            col = 0
            continue
        ref = _CELL_REF.search(match.group("cell"))
        if ref:
            col = _column_number(ref.group(1)) if ref.group(1) else col + 1
            row = int(ref.group(2)) if ref.group(2) else row
        else:
            col += 1
        inner = match.group("inner")
        if inner and _VALUE.search(inner):
            top, bottom = min(top, row), max(bottom, row)
            left, right = min(left, col), max(right, col)
    if bottom < 0:
        return None
    return bottom - top + 1, right - left + 1


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + letter - 64
    return number


def _sheet_rows(sheet: calamine.CalamineSheet) -> Iterator[tuple[int, list[str]]]:
    """(row number as the sheet shows it, cells from the first filled column on).

    calamine 0.9's `iter_rows` starts at the sheet's first row even when the data starts
    lower (the empty rows come first), but at its first filled column; a sheet whose
    data starts at B3 is numbered from 3 (tests/test_documents_formats.py checks it)."""
    for index, row in enumerate(sheet.iter_rows()):
        yield index + 1, [_cell_text(v) for v in row]


def _cell_text(value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds").removesuffix(" 00:00:00")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return "" if value is None else str(value)


# CSV


def open_csv(name: str, data: bytes) -> Opened:
    try:
        text, encoding = decode_text(name, data)
    except UnreadableDocument as exc:  # no text encoding fits: binary
        raise _binary(name) from exc
    if "\x00" in text:
        raise _binary(name)
    if not text.strip():
        raise NoTextFound(f"{name} contains no text.", hint="Check the file.")
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(name, text))
    started = [1]  # the line the row being read starts on (a quoted cell spans lines)

    def records() -> Iterator[tuple[int, list[str]]]:
        for number, row in enumerate(reader, start=1):
            yield number, row
            started[0] = reader.line_num + 1

    try:
        pages = row_pages(records(), "")
    except csv.Error as exc:
        raise UnreadableDocument(
            f"{name} is damaged: the row starting on line {started[0]:,} cannot be read as "
            f"CSV ({exc}).",
            hint="An unclosed quote often causes this: check that row.",
        ) from exc
    result = opened(name, "csv", "csv", pages, "")
    result.encoding = encoding
    return result


def _binary(name: str) -> UnreadableDocument:
    return UnreadableDocument(
        f"{name} is not a CSV file: it contains binary data.", hint="Check the file."
    )


def _dialect(name: str, text: str) -> type[csv.Dialect]:
    """Tab for .tsv; otherwise the delimiter that splits the most of the first rows into
    the same number (more than one) of fields, quotes honoured; comma on a tie or when
    none does. `csv.Sniffer` picked the comma for a semicolon file whose quoted notes
    held a comma ("seen at dawn, and again at dusk"), cutting its rows apart."""
    if name.lower().endswith(".tsv"):
        return csv.excel_tab
    sample = text[:_SNIFF_BYTES]
    if len(text) > _SNIFF_BYTES:  # a row cut in half would count against every delimiter
        sample = sample[: sample.rfind("\n") + 1] or sample
    best, best_rows = ",", 0
    for delimiter in _DELIMITERS:
        widths = Counter(_widths(sample, delimiter))
        rows = max((n for width, n in widths.items() if width > 1), default=0)
        if rows > best_rows:
            best, best_rows = delimiter, rows
    return type("Sniffed", (csv.excel,), {"delimiter": best})


def _widths(sample: str, delimiter: str) -> Iterator[int]:
    """The field counts of the sample's first rows (blank ones left out)."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    try:
        for row in itertools.islice(reader, _SNIFF_ROWS):
            if any(c.strip() for c in row):
                yield len(trimmed(row))
    except csv.Error:  # an unclosed quote: as far as it got
        return
