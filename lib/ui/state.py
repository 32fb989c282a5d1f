"""Session-state accessors: ids and UI flags only, under namespaced keys.

Durable data (conversations, messages) lives in storage; the session keeps which
conversation is open (mirrored in the URL's `?c=` so a refresh returns to it), how
much of the transcript is shown, and the user's own settings such as a typed API key.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

PREFIX = "parley."
DEFAULT_WINDOW = 20  # messages rendered before "show earlier": ten rounds


def get(name: str, default: Any = None) -> Any:
    return st.session_state.get(PREFIX + name, default)


def put(name: str, value: Any) -> None:
    st.session_state[PREFIX + name] = value


def pop(name: str) -> Any:
    return st.session_state.pop(PREFIX + name, None)


def workspace() -> str:
    """Whose data this session reads and writes: "local", "shared" or the signed-in user's.

    Derived from how the session was admitted (lib.ui.auth), afresh for every script run,
    so nothing stale survives a sign-out; raises AccessDenied before the gate.
    """
    from lib.ui import auth  # auth builds on the accessors here, so import it lazily

    return auth.workspace()


def _conversation_key(kind: str) -> str:
    # Each kind (the Chat page's, the Documents page's) keeps its own open conversation,
    # so switching pages never shows a document conversation as a chat, or the reverse.
    return "conversation_id" if kind == "chat" else f"conversation_id.{kind}"


def conversation_id(kind: str = "chat") -> str | None:
    """The page's open conversation, and the URL made to name it.

    The URL's `?c=` wins when it has one (a pasted link, Back and Forward); else the one
    this session last opened on this kind of page, written back into the URL. Switching
    pages clears Streamlit's query string, so without that write-back `/?c=…` became `/`
    after a visit to another page, and a reload opened a blank new chat.
    """
    key = _conversation_key(kind)
    cid = st.query_params.get("c") or get(key)
    if cid != get(key):
        put(key, cid)
        put("window", DEFAULT_WINDOW)
    if cid and st.query_params.get("c") != cid:
        st.query_params["c"] = cid
    return cid


def open_conversation(cid: str | None, kind: str = "chat") -> None:
    put(_conversation_key(kind), cid)
    put("window", DEFAULT_WINDOW)
    if cid:
        st.query_params["c"] = cid
    else:
        st.query_params.pop("c", None)


def transcript_window() -> int:
    return get("window") or DEFAULT_WINDOW


def show_more(count: int = 50) -> None:
    put("window", transcript_window() + count)
