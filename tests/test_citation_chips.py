"""Citation chips under a Documents-page answer: one per cited source, labelled as the
answer's text spells that citation, in citation order; a click opens that passage and,
for a PDF, its rendered page at once in a dialog."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from streamlit.testing.v1 import AppTest

from lib.markup import escape
from lib.store.backend import Backend
from tests.fake_openai import FakeOpenAI
from tests.test_documents_page import INTRO, NOTES, PAGE, SHORT, ask, texts, upload

CHIP = "parley.w.cite."


@pytest.fixture
def page(app: Callable[..., AppTest], backend: Backend) -> AppTest:
    at = app(PAGE, PARLEY_PROVIDER="openai")
    at.run()
    assert not at.exception
    return at


def walk(node) -> Iterator:  # noqa: ANN001 - an AppTest tree node
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def dialogs(at: AppTest) -> list:
    return [n for n in walk(at._tree) if getattr(n, "type", None) == "dialog"]


def chips(at: AppTest) -> list:
    return [b for b in at.button if (b.key or "").startswith(CHIP)]


def shown(dialog) -> tuple[list[str], int, int]:  # noqa: ANN001
    """The dialog's plain texts, its image count and its toggle count."""
    nodes = list(walk(dialog))
    text = [n.value for n in nodes if getattr(n, "type", None) == "text"]
    images = [n for n in nodes if getattr(n, "type", None) == "image"]
    toggles = [n for n in nodes if getattr(n, "type", None) == "toggle"]
    return text, len(images), len(toggles)


def test_a_chip_opens_the_passage_and_its_page(page: AppTest, openai_server: FakeOpenAI) -> None:
    upload(page, INTRO, NOTES)  # too big to go whole: passages
    openai_server.script("Use eigen() [1]; solve() handles linear systems [2].")
    ask(page, "How do I compute the eigenvalues of a symmetric matrix?")
    labels = [c.label for c in chips(page)]
    assert len(labels) == 2 and labels[0] == "\\[1 · intro.pdf p. 5\\]"
    assert labels[1].startswith("\\[2 · intro.pdf p. ")
    # Each chip reads as the marker in the answer's text, in the same order.
    (answer,) = [m for m in texts(page.markdown) if m.startswith("Use eigen()")]
    assert answer == f"Use eigen() {labels[0]}; solve() handles linear systems {labels[1]}."
    assert not dialogs(page)

    chips(page)[0].click().run()
    assert not page.exception, page.exception
    (dialog,) = dialogs(page)
    assert dialog.proto.dialog.title.startswith("\\[1\\] intro.pdf, page 5")
    text, images, toggles = shown(dialog)
    assert any("eigen(Sm)" in t for t in text)
    assert (images, toggles) == (1, 0)  # the page at once, no "Show the page" toggle

    page.run()  # any other rerun closes it
    assert not dialogs(page)


def test_a_chip_for_a_text_file_shows_its_passage_without_a_page(
    page: AppTest, openai_server: FakeOpenAI
) -> None:
    upload(page, SHORT, NOTES)  # small: sent whole, cited as [3] short.pdf p. 3, [4] notes.md
    openai_server.script("A summary [3] [4].")
    ask(page, "Summarise these documents.")
    assert [c.label for c in chips(page)] == ["\\[3 · short.pdf p. 3\\]", "\\[4 · notes.md\\]"]
    chips(page)[1].click().run()
    (dialog,) = dialogs(page)
    assert dialog.proto.dialog.title == escape("[4] notes.md")
    text, images, toggles = shown(dialog)
    assert any("The heron nests by the river" in t for t in text)
    assert (images, toggles) == (0, 0)


@pytest.mark.parametrize(
    "name",
    [
        "![x](http://beacon.test/p.png).md",
        "[click](javascript:alert(1)).md",
        "<img src=x onerror=alert(1)>.md",
        ":material/warning: $x$ *bold*.md",
    ],
)
def test_a_hostile_file_name_reads_as_typed_on_the_chip_and_in_the_dialog(
    page: AppTest, openai_server: FakeOpenAI, name: str
) -> None:
    upload(page, (name, NOTES[1], "text/markdown"))  # small: sent whole, cited as [1]
    openai_server.script("Herons nest by rivers [1].")
    ask(page, "Where do herons nest?")
    (chip,) = chips(page)
    assert chip.label == escape(f"[1 · {name}]")
    chip.click().run()
    (dialog,) = dialogs(page)
    assert dialog.proto.dialog.title == escape(f"[1] {name}")
