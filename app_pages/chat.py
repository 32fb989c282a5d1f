"""Chat: multi-turn, streaming chat with any OpenAI-compatible server."""

import streamlit as st

from lib.errors import MissingKeyError
from lib.markup import escape
from lib.ui import (
    attachments_view,
    auth,
    chat_view,
    clients,
    documents_chat,
    illustrate,
    message_actions,
    sidebar,
    transcript,
    turn_slot,
)
from lib.ui.chat_header import suggestions, top_bar

auth.guard()
current = sidebar.connection()
store = clients.store(current)
sidebar.conversations(store)
conv = chat_view.open_conversation(store)  # renamed, pinned, exported, deleted by its menu

# Chats, the model picker, New chat: in view on a phone; the cursor goes to the chat box.
model_slot = top_bar(store, conv.id if conv else None)
st.title(escape(conv.title) if conv else "New chat")
chat_view.show_flash()
if conv:  # Retry and the edit form in a bubble; copy, edit, regenerate, time under it
    actions, tools = message_actions.for_chat(store, conv.id)
shown = (
    transcript.render_window(
        store,
        conv.id,
        extra=attachments_view.in_transcript(current, store, documents_chat.sources_panel),
        display=documents_chat.with_locations,  # cited attachments: "[1 · manual.pdf p. 3]"
        actions=actions,
        tools=tools,
    )
    if conv
    else []
)
slot = turn_slot.Slot(len(shown))  # the next turn streams here, above the controls

try:
    api = clients.client(current)
except MissingKeyError as exc:
    st.info(f"**Add an API key to start chatting.** {exc.hint}", icon=":material/key:")
    st.stop()

ctx = clients.chat_context(current, api)
models, note = clients.models(current, api)
settings_of = conv or chat_view.draft(current, models)
chat_view.parameters(store, settings_of, models, note, current, model_slot)
if conv is None:
    suggestions()
ctx.server.prefetch(settings_of.model)
if conv:
    with slot.controls():
        chat_view.last_actions(ctx, conv, shown)
        illustrate.action(ctx, conv, current)
        last_reply = next((m for m in reversed(shown) if m.role == "assistant"), None)
        totals = store.totals(conv.id)
        transcript.gauge(last_reply, totals, current.provider, current.base_url)
    chat_view.run_pending(ctx, current, slot)

chat_view.message_box(ctx, conv, current, models, slot)
