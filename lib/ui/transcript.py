"""Rendering a conversation: messages, their token and cost footers, the context gauge.

Only a recent window of messages is loaded and drawn, so a rerun costs the same for a
conversation of ten messages or ten thousand; earlier ones load on demand. Model output
is rendered as Markdown with HTML disabled (Streamlit's default), never as raw HTML, and
through `lib.markup.neutralise`, so no image in it loads by itself (also while it streams).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import streamlit as st

from lib import chat, inflight
from lib.conversations import ConversationStore, Message, Siblings, Totals
from lib.illustrate import ILLUSTRATION
from lib.markup import escape, neutralise
from lib.pricing import BILLED_PROVIDERS
from lib.providers import server_key
from lib.ui import state
from lib.usage import money, usage_line

AVATARS = {"user": ":material/person:", "assistant": ":material/smart_toy:"}
# How a reply ended, under it; {reason} is `meta["error"]` (escaped: a server wrote it).
STATUS_NOTES = {
    "stopped": ":material/stop_circle: Stopped by you. The partial reply was kept.",
    "interrupted": ":material/warning: {reason} The partial reply was kept.",
    "failed": ":material/error: {reason} Nothing usable arrived; use Retry to ask again.",
    "truncated": ":material/content_cut: Cut off at {limit:,} characters, the most Parley "
    "keeps of one reply (PARLEY_MAX_REPLY_CHARS).",
    "streaming": ":material/more_horiz: Still being written, in another window.",
}
DEFAULT_REASONS = {"interrupted": "The reply was cut off.", "failed": "The reply failed."}


def status_note(message: Message) -> str | None:
    """The caption saying how a reply ended, or None for an ordinary one."""
    note = STATUS_NOTES.get(message.status)
    if note is None:
        return None
    reason = message.meta.get("error") or DEFAULT_REASONS.get(message.status, "")
    return note.format(reason=escape(str(reason)), limit=message.meta.get("limit") or 0)


def footer(message: Message) -> str:
    return escape(usage_line(message, with_model=True))  # the model's name is typed text


def markdown_of(message: Message, display: Callable[[Message], str] | None = None) -> str:
    """What a bubble shows: the text (or `display`'s version of it), neutralised; an
    illustration's prompt, which a model may have written, as plain text."""
    if message.meta.get("kind") == ILLUSTRATION and "prompt" in message.meta:
        return "*Illustration:* " + escape(str(message.meta["prompt"]))
    return neutralise((display(message) if display else message.content) or "*(no text)*")


def stream_markdown(chunks: Iterable[str]) -> str:
    """Like `st.write_stream`, but each redraw goes through `neutralise`. Unlike it, a
    half-written construct is not completed for display: Streamlit's completion would
    close a half-written image and load it. Redraws are spaced by a few times what the
    last one cost, so a long reply that holds images does not starve the page."""
    box, text, next_at = st.empty(), "", 0.0
    for chunk in chunks:
        text += chunk
        started = time.perf_counter()
        if started >= next_at:
            box.markdown(neutralise(text))
            next_at = started + 4 * (time.perf_counter() - started)
    box.markdown(neutralise(text))
    return text


def render_message(
    message: Message,
    extra: Callable[[Message], None] | None = None,
    display: Callable[[Message], str] | None = None,
    actions: Callable[[Message], None] | None = None,
    row: Callable[[Message], None] | None = None,
) -> None:
    """One bubble. Pages may pass `display` (the Markdown to show for a message, e.g. with
    citations spelled out), `extra` (parts drawn inside it, e.g. a sources panel),
    `actions` (e.g. Retry under a failed reply's error) and `row` (its versions and
    tools, drawn last). A failed reply shows its error where its text would be; one that
    never reached the server has no footer."""
    failed = message.status == "failed"
    with st.chat_message(message.role, avatar=AVATARS.get(message.role)):
        if message.content or not failed:
            st.markdown(markdown_of(message, display))
        if extra is not None:
            extra(message)
        if message.meta.get("images"):
            # Deferred: only messages with pictures (illustrations) need the gallery.
            from lib.ui.gallery_view import message_images

            message_images(message.meta["images"])
        note = status_note(message)
        if note:
            (st.error if failed else st.caption)(note)
        if actions is not None:
            actions(message)
        if message.role == "assistant" and (message.content or not failed):
            st.caption(footer(message))
        if row is not None:
            row(message)


def render_window(
    store: ConversationStore,
    cid: str,
    extra: Callable[[Message], None] | None = None,
    display: Callable[[Message], str] | None = None,
    actions: Callable[[Message], None] | None = None,
    tools: Callable[[Message], None] | None = None,
) -> list[Message]:
    """Draw the most recent messages of the path shown, with a control to load earlier
    ones; under each, its versions control where it has other versions, and `tools`."""
    window = state.transcript_window()
    # A reply left "streaming" by a process that died reads (and is saved) as interrupted.
    messages = inflight.settle(store, cid, store.recent_messages(cid, window + 1))
    if len(messages) > window:
        messages = messages[1:]
        st.button(
            "Show earlier messages",
            icon=":material/expand_less:",
            on_click=state.show_more,
            type="tertiary",
            key="parley.w.more",
        )
    versions = store.siblings(cid, messages)  # one statement for the whole window

    def row(message: Message) -> None:
        message_row(store, cid, message, versions.get(message.id), tools)

    for message in messages:
        render_message(message, extra, display, actions, row)
    return messages


def message_row(
    store: ConversationStore,
    cid: str,
    message: Message,
    versions: Siblings | None,
    tools: Callable[[Message], None] | None,
) -> None:
    """A message's row: "‹ 2/3 ›" when it has other versions (always shown), then
    `tools` (shown on hover or focus, see `lib.ui.message_actions.ROW_CSS`)."""
    if message.id is None or (versions is None and tools is None):
        return
    row = st.container(
        horizontal=True, gap="xsmall", vertical_alignment="center", key=f"parley-row-{message.id}"
    )
    with row:
        if versions is not None:
            versions_control(store, cid, message.id, versions)
        if tools is not None:
            with st.container(
                horizontal=True,
                gap="xsmall",
                vertical_alignment="center",
                width="content",
                key=f"parley-tools-{message.id}",
            ):
                tools(message)


def versions_control(
    store: ConversationStore, cid: str, message_id: int, versions: Siblings
) -> None:
    """ "‹ 2/3 ›": step between a message's versions (edits of a question, answers to it,
    an n > 1 reply's choices); the path shown, and sent from then on, follows the step."""
    with st.container(
        horizontal=True,
        gap=None,
        vertical_alignment="center",
        width="content",
        key=f"parley-versions-{message_id}",
    ):
        for label, by, what in (("‹", -1, "Previous version"), ("›", 1, "Next version")):
            target = versions.step(by)
            if by == 1:
                st.caption(f"{versions.index + 1}/{len(versions)}")
            st.button(
                label,
                key=f"parley.w.version.{message_id}.{by}",
                type="tertiary",
                help=what,
                disabled=target is None,
                on_click=_switch,
                args=(store, cid, target),
            )


def _switch(store: ConversationStore, cid: str, message_id: int | None) -> None:
    if message_id is not None:
        chat.switch(store, cid, message_id)


def window_label(context: dict, used: int) -> str:
    """ "1,234 of 2,048 tokens (llama-server /props)": the tokens a request took of the
    window it was trimmed to and where that figure came from; "≈" when Parley estimated
    the count; "window unknown (assuming 8k)" when the server did not say."""
    approx = "≈" if context.get("estimate") else ""
    window = context["window"]
    if context.get("window_known", True):
        source = context.get("window_source")
        return f"{approx}{used:,} of {window:,} tokens" + (f" ({source})" if source else "")
    return f"{approx}{used:,} tokens · window unknown (assuming {round(window / 1024)}k)"


def price_section(model: str, provider: str, base_url: str | None) -> str:
    """The prices.toml section that prices `model` where it runs (see lib.pricing)."""
    name = model.replace('"', "")
    if provider in BILLED_PROVIDERS:
        return f'[{provider}.chat."{name}"]'
    return f'[server."{server_key(base_url)}".chat."{name}"]'


def gauge(
    last_reply: Message | None,
    totals: Totals,
    provider: str = "openai",
    base_url: str | None = None,
) -> None:
    """What went into the last request, and the conversation's running totals."""
    context = (last_reply.meta.get("context") if last_reply else None) or {}
    cols = st.columns([3, 2])
    if context:
        used = context["system"] + context["history"] + context["new"]
        fill = min(used / context["window"], 1.0)
        cols[0].progress(fill, text=f"Context: {window_label(context, used)}")
        dropped = context["dropped"]
        cols[0].caption(
            f"System {context['system']:,} · history {context['history']:,} · "
            f"new message {context['new']:,}"
            + (f" · {dropped} earlier message{'s' * (dropped != 1)} left out" if dropped else "")
        )
    if totals.replies:
        cost = money(totals.cost)
        if totals.unpriced:
            cost = "cost unknown" if totals.unpriced == totals.replies else f"at least {cost}"
        cols[1].caption(
            f"Conversation total: {totals.prompt_tokens + totals.completion_tokens:,} tokens "
            f"({totals.prompt_tokens:,} in, {totals.completion_tokens:,} out) · {cost}"
        )
        if totals.unpriced and last_reply and last_reply.model:
            section = price_section(last_reply.model, provider, base_url)
            cols[1].caption(
                # Inside a code span nothing renders; only a backtick could end it.
                f"To see costs, add `{section.replace('`', '')}` with `input` and `output` "
                "(dollars per million tokens) to prices.toml in the data directory."
            )
