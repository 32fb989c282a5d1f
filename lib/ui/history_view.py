"""The History page's widgets: import conversations from another app's export, with
progress, Cancel and an honest report; and export the whole workspace as one zip.

The uploaded file goes to a temporary file (the importer streams it from disk, one
conversation at a time) that is deleted when the import ends. The report names titles
and file names from the export as plain text (`lib.markup.escape`): they are untrusted.
Exports above the upload limit go through the terminal, which has none.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from lib.conversations import ConversationStore
from lib.errors import ParleyError
from lib.history.importer import Importer
from lib.history.workspace_export import export_workspace
from lib.markup import escape
from lib.ui import state


def importer(store: ConversationStore, *, ocr: bool) -> None:
    """The import form; `ocr` is the operator's PARLEY_OCR (`Settings.ocr`)."""
    limit = int(st.get_option("server.maxUploadSize"))
    generation = state.get("import_generation") or 0
    upload = st.file_uploader(
        "Import conversations: ChatGPT's data export (.zip), or an Open WebUI, LibreChat "
        "or Parley export (.json)",
        type=["zip", "json"],
        key=f"parley.w.import.{generation}",
        help=f"Up to {limit} MB here; for a bigger export run "
        "`python -m lib.cli import FILE` on the server. Importing the same file again adds "
        "nothing.",
    )
    if upload is not None:
        left, right = st.columns([1, 1])
        go = left.button("Import", type="primary", icon=":material/upload:", key="parley.w.import")
        # Clicking Cancel starts a new run, which stops this one at its next progress
        # update, between two conversations: those imported stay, each whole.
        right.button("Cancel", icon=":material/cancel:", key="parley.w.cancel_import")
        if go:
            _run(store, upload.name, upload.getvalue(), ocr)
    _report()


def _run(store: ConversationStore, name: str, data: bytes, ocr: bool) -> None:
    bar = st.progress(0.0, text="Reading the export…")
    job = Importer(
        store, progress=lambda share, text: bar.progress(share, text=escape(text)), ocr=ocr
    )
    state.put("import_job", job)  # a Cancel's rerun still finds what was imported
    with tempfile.TemporaryDirectory(prefix="parley-import-") as tmp:
        path = Path(tmp) / "export"
        path.write_bytes(data)
        try:
            report = job.run(path, name)
        except ParleyError as exc:
            state.pop("import_job")
            state.put("import_error", str(exc))
        else:
            state.pop("import_job")
            state.put("import_report", report.lines())
    state.put("import_generation", (state.get("import_generation") or 0) + 1)
    st.rerun()


def _report() -> None:
    job = state.pop("import_job")
    if job is not None and job.report is not None:  # the run was cancelled mid-import
        job.report.cancelled = True
        state.put("import_report", job.report.lines())
    error, lines = state.get("import_error"), state.get("import_report")
    if error:
        st.error(escape(error), icon=":material/error:")
    if lines:
        with st.container(border=True):
            head, *rest = lines
            st.success(escape(head), icon=":material/check_circle:")
            for line in rest:
                st.caption(escape(line))
    if (error or lines) and st.button("Dismiss", key="parley.w.import_dismiss"):
        state.pop("import_error"), state.pop("import_report")
        st.rerun()


def exporter(store: ConversationStore) -> None:
    """Every conversation (JSON and Markdown), document and image, as one zip to download;
    made when asked, since it reads the whole workspace."""
    st.subheader("Export everything")
    st.caption(
        "One zip: each conversation as JSON (with its branches) and Markdown, your documents "
        "as uploaded, and your images. Import it here, into this or another Parley."
    )
    if st.button("Prepare the export", icon=":material/archive:", key="parley.w.export_all"):
        bar = st.progress(0.0, text="Collecting…")
        with tempfile.TemporaryDirectory(prefix="parley-export-") as tmp:
            try:
                summary = export_workspace(
                    store.backend, store.workspace, Path(tmp) / "parley-export.zip",
                    progress=lambda share, text: bar.progress(share, text=text),
                )  # fmt: skip
            except ParleyError as exc:
                st.error(escape(str(exc)), icon=":material/error:")
                return
            data = summary.path.read_bytes()
        bar.empty()
        state.put("export_all", (summary.line(), data))
    ready = state.get("export_all")
    if ready:
        line, data = ready
        st.success(escape(line), icon=":material/check_circle:")
        st.download_button(
            "Download the export", data, file_name="parley-export.zip",
            mime="application/zip", icon=":material/download:", key="parley.w.export_download",
        )  # fmt: skip
