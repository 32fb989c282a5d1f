"""Splitting pages into token-sized chunks that know exactly where they came from.

Each page is split on its own, so a chunk never straddles two pages and its citation can
name one page. Every chunk keeps its page, the printed page label, its character range
within the page text (`text == page_text[start:end]`) and, for text files, its lines.

Splitting uses langchain-text-splitters' `RecursiveCharacterTextSplitter` (paragraphs,
then lines, then sentences, then words) with lengths measured in tokens of cl100k_base,
the encoding of OpenAI's embedding models, read offline through `lib.tokens`.

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
from collections.abc import Iterable
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from lib.documents.extract import Page
from lib.tokens import get_encoding

CHUNK_TOKENS = 400
CHUNK_OVERLAP = 60
ENCODING = "cl100k_base"


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
    return len(get_encoding(ENCODING).encode(text, disallowed_special=()))


def splitter(chunk_tokens: int = CHUNK_TOKENS, overlap: int = CHUNK_OVERLAP):  # noqa: ANN201
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap,
        length_function=count_tokens,
        separators=["\n\n", "\n", ". ", " ", ""],
        keep_separator="end",
    )


def split_pages(
    pages: Iterable[Page], chunk_tokens: int = CHUNK_TOKENS, overlap: int = CHUNK_OVERLAP
) -> list[Chunk]:
    """Chunks of every page, in page order."""
    split = splitter(chunk_tokens, overlap)
    chunks: list[Chunk] = []
    for page in pages:
        chunks.extend(split_page(page, split))
    return chunks


def split_page(page: Page, split: RecursiveCharacterTextSplitter | None = None) -> list[Chunk]:
    split = split or splitter()
    out = []
    cursor = 0
    for piece in split.split_text(page.text):
        # Pieces come back stripped but otherwise verbatim, in order, so each one is
        # found at or after the previous piece's start (overlap means it may begin earlier
        # than the previous piece's end).
        start = page.text.find(piece, cursor)
        if start < 0:  # defensive: never cite a wrong range
            start = page.text.find(piece)
        end = start + len(piece)
        cursor = start + 1
        label = page.label if page.number is not None else _lines(page.text, start, end)
        out.append(Chunk(page.number, label, start, end, piece, count_tokens(piece)))
    return out


def _lines(text: str, start: int, end: int) -> str:
    first = text.count("\n", 0, start) + 1
    last = first + text.count("\n", start, max(start, end - 1))
    return f"line {first}" if first == last else f"lines {first}–{last}"
