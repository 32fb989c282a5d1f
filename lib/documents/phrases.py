"""The question's key phrase, and the passages that are about it rather than near it.

A question names its subject in a few words: "How do I install packages?" asks about
"install packages", "What is Multilib?" about "Multilib". The question words are stop
words (`lib/documents/bm25.py`), so what is left is the key phrase, compared stemmed:
"Installing packages" and "install packages" are the same phrase. Keyword and dense
search score passages that share those words, wherever they sit; a passage with a line
that *is* the phrase, a heading ("6.3 Installing packages", "## Multilib"), is the one
that is about it. `naming` lists those candidates, in their fused order, for retrieval
to fuse as a third ranking.

Measured on tests/retrieval_set.py (642 heading queries over three R manuals, SQLite):
keyword-only hit@1 0.623 before, see bench/retrieval_quality.py for the figure after.
A line counts as the phrase when, with its numbering ("2.3", "Appendix A", "Chapter 5:")
taken off, its terms are exactly the phrase's; a running header ("Chapter 2: Installing
R under Unix-alikes 9") ends in its page number, so it never matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lib.documents.bm25 import STOPWORDS, analyse

_NUMBERING = re.compile(
    r"^\s*(?:(?:chapter|appendix|section|part)\s+)?(?:[A-Z]|\d+)?(?:\.\d+)*[.:)]?\s+|^#+\s*",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")  # as bm25 splits words
PREFIX = 4  # install/installing, manual/manuals
MAX_PHRASE_TERMS = 12  # a longer question is a question, not a heading's name


@dataclass(frozen=True)
class Phrase:
    terms: list[int]  # stemmed, as bm25 has them
    prefixes: list[str]  # each word's first letters, which every form of it shares
    longest: int  # characters a line naming it can have: numbering, a gerund's letters


def key_phrase(question: str) -> Phrase:
    """The question's key phrase (its question words are stop words)."""
    words = [w for w in _WORD.findall(question.lower()) if w not in STOPWORDS]
    # "make" and "making" share "mak": a final e goes before -ing.
    prefixes = [w[: min(PREFIX, len(w) - w.endswith("e"))] for w in words]
    return Phrase(analyse(question), prefixes, 2 * len(question) + 20)


def names(text: str, phrase: Phrase, memo: dict[str, int] | None = None) -> bool:
    """Whether a line of `text` is the phrase (a heading naming it)."""
    low = text.lower()
    if not all(p in low for p in phrase.prefixes):  # most candidates: one pass in C
        return False
    memo = {} if memo is None else memo
    for line in low.splitlines():
        if len(line) > phrase.longest or not all(p in line for p in phrase.prefixes):
            continue
        words = [w for w in _WORD.findall(_NUMBERING.sub("", line, count=1))
                 if w not in STOPWORDS]  # fmt: skip
        if len(words) == len(phrase.terms) and all(
            _stem(w, memo) == t for w, t in zip(words, phrase.terms, strict=True)
        ):
            return True
    return False


def _stem(word: str, memo: dict[str, int]) -> int:
    term = memo.get(word)
    if term is None:
        term = memo[word] = analyse(word)[0]
    return term


def naming(question: str, ranked: Sequence[tuple[int, str]]) -> list[int]:
    """The ids of (id, text) `ranked` whose text names the question's key phrase, in
    their given order."""
    phrase = key_phrase(question)
    if not phrase.terms or len(phrase.terms) > MAX_PHRASE_TERMS:
        return []
    memo: dict[str, int] = {}
    return [i for i, text in ranked if names(text, phrase, memo)]
