"""Settings, the OpenAI client, the store and the price table, as the pages get them.

The client cache follows one rule: a client built from the server's own key (secrets or
environment) is shared across sessions with `st.cache_resource`; a client built from a
key typed into the sidebar is kept in that session's state only, so it never reaches
another session, and the key itself never goes to `os.environ`, disk, logs or a URL.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import openai
import streamlit as st

from lib import db
from lib.client import build_client
from lib.conversations import ConversationStore
from lib.errors import DatabaseCorrupt, ParleyError
from lib.models import choose_models, list_server_models
from lib.pricing import PriceTable
from lib.settings import Settings, resolve_settings
from lib.ui import state

MODELS_TTL = 300  # seconds a server's model list is reused within a session


def secrets() -> dict:
    try:
        return dict(st.secrets)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}


def settings() -> Settings:
    """The operator's settings (secrets, then the environment), with this session's own
    Connection-panel choices applied where the operator's policy allows them."""
    visitor = {
        "provider": state.get("provider"),
        "base_url": state.get("base_url"),
        "api_key": state.get("api_key"),
    }
    return resolve_settings(None, secrets(), os.environ, visitor=visitor)


@st.cache_resource(show_spinner=False, max_entries=16)
def _shared_client(base_url: str | None, key_digest: str, _settings: Settings) -> openai.OpenAI:
    # Keyed by URL and a digest of the server's key: the key itself is not a cache key.
    return build_client(_settings)


def client(current: Settings) -> openai.OpenAI:
    """The client for these settings; raises MissingKeyError when a key is required."""
    key = current.require_key()
    trust = "trusted" if current.server_trusted else "guarded"
    digest = hashlib.sha256(f"{current.base_url}|{key}|{trust}".encode()).hexdigest()
    if current.key_is_shared:
        return _shared_client(current.base_url, digest, current)
    cached = state.get("client")
    if cached is None or cached[0] != digest:
        cached = (digest, build_client(current))
        state.put("client", cached)
    return cached[1]


def store(current: Settings) -> ConversationStore:
    require_database(current)
    return ConversationStore(current.data_dir / "parley.db")


def require_database(current: Settings) -> None:
    """Open parley.db; if it is damaged, say which file and how to recover, and stop."""
    try:
        db.check(current.data_dir / "parley.db")
    except DatabaseCorrupt as exc:
        st.error(f"**Parley cannot open its database.** {exc}", icon=":material/database:")
        st.stop()


@st.cache_data(show_spinner=False, ttl=10)
def _prices(data_dir: str) -> PriceTable:
    # The price table is server-wide configuration, not user data: safe to share.
    return PriceTable.load(Path(data_dir))


def prices(current: Settings) -> PriceTable:
    return _prices(str(current.data_dir))


def server_models(current: Settings, api: openai.OpenAI) -> list[str] | None:
    """Every model the server lists (/v1/models), cached per session; None if it can't say."""
    cache_key = f"models:{current.base_url}"
    cached = state.get(cache_key)
    if cached and time.monotonic() - cached[0] < MODELS_TTL:
        return cached[1]
    try:
        names = list_server_models(api)
    except ParleyError:
        names = None
    state.put(cache_key, (time.monotonic(), names))
    return names


def models(current: Settings, api: openai.OpenAI) -> tuple[list[str], str | None]:
    """Chat models to offer, from the server's list or, failing that, the SDK's."""
    return choose_models(server_models(current, api), current.chat_model)
