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
the chunk, so a rebuilt index finds it as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lib.documents.chunking import ENCODING, count_tokens, text_hash
from lib.tokens import get_encoding

if TYPE_CHECKING:
    from lib.documents.embeddings import Embedder

WINDOW_SHARE = 0.75  # of the server's window, in cl100k tokens
MIN_WINDOW = 16


def parts(text: str, budget: int) -> list[str]:
    """`text` in consecutive parts of at most `budget` cl100k tokens."""
    encoding = get_encoding(ENCODING)
    ids = encoding.encode(text, disallowed_special=())
    return [encoding.decode(ids[i : i + budget]) for i in range(0, len(ids), budget)]


def embed_in_windows(
    embedder: Embedder,
    window: int,
    texts: Sequence[str],
    hashes: Sequence[str] | None,
    tokens: Sequence[int] | None,
    embed: Callable[[list[str], list[str]], np.ndarray],
) -> tuple[np.ndarray, int] | None:
    """(vectors, chunks split) for `texts`, the long ones embedded in parts; None when
    every text fits (the caller embeds them as they are)."""
    budget = max(MIN_WINDOW, int(window * WINDOW_SHARE))
    counts = list(tokens) if tokens is not None else [count_tokens(t) for t in texts]
    if all(n <= budget for n in counts):
        return None
    hashes = list(hashes) if hashes is not None else [text_hash(t) for t in texts]
    cache = embedder.cache
    cached = cache.get(embedder.model, hashes) if cache else {}
    flat, flat_hashes, owner, split = [], [], [], []
    for i, (text, n) in enumerate(zip(texts, counts, strict=True)):
        whole = n <= budget or hashes[i] in cached  # a cached vector is the pooled one
        pieces = [text] if whole else parts(text, budget)
        flat += pieces
        flat_hashes += [hashes[i]] if whole else [text_hash(p) for p in pieces]
        owner += [i] * len(pieces)
        if not whole:
            split.append(i)
    vectors = embed(flat, flat_hashes)
    pooled = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    np.add.at(pooled, np.array(owner), vectors)
    pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    if cache and split:
        cache.put(embedder.model, [hashes[i] for i in split], pooled[split])
    return pooled, len(split)
