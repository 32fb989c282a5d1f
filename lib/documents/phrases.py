"""The question's key phrase, and the passages that are about it rather than near it.

A question names its subject in a few words: "How do I install packages?" asks about
"install packages", "What is Multilib?" about "Multilib". The question words are stop
words (`lib/documents/bm25.py`), so what is left is the key phrase, compared stemmed:
"Installing packages" and "install packages" are the same phrase. Keyword and dense
search score passages that share those words, wherever they sit; a passage with a line
that *is* the phrase, a heading ("6.3 Installing packages", "## Multilib"), is the one
that is about it. `naming` lists those candidates, in their fused order, for retrieval
to fuse as a third ranking.

A line counts as the phrase when, with its numbering ("2.3", "Appendix A", "Chapter 5:")
taken off, its words are the phrase's; a running header ("Chapter 2: Installing R under
Unix-alikes 9") ends in its page number, so it never matches. An unnumbered line counts
only as a title (a capital first, no sentence or code punctuation): stemmed, "installed
by" and "are not installed." were "Installer", and "debug: {" was "Debugging", ahead of
the sections themselves. A heading wrapped onto a second line is read as one; a word
matches when its stem starts another's (Snowball stems "embed" as "emb" but "embedding"
as "embed"); underscores split words, since PDF text drops them ("R HOME").

Measured on tests/retrieval_set.py (642 heading queries over three R manuals, SQLite):
keyword-only hit@1 0.623 before this list, 0.941 with it. Then, with a pool of 100 per
search and the list weighed as the searches together (`lib/documents/retrieval.py`),
hybrid hit@1 / hit@5 0.988 / 0.997; with each of these taken back alone: 0.984 / 0.994
with stems compared whole, 0.986 / 0.995 with underscores kept, 0.984 / 0.997 with
prose and code lines counted, 0.984 / 0.995 without wrapped headings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import Stemmer

from lib.documents.bm25 import STOPWORDS

_NUMBERING = re.compile(
    r"^\s*(?:(?:chapter|appendix|section|part)\s+)?(?:[A-Z]|\d+)?(?:\.\d+)*[.:)]?\s+|^#+\s*",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"\d|#|^\s*(?:chapter|appendix|section|part)\b", re.IGNORECASE)
_SENTENCE_END = (".", ",", ";", ":")  # a line of prose wrapped, not a title
_CODE = re.compile(r"[{}=;<>\\]")
# Words as bm25 splits them, and at underscores too: PDF text loses an identifier's
# underscore where it is typeset as a rule (R-exts' "8.2.3 Finding R HOME" is "Finding
# R_HOME" in its outline).
_WORD = re.compile(r"[^\W_]+")
_STEMMER = Stemmer.Stemmer("english")  # bm25's
PREFIX = 4  # install/installing, manual/manuals
MIN_STEM = 3  # a stem that is the start of another is the same word: emb(ed)/embed(ding)
MAX_PHRASE_TERMS = 12  # a longer question is a question, not a heading's name


@dataclass(frozen=True)
class Phrase:
    stems: list[str]
    prefixes: list[str]  # each word's first letters, which every form of it shares
    longest: int  # characters a line naming it can have: numbering, a gerund's letters
    needles: list[bytes] | None  # the prefixes in UTF-8, when all are ASCII

    def mentioned(self, text: str) -> bool:
        """Whether `text` has every prefix somewhere (most candidates have not)."""
        if self.needles is not None:  # bytes.lower() is ASCII-only and 4x str.lower()
            low = text.encode().lower()
            return all(p in low for p in self.needles)
        folded = text.lower()
        return all(p in folded for p in self.prefixes)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def key_phrase(question: str) -> Phrase:
    """The question's key phrase (its question words are stop words)."""
    words = _words(question)
    # "make" and "making" share "mak": a final e goes before -ing.
    prefixes = [w[: min(PREFIX, len(w) - w.endswith("e"))] for w in words]
    ascii_only = all(p.isascii() for p in prefixes)
    needles = [p.encode() for p in prefixes] if ascii_only else None
    return Phrase(_STEMMER.stemWords(words), prefixes, 2 * len(question) + 20, needles)


def names(text: str, phrase: Phrase) -> bool:
    """Whether a line of `text` is the phrase: a heading naming it."""
    if not phrase.mentioned(text):
        return False
    lines = text.splitlines()
    first = phrase.prefixes[0]
    for n, line in enumerate(lines):
        if len(line) > phrase.longest or first not in line.lower():
            continue
        if _is_phrase(line, phrase):
            return True
        # A long heading wraps: "Appendix A Essential and useful other programs" and
        # "under a Unix-alike" are two lines of R-admin's page 46.
        if n + 1 < len(lines) and _is_phrase(f"{line} {lines[n + 1]}", phrase):
            return True
    return False


def _is_phrase(line: str, phrase: Phrase) -> bool:
    line = line.strip()
    if len(line) > phrase.longest or not all(p in line.lower() for p in phrase.prefixes):
        return False
    numbering = _NUMBERING.match(line)
    cut = numbering.end() if numbering else 0
    if cut and _NUMBERED.search(line[:cut]):  # "6.3 Installing packages", "## Multilib"
        return _same(_words(line[cut:]), phrase)
    # Unnumbered, only a title: "Installing packages", not a wrapped line of prose
    # ("installed by", "are not installed.") nor code ("debug: {"); "R under Windows" as
    # written (its "R " is no numbering) or a letter's appendix ("A Multilib") without.
    if not line[:1].isupper() or line.endswith(_SENTENCE_END) or _CODE.search(line):
        return False
    return _same(_words(line), phrase) or bool(cut) and _same(_words(line[cut:]), phrase)


def _same(words: list[str], phrase: Phrase) -> bool:
    if len(words) != len(phrase.stems):
        return False
    stems = _STEMMER.stemWords(words)
    return all(_alike(a, b) for a, b in zip(stems, phrase.stems, strict=True))


def _alike(a: str, b: str) -> bool:
    """The same word: equal stems, or one the start of the other (Snowball stems "embed"
    as "emb" but "embedding" as "embed")."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return short == long or (len(short) >= MIN_STEM and long.startswith(short))


def naming(question: str, ranked: Sequence[tuple[int, str]]) -> list[int]:
    """The ids of (id, text) `ranked` whose text names the question's key phrase, in
    their given order."""
    phrase = key_phrase(question)
    if not phrase.stems or len(phrase.stems) > MAX_PHRASE_TERMS:
        return []
    return [i for i, text in ranked if names(text, phrase)]
