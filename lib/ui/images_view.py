"""The Images page's generator: prompt, model-dependent controls, live status, result.

Generation runs as a `lib.jobs.BackgroundJob` kept in the session, so the images are
saved even if the user reruns or leaves the page mid-way; `follow` shows a live status
with the elapsed time and the partial images while the page waits for it. The prompt is
a keyed widget that persists for the session, so no error or page switch loses it.
"""

from __future__ import annotations

from typing import Any

import openai
import streamlit as st

from lib import images, outbound
from lib.errors import DiskFull, NotFoundError, ParleyError
from lib.gallery import ImageStore, StoredImage
from lib.image_models import (
    ImageRequest,
    ModelChoice,
    choose_image_models,
    describe,
    spec_for,
)
from lib.jobs import BackgroundJob
from lib.markup import escape
from lib.settings import Settings
from lib.ui import clients, state, unsaved_images
from lib.ui.transcript import money

PROMPT_KEY = "parley.w.img.prompt"
MODEL_KEY = "parley.w.img.model"
JOB, LAST = "image_job", "image_last"
# The last generation's request, and its error when it failed: shown where its pictures
# would be, with Retry, on every run until the user retries or generates anew.
REQUEST, FAILED, RETRY = "image_request", "image_failed", "image_retry"
CUSTOM_SIZE = "Custom…"
# Image calls routinely take a minute, several times a chat reply's wait: the configured
# timeout (60 s by default) would cut them off.
IMAGE_TIMEOUT_FACTOR = 4
PREVIEWS = 2  # partial images asked for when live previews are on


def image_timeout(current: Settings) -> float:
    return current.timeout * IMAGE_TIMEOUT_FACTOR


def model_choice(current: Settings, api: openai.OpenAI) -> ModelChoice:
    """Image models from config, the server's /v1/models (cached per session) and the SDK."""
    return choose_image_models(clients.server_models(current, api), current.image_model)


def model_picker(choice: ModelChoice, key: str) -> str | None:
    names = list(choice.names)
    chosen = st.session_state.get(key)
    if chosen and chosen not in names:
        names.append(chosen)  # e.g. a model reused from the gallery or typed earlier
    index = names.index(choice.default) if choice.default in names else None
    return st.selectbox(
        "Image model",
        names,
        index=index,
        key=key,
        format_func=describe,
        accept_new_options=True,
        placeholder="Choose an image model",
        help="Retired models stay usable on servers that still offer them, but are never "
        "the default. You can type any model name your server knows.",
        persist_state="session",
    )


def options(prompt: str, model: str) -> ImageRequest:
    """The controls `model` accepts, remembered per model; returns the request they make."""
    spec = spec_for(model)
    k = f"parley.w.img.{model}."
    keep: dict[str, Any] = {"persist_state": "session"}
    cols = st.columns(5)
    sizes = list(spec.sizes) + ([CUSTOM_SIZE] if spec.size_limits else [])
    size = cols[0].selectbox("Size", sizes, key=k + "size", **keep)
    if size == CUSTOM_SIZE:
        size = cols[0].text_input(
            "Width x height", "1536x864", key=k + "custom", help="For example 1536x864.", **keep
        )
    quality = "auto"
    if spec.qualities:
        quality = cols[1].selectbox("Quality", spec.qualities, key=k + "quality", **keep)
    n = 1
    if spec.max_n > 1:
        n = int(cols[2].number_input("Images", 1, spec.max_n, 1, key=k + "n", **keep))
    style = None
    if spec.styles:
        style = cols[3].selectbox("Style", spec.styles, key=k + "style", **keep)
    background, output_format, compression = "auto", "png", None
    if spec.backgrounds:
        background = cols[3].selectbox("Background", spec.backgrounds, key=k + "bg", **keep)
    if spec.output_formats:
        output_format = cols[4].selectbox("Format", spec.output_formats, key=k + "fmt", **keep)
        if output_format in ("jpeg", "webp"):
            level = cols[4].slider("Compression", 0, 100, 100, key=k + "comp", **keep)
            compression = None if level == 100 else int(level)  # 100 is the API default
    partials = 0
    if spec.streaming:
        live = st.toggle(
            "Live previews",
            True,
            key=k + "live",
            disabled=n > 1,
            help=f"Show {PREVIEWS} partial images while the picture is made (single images "
            "only; each preview adds a little to the cost).",
            **keep,
        )
        partials = PREVIEWS if live and n == 1 else 0
    return ImageRequest(
        prompt, model, str(size), quality, n, background, output_format, compression,
        partials, style,
    )  # fmt: skip


def start(current: Settings, api: openai.OpenAI, store: ImageStore, request: ImageRequest,
          *, conversation: Any = None) -> tuple[BackgroundJob, str] | None:  # fmt: skip
    """Validate now (nothing is sent if invalid), then start the job and return it with
    its status label; None, with the reason shown, if the request is refused.

    `conversation(result)`, if given, saves the result instead of the plain gallery save.
    """
    try:
        events = images.generate(
            api,
            request,
            prices=clients.prices(current),
            provider=current.provider,
            base_url=current.base_url,
            timeout=image_timeout(current),
            allow=outbound.image_allow(current),
        )
    except ParleyError as exc:
        st.error(escape(str(exc)), icon=":material/error:")
        return None

    def task(emit: Any) -> list[StoredImage]:
        for event in events:
            if isinstance(event, images.Preview):
                emit(event)
            else:
                try:
                    if conversation is not None:
                        return conversation(event)
                    return store.save(event)
                except DiskFull as exc:
                    exc.unsaved = event  # billed: the page offers it and saves it again
                    raise
        raise ParleyError("The generation ended without a result.")

    n = request.n
    label = f"Generating {n} image{'s' * (n > 1)} with {escape(request.model)}"
    return BackgroundJob(task, name="image"), label


def follow(job: BackgroundJob, label: str) -> Any:
    """A live status with the elapsed time and partial images until `job` ends; returns
    its result or raises its error."""
    with st.status(f"{label}… {job.elapsed:.0f} s", expanded=True) as status:
        frame = st.empty()

        def show(preview: Any) -> None:
            if isinstance(preview, images.Preview):
                caption = f"Preview {preview.index + 1} of image {preview.image + 1}"
                frame.image(preview.data, caption=caption)

        show(job.latest)  # when picking up a job an earlier run started
        while not job.done:
            previews = [e for e in job.updates(timeout=0.5) if isinstance(e, images.Preview)]
            if previews:
                show(previews[-1])
            # Without expanded=True, 1.67 collapses the status on every label update.
            status.update(label=f"{label}… {job.elapsed:.0f} s", expanded=True)
        if job.error is not None:
            status.update(label=f"Failed after {job.elapsed:.0f} s", state="error")
            raise job.error
        status.update(label=f"Done in {job.elapsed:.1f} s", state="complete", expanded=False)
    return job.result


def running() -> bool:
    pending = state.get(JOB)
    return pending is not None and not pending[0].done


def finish(store: ImageStore) -> None:
    """Follow a job this session started (even on an earlier run) to its end."""
    pending = state.get(JOB)
    if pending is None:
        return
    job, label = pending
    try:
        saved = follow(job, label)
    except Exception as exc:
        # The job ended with this error: forget it so the next run does not replay it. A
        # rerun interrupting `follow` is a BaseException and keeps the job to pick up.
        state.pop(JOB)
        if not isinstance(exc, ParleyError):
            raise
        if isinstance(exc, DiskFull):
            unsaved_images.keep(exc)
        state.put(FAILED, str(exc))
        return
    state.pop(JOB)
    state.put(LAST, [image.id for image in saved])
    st.rerun()


def generator(current: Settings, api: openai.OpenAI, store: ImageStore) -> None:
    """Prompt, model and options, the Generate button, and the job's progress; or, on a
    server known to have no image endpoint, a plain sentence saying so (asked once per
    session with a request that generates nothing, `lib.server.capabilities`)."""
    missing = clients.capabilities(current, api).missing("images")
    if missing:
        st.info(
            f"**{missing}** The gallery below still shows the pictures made before.",
            icon=":material/hide_image:",
        )
        return
    choice = model_choice(current, api)
    prompt = st.text_area(
        "Prompt",
        key=PROMPT_KEY,
        height=110,
        placeholder="Describe the image: subject, setting, style, light, mood…",
        persist_state="session",
    )
    if choice.note:
        st.caption(choice.note)
    model = model_picker(choice, MODEL_KEY)
    request = options(prompt or "", model) if model else None
    if st.button(
        "Generate",
        type="primary",
        icon=":material/auto_awesome:",
        key="parley.w.img.go",
        disabled=running(),
    ):
        state.pop(FAILED)
        if request is None:
            st.error("Choose an image model first.", icon=":material/error:")
        else:
            _start(current, api, store, request)
    if state.pop(RETRY) and (kept := state.get(REQUEST)) is not None:
        _start(current, api, store, kept)
    finish(store)
    failure()
    if saved := unsaved_images.offer(store):
        state.put(LAST, [image.id for image in saved])
        st.rerun()


def _start(current: Settings, api: openai.OpenAI, store: ImageStore, request: ImageRequest) -> None:
    if started := start(current, api, store, request):
        state.put(JOB, started)
        state.put(REQUEST, request)


def failure() -> None:
    """The last generation's error where its pictures would be, with Retry (the same
    request again, whatever the form now holds), until retried or replaced."""
    error = state.get(FAILED)
    if error is None:
        return
    st.error(escape(error), icon=":material/error:")
    st.button(
        "Retry",
        icon=":material/replay:",
        key="parley.w.img.retry",
        type="primary",
        disabled=running() or state.get(REQUEST) is None,
        on_click=_retry,
    )


def _retry() -> None:
    state.pop(FAILED)
    state.put(RETRY, True)


def latest(store: ImageStore) -> None:
    """The images of the last generation, with the revised prompt, usage and cost."""
    shown = store.get_many(state.get(LAST) or [])
    if not shown:
        return
    st.subheader("Latest")
    cols = st.columns(min(len(shown), 2))
    for i, image in enumerate(shown):
        with cols[i % len(cols)]:
            try:
                st.image(store.read(image), width="content")
            except NotFoundError as exc:
                st.caption(f":material/broken_image: {exc}")
            if image.revised_prompt:
                # The image server wrote it: shown as typed, never as Markdown.
                st.caption(f"**Revised prompt:** {escape(image.revised_prompt)}")
    st.caption(escape(summary(shown)))


def summary(batch: list[StoredImage]) -> str:
    first = batch[0]
    parts = [f"{len(batch)} image{'s' * (len(batch) > 1)}", first.model, first.size]
    if first.input_tokens is not None:
        parts.append(f"{first.input_tokens:,} in · {first.output_tokens or 0:,} out tokens")
    costs = [i.cost for i in batch]
    parts.append(money(None if None in costs else sum(c or 0.0 for c in costs)))
    if first.meta.get("seconds"):
        parts.append(f"{first.meta['seconds']:.1f} s")
    return " · ".join(parts)
