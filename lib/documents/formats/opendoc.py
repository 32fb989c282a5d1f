"""OpenDocument text (ODT): one page per section, as for Word.

Headings are `text:h` with their `text:outline-level`; paragraphs, lists, text boxes and
tables are read in document order (tables as rows with their headers); tracked
deletions, comments and generated indexes (the table of contents, the alphabetical
index) are left out. Tabs and the `text:s` run of spaces become spaces, line breaks
newlines.

Library, and why: none beyond lxml. odfpy, the usual one, has had no release since 2020
and builds a DOM of every part with the standard library's parsers; the text of an ODT
is one XML part, content.xml, which lxml reads (entities and DTDs off, no network)
behind `archive.open_zip`: 6.4 MB of text a second (`bench/formats.py`, 2 MB: 0.3 s,
16 MB peak RSS growth), the fastest reader here. A password-protected ODT is a ZIP whose
manifest lists encryption data for its parts; it is refused as protected.
"""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from lib.documents.extract import Opened
from lib.documents.formats import archive
from lib.documents.formats.sections import (
    Block,
    damaged,
    opened,
    parse_xml,
    sections,
    table_lines,
    tidy,
)
from lib.errors import EncryptedDocument, ParleyError

TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
MANIFEST = "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"
_SKIP = {f"{{{TEXT}}}{t}" for t in ("tracked-changes", "table-of-content",
         "alphabetical-index", "illustration-index", "table-index", "object-index",
         "user-index", "bibliography", "note-citation", "sequence-decls")}  # fmt: skip
_SKIP |= {f"{{{OFFICE}}}annotation", f"{{{OFFICE}}}annotation-end"}
_H, _P = f"{{{TEXT}}}h", f"{{{TEXT}}}p"
_TABLE, _ROW, _CELL = f"{{{TABLE}}}table", f"{{{TABLE}}}table-row", f"{{{TABLE}}}table-cell"
_INLINE_SPACE = {f"{{{TEXT}}}s": " ", f"{{{TEXT}}}tab": " ", f"{{{TEXT}}}line-break": "\n"}
MAX_REPEAT = 100  # a cell or row "repeated" 16,384 times is formatting, not content


def open_odt(name: str, data: bytes) -> Opened:
    zipped = archive.open_zip(name, data, "an OpenDocument text document")
    try:
        manifest = parse_xml(archive.read_member(zipped, "META-INF/manifest.xml"))
        if next(manifest.iter(f"{{{MANIFEST}}}encryption-data"), None) is not None:
            raise EncryptedDocument(
                f"{name} is protected by a password.",
                hint="Open it in LibreOffice, save it without a password "
                "(File › Properties › Security) and upload it again.",
            )
        content = parse_xml(archive.read_member(zipped, "content.xml"))
        body = content.find(f"{{{OFFICE}}}body/{{{OFFICE}}}text")
        if body is None:
            raise ValueError("content.xml has no office:text body")
        blocks = list(_blocks(body))
    except ParleyError:
        raise
    except Exception as exc:  # a missing part, broken XML
        raise damaged(name, "an OpenDocument text document", exc) from exc
    return opened(name, "odt", "lxml", sections(blocks), "")


def _blocks(element: etree._Element) -> Iterator[Block]:
    for child in element:
        if child.tag in _SKIP:
            continue
        if child.tag == _H:
            yield Block(tidy(_inline(child)), int(child.get(f"{{{TEXT}}}outline-level", "1")))
        elif child.tag == _P:
            yield Block(tidy(_inline(child)))
            yield from _frames(child)
        elif child.tag == _TABLE:
            yield from (Block(line) for line in table_lines(_rows(child)))
        else:
            yield from _blocks(child)


def _frames(paragraph: etree._Element) -> Iterator[Block]:
    """Text boxes anchored in a paragraph: their own paragraphs, after it."""
    for box in paragraph.iter("{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}text-box"):
        yield from _blocks(box)


def _inline(element: etree._Element) -> str:
    parts = [element.text or ""]
    for child in element:
        if child.tag in _INLINE_SPACE:
            count = int(child.get(f"{{{TEXT}}}c", "1")) if child.tag.endswith("}s") else 1
            parts.append(_INLINE_SPACE[child.tag] * min(count, MAX_REPEAT))
        elif child.tag not in _SKIP and not child.tag.endswith("}frame"):
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _rows(table: etree._Element) -> list[list[str]]:
    rows = []
    for row in table.iter(_ROW):
        cells = []
        for cell in row.iter(_CELL):
            text = "\n".join(_inline(p) for p in cell.iter(_P))
            repeat = int(cell.get(f"{{{TABLE}}}number-columns-repeated", "1"))
            cells += [text] * (min(repeat, MAX_REPEAT) if text else 1)
        repeat = int(row.get(f"{{{TABLE}}}number-rows-repeated", "1"))
        rows += [cells] * (min(repeat, MAX_REPEAT) if any(cells) else 1)
    return rows
