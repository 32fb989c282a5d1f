"""Structured text → pages a citation can name: sections under their heading, table rows
with their headers.

DOCX, HTML, EPUB and ODT readers turn a document into `Block`s (a heading with its level,
or a paragraph) and `sections` cuts them into one `Page` per section at headings of
level 1-3, labelled "§ Heading", or "§ Parent › Heading" below the top level, so two
"Examples" sections in different chapters are told apart. Deeper headings stay in their
section's text. Text before the first heading is "before the first heading"; a document
with no headings at all is one page without a label, so its chunks are cited by lines,
like a text file's.

Tables inside documents, and spreadsheets, become lines that name their columns
("Name: Ada; Born: 1815"), so any chunk of rows still says what each value is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from lib.documents.extract import Opened, Page, clean_text
from lib.errors import NoTextFound, UnreadableDocument

SECTION_LEVELS = 3
LABEL_CHARS = 90
PREAMBLE = "before the first heading"
# Entities are not expanded (no "billion laughs"), no DTD is loaded, nothing is fetched.
# huge_tree lifts libxml2's 10 MB cap on one text node (a long paragraph or <pre> is not
# an attack; the input is bounded by the upload limit and the ZIP guard).
XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")


@dataclass(frozen=True)
class Block:
    text: str
    level: int = 0  # 1-6 for a heading, 0 for body text


def tidy(text: str) -> str:
    """One line of running text: runs of spaces and tabs to one space, trimmed."""
    return _SPACE.sub(" ", text).strip()


def flat(text: str) -> str:
    """A table cell on one line: every run of whitespace, line breaks too, to one space,
    so a row stays one line however its cells were typed."""
    return " ".join(text.split())


def sections(blocks: Iterable[Block]) -> list[Page]:
    """One page per section (see the module docstring). A heading with no text of its
    own before the next one is carried into the next section's text, so every heading
    stays searchable."""
    pages: list[Page] = []
    path: list[tuple[int, str]] = []
    label: str | None = None
    lines: list[str] = []
    has_body = False

    def flush() -> None:
        pages.append(Page(None, label, clean_text("\n".join(lines))))

    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if not 0 < block.level <= SECTION_LEVELS:
            lines.append(text)
            has_body = True
            continue
        if has_body:
            flush()
            lines, has_body = [], False
        if label is None and pages:  # text came before the first heading
            pages[0] = Page(None, PREAMBLE, pages[0].text)
        heading = tidy(text)
        path = [(lvl, t) for lvl, t in path if lvl < block.level] + [(block.level, heading)]
        label = _label([t for _, t in path])
        lines.append(heading)
    if has_body or (lines and not pages):
        flush()
    return pages


def _label(path: Sequence[str]) -> str:
    label = "§ " + " › ".join(path[-2:])
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1].rstrip() + "…"


def header_of(row: Sequence[str]) -> bool:
    """Whether a table's first row names its columns: every cell up to the last filled
    one filled, and none a number."""
    cells = trimmed(row)
    return bool(cells) and all(c.strip() and not _number(c) for c in cells)


def trimmed(row: Sequence[str]) -> list[str]:
    """The row without its trailing empty cells (a sheet's rows run to its widest)."""
    cells = list(row)
    while cells and not cells[-1].strip():
        cells.pop()
    return cells


def _number(text: str) -> bool:
    try:
        float(text.replace(",", "").replace("%", "").strip())
    except ValueError:
        return False
    return True


def row_line(headers: Sequence[str], cells: Sequence[str]) -> str:
    """ "Name: Ada; Born: 1815": each filled cell after its column's header."""
    parts = []
    for i, cell in enumerate(cells):
        value = flat(cell)
        if not value:
            continue
        head = flat(headers[i]) if i < len(headers) else ""
        parts.append(f"{head}: {value}" if head else value)
    return "; ".join(parts)


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """A table inside a document as lines: with its header row's names when it has one,
    otherwise its cells joined by " | "."""
    rows = [trimmed(r) for r in rows if any(c.strip() for c in r)]
    if not rows:
        return []
    if len(rows) > 1 and header_of(rows[0]):
        headers = rows[0]
        return [" | ".join(flat(c) for c in headers)] + [row_line(headers, r) for r in rows[1:]]
    return [" | ".join(flat(c) for c in r if c.strip()) for r in rows]


def damaged(name: str, what: str, exc: Exception) -> UnreadableDocument:
    reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return UnreadableDocument(
        f"{name} is damaged: it is a ZIP archive, but not {what} that can be read ({reason}).",
        hint="Open it in the program that made it, save it again and re-upload.",
    )


def opened(name: str, kind: str, extractor: str, pages: list[Page], empty: str) -> Opened:
    """The `Opened` for pages read at once; `empty` says why a file without text has none."""
    if not any(p.text.strip() for p in pages):
        raise NoTextFound(f"{name} contains no text{empty}.", hint="Check the file.")
    return Opened(kind=kind, page_count=len(pages), extractor=extractor,
                  read_pages=lambda: iter(pages))  # fmt: skip


def parse_xml(data: bytes) -> etree._Element:
    """An XML part of a document, parsed as untrusted input."""
    return etree.fromstring(data, parser=XML)
