"""Chunking: page-exact ranges, the same chunks as langchain's splitter on real text, and
work linear in the text's length whatever its shape (no whitespace, one line, 16 MB)."""

from __future__ import annotations

import base64
import random
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_text_splitters import RecursiveCharacterTextSplitter

from lib.documents import chunking
from lib.documents.extract import Page, open_document
from lib.documents.ingest import Ingestor, Progress
from lib.documents.library import DocumentLibrary
from lib.store.backend import forget_backends, open_backend
from lib.tokens import get_encoding
from tests import doc_samples as samples


@pytest.fixture(scope="module")
def r_intro() -> list[Page]:
    opened = open_document("R-intro.pdf", samples.manual())
    return list(opened.pages())


@pytest.fixture
def tokenized(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every text handed to the tokenizer (the real one still counts)."""
    seen: list[int] = []
    real = chunking._count

    def counting(text: str) -> int:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(chunking, "_count", counting)
    return seen


def test_chunks_are_token_sized_page_exact_ranges_covering_the_text(r_intro: list[Page]) -> None:
    pages = r_intro
    chunks = chunking.split_pages(pages)
    assert len(chunks) > len(pages)  # about two per page
    for chunk in chunks:
        page = pages[chunk.page - 1]
        assert page.text[chunk.start : chunk.end] == chunk.text
        assert chunk.tokens <= chunking.CHUNK_TOKENS
        assert abs(chunk.tokens - chunking.count_tokens(chunk.text)) <= 1  # the pieces' sum
        assert chunk.label == page.label
    for page in pages[10:20]:
        covered = set()
        for chunk in (c for c in chunks if c.page == page.number):
            covered.update(range(chunk.start, chunk.end))
        missing = [i for i, ch in enumerate(page.text) if not ch.isspace() and i not in covered]
        assert missing == [], f"page {page.number}: characters in no chunk"


@pytest.mark.parametrize("name", ["R-intro.pdf", "R-data.pdf", "R-admin.pdf"])
def test_the_same_chunks_as_langchains_recursive_splitter(name: str) -> None:
    reference = RecursiveCharacterTextSplitter(
        chunk_size=chunking.CHUNK_TOKENS,
        chunk_overlap=chunking.CHUNK_OVERLAP,
        length_function=chunking.count_tokens,
        separators=[*chunking.SEPARATORS, ""],
        keep_separator="end",
    )
    pages = list(open_document(name, samples.manual(name)).pages())
    whole = Page(None, None, "\n\n".join(p.text for p in pages))
    for page in [*pages, whole]:
        assert [c.text for c in chunking.split_page(page)] == reference.split_text(page.text)


def test_neighbouring_chunks_overlap(r_intro: list[Page]) -> None:
    chunks = chunking.split_pages(r_intro[13:14])
    assert len(chunks) >= 2
    assert chunks[1].start < chunks[0].end


def naive_lines(text: str, start: int, end: int) -> str:
    first = text.count("\n", 0, start) + 1
    last = first + text.count("\n", start, max(start, end - 1))
    return f"line {first}" if first == last else f"lines {first}–{last}"


def test_text_file_chunks_name_their_lines() -> None:
    lines = [f"Line {i}: " + "lorem ipsum dolor sit amet " * 6 for i in range(1, 121)]
    page = Page(None, None, "\n".join(lines))
    chunks = chunking.split_page(page)
    assert len(chunks) > 3
    assert chunks[0].page is None and chunks[0].label.startswith("lines 1–")
    for chunk in chunks:
        assert chunk.label == naive_lines(page.text, chunk.start, chunk.end)
        start_line = int(re.match(r"lines? (\d+)", chunk.label).group(1))
        assert page.text.splitlines()[start_line - 1].startswith(chunk.text[:20])
        assert page.text[chunk.start : chunk.end] == chunk.text


def _base64(size: int) -> str:
    return base64.b64encode(random.Random(1).randbytes(size * 3 // 4)).decode()


def _words_on_one_line(size: int) -> str:
    rng = random.Random(2)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do".split()
    return " ".join(rng.choice(words) for _ in range(size // 5))[:size]


def _unspaced_cjk(size: int) -> str:
    return "".join(random.Random(3).choice("日本語の文章には空白がない。") for _ in range(size))


SHAPES = {  # text with no separator at all, or only the last resort ones
    "base64": _base64,
    "one line of words": _words_on_one_line,
    "CJK without spaces": _unspaced_cjk,
}


@pytest.mark.parametrize("make", SHAPES.values(), ids=SHAPES.keys())
def test_any_shape_is_cut_into_sized_chunks_counting_each_character_a_few_times(
    make, tokenized: list[int]
) -> None:
    page = Page(None, None, make(400_000))
    chunks = chunking.split_page(page)
    assert max(c.tokens for c in chunks) <= chunking.CHUNK_TOKENS
    # Word by word, "word " alone counts one token more than in a run: runs are a third full.
    assert min(c.tokens for c in chunks[:-1]) > chunking.CHUNK_TOKENS / 4
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.start < after.start <= before.end  # in order, overlapping or touching
        assert page.text[before.start : before.end] == before.text
    assert chunks[0].start == 0 and chunks[-1].end == len(page.text)
    # The old splitter counted base64 one character at a time: 400,000 calls here. Now a
    # call is a window, or a word when words are the only separator.
    assert len(tokenized) < len(page.text) / 5
    assert sum(tokenized) < 4 * len(page.text)


def test_work_grows_linearly_with_the_text(tokenized: list[int]) -> None:
    prose = "\n\n".join(
        p.text for p in open_document("R-data.pdf", samples.manual("R-data.pdf")).pages()
    )
    work = []
    for copies in (2, 16):
        tokenized.clear()
        text = "\n".join(prose for _ in range(copies))
        chunking.split_page(Page(None, None, text))
        work.append(sum(tokenized) / len(text))
    assert work[1] < work[0] * 1.1, work  # characters tokenized per character of text
    assert work[1] < 3


def test_progress_is_reported_while_a_big_page_is_split_and_can_stop_it() -> None:
    text = _words_on_one_line(2_000_000)
    seen: list[tuple[int, int]] = []
    chunking.split_pages([Page(None, None, text)], progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 2_000_000 // chunking.BATCH_CHARS
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (len(text), len(text))

    class Stop(Exception):
        pass

    def stop(done: int, _total: int) -> None:
        if done > 500_000:
            raise Stop

    with pytest.raises(Stop):
        chunking.split_pages([Page(None, None, text)], progress=stop)


def test_progress_counts_characters_of_all_pages(r_intro: list[Page]) -> None:
    seen: list[tuple[int, int]] = []
    chunking.split_pages(r_intro[:5], progress=lambda d, t: seen.append((d, t)))
    total = sum(len(p.text) for p in r_intro[:5])
    assert {t for _, t in seen} == {total} and seen[-1][0] == total


def test_a_big_text_is_counted_exactly_in_slices() -> None:
    rng = random.Random(4)
    words = [
        "naïve",
        "café",
        "日本語",
        "x²",
        "  ",
        "\n",
        "\t",
        "Bar",
        "'s",
        "123",
        "—",
        "🙂",
        "a.b",
    ]
    text = "".join(rng.choice(words) + rng.choice([" ", "", "\n", ". "]) for _ in range(600_000))
    assert len(text) > 2 * chunking.SLICE_CHARS
    exact = len(get_encoding(chunking.ENCODING).encode_ordinary(text))
    assert chunking.count_tokens(text) == exact


@pytest.fixture
def library(data_dir: Path) -> Iterator[DocumentLibrary]:
    # Splitting does not touch storage, so SQLite alone is enough here.
    yield DocumentLibrary(open_backend(data_dir), "alice")
    forget_backends()


def test_an_upload_reports_progress_while_a_big_text_is_split_and_cancel_stops_it(
    library: DocumentLibrary,
) -> None:
    data = _words_on_one_line(3_000_000).encode()
    ingestor = Ingestor(library, None, limit_bytes=len(data) + 1)
    events: list[Progress] = []
    (report,) = ingestor.ingest_many([("big.txt", data)], events.append)
    assert report.status == "indexed", report.message
    chunking_events = [e for e in events if e.stage == "chunking"]
    assert len(chunking_events) >= len(data) // chunking.BATCH_CHARS
    assert chunking_events[-1].message == "big.txt: splitting into passages, 2.9 MB of 2.9 MB"
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)

    library.delete(report.document_id)
    splitting = []

    def cancelled() -> bool:
        return len(splitting) > 2

    def progress(event: Progress) -> None:
        if event.stage == "chunking":
            splitting.append(event)

    (report,) = ingestor.ingest_many([("big.txt", data)], progress, cancelled)
    assert report.status == "cancelled"
    assert len(splitting) == 3  # stopped at the first check after Cancel
    assert library.list() == []


def test_the_chunks_of_pages_are_ranges_whose_texts_are_cut_when_read(
    r_intro: list[Page],
) -> None:
    pages = r_intro[10:20]
    chunks = chunking.split_pages(pages)
    listed = [c for p in pages for c in chunking.split_page(p)]
    assert list(chunks) == listed and len(chunks) == len(listed)
    assert chunks[3] == listed[3] and chunks[-1] == listed[-1] and chunks[2:5] == listed[2:5]
    assert list(chunks.texts()) == [c.text for c in listed]
    assert chunks.texts()[4] == listed[4].text and chunks.texts()[1:3] == [
        c.text for c in listed[1:3]
    ]
    assert chunks.hashes() == [c.hash for c in listed]
    assert chunks.tokens() == [c.tokens for c in listed]


def test_a_big_texts_chunks_hold_no_copy_of_it() -> None:
    prose = "\n\n".join(
        p.text for p in open_document("R-data.pdf", samples.manual("R-data.pdf")).pages()
    )
    text = "\n".join([prose] * 12)  # 1.1 million characters, 1,000 chunks
    page = Page(None, None, text)
    chunking.count_tokens("the tokenizer loaded before measuring")
    tracemalloc.start()
    try:
        chunks = chunking.split_pages([page])
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(len(t) for t in chunks.texts()) > len(text)  # overlapping chunks
    # As strings they would be more than the text (overlap); as ranges, 0.3 bytes a character.
    assert held < len(text) / 2, f"{held:,} bytes held for {len(text):,} characters"
