"""Word (DOCX) and PowerPoint (PPTX): one page per section, one page per slide.

Libraries, and why:
- python-docx (MIT, maintained, 1.2 in 2025; 2.9 MB, over lxml) resolves styles, so a
  heading is a paragraph whose style is, or is based on, "Heading n" or "Title": Word
  writes those built-in names in English whatever the interface language. Its
  `iter_inner_content` gives paragraphs and tables in reading order. Its
  `paragraph.style` looks for the default style among all of them on every unstyled
  paragraph, 2 ms a paragraph, so heading levels are resolved once per style id here
  (a 20 MB document.xml of 90,000 paragraphs: 186 s before, 15.5 s after, most of it
  python-docx compiling an XPath per paragraph for its text). What it gets wrong:
  text in text boxes, footnotes, comments, headers and footers, and inside content
  controls at the top level (where Word keeps its generated table of contents, which
  retrieval is better without) is not read. docx2python reads more of those but loses
  the styles, so headings; mammoth converts to HTML and needs a second parse.
- python-pptx (MIT, same maintainer, 1.0.2; 3.1 MB, pulls XlsxWriter for charts) reads
  slides' shapes, tables, groups and speaker notes. What it misses: SmartArt and chart
  text. It is the slowest reader here, about 7 ms a slide (an XPath compiled for every
  placeholder lookup), which a deck of a few hundred slides barely notices. Shapes are
  read title first, then top to bottom, left to right, since their order in the file is
  their stacking order, not their reading order.

`bench/formats.py`, the R manuals' text in each format on this 2-core machine: DOCX 1.2 MB
of text a second (336 sections, 2 MB: 1.6 s, 34 MB peak RSS growth), PPTX 0.4 MB/s (673
slides: 5 s); under a load average of 7, 0.84 and 0.25.

Both parse XML with `resolve_entities=False` and never load an external relationship
(a linked image or a hyperlink is a name in the package, never fetched). They are given
`archive.stored_copy`, the package inflated here a chunk at a time within the guard's
limits: their own `ZipFile.read` would inflate an entry lying about its size in one go.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import docx
import docx.document
import pptx
from docx.enum.style import WD_STYLE_TYPE
from docx.styles.style import BaseStyle
from docx.table import Table
from docx.text.paragraph import Paragraph
from pptx.enum.shapes import MSO_SHAPE_TYPE

from lib.documents.extract import Opened, Page
from lib.documents.formats import archive
from lib.documents.formats.sections import (
    Block,
    damaged,
    opened,
    sections,
    table_lines,
    tidy,
)
from lib.errors import NoTextFound

_HEADING_STYLES = {"title": 1, **{f"heading {n}": n for n in range(1, 10)}}


# Word


def open_docx(name: str, data: bytes) -> Opened:
    zipped = archive.open_zip(name, data, "a Word document")
    try:
        document = docx.Document(io.BytesIO(archive.stored_copy(zipped)))
        levels = _heading_levels(document)
        blocks = list(_docx_blocks(document.iter_inner_content(), levels))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml's, zipfile's
        raise damaged(name, "a Word document", exc) from exc
    return opened(name, "docx", "python-docx", sections(blocks), "")


def _docx_blocks(content: Iterator[Paragraph | Table], levels: _Levels) -> Iterator[Block]:
    by_id, default = levels
    for item in content:
        if isinstance(item, Paragraph):
            # The style id straight from <w:pStyle>: python-docx's `paragraph.style` scans
            # every style for the default on each unstyled paragraph (2 ms a paragraph
            # here: 186 s for a 20 MB document.xml of 90,000 paragraphs).
            style_id = item._p.style  # noqa: SLF001 - CT_P's own pStyle value
            yield Block(item.text, by_id.get(style_id, default) if style_id else default)
        else:
            rows = [_row_cells(row) for row in item.rows]
            yield from (Block(line) for line in table_lines(rows))


_Levels = tuple[dict[str, int], int]  # heading level by paragraph style id, and the default's


def _heading_levels(document: docx.document.Document) -> _Levels:
    """Each paragraph style's heading level (0: body text), resolved once per document;
    a paragraph naming a style that is not defined gets the default style, as in Word."""
    by_id = {
        style.style_id: _heading_level(style)
        for style in document.styles
        if style.type == WD_STYLE_TYPE.PARAGRAPH
    }
    default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
    return by_id, _heading_level(default) if default is not None else 0


def _heading_level(style: BaseStyle | None) -> int:
    """1-9 for a style that is, or is based on, "Title" or "Heading n"."""
    for _ in range(10):  # a style's base chain; Word caps it well below this
        if style is None:
            return 0
        level = _HEADING_STYLES.get((style.name or "").strip().lower())
        if level:
            return level
        style = style.base_style
    return 0


def _row_cells(row) -> list[str]:  # noqa: ANN001 - docx.table._Row
    # A merged cell appears once per grid column it spans; keep it once.
    cells, seen = [], set()
    for cell in row.cells:
        if id(cell._tc) not in seen:
            seen.add(id(cell._tc))
            cells.append(cell.text)
    return cells


# PowerPoint


def open_pptx(name: str, data: bytes) -> Opened:
    zipped = archive.open_zip(name, data, "a PowerPoint presentation")
    try:
        deck = pptx.Presentation(io.BytesIO(archive.stored_copy(zipped)))
        pages = [
            Page(None, f"slide {number}", "\n".join(_slide_lines(slide)))
            for number, slide in enumerate(deck.slides, start=1)
        ]
    except Exception as exc:  # python-pptx raises KeyError, ValueError, lxml's, zipfile's
        raise damaged(name, "a PowerPoint presentation", exc) from exc
    if not pages:
        raise NoTextFound(f"{name} has no slides.", hint="Check the file.")
    return opened(name, "pptx", "python-pptx", pages, " (its slides may be pictures)")


def _slide_lines(slide) -> list[str]:  # noqa: ANN001 - pptx.slide.Slide
    title = slide.shapes.title
    lines = _shape_lines(title) if title is not None else []
    others = [s for s in slide.shapes if title is None or s.shape_id != title.shape_id]
    for shape in _reading_order(others):
        lines += _shape_lines(shape)
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = tidy(frame.text) if frame is not None else ""
        if notes:
            lines.append(f"Notes: {notes}")
    return [line for line in lines if line]


def _reading_order(shapes: list) -> list:
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shape_lines(shape) -> list[str]:  # noqa: ANN001 - a pptx shape of any kind
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        inner = _reading_order(list(shape.shapes))
        return [line for member in inner for line in _shape_lines(member)]
    if getattr(shape, "has_table", False):
        rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
        return table_lines(rows)
    if shape.has_text_frame:
        return [tidy(p.text.replace("\x0b", " ")) for p in shape.text_frame.paragraphs]
    return []
