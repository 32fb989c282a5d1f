"""Tables of contents and indexes: passages that list where things are, not what they say.

A table of contents names every section, so it shares the most words with a question
that names one, and it ranked first: on the R manuals' question set
(tests/retrieval_set.py) a listing chunk was the first keyword result for 158 of the 338
misses, 152 of 388 in hybrid. Such a chunk is flagged as it is stored (`chunks.listing`)
and left out of both searches; it stays in the document (a whole-document answer still
sends it, and its page is still shown).

What marks one: most of its lines are entries, text then a page number, with dot leaders
("5.9.4 Attributes . . . . . 160", texinfo's and LaTeX's tables and indexes) or without
("Concept index 229", "Licensing 16, 18", a word processor's). A chunk is a listing when
at least LEADER_SHARE of its lines have leaders, or ENTRY_SHARE end in a page number
and there are at least MIN_ENTRIES of them. Measured on the 1,563 chunks of seven R
manuals: 310 flagged, all from their tables of contents and indexes; the chunks with a
dot leader left unflagged are running text ("1, 2, . . ., n") and code.
"""

from __future__ import annotations

import re

LEADER_SHARE = 0.4
ENTRY_SHARE = 0.6
MIN_ENTRIES = 6
_LEADER = re.compile(r"(?:\.\s?){4,}\s*[\divxlcIVXLC]+(?:[,–-]\s*\d+)*\s*$")
_ENTRY = re.compile(r"[^\W\d_][^\n]*?\s\d{1,4}(?:\s*[,–-]\s*\d{1,4})*\s*$")
_CODE = re.compile(r"[=<>(){};]")


def is_listing(text: str) -> bool:
    """Whether a passage is (mostly) a table of contents or an index."""
    # An index's letter headings ("C", "%") say nothing either way.
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) > 2]
    leaders = sum(bool(_LEADER.search(line)) for line in lines)
    if leaders and leaders >= LEADER_SHARE * len(lines):
        return True
    entries = sum(bool(_ENTRY.match(line)) and not _CODE.search(line) for line in lines)
    return entries >= MIN_ENTRIES and entries >= ENTRY_SHARE * len(lines)
