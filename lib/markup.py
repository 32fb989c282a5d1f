"""Text from untrusted sources made safe to show as Markdown: nothing in it loads by itself.

Streamlit renders Markdown (remark with GFM, math and directives) in `st.markdown`,
captions, alerts, and in widget labels and tooltips. Its HTML is disabled, so the one
construct that makes the browser fetch a URL unasked is an image, `![alt](url)`, in any
of its forms (inline, `![alt][ref]`, `![ref]`, inside a link). A reply or a document
that gets the model to write one leaks whatever it puts in the URL to that host.

- `escape` turns text that should read as typed (titles, file names, prompts, search
  snippets) into Markdown that renders exactly that text: every ASCII punctuation
  character is backslash-escaped, which CommonMark allows for all of them, so no
  construct (image, link, directive, math, HTML) can start.
- `neutralise` keeps model output's formatting and rewrites each image into a link that
  says where it goes (or into text when it may not be a link), and escapes every other
  `![` outside code, so no CommonMark parser can read an image there.

It parses with markdown-it-py (CommonMark, plus GFM tables and strikethrough) rather
than regular expressions, so code spans, code blocks, escapes and reference images are
told apart as the spec says. The parser gives no positions for inline constructs, so
hooks on its inline rules record where each `![`, code span, escape and autolink starts
in its block's text, and each is mapped back to the source and checked there. Every
`![` in the source must then be explained (an image, a failed image, code, an escaped
`!`); if one is not (deep nesting past the parser's limit, a `![` in a link
definition, a parser disagreement), the whole text falls back to escaping every `![`,
code included. The result is parsed once more and must hold no image.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from markdown_it import MarkdownIt, rules_inline
from markdown_it.rules_core.state_core import StateCore
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token

# What can start Markdown anywhere in a line: code, emphasis, links and images (which
# need "["), autolinks and HTML ("<"), entities, math, strikethrough, tables, directive
# labels and attributes. "(" and ")" only matter after "]", so they stay as they are.
ALWAYS_ESCAPED = frozenset("\\`*_{}[]<>!|~$&")
# What starts a block at the beginning of a line: headings, lists, setext underlines,
# thematic breaks, ordered lists ("1." and "1)"), and "::" directives.
_LINE_START = re.compile(r"^([ \t]*)(?:([#+=-])|(\d{1,9})([.)]))", re.MULTILINE)
PLACE_LENGTH = 48  # characters of an image's host and path shown in its link
# markdown-it-py parses about 300 KB/s here, and a text is parsed twice: past this many
# characters (far beyond a usual reply) the blunt fallback is used instead.
PRECISE_LIMIT = 32_000
PRECISE_IMAGES = 100  # and past this many "![" (a real reply has a handful at most)
_KEY = "parley_markup"
_BANG = re.compile(r"!\[")


def escape(text: str) -> str:
    """`text` as Markdown that shows exactly `text`: no formatting, link or image.

    Only what could start a construct is escaped, so ordinary punctuation (".", ",",
    "?", "(", "-" mid-line) stays readable in the Markdown source too."""
    text = _NORMALISE.sub("\n", text)
    escaped = "".join("\\" + c if c in ALWAYS_ESCAPED else c for c in text)
    escaped = escaped.replace("::", "\\:\\:")
    return break_autolinks(_LINE_START.sub(_escape_line_start, escaped))


# GFM's autolink literals (remark-gfm: "https://", "www.", "a@b.c") become links in the
# text itself, after every escape is resolved, so no backslash stops them: a file named
# "see [the docs](https://evil.example/login).txt", escaped, still showed a live link.
# An invisible WORD JOINER (U+2060) before "//", "." or "@" leaves nothing to match.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(?<=https:)(?=//)|(?<=http:)(?=//)|(?<=\bwww)(?=\.)|(?<=[-.\w+])(?=@)")


def break_autolinks(text: str) -> str:
    """A WORD JOINER wherever GFM would start an autolink literal (see _AUTOLINK)."""
    return _AUTOLINK.sub(WORD_JOINER, text)


def _escape_line_start(match: re.Match[str]) -> str:
    indent, marker, digits, delimiter = match.groups()
    return f"{indent}\\{marker}" if marker else f"{indent}{digits}\\{delimiter}"


def escape_keeping(text: str, marker: str) -> str:
    """`escape(text)`, but each `marker` stays Markdown: search snippets mark their
    matches with `**`. Only emphasis can come of it, whatever the text holds."""
    return marker.join(escape(part) for part in text.split(marker))


def neutralise(markdown: str) -> str:
    """Model output as Markdown that keeps its formatting but loads nothing by itself."""
    if "![" not in markdown:
        return markdown  # an image needs a literal "![": most replies stop here
    source = _NORMALISE.sub("\n", markdown).replace("\0", "\ufffd")
    precise = len(source) <= PRECISE_LIMIT and source.count("![") <= PRECISE_IMAGES
    rewritten = _rewrite(source) if precise else None
    if rewritten is None or has_image(rewritten):
        return escape_every_bang(source)
    return rewritten


def escape_every_bang(markdown: str) -> str:
    """The blunt fallback: no "![" anywhere (inside code a backslash then shows)."""
    return markdown.replace("![", "!\\[")


def has_image(markdown: str) -> bool:
    """Whether markdown-it reads an image anywhere in `markdown`."""
    return any(_images(token) for token in _MD.parse(markdown, {}))


def _images(token: Token) -> bool:
    return token.type == "image" or any(_images(child) for child in token.children or [])


# Recording where inline constructs start, per block of inline text


@dataclass
class _Mark:
    kind: str  # image, bang (a "![" that is no image), code, escape, autolink
    start: int
    end: int
    token: Token | None = None
    in_link: bool = False


@dataclass
class _Records:
    block: Token | None = None
    marks: dict[int, list[_Mark]] = field(default_factory=dict)

    def add(self, state: StateInline, mark: _Mark) -> None:
        if self.block is not None and state.src is self.block.content:
            self.marks.setdefault(id(self.block), []).append(mark)


def _recording(kind: str, rule: Callable[[StateInline, bool], bool]) -> Callable:
    def hooked(state: StateInline, silent: bool) -> bool:
        start, count = state.pos, len(state.tokens)
        ok = rule(state, silent)
        records = state.env.get(_KEY) if not silent else None
        if records is not None:
            mark = _mark(kind, ok, state, start, count)
            if mark is not None:
                records.add(state, mark)
        return ok

    return hooked


def _mark(kind: str, ok: bool, state: StateInline, start: int, count: int) -> _Mark | None:
    src, end = state.src, state.pos
    if kind == "image":
        if ok:
            return _Mark("image", start, end, state.tokens[-1], state.linkLevel > 0)
        return _Mark("bang", start, start + 2) if src.startswith("![", start) else None
    if not ok:
        return None
    if kind == "code":  # an unmatched backtick run is consumed as text: no code span
        made = len(state.tokens) > count and state.tokens[-1].type == "code_inline"
        return _Mark("code", start, end) if made else None
    if kind == "escape":
        return _Mark("escape", start, end) if src.startswith("\\!", start) else None
    return _Mark(kind, start, end)


def _inline_blocks(state: StateCore) -> None:
    """markdown-it's core "inline" rule, telling the hooks which block they are in."""
    records = state.env.get(_KEY)
    for token in state.tokens:
        if token.type == "inline":
            if records is not None:
                records.block = token
            token.children = token.children if token.children is not None else []
            state.md.inline.parse(token.content, state.md, state.env, token.children)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.core.ruler.at("inline", _inline_blocks)
    hooks = {
        "image": ("image", rules_inline.image),
        "backticks": ("code", rules_inline.backtick),
        "escape": ("escape", rules_inline.escape),
        "autolink": ("autolink", rules_inline.autolink),
    }
    for name, (kind, rule) in hooks.items():
        md.inline.ruler.at(name, _recording(kind, rule))
    return md


_MD = _parser()
_NORMALISE = re.compile(r"\r\n?")


# Mapping a block's inline text back to the source


class _Unplaced(Exception):
    """A mark could not be placed in the source with certainty."""


@dataclass
class _Source:
    text: str
    lines: list[str]
    starts: list[int]
    cursors: dict[int, int] = field(default_factory=dict)  # table rows: where the next cell is

    @classmethod
    def of(cls, text: str) -> _Source:
        lines = text.split("\n")
        starts, at = [], 0
        for line in lines:
            starts.append(at)
            at += len(line) + 1
        return cls(text, lines, starts)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1


def _placer(source: _Source, block: Token, opener: Token) -> Callable[[int], int]:
    """A function from an offset in `block.content` to the same character's offset in the
    source. Each content line is the end of its source line (paragraphs), the text after
    the opening #s (ATX headings) or the next cell of its row (tables)."""
    first = (block.map or [0, 0])[0]
    placed: list[tuple[int, int, int, int]] = []  # content start, length, lead, source offset
    at = 0
    for i, line in enumerate(block.content.split("\n")):
        body = line.lstrip(" \t")
        number = first + i
        if number >= len(source.lines):
            raise _Unplaced
        column = _column(source, number, body, opener)
        placed.append((at, len(line), len(line) - len(body), source.starts[number] + column))
        at += len(line) + 1

    firsts = [start for start, *_ in placed]

    def place(offset: int) -> int:
        i = bisect.bisect_right(firsts, offset) - 1
        start, length, lead, where = placed[max(i, 0)]
        if not lead <= offset - start <= length:
            raise _Unplaced
        return where + offset - start - lead

    return place


def _column(source: _Source, number: int, body: str, opener: Token) -> int:
    line = source.lines[number]
    if opener.type in ("th_open", "td_open"):
        column = line.find(body, source.cursors.get(number, 0))
        if column >= 0:
            source.cursors[number] = column + len(body)
    elif opener.type == "heading_open" and opener.markup.startswith("#"):
        hashes = line.find("#")
        skip = len(line) - len(line[hashes:].lstrip("#").lstrip(" \t"))
        column = line.find(body, skip) if hashes >= 0 else -1
    elif opener.type in ("paragraph_open", "heading_open"):
        trimmed = line if line.endswith(body) else line.rstrip()
        column = len(trimmed) - len(body) if trimmed.endswith(body) else -1
    else:
        column = -1
    if column < 0:
        raise _Unplaced
    return column


# The rewrite


@dataclass
class _Placed:
    mark: _Mark
    start: int
    end: int


_SHAPES = {  # what each mark must look like in the source once placed
    "image": lambda s, a, b: s.startswith("![", a) and s[b - 1] in ")]",
    "bang": lambda s, a, b: s.startswith("![", a),
    "code": lambda s, a, b: s[a] == "`" and s[b - 1] == "`",
    "escape": lambda s, a, b: s.startswith("\\!", a),
    "autolink": lambda s, a, b: s[a] == "<" and s[b - 1] == ">",
}


def _rewrite(text: str) -> str | None:
    """`text` with its images as links and other "![" escaped; None when unsure."""
    records = _Records()
    tokens = _MD.parse(text, {_KEY: records})
    source = _Source.of(text)
    try:
        placed = _place_all(source, tokens, records)
    except _Unplaced:
        return None
    code_lines = {
        n for t in tokens if t.type in ("fence", "code_block") and t.map for n in range(*t.map)
    }
    if not _all_explained(source, placed, code_lines):
        return None
    pieces, at = [], 0
    for item in sorted(placed, key=lambda p: p.start):
        if item.mark.kind == "image":
            pieces += [text[at : item.start], _replacement(item.mark)]
            at = item.end
        elif item.mark.kind == "bang":
            pieces += [text[at : item.start + 1], "\\"]
            at = item.start + 1
    return "".join([*pieces, text[at:]])


def _place_all(source: _Source, tokens: list[Token], records: _Records) -> list[_Placed]:
    placed = []
    for i, token in enumerate(tokens):
        marks = records.marks.get(id(token)) if token.type == "inline" else None
        if not marks:
            continue
        place = _placer(source, token, tokens[i - 1] if i else token)
        for mark in marks:
            start, end = place(mark.start), place(mark.end)
            if not (0 <= start < end <= len(source.text)):
                raise _Unplaced
            if not _SHAPES[mark.kind](source.text, start, end):
                raise _Unplaced
            placed.append(_Placed(mark, start, end))
    return placed


def _all_explained(source: _Source, placed: list[_Placed], code_lines: set[int]) -> bool:
    """Whether every "![" in the source is an image, a failed one, code or escaped."""
    heads = {p.start for p in placed if p.mark.kind in ("image", "bang")}
    heads |= {p.start + 1 for p in placed if p.mark.kind == "escape"}
    spans = sorted((p.start, p.end) for p in placed if _hides(source, p))
    firsts = [start for start, _ in spans]
    for match in _BANG.finditer(source.text):
        at = match.start()
        if at in heads or source.line_of(at) in code_lines:
            continue
        i = bisect.bisect_left(firsts, at) - 1  # recorded spans never overlap
        if i < 0 or not spans[i][0] < at < spans[i][1]:
            return False
    return True


def _hides(source: _Source, item: _Placed) -> bool:
    """Whether a "![" inside this mark is no image of its own."""
    if item.mark.kind in ("image", "autolink"):
        return True
    if item.mark.kind != "code":
        return False
    # A GFM table splits code spans at "|": where a row might be read as a table by one
    # parser and as a paragraph by another, a code span there hides nothing.
    first, last = source.line_of(item.start), source.line_of(item.end - 1)
    return not any("|" in source.lines[n] for n in range(first, last + 1))


def _replacement(mark: _Mark) -> str:
    """An image as a link that says where it goes, or as text where a link cannot be."""
    token = mark.token or Token("image", "img", 0)
    alt = " ".join(_MD.renderer.renderInlineAsText(token.children, _MD.options, {}).split())
    src = str(token.attrs.get("src") or "")
    place, linkable = _place_of(src)
    label = f"image: {alt} — {place}" if alt else f"image: {place}"
    if mark.in_link:  # links cannot hold links: the outer one says where it goes
        return "🖼 " + escape(f"image: {alt}" if alt else "image")
    if not linkable:
        return "🖼 " + escape(label + " (not shown)")
    return f"🖼 [{escape(label)}](<{_destination(src)}>)"


def _place_of(src: str) -> tuple[str, bool]:
    """Where an image URL points, shortened, and whether a link to it may be shown."""
    try:
        parts = urlsplit(src)
        host = parts.hostname
        if host and parts.port:
            host += f":{parts.port}"
    except ValueError:
        return "an invalid address", False
    if parts.scheme in ("http", "https") and host:
        return _clip(host + parts.path.rstrip("/"), PLACE_LENGTH), True
    if parts.scheme == "data":
        return "inline data", False
    return (_clip(src, PLACE_LENGTH) if src else "no address"), False


def _destination(src: str) -> str:
    # markdown-it percent-encodes destinations already; these would end or escape <…>.
    return src.replace("\\", "%5C").replace("<", "%3C").replace(">", "%3E").replace("\n", "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
