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
WebUI's the pin); from Parley's own export, also its kind, parameters, and each message's
status, meta, token counts and cost, as they were.

A Parley workspace export's documents come in first (`workspace_import`), then the
conversations, then the images and each conversation's links to both: its documents, its
document chat settings, its images, and the ids its messages name (an illustration's
images, a citation's document), mapped to the ones made here.

The files its messages refer to become their attachments, read as a chat upload is
(`lib.chat.with_documents.read_file`). One too long to send whole is kept as the
attachment and indexed into the workspace's library the way the workspace import indexes
documents (`workspace_import.document_ingestor`: keyword-only without an embedder, with
the note to re-index), and linked to its conversation, so replies there search it as they
do a long file attached in the chat. It is indexed before the conversation's transaction
(indexing writes the library and the blob store); if the conversation then fails, the
document stays in the library, as a chat upload's does, and the next try finds it there.

The report counts what was imported, skipped and failed, with each failure's reason; an
export from which nothing could be imported says why, never a bare success. Progress is
the share of the export's JSON read; `cancelled()` is asked between conversations, and
what was imported before stays, each conversation whole.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.chat.attachments import AttachmentStore, NewAttachment, checked_image, is_image_name
from lib.conversation import ChatParams, Message
from lib.conversations import ConversationStore
from lib.errors import ImportCancelled, InvalidInputError, UnreadableExport
from lib.history.archive import MAX_FILE_BYTES, Export, Failure, FileTooLarge
from lib.history.ledger import ImportLedger
from lib.history.model import ImportedConversation, ImportedMessage
from lib.history.workspace_import import (
    KEYWORD_ONLY_NOTE,
    FilesReport,
    document_ingestor,
    restore_documents,
    restore_the_rest,
)

if TYPE_CHECKING:
    from lib.documents.ingest import Ingestor

APP_NAMES = {"chatgpt": "ChatGPT", "openwebui": "Open WebUI", "librechat": "LibreChat",
             "parley": "Parley"}  # fmt: skip
log = logging.getLogger(__name__)
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
    long_files: list[str] = field(default_factory=list)  # indexed into the library: how
    long_keyword_only: int = 0  # of those, indexed without vectors
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
        if self.long_files:
            k = len(self.long_files)
            out.append(f"{k:,} file{'s' * (k != 1)} too long to send whole, kept as "
                       "attachments and put in the document library, where replies in their "
                       "conversation search them:")  # fmt: skip
            out += [f"  {line}" for line in self.long_files[:20]]
            if k > 20:
                out.append(f"  …and {k - 20:,} more.")
            if self.long_keyword_only:
                out.append(f"{self.long_keyword_only:,} of them {KEYWORD_ONLY_NOTE}")
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


class Importer:
    def __init__(
        self,
        store: ConversationStore,
        *,
        progress: Callable[[float, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        embedder: Any = None,  # for a workspace export's documents; None: keyword-only
        ocr: bool = True,  # the operator's PARLEY_OCR (Settings.ocr), for scanned files
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.ocr = ocr
        self.ledger = ImportLedger(store.backend, store.workspace)
        self.attachments = AttachmentStore(store.backend, store.workspace)
        self.progress = progress or (lambda share, text: None)
        self.cancelled = cancelled or (lambda: False)
        self.report: ImportReport | None = None  # the running import's, as it goes
        self._ingestor: Any = None  # made on the first long file
        # Of a Parley export: each conversation's id there -> here (for its links to the
        # documents and images that come after it), and the messages whose meta names
        # images or documents by their ids there (an illustration's, a reply's citations).
        self._parley_ids: dict[str, str] = {}
        self._pointing: list[tuple[str, int]] = []  # (conversation, message): ids, not text

    def run(self, path: Path, name: str | None = None) -> ImportReport:
        """Import every conversation of the export at `path`. Raises UnreadableExport when
        the file itself is not an export (nothing is imported then)."""
        report = self.report = ImportReport(name or path.name)
        started = time.monotonic()
        try:
            with Export(path, report.name) as export:
                if export.workspace_manifest() is not None:  # a Parley workspace export
                    report.files = FilesReport()
                    restore_documents(
                        export,
                        self.store.backend,
                        self.store.workspace,
                        report.files,
                        embedder=self.embedder,
                        ocr=self.ocr,
                        cancelled=self.cancelled,
                    )
                for item in export.items():
                    if self.cancelled():
                        raise ImportCancelled("Import cancelled.")
                    self._one(export, item, report)
                    share = export.done / export.total if export.total else 1.0
                    self.progress(min(share, 1.0), f"{len(report.imported):,} imported")
                if report.files is not None:
                    restore_the_rest(
                        export,
                        self.store.backend,
                        self.store.workspace,
                        report.files,
                        conversations=self._parley_ids,
                        cancelled=self.cancelled,
                    )
                    self._point_at(report.files)
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
        # Before the transaction: a long file is indexed into the library here.
        files = [self._files(export, item, m, report) for m in item.messages]
        with self.store.backend.transaction():  # the conversation whole, or nothing
            cid = self._write(item, files)
            self.ledger.record(item.app, item.source_id, fingerprint, cid)
            for app, source_id, known in self._sources(export, item):
                if not self.ledger.seen(app, source_id, known):
                    self.ledger.record(app, source_id, known, cid)
        report.imported.append(cid)
        if item.app == "parley" and item.source_id:
            self._parley_ids[item.source_id] = cid
        report.apps[item.app] = report.apps.get(item.app, 0) + 1
        report.branched += item.branched()

    def _sources(self, export: Export, item: ImportedConversation) -> list[list[str]]:
        """Where a conversation of a Parley workspace export had been imported from (its
        `links`' "imported"), so that importing that source into this workspace too still
        adds nothing."""
        if item.app != "parley":
            return []
        links = (export.workspace_manifest() or {}).get("links")
        link = links.get(item.source_id) if isinstance(links, dict) else None
        known = link.get("imported") if isinstance(link, dict) else None
        return [
            s for s in known or []
            if isinstance(s, list) and len(s) == 3 and all(isinstance(x, str) for x in s)
        ]  # fmt: skip

    def _write(self, item: ImportedConversation, attached: list[list[NewAttachment]]) -> str:
        model = item.model or next((m.model for m in item.messages if m.model), None)
        conv = self.store.create(
            model=model or DEFAULT_MODEL,
            system_prompt=item.system_prompt,
            params=_params(item.params),
            title=item.title,
            kind=item.kind,
            created_at=item.created_at,
        )
        shown = {m.key for m in item.path()}
        messages = []
        for m in item.messages:
            kept = dict(m.kept)  # Parley's own: status, meta, token counts, cost
            meta: dict = kept.pop("meta", None) or {}
            meta.setdefault("imported_from", item.app)  # where it first came from
            if m.files and "meta" not in m.kept:
                meta["files"] = m.files
            kept.setdefault("model", m.model if m.role == "assistant" else None)
            messages.append(Message(
                m.role, m.content, meta=meta,
                created_at=m.created_at or item.created_at or time.time(), **kept,
            ))  # fmt: skip
        index = {m.key: i for i, m in enumerate(item.messages)}
        parents = [index.get(m.parent) if m.parent is not None else None for m in item.messages]
        if not any(attached):  # most conversations: all their messages in one go
            self.store.add_tree(conv.id, list(zip(messages, parents, strict=True)))
        else:
            for message, parent, files in zip(messages, parents, attached, strict=True):
                after = None if parent is None else messages[parent].id
                if files:
                    self.attachments.save_message(conv.id, message, files, parent=after)
                else:
                    self.store.add_message(conv.id, message, parent=after)
        self._pointing += [
            (conv.id, msg.id) for msg in messages if {"images", "citations"} & set(msg.meta)
        ]
        on_path = [msg.id for m, msg in zip(item.messages, messages, strict=True) if m.key in shown]
        leaf = on_path[-1] if on_path else None
        self.store.set_leaf(conv.id, leaf)
        documents = [f.document_id for fs in attached for f in fs if f.document_id]
        if documents:  # replies in this conversation search them, as after a chat upload
            self.ingestor().library.set_conversation_documents(conv.id, documents)
        if item.folder:
            self.store.set_folder(conv.id, item.folder)
        if item.pinned:
            self.store.set_pinned(conv.id, True)
        self.store.restamp(conv.id, item.updated_at or item.created_at)
        return conv.id

    def _files(
        self, export: Export, item: ImportedConversation, m: ImportedMessage, report: ImportReport
    ) -> list[NewAttachment]:
        """The files a message refers to, as its attachments, where the export holds them
        (in the message's JSON, or beside it in the zip), read as a chat upload is: images
        checked, PDFs and text files attached whole up to the chat's inline limit, longer
        ones indexed (see the module's docstring). One that cannot be read, or that is over
        MAX_FILE_BYTES, is named in the report with the reason (its size and the limit);
        only files the export lacks are listed as missing."""
        from lib.chat.with_documents import read_file  # the documents stack: only here

        found = []
        for reference in m.files:
            try:
                held = (reference, m.inline[reference]) if reference in m.inline else None
                held = held or export.file(reference)
            except FileTooLarge as exc:  # held, not missing
                report.not_imported.append(f"{exc.name} ({exc})")
                continue
            if held is None:
                report.missing_files.append(reference)
                continue
            name, data = held
            try:
                if len(data) > MAX_FILE_BYTES:  # carried inline in the JSON
                    raise FileTooLarge(name, len(data), MAX_FILE_BYTES)
                if is_image_name(name):
                    found.append(checked_image(name, data))
                    continue
                new = read_file(name, data, limit_bytes=MAX_FILE_BYTES, ingestor=self.ingestor())
            except InvalidInputError as exc:  # DocumentError and FileTooLarge too
                report.not_imported.append(f"{name} ({exc})")
                continue
            found.append(new)
            if new.kind == "document":
                report.long_files.append(_long_file_line(item, new))
                fresh = new.meta.get("status") == "indexed"
                report.long_keyword_only += bool(fresh and new.meta.get("keyword_only"))
        return found

    def _point_at(self, files: FilesReport) -> None:
        """Point the imported messages that name images (`meta["images"]`, an
        illustration's) or documents (their citations' `document_id`, for "Show the page")
        at them as imported here. An image that did not come in is dropped from the
        message; a citation of a document that did not come in keeps its old id, which
        the page reports as no longer in the library."""
        for cid, mid in self._pointing:  # read again: memory holds ids, not 10,000 replies
            message = self.store.get_message(cid, mid)
            meta = message.meta
            before = json.dumps(meta, sort_keys=True)
            if isinstance(meta.get("images"), list):
                meta["images"] = [
                    files.image_ids[i]
                    for i in meta["images"]
                    if isinstance(i, str) and i in files.image_ids
                ]
            for cite in meta.get("citations") if isinstance(meta.get("citations"), list) else []:
                held = isinstance(cite, dict) and isinstance(cite.get("document_id"), str)
                if held and cite["document_id"] in files.document_ids:
                    cite["document_id"] = files.document_ids[cite["document_id"]]
            if json.dumps(meta, sort_keys=True) != before:
                self.store.update_message(cid, message)
        self._pointing = []

    def ingestor(self) -> Ingestor:
        """The Ingestor long files go through (made once, on the first)."""
        if self._ingestor is None:
            self._ingestor = document_ingestor(
                self.store.backend, self.store.workspace, self.embedder, ocr=self.ocr
            )
        return self._ingestor


def _long_file_line(item: ImportedConversation, new: NewAttachment) -> str:
    where = f"{new.name} (in “{item.title}”, {new.meta.get('tokens', 0):,} tokens)"
    if new.meta.get("status") == "duplicate":
        return f"{where}: already in the library, now searched in this conversation too."
    how = " (keyword search only)" if new.meta.get("keyword_only") else ""
    return f"{where}: indexed{how}."


def _params(saved: dict[str, Any]) -> ChatParams | None:
    """A Parley conversation's parameters as exported, or the defaults (None) when they
    are not ones Parley would save."""
    if not saved:
        return None
    try:
        params = ChatParams.from_dict(saved)
        params.validate()
    except (InvalidInputError, TypeError) as exc:
        log.info("imported parameters left at the defaults: %s", exc)
        return None
    return params
