"""The Documents page's library widgets: upload with honest progress, per-file reports,
the library with delete and re-index, and each conversation's document picker.

Everything derived from a user's files stays in this session: the library (with, on
SQLite, its loaded FAISS index and keyword pack) is kept in session state (`library`),
never in `st.cache_*`, which every session of the server shares.

File names, reports and notes are shown with `lib.markup.escape`: a name like
`![x](http://host/…)` reads as typed and loads nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import openai
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from lib.conversations import Conversation, ConversationStore
from lib.documents import rag
from lib.documents.embeddings import Embedder
from lib.documents.extract import SUFFIXES
from lib.documents.formats.kinds import parts_text
from lib.documents.ingest import FileReport, Ingestor
from lib.documents.library import DocumentLibrary, DocumentRecord
from lib.documents.rerank import Reranker
from lib.errors import ParleyError
from lib.markup import escape
from lib.settings import Settings
from lib.ui import clients, state

TYPES = [suffix.lstrip(".") for suffix in SUFFIXES]  # pdf, txt, md, docx, xlsx, html...
STATUS_ICONS = {
    "indexed": ":material/check_circle:",
    "duplicate": ":material/content_copy:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
}


def library(current: Settings) -> DocumentLibrary:
    """This session's library, kept from run to run: on SQLite it holds the loaded index
    files, reloaded only when they change, and a notice of a rebuilt index survives the
    rerun after an upload. A new one when the workspace or the backend is another."""
    backend, workspace = clients.backend(current), state.workspace()
    lib = state.get("doc_library")
    if not isinstance(lib, DocumentLibrary) or (lib.backend, lib.workspace) != (
        backend,
        workspace,
    ):
        lib = DocumentLibrary(backend, workspace)
        state.put("doc_library", lib)
    return lib


def repairs(lib: DocumentLibrary, model: str) -> None:
    """Say once that a damaged index was rebuilt (checking `model`'s index first)."""
    lib.search.check(model)  # on SQLite, loads (and if need be rebuilds) the index
    for notice in lib.repairs:  # here or in an upload before
        st.warning(escape(notice), icon=":material/build:")
    lib.repairs.clear()


def embedder(current: Settings, api: openai.OpenAI, lib: DocumentLibrary) -> Embedder:
    # What the embedder reads at once, so no chunk is cut short (lib/documents/windows.py).
    window = (
        current.embed_window or clients.context_window(current, api, current.embedding_model).tokens
    )
    return Embedder(api, current.embedding_model, cache=lib.cache, window=window)


def reranker(current: Settings, api: openai.OpenAI) -> Reranker | None:
    """The server's reranking model, when the operator names one (PARLEY_RERANK_MODEL)."""
    return Reranker(api, current.rerank_model) if current.rerank_model else None


def upload_limit_mb() -> int:
    # The option Streamlit itself enforces (config.toml, flags or environment).
    return int(st.get_option("server.maxUploadSize"))


# Choosing documents


def selection(lib: DocumentLibrary, conv: Conversation | None) -> list[str]:
    """The documents the open conversation searches (for a new one: the session's pick)."""
    if conv is not None:
        return lib.conversation_documents(conv.id)
    ready = [d.id for d in lib.list() if d.status == "ready"]
    chosen = state.get("doc_draft_selection")
    return ready if chosen is None else [d for d in chosen if d in ready]


def save_selection(lib: DocumentLibrary, conv: Conversation | None, ids: list[str]) -> None:
    if conv is None:
        state.put("doc_draft_selection", ids)
    else:
        lib.set_conversation_documents(conv.id, ids)


# What each mode `library.chat_settings` stores (read by rag) is called in the picker.
SEND_MODES = {
    "auto": "Passages, or whole when small",
    "retrieval": "Passages only",
    "whole": "Whole documents",
}


def picker(lib: DocumentLibrary, conv: Conversation | None, docs: list[DocumentRecord]) -> None:
    """Which documents this conversation searches, and how."""
    ready = {d.id: d for d in docs if d.status == "ready"}
    key = f"parley.w.docpick.{conv.id if conv else 'draft'}"
    mode, top_k = _settings(lib, conv)
    # Storage is the truth and the widgets only edit it: set them from it on every run
    # (an upload may have added a document) and save their changes in callbacks.
    st.session_state[key] = [d for d in selection(lib, conv) if d in ready]
    st.session_state[f"{key}.mode"] = mode if mode in SEND_MODES else "auto"
    st.session_state[f"{key}.k"] = top_k

    def save_picked() -> None:
        save_selection(lib, conv, st.session_state[key])

    def save_settings() -> None:
        _save_settings(lib, conv, st.session_state[f"{key}.mode"], st.session_state[f"{key}.k"])

    with st.sidebar.expander("Documents to search", expanded=True, icon=":material/library_books:"):
        st.multiselect(
            "Documents to search",
            list(ready),
            format_func=display_names(docs).get,
            key=key,
            on_change=save_picked,
            label_visibility="collapsed",
            placeholder="Choose documents…",
        )
        st.radio(
            "Send to the model",
            list(SEND_MODES),
            format_func=SEND_MODES.get,
            key=f"{key}.mode",
            on_change=save_settings,
            help="Passages are the best matches for each question; documents under "
            f"{rag.SMALL_WHOLE_TOKENS:,} tokens in all go whole anyway. Whole documents "
            "(when they fit the model's window) lets a summary see every page, and every "
            "question pays for every page.",
        )
        st.slider("Passages per answer", 1, 20, key=f"{key}.k", on_change=save_settings)


def _settings(lib: DocumentLibrary, conv: Conversation | None) -> tuple[str, int]:
    if conv is None:
        return state.get("doc_draft_settings") or ("auto", 6)
    return lib.chat_settings(conv.id)


def _save_settings(lib: DocumentLibrary, conv: Conversation | None, mode: str, k: int) -> None:
    if conv is None:
        state.put("doc_draft_settings", (mode, k))
    else:
        lib.set_chat_settings(conv.id, mode, k)


def start_conversation(lib: DocumentLibrary, conv: Conversation) -> None:
    """Give a just-created conversation the choices made while it was a draft."""
    lib.set_conversation_documents(conv.id, selection(lib, None))
    lib.set_chat_settings(conv.id, *_settings(lib, None))


# Uploading


def uploader(
    lib: DocumentLibrary, emb: Embedder | None, conv: Conversation | None, *, ocr: bool = True
) -> None:
    """Upload, index with a progress bar per page and per batch, and report per file;
    `ocr` is the operator's PARLEY_OCR (`Settings.ocr`)."""
    limit = upload_limit_mb()
    generation = state.get("upload_generation") or 0
    files = st.file_uploader(
        "Add files: PDF, Word, PowerPoint, Excel, CSV, HTML, EPUB, ODT, text, Markdown or "
        "scans (PNG, JPEG, TIFF)",
        type=TYPES,
        accept_multiple_files=True,
        key=f"parley.w.upload.{generation}",
        help=f"Up to {limit} MB per file. Files are kept in your workspace only.",
    )
    if files:
        left, right = st.columns([1, 1])
        go = left.button(
            f"Index {len(files)} file{'s' * (len(files) != 1)}",
            type="primary",
            icon=":material/upload_file:",
            key="parley.w.index",
        )
        # Clicking Cancel starts a new run, which stops this one at its next progress
        # update; the file being indexed is rolled back, the ones before it are kept.
        right.button("Cancel", icon=":material/cancel:", key="parley.w.cancel_index")
        if go:
            _index(lib, emb, conv, [(f.name, f.getvalue()) for f in files], limit, ocr)
    show_reports()


def _index(
    lib: DocumentLibrary,
    emb: Embedder | None,
    conv: Conversation | None,
    files: list[tuple[str, bytes]],
    limit_mb: int,
    ocr: bool,
) -> None:
    bar = st.progress(0.0, text="Starting…")
    ingestor = Ingestor(lib, emb, limit_bytes=limit_mb * 1_048_576, ocr=ocr)
    names = [name for name, _ in files]
    reports: list[dict] = []
    # Saved after every file: if Cancel interrupts this run, the next one still reports
    # the files already indexed, and names the rest as cancelled.
    state.put("doc_reports", reports)
    state.put("doc_pending", names)
    for i, (name, data) in enumerate(files):
        report = ingestor.ingest(name, data, _ticker(bar, i, len(files)))
        reports.append(report.to_dict())
        state.put("doc_pending", names[i + 1 :])
        if report.document_id:
            save_selection(
                lib, conv, list(dict.fromkeys([*selection(lib, conv), report.document_id]))
            )
    state.pop("doc_pending")
    state.put("upload_generation", (state.get("upload_generation") or 0) + 1)
    st.rerun()


def _ticker(bar, index: int, files: int):  # noqa: ANN001, ANN202 - st.progress, a callback
    prefix = f"File {index + 1} of {files} · " if files > 1 else ""

    def tick(_stage: str, _done: int, _total: int, message: str, fraction: float) -> None:
        bar.progress(min((index + min(fraction, 1.0)) / files, 1.0), text=escape(prefix + message))

    return tick


def show_reports() -> None:
    """The reports of the last upload, one line per file, until dismissed."""
    reports = [FileReport(**r) for r in state.get("doc_reports") or []]
    for name in state.pop("doc_pending") or []:  # left over from a cancelled run
        reports.append(FileReport(name, "cancelled", "Cancelled before it was indexed."))
    state.put("doc_reports", [r.to_dict() for r in reports])
    if not reports:
        return
    with st.container(border=True):
        for r in reports:
            icon = STATUS_ICONS[r.status]
            text = r.message if r.status != "duplicate" else f"{r.message} ({r.seconds:.3f} s)"
            if r.status == "failed":
                st.error(escape(text), icon=icon)
            elif r.status == "cancelled":
                st.warning(escape(f"{r.name}: {r.message}"), icon=icon)
            else:
                st.success(escape(text), icon=icon)
            details = _details(r)
            if details:
                st.caption(escape(details))
        st.button(
            "Dismiss", key="parley.w.dismiss_reports", on_click=state.pop, args=("doc_reports",)
        )


def _details(r: FileReport) -> str:
    parts = []
    if r.status == "indexed":
        parts.append(f"{r.tokens:,} tokens in {r.seconds:.1f} s")
        if r.cached:
            parts.append(f"{r.cached:,} chunks' vectors reused from the cache")
    if r.empty_pages:
        shown = ", ".join(str(p) for p in r.empty_pages[:12])
        more = "…" if len(r.empty_pages) > 12 else ""
        parts.append(f"pages with no text: {shown}{more}")
    parts += r.notes
    return " · ".join(parts)


# The library


def library_list(
    lib: DocumentLibrary, docs: list[DocumentRecord], emb: Embedder | None, *, ocr: bool = True
) -> None:
    """Each document with its report, and re-index and delete."""
    if not docs:
        st.caption("Your library is empty: add a document above.")
        return
    names = display_names(docs)
    for doc in docs:
        with st.container(border=True):
            # A row, not 6:1:1 columns, whose narrow ones cut "Delete" to "De…".
            top = st.container(horizontal=True, vertical_alignment="center", gap="xsmall")
            about = top.container(width="stretch")
            about.markdown(f"**{escape(names[doc.id])}**")
            about.caption(escape(summary(doc, emb.model if emb else None)))
            top.button(
                "Re-index",
                key=f"parley.w.reindex.{doc.id}",
                icon=":material/refresh:",
                disabled=emb is None,
                on_click=state.put,
                args=("reindex", doc.id),
                type="tertiary",
            )
            with top.popover("Delete", icon=":material/delete:", type="tertiary"):
                st.write(
                    f"Delete {escape(names[doc.id])}, its passages, vectors and cached embeddings?"
                )
                if st.button("Delete for good", type="primary", key=f"parley.w.deldoc.{doc.id}"):
                    lib.delete(doc.id)
                    state.put("doc_reports", [])
                    st.rerun()
            if state.get("reindex") == doc.id:
                state.pop("reindex")
                _reindex(lib, emb, doc, ocr)


def _reindex(lib: DocumentLibrary, emb: Embedder | None, doc: DocumentRecord, ocr: bool) -> None:
    bar = st.progress(0.0, text=escape(f"Re-indexing {doc.name}…"))
    ingestor = Ingestor(lib, emb, limit_bytes=1 << 62, ocr=ocr)
    try:
        report = ingestor.reindex(
            doc.id, lambda _s, _d, _t, message, f: bar.progress(min(f, 1.0), text=escape(message))
        )
    except ParleyError as exc:
        st.error(escape(str(exc)))
        return
    state.put("doc_reports", [report.to_dict()])
    st.rerun()


def display_names(docs: list[DocumentRecord]) -> dict[str, str]:
    """Each document's name, told apart where documents share one (two uploads of
    "notes.md" looked the same in the library and the picker): size and upload time,
    then "(2)", "(3)" in upload order if even those agree."""
    counts = Counter(d.name for d in docs)
    names = {}
    for doc in sorted(docs, key=lambda d: d.created_at):
        if counts[doc.name] == 1:
            names[doc.id] = doc.name
            continue
        added = datetime.fromtimestamp(doc.created_at).strftime("%Y-%m-%d %H:%M")
        label = f"{doc.name} ({_size(doc.size)}, added {added})"
        taken = sum(1 for other in names.values() if other.startswith(label))
        names[doc.id] = f"{label} ({taken + 1})" if taken else label
    return names


def summary(doc: DocumentRecord, model: str | None) -> str:
    r = doc.report
    parts = [
        parts_text(doc.kind, r.get("pages", 0), r.get("sheets", 0)),  # slides, sheets...
        f"{r.get('chunks', 0):,} chunks",
        f"{doc.tokens:,} tokens",
        _size(doc.size),
    ]
    if r.get("empty_pages"):
        parts.append(f"{parts_text(doc.kind, len(r['empty_pages']))} without text")
    if r.get("ocr_pages"):
        parts.append(f"{len(r['ocr_pages'])} read by OCR")
    if doc.status != "ready":
        parts.append("indexing did not finish: re-index it")
    elif doc.embedding_model is None:
        parts.append("keyword search only")
    elif model and doc.embedding_model != model:
        parts.append(f"vectors from {doc.embedding_model}: re-index for {model}")
    added = datetime.fromtimestamp(doc.created_at).strftime("%Y-%m-%d %H:%M")
    return " · ".join(parts) + f" · added {added}"


def _size(size: int) -> str:
    if size < 1_048_576:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1_048_576:.1f} MB"


def model_picker(
    store: ConversationStore,
    conv: Conversation | None,
    models: list[str],
    slot: DeltaGenerator,
) -> str:
    """The chat model that answers in this conversation, picked in `slot` (the top row,
    `chat_header.top_bar`, as on the Chat page: in view on a phone)."""
    current = conv.model if conv else state.get("doc_draft_model") or models[0]
    options = models if current in models else [current, *models]
    key = f"parley.w.docmodel.{conv.id if conv else 'draft'}"
    st.session_state[key] = current

    def save() -> None:
        if conv is None:
            state.put("doc_draft_model", st.session_state[key])
        else:
            store.update_settings(conv.id, model=st.session_state[key])

    slot.selectbox(
        "Model", options, key=key, on_change=save, accept_new_options=True,
        label_visibility="collapsed",
    )  # fmt: skip
    return current


def coverage_note(docs: list[DocumentRecord], chosen: list[str], model: str) -> None:
    """Say so up front when some chosen documents can only be searched by keywords."""
    plain = [d.name for d in docs if d.id in chosen and d.embedding_model != model]
    if plain:
        names = ", ".join(plain[:3]) + ("…" if len(plain) > 3 else "")
        st.caption(
            f":material/info: Keyword search only for {escape(names)}: no {escape(model)} vectors. "
            "Re-index in the library to add semantic search."
        )
