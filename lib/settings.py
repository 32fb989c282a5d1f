"""One resolver for Parley's settings: an explicit value, then secrets, then the environment.

`resolve_settings` never reads Streamlit itself: the UI passes `st.secrets` (or `{}`) and
`os.environ` in, which keeps this testable and usable from the command line. API keys are
carried in `Settings` but never printed (`repr=False`) and never written anywhere.

Two kinds of value meet here. *Operator* values come from explicit arguments (the
terminal chat's flags: whoever runs it owns the machine), secrets and the environment.
*Visitor* values are what a browser session typed into the sidebar's Connection panel:
a provider, a base URL, a key. A visitor's value is applied only as the operator's
`ConnectionPolicy` allows, and the operator's key is bound to the operator's server: it is
never sent to a server a visitor chose (see `_connection`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import ConfigError, MissingKeyError
from lib.providers import PLACEHOLDER_KEY, PROVIDERS, guess_provider

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_REPLY_CHARS = 1_000_000  # far above any real reply (a long one is ~20k)

# Names shared by st.secrets (top level) and the environment.
KEYS = {
    "api_key": "OPENAI_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "provider": "PARLEY_PROVIDER",
    "chat_model": "PARLEY_CHAT_MODEL",
    "embedding_model": "PARLEY_EMBEDDING_MODEL",
    "image_model": "PARLEY_IMAGE_MODEL",
    "data_dir": "PARLEY_DATA_DIR",
    "database_url": "PARLEY_DATABASE_URL",
    "blob_store": "PARLEY_BLOB_STORE",
    "timeout": "PARLEY_TIMEOUT",
    "max_reply_chars": "PARLEY_MAX_REPLY_CHARS",
    "allow_custom_server": "PARLEY_ALLOW_CUSTOM_SERVER",
    "allow_visitor_key": "PARLEY_ALLOW_VISITOR_KEY",
    "outbound_allow": "PARLEY_OUTBOUND_ALLOW",
    "trusted_proxies": "PARLEY_TRUSTED_PROXIES",
    "workspace": "PARLEY_WORKSPACE",
    "ocr": "PARLEY_OCR",
    "embed_window": "PARLEY_EMBED_WINDOW",
    "rerank_model": "PARLEY_RERANK_MODEL",
    "app_password": "APP_PASSWORD",
}
# What a visitor may type into the Connection panel; nothing else is read from them.
VISITOR_KEYS = ("provider", "base_url", "api_key")
SOURCE_LABELS = {
    "explicit": "given on the command line",
    "sidebar": "typed in this session",
    "secrets": "from secrets",
    "env": "from the environment",
}


@dataclass(frozen=True)
class ConnectionPolicy:
    """What the operator lets a visitor change in the Connection panel, and why."""

    hosted: bool  # the server holds a key, or an access gate is on
    allow_custom_server: bool  # visitors may point Parley at a server of their choosing
    allow_visitor_key: bool  # visitors may use their own key on the operator's server
    notice: str = ""  # why a visitor's choice was not applied, in plain words


@dataclass(frozen=True)
class Settings:
    provider: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    key_source: str | None  # "explicit", "sidebar", "secrets", "env" or None
    chat_model: str
    embedding_model: str
    image_model: str
    data_dir: Path
    # None: SQLite in the data directory; a postgresql:// URL (it may hold a password).
    database_url: str | None = field(default=None, repr=False)
    blob_store: str | None = None  # "local" or "database"; None picks by the backend
    timeout: float = DEFAULT_TIMEOUT
    max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS
    # False when a visitor chose this server in a hosted deployment: every connection to
    # it then goes through lib.outbound's guard (no internal addresses).
    server_trusted: bool = True
    outbound_allow: tuple[str, ...] = ()  # hosts or networks the operator lets through
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For is believed
    ocr: bool = True  # scanned pages and images are OCR'd where tesseract is installed
    # Tokens the embedding model reads at once, when the server does not say (None: ask
    # it; lib/documents/windows.py), and the server's reranking model (lib/documents/rerank.py).
    embed_window: int | None = None
    rerank_model: str | None = None
    policy: ConnectionPolicy = field(
        default_factory=lambda: ConnectionPolicy(False, True, True), compare=False
    )

    @property
    def needs_key(self) -> bool:
        return PROVIDERS[self.provider].needs_key

    @property
    def key_is_shared(self) -> bool:
        """True when the key is the server's own, so a client built from it may be shared."""
        return self.key_source in ("secrets", "env", "explicit", None)

    def require_key(self) -> str:
        """The key to send: the configured one, a placeholder for keyless local servers."""
        if self.api_key:
            return self.api_key
        if self.needs_key:
            raise MissingKeyError(f"No API key is set for {PROVIDERS[self.provider].label}.")
        return PLACEHOLDER_KEY


def resolve(
    name: str,
    explicit: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, str | None]:
    """Return (value, source) for one setting; empty strings count as unset."""
    key = KEYS[name]
    for source, mapping, lookup in (
        ("explicit", explicit, name),
        ("secrets", secrets, key),
        ("env", environ, key),
    ):
        if mapping is None:
            continue
        value = safe_get(mapping, lookup)
        if value not in (None, ""):
            return value, source
    return None, None


def safe_get(mapping: Mapping[str, Any] | None, key: str) -> Any:
    """`mapping.get(key)`, with st.secrets' "no secrets.toml" counted as absent."""
    if mapping is None:
        return None
    try:
        return mapping.get(key)
    except (FileNotFoundError, KeyError, AttributeError):
        return None


# Typed readers: a malformed value is a ConfigError that says which setting and how to fix.


def _number(name: str, raw: Any, default: float, cast: Callable[[Any], float]) -> Any:
    if raw is None:
        return default
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or value <= 0:
        raise ConfigError(f"{KEYS[name]} must be a positive number, not {str(raw)[:40]!r}.")
    return value


def _flag(name: str, raw: Any, default: bool) -> bool:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{KEYS[name]} must be true or false, not {str(raw)[:40]!r}.")


def _list(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _networks(name: str, raw: Any) -> tuple[str, ...]:
    items = _list(raw)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"{KEYS[name]} lists {item[:40]!r}, which is not an IP address or network "
                "(such as 10.0.0.5 or 10.0.0.0/8)."
            ) from exc
    return items


def _int(raw: Any) -> int:
    # int("1e6") fails, and int(2.5) would quietly round: accept whole numbers only.
    value = float(raw)
    if not value.is_integer():
        raise ValueError(raw)
    return int(value)


def app_password(
    secrets: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """APP_PASSWORD from secrets, else the environment; an empty value means none."""
    environ = os.environ if environ is None else environ
    value = resolve("app_password", None, secrets, environ)[0]
    return None if value is None else str(value)


def auth_section(secrets: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ``[auth]`` section of secrets (Streamlit's OIDC sign-in), if it is non-empty."""
    section = safe_get(secrets, "auth")
    return section if isinstance(section, Mapping) and section else None


def gate_configured(secrets: Mapping[str, Any] | None, environ: Mapping[str, str]) -> bool:
    return auth_section(secrets) is not None or app_password(secrets, environ) is not None


def trusted_proxies(
    secrets: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """PARLEY_TRUSTED_PROXIES: the proxies whose X-Forwarded-For header is believed."""
    environ = os.environ if environ is None else environ
    return _networks("trusted_proxies", resolve("trusted_proxies", None, secrets, environ)[0])


def workspace_name(
    explicit: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """PARLEY_WORKSPACE: which workspace the terminal chat uses (the web app derives it)."""
    environ = os.environ if environ is None else environ
    value = resolve("workspace", explicit, secrets, environ)[0]
    return None if value is None else str(value)


def resolve_settings(
    explicit: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    visitor: Mapping[str, Any] | None = None,
) -> Settings:
    """Every setting, resolved; raises ConfigError for a malformed value.

    `explicit` values are the operator's (command-line flags, tests); `visitor` values
    come from a browser session's Connection panel and obey the operator's policy.
    """
    environ = os.environ if environ is None else environ

    def get(name: str) -> Any:
        return resolve(name, explicit, secrets, environ)[0]

    connection = _connection(explicit, secrets, environ, visitor or {})
    provider = PROVIDERS[connection["provider"]]
    timeout = _number("timeout", get("timeout"), DEFAULT_TIMEOUT, float)
    max_reply = _number("max_reply_chars", get("max_reply_chars"), DEFAULT_MAX_REPLY_CHARS, _int)
    outbound = _list(get("outbound_allow"))
    if outbound:
        from lib.outbound import Allow  # its HTTP stack loads only when there is a list

        Allow.parse(outbound)  # a malformed entry fails now, not at the first connection
    return Settings(
        **connection,
        chat_model=get("chat_model") or provider.chat_model or "gpt-5.4-mini",
        embedding_model=get("embedding_model")
        or provider.embedding_model
        or "text-embedding-3-small",
        image_model=get("image_model") or provider.image_model or "gpt-image-2",
        data_dir=Path(get("data_dir") or DEFAULT_DATA_DIR).expanduser(),
        database_url=get("database_url") or None,
        blob_store=get("blob_store") or None,
        timeout=timeout,
        max_reply_chars=max_reply,
        outbound_allow=outbound,
        trusted_proxies=trusted_proxies(secrets, environ),
        ocr=_flag("ocr", get("ocr"), True),
        embed_window=_number("embed_window", get("embed_window"), None, _int),
        rerank_model=get("rerank_model") or None,
    )


def _server(provider_id: Any, base_url: Any) -> tuple[str, str | None]:
    """(provider, base URL) from what was given, either of which may be missing."""
    provider_id = provider_id or guess_provider(base_url)
    if provider_id not in PROVIDERS:
        provider_id = "custom"
    url = base_url or PROVIDERS[provider_id].base_url or None
    return provider_id, str(url).rstrip("/") if url else None


def _connection(
    explicit: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    visitor: Mapping[str, Any],
) -> dict[str, Any]:
    """Provider, base URL, key and policy: the operator's, with a visitor's where allowed."""
    provider_id, base_url = _server(
        resolve("provider", explicit, secrets, environ)[0],
        resolve("base_url", explicit, secrets, environ)[0],
    )
    api_key, key_source = resolve("api_key", explicit, secrets, environ)
    hosted = (api_key is not None and key_source != "explicit") or gate_configured(secrets, environ)

    def operator_flag(name: str, default: bool) -> bool:
        # Policies are deployment settings: from secrets and the environment only.
        return _flag(name, resolve(name, None, secrets, environ)[0], default)

    policy = ConnectionPolicy(
        hosted=hosted,
        allow_custom_server=operator_flag("allow_custom_server", not hosted),
        allow_visitor_key=operator_flag("allow_visitor_key", True),
    )
    result = dict(provider=provider_id, base_url=base_url, api_key=api_key, key_source=key_source)
    chosen = {k: v for k, v in visitor.items() if k in VISITOR_KEYS and v not in (None, "")}
    typed_key = chosen.get("api_key")
    if chosen.get("provider") or chosen.get("base_url"):
        v_provider, v_url = _server(chosen.get("provider"), chosen.get("base_url"))
        if v_url != base_url:
            if not policy.allow_custom_server:
                notice = "This server's operator does not let visitors choose another server."
                return dict(result, policy=_with_notice(policy, notice), server_trusted=True)
            # A server of the visitor's choosing gets the visitor's key or none: never
            # the operator's, which is bound to the operator's server.
            return dict(
                provider=v_provider,
                base_url=v_url,
                api_key=typed_key,
                key_source="sidebar" if typed_key else None,
                policy=policy,
                server_trusted=not hosted,
            )
    if typed_key:
        if not policy.allow_visitor_key:
            notice = "This server's operator does not let visitors use their own key."
            return dict(result, policy=_with_notice(policy, notice), server_trusted=True)
        result.update(api_key=typed_key, key_source="sidebar")
    return dict(result, policy=policy, server_trusted=True)


def _with_notice(policy: ConnectionPolicy, notice: str) -> ConnectionPolicy:
    return ConnectionPolicy(
        policy.hosted, policy.allow_custom_server, policy.allow_visitor_key, notice
    )


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory from the environment alone (for code with no secrets at hand)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("PARLEY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
