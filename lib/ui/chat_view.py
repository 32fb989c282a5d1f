"""The Chat page's widgets: parameters, message actions, and streaming a reply."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from lib import chat
from lib.conversations import ChatParams, Conversation, ConversationStore, Message
from lib.errors import (
    AuthenticationFailed,
    DiskFull,
    NotFoundError,
    ParleyError,
    RequestTimedOut,
    ServerUnreachable,
)
from lib.markup import escape, neutralise
from lib.presets import SYSTEM_PRESETS
from lib.settings import Settings
from lib.ui import attachments_view, clients, state, user_stop, voice
from lib.ui.transcript import AVATARS, stream_markdown
from lib.ui.turn_slot import Slot

log = logging.getLogger(__name__)


def flash(kind: str, text: str) -> None:
    """A message to show after the next rerun (errors must survive the rerun)."""
    state.put("flash", (kind, text))


def show_flash() -> None:
    pending = state.pop("flash")
    if pending:
        kind, text = pending
        getattr(st, kind)(escape(text))  # messages can quote the server


def open_conversation(store: ConversationStore, kind: str = "chat") -> Conversation | None:
    """The page's conversation named by the session or URL, or None for a new draft."""
    cid = state.conversation_id(kind)
    if not cid:
        return None
    try:
        conv = store.get(cid)
    except NotFoundError:
        conv = None
    if conv is None or conv.kind != kind:
        # Another page's conversation (say, a document chat's) is not found here either.
        state.open_conversation(None, kind)
        st.warning("That conversation was not found. Starting a new one.")
        return None
    return conv


def draft(current: Settings, models: list[str] | None = None) -> Conversation:
    """An unsaved conversation holding the settings for the next new chat: what this
    session chose for it on this server, else the model and system prompt the user last
    chose for this server, else the first of `models` (`clients.models` puts first the
    one a new chat starts with: one the server has)."""
    saved = state.get("draft") or {}
    if saved.get("base_url", current.base_url) != current.base_url:
        saved = {}  # chosen for another server
    last = clients.preferences(current).get(current.base_url)
    start = models[0] if models else last.model or current.chat_model
    return Conversation(
        id="draft",
        workspace=state.workspace(),
        title="New chat",
        model=saved.get("model", start),
        system_prompt=saved.get("system_prompt", last.system_prompt or ""),
        params=ChatParams.from_dict(saved.get("params", {})),
    )


def save_settings(
    store: ConversationStore,
    conv: Conversation,
    current: Settings | None = None,
    *,
    remember: bool = False,
) -> None:
    """Save a conversation's settings (a draft's in the session, for `current`'s server);
    `remember` also keeps its model and system prompt as the user's choice for the
    server, which the next new chat on it starts with."""
    conv.params.validate()
    if remember and current is not None:
        clients.preferences(current).put(
            current.base_url,
            model=conv.model,
            system_prompt=conv.system_prompt,
        )
    if conv.id == "draft":
        state.put(
            "draft",
            {
                "model": conv.model,
                "system_prompt": conv.system_prompt,
                "params": conv.params.__dict__,
                "base_url": current.base_url if current else None,
            },
        )
    else:
        store.update_settings(
            conv.id,
            model=conv.model,
            system_prompt=conv.system_prompt,
            params=conv.params,
        )


def parameters(
    store: ConversationStore,
    conv: Conversation,
    models: list[str],
    note: str | None,
    current: Settings | None = None,
    model_slot: DeltaGenerator | None = None,
) -> None:
    """Model, system prompt and sampling parameters for this conversation; a changed
    model or system prompt is also remembered for this server's next new chat. The model
    picker goes into `model_slot` when given (the Chat page's top row), else with the rest."""
    k = f"parley.w.{conv.id}."
    p = conv.params
    before = (conv.model, conv.system_prompt, dataclasses.replace(p))
    if note:
        st.sidebar.caption(f":material/info: {escape(note)}")  # model names are typed text
    with st.sidebar.expander("Model & parameters", icon=":material/settings:"):
        options = models if conv.model in models else [conv.model, *models]
        conv.model = (model_slot or st).selectbox(
            "Model",
            options,
            index=options.index(conv.model),
            key=k + "model",
            accept_new_options=True,
            label_visibility="collapsed" if model_slot else "visible",
        )
        preset = st.selectbox(
            "System prompt preset",
            list(SYSTEM_PRESETS),
            index=None,
            key=k + "preset",
            placeholder="Choose a preset…",
        )
        if preset is not None and state.get(k + "applied") != preset:
            state.put(k + "applied", preset)
            st.session_state[k + "system"] = SYSTEM_PRESETS[preset]
        conv.system_prompt = st.text_area(
            "System prompt", value=conv.system_prompt, key=k + "system", height=100
        )
        p.temperature = st.slider("Temperature", 0.0, 2.0, p.temperature, 0.05, key=k + "t")
        p.top_p = st.slider("top_p", 0.05, 1.0, p.top_p, 0.05, key=k + "p")
        max_tokens = st.number_input(
            "Max output tokens (0 = model default)",
            0,
            200_000,
            p.max_tokens or 0,
            256,
            key=k + "max",
        )
        p.max_tokens = int(max_tokens) or None
        stops = st.text_input(
            "Stop sequences (one per line, use \\n)",
            "\\n".join(p.stop),
            key=k + "stop",
            help="Up to 4, separated by \\n.",
        )
        p.stop = [s for s in stops.split("\\n") if s][:4]
        p.n = int(st.number_input("Alternatives per reply (n)", 1, 8, p.n, key=k + "n"))
        p.memory_rounds = int(
            st.number_input(
                "Memory: rounds to remember",
                0,
                500,
                p.memory_rounds,
                key=k + "rounds",
                help="How many earlier question-and-answer rounds are sent with each message. "
                "History is also trimmed to fit the model's context window.",
            )
        )
        window = st.number_input(
            "Context window override (0 = the server's)",
            0,
            10_000_000,
            p.context_window or 0,
            1024,
            key=k + "ctx",
        )
        p.context_window = int(window) or None
    if (conv.model, conv.system_prompt, p) == before:
        return  # nothing changed: no write on an ordinary rerun
    chosen = (conv.model, conv.system_prompt) != before[:2]
    try:
        save_settings(store, conv, current, remember=chosen)
    except ParleyError as exc:
        st.sidebar.error(escape(str(exc)))


def stream(reply: chat.Reply, slot: Slot | None = None) -> None:
    """Stream a reply into an assistant bubble, then rerun to show it with its footer."""
    if slot is not None:
        slot.streaming()
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        user_stop.forget()
        try:
            stream_markdown(reply)
        except ParleyError as exc:
            report(reply, exc)
        finally:
            try:
                end(reply)
            except DiskFull as exc:
                flash("error", f"{exc} {REPLY_NOT_SAVED}")
    st.rerun()


# Shown, but not saved: the question, saved before the reply, waits for Retry.
REPLY_NOT_SAVED = "The reply could not be saved; use Retry once there is room."


def report(reply: chat.Reply, error: ParleyError) -> None:
    """An error ends the turn where its reply would be: saved as the failed turn (or the
    cut-off one, with its partial text), which the rerun draws with the reason and Retry,
    and a reload still shows. Only an error that could not be saved is flashed on top."""
    if isinstance(error, ServerUnreachable | RequestTimedOut | AuthenticationFailed):
        clients.forget_status(reply.ctx.base_url)  # the Connection panel looks again
    try:
        reply.fail(error)  # a no-op when the stream saved its own ending
    except ParleyError as unsaved:  # DiskFull, the database gone
        log.warning("could not save the failed turn: %s", unsaved)
    if reply.message is None:
        flash("error", f"{error} {REPLY_NOT_SAVED}")


def end(reply: chat.Reply) -> None:
    """Close the HTTP stream and save the partial reply: "stopped" only after the user's
    Stop, which also has the page drawn again once this run ends (`user_stop.redraw`), so
    the stopped reply gets its caption, actions and gauge at once; a rerun, a closed tab
    or a shutdown leaves it "interrupted". A no-op once saved."""
    if user_stop.requested():
        reply.stop()
        user_stop.redraw()
    else:
        reply.close()


INPUT_KEY = "parley.w.chat.input"
UNSENT = "unsent"  # a message the store refused, to put back into the input


def message_box(
    ctx: chat.ChatContext,
    conv: Conversation | None,
    current: Settings,
    models: list[str] | None = None,
    slot: Slot | None = None,
) -> None:
    """The chat input, and sending what is typed into it (starting the conversation if
    this is its first message) into `slot`. A message that could not be saved is never
    lost: it comes back into the input on the next run, to send again."""
    if unsent := state.pop(UNSENT):
        st.session_state[INPUT_KEY] = unsent  # before the widget: Streamlit fills it in
    prompt = st.chat_input(
        "Message Parley",
        key=INPUT_KEY,
        submit_mode="stop",
        accept_file="multiple",
        file_type=attachments_view.TYPES,
        accept_audio=voice.offered(current, ctx.client),
    )
    if not prompt:
        return
    if (audio := voice.recording(prompt)) is not None:  # words into the box, never sent
        text, error = voice.into_box(current, ctx.client, prompt, audio)
        state.put(UNSENT, text)
        if error:
            flash("warning", error)
        st.rerun()
    try:
        files = attachments_view.read(ctx, current, prompt.files)  # refused: nothing saved
        if conv is None:
            new = draft(current, models)
            conv = ctx.store.create(
                model=new.model, system_prompt=new.system_prompt, params=new.params
            )
            state.open_conversation(conv.id)
        reply = attachments_view.send(ctx, current, conv.id, prompt.text, files)
    except ParleyError as exc:
        state.put(UNSENT, prompt.text)
        again = " Attach the files again to send them." if prompt.files else ""
        flash("error", f"{exc} Your message was not sent: it is back in the box below.{again}")
        st.rerun()
    with slot.turn if slot else st.container():
        with st.chat_message("user", avatar=AVATARS["user"]):
            st.markdown(neutralise(prompt.text))
            attachments_view.draw_new(files)
        stream(reply, slot)


# The turn to answer in the next run: a message action's callback leaves it (`start`) and
# the page that draws the transcript takes it once (`take_pending`), to stream it as a
# chat reply (`run_pending`) or as a document answer (`documents_chat.run_pending`).
_PENDING = "chat.pending"


def start(action: Callable[..., chat.Reply], *args: object) -> None:
    """Ask the next run to answer `action(ctx, *args)` (say, `answer`)."""
    state.put(_PENDING, (action, args))


def take_pending(ctx: chat.ChatContext) -> chat.Reply | None:
    """The reply a message action asked for (`start`), now started, or None; taken once,
    so a rerun never answers it twice. Raises the ParleyError that stops it starting."""
    pending = state.pop(_PENDING)
    if not pending:
        return None
    action, args = pending
    return action(ctx, *args)


def retry_in_place(store: ConversationStore, cid: str):  # noqa: ANN201 - a bubble part
    """For `transcript.render_window(extra=...)`: a Retry button inside a reply that
    failed or was cut off, where its error is shown."""

    def part(message: Message) -> None:
        if message.role == "assistant" and chat.needs_retry(message):
            st.button(
                "Retry",
                icon=":material/replay:",
                key=f"parley.w.retry.{message.id}",
                type="primary",
                on_click=retry_turn,
                args=(store, cid, message.id),
            )

    return part


def retry_turn(store: ConversationStore, cid: str, message_id: int) -> None:
    """Answer a failed or cut-off reply's question again. The path is rewound here, in
    the click's callback, so the run that streams the new reply no longer draws the
    failed one above it (a failed reply at the path's end is dropped, an earlier one
    kept as a version)."""
    last = store.recent_messages(cid, 1)
    at_end = bool(last) and last[0].id == message_id
    try:
        question = chat.rewind(store, cid, None if at_end else message_id)
    except ParleyError as exc:
        flash("error", str(exc))
        return
    start(answer, cid, question)


def answer(ctx: chat.ChatContext, cid: str, question: int) -> chat.Reply:
    """A pending action (`start`): the reply to message `question`, after it."""
    return chat.Reply(ctx, ctx.store.get(cid), after=question)


def run_pending(
    ctx: chat.ChatContext, current: Settings | None = None, slot: Slot | None = None
) -> None:
    try:
        reply = take_pending(ctx)
        if reply is None:
            return
        if current is not None:  # a conversation with documents attached answers from them
            reply = attachments_view.answer(ctx, current, reply)
    except ParleyError as exc:
        st.error(escape(str(exc)))
        return
    with slot.turn if slot else st.container():
        stream(reply, slot)


def last_actions(ctx: chat.ChatContext, conv: Conversation, shown: list[Message]) -> None:
    """Regenerate (or Retry) and reset, under the transcript; each message has its own
    edit and regenerate (`lib.ui.message_actions`)."""
    if not shown:
        return
    last = shown[-1]
    # One row of short labels, at every width: columns stacked into four full-width rows on
    # a phone (half of a 390 x 844 screen), and cut longer labels short at 1280 px.
    row = st.container(horizontal=True, gap="xsmall", key="parley-actions")
    retry = chat.needs_retry(last)
    # A failed or cut-off reply has its Retry in its bubble, by the error (`retry_in_place`).
    if not (retry and last.role == "assistant"):
        row.button(
            "Retry" if retry else "Regenerate",
            disabled=chat.is_record(last),
            help="The last message is an illustration." if chat.is_record(last) else None,
            icon=":material/replay:" if retry else ":material/refresh:",
            key="parley.w.regen",
            # Rewound in the click's callback (`retry_turn`), so the run that streams the
            # new reply draws the path up to the question, not the old reply above it.
            on_click=retry_turn,
            args=(ctx.store, conv.id, last.id),
            type="primary" if retry else "tertiary",
        )
    with row.popover("Reset", icon=":material/restart_alt:", type="tertiary"):
        st.write("Clear every message in this conversation? Its settings are kept.")
        if st.button("Clear messages", key="parley.w.reset", type="primary"):
            ctx.store.clear_messages(conv.id)
            flash("info", "Conversation reset.")
            st.rerun()
