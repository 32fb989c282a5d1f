"""Offline token counting with tiktoken.

`tiktoken.get_encoding` downloads its vocabulary on first use, which fails on a machine
with no internet. Parley ships the two vocabularies it needs, gzipped, in
`lib/tokenizer_data/`, and checks each against the SHA-256 that tiktoken itself pins
(`tiktoken_ext/openai_public.py`) before use, so a corrupted file fails loudly instead of
miscounting. The pattern and special tokens still come from tiktoken's own constructors.

A model tiktoken knows gets its own encoding and an exact count. Any other model
(a local Llama, say) is counted with o200k_base and the count is flagged as an estimate,
so the UI can say "≈" rather than present a guess as exact.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import tiktoken
from tiktoken_ext import openai_public

DATA = Path(__file__).resolve().parent / "tokenizer_data"
FALLBACK_ENCODING = "o200k_base"
SHIPPED = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
# Tokens the chat format adds around each message and before the reply, per OpenAI's
# cookbook ("How to count tokens with tiktoken").
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


class VocabularyError(RuntimeError):
    """A shipped vocabulary file is missing or does not match its pinned hash."""


@dataclass(frozen=True)
class Counter:
    encoding: tiktoken.Encoding
    exact: bool

    @property
    def name(self) -> str:
        return self.encoding.name

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def count_message(self, text: str) -> int:
        return self.count(text) + TOKENS_PER_MESSAGE


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    if name not in SHIPPED:
        raise VocabularyError(f"Parley does not ship the {name} vocabulary.")
    ranks = _load_ranks(name)
    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    # The constructor would download the vocabulary; hand it the verified local one.
    with mock.patch.object(openai_public, "load_tiktoken_bpe", lambda *a, **k: ranks):
        spec = constructor()
    return tiktoken.Encoding(**spec)


def _load_ranks(name: str) -> dict[bytes, int]:
    path = DATA / f"{name}.tiktoken.gz"
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise VocabularyError(f"Cannot read {path}: {exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHIPPED[name]:
        raise VocabularyError(f"{path} has SHA-256 {digest}, expected {SHIPPED[name]}.")
    ranks = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.cache
def counter_for(model: str) -> Counter:
    """The counter for `model`: exact where tiktoken knows it, an estimate otherwise."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return Counter(get_encoding(FALLBACK_ENCODING), exact=False)
    if name not in SHIPPED:
        return Counter(get_encoding(FALLBACK_ENCODING), exact=False)
    return Counter(get_encoding(name), exact=True)
