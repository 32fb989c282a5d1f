"""The Chat page's "Illustrate" action: the chat model writes an image prompt from the last
exchange, the user edits it, and the picture is generated into the conversation (an
assistant message listing the image) and the gallery (a row naming the conversation).

Generation reuses the Images page's background job and live status, so the picture is
saved even if the user sends a message or leaves the page while it is being made.
"""

from __future__ import annotations

import streamlit as st

from lib import chat, illustrate
from lib.conversations import Conversation
from lib.errors import DiskFull, InvalidInputError, ParleyError
from lib.gallery import StoredImage
from lib.image_models import ImageRequest, default_request, spec_for
from lib.images import GenerationResult
from lib.jobs import BackgroundJob
from lib.markup import escape
from lib.settings import Settings
from lib.ui import images_view, state, unsaved_images
from lib.ui.gallery_view import image_store

JOB = "illustrate_job"


def _draft_key(cid: str) -> str:
    return f"illustrate.{cid}"


def _prompt_key(cid: str) -> str:
    return f"parley.w.illustrate.prompt.{cid}"


def action(ctx: chat.ChatContext, conv: Conversation, current: Settings) -> None:
    """The Illustrate button, or the prompt editor it opened, or the running generation."""
    pending = state.get(JOB)
    if pending is not None and pending[0] == conv.id and _finish(conv.id, *pending[1:]):
        return
    draft = state.get(_draft_key(conv.id))
    if draft is None:
        if st.button(
            "Illustrate",
            icon=":material/palette:",
            key="parley.w.illustrate",
            type="tertiary",
            help="Turn the last exchange into an image prompt you can edit, then make the "
            "picture. It appears here and in the Images gallery.",
        ):
            draft = _write_prompt(ctx, conv)
        if draft is None:
            return
    _editor(ctx, conv, current, draft)


def _write_prompt(ctx: chat.ChatContext, conv: Conversation) -> dict | None:
    """Ask the chat model for a prompt; on failure the user may still write their own."""
    try:
        with st.spinner("Writing an image prompt from the last exchange…"):
            written = illustrate.write_prompt(ctx, conv.id)
    except InvalidInputError as exc:
        st.warning(escape(str(exc)), icon=":material/info:")
        return None
    except ParleyError as exc:
        st.warning(escape(f"{exc} You can write the prompt yourself."), icon=":material/warning:")
        draft: dict = {"model": None, "cost": None, "text": ""}
    else:
        draft = {"model": written.model, "cost": written.cost, "text": written.text}
    state.put(_draft_key(conv.id), draft)
    # The editor is drawn after this in the same run, so its value may still be set.
    st.session_state[_prompt_key(conv.id)] = draft["text"]
    return draft


def _close(cid: str) -> None:
    state.pop(_draft_key(cid))
    st.session_state.pop(_prompt_key(cid), None)


def _editor(ctx: chat.ChatContext, conv: Conversation, current: Settings, draft: dict) -> None:
    with st.container(border=True, key="parley-illustrate"):
        st.markdown("**Illustrate this conversation**")
        if draft["model"]:
            model = escape(draft["model"])
            st.caption(f"Prompt written by {model} from the last exchange; edit it first.")
        prompt = st.text_area("Image prompt", key=_prompt_key(conv.id), height=110)
        choice = images_view.model_choice(current, ctx.client)
        left, right = st.columns(2)
        with left:
            model = images_view.model_picker(choice, "parley.w.illustrate.model")
        sizes = spec_for(model).sizes if model else ("auto",)
        size = right.selectbox("Size", sizes, key=f"parley.w.illustrate.size.{model}")
        go, cancel = st.columns([1, 4])
        clicked = go.button("Generate image", type="primary", key="parley.w.illustrate.go")
        cancel.button("Cancel", key="parley.w.illustrate.cancel", on_click=_close, args=(conv.id,))
    if not clicked:
        return
    if not model:
        st.error("Choose an image model first.", icon=":material/error:")
        return
    request = default_request(prompt or "", model)
    request.size = size
    request.partial_images = images_view.PREVIEWS if spec_for(model).streaming else 0
    _start(ctx, conv, current, request, draft)


def _start(
    ctx: chat.ChatContext,
    conv: Conversation,
    current: Settings,
    request: ImageRequest,
    draft: dict,
) -> None:
    store = image_store(current)

    def link(result: GenerationResult) -> list[StoredImage]:
        # Runs in the job's thread: lib calls only, no Streamlit.
        saved, _message = illustrate.attach(
            ctx, store, conv.id, result, prompt_cost=draft.get("cost")
        )
        return saved

    started = images_view.start(current, ctx.client, store, request, conversation=link)
    if started is None:
        return  # refused before sending: the editor and its prompt stay as they were
    state.put(JOB, (conv.id, *started))
    _finish(conv.id, *started)


def _finish(cid: str, job: BackgroundJob, label: str) -> bool:
    """Follow the job to its end: True when the picture is in (and the page reruns),
    False after showing why it failed."""
    try:
        images_view.follow(job, label)
    except Exception as exc:
        state.pop(JOB)  # ended with this error; the draft and its prompt stay for a retry
        if not isinstance(exc, ParleyError):
            raise
        message = str(exc)
        if isinstance(exc, DiskFull) and exc.unsaved is not None:
            unsaved_images.keep(exc)  # billed: offered on the Images page until saved
            message += " The picture waits on the Images page, to download or save later."
        st.error(message, icon=":material/error:")
        return False
    state.pop(JOB)
    _close(cid)
    st.rerun()
    return True  # not reached: st.rerun() ends the run
