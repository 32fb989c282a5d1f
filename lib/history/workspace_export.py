"""Everything in a workspace as one zip, which Parley's own importer reads back.

    manifest.json                  what is inside, when it was made, and what the files need
                                   to come back: each document's id, name and sha256, each
                                   image's id, prompt, model, size, quality, background,
                                   usage, cost, time and conversation; and per conversation
                                   (by its id) the documents it searches, its document
                                   chat settings and where it was imported from (`links`)
    conversations/<id>.json        each conversation whole: its tree (lib/export.py's JSON)
    markdown/<title>-<id8>.md      each conversation's path shown, to read anywhere
    documents/<id8>-<name>         the files uploaded to the Documents page, as uploaded
    images/<name>                  the generated images

The zip is written to a temporary file beside the target and renamed into place when
complete, so a full disk or a crash never leaves a half export under the final name. It
is written a member at a time (a conversation, a file), so memory holds one of them.
Names inside come from generated ids; a title or file name only follows the id, cleaned
to letters, digits and dashes, so no member can point outside the archive.
"""

from __future__ import annotations

import json
import os
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lib import export
from lib.chat.attachments import AttachmentStore
from lib.conversations import ConversationStore
from lib.history.ledger import ImportLedger
from lib.store.backend import Backend

if TYPE_CHECKING:
    from lib.documents.library import DocumentLibrary
    from lib.gallery import StoredImage

# 2: the manifest lists the documents and images (`library`, `gallery`). 3: with their ids,
# an image's conversation and the rest of its row, and `links`; a reader of 2 ignores them.
FORMAT = 3
IMAGE_FIELDS = (
    "id",
    "prompt",
    "revised_prompt",
    "model",
    "size",
    "quality",
    "background",
    "conversation_id",
    "input_tokens",
    "output_tokens",
    "cost",
    "meta",
    "created_at",
)
DEFAULT_CHAT_SETTINGS = ("auto", 6)  # DocumentLibrary.chat_settings without a row


@dataclass
class WorkspaceExport:
    path: Path
    conversations: int
    documents: int
    images: int
    bytes: int
    seconds: float

    def line(self) -> str:
        def count(n: int, what: str) -> str:
            return f"{n:,} {what}{'s' * (n != 1)}"

        return (
            f"Exported {count(self.conversations, 'conversation')}, "
            f"{count(self.documents, 'document')} and {count(self.images, 'image')} to "
            f"{self.path.name} ({self.bytes / 1_048_576:.1f} MB)."
        )


def _clean(name: str, limit: int = 60) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:limit]
    return stem or "file"


def export_workspace(
    backend: Backend,
    workspace: str,
    target: Path,
    *,
    progress: Callable[[float, str], None] | None = None,
) -> WorkspaceExport:
    from lib.documents.library import DocumentLibrary  # the documents stack: only here
    from lib.gallery import ImageStore

    started = time.monotonic()
    tell = progress or (lambda share, text: None)
    store = ConversationStore(backend, workspace)
    attached = AttachmentStore(backend, workspace)
    library = DocumentLibrary(backend, workspace)
    gallery = ImageStore(backend, workspace)
    conversations = store.list(limit=10**9)
    sources = ImportLedger(backend, workspace).by_conversation()
    documents = library.list()[::-1]  # oldest first: imported in this order, listed as here
    image_count = gallery.count()
    total = max(1, len(conversations) + len(documents) + image_count)
    partial = target.with_name(f".{target.name}.partial")
    done = 0
    library_entries: list[dict] = []
    gallery_entries: list[dict] = []
    links: dict[str, dict] = {}
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for conv in conversations:
                tree, shown = store.all_messages(conv.id), store.path(conv.id)
                files = attached.export_entries(tree, data=True)  # attachments in base64
                archive.writestr(f"conversations/{conv.id}.json", export.to_json(conv, tree, files))
                md = export.to_markdown(conv, shown, attached.export_entries(shown, data=False))
                stem = export.filename(conv, "md")[: -len(".md")]
                archive.writestr(f"markdown/{_clean(stem)}-{conv.id[:8]}.md", md)
                if link := _links(library, conv.id, sources.get(conv.id)):
                    links[conv.id] = link
                done += 1
                tell(done / total, f"{done:,} of {total:,}")
            for doc in documents:
                data = library.read_file(doc)
                member = f"documents/{doc.id[:8]}-{_clean(doc.name)}"
                archive.writestr(member, data)
                library_entries.append(
                    {"member": member, "id": doc.id, "name": doc.name, "sha256": doc.sha256}
                )
                done += 1
                tell(done / total, f"{done:,} of {total:,}")
            offset = 0
            while True:
                page = gallery.list(limit=100, offset=offset)
                if not page:
                    break
                for image in page:
                    if gallery.has_file(image):
                        member = f"images/{image.download_name()}"
                        archive.writestr(member, gallery.read(image))
                        gallery_entries.append({"member": member, **_image_entry(image)})
                    done += 1
                    tell(min(done / total, 1.0), f"{done:,} of {total:,}")
                offset += len(page)
            archive.writestr("manifest.json", json.dumps({
                "parley_workspace": FORMAT,
                "exported_at": time.time(),
                "conversations": len(conversations),
                "documents": len(documents),
                "images": image_count,
                "library": library_entries,
                "gallery": gallery_entries,
                "links": links,
            }, indent=2))  # fmt: skip
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return WorkspaceExport(
        target, len(conversations), len(documents), image_count, target.stat().st_size,
        time.monotonic() - started,
    )  # fmt: skip


def _links(library: DocumentLibrary, conversation_id: str, sources: list | None) -> dict:
    """What the conversation has of the library: the documents it searches (by id, in
    the manifest's `library`) and its document chat settings where not the defaults; and
    where it was imported from (`sources`, the import ledger's rows)."""
    link: dict = {"imported": sources} if sources else {}
    if documents := library.conversation_documents(conversation_id):
        link["documents"] = documents
    mode, top_k = library.chat_settings(conversation_id)
    if (mode, top_k) != DEFAULT_CHAT_SETTINGS:
        link["mode"], link["top_k"] = mode, top_k
    return link


def _image_entry(image: StoredImage) -> dict:
    """An image's row as the manifest keeps it: all but its file's keys and its batch."""
    return {name: getattr(image, name) for name in IMAGE_FIELDS}
