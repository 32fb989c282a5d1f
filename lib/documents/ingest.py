"""The upload pipeline: read, chunk, embed and index each file, honestly and cancellably.

For each file: size limit, content hash (an unchanged file already in the library is
reported at once and adds nothing), pages read one by one (`read_pages`, a step of
its own so the chat box, which counts a file's tokens first, hands its pages on),
chunks, embeddings batch by batch, then one transaction for the rows, then the search
indexes (`library.search`).
`progress` is called per page, per 256 KB split into chunks, per embedding batch (sized
to take a few seconds: `embeddings.BatchSizer`) and every half second of a rate-limit
wait; `cancelled` is checked as often, and a cancelled file leaves nothing behind (the
embedding cache keeps what was paid for, so trying again resumes where it stopped).

A file is reported as indexed only when every stage finished. One file failing (corrupt,
encrypted, a scan with no text) never stops the others in the same upload. When the
server has no embeddings endpoint, or embedding fails, the file is still indexed for
keyword search and its report says so; re-indexing later adds the vectors.

Memory, measured by bench/hostile_files.py on a 48 MB text file (peak RSS growth, +631 MB
before): a file's chunks are ranges of its pages' texts (`chunking.Chunks`), cut one at
a time for the embedder, the rows and the keyword index, never all held (-140 MB); no
whole-text `strip()` copies; a big page's text is stored as a copy (`_unshared`, -46
MB). Now about +445 MB, most of it the BM25 segment's build (+245 MB for 4.1 million
postings) while the text (95 MB: two bytes a character once it has a curly quote) and
SQLite's copy of the last text bound (48 MB, kept by the cached statement) are held.
"""

from __future__ import annotations

import hashlib
import logging
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lib.documents import chunking
from lib.documents import ocr as _ocr
from lib.documents.embeddings import CachedVectors, Embedder, EmbedProgress
from lib.documents.extract import Page, open_document
from lib.documents.formats import kinds as formats
from lib.documents.library import AlreadyStored, DocumentLibrary, DocumentRecord
from lib.documents.vectorstore import Blocks
from lib.errors import (
    DocumentError,
    FileTooLarge,
    IngestCancelled,
    ModelRejected,
    ParleyError,
)
from lib.settings import REPO_ROOT

log = logging.getLogger(__name__)
STREAMLIT_CONFIG = REPO_ROOT / ".streamlit" / "config.toml"
STREAMLIT_DEFAULT_UPLOAD_MB = 200
READ_SHARE = 0.4  # of a file's progress bar: reading pages, then embedding, then saving
CHUNK_SHARE = 0.5  # of READ_SHARE: splitting into chunks (most of it for a big text file)
EMBED_SHARE = 0.55
BIG_PAGE_CHARS = 1_000_000  # a page's text stored as a copy (`_unshared`)


@dataclass
class Progress:
    file: str
    file_index: int
    files: int
    stage: str  # reading | chunking | embedding | waiting | saving
    done: int
    total: int
    fraction: float  # of the whole upload, 0..1
    message: str


@dataclass
class FileReport:
    name: str
    status: str  # indexed | duplicate | failed | cancelled
    message: str = ""
    document_id: str | None = None
    pages: int = 0  # slides, sections or blocks of rows in other formats (kinds.PARTS)
    sheets: int = 0  # of a workbook
    chars: int = 0
    empty_pages: list[int] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)  # read by OCR (scans, images)
    chunks: int = 0
    tokens: int = 0
    cached: int = 0  # chunks whose vectors came from the cache
    keyword_only: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Read:
    """One file's pages as `Ingestor.read` gave them (all of them, at least one with text)."""

    kind: str
    pages: list[Page]
    notes: list[str]  # the opener's: a mislabelled file, a converted format
    encoding: str | None = None  # of a text file


@dataclass
class _Prepared:
    kind: str
    pages: list[Page]
    page_tokens: list[int]
    chunks: chunking.Chunks  # ranges: each text cut from its page when read
    vectors: np.ndarray | Blocks | None  # read back from the cache when it has one
    model: str | None


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


def _never() -> bool:
    return False


def upload_limit_mb(config: Path = STREAMLIT_CONFIG) -> int:
    """The per-file limit, `server.maxUploadSize` in .streamlit/config.toml (in MB).

    Streamlit enforces it in the browser; ingestion checks it again, so a file that
    reaches the library by another route (a script, the CLI) meets the same limit.
    """
    try:
        config_data = tomllib.loads(config.read_text(encoding="utf-8"))
        return int(config_data["server"]["maxUploadSize"])
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError):
        return STREAMLIT_DEFAULT_UPLOAD_MB


def check_size(name: str, data: bytes, limit_bytes: int) -> None:
    """Refuse a file over the per-file limit (the Documents page's and the chat box's)."""
    if len(data) > limit_bytes:
        raise FileTooLarge(f"{name} is {_mb(len(data))}; the limit is {_mb(limit_bytes)} per file.")


def _mb(size: int) -> str:
    if size < 1_048_576:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1_048_576:.1f} MB"


class Ingestor:
    """Ingests files into a workspace's library, embedding with `embedder` if given."""

    def __init__(
        self,
        library: DocumentLibrary,
        embedder: Embedder | None,
        *,
        limit_bytes: int,
        ocr: bool = True,  # the operator's PARLEY_OCR (Settings.ocr); needs tesseract too
    ) -> None:
        self.library = library
        self.embedder = embedder
        self.limit_bytes = limit_bytes
        self.ocr = ocr

    def ingest_many(
        self,
        files: Sequence[tuple[str, bytes]],
        progress: ProgressFn | None = None,
        cancelled: CancelFn = _never,
    ) -> list[FileReport]:
        reports: list[FileReport] = []
        for i, (name, data) in enumerate(files):
            tick = self._ticker(name, i, len(files), progress)
            try:
                reports.append(self.ingest(name, data, tick, cancelled))
            except IngestCancelled:
                reports += [FileReport(n, "cancelled", "Cancelled before it was indexed.")
                            for n, _ in files[i:]]  # fmt: skip
                break
        return reports

    def ingest(
        self,
        name: str,
        data: bytes,
        progress: Callable[[str, int, int, str, float], None] | None = None,
        cancelled: CancelFn = _never,
        read: Read | None = None,
    ) -> FileReport:
        """Index one file; failures come back as a report, cancelling raises. `read` is
        `self.read(name, data)` where the caller has it (then the file is not read again)."""
        started = time.perf_counter()
        tick = progress or (lambda *_a: None)
        report = FileReport(name, "failed")
        try:
            check_size(name, data, self.limit_bytes)
            sha = hashlib.sha256(data).hexdigest()
            existing = self.library.find_by_hash(sha)
            if existing is not None and existing.status == "ready":
                return _duplicate(name, existing, time.perf_counter() - started)
            if existing is not None:  # an earlier attempt that never finished
                self.library.delete(existing.id)
            prepared = self._prepare(name, data, report, tick, cancelled, read)
            tick("saving", 1, 1, f"{name}: saving", 0.97)
            try:
                self._save_new(name, data, sha, prepared, report)
            except AlreadyStored:
                # Another session of this workspace added the same file meanwhile.
                existing = self.library.find_by_hash(sha)
                if existing is None:
                    raise
                return _duplicate(name, existing, time.perf_counter() - started)
        except DocumentError as exc:
            report.message = str(exc)
        except IngestCancelled:
            raise
        except Exception as exc:  # a bug or an I/O error must not lose the other files
            log.exception("ingesting %s failed", name)
            report.message = f"{name} could not be indexed: {exc}"
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def reindex(
        self,
        document_id: str,
        progress: Callable[[str, int, int, str, float], None] | None = None,
        cancelled: CancelFn = _never,
    ) -> FileReport:
        """Read the stored file again and rebuild its chunks and vectors (cache first)."""
        started = time.perf_counter()
        doc = self.library.get(document_id)
        report = FileReport(doc.name, "failed", document_id=doc.id)
        tick = progress or (lambda *_a: None)
        data = self.library.read_file(doc)
        try:
            prepared = self._prepare(doc.name, data, report, tick, cancelled)
        except DocumentError as exc:
            report.message = str(exc)
            return report
        tick("saving", 1, 1, f"{doc.name}: saving", 0.97)
        old_ids, ids = self.library.replace_content(
            doc.id,
            report=report.to_dict(),
            pages=_unshared(prepared.pages),
            page_tokens=prepared.page_tokens,
            chunks=prepared.chunks,
        )
        self.library.search.remove(doc, old_ids)
        self._finish(doc.id, ids, prepared, report, started)
        return report

    def read(
        self,
        name: str,
        data: bytes,
        progress: Callable[[str, int, int, str, float], None] | None = None,
        cancelled: CancelFn = _never,
    ) -> Read:
        """Every page of one file, OCR'd as this ingestor's setting says (`read_pages`),
        for `ingest` to take (`read=`)."""
        return read_pages(name, data, ocr=self.ocr, progress=progress, cancelled=cancelled)

    def _prepare(
        self,
        name: str,
        data: bytes,
        report: FileReport,
        tick: Callable[..., None],
        cancelled: CancelFn,
        read: Read | None = None,
    ) -> _Prepared:
        read = read or self.read(name, data, tick, cancelled)
        pages = read.pages
        report.notes += read.notes
        report.pages = len(pages)
        if read.kind == "xlsx":
            report.sheets = formats.sheet_count(p.label for p in pages)
        report.chars = sum(len(p.text) for p in pages)
        report.empty_pages = [p.number or i for i, p in enumerate(pages, 1) if not p.has_text]
        report.ocr_pages = [p.number or i for i, p in enumerate(pages, 1) if p.source == "ocr"]
        report.notes += _ocr.page_notes(pages)
        if read.encoding:
            report.notes.append(f"Read as {read.encoding} text.")
        chunks = chunking.split_pages(
            (p for p in pages if p.has_text), progress=_chunk_ticker(name, tick, cancelled)
        )
        page_tokens = [chunking.count_tokens(p.text) for p in pages]
        report.chunks, report.tokens = len(chunks), sum(page_tokens)
        vectors, model = self._embed(name, chunks, report, tick, cancelled)
        return _Prepared(read.kind, pages, page_tokens, chunks, vectors, model)

    def _embed(
        self,
        name: str,
        chunks: chunking.Chunks,
        report: FileReport,
        tick: Callable[..., None],
        cancelled: CancelFn,
    ) -> tuple[np.ndarray | Blocks | None, str | None]:
        if self.embedder is None:
            report.keyword_only = True
            report.notes.append("No embeddings model is configured: keyword search only.")
            return None, None

        def on_batch(p: EmbedProgress) -> None:
            fraction = READ_SHARE + EMBED_SHARE * p.done / max(p.total, 1)
            if p.waiting:
                tick("waiting", p.done, p.total,
                     f"{name}: {p.reason}, retrying in {p.waiting:.0f} s "
                     f"(attempt {p.attempt + 1})", fraction)  # fmt: skip
            else:
                why = f" ({p.reason})" if p.reason else ""
                tick("embedding", p.done, p.total,
                     f"{name}: embedding chunk {p.done} of {p.total}{why}", fraction)  # fmt: skip

        try:
            vectors = self.embedder.embed(
                chunks.texts(),
                chunks.hashes(),
                chunks.tokens(),
                progress=on_batch,
                cancelled=cancelled,
            )
        except IngestCancelled:
            raise
        except ParleyError as exc:
            log.warning("embedding %s failed: %s", name, type(exc).__name__)
            report.keyword_only = True
            report.notes.append(_keyword_only_note(exc, self.embedder.model))
            return None, None
        report.cached = self.embedder.last_cached
        report.notes += self.embedder.last_notes()
        cache, model = self.embedder.cache, self.embedder.model
        if cache is None or not len(vectors):
            return vectors, model
        # Every vector is in the cache: the index reads them back a block at a time, and
        # this array (223 MB for a 48 MB text file's 38,064 chunks at 1,536 dimensions)
        # goes now, not after the index has made its own copy beside it.
        return CachedVectors(cache, model, chunks.hashes(), vectors.shape[1]), model

    def _save_new(
        self, name: str, data: bytes, sha: str, prepared: _Prepared, report: FileReport
    ) -> None:
        started = time.perf_counter()
        doc, ids = self.library.create(
            name=name,
            data=data,
            sha256=sha,
            kind=prepared.kind,
            report=report.to_dict(),
            pages=_unshared(prepared.pages),
            page_tokens=prepared.page_tokens,
            chunks=prepared.chunks,
        )
        report.document_id = doc.id
        try:
            self._finish(doc.id, ids, prepared, report, started)
        except BaseException:
            # Also on Streamlit's stop/rerun: never leave a half-indexed document behind.
            self.library.delete(doc.id)
            report.document_id = None
            raise

    def _finish(
        self,
        doc_id: str,
        ids: list[int],
        prepared: _Prepared,
        report: FileReport,
        started: float,
    ) -> None:
        texts = prepared.chunks.texts()  # cut one at a time as the index reads them
        self.library.search.add(doc_id, ids, texts, prepared.model, prepared.vectors)
        report.status = "indexed"
        report.message = _summary(report, prepared.kind)
        report.seconds = round(report.seconds + time.perf_counter() - started, 3)
        self.library.mark_ready(doc_id, prepared.model, report.to_dict())

    def _ticker(
        self, name: str, index: int, files: int, progress: ProgressFn | None
    ) -> Callable[[str, int, int, str, float], None]:
        def tick(stage: str, done: int, total: int, message: str, fraction: float) -> None:
            if progress is not None:
                overall = (index + min(fraction, 1.0)) / files
                progress(Progress(name, index, files, stage, done, total, overall, message))

        return tick


def read_pages(
    name: str,
    data: bytes,
    *,
    ocr: bool,
    progress: Callable[[str, int, int, str, float], None] | None = None,
    cancelled: CancelFn = _never,
) -> Read:
    """Every page of one file, scans and images OCR'd when `ocr` (the operator's
    PARLEY_OCR) is on and tesseract is installed; raises the DocumentError `ingest`
    reports, a file with no text included. `Ingestor.ingest` takes the result (`read=`),
    so a caller that looks at the pages first (the chat box counts their tokens) does not
    read the file twice: a long scan costs about 1.9 s of OCR a page."""
    tick = progress or (lambda *_a: None)
    opened = open_document(name, data, _ocr.configured(ocr))
    pages: list[Page] = []
    try:
        for page in opened.pages():
            if cancelled():
                raise IngestCancelled("Indexing was cancelled.")
            pages.append(page)
            n = len(pages)
            how = " (OCR)" if page.source == "ocr" else ""
            tick("reading", n, opened.page_count,
                 f"{name}: reading page {n} of {opened.page_count}{how}",
                 READ_SHARE * (1 - CHUNK_SHARE) * n / opened.page_count)  # fmt: skip
    finally:
        opened.close()
    if not any(p.has_text for p in pages):
        raise _ocr.no_text(name, pages)
    return Read(opened.kind, pages, list(opened.notes), opened.encoding)


def _unshared(pages: list[Page]) -> list[Page]:
    """The pages, each big text a copy, for the database to store.

    A database driver keeps a UTF-8 copy of every string it binds for as long as the
    string lives (Python caches it on the str: +45 MB for a 48 MB text file), and the
    chunks are cut from these pages' texts until the keyword index is built, the peak
    of an upload. Bound as copies, the UTF-8 goes when the rows are written. Only big
    texts: small copies come from the heap, whose freed memory the allocator keeps, so
    copying every page of a 58 MB HTML page's 9,357 sections raised its peak 475 -> 553 MB.
    """
    return [replace(p, text=_copy(p.text)) if len(p.text) > BIG_PAGE_CHARS else p for p in pages]


def _copy(text: str) -> str:
    copy = text[:-1]
    copy += text[-1]  # in place (the only reference): one copy of the text, not two
    return copy


def _chunk_ticker(name: str, tick: Callable[..., None], cancelled: CancelFn) -> Callable:
    """Progress and Cancel while pages are split: a big text file takes seconds."""

    def on_split(done: int, total: int) -> None:
        if cancelled():
            raise IngestCancelled("Indexing was cancelled.")
        share = 1 - CHUNK_SHARE + CHUNK_SHARE * done / max(total, 1)
        tick("chunking", done, total,
             f"{name}: splitting into passages, {_mb(done)} of {_mb(total)}",
             READ_SHARE * share)  # fmt: skip

    return on_split


def _keyword_only_note(exc: ParleyError, model: str) -> str:
    if isinstance(exc, ModelRejected):
        return (
            f"The server has no embeddings for {model} ({exc.message}), so this file is "
            "searchable by keywords only."
        )
    return (
        f"Embedding failed ({exc}), so this file is searchable by keywords only. "
        "Re-index it later to add semantic search."
    )


def _duplicate(name: str, existing: DocumentRecord, seconds: float) -> FileReport:
    same = "" if existing.name == name else f" as {existing.name}"
    stored = existing.report
    return FileReport(
        name,
        "duplicate",
        f"{name} is already in your library{same}; nothing was added.",
        document_id=existing.id,
        pages=stored.get("pages", 0),
        sheets=stored.get("sheets", 0),
        chars=stored.get("chars", 0),
        empty_pages=stored.get("empty_pages", []),
        ocr_pages=stored.get("ocr_pages", []),
        chunks=stored.get("chunks", 0),
        tokens=stored.get("tokens", 0),
        keyword_only=existing.embedding_model is None,
        seconds=round(seconds, 3),
    )


def _summary(report: FileReport, kind: str) -> str:
    parts = formats.parts_text(kind, report.pages, report.sheets)
    text = f"{report.name}: {parts}, {report.chars:,} characters, {report.chunks:,} chunks"
    if report.ocr_pages:
        text += f", {len(report.ocr_pages)} read by OCR"
    if report.empty_pages:
        text += f", {len(report.empty_pages)} without text"
    if report.keyword_only:
        text += " (keyword search only)"
    return text + "."
