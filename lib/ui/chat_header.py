"""The top of the Chat page: Chats, the model picker and New chat in one row, and on a new
chat a few suggestions to start from.

The row is what a phone sees without opening the drawer (390 px wide: three controls on one
line). Chats is a popover holding the conversation list, because a choice there closes it,
which Streamlit's sidebar does not do on a phone (see `conversation_list`); the item menus
stay in the sidebar. The model picker is the conversation's own (`chat_view.parameters`
draws it into `top_bar()`'s slot); a new chat starts with the model and system prompt last
chosen on this server.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from lib.conversations import ConversationStore
from lib.ui import conversation_list
from lib.ui.chat_view import INPUT_KEY

CHATS = "parley.w.top.chats"  # the popover's open state (closed when a chat is chosen)
# Starters that leave the user's own part to type: a suggestion fills the box, never sends.
SUGGESTIONS = {
    ":material/summarize: Summarise a text": "Summarise this text in three bullet points:\n\n",
    ":material/code: Explain some code": "Explain what this code does, step by step:\n\n",
    ":material/mail: Draft an email": "Draft a short, friendly email that ",
    ":material/lightbulb: Brainstorm ideas": "Give me ten ideas for ",
}


def top_bar(store: ConversationStore) -> DeltaGenerator:
    """The row; returns the place the model picker goes."""
    row = st.container(
        horizontal=True, vertical_alignment="center", gap="xsmall", key="parley-top-bar"
    )
    with row.popover(
        "",
        icon=":material/menu:",
        help="Chats",
        key=CHATS,
        on_change="rerun",  # tracked, so choosing a chat can close it
        type="tertiary",
    ) as chats:
        if chats.open:  # the list is drawn only while it is open
            conversation_list.show(
                store, "chat", "chat", where="top", popover_key=CHATS, menus=False
            )
    slot = row.container(width=260)
    row.button(
        "",
        icon=":material/edit_square:",
        help="New chat",
        key="parley.w.top.new",
        type="tertiary",
        on_click=conversation_list.choose,
        args=(None, "chat"),
    )
    return slot


def suggestions() -> None:
    """Starters for an empty chat: each fills the message box with its beginning."""
    row = st.container(horizontal=True, gap="xsmall", key="parley-suggestions")
    for i, (label, text) in enumerate(SUGGESTIONS.items()):
        row.button(label, key=f"parley.w.suggest.{i}", on_click=_fill, args=(text,))


def _fill(text: str) -> None:
    st.session_state[INPUT_KEY] = text
