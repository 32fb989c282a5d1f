"""lib/markup.py: untrusted text shown as Markdown loads nothing by itself.

The reference parser here is a plain markdown-it (CommonMark with GFM tables and
strikethrough, HTML off as in Streamlit, linkify on like GFM's autolink literals), not
the hooked one inside lib/markup.py; the browser test runs the same kinds of input
through Streamlit's own renderer.
"""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from lib import markup

REFERENCE = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(
    ["table", "strikethrough"]
)
BEACON = "http://127.0.0.1:9/beacon.gif?q=secret"


def images(markdown: str) -> list[str]:
    """Every image source the reference parser finds, at any depth."""
    found: list[str] = []

    def walk(tokens) -> None:  # noqa: ANN001 - markdown-it tokens
        for token in tokens or []:
            if token.type == "image":
                found.append(str(token.attrs.get("src")))
            walk(token.children)

    walk(REFERENCE.parse(markdown))
    return found


def assert_inert(markdown: str) -> str:
    out = markup.neutralise(markdown)
    assert images(out) == [], out
    assert "<img" not in REFERENCE.render(out)
    return out


# (input, text the output must contain): model output that tries to load something.
HOSTILE = {
    "inline image": (f"Look ![x]({BEACON}) here", ["(<" + BEACON + ">)", "127.0.0.1:9/beacon.gif"]),
    "inline with title": (f'![x]({BEACON} "t")', ["(<" + BEACON + ">)"]),
    "empty alt": (f"![]({BEACON})", ["🖼 [image: 127"]),
    "angle destination": (f"![x](<{BEACON}>)", ["(<" + BEACON + ">)"]),
    "full reference": (f"![x][r]\n\n[r]: {BEACON}", ["(<" + BEACON + ">)"]),
    "collapsed reference": (f"![r][]\n\n[r]: {BEACON}", ["(<" + BEACON + ">)"]),
    "shortcut reference": (f"![R]\n\n[r]: {BEACON}", ["(<" + BEACON + ">)"]),
    "definition first": (f"[r]: {BEACON}\n\n![r]", ["(<" + BEACON + ">)"]),
    "image in a link": (f"[![x]({BEACON})](http://h/page)", ["[🖼 image: x](http://h/page)"]),
    "image in an image": (f"![a ![b]({BEACON})](http://h/o.gif)", ["(<http://h/o.gif>)"]),
    "two images": (f"![a]({BEACON}) ![b]({BEACON})", ["image: a", "image: b"]),
    "double bang": (f"!![x]({BEACON})", ["!🖼 ["]),
    "in emphasis": (f"*![x]({BEACON})*", ["*🖼 ["]),
    "in a heading": (f"# Title ![x]({BEACON}) ##", ["# Title 🖼 ["]),
    "setext heading": (f"![x]({BEACON})\n===", ["\n==="]),
    "in a blockquote": (f"> > ![x]({BEACON})", ["> > 🖼 ["]),
    "in a list": (f"- a\n  - ![x]({BEACON})", ["  - 🖼 ["]),
    "tab indented": (f"- a\n\tb ![x]({BEACON})", ["\tb 🖼 ["]),
    "in a table": (f"| a | ![x]({BEACON}) |\n|---|---|\n| ![y]({BEACON}) | b |", ["| 🖼 ["]),
    "alt over lines": (f"![a\nb](\n{BEACON})", ["image: a b"]),
    "quoted over lines": (f"> ![a\n> b]({BEACON}) tail", ["> 🖼 [", ") tail"]),
    "unicode host": ("![x](http://exämple.com/b.gif)", ["xn--exmple-cua.com"]),
    "data uri png": ("![x](data:image/png;base64,iVBORw0KGgo=)", ["inline data (not shown)"]),
    "data uri svg": ("![x](data:image/svg+xml,<svg/>)", ["!\\[x]"]),
    "javascript": ("![x](javascript:alert(1))", ["!\\[x]"]),
    "relative": ("![x](/media/abc.png)", ["/media/abc.png (not shown)"]),
    "unterminated (streaming)": ("partial ![x](http://127.0.0.1:9/bea", ["!\\[x]"]),
    "bang at the end": ("wait for it ![", ["!\\["]),
    "footnote definition": (f"[^1]: ![x]({BEACON})", ["!\\[x]"]),
    "link title holding one": (f'[a](http://h "![x]({BEACON})")', ["!\\[x]"]),
    "past the nesting limit": (">" * 30 + f" ![x]({BEACON})", ["!\\[x]"]),
    "code span in a table row": (f"| `![x]({BEACON})` |\n|---|", ["!\\[x]"]),
    "escaped pipe in a cell": (f"| a \\| ![x]({BEACON}) |\n|---|", ["!\\[x]"]),
    "windows newlines": (f"a\r\n![x]({BEACON})", ["a\n🖼 ["]),
    "nul character": (f"\0![x]({BEACON})", ["\ufffd🖼 ["]),
    "math around it": (f"$![x]({BEACON})$", ["$🖼 ["]),
    "directive around it": (f":::note\n![x]({BEACON})\n:::", ["\n🖼 ["]),
    "text directive label": (f":red[![x]({BEACON})]", [":red[🖼 ["]),
    "many images": (f"![x]({BEACON}) " * 150, ["!\\[x]"]),
    "long text": ("word " * 8_000 + f"![x]({BEACON})", ["!\\[x]"]),
}


@pytest.mark.parametrize(("text", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_output_loads_nothing(text: str, expected: list[str]) -> None:
    out = assert_inert(text)
    for part in expected:
        assert part in out


# Text that must come through untouched: no image, or "![" only inside code.
UNTOUCHED = {
    "plain": "Just **bold**, _emphasis_, `code` and a [link](http://h/page).",
    "escaped bang": f"\\![x]({BEACON})",
    "escaped bracket": f"!\\[x]({BEACON})",
    "entity": f"&#33;[x]({BEACON})",
    "raw html img": f'<img src="{BEACON}">',
    "raw html iframe": f'<iframe src="{BEACON}"></iframe>',
    "angle autolink": f"<{BEACON}>",
    "bare url": f"See {BEACON} for the picture.",
    "link to an image": f"[the picture]({BEACON})",
    "code span": f"Write `![x]({BEACON})` in your README.",
    "double backtick span": f"``![x]({BEACON}) ` ``",
    "fenced code": f"```markdown\n![x]({BEACON})\n```",
    "tilde fence": f"~~~\n![x]({BEACON})\n~~~",
    "unclosed fence (streaming)": f"```\n![x]({BEACON})",
    "indented code": f"Example:\n\n    ![x]({BEACON})",
    "fence in a list": f"- step:\n\n  ```\n  ![x]({BEACON})\n  ```",
    "fence in a quote": f"> ```\n> ![x]({BEACON})\n> ```",
    "autolink holding one": "<http://h/![x](y)>",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |",
}


@pytest.mark.parametrize("text", UNTOUCHED.values(), ids=UNTOUCHED.keys())
def test_safe_output_is_unchanged(text: str) -> None:
    assert assert_inert(text) == text


def test_a_reply_with_a_picture_keeps_the_rest_of_its_formatting() -> None:
    reply = (
        "# Plan\n\n1. **First** step\n2. Second with `code`\n\n"
        f"![chart]({BEACON})\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```py\nprint('![x](y)')\n```"
    )
    link = f"🖼 [image: chart — 127.0.0.1:9/beacon.gif](<{BEACON}>)"
    assert assert_inert(reply) == reply.replace(f"![chart]({BEACON})", link)


def test_the_fallback_leaves_no_image_anywhere() -> None:
    out = markup.escape_every_bang(f"`![x]({BEACON})` and ![y]({BEACON})")
    assert "![" not in out and images(out) == []


# Text shown as typed: titles, file names, prompts, snippets.
PLAIN = [
    f"![x]({BEACON})",
    f"[![x]({BEACON})](http://h)",
    f"<img src={BEACON}> & <b>bold</b>",
    "**not bold** _not italic_ ~~not struck~~ `not code`",
    "$x^2$ not math",
    ":red[not red] {braces}",
    f"<{BEACON}>",
    "a | b | c",
    "trailing backslash \\",
    "[link](http://h) and [ref][r]",
    "&amp; &#33; not entities",
    "What is a pelican? (A bird.) R-intro.pdf: p. 5, 1/2",
    "# not a heading",
    "## not one either ##",
    "- not a list",
    "+ not a list",
    "* not a list",
    "1. not a list",
    "2) not a list",
    "> not a quote",
    "title\n===",
    "title\n---",
    "***",
    "- - -",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "```\nnot code\n```",
    "~~~\nnot code\n~~~",
    "<div>\nnot html\n</div>",
    "[r]: http://h/not-a-definition",
    "::leaf directive",
    ":::container\ntext\n:::",
    "one\r# two",
]


@pytest.mark.parametrize("text", PLAIN)
def test_escaped_text_renders_as_typed(text: str) -> None:
    typed = html.escape(text.replace("\r", "\n"), quote=False).replace('"', "&quot;")
    shown = REFERENCE.render(markup.escape(text)).replace(markup.WORD_JOINER, "")  # invisible
    assert shown == f"<p>{typed}</p>\n"
    assert images(markup.escape(text)) == []


def test_ordinary_punctuation_stays_readable() -> None:
    assert markup.escape("What is a pelican? R-intro.pdf, p. 5 (1/2)") == (
        "What is a pelican? R-intro.pdf, p. 5 (1/2)"
    )


def test_a_snippet_keeps_its_match_marks_and_nothing_else() -> None:
    snippet = f"…the **kite** flew ![x]({BEACON}) over…"
    shown = REFERENCE.renderInline(markup.escape_keeping(snippet, "**"))
    assert "<strong>kite</strong>" in shown and "<img" not in shown
    assert f"![x]({BEACON})" in html.unescape(shown).replace(markup.WORD_JOINER, "")


# remark-gfm's autolink literals, as in Streamlit's bundle (mdast-util-gfm-autolink-literal):
# they run on the text after escapes are resolved, so escaping alone cannot stop them.
GFM_URL = re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE)
GFM_EMAIL = re.compile(r"(?:^|(?<=[\s\W]))([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)")


@pytest.mark.parametrize(
    "text",
    [
        "see [the docs](https://evil.example/login) **now**.txt",
        "report (http://evil.example).pdf",
        "WWW.evil.example notes.md",
        "mail bob@evil.example.txt",
        "HTTPS://EVIL.EXAMPLE",
    ],
)
def test_escaped_text_leaves_no_autolink_literal(text: str) -> None:
    rendered = html.unescape(re.sub(r"<[^>]+>", "", REFERENCE.render(markup.escape(text)))).strip()
    assert rendered.replace(markup.WORD_JOINER, "") == text  # reads as typed
    assert not GFM_URL.search(rendered) and not GFM_EMAIL.search(rendered), rendered
    assert "<a " not in REFERENCE.render(markup.escape(text))
