"""Images that were made (one billed request) but that a full disk kept out of the gallery.

They stay in this session, never on disk, offered as downloads and as a "Save to the
gallery" button for when space has been freed. Each is kept with the workspace that made
it, so signing in as someone else in the same browser session never shows it to them.
"""

from __future__ import annotations

import re

import streamlit as st

from lib.errors import DiskFull
from lib.gallery import ImageStore, StoredImage
from lib.images import GenerationResult
from lib.markup import escape
from lib.ui import state

UNSAVED = "image_unsaved"  # (workspace, GenerationResult) until saved or replaced


def keep(exc: DiskFull) -> None:
    """Hold on to the result a full disk refused, if the error carries one."""
    if isinstance(exc.unsaved, GenerationResult):
        state.put(UNSAVED, (state.workspace(), exc.unsaved))


def pending(workspace: str) -> GenerationResult | None:
    """`workspace`'s unsaved result, if there is one."""
    held = state.get(UNSAVED)
    if held is None or held[0] != workspace:
        return None
    return held[1]


def download_name(result: GenerationResult, index: int) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "-", result.request.prompt).strip("-").lower()[:40]
    image = result.images[index]
    return f"parley-{words.rstrip('-') or 'image'}-unsaved-{index + 1}.{image.extension}"


def offer(store: ImageStore) -> list[StoredImage] | None:
    """Show the unsaved images with downloads and a retried save; the saved images once
    that save works, else None."""
    result = pending(store.workspace)  # only ever saved into the workspace that made it
    if result is None:
        return None
    with st.container(border=True, key="parley.w.img.unsaved"):
        st.warning(
            "**Not saved yet.** This image was made, and billed, but the disk is full. "
            "Download it now, or free some space and save it to the gallery.",
            icon=":material/save:",
        )
        cols = st.columns(min(len(result.images), 2))
        for i, image in enumerate(result.images):
            with cols[i % len(cols)]:
                st.image(image.data, width="content")
                st.download_button(
                    "Download",
                    image.data,
                    file_name=download_name(result, i),
                    mime=image.mime,
                    key=f"parley.w.img.unsaved.download.{i}",
                    icon=":material/download:",
                    on_click="ignore",
                )
        if not st.button("Save to the gallery", key="parley.w.img.unsaved.save", type="primary"):
            return None
        try:
            saved = store.save(result)
        except DiskFull as exc:
            st.error(escape(str(exc)), icon=":material/error:")
            return None
    state.pop(UNSAVED)
    return saved
