"""The gallery (newest first, search, download, delete, "use this prompt again") and the
pictures shown inside a conversation's messages.

Prompts (which Illustrate lets a model write) and model names are shown with
`lib.markup.escape`: as typed, never as Markdown that could load an image. The pictures
themselves are Parley's own, read from the image store and handed to `st.image` as bytes,
so the browser sees them the same way whichever blob store holds them (no path or key
ever reaches it).
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from lib.errors import NotFoundError, ParleyError
from lib.gallery import MISSING, ImageStore, StoredImage
from lib.markup import escape
from lib.settings import Settings
from lib.ui import clients, state
from lib.ui.images_view import LAST, MODEL_KEY, PROMPT_KEY

PAGE = 24
COLUMNS = 3
MESSAGE_IMAGE_WIDTH = 420


def image_store(current: Settings) -> ImageStore:
    """This session's workspace's images, on the page's backend."""
    return ImageStore(clients.backend(current), state.workspace())


def gallery(store: ImageStore) -> None:
    st.subheader("Gallery")
    query = st.text_input(
        "Search by prompt",
        key="parley.w.img.search",
        placeholder="Search your images by prompt…",
        icon=":material/search:",
    )
    limit = state.get("gallery_limit") or PAGE
    shown = store.list(query=query, limit=limit)
    total = store.count(query=query) if len(shown) == limit else len(shown)
    if not shown:
        st.caption(
            "No image matches that search." if query.strip() else "No images yet: generate one."
        )
        return
    matching = f" matching “{escape(query)}”" if query else ""
    st.caption(f"{total} image{'s' * (total != 1)}{matching}")
    for start in range(0, len(shown), COLUMNS):
        for col, image in zip(st.columns(COLUMNS), shown[start : start + COLUMNS], strict=False):
            with col:
                tile(store, image)
    if total > len(shown):
        st.button(
            "Show more",
            icon=":material/expand_more:",
            key="parley.w.img.more",
            on_click=lambda: state.put("gallery_limit", limit + PAGE),
        )


def tile(store: ImageStore, image: StoredImage) -> None:
    with st.container(border=True, key=f"img-tile-{image.id}"):
        preview = _preview(store, image)
        if preview is not None:
            st.image(preview, width="content")  # never upscaled past its own size
        else:
            st.caption(f":material/broken_image: {MISSING}")
        st.caption(escape(_clip(image.prompt, 180)))
        when = datetime.fromtimestamp(image.created_at).strftime("%Y-%m-%d %H:%M")
        st.caption(escape(f"{image.model} · {image.width}×{image.height} · {when}"))
        # A row that wraps, not three columns: a 4-across tile cut "Download" to "Dow…".
        row = st.container(horizontal=True, gap="xxsmall")
        row.download_button(
            "Download",
            data=lambda: store.read(image),  # read only when the user asks for it
            file_name=image.download_name(),
            mime=image.mime,
            key=f"img_dl_{image.id}",
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
            disabled=not store.has_file(image),
            help="Download the full-size image",
        )
        row.button(
            "Reuse",
            key=f"img_reuse_{image.id}",
            icon=":material/replay:",
            type="tertiary",
            on_click=reuse,
            args=(image.prompt, image.model),
            help="Use this prompt again",
        )
        with row.popover("Delete", icon=":material/delete:", type="tertiary"):
            st.write("Delete this image and its file for good?")
            st.button(
                "Delete image",
                key=f"img_del_{image.id}",
                type="primary",
                on_click=delete,
                args=(store, image.id),
            )


def reuse(prompt: str, model: str) -> None:
    # A callback runs before the widgets are drawn, so their values may be set here.
    st.session_state[PROMPT_KEY] = prompt
    st.session_state[MODEL_KEY] = model
    st.toast("Prompt copied into the prompt box.", icon=":material/replay:")


def delete(store: ImageStore, image_id: str) -> None:
    try:
        store.delete(image_id)
    except ParleyError as exc:
        st.toast(str(exc), icon=":material/error:")
        return
    state.put(LAST, [i for i in state.get(LAST) or [] if i != image_id])
    st.toast("Image deleted.", icon=":material/delete:")


def message_images(image_ids: list[str]) -> None:
    """The pictures of a conversation message (meta["images"]), from this user's gallery."""
    store = image_store(clients.settings())
    found = store.get_many(image_ids)
    for image in found:
        preview = _preview(store, image)
        if preview is not None:
            st.image(preview, width=MESSAGE_IMAGE_WIDTH)
    if len(found) < len(image_ids):
        st.caption(":material/hide_image: An image of this message was deleted from the gallery.")


def _preview(store: ImageStore, image: StoredImage) -> bytes | None:
    """The tile's picture (the thumbnail if there is one), or None if its file is gone."""
    try:
        return store.preview(image)
    except NotFoundError:
        return None


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
