"""Embedding within the embedder's window: a chunk longer than the model reads is embedded
in parts, never cut short.

An embedding server reads at most its window of tokens per input and drops the rest
without a word: a MiniLM-class model (256 word pieces) silently truncated three quarters
of Parley's 400-token chunks (issue 13), so the end of most passages could never be
found by meaning. The window comes from `PARLEY_EMBED_WINDOW` (`Settings.embed_window`,
tokens of the model's own tokenizer) or, unset, from the server as for a chat model
(`lib/server/window.py`: vLLM's `max_model_len`, llama-server's `/props`, Ollama's, LM
Studio's, Parley's table); when nothing says, an input is trusted up to MAX_INPUT_TOKENS
(`lib/documents/embeddings.py`).

A chunk over the window is split into consecutive parts of at most WINDOW_SHARE of it,
counted in Parley's tokenizer (cl100k), since a server's word pieces can run longer than
cl100k's tokens on the same text; each part is embedded (and
cached under its own text) and the chunk's vector is their normalised mean, cached under
the chunk, so a rebuilt index finds it as before. The parts' vectors are pooled in the
one array the embedder filled, and the chunks' texts are cut from their pages only when
sent, so a file's vectors and texts are not held twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, overload

import numpy as np

from lib.documents.chunking import ENCODING, count_tokens, text_hash
from lib.tokens import get_encoding

if TYPE_CHECKING:
    from lib.documents.embeddings import Embedder

WINDOW_SHARE = 0.75  # of the server's window, in cl100k tokens
MIN_WINDOW = 16
NORM_ROWS = 4096  # rows normalised at a time (embeddings.NORM_ROWS)


def parts(text: str, budget: int) -> list[str]:
    """`text` in consecutive parts of at most `budget` cl100k tokens."""
    encoding = get_encoding(ENCODING)
    ids = encoding.encode(text, disallowed_special=())
    return [encoding.decode(ids[i : i + budget]) for i in range(0, len(ids), budget)]


class _Flat(Sequence[str]):
    """The inputs to embed: each chunk that fits (cut from its page only when read, as
    `Chunks.texts()` does) or a part of one that does not; a list of every text would hold
    a 48 MB file's text again."""

    def __init__(self, texts: Sequence[str], entries: list[int | str]) -> None:
        self._texts, self._entries = texts, entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        entry = self._entries[index]
        return self._texts[entry] if isinstance(entry, int) else entry


def embed_in_windows(
    embedder: Embedder,
    window: int,
    texts: Sequence[str],
    hashes: Sequence[str] | None,
    tokens: Sequence[int] | None,
    embed: Callable[[Sequence[str], list[str], list[int]], np.ndarray],
) -> tuple[np.ndarray, int] | None:
    """(vectors, chunks split) for `texts`, the long ones embedded in parts; None when
    every text fits (the caller embeds them as they are)."""
    budget = max(MIN_WINDOW, int(window * WINDOW_SHARE))
    counts = list(tokens) if tokens is not None else [count_tokens(t) for t in texts]
    if all(n <= budget for n in counts):
        return None
    hashes = list(hashes) if hashes is not None else [text_hash(t) for t in texts]
    cache = embedder.cache
    cached = cache.known(embedder.model, hashes) if cache else set()
    entries: list[int | str] = []
    flat_hashes: list[str] = []
    flat_counts: list[int] = []
    rows: list[int] = []  # each text's first row in the flat inputs
    split = []
    for i, n in enumerate(counts):
        rows.append(len(entries))
        if n <= budget or hashes[i] in cached:  # a cached vector is the pooled one
            entries.append(i)
            flat_hashes.append(hashes[i])
            flat_counts.append(n)
            continue
        pieces = parts(texts[i], budget)
        entries += pieces
        flat_hashes += [text_hash(p) for p in pieces]
        flat_counts += [count_tokens(p) for p in pieces]
        split.append(i)
    rows.append(len(entries))
    vectors = embed(_Flat(texts, entries), flat_hashes, flat_counts)
    del entries
    # Pool in place: text i's rows start at or after row i, so row i is free to take the
    # mean of its parts (summed in order, as np.add.at did into a second array).
    for i in range(len(texts)):
        start, end = rows[i], rows[i + 1]
        if end - start > 1:
            vectors[i] = vectors[start:end].sum(axis=0)
        elif start != i:
            vectors[i] = vectors[start]
    pooled = _first_rows(vectors, len(texts))
    for start in range(0, len(pooled), NORM_ROWS):
        block = pooled[start : start + NORM_ROWS]
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    if cache and split:
        cache.put(embedder.model, [hashes[i] for i in split], pooled[split])
    return pooled, len(split)


def _first_rows(vectors: np.ndarray, count: int) -> np.ndarray:
    """The first `count` rows of `vectors`, the rest given back: shrunk in place when the
    array owns its memory (the one the embedder just filled, which nothing else refers
    to: `Embedder._embed_fitting`), copied otherwise."""
    if vectors.base is None and vectors.flags.owndata and vectors.flags.c_contiguous:
        vectors.resize((count, vectors.shape[1]), refcheck=False)
        return vectors
    return vectors[:count].copy()
