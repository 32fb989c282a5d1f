"""The top of the Chat and Documents pages: Chats, the model picker and New chat in one row,
and on a new chat a few suggestions to start from. The cursor starts in the chat box
(`focus_input`).

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


def top_bar(
    store: ConversationStore, cid: str | None = None, kind: str = "chat", label: str = "chat"
) -> DeltaGenerator:
    """The row for the open conversation `cid` (None: a new one) of this `kind` (each page
    lists and starts its own, named `label`), which also puts the cursor in the chat box
    (`focus_input`); returns the place the model picker goes."""
    row = st.container(
        horizontal=True, vertical_alignment="center", gap="xsmall", key="parley-top-bar"
    )
    with row.popover(
        "",
        icon=":material/menu:",
        help=f"{label.capitalize()}s",
        key=CHATS,
        on_change="rerun",  # tracked, so choosing a chat can close it
        type="tertiary",
    ) as chats:
        if chats.open:  # the list is drawn only while it is open
            conversation_list.show(store, kind, label, where="top", popover_key=CHATS, menus=False)
    slot = row.container(width=260)
    row.button(
        "",
        icon=":material/edit_square:",
        help=f"New {label}",
        key="parley.w.top.new",
        type="tertiary",
        on_click=conversation_list.choose,
        args=(None, kind),
    )
    with row:  # no height: in the row it takes no line of the page, as it would under it
        focus_input(cid)
    return slot


# Puts the cursor in the chat box when a chat opens, as ChatGPT does: once per mount, and
# a new conversation (or a new chat) mounts a new one (`focus_input`'s key). Never while the
# user types somewhere else (a text field of the sidebar, the system prompt), and never on
# a touch screen, where a focused box opens a keyboard over half the page. The box comes a
# moment after this component, so it waits for it (for at most 30 s).
_FOCUS_JS = """
export default function () {
  const box = () => document.querySelector('[data-testid="stChatInputTextArea"]');
  const typing = (el) => el && el !== document.body && el !== box()
    && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  if (window.matchMedia("(hover: none) and (pointer: coarse)").matches) return;
  const focus = () => {
    const target = box();
    if (!target) return false;
    if (!typing(document.activeElement)) target.focus({ preventScroll: true });
    return true;
  };
  if (focus()) return;
  const watch = new MutationObserver(() => { if (focus()) stop(); });
  const timer = setTimeout(() => stop(), 30000);
  const stop = () => { watch.disconnect(); clearTimeout(timer); };
  watch.observe(document.body, { childList: true, subtree: true });
  return stop;
}
"""
# No markup, no CSS and no data: nothing from a conversation goes into it (see SECURITY.md).
_focus = st.components.v2.component("parley_focus_chat_input", js=_FOCUS_JS)


def focus_input(cid: str | None) -> None:
    """The chat box gets the cursor on a new chat and on each conversation chosen."""
    _focus(key=f"parley-focus-{cid or 'new'}", width="content", height="content")


def suggestions() -> None:
    """Starters for an empty chat: each fills the message box with its beginning."""
    row = st.container(horizontal=True, gap="xsmall", key="parley-suggestions")
    for i, (label, text) in enumerate(SUGGESTIONS.items()):
        row.button(label, key=f"parley.w.suggest.{i}", on_click=_fill, args=(text,))


def _fill(text: str) -> None:
    st.session_state[INPUT_KEY] = text
