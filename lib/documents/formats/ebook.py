"""EPUB e-books: the chapters in reading order, one page per section, as for HTML.

An EPUB is a ZIP of XHTML chapters with a package file (OPF) listing them in reading
order (the spine). Each chapter is read by `web.html_blocks` and cut at its headings;
text before a chapter's first heading, or a chapter with none, is labelled with the
chapter's title from the book's table of contents (EPUB 3 nav or EPUB 2 NCX), else
"part n". The table of contents itself is not indexed: retrieval is better without it.

Library, and why: none beyond lxml. ebooklib (the common choice) is AGPL-3.0, loads
every item of the book, images included, into memory, and adds nothing needed here
that the 60 lines below do not: container.xml → OPF → spine → chapters. Reading the ZIP
here also keeps it behind `archive.open_zip`. The XML is parsed with entities and DTDs
off and no network.

`bench/formats.py`: 3.4 MB of text a second (2 MB in 34 chapters: 0.6 s, 10 MB peak RSS
growth), each chapter parsed and dropped in turn.

A book whose chapters are encrypted (DRM: META-INF/encryption.xml naming content files)
is refused as protected; font obfuscation, which only scrambles embedded fonts, is not.
"""

from __future__ import annotations

import posixpath
import zipfile
from urllib.parse import unquote

from lxml import etree

from lib.documents.extract import Opened, Page
from lib.documents.formats import archive
from lib.documents.formats.sections import PREAMBLE, damaged, opened, parse_xml, sections
from lib.documents.formats.web import decode_html, html_blocks
from lib.errors import EncryptedDocument, ParleyError

FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
_CHAPTER_TYPES = {"application/xhtml+xml", "text/html"}


def _by_name(tree: etree._Element, local: str) -> list[etree._Element]:
    return tree.xpath(f"//*[local-name()='{local}']")


def open_epub(name: str, data: bytes) -> Opened:
    zipped = archive.open_zip(name, data, "an EPUB e-book")
    _refuse_drm(name, zipped)
    try:
        _, manifest, spine, toc_id = _package(zipped)
        titles = _toc_titles(zipped, manifest, toc_id)
        pages, notes = _chapters(name, zipped, manifest, spine, titles)
    except ParleyError:
        raise
    except Exception as exc:  # a missing container or package file, broken XML
        raise damaged(name, "an EPUB e-book", exc) from exc
    result = opened(name, "epub", "lxml", pages, "")
    result.notes += notes
    return result


def _refuse_drm(name: str, zipped: zipfile.ZipFile) -> None:
    if "META-INF/encryption.xml" not in zipped.namelist():
        return
    tree = parse_xml(archive.read_member(zipped, "META-INF/encryption.xml"))
    for method in _by_name(tree, "EncryptionMethod"):
        if method.get("Algorithm") not in FONT_OBFUSCATION:
            raise EncryptedDocument(
                f"{name} is protected by DRM: its chapters are encrypted.",
                hint="Parley cannot read DRM-protected e-books; upload a DRM-free copy.",
            )


def _package(zipped: zipfile.ZipFile) -> tuple[str, dict, list[str], str | None]:
    """(OPF path, id → (member, media type, properties), spine ids, NCX id)."""
    container = parse_xml(archive.read_member(zipped, "META-INF/container.xml"))
    opf_path = _by_name(container, "rootfile")[0].get("full-path")
    opf = parse_xml(archive.read_member(zipped, opf_path))
    base = posixpath.dirname(opf_path)
    manifest = {
        item.get("id"): (
            posixpath.normpath(posixpath.join(base, unquote(item.get("href", "")))),
            item.get("media-type", ""),
            item.get("properties", ""),
        )
        for item in _by_name(opf, "item")
    }
    spine_element = _by_name(opf, "spine")
    toc_id = spine_element[0].get("toc") if spine_element else None
    spine = [ref.get("idref") for ref in _by_name(opf, "itemref")]
    return opf_path, manifest, spine, toc_id


def _toc_titles(zipped: zipfile.ZipFile, manifest: dict, toc_id: str | None) -> dict[str, str]:
    """Chapter member → its title in the table of contents (the first entry naming it)."""
    titles: dict[str, str] = {}
    for member, _media, properties in manifest.values():
        if "nav" in properties.split():
            nav = parse_xml(archive.read_member(zipped, member))
            for link in _by_name(nav, "a"):
                _add_title(titles, member, link.get("href", ""), "".join(link.itertext()))
    if not titles and toc_id in manifest:
        member = manifest[toc_id][0]
        ncx = parse_xml(archive.read_member(zipped, member))
        for point in _by_name(ncx, "navPoint"):
            label = point.xpath("./*[local-name()='navLabel']//text()")
            content = point.xpath("./*[local-name()='content']/@src")
            if content:
                _add_title(titles, member, content[0], "".join(label))
    return titles


def _add_title(titles: dict[str, str], toc_member: str, href: str, title: str) -> None:
    target = unquote(href.split("#", 1)[0])
    if target and title.strip():
        member = posixpath.normpath(posixpath.join(posixpath.dirname(toc_member), target))
        titles.setdefault(member, " ".join(title.split()))


def _chapters(
    name: str, zipped: zipfile.ZipFile, manifest: dict, spine: list[str], titles: dict
) -> tuple[list[Page], list[str]]:
    pages: list[Page] = []
    missing = 0
    names = set(zipped.namelist())
    for part, idref in enumerate(spine, start=1):
        member, media, properties = manifest.get(idref, ("", "", ""))
        if media not in _CHAPTER_TYPES or "nav" in properties.split():
            continue
        if member not in names:
            missing += 1
            continue
        text = decode_html(name, archive.read_member(zipped, member))
        fallback = f"§ {titles[member]}" if member in titles else f"part {part}"
        for page in sections(html_blocks(name, text)):
            label = fallback if page.label in (None, PREAMBLE) else page.label
            pages.append(Page(None, label, page.text))
    notes = [f"{missing} chapter(s) listed in the book are missing from it."] if missing else []
    return pages, notes
