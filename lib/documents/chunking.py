"""Splitting pages into token-sized chunks that know exactly where they came from.

Each page is split on its own, so a chunk never straddles two pages and its citation can
name one page. Every chunk keeps its page, the printed page label, its character range
within the page text (`text == page_text[start:end]`) and, for text files, its lines.

Splitting is recursive, as in langchain-text-splitters' `RecursiveCharacterTextSplitter`
(paragraphs, then lines, then sentences, then words, each separator kept at the end of
its piece, pieces merged greedily up to the size with overlap), with lengths in tokens of
cl100k_base, the encoding of OpenAI's embedding models, read offline through `lib.tokens`.
On ordinary text it makes the same chunks as that splitter (a test checks it on the R
manuals), but it works on character ranges and is linear in the text's length, which
that splitter is not on big files (measured at 16 MB: 42 s, then 4 MB of base64: 44 s):
- each piece is counted once, in batches, by two threads (tiktoken counts outside the
  GIL), where the splitter counted each piece again to merge it and again to drop it;
  a chunk's `tokens` is the sum of its pieces' counts, the number the merge decided on,
  not a recount of its text (which cost a third of the time): on the R manuals 60% are
  exact and the rest within one token (0.13% over in all), and none is over CHUNK_TOKENS;
- a stretch with no separator at all (base64, a long CJK line) is cut into windows of
  characters measured a window at a time, where the splitter counted one character at a
  time (4 MB of base64: 6 million counts);
- a chunk's range is known, not searched for, and its lines are counted from the last
  chunk's, where they were counted from the start of the text for every chunk;
- no token list of a whole big text is ever held (12 million Python ints for 48 MB is
  about 430 MB): big texts are counted in slices cut where the tokenizer would cut.
`progress(done_chars, total_chars)` is called after every batch (about 256 KB), so the
caller can move a bar and stop a cancelled upload while a big file is being split.

Defaults, and why:
- CHUNK_TOKENS = 400. The R manuals average about 730 tokens a page, so a page makes
  two chunks: a passage with its heading, small enough that the answer to a question is
  much of the chunk rather than a tenth of it. Six retrieved chunks are about 2,400
  tokens, which leaves room for history and the reply even in an 8k-token local model,
  and every chunk is far below the input limits of text-embedding-3 (8,191 tokens) and
  of nomic-embed-text under Ollama's default 2,048-token context. On the 20-question
  R-intro test (tests/test_documents_retrieval.py), sizes from 200 to 800 tokens put the
  right page in the top 5 for 16 to 18 questions (200: 18, 250: 18, 400: 17, 512: 17,
  800: 16, measured with the test server's lexical embeddings): within one or two
  questions of each other, so the size was chosen for the context each source gives
  the model rather than for that noise.
- CHUNK_OVERLAP = 60 (15%). A sentence cut by a chunk boundary appears whole in one of
  the two chunks, at the price of 15% more tokens to embed.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import overload

from lib.documents.extract import Page
from lib.tokens import get_encoding

CHUNK_TOKENS = 400
CHUNK_OVERLAP = 60
ENCODING = "cl100k_base"
SEPARATORS = ("\n\n", "\n", ". ", " ")
BATCH_CHARS = 256_000  # counted together, and the step between progress calls
SLICE_CHARS = 1_000_000  # a big text is counted in slices of about this many characters
# Where cl100k_base's pre-tokenizer always starts a new piece: before " word" after a
# non-space, and before a word that starts a line. Counting the slices on either side
# of such a cut gives the same total as counting the whole text.
_SAFE_CUT = re.compile(r"(?<=\S)(?= [^\W\d_])|(?<=\n)(?=[^\W\d_])")
_COUNTERS = ThreadPoolExecutor(2, thread_name_prefix="parley-tokens")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Chunk:
    page: int | None  # 1-based PDF page, None for a text file
    label: str | None  # printed page label, or "lines a–b" for a text file
    start: int  # character range within the page's text
    end: int
    text: str
    tokens: int

    @property
    def hash(self) -> str:
        """The embedding cache key: the same text always has the same vector."""
        return text_hash(self.text)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def count_tokens(text: str) -> int:
    """Exact cl100k_base tokens of `text`; a big text in slices, two at a time."""
    if len(text) <= SLICE_CHARS:
        return _count(text)
    # A few slices in flight (both threads busy, two waiting), not `_COUNTERS.map`, which
    # cuts every slice before counting one: +105 MB at once for a 48 MB text.
    total, running = 0, deque()
    for piece in _slices(text):
        running.append(_COUNTERS.submit(_count, piece))
        del piece
        if len(running) >= 4:
            total += running.popleft().result()
    return total + sum(f.result() for f in running)


def _count(text: str) -> int:
    return len(get_encoding(ENCODING).encode_ordinary(text))


def _count_all(texts: list[str]) -> list[int]:
    if sum(map(len, texts)) < 20_000:  # not worth a thread
        return [_count(t) for t in texts]
    half = len(texts) // 2
    first, second = _COUNTERS.map(
        lambda part: [_count(t) for t in part], [texts[:half], texts[half:]]
    )
    return first + second


def _slices(text: str) -> Iterator[str]:
    start = 0
    while len(text) - start > SLICE_CHARS:
        cut = _SAFE_CUT.search(text, start + SLICE_CHARS, start + 2 * SLICE_CHARS)
        end = cut.start() if cut else start + 2 * SLICE_CHARS  # a rare near-exact count
        yield text[start:end]
        start = end
    yield text[start:]


def split_pages(
    pages: Iterable[Page],
    chunk_tokens: int = CHUNK_TOKENS,
    overlap: int = CHUNK_OVERLAP,
    progress: Progress | None = None,
) -> Chunks:
    """Chunks of every page, in page order; `progress` gets characters done of all."""
    chunks = Chunks(list(pages))
    total = sum(len(p.text) for p in chunks.pages)
    done = 0
    for index, page in enumerate(chunks.pages):
        report = None
        if progress is not None:
            report = lambda n, _d=done: progress(_d + n, total)  # noqa: E731
        for label, start, end, tokens in _page_ranges(page, chunk_tokens, overlap, report):
            chunks.add(index, label, start, end, tokens)
        done += len(page.text)
    return chunks


def split_page(
    page: Page,
    chunk_tokens: int = CHUNK_TOKENS,
    overlap: int = CHUNK_OVERLAP,
    progress: Callable[[int], None] | None = None,
) -> list[Chunk]:
    """Chunks of one page; `progress` gets how many of its characters are done."""
    return [
        Chunk(page.number, label, start, end, page.text[start:end], tokens)
        for label, start, end, tokens in _page_ranges(page, chunk_tokens, overlap, progress)
    ]


def _page_ranges(
    page: Page, chunk_tokens: int, overlap: int, progress: Callable[[int], None] | None
) -> Iterator[tuple[str | None, int, int, int]]:
    """(label, start, end, tokens) of each chunk of `page`."""
    splitter = _Splitter(page.text, chunk_tokens, overlap, progress)
    lines = _LineCounter(page.text)
    for start, end, tokens in splitter.ranges():
        label = page.label if page.number is not None or page.label else lines.label(start, end)
        yield label, start, end, tokens


class Chunks(Sequence[Chunk]):
    """The chunks of some pages, in order, each kept as a range of its page's text.

    A chunk's text is cut from its page when it is asked for, and dropped after use, so a
    big file's chunks are never all held as strings: the 38,064 chunks of a 48 MB text
    are 54 million characters (overlap included), 108 MB as strings, and a database
    driver binding each one keeps a UTF-8 copy beside it (sqlite3 does: +54 MB). As
    ranges they are about 10 MB. Read them in one pass where you can (`texts()`), since
    each read cuts the text again.
    """

    def __init__(self, pages: list[Page]) -> None:
        self.pages = pages
        self._rows: list[tuple[int, str | None, int, int, int]] = []

    def add(self, page_index: int, label: str | None, start: int, end: int, tokens: int) -> None:
        self._rows.append((page_index, label, start, end, tokens))

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Chunk: ...
    @overload
    def __getitem__(self, index: slice) -> list[Chunk]: ...
    def __getitem__(self, index: int | slice) -> Chunk | list[Chunk]:
        if isinstance(index, slice):
            return [self._chunk(row) for row in self._rows[index]]
        return self._chunk(self._rows[index])

    def __iter__(self) -> Iterator[Chunk]:
        return map(self._chunk, self._rows)

    def _chunk(self, row: tuple[int, str | None, int, int, int]) -> Chunk:
        index, label, start, end, tokens = row
        page = self.pages[index]
        return Chunk(page.number, label, start, end, page.text[start:end], tokens)

    def texts(self) -> Sequence[str]:
        """The chunks' texts, each cut when read (for an embedder or a keyword index)."""
        return _Texts(self)

    def hashes(self) -> list[str]:
        return [text_hash(text) for text in self.texts()]

    def tokens(self) -> list[int]:
        return [row[4] for row in self._rows]


class _Texts(Sequence[str]):
    def __init__(self, chunks: Chunks) -> None:
        self.pages, self.rows = chunks.pages, chunks._rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._text(row) for row in self.rows[index]]
        return self._text(self.rows[index])

    def __iter__(self) -> Iterator[str]:
        return map(self._text, self.rows)

    def _text(self, row: tuple[int, str | None, int, int, int]) -> str:
        return self.pages[row[0]].text[row[2] : row[3]]


class _Splitter:
    """Character ranges of one text's chunks, recursive by separator, merged with overlap."""

    def __init__(
        self, text: str, size: int, overlap: int, progress: Callable[[int], None] | None
    ) -> None:
        self.text, self.size, self.overlap, self.progress = text, size, overlap, progress

    def ranges(self) -> Iterator[tuple[int, int, int]]:
        """(start, end, tokens) of each chunk, in order."""
        yield from self._split(0, len(self.text), SEPARATORS)
        if self.progress is not None:
            self.progress(len(self.text))

    def _split(
        self, start: int, end: int, separators: tuple[str, ...]
    ) -> Iterator[tuple[int, int, int]]:
        found = next(
            (i for i, s in enumerate(separators) if self.text.find(s, start, end) >= 0), None
        )
        if found is None:
            yield from self._windows(start, end)
            return
        rest = separators[found + 1 :]
        pieces = self._counted(self._pieces(start, end, separators[found]))
        for small, group in itertools.groupby(pieces, key=lambda p: p[2] < self.size):
            if small:
                yield from self._merge(group)
            else:
                for piece in group:
                    yield from self._split(piece[0], piece[1], rest)

    def _pieces(self, start: int, end: int, separator: str) -> Iterator[tuple[int, int]]:
        """Each stretch up to and including the next separator, then the rest."""
        cursor = start
        while cursor < end:
            at = self.text.find(separator, cursor, end)
            stop = end if at < 0 else at + len(separator)
            yield cursor, stop
            cursor = stop

    def _counted(self, pieces: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
        batch: list[tuple[int, int]] = []
        chars = 0
        for piece in pieces:
            batch.append(piece)
            chars += piece[1] - piece[0]
            if chars >= BATCH_CHARS:
                yield from self._count_batch(batch)
                batch, chars = [], 0
        yield from self._count_batch(batch)

    def _count_batch(self, batch: list[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
        if not batch:
            return
        counts = _count_all([self.text[s:e] for s, e in batch])
        if self.progress is not None:
            self.progress(batch[-1][1])
        for (s, e), n in zip(batch, counts, strict=True):
            yield s, e, n

    def _merge(self, pieces: Iterable[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
        """Greedy runs of pieces up to the size, each starting with the last run's tail."""
        run: deque[tuple[int, int, int]] = deque()
        total = 0
        for piece in pieces:
            n = piece[2]
            if run and total + n > self.size:
                yield from self._stripped(run[0][0], run[-1][1], total)
                while run and (total > self.overlap or total + n > self.size):
                    total -= run.popleft()[2]
            run.append(piece)
            total += n
        if run:
            yield from self._stripped(run[0][0], run[-1][1], total)

    def _windows(self, start: int, end: int) -> Iterator[tuple[int, int, int]]:
        """A stretch with no separator, cut into windows of at most `size` tokens."""
        width = self.size * 4  # characters; corrected from each window's count
        while start < end:
            stop = min(end, start + width)
            tokens = _count(self.text[start:stop])
            while tokens > self.size and stop - start > 1:
                stop = start + max(1, int((stop - start) * self.size / tokens * 0.97))
                tokens = _count(self.text[start:stop])
            yield from self._stripped(start, stop, tokens)
            if stop >= end:
                return
            chars_per_token = (stop - start) / max(tokens, 1)
            width = max(1, int(self.size * chars_per_token))
            back = int(self.overlap * chars_per_token)
            start = max(start + 1, stop - back)
            if self.progress is not None:
                self.progress(stop)

    def _stripped(self, start: int, end: int, tokens: int) -> Iterator[tuple[int, int, int]]:
        text = self.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            yield start, end, tokens


class _LineCounter:
    """Line numbers of ranges that come in order of their starts, counted incrementally."""

    def __init__(self, text: str) -> None:
        self.text, self.at, self.line = text, 0, 1

    def label(self, start: int, end: int) -> str:
        if start < self.at:  # overlap: step back over the few characters shared
            self.line -= self.text.count("\n", start, self.at)
        else:
            self.line += self.text.count("\n", self.at, start)
        self.at = start
        first = self.line
        last = first + self.text.count("\n", start, max(start, end - 1))
        return f"line {first}" if first == last else f"lines {first}–{last}"
