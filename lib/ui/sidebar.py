"""The shared sidebar: connection settings and the conversation list."""

from __future__ import annotations

import streamlit as st

from lib.conversations import ConversationStore
from lib.errors import ConfigError, ParleyError
from lib.markup import escape
from lib.providers import PROVIDERS
from lib.server import status as server_status
from lib.settings import SOURCE_LABELS, Settings
from lib.ui import clients, conversation_list, state


def connection() -> Settings:
    """Provider, base URL and key widgets, as far as the operator allows; the settings."""
    try:
        current = clients.settings()
    except ConfigError as exc:
        st.error(f"**This app is misconfigured.** {exc}", icon=":material/settings:")
        st.stop()
    policy = current.policy
    found = _status(current)
    down = found is not None and not found.ok
    icon = ":material/cloud_off:" if down else ":material/hub:"
    with st.sidebar.expander("Connection", expanded=down, icon=icon):
        if policy.allow_custom_server:
            _server_choice(current)
        else:
            st.markdown(f"**Server:** {PROVIDERS[current.provider].label}")
            st.caption("Set by this app's operator, who has not enabled choosing another server.")
        if found is not None:
            _status_line(current, found)
        if offers := clients.offered(current):
            st.caption(escape(offers))
        if policy.allow_visitor_key or not current.api_key:
            _key_box()
        st.caption(_key_caption(current))
        if policy.notice:
            st.warning(policy.notice, icon=":material/block:")
    return current


def _status(current: Settings) -> server_status.Status | None:
    """The server's status for these settings; None without a key (nothing is asked)."""
    try:
        api = clients.client(current)
    except ParleyError:
        return None
    return clients.connection_status(current, api)


def _status_line(current: Settings, found: server_status.Status) -> None:
    """Whether the server answers, its model count and the key's fate, with Test (which
    asks again now and forgets what was learnt of the server)."""
    icon = ":material/check_circle:" if found.ok else ":material/error:"
    st.caption(f"{icon} {escape(found.summary())}")
    st.button(
        "Test connection",
        key="parley.w.test_connection",
        icon=":material/network_check:",
        help="Ask the server again now.",
        on_click=clients.forget_server,
        args=(current,),
        type="tertiary",
    )


def _server_choice(current: Settings) -> None:
    ids = list(PROVIDERS)
    provider = st.selectbox(
        "Provider",
        ids,
        index=ids.index(current.provider),
        format_func=lambda p: PROVIDERS[p].label,
        key="parley.w.provider",
    )
    if provider != current.provider:
        state.put("provider", provider)
        state.put("base_url", PROVIDERS[provider].base_url or current.base_url)
        st.rerun()
    st.caption(PROVIDERS[provider].help)
    base_url = st.text_input("Base URL", value=current.base_url or "", key="parley.w.url")
    if base_url.strip() != (current.base_url or ""):
        state.put("base_url", base_url.strip())
        st.rerun()


def _key_box() -> None:
    typed = st.text_input(
        "API key",
        type="password",
        key="parley.w.key",
        placeholder="kept in this browser session only",
        help="Never stored, logged or shared with other sessions.",
        # Every page draws this box; without this a page switch would reset it to empty
        # and so forget the key. The value stays in this session's state only.
        persist_state="session",
    )
    if typed != (state.get("api_key") or ""):
        state.put("api_key", typed.strip() or None)
        state.pop("client")
        st.rerun()


def _key_caption(current: Settings) -> str:
    """Whose key is used, and where it goes, in plain words."""
    if current.key_source in ("secrets", "env"):
        where = "only ever sent to this server"
        return f"Key: the operator's ({SOURCE_LABELS[current.key_source]}), {where}."
    if current.key_source == "sidebar":
        return "Key: yours, typed in this session; sent only to the server above."
    if current.policy.hosted and not current.server_trusted:
        return "Key: none. The operator's key is never sent to a server you choose."
    return "Key: none."


def conversations(store: ConversationStore, kind: str = "chat", label: str = "chat") -> None:
    """New, search, and this workspace's conversations by date (`conversation_list`)."""
    with st.sidebar:
        conversation_list.show(store, kind, label)
        conversation_list.close_drawer_on_choice()
    conversation_list.dialogs(store, kind)
