"""A retrieval question set built from the real R manuals (Debian's r-doc-pdf).

Each section heading of R-admin, R-data and R-exts (the PDF outline, 339 of them) is a
query twice: as written ("Making the manuals") and asked as a question ("How do I make
the manuals?", "What is Licensing?"). The gold is the section's pages: from the page its
heading is on to the page the next heading starts on (a section ends on the page the
next begins). A heading that names several sections (R-admin has two "Testing an
Installation", R-data and R-exts each an "Acknowledgements") has all of them as gold:
nothing in the query could tell them apart. All three manuals are searched together, so
each is a distractor for the others.

Used by tests/test_retrieval_quality.py and bench/retrieval_quality.py; `evaluate` runs
the queries through `lib/documents/retrieval.retrieve`, as a chat question goes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pypdf

from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.documents.rerank import Reranker
from lib.documents.retrieval import retrieve
from tests import doc_samples as samples

MANUALS = ("R-admin.pdf", "R-data.pdf", "R-exts.pdf")
# The gerunds the headings start with, and the verb a question asks with ("How do I ...?").
_VERBS = {
    "building": "build", "checking": "check", "compiling": "compile", "creating": "create",
    "customizing": "customize", "debugging": "debug", "getting": "get",
    "handling": "handle", "installing": "install", "listing": "list", "making": "make",
    "managing": "manage", "obtaining": "obtain", "profiling": "profile",
    "reading": "read", "registering": "register", "running": "run", "setting": "set",
    "specifying": "specify", "testing": "test", "uninstalling": "uninstall",
    "using": "use", "writing": "write", "choosing": "choose", "calling": "call",
    "adding": "add", "converting": "convert", "evaluating": "evaluate",
    "interfacing": "interface", "linking": "link", "allocating": "allocate",
    "tidying": "tidy", "controlling": "control", "moving": "move", "tracking": "track",
    "inspecting": "inspect", "finding": "find", "organizing": "organize",
    "processing": "process", "parsing": "parse", "embedding": "embed",
    "exporting": "export", "importing": "import", "reshaping": "reshape",
    "re-shaping": "re-shape", "accessing": "access", "defining": "define",
    "storing": "store", "including": "include", "sorting": "sort", "printing": "print",
    "unpacking": "unpack", "manipulating": "manipulate",
}  # fmt: skip
_NUMBERED = re.compile(r"^(?:\d+|[A-Z])(?:\.\d+)*\s+")  # "2.3 ", "A " (an appendix)


@dataclass(frozen=True)
class Query:
    text: str
    form: str  # "heading" | "question"
    heading: str
    gold: frozenset[tuple[str, int]]  # (manual, 1-based PDF page)


def sections(name: str) -> list[tuple[str, int]]:
    """(heading, first page) of every outline entry of a manual, in reading order."""
    reader = pypdf.PdfReader(io.BytesIO(samples.manual(name)))
    found: list[tuple[str, int]] = []

    def walk(items: list) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                title = _NUMBERED.sub("", item.title).strip()
                found.append((title, reader.get_destination_page_number(item) + 1))

    walk(reader.outline)
    return found


def as_question(heading: str) -> str:
    """The heading asked the way a user would: "How do I ...?" or "What is ...?"."""
    words = heading.split(" ")
    if words[0].lower() not in _VERBS:
        return f"What is {heading}?"
    # "Checking and building packages": every gerund of the compound, not only the first.
    asked = [_VERBS.get(w.lower(), w) if i < 3 else w for i, w in enumerate(words)]
    return f"How do I {' '.join(asked)}?"


def queries() -> list[Query]:
    """Every heading of the three manuals, as written and as a question."""
    pages: dict[str, set[tuple[str, int]]] = {}
    order: list[str] = []
    for name in MANUALS:
        found = sections(name)
        for i, (title, start) in enumerate(found):
            if title.lower().endswith(" index"):
                continue  # an index's pages are kept out of retrieval: no passage to find
            nxt = found[i + 1][1] if i + 1 < len(found) else start
            key = title.lower()
            if key not in pages:
                pages[key], _ = set(), order.append(title)
            pages[key] |= {(name, p) for p in range(start, max(start, nxt) + 1)}
    out = []
    for title in order:
        gold = frozenset(pages[title.lower()])
        out.append(Query(title, "heading", title, gold))
        out.append(Query(as_question(title), "question", title, gold))
    return out


@dataclass(frozen=True)
class Scores:
    hit1: float
    hit5: float
    mrr: float  # of the first gold passage in the top 10, 0 when none is
    misses: list[str]  # queries whose gold is not first


def evaluate(
    ranked: Callable[[Query], Sequence[tuple[str, int | None]]], items: Sequence[Query]
) -> Scores:
    """hit@1, hit@5 and MRR@10 of `ranked` (a query's (file, page) list, best first)."""
    hit1 = hit5 = rr = 0.0
    misses = []
    for query in items:
        found = list(ranked(query))[:10]
        rank = next((r for r, hit in enumerate(found, 1) if hit in query.gold), None)
        hit1 += rank == 1
        hit5 += rank is not None and rank <= 5
        rr += 1 / rank if rank else 0.0
        if rank != 1:
            misses.append(query.text)
    n = max(len(items), 1)
    return Scores(hit1 / n, hit5 / n, rr / n, misses)


MODES = ("keyword", "hybrid")


def index_manuals(library: DocumentLibrary, embedder: Embedder | None) -> list[str]:
    """The three manuals ingested through Parley's own path; their document ids."""
    ingestor = Ingestor(library, embedder, limit_bytes=1 << 30)
    ids = []
    for name in MANUALS:
        report = ingestor.ingest(name, samples.manual(name))
        assert report.status == "indexed", report.message
        ids.append(report.document_id)
    return ids


def measure(
    library: DocumentLibrary,
    document_ids: Sequence[str],
    embedder: Embedder,
    items: Sequence[Query],
    *,
    reranker: Reranker | None = None,
) -> dict[str, Scores]:
    """Scores of keyword-only and hybrid retrieval over `items`, as chat retrieves."""
    vectors = {q.text: embedder.embed_query(q.text) for q in items}
    out = {}
    for mode in MODES:

        def ranked(query: Query, mode: str = mode) -> list[tuple[str, int | None]]:
            dense = mode == "hybrid"
            result = retrieve(
                library,
                query.text,
                document_ids,
                model=embedder.model if dense else None,
                query_vector=vectors[query.text] if dense else None,
                k=10,
                reranker=reranker,
            )
            return [(s.chunk.file, s.chunk.page) for s in result.sources]

        out[mode] = evaluate(ranked, items)
    return out
