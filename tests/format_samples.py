"""Files of every format the readers in lib/documents/formats/ take, made here: DOCX and
PPTX with python-docx and python-pptx, XLSX with XlsxWriter, password-protected Office
files with msoffcrypto-tool (as Office encrypts them: an OLE file around the package),
and CSV, HTML, EPUB and ODT by hand, as their specifications lay them out. Hostile
variants (zip bombs, lying entry sizes, stray far cells) are built from real ones.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
from collections.abc import Callable

import docx
import pptx
import xlsxwriter
from docx.enum.style import WD_STYLE_TYPE
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from msoffcrypto.format.ooxml import OOXMLFile
from pptx.util import Inches

HERON = "The grey heron nests in tall trees beside the river every spring."


def zip_of(members: dict[str, bytes | str], *, first_stored: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if first_stored:  # EPUB and ODF: "mimetype", first and uncompressed
            archive.writestr(first_stored, members[first_stored], zipfile.ZIP_STORED)
        for name, data in members.items():
            if name != first_stored:
                archive.writestr(name, data)
    return out.getvalue()


# Word and PowerPoint


def docx_file(remote: str = "http://127.0.0.1:9/never.png", *, empty: bool = False) -> bytes:
    document = docx.Document()
    if not empty:
        document.add_paragraph("A field guide to river birds.")
        document.add_heading("Herons", 1)
        document.add_paragraph(HERON)
        document.add_heading("Feeding", 2)
        document.add_paragraph("Herons stand still in shallow water and spear fish.")
        table = document.add_table(rows=3, cols=2)
        for r, row in enumerate([("Bird", "Wingspan"), ("Grey heron", "185 cm"),
                                 ("Little egret", "95 cm")]):  # fmt: skip
            for c, text in enumerate(row):
                table.cell(r, c).text = text
        document.add_heading("Kingfishers", 1)
        document.add_paragraph("The kingfisher dives from a perch above the stream.")
    # An image and a link that live elsewhere: a reader that fetched them would call
    # `remote`.
    document.part.relate_to(remote, RT.IMAGE, is_external=True)
    document.part.relate_to(remote + "?link", RT.HYPERLINK, is_external=True)
    return _save(document)


def docx_styled() -> bytes:
    """Headings as Word users make them: "Title", a custom style based on "Heading 1",
    one based on that, and a paragraph naming a style the file does not define."""
    document = docx.Document()
    chapter = document.styles.add_style("Chapter", WD_STYLE_TYPE.PARAGRAPH)
    chapter.base_style = document.styles["Heading 1"]
    part = document.styles.add_style("Part of a chapter", WD_STYLE_TYPE.PARAGRAPH)
    part.base_style = document.styles["Heading 2"]
    document.add_paragraph("River birds", style="Title")
    document.add_paragraph("An introduction.")
    document.add_paragraph("Herons", style="Chapter")
    document.add_paragraph(HERON)
    document.add_paragraph("Feeding", style="Part of a chapter")
    stray = document.add_paragraph("Herons stand still in shallow water.")
    stray._p.style = "NoSuchStyle"  # Word reads it in the default style: body text
    return _save(document)


def pptx_file(*, empty: bool = False) -> bytes:
    deck = pptx.Presentation()
    if empty:
        deck.slides.add_slide(deck.slide_layouts[6])
        return _save(deck)
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Spring survey"
    first.placeholders[1].text = "Count the nests\nNote the weather"
    first.notes_slide.notes_text_frame.text = "Start at the bridge."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Results"
    shape = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2))
    for r, row in enumerate([("Site", "Nests"), ("Mill pond", "14"), ("Weir", "9")]):
        for c, text in enumerate(row):
            shape.table.cell(r, c).text = text
    third = deck.slides.add_slide(deck.slide_layouts[6])  # pictures only: no text
    third.shapes.add_shape(1, Inches(1), Inches(1), Inches(2), Inches(2))
    fourth = deck.slides.add_slide(deck.slide_layouts[6])
    group = fourth.shapes.add_group_shape()
    box = group.shapes.add_textbox(Inches(1), Inches(3), Inches(4), Inches(1))
    box.text_frame.text = "Kingfishers were seen at the weir."
    low = fourth.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1))
    low.text_frame.text = "Next survey in autumn."
    return _save(deck)


def _save(document: object) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def encrypted(data: bytes, password: str = "s3cret") -> bytes:
    """An Office file as Office saves it with a password (agile encryption, OLE wrapper)."""
    office = OOXMLFile(io.BytesIO(data))
    out = io.BytesIO()
    office.encrypt(password, out)
    return out.getvalue()


def old_word_doc() -> bytes:
    """The start of an OLE compound file with a WordDocument stream, as a .doc has."""
    name = "WordDocument".encode("utf-16-le")
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504 + name + b"\x00" * 512


# Spreadsheets


def xlsx_file(*, far_cell: tuple[int, int] | None = None, empty: bool = False) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet("Sightings")
    if not empty:
        sheet.write_row(0, 0, ["Bird", "Site", "Count", "Seen on", "Ringed"])
        dates = book.add_format({"num_format": "yyyy-mm-dd"})
        for i in range(1, 121):
            sheet.write_row(i, 0, [f"bird {i}", "Mill pond" if i % 2 else "Weir", i % 7])
            sheet.write_datetime(i, 3, _date(i), dates)
            sheet.write_boolean(i, 4, i % 3 == 0)
        sheet.write_row(121, 0, ["Bittern", "Reed bed", 1])
        notes = book.add_worksheet("Notes")
        notes.write(2, 1, "Observer")  # a header that starts at B3
        notes.write(3, 1, "Ada Lovelace")
    if far_cell:
        sheet.write(*far_cell, "stray")
    book.close()
    return out.getvalue()


def xlsx_with_cells(sheet_data: bytes) -> bytes:
    """A workbook whose first sheet's <sheetData> is `sheet_data`, written by hand (cells
    without references, blank far cells: what other programs, or attackers, write)."""
    return rewritten(
        xlsx_file(empty=True),
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace(b"<sheetData/>", b"<sheetData>" + sheet_data + b"</sheetData>"),
    )


def _date(i: int):  # noqa: ANN202
    import datetime as dt

    return dt.datetime(2024, 3, 1) + dt.timedelta(days=i)


# HTML, EPUB, ODT


def html_page(remote: str = "http://127.0.0.1:9") -> bytes:
    return f"""<!DOCTYPE html>
<html><head><meta charset="windows-1252"><title>River birds</title>
<link rel="stylesheet" href="{remote}/style.css"><script src="{remote}/app.js"></script>
<script>document.write("tracking")</script><style>p {{ color: red }}</style></head>
<body><header><a href="/">Home</a> <a href="/birds">Birds</a> <a href="/about">About</a></header>
<nav><ul><li><a href="/a">Sitemap</a></li></ul></nav>
<div class="sidebar"><a href="/1">Ducks</a> <a href="/2">Geese</a> <a href="/3">Swans</a></div>
<main><h1>River birds</h1><p>A short guide, café edition.</p>
<h2>Herons</h2><p>{HERON}</p><img src="{remote}/heron.jpg" alt="a heron">
<iframe src="{remote}/frame.html"></iframe>
<h3>Feeding</h3><p>Herons stand still in   shallow
water.</p><table><tr><th>Bird</th><th>Wingspan</th></tr>
<tr><td>Grey heron</td><td>185 cm</td></tr></table>
<p hidden>Hidden text</p><div style="display: none">Invisible text</div>
<h2>Kingfishers</h2><p>The kingfisher dives from a perch.</p></main>
<footer>Copyright footer text</footer></body></html>""".encode("cp1252")


def epub_file(remote: str = "http://127.0.0.1:9", *, drm: bool = False) -> bytes:
    chapter = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head>
<body>{body}</body></html>"""
    members: dict[str, bytes | str] = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
</rootfiles></container>""",
        "OEBPS/content.opf": """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Birds</dc:title></metadata>
<manifest>
<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
<item id="c1" href="text/chapter%201.xhtml" media-type="application/xhtml+xml"/>
<item id="c2" href="text/chapter2.xhtml" media-type="application/xhtml+xml"/>
</manifest>
<spine><itemref idref="nav"/><itemref idref="c1"/><itemref idref="c2"/></spine></package>""",
        "OEBPS/nav.xhtml": chapter.format(
            title="Contents",
            body="""
<nav xmlns:epub="http://www.idpf.org/2007/ops" epub:type="toc"><ol>
<li><a href="text/chapter%201.xhtml">Prologue at the river</a></li>
<li><a href="text/chapter2.xhtml#k">Kingfishers</a></li></ol></nav>""",
        ),
        "OEBPS/text/chapter 1.xhtml": chapter.format(
            title="One",
            body=f"""
<p>Morning mist lay on the water.</p><img src="{remote}/cover.jpg"/>
<h2>Herons</h2><p>{HERON}</p>""",
        ),
        "OEBPS/text/chapter2.xhtml": chapter.format(
            title="Two",
            body="""
<h1 id="k">Kingfishers</h1><p>The kingfisher dives from a perch above the stream.</p>""",
        ),
    }
    if drm:
        members["META-INF/encryption.xml"] = """<?xml version="1.0"?>
<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
 xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>
<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
<enc:CipherData><enc:CipherReference URI="OEBPS/text/chapter2.xhtml"/></enc:CipherData>
</enc:EncryptedData></encryption>"""
    return zip_of(members, first_stored="mimetype")


ODT_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/"'
)
ODT_BODY = f"""
<text:table-of-content><text:index-body><text:p>Herons ....... 1</text:p></text:index-body>
</text:table-of-content>
<text:p>Notes from the river.</text:p>
<text:h text:outline-level="1">Herons</text:h>
<text:p>{HERON.replace("grey heron", "grey<text:s text:c='2'/>heron")}</text:p>
<text:tracked-changes><text:changed-region><text:deletion><text:p>Deleted words</text:p>
</text:deletion></text:changed-region></text:tracked-changes>
<text:p>Seen<office:annotation><dc:creator>Ada</dc:creator><text:p>A comment</text:p>
</office:annotation> at dawn.</text:p>
<text:list><text:list-item><text:p>Tall trees</text:p></text:list-item></text:list>
<text:h text:outline-level="2">Numbers</text:h>
<table:table><table:table-row><table:table-cell><text:p>Site</text:p></table:table-cell>
<table:table-cell><text:p>Nests</text:p></table:table-cell>
<table:table-cell table:number-columns-repeated="16000"/></table:table-row>
<table:table-row><table:table-cell><text:p>Weir</text:p></table:table-cell>
<table:table-cell><text:p>9</text:p></table:table-cell></table:table-row>
<table:table-row table:number-rows-repeated="1048000"><table:table-cell/></table:table-row>
</table:table>"""


def odt_file(*, body: str = ODT_BODY, encrypted_parts: bool = False) -> bytes:
    encryption = (
        "<manifest:encryption-data manifest:checksum-type='SHA1/1K' manifest:checksum='x'>"
        "<manifest:algorithm manifest:algorithm-name='Blowfish CFB'/></manifest:encryption-data>"
        if encrypted_parts
        else ""
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODT_NS}>'
        f"<office:body><office:text>{body}</office:text></office:body></office:document-content>"
    )
    return zip_of(
        {
            "mimetype": "application/vnd.oasis.opendocument.text",
            "META-INF/manifest.xml": (
                '<?xml version="1.0"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                '<manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.text"/>'
                '<manifest:file-entry manifest:full-path="content.xml" '
                f'manifest:media-type="text/xml">{encryption}</manifest:file-entry>'
                "</manifest:manifest>"
            ),
            "content.xml": content.encode() if not encrypted_parts else b"\x8f\x13" * 500,
        },
        first_stored="mimetype",
    )


CSV = (
    "Bird;Site;Count;Notes\r\n"
    'Grey heron;Mill pond;14;"nests high; by the oak"\r\n'
    'Kingfisher;Weir;2;"seen at dawn,\r\nand again at dusk"\r\n'
    "Bittern;Reed bed;1;heard from the café\r\n"
).encode("cp1252")


# Hostile files


def rewritten(data: bytes, member: str, change: Callable[[bytes], bytes]) -> bytes:
    """The ZIP `data` with `member` replaced by `change(its bytes)`, everything else kept
    (and "mimetype" kept first and stored, as EPUB and ODF want)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {i.filename: archive.read(i) for i in archive.infolist()}
    members[member] = change(members[member])
    return zip_of(members, first_stored="mimetype" if "mimetype" in members else None)


def external_entities(xml: bytes, root: bytes, urls: list[str], where: bytes) -> bytes:
    """`xml` with a DOCTYPE declaring one external entity per URL (an XXE attack) and
    the entities referenced in place of `where`; `root` is the root element's name."""
    names = [f"ext{i}" for i in range(len(urls))]
    entities = "".join(f'<!ENTITY {n} SYSTEM "{u}">' for n, u in zip(names, urls, strict=True))
    doctype = f"<!DOCTYPE {root.decode()} [{entities}]>".encode()
    start = xml.index(b"<" + root)
    refs = " ".join(f"&{n};" for n in names).encode()
    return xml[:start] + doctype + xml[start:].replace(where, refs, 1)


# Hostile ZIPs


@functools.cache
def _bomb() -> bytes:
    """A ZIP holding 300 MiB of spaces in 0.3 MB: the same ratio (1,000:1) as the 1.17 MB
    PDF of issue 13 that inflated to 1.2 GB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("filler.xml", "w", force_zip64=True) as member:
            block = b" " * (1 << 20)
            for _ in range(300):
                member.write(block)
    return out.getvalue()


def bombed(data: bytes) -> bytes:
    """A real document with the bomb's entry added beside its own."""
    out = io.BytesIO(_bomb())
    with zipfile.ZipFile(out, "a") as archive, zipfile.ZipFile(io.BytesIO(data)) as real:
        for member in real.infolist():
            archive.writestr(member, real.read(member))
    return out.getvalue()


def lying_about(data: bytes, member: str, size: int) -> bytes:
    """`data` with `member`'s declared unpacked size replaced by `size` (CRC kept), in
    its local header and in the central directory."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    patched = bytearray(data)
    struct.pack_into("<I", patched, info.header_offset + 22, size)
    central = patched.find(b"PK\x01\x02")
    while central >= 0:
        name_length = struct.unpack_from("<H", patched, central + 28)[0]
        if patched[central + 46 : central + 46 + name_length] == member.encode():
            struct.pack_into("<I", patched, central + 24, size)
            return bytes(patched)
        central = patched.find(b"PK\x01\x02", central + 4)
    raise AssertionError(f"{member} not in the central directory")


def entries_encrypted(data: bytes) -> bytes:
    """`data` with every entry flagged as encrypted (ZIP's own, "traditional" password)."""
    patched = bytearray(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    for info in archive.infolist():
        patched[info.header_offset + 6] |= 0x1
    central = patched.find(b"PK\x01\x02")
    while central >= 0:
        patched[central + 8] |= 0x1
        central = patched.find(b"PK\x01\x02", central + 4)
    return bytes(patched)
