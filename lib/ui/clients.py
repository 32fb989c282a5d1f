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
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import openai
import streamlit as st

from lib import chat
from lib.client import build_client
from lib.conversations import ConversationStore
from lib.errors import ConfigError, DatabaseCorrupt, DatabaseUnavailable
from lib.models import choose_models
from lib.preferences import Preferences
from lib.pricing import PriceTable
from lib.server import capabilities as server_capabilities
from lib.server import probe, tokenizer, window
from lib.server import status as server_status
from lib.settings import Settings, resolve_settings
from lib.store.backend import Backend, backend_for
from lib.ui import state

MODELS_TTL = 300  # seconds a server's model list is reused within a session
T = TypeVar("T")


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
    """This session's conversations: its workspace, on this process's backend."""
    return ConversationStore(backend(current), state.workspace())


def backend(current: Settings) -> Backend:
    """The storage backend every store of this page is opened on (one per process).

    If the database cannot be used (a damaged parley.db, a PostgreSQL server that does
    not answer), say so, naming it and how to recover, and stop the page.
    """
    try:
        chosen = backend_for(current)
        chosen.check()
    except (DatabaseCorrupt, DatabaseUnavailable, ConfigError) as exc:
        hint = f" {exc.hint}" if getattr(exc, "hint", "") else ""
        st.error(f"**Parley cannot open its database.** {exc}{hint}", icon=":material/database:")
        st.stop()
    return chosen


@st.cache_data(show_spinner=False, ttl=10)
def _prices(data_dir: str) -> PriceTable:
    # The price table is server-wide configuration, not user data: safe to share.
    return PriceTable.load(Path(data_dir))


def prices(current: Settings) -> PriceTable:
    return _prices(str(current.data_dir))


def connection_status(current: Settings, api: openai.OpenAI) -> server_status.Status:
    """Whether the server answers, how many models it lists and whether it took the key
    (`lib.server.status`). An answer with a model list is kept for MODELS_TTL; a failure
    is asked again on the next run, so a server that comes back is seen at once (a kept
    failure held the SDK's fallback model list for 5 minutes). When the server answers
    after a failure, what this session learnt of it while it was down (no flavour, an
    estimated counter, an unknown window) is forgotten and asked again."""
    cache_key = f"status:{current.base_url}"
    cached = state.get(cache_key)
    if cached and cached[1] is api and time.monotonic() - cached[0] < MODELS_TTL:
        return cached[2]
    found = server_status.check(api)
    if found.ok:
        if cached and not cached[2].ok:
            forget_server(current)
        state.put(cache_key, (time.monotonic(), api, found))
    else:
        state.put(cache_key, (float("-inf"), api, found))  # shown, but asked again next run
    return found


def forget_status(base_url: str | None) -> None:
    """After a request found the server down or refusing the key: look again next run."""
    state.pop(f"status:{base_url}")


def forget_server(current: Settings) -> None:
    """Drop what this session asked of the server at `current.base_url` (its status,
    flavour, capabilities, windows and counters), so the next run asks again. What an
    overflow error taught (`learn_context_window`) is kept: it came from a real refusal."""
    url = current.base_url
    kinds = ("status", "server", "capabilities", "window", "counter")
    for key in [k for k in st.session_state if isinstance(k, str)]:
        name = key.removeprefix(state.PREFIX)
        if key.startswith(state.PREFIX) and any(
            name == f"{kind}:{url}" or name.startswith(f"{kind}:{url}:") for kind in kinds
        ):
            del st.session_state[key]


def server_models(current: Settings, api: openai.OpenAI) -> list[str] | None:
    """Every model the server lists (/v1/models), as `connection_status` last saw them;
    None if it can't say."""
    listed = connection_status(current, api).models
    return list(listed) if listed is not None else None


def models(current: Settings, api: openai.OpenAI) -> tuple[list[str], str | None]:
    """Chat models to offer, the one new chats start with first: the user's last choice
    for this server, else the configured default, else one the server has (with a note)."""
    last = preferences(current).get(current.base_url).model
    return choose_models(server_models(current, api), current.chat_model, last)


def preferences(current: Settings) -> Preferences:
    """The model and system prompt this session's user last chose for each server."""
    return Preferences(backend(current), state.workspace())


def _per_session(cache_key: str, compute: Callable[[], T]) -> T:
    # Like the model list: per session (what a visitor's key found stays theirs), per
    # base URL, reused for MODELS_TTL so a restarted server is seen again.
    cached = state.get(cache_key)
    if cached and time.monotonic() - cached[0] < MODELS_TTL:
        return cached[1]
    value = compute()
    state.put(cache_key, (time.monotonic(), value))
    return value


def server(current: Settings, api: openai.OpenAI) -> probe.Server:
    """Which server software answers at the base URL, and what it said of itself."""
    return _per_session(f"server:{current.base_url}", lambda: probe.identify(api, current.provider))


def capabilities(
    current: Settings, api: openai.OpenAI, model: str | None = None
) -> server_capabilities.Capabilities:
    """What the server can do, and what `model` (default: the configured one) accepts."""
    model = model or current.chat_model
    return _per_session(
        f"capabilities:{current.base_url}:{model}",
        lambda: server_capabilities.capabilities(
            api, server(current, api), model, current.embedding_model
        ),
    )


def context_window(current: Settings, api: openai.OpenAI, model: str) -> window.ContextWindow:
    """`model`'s context window on this server, or what an overflow error taught."""
    learnt = state.get(f"window.learnt:{current.base_url}:{model}")
    if learnt is not None:
        return learnt
    return _per_session(
        f"window:{current.base_url}:{model}",
        lambda: window.context_window(api, server(current, api), model),
    )


def learn_context_window(
    current: Settings, model: str, learned: window.ContextWindow | None, scale: float = 1.0
) -> None:
    """Remember for the session what an overflow error taught: the window it stated
    (`window.context_window_from_error`; a server may say it only when refusing a
    request) and the server's tokens per token Parley counted (`lib.prompt.Fit`)."""
    if learned is not None:
        state.put(f"window.learnt:{current.base_url}:{model}", learned)
    state.put(f"window.scale:{current.base_url}:{model}", scale)


def token_scale(current: Settings, model: str) -> float:
    """The server's tokens per token Parley counts, as the last overflow showed; 1 before."""
    return state.get(f"window.scale:{current.base_url}:{model}") or 1.0


def token_counter(current: Settings, api: openai.OpenAI, model: str) -> tokenizer.TokenCounter:
    """The most honest token counter for `model` here: the server's tokenizer if it has
    one, else tiktoken (exact only for OpenAI's models on OpenAI or Azure)."""
    cache_key = f"counter:{current.base_url}:{model}"
    cached = state.get(cache_key)
    # Held with its client: a new key (a new client) gets a new counter.
    if cached and cached[1] is api and time.monotonic() - cached[0] < MODELS_TTL:
        return cached[2]
    counter = tokenizer.counter_for_server(api, server(current, api), model)
    state.put(cache_key, (time.monotonic(), api, counter))
    return counter


class SessionFacts:
    """`lib.server.facts.ServerFacts` for this session: the accessors above, so a
    reply asks the server nothing that this session already asked."""

    def __init__(self, current: Settings, api: openai.OpenAI) -> None:
        self.current, self.api = current, api

    def counter(self, model: str) -> tokenizer.TokenCounter:
        return token_counter(self.current, self.api, model)

    def window(self, model: str) -> window.ContextWindow:
        return context_window(self.current, self.api, model)

    def learn_window(self, model: str, learnt: window.ContextWindow | None, scale: float) -> None:
        learn_context_window(self.current, model, learnt, scale)

    def scale(self, model: str) -> float:
        return token_scale(self.current, model)

    def prefetch(self, model: str) -> None:
        """Ask now what a reply will ask, so that no probe runs between the user's
        question and the first token (the answers are kept for the session)."""
        self.counter(model)
        self.window(model)


def chat_context(current: Settings, api: openai.OpenAI) -> chat.ChatContext:
    """What a reply needs on this session's server: the store, prices for this server,
    and its token counter and context window (`SessionFacts`)."""
    return chat.ChatContext(
        store(current),
        api,
        prices(current),
        current.provider,
        current.max_reply_chars,
        base_url=current.base_url,
        server=SessionFacts(current, api),
        accepts_images=lambda model: capabilities(current, api, model).vision,
    )


def offered(current: Settings) -> str | None:
    """What this session found the server offers, in a few words; None before any page
    asked (never probes: the Connection panel is drawn before there is a client)."""
    found = state.get(f"server:{current.base_url}")
    caps = state.get(f"capabilities:{current.base_url}:{current.chat_model}")
    if not found or found[1].flavour in probe.KNOWN_PROVIDERS:
        return None
    words = [found[1].flavour if found[1].flavour != "unknown" else "An OpenAI-compatible server"]
    if caps:
        names = {"chat": "chat", "embeddings": "embeddings", "images": "image generation"}
        has = [label for name, label in names.items() if caps[1].as_dict()[name]]
        lacks = [label for name, label in names.items() if caps[1].as_dict()[name] is False]
        words += [f"offers {', '.join(has)}"] if has else []
        words += [f"no {', '.join(lacks)}"] if lacks else []
    return " · ".join(words)
