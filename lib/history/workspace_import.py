"""The documents and images of a Parley workspace export, put back into a workspace.

`restore_files` reads the export's manifest (`workspace_export.py`, format 2: each
document's member, name and sha256; each image's member, prompt, model, size and time)
and brings each file in once:
- a document goes through the Documents page's own `Ingestor` (the same checks, pages and
  passages), keyword-only when no embedder is given, so an import never waits on an
  embeddings server; one already in the library by its sha256 is skipped (the Ingestor's
  own duplicate check);
- an image is checked as a generated one is and saved with its recorded prompt, model and
  time (`ImageStore.restore`); one whose bytes' sha256 is already in the gallery is skipped.

Each file goes in whole or not at all (the Ingestor and the ImageStore clean up after a
failure); a failure is named in the report with its reason and the others go on.
Format 1 exports listed no names or prompts: their files are named as not imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from lib.errors import ImportCancelled, ParleyError
from lib.history.archive import Export, FileTooLarge
from lib.store.backend import Backend

if TYPE_CHECKING:
    from lib.documents.ingest import Ingestor

DOCUMENT_LIMIT = 512 * 1024 * 1024  # bytes: above any upload limit the Documents page takes
KEYWORD_ONLY_NOTE = (
    "indexed without vectors (keyword search only): re-index them on the Documents page "
    "for search by meaning."
)


@dataclass
class FilesReport:
    documents: list[str] = field(default_factory=list)  # names, as imported
    documents_skipped: int = 0
    keyword_only: int = 0  # documents indexed without vectors
    images: int = 0
    images_skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (member, reason)

    @property
    def any(self) -> bool:
        return bool(self.documents or self.documents_skipped or self.images or self.images_skipped)

    def lines(self) -> list[str]:
        out = []
        if self.documents or self.documents_skipped:
            n = len(self.documents)
            line = f"{n:,} document{'s' * (n != 1)} imported"
            if self.documents_skipped:
                line += f", {self.documents_skipped:,} skipped: already in the library"
            out.append(line + ".")
        if self.keyword_only:
            out.append(f"{self.keyword_only:,} of them {KEYWORD_ONLY_NOTE}")
        if self.images or self.images_skipped:
            line = f"{self.images:,} image{'s' * (self.images != 1)} imported"
            if self.images_skipped:
                line += f", {self.images_skipped:,} skipped: already in the gallery"
            out.append(line + ".")
        if self.failed:
            out.append(f"{len(self.failed):,} file{'s' * (len(self.failed) != 1)} not imported:")
            out += [f"  {name}: {reason}" for name, reason in self.failed[:20]]
        return out


def restore_files(
    export: Export,
    backend: Backend,
    workspace: str,
    *,
    embedder: Any = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> FilesReport | None:
    """Bring back the documents and images of a Parley workspace export; None when
    `export` is not one."""
    manifest = export.workspace_manifest()
    if manifest is None:
        return None
    report = FilesReport()
    library = manifest.get("library")
    gallery = manifest.get("gallery")
    if not isinstance(library, list) or not isinstance(gallery, list):
        for name in export.member_names("documents/") + export.member_names("images/"):
            report.failed.append((name, "this export is from an older Parley, which did not "
                                  "record its name or prompt"))  # fmt: skip
        return report
    _documents(export, backend, workspace, library, embedder, cancelled, report)
    _images(export, backend, workspace, gallery, cancelled, report)
    return report


def document_ingestor(backend: Backend, workspace: str, embedder: Any = None) -> Ingestor:
    """The Documents page's `Ingestor` into the workspace's library, as an import uses it:
    keyword-only without an embedder, so an import never waits on an embeddings server.
    Also how the importer indexes the long files conversations refer to."""
    from lib.documents.ingest import Ingestor  # the documents stack: only when needed
    from lib.documents.library import DocumentLibrary

    return Ingestor(DocumentLibrary(backend, workspace), embedder, limit_bytes=DOCUMENT_LIMIT)


def _documents(
    export: Export,
    backend: Backend,
    workspace: str,
    entries: list,
    embedder: Any,
    cancelled: Callable[[], bool],
    report: FilesReport,
) -> None:
    if not entries:
        return
    ingestor = document_ingestor(backend, workspace, embedder)
    for entry in entries:
        if cancelled():
            raise ImportCancelled("Import cancelled.")
        member, name = _entry(entry, "name")
        data = _member(export, member, DOCUMENT_LIMIT, report)
        if data is None:
            continue
        done = ingestor.ingest(name or PurePosixPath(member).name, data)
        if done.status == "indexed":
            report.documents.append(done.name)
            report.keyword_only += done.keyword_only
        elif done.status == "duplicate":
            report.documents_skipped += 1
        else:
            report.failed.append((done.name, done.message))


def _images(
    export: Export,
    backend: Backend,
    workspace: str,
    entries: list,
    cancelled: Callable[[], bool],
    report: FilesReport,
) -> None:
    if not entries:
        return
    from lib.gallery import ImageStore
    from lib.images import MAX_IMAGE_BYTES

    store = ImageStore(backend, workspace)
    held = store.content_hashes()
    for entry in entries:
        if cancelled():
            raise ImportCancelled("Import cancelled.")
        member, prompt = _entry(entry, "prompt")
        data = _member(export, member, MAX_IMAGE_BYTES, report)
        if data is None:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in held:
            report.images_skipped += 1
            continue
        try:
            store.restore(
                data,
                prompt=prompt or "",
                model=str(entry.get("model") or "imported"),
                created_at=_number(entry.get("created_at")),
                revised_prompt=entry.get("revised_prompt") or None,
                size=str(entry.get("size") or "auto"),
            )
        except ParleyError as exc:
            report.failed.append((PurePosixPath(member).name, str(exc)))
            continue
        held.add(digest)
        report.images += 1


def _member(export: Export, member: str, limit: int, report: FilesReport) -> bytes | None:
    """The bytes of the manifest's `member`, or None with the reason in the report: not in
    the export, or too large (with the limit)."""
    try:
        data = export.member(member, limit) if member else None
    except FileTooLarge as exc:
        report.failed.append((member, str(exc)))
        return None
    if data is None:
        report.failed.append((member or "?", "not in the export"))
    return data


def _entry(entry: Any, text: str) -> tuple[str, str]:
    """(member, the entry's `text` field) of a manifest entry, '' where missing."""
    if not isinstance(entry, dict):
        return "", ""
    member, value = entry.get("member"), entry.get(text)
    return (member if isinstance(member, str) else ""), (value if isinstance(value, str) else "")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None
