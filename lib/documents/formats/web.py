"""HTML pages: the main text, cut into sections at its headings; no scripts, no navigation.

The main text is the page's `<main>` (or `role="main"`), else its only `<article>`, else
its body (a table that lays the page out is read as text, any other as rows that keep
their headers); from it are dropped scripts, styles, embedded objects, forms, `<nav>`,
`<aside>`, the page's own `<header>`/`<footer>` (not an article's), anything hidden or
with a navigation role, and link lists: a list or box with three or more links whose
text is at least 80% link text is a menu, even without semantic markup. A page that is
only links keeps them rather than coming out empty.

Library, and why: lxml (BSD; libxml2's HTML parser), already installed for python-docx
and python-pptx, so HTML and the XHTML chapters of an EPUB cost no extra package. It
parses broken markup forgivingly and never loads anything a page names (no DTDs, no
network, no scripts: it is a parser). trafilatura and readability-lxml pick the main text
by scoring paragraphs, which on documentation pages drops short sections, tables and code
(the pages people upload to ask about); selectolax (Lexbor) is faster but would be a
second HTML parser beside lxml for no gain at upload sizes. What lxml gets wrong: it
follows HTML 4 rules for implied end tags, which can nest some HTML5 markup differently
than a browser; the text is the same.

Speed and memory (`bench/formats.py`, 2 cores): 1.9 MB of text a second (a 2 MB page
of the R manuals: 1.05 s, 17 MB peak RSS growth). lxml holds the whole tree, which
costs about 165 bytes a tag (start and end tags both) and 5.5 a character of text: a 58
MB page of the R manuals' paragraphs (393,000 tags) peaked at +371 MB while parsed
(+470 MB for the whole upload, the keyword index's build the peak, since chunks are
ranges: +590 MB before), but 24 MB of small tags (4.8 million, from
"<p><b>a</b> <i>b</i> <span>c</span></p>") at +882 MB. So a page of more than
`MAX_TAGS` tags, counted as its "<" before parsing, is refused, saying so: a million
tags cost about 165 MB, beside the 275 MB of 50 MB (the upload limit) of text.

The encoding comes from a byte-order mark, then the page's `<meta charset>` or XML
declaration, then detection as for text files.
"""

from __future__ import annotations

import re

from lxml import etree
from lxml import html as lxml_html

from lib.documents.extract import Opened, decode_text
from lib.documents.formats.sections import Block, opened, sections, table_lines, tidy
from lib.errors import FileTooLarge, UnreadableDocument

_DROP = ("script", "style", "noscript", "template", "iframe", "object", "embed", "svg",
         "math", "canvas", "nav", "aside", "form", "button", "select", "textarea", "dialog",
         "video", "audio", "map", "head")  # fmt: skip
_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search", "menu",
          "menubar", "toolbar")  # fmt: skip
_BLOCKS = {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd",
           "blockquote", "figure", "figcaption", "caption", "address", "details", "summary",
           "hr", "header", "footer", "body", "center", "tr"}  # fmt: skip
_HEADING = re.compile(r"^h([1-6])$")
# A table whose cells hold paragraphs, headings, lists or tables lays out a page (old
# sites, mail): it is read as text, not as rows ("River birdsAn old site.Herons...").
_LAYOUT = " | ".join(f".//{t}" for t in ("p", "div", "table", "ul", "ol", "pre", "blockquote",
                                         "h1", "h2", "h3", "h4", "h5", "h6"))  # fmt: skip
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_WHITESPACE = re.compile(r"\s+")
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
MAX_TAGS = 1_000_000
LINK_SHARE = 0.8
MIN_LINKS = 3


def open_html(name: str, data: bytes) -> Opened:
    try:
        text = decode_html(name, data)
    except UnreadableDocument as exc:  # no text encoding fits: binary
        raise _binary(name) from exc
    blocks = html_blocks(name, text)
    return opened(name, "html", "lxml", sections(blocks), "")


def decode_html(name: str, data: bytes) -> str:
    if not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        declared = _CHARSET.search(data[:4096]) or re.search(
            rb"""^\s*<\?xml[^>]*encoding=["']([\w.:-]+)""", data[:200]
        )
        if declared:
            try:
                return data.decode(declared.group(1).decode("ascii"))
            except (LookupError, UnicodeDecodeError):
                pass  # a wrong or unknown declaration: detect instead
    return decode_text(name, data)[0]


def html_blocks(name: str, text: str) -> list[Block]:
    """The main text of an HTML (or XHTML) document as headings and paragraphs."""
    text = _XML_DECL.sub("", text, count=1)
    if "\x00" in text:
        raise _binary(name)
    tags = text.count("<")
    if tags > MAX_TAGS:
        raise FileTooLarge(
            f"{name} has about {tags:,} tags, more than the {MAX_TAGS:,} Parley reads in one "
            "HTML page (each costs about 165 bytes of memory while the page is read).",
            hint="Save it as PDF or plain text from the browser, or split it, and upload that.",
        )
    blocks = _main_blocks(text, drop_link_lists=True)
    return blocks or _main_blocks(text, drop_link_lists=False)


def _binary(name: str) -> UnreadableDocument:
    return UnreadableDocument(
        f"{name} is not an HTML page: it contains binary data.", hint="Check the file."
    )


def _main_blocks(text: str, *, drop_link_lists: bool) -> list[Block]:
    if not text.strip():
        return []
    # huge_tree: without it libxml2 drops a text node over 10 MB and says nothing (a page
    # of a heading and a 12 MB <pre> was read as its 3-letter heading).
    parser = lxml_html.HTMLParser(
        remove_comments=True, remove_pis=True, no_network=True, huge_tree=True
    )
    try:
        root = lxml_html.document_fromstring(text, parser=parser)
    except (etree.ParserError, ValueError):  # "Document is empty" and the like
        return []
    container = _main(root)
    _drop_chrome(container)
    if drop_link_lists:
        _drop_link_lists(container)
    return _blocks(container)


def _main(root: lxml_html.HtmlElement) -> lxml_html.HtmlElement:
    main = root.xpath("//main | //*[@role='main']")
    if main:
        return main[0]
    articles = root.xpath("//article")
    if len(articles) == 1:
        return articles[0]
    body = root.find("body")
    return body if body is not None else root


def _drop_chrome(container: lxml_html.HtmlElement) -> None:
    roles = " or ".join(f"@role='{r}'" for r in _ROLES)
    tags = " | ".join(f".//{t}" for t in _DROP)
    doomed = container.xpath(
        f"{tags} | .//*[{roles}] | .//*[@hidden] | .//*[@aria-hidden='true']"
        " | .//header[not(ancestor::article or ancestor::main)]"
        " | .//footer[not(ancestor::article or ancestor::main)]"
    )
    doomed += [e for e in container.xpath(".//*[@style]") if _HIDDEN.search(e.get("style"))]
    for element in doomed:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text after it


def _drop_link_lists(container: lxml_html.HtmlElement) -> None:
    for element in container.xpath(".//ul | .//ol | .//div | .//table | .//menu | .//p"):
        if element.getparent() is None or element is container:
            continue
        links = element.xpath(".//a")
        if len(links) < MIN_LINKS:
            continue
        total = len(_WHITESPACE.sub("", element.text_content()))
        linked = sum(len(_WHITESPACE.sub("", a.text_content())) for a in links)
        if total and linked / total >= LINK_SHARE:
            element.drop_tree()


def _blocks(container: lxml_html.HtmlElement) -> list[Block]:
    out: list[Block] = []
    buf: list[str] = []
    level, pre = 0, 0

    def flush() -> None:
        joined = "".join(buf)
        buf.clear()
        text = joined if pre else "\n".join(tidy(line) for line in joined.split("\n"))
        if text.strip():
            out.append(Block(text.strip("\n"), level))

    def add(piece: str | None) -> None:
        if piece:
            buf.append(piece if pre else _WHITESPACE.sub(" ", piece))

    walk = etree.iterwalk(container, events=("start", "end"))
    for event, element in walk:
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        heading = _HEADING.match(tag)
        if event == "start":
            if tag == "table" and not element.xpath(_LAYOUT):
                flush()
                out.extend(Block(line) for line in table_lines(_table_rows(element)))
                walk.skip_subtree()
                continue
            if tag in _BLOCKS or heading or tag == "pre":
                flush()
            level = int(heading.group(1)) if heading else level
            pre += tag == "pre"
            if tag == "br":
                buf.append("\n")
            elif tag in ("td", "th") and buf:
                buf.append(" | ")
            add(element.text)
        else:
            if (tag in _BLOCKS or heading or tag == "pre") and tag != "table":
                flush()
            if heading:
                level = 0
            pre -= tag == "pre"
            add(element.tail)
    flush()
    return out


def _table_rows(table: lxml_html.HtmlElement) -> list[list[str]]:
    for br in table.iter("br"):  # "Heron<br>(grey)" is two words, not "Heron(grey)"
        br.tail = "\n" + (br.tail or "")
    return [
        [cell.text_content() for cell in row.xpath("./td | ./th")]
        for row in table.iter("tr")
        if next(row.iterancestors("table")) is table  # not a nested table's rows
    ]
