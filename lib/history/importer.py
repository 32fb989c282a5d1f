"""Importing an export into a workspace: each conversation whole or not at all, and once.

`Importer.run(path)` reads the export (`lib/history/archive.py`) a conversation at a time
and, for each, in one transaction: creates the conversation with the source's title,
model, system prompt and times, adds its messages parent before child (branches become
Parley's branches, the source's shown path the one shown here), and records it in the
import ledger. A conversation already in the ledger (the same app, the same id in that
app and the same content fingerprint; the fingerprint alone where the app gives no id) is
skipped, so a second import of the same file adds nothing; one that changed since (a chat
continued after the last export) comes in again, as a new conversation beside the old.
Its folder and pin come with it where the export holds them (Parley's has both, Open
WebUI's the pin).
Its folder and pin come with it where the export holds them (Parley's has both, Open
WebUI's the pin).

The report counts what was imported, skipped and failed, with each failure's reason; an
export from which nothing could be imported says why, never a bare success. Progress is
the share of the export's JSON read; `cancelled()` is asked between conversations, and
what was imported before stays, each conversation whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.chat.attachments import AttachmentStore, checked_image, is_image_name
from lib.conversation import Message
from lib.conversations import ConversationStore
from lib.errors import ImportCancelled, InvalidInputError, UnreadableExport
from lib.history.archive import MAX_FILE_BYTES, Export, Failure
from lib.history.model import ImportedConversation, ImportedMessage
from lib.history.workspace_import import FilesReport, restore_files
from lib.store.base import WorkspaceStore

APP_NAMES = {"chatgpt": "ChatGPT", "openwebui": "Open WebUI", "librechat": "LibreChat",
             "parley": "Parley"}  # fmt: skip
DEFAULT_MODEL = "imported"  # a conversation whose export names no model


@dataclass
class ImportReport:
    name: str
    imported: list[str] = field(default_factory=list)  # conversation ids, in order
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    branched: int = 0  # imported with more than one branch
    apps: dict[str, int] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)
    not_imported: list[str] = field(default_factory=list)  # held, but not readable here
    seconds: float = 0.0
    cancelled: bool = False
    files: FilesReport | None = None  # a Parley workspace export's documents and images

    def lines(self) -> list[str]:
        """The report as sentences, most important first."""
        n = len(self.imported)
        where = ", ".join(f"{APP_NAMES.get(a, a)}: {k:,}" for a, k in self.apps.items())
        out = [f"{n:,} conversation{'s' if n != 1 else ''} imported from {self.name}"
               + (f" ({where})" if where else "") + "."]  # fmt: skip
        if self.skipped:
            out.append(f"{self.skipped:,} skipped: already imported.")
        if self.failed:
            out.append(f"{len(self.failed):,} could not be imported:")
            out += [f"  {where}: {reason}" for where, reason in self.failed[:20]]
            if len(self.failed) > 20:
                out.append(f"  …and {len(self.failed) - 20:,} more.")
        if self.branched:
            out.append(f"{self.branched:,} kept their branches (edited questions, regenerated "
                       "replies); the path each app showed is the one shown.")  # fmt: skip
        if self.missing_files:
            names = ", ".join(self.missing_files[:10])
            more = (
                f" and {len(self.missing_files) - 10:,} more"
                if len(self.missing_files) > 10
                else ""
            )
            out.append(f"Files the messages refer to but the export does not hold: {names}{more}.")
        if self.not_imported:
            names = ", ".join(self.not_imported[:10])
            out.append(f"Files the export holds but that were not imported: {names}.")
        if self.files is not None:
            out += self.files.lines()
        if self.cancelled:
            out.append("Cancelled: the conversations above were imported whole, the rest not.")
        return out

    @property
    def ok(self) -> bool:
        return bool(self.imported or self.skipped or self.restored) and not self.cancelled

    @property
    def restored(self) -> bool:
        return self.files is not None and self.files.any


class ImportLedger(WorkspaceStore):
    """What was imported into this workspace, from where (the `imports` table)."""

    def seen(self, app: str, source_id: str, fingerprint: str) -> bool:
        with self._conn() as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM imports WHERE workspace = ? AND app = ? AND source_id = ? "
                    "AND fingerprint = ?",
                    (self.workspace, app, source_id, fingerprint),
                ).fetchone()
                is not None
            )

    def record(self, app: str, source_id: str, fingerprint: str, conversation_id: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO imports (workspace, app, source_id, fingerprint, conversation_id, "
                "imported_at) VALUES (?, ?, ?, ?, ?, ?)",
                (self.workspace, app, source_id, fingerprint, conversation_id, time.time()),
            )


class Importer:
    def __init__(
        self,
        store: ConversationStore,
        *,
        progress: Callable[[float, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        embedder: Any = None,  # for a workspace export's documents; None: keyword-only
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.ledger = ImportLedger(store.backend, store.workspace)
        self.attachments = AttachmentStore(store.backend, store.workspace)
        self.progress = progress or (lambda share, text: None)
        self.cancelled = cancelled or (lambda: False)
        self.report: ImportReport | None = None  # the running import's, as it goes

    def run(self, path: Path, name: str | None = None) -> ImportReport:
        """Import every conversation of the export at `path`. Raises UnreadableExport when
        the file itself is not an export (nothing is imported then)."""
        report = self.report = ImportReport(name or path.name)
        started = time.monotonic()
        try:
            with Export(path, report.name) as export:
                for item in export.items():
                    if self.cancelled():
                        raise ImportCancelled("Import cancelled.")
                    self._one(export, item, report)
                    share = export.done / export.total if export.total else 1.0
                    self.progress(min(share, 1.0), f"{len(report.imported):,} imported")
                report.files = restore_files(
                    export,
                    self.store.backend,
                    self.store.workspace,
                    embedder=self.embedder,
                    cancelled=self.cancelled,
                )
        except ImportCancelled:
            report.cancelled = True
        except UnreadableExport as exc:
            if not (report.imported or report.skipped):
                raise
            report.failed.append((report.name, str(exc)))  # read up to a damaged part
        report.seconds = time.monotonic() - started
        if not (report.imported or report.skipped or report.restored or report.cancelled):
            reasons = "; ".join(reason for _, reason in report.failed[:3])
            raise UnreadableExport(f"Nothing was imported from {report.name}: {reasons}")
        return report

    def _one(
        self, export: Export, item: ImportedConversation | Failure, report: ImportReport
    ) -> None:
        if isinstance(item, Failure):
            report.failed.append((item.where, item.reason))
            return
        fingerprint = item.fingerprint()
        if self.ledger.seen(item.app, item.source_id, fingerprint):
            report.skipped += 1
            return
        with self.store.backend.transaction():  # the conversation whole, or nothing
            cid = self._write(export, item, report)
            self.ledger.record(item.app, item.source_id, fingerprint, cid)
        report.imported.append(cid)
        report.apps[item.app] = report.apps.get(item.app, 0) + 1
        report.branched += item.branched()

    def _write(self, export: Export, item: ImportedConversation, report: ImportReport) -> str:
        model = item.model or next((m.model for m in item.messages if m.model), None)
        conv = self.store.create(
            model=model or DEFAULT_MODEL,
            system_prompt=item.system_prompt,
            title=item.title,
            created_at=item.created_at,
        )
        shown = {m.key for m in item.path()}
        messages, images = [], []
        for m in item.messages:
            meta: dict = {"imported_from": item.app}
            if m.files:
                meta["files"] = m.files
            images.append(self._images(export, m, report))
            messages.append(Message(
                m.role, m.content, model=m.model if m.role == "assistant" else None,
                meta=meta, created_at=m.created_at or item.created_at or time.time(),
            ))  # fmt: skip
        index = {m.key: i for i, m in enumerate(item.messages)}
        parents = [index.get(m.parent) if m.parent is not None else None for m in item.messages]
        if not any(images):  # most conversations: all their messages in one go
            self.store.add_tree(conv.id, list(zip(messages, parents, strict=True)))
        else:
            for message, parent, files in zip(messages, parents, images, strict=True):
                after = None if parent is None else messages[parent].id
                if files:
                    self.attachments.save_message(conv.id, message, files, parent=after)
                else:
                    self.store.add_message(conv.id, message, parent=after)
        on_path = [msg.id for m, msg in zip(item.messages, messages, strict=True) if m.key in shown]
        leaf = on_path[-1] if on_path else None
        self.store.set_leaf(conv.id, leaf)
        if item.folder:
            self.store.set_folder(conv.id, item.folder)
        if item.pinned:
            self.store.set_pinned(conv.id, True)
        if item.folder:
            self.store.set_folder(conv.id, item.folder)
        if item.pinned:
            self.store.set_pinned(conv.id, True)
        self.store.restamp(conv.id, item.updated_at or item.created_at)
        return conv.id

    def _images(self, export: Export, m: ImportedMessage, report: ImportReport) -> list:
        """The files a message refers to, as its attachments, where the export holds them
        (in the message's JSON, or beside it in the zip), read as a chat upload is: images
        checked, PDFs and text files attached whole up to the chat's inline limit. A longer
        document, or one that cannot be read, is named in the report with the reason;
        files the export lacks are listed as missing."""
        from lib.chat.with_documents import read_files  # the documents stack: only here

        found = []
        for reference in m.files:
            held = (reference, m.inline[reference]) if reference in m.inline else None
            held = held or export.file(reference)
            if held is None:
                report.missing_files.append(reference)
                continue
            name, data = held
            try:
                if is_image_name(name):
                    found.append(checked_image(name, data))
                else:
                    found += read_files([(name, data)], limit_bytes=MAX_FILE_BYTES, docs=None)
            except InvalidInputError as exc:  # DocumentError too
                report.not_imported.append(f"{name} ({exc})")
        return found
