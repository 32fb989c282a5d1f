"""The documents and images of a Parley workspace export, put back into a workspace.

`restore_documents` and, after the conversations, `restore_the_rest` read the export's
manifest (`workspace_export.py`: each document's member, id, name and sha256; each
image's member, id and row; since format 3 `links`, the documents each conversation
searches and its document chat settings) and bring each file in once:
- a document goes through the Documents page's own `Ingestor` (the same checks, pages and
  passages), keyword-only when no embedder is given, so an import never waits on an
  embeddings server; one already in the library by its sha256 is skipped (the Ingestor's
  own duplicate check), and stands for the exported one in the links;
- an image is checked as a generated one is and saved with its recorded prompt, model,
  request, usage, cost and time (`ImageStore.restore`), linked to its conversation where
  that came in with this import; one whose bytes' sha256 is already in the gallery is
  skipped, and stands for the exported one;
- each conversation this import brought in (`conversations`: the export's id to the new
  one) searches the documents it searched there, as the new documents, beside any its
  attachments linked; its document chat settings come back with it.

`FilesReport.image_ids` and `document_ids` map each exported image's and document's id to
the one here, for the messages that name them (an illustration's `meta["images"]`, a
citation's `document_id`: put right by the importer).

Each file goes in whole or not at all (the Ingestor and the ImageStore clean up after a
failure); a failure is named in the report with its reason and the others go on.
Format 1 exports listed no names or prompts: their files are named as not imported.
Format 2 ones hold no ids or links: their files come in, linked to nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from lib.errors import ImportCancelled, ParleyError
from lib.history.archive import Export, FileTooLarge
from lib.store.backend import Backend

if TYPE_CHECKING:
    from lib.documents.ingest import Ingestor

CHAT_MODES = ("auto", "whole", "retrieval")  # DocumentLibrary.set_chat_settings
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
    # The export's ids -> the ones here, of each image and document that came in or was here
    image_ids: dict[str, str] = field(default_factory=dict)
    document_ids: dict[str, str] = field(default_factory=dict)

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


def restore_documents(
    export: Export,
    backend: Backend,
    workspace: str,
    report: FilesReport,
    *,
    embedder: Any = None,
    ocr: bool = True,
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """Bring back the documents of a Parley workspace export (`export.workspace_manifest()`
    is not None), into `report` as they come (a cancel keeps what came in, counted).
    Before its conversations: the library then lists them in the exported order, and a
    long file a message attaches finds its document already there."""
    library, gallery = _lists(export.workspace_manifest() or {})
    if library is None or gallery is None:
        for name in export.member_names("documents/") + export.member_names("images/"):
            report.failed.append((name, "this export is from an older Parley, which did not "
                                  "record its name or prompt"))  # fmt: skip
        return
    _documents(export, backend, workspace, library, embedder, ocr, cancelled, report)


def restore_the_rest(
    export: Export,
    backend: Backend,
    workspace: str,
    report: FilesReport,
    *,
    conversations: Mapping[str, str],
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """After the conversations (`conversations`: the export's id -> the one imported): their
    links to the documents `restore_documents` brought back, and the images, each linked
    to its conversation."""
    manifest = export.workspace_manifest() or {}
    _, gallery = _lists(manifest)
    if gallery is None:
        return
    _link(backend, workspace, manifest.get("links"), conversations, report.document_ids)
    _images(export, backend, workspace, gallery, conversations, cancelled, report)


def _lists(manifest: dict) -> tuple[list | None, list | None]:
    """The manifest's `library` and `gallery` (None each where it has none: format 1)."""
    library, gallery = manifest.get("library"), manifest.get("gallery")
    return (
        library if isinstance(library, list) else None,
        gallery if isinstance(gallery, list) else None,
    )


def document_ingestor(
    backend: Backend, workspace: str, embedder: Any = None, *, ocr: bool = True
) -> Ingestor:
    """The Documents page's `Ingestor` into the workspace's library, as an import uses it:
    keyword-only without an embedder, so an import never waits on an embeddings server;
    scanned pages OCR'd only where the operator's PARLEY_OCR (`Settings.ocr`) allows, as
    on the Documents page. Also how the importer indexes the long files conversations
    refer to."""
    from lib.documents.ingest import Ingestor  # the documents stack: only when needed
    from lib.documents.library import DocumentLibrary

    return Ingestor(
        DocumentLibrary(backend, workspace), embedder, limit_bytes=DOCUMENT_LIMIT, ocr=ocr
    )


def _documents(
    export: Export,
    backend: Backend,
    workspace: str,
    entries: list,
    embedder: Any,
    ocr: bool,
    cancelled: Callable[[], bool],
    report: FilesReport,
) -> None:
    """Each document in, with the export's document id -> the one here in the report."""
    if not entries:
        return
    ingestor = document_ingestor(backend, workspace, embedder, ocr=ocr)
    ids = report.document_ids
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
            continue
        if isinstance(entry.get("id"), str) and done.document_id:
            ids[entry["id"]] = done.document_id


def _link(
    backend: Backend,
    workspace: str,
    links: Any,
    conversations: Mapping[str, str],
    documents: Mapping[str, str],
) -> None:
    """Each imported conversation's documents (beside those its attachments linked) and
    document chat settings, as the export's `links` give them."""
    if not isinstance(links, dict) or not conversations:
        return
    from lib.documents.library import DocumentLibrary

    library = DocumentLibrary(backend, workspace)
    for old, link in links.items():
        new = conversations.get(old)
        if new is None or not isinstance(link, dict):
            continue
        chosen = link.get("documents") if isinstance(link.get("documents"), list) else []
        found = [documents[d] for d in chosen if isinstance(d, str) and d in documents]
        if found:
            had = library.conversation_documents(new)
            library.set_conversation_documents(new, list(dict.fromkeys(had + found)))
        mode, top_k = link.get("mode"), link.get("top_k")
        if mode in CHAT_MODES and isinstance(top_k, int) and 1 <= top_k <= 20:
            library.set_chat_settings(new, mode, top_k)


def _images(
    export: Export,
    backend: Backend,
    workspace: str,
    entries: list,
    conversations: Mapping[str, str],
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
        else:
            try:
                saved = store.restore(data, prompt=prompt or "", **_image_row(entry, conversations))
            except ParleyError as exc:
                report.failed.append((PurePosixPath(member).name, str(exc)))
                continue
            held[digest] = saved.id
            report.images += 1
        if isinstance(entry.get("id"), str):
            report.image_ids[entry["id"]] = held[digest]


def _image_row(entry: dict, conversations: Mapping[str, str]) -> dict[str, Any]:
    """`ImageStore.restore`'s arguments from a manifest entry, each checked for its type
    (format 2 entries hold only the model, size, revised prompt and time)."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    tokens = entry.get("input_tokens"), entry.get("output_tokens")
    cost, seconds = entry.get("cost"), meta.get("seconds")
    return {
        "model": str(entry.get("model") or "imported"),
        "created_at": _number(entry.get("created_at")),
        "revised_prompt": entry.get("revised_prompt") or None,
        "size": str(entry.get("size") or "auto"),
        "quality": _text_or_none(entry, "quality"),
        "background": _text_or_none(entry, "background"),
        "n": meta["n"] if isinstance(meta.get("n"), int) and meta["n"] > 0 else 1,
        "usage": tokens if all(isinstance(t, int) for t in tokens) else None,
        "cost": float(cost) if isinstance(cost, int | float) else None,
        "seconds": float(seconds) if isinstance(seconds, int | float) else 0.0,
        "conversation_id": conversations.get(str(entry.get("conversation_id"))),
    }


def _text_or_none(entry: dict, name: str) -> str | None:
    """A text field of a format 3 entry as it was, None included; "auto" before."""
    if name not in entry:
        return "auto"
    return entry[name] if isinstance(entry[name], str) else None


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
