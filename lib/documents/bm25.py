"""Keyword retrieval: BM25 over per-document postings, searched in memory.

Why not SQLite FTS5's `bm25()`: it scores every row that matches any query word, and at
100,000 chunks (bench/query.py's corpus) a question matches 10,000-60,000 of them, which
took 15-75 ms per query; the target for the whole hybrid retrieval is 10 ms. Here each
document has a small postings segment; a query binary-searches its terms in each searched
document and scores only their postings with numpy, in about a millisecond at 100k.

Words are `\\w+`, lower-cased and Snowball-stemmed (PyStemmer), so "eigenvalues" finds
"eigenvalue". A question's English stop words are dropped ("How do I install packages?"
searches for "install packages"), unless it has no other word ("Who is he?"): removing
them must never leave a query empty, so they are indexed too, though a passage's length
counts only its other words. Tables of contents and indexes (`lib/documents/listings.py`)
get no postings: they list every section's name, and ranked first for a quarter of the
questions of tests/retrieval_set.py. Each term is kept as a 64-bit hash, so segments need
no shared vocabulary and two terms of one document collide with odds of about 1e-12.

A segment is written once, when its document is indexed, as `<document id>.bm25.npz`
beside the stored file (`numpy.savez`, read back with `allow_pickle=False`):
terms (sorted uint64 hashes), offsets into the postings, the postings' chunk positions and
term frequencies, and each chunk's row id and length in words. Deleting a document deletes
its segment; there is no global structure to update. It is written atomically with fsync
(`lib/atomic_files.py`); on load the zip's CRC-32s and the arrays' shapes are checked, so
a truncated or overwritten segment raises `SegmentDamaged` (and is rebuilt from the
document's chunks by `lib/documents/indexes.py`).

Scoring is Okapi BM25 (k1 = 1.2, b = 0.75, Lucene's always-positive idf), with document
frequencies and the average length taken over the workspace's ready documents (the whole
pack), whichever of them are searched. PostgreSQL keeps the same postings in the database
and scores them with the same functions (`lib/documents/pgkeywords.py`).
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import Stemmer

from lib.atomic_files import atomic_write
from lib.documents.listings import is_listing

K1 = 1.2
B = 0.75
_WORD = re.compile(r"\w+")
_STEMMER = Stemmer.Stemmer("english")
# Words too common to help a keyword search.
STOPWORDS = frozenset(
    "a about above after again all also am an and any are as at be because been before "
    "being between both but by can could did do does doing down during each few for from "
    "further had has have having he her here hers him his how i if in into is it its "
    "itself just me more most my no nor not now of off on once only or other our ours out "
    "over own same she should so some such than that the their theirs them then there "
    "these they this those through to too under until up very was we were what when where "
    "which while who whom why will with would you your yours".split()
)


class SegmentDamaged(ValueError):
    """A segment file that cannot be read back as it was written."""


class SegmentOutdated(SegmentDamaged):
    """A sound segment from an older Parley, rebuilt without a word to the user."""


def _term(word: str) -> int:
    stem = _STEMMER.stemWord(word)
    return int.from_bytes(hashlib.blake2b(stem.encode(), digest_size=8).digest(), "little")


_STOP_TERMS = frozenset(_term(word) for word in STOPWORDS)


def analyse(text: str, *, keep_stopwords: bool = False) -> list[int]:
    """The term hashes of `text`, in order, stop words left out (unless told to keep them)."""
    # A memo per call, not per process: words from one user's documents must not sit in
    # a cache every session shares (measured: as fast as the global cache on R-intro).
    memo: dict[str, int] = {}
    terms = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS and not keep_stopwords:
            continue
        term = memo.get(word)
        if term is None:
            term = memo[word] = _term(word)
        terms.append(term)
    return terms


@dataclass(frozen=True)
class Segment:
    """One document's postings."""

    terms: np.ndarray  # uint64, sorted, unique
    offsets: np.ndarray  # int64, len(terms) + 1
    local: np.ndarray  # int32 chunk positions, grouped by term
    tf: np.ndarray  # uint16 term frequencies, aligned with `local`
    chunk_ids: np.ndarray  # int64 row id of each chunk position
    lengths: np.ndarray  # int32 words in each chunk (stop words excluded, though indexed)
    listing: np.ndarray  # bool: a table of contents or an index, never a result

    @classmethod
    def build(cls, chunk_ids: Sequence[int], texts: Sequence[str]) -> Segment:
        # Typed arrays, not lists: a 48 MB text has 5.7 million postings, which as lists
        # of Python ints peaked at +640 MB; as arrays they take 14 bytes each.
        terms, local, tf, lengths = array("Q"), array("i"), array("H"), array("i")
        listing = [is_listing(text) for text in texts]
        for position, text in enumerate(texts):
            # Stop words are indexed too, for the question that has nothing else.
            words = [] if listing[position] else analyse(text, keep_stopwords=True)
            lengths.append(sum(term not in _STOP_TERMS for term in words))
            for term, count in Counter(words).items():
                terms.append(term)
                local.append(position)
                tf.append(min(count, 65_535))
        term_arr = np.array(terms, dtype=np.uint64)
        order = np.lexsort((np.array(local, dtype=np.int32), term_arr))
        term_arr = term_arr[order]
        unique, starts = np.unique(term_arr, return_index=True)
        return cls(
            terms=unique,
            offsets=np.append(starts, len(term_arr)).astype(np.int64),
            local=np.array(local, dtype=np.int32)[order],
            tf=np.array(tf, dtype=np.uint16)[order],
            chunk_ids=np.array(chunk_ids, dtype=np.int64),
            lengths=np.array(lengths, dtype=np.int32),
            listing=np.array(listing, dtype=bool),
        )

    def save(self, path: Path) -> None:
        with atomic_write(path) as file:
            np.savez(file, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> Segment:
        """Read a saved segment; FileNotFoundError if none, SegmentDamaged if broken."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if "listing" not in data.files and "terms" in data.files:
                    raise SegmentOutdated("written before listings were flagged")
                segment = cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (FileNotFoundError, SegmentOutdated):
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise SegmentDamaged(f"unreadable: {type(exc).__name__}") from exc
        segment.check()
        return segment

    def check(self) -> None:
        """Raise SegmentDamaged unless the arrays fit together as `build` makes them."""
        chunks, postings = len(self.chunk_ids), len(self.local)
        fits = (
            len(self.offsets) == len(self.terms) + 1
            and len(self.tf) == postings
            and len(self.lengths) == chunks
            and len(self.listing) == chunks
            and (not len(self.offsets) or (self.offsets[0] == 0 and self.offsets[-1] == postings))
            and bool(np.all(np.diff(self.offsets) >= 0))
            and bool(np.all(self.terms[1:] > self.terms[:-1]))
            and (not postings or (0 <= self.local.min() and self.local.max() < chunks))
        )
        if not fits:
            raise SegmentDamaged("its arrays do not fit together")

    def find(self, term: int) -> slice | None:
        i = int(np.searchsorted(self.terms, np.uint64(term)))
        if i < len(self.terms) and int(self.terms[i]) == term:
            return slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return None


@dataclass(frozen=True)
class Pack:
    """Many segments as one, so a query costs a few numpy calls however many documents.

    One row per (document, term) pair, sorted by term, points at that document's postings;
    chunk positions are global (0..N-1) across the pack.
    """

    terms: np.ndarray  # uint64, sorted, one row per (document, term)
    starts: np.ndarray  # int64 start of each row's postings
    ends: np.ndarray  # int64 end of each row's postings
    local: np.ndarray  # int32 global chunk positions
    tf: np.ndarray  # uint16
    chunk_ids: np.ndarray  # int64, by global position
    lengths: np.ndarray  # int32, by global position
    listing: np.ndarray  # bool, by global position
    spans: dict[str, tuple[int, int]]  # document id -> its [first, end) chunk positions

    @classmethod
    def of(cls, segments: dict[str, Segment]) -> Pack:
        terms, starts, ends, local, tf, spans = [], [], [], [], [], {}
        chunks = postings = 0
        for doc_id, seg in segments.items():
            terms.append(seg.terms)
            starts.append(seg.offsets[:-1] + postings)
            ends.append(seg.offsets[1:] + postings)
            local.append(seg.local + chunks)
            tf.append(seg.tf)
            spans[doc_id] = (chunks, chunks + len(seg.lengths))
            chunks += len(seg.lengths)
            postings += len(seg.local)
        if not segments:
            return cls(*(np.zeros(0, dtype=t) for t in _PACK_TYPES), spans={})
        all_terms = np.concatenate(terms)
        order = np.argsort(all_terms, kind="stable")
        return cls(
            terms=all_terms[order],
            starts=np.concatenate(starts)[order],
            ends=np.concatenate(ends)[order],
            local=np.concatenate(local).astype(np.int32),
            tf=np.concatenate(tf),
            chunk_ids=np.concatenate([seg.chunk_ids for seg in segments.values()]),
            lengths=np.concatenate([seg.lengths for seg in segments.values()]),
            listing=np.concatenate([seg.listing for seg in segments.values()]),
            spans=spans,
        )

    # Per pack, not per query. With the filter skipped when every document is searched:
    # 1.92 -> 1.70 ms a query at 100k chunks (bench/query.py's, k=200), same results.

    @cached_property
    def searchable(self) -> int:
        """Chunks that can match: listings have no postings."""
        return max(len(self.lengths) - int(self.listing.sum()), 1)

    @cached_property
    def norms(self) -> np.ndarray:
        """Each chunk's length normalisation, K1 (1 - B + B length / average length)."""
        return norms(self.lengths, float(self.lengths.sum()) / self.searchable)

    def searchable_ids(self, document_ids: Sequence[str]) -> np.ndarray:
        """The chunk ids of these documents but their tables of contents and indexes (no
        database query)."""
        spans = [slice(*self.spans[d]) for d in document_ids if d in self.spans]
        parts = [self.chunk_ids[span][~self.listing[span]] for span in spans]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


_PACK_TYPES = (np.uint64, np.int64, np.int64, np.int32, np.uint16, np.int64, np.int32, bool)


def search(
    pack: Pack, question: str, k: int, documents: Sequence[str] | None = None
) -> list[tuple[int, float]]:
    """The k best (chunk id, BM25 score), best first, among `documents` if given."""
    query = np.array(list(dict.fromkeys(query_terms(question))), dtype=np.uint64)
    if not len(query) or not len(pack.terms):
        return []
    low = np.searchsorted(pack.terms, query, "left")
    counts = np.searchsorted(pack.terms, query, "right") - low
    if not counts.any():
        return []
    rows = _ranges(low, counts)
    sizes = pack.ends[rows] - pack.starts[rows]
    term_of_row = np.repeat(np.arange(len(query)), counts)
    total = len(pack.lengths)
    df = np.bincount(term_of_row, weights=sizes, minlength=len(query))
    weights = idf(pack.searchable, df)
    picked = _ranges(pack.starts[rows], sizes)
    local = pack.local[picked]
    weight = np.repeat(weights[term_of_row], sizes)
    scores = np.bincount(
        local, weights=term_scores(weight, pack.tf[picked], pack.norms[local]), minlength=total
    )
    if documents is not None and not pack.spans.keys() <= set(documents):
        allowed = np.zeros(total, dtype=bool)
        for doc_id in documents:
            if doc_id in pack.spans:
                first, end = pack.spans[doc_id]
                allowed[first:end] = True
        scores[~allowed] = 0
    best = top(scores, k)
    return list(zip(pack.chunk_ids[best].tolist(), scores[best].tolist(), strict=True))


def query_terms(question: str) -> list[int]:
    """A question's terms: its words but the stop words, or, when it has nothing else
    ("Who is he?", "What is this?"), all of them, so a question never searches for nothing.
    (Passages keep no stop words, so only those written out as other words can match.)"""
    return analyse(question) or analyse(question, keep_stopwords=True)


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The indexes start..start+size-1 of every range, concatenated, without a Python loop."""
    keep = sizes > 0
    starts, sizes = starts[keep], sizes[keep]
    if not len(sizes):
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(sizes)
    steps = np.ones(int(ends[-1]), dtype=np.int64)
    steps[0] = starts[0]
    steps[ends[:-1]] = starts[1:] - (starts[:-1] + sizes[:-1] - 1)
    return np.cumsum(steps)


# Okapi BM25, shared with PostgreSQL's keyword search (lib/documents/pgkeywords.py)


def idf(searchable: int, df: np.ndarray) -> np.ndarray:
    """Lucene's always-positive idf of terms found in `df` of `searchable` passages."""
    return np.log(1 + (searchable - df + 0.5) / (df + 0.5))


def norms(lengths: np.ndarray, average: float) -> np.ndarray:
    """Each passage's length normalisation, K1 (1 - B + B length / average length).
    (Written as two passes over the lengths, not four: a question on PostgreSQL computes
    it for each of up to 60,000 postings.)"""
    norm = lengths * (K1 * B / max(average, 1e-9))
    norm += K1 * (1 - B)
    return norm


def term_scores(weight: np.ndarray, tf: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """Each posting's share of its passage's score: its term's idf (`weight`) times the
    saturated term frequency, weight tf (K1 + 1) / (tf + norm), in place where it can
    be (1.0 against 1.6 ms at 63,000 postings with `norms`)."""
    share = weight * tf
    share *= K1 + 1
    share /= norm + tf
    return share


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indexes of the k highest positive scores, highest first."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
    return positive[np.argsort(-scores[positive], kind="stable")]
