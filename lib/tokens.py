"""Offline token counting with tiktoken.

`tiktoken.get_encoding` downloads its vocabulary on first use, which fails on a machine
with no internet. Parley ships the two vocabularies it needs in `lib/tokenizer_data/`
and loads each with tiktoken's own `load_tiktoken_bpe(path, expected_hash)`, with the
SHA-256 that tiktoken itself pins (`tiktoken_ext/openai_public.py`), so a corrupted file
fails loudly instead of miscounting. The encodings are built directly from those ranks and
the patterns and special tokens of tiktoken's constructors (copied below; a test checks
they still match), with nothing patched: counting is safe from any thread.

A model tiktoken knows gets its own encoding and an exact count. Any other model
(a local Llama, say) is counted with o200k_base and the count is flagged as an estimate,
so the UI can say "≈" rather than present a guess as exact.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

DATA = Path(__file__).resolve().parent / "tokenizer_data"
FALLBACK_ENCODING = "o200k_base"
SHIPPED = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
# From tiktoken_ext/openai_public.py (tiktoken 0.14); tests/test_memory_tokens.py checks.
PATTERNS = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
SPECIAL_TOKENS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
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
    return tiktoken.Encoding(
        name=name,
        pat_str=PATTERNS[name],
        mergeable_ranks=_load_ranks(name),
        special_tokens=SPECIAL_TOKENS[name],
    )


def _load_ranks(name: str) -> dict[bytes, int]:
    path = DATA / f"{name}.tiktoken"
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise VocabularyError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    # Checked here as well: tiktoken skips its own check when TIKTOKEN_CACHE_DIR is "".
    if digest != SHIPPED[name]:
        raise VocabularyError(f"{path} has SHA-256 {digest}, expected {SHIPPED[name]}.")
    return load_tiktoken_bpe(str(path), expected_hash=SHIPPED[name])


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
