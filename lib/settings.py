"""One resolver for Parley's settings: an explicit value, then secrets, then the environment.

`resolve_settings` never reads Streamlit itself: the UI passes `st.secrets` (or `{}`) and
`os.environ` in, which keeps this testable and usable from the command line. API keys are
carried in `Settings` but never printed (`repr=False`) and never written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import MissingKeyError
from lib.providers import PLACEHOLDER_KEY, PROVIDERS, guess_provider

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"

# Names shared by st.secrets (top level) and the environment.
KEYS = {
    "api_key": "OPENAI_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "provider": "PARLEY_PROVIDER",
    "chat_model": "PARLEY_CHAT_MODEL",
    "embedding_model": "PARLEY_EMBEDDING_MODEL",
    "image_model": "PARLEY_IMAGE_MODEL",
    "data_dir": "PARLEY_DATA_DIR",
    "timeout": "PARLEY_TIMEOUT",
}


@dataclass(frozen=True)
class Settings:
    provider: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    key_source: str | None  # "sidebar", "secrets", "env" or None
    chat_model: str
    embedding_model: str
    image_model: str
    data_dir: Path
    timeout: float = 60.0

    @property
    def needs_key(self) -> bool:
        return PROVIDERS[self.provider].needs_key

    @property
    def key_is_shared(self) -> bool:
        """True when the key is the server's own, so a client built from it may be shared."""
        return self.key_source in ("secrets", "env", None)

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
        ("sidebar", explicit, name),
        ("secrets", secrets, key),
        ("env", environ, key),
    ):
        if mapping is None:
            continue
        value = _safe_get(mapping, lookup)
        if value not in (None, ""):
            return value, source
    return None, None


def _safe_get(mapping: Mapping[str, Any], key: str) -> Any:
    # st.secrets raises when no secrets.toml exists; treat that as "no secrets".
    try:
        return mapping.get(key)
    except (FileNotFoundError, KeyError, AttributeError):
        return None


def resolve_settings(
    explicit: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ

    def get(name: str) -> Any:
        return resolve(name, explicit, secrets, environ)[0]

    base_url = get("base_url")
    provider_id = get("provider") or guess_provider(base_url)
    if provider_id not in PROVIDERS:
        provider_id = "custom"
    provider = PROVIDERS[provider_id]
    if not base_url:
        base_url = provider.base_url or None
    api_key, key_source = resolve("api_key", explicit, secrets, environ)
    data_dir = Path(get("data_dir") or DEFAULT_DATA_DIR).expanduser()
    return Settings(
        provider=provider_id,
        base_url=str(base_url).rstrip("/") if base_url else None,
        api_key=api_key,
        key_source=key_source,
        chat_model=get("chat_model") or provider.chat_model or "gpt-5.4-mini",
        embedding_model=get("embedding_model")
        or provider.embedding_model
        or "text-embedding-3-small",
        image_model=get("image_model") or provider.image_model or "gpt-image-2",
        data_dir=data_dir,
        timeout=float(get("timeout") or 60.0),
    )


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory from the environment alone (for code with no secrets at hand)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("PARLEY_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()
