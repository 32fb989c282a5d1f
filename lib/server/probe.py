"""Which server software answers at the base URL, and the one way Parley asks it anything.

Every request in `lib.server` goes through `probe`: the chat's own OpenAI client (so the
key goes only to the server it is bound to, and a visitor's server is reached only through
the outbound guard), a short timeout (`PROBE_TIMEOUT`), no retry, and nothing that could
generate or be billed: GETs of metadata, POSTs with an empty body that a server rejects
before doing any work, and tokenizing a word.

`identify` tells llama.cpp's `llama-server` (`/props`), vLLM (`max_model_len` in
`/v1/models`), Ollama (`/api/version`), LM Studio (`/api/v0/models`) and
llama-cpp-python's server (`/extras/tokenize`) apart, trying the provider's usual
server first: at most five requests, each answered in milliseconds by a local server.
OpenAI and Azure are never probed. The UI caches the result per session
(`lib/ui/clients.py`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from lib import errors

log = logging.getLogger(__name__)
PROBE_TIMEOUT = 3.0  # seconds; a metadata answer takes milliseconds, a dead server forever
KNOWN_PROVIDERS = {"openai", "azure"}  # described by Parley's tables, never probed
# How a provider's usual server is told apart first (others are tried after it).
_PROBE_ORDER = {
    "llamacpp": ("llama-server", "llama-cpp-python", "ollama", "lmstudio"),
    "ollama": ("ollama", "llama-server", "lmstudio", "llama-cpp-python"),
    "lmstudio": ("lmstudio", "llama-server", "ollama", "llama-cpp-python"),
    "vllm": ("llama-cpp-python", "llama-server", "ollama", "lmstudio"),
}
_DEFAULT_ORDER = ("llama-server", "ollama", "lmstudio", "llama-cpp-python")
_OWNER_HINTS = {
    "llamacpp": "llama-server",
    "me": "llama-cpp-python",
    "library": "ollama",
    "organization_owner": "lmstudio",
}


@dataclass(frozen=True)
class Answer:
    """A server's answer to a probe. `status` is None when there was no HTTP answer."""

    status: int | None
    body: Any = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def server_root(base_url: str) -> str:
    """The server's root: the base URL without its `/v1` (`/props` lives at the root)."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


def probe(
    client: openai.OpenAI,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float = PROBE_TIMEOUT,
) -> Answer:
    """One request to the client's own server, never raising for what the server says.

    A `path` starting with "/" is at the server's root (`/props`), any other is under
    the base URL (`models`). Both are built from the client's base URL, so the key the
    client carries never goes to another origin.
    """
    url = server_root(str(client.base_url)) + path if path.startswith("/") else path
    api = client.with_options(timeout=timeout, max_retries=0)
    try:
        if method == "GET":
            response = api.get(url, cast_to=httpx2.Response)
        else:
            response = api.post(url, cast_to=httpx2.Response, body=body or {})
    except openai.APIStatusError as exc:
        return Answer(exc.status_code, exc.body)
    except (openai.APIError, errors.ParleyError, httpx2.HTTPError) as exc:
        log.info("probe %s %s: no answer (%s)", method, path, type(exc).__name__)
        return Answer(None)
    try:
        return Answer(response.status_code, response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Answer(response.status_code, None)


# Identifying the server


@dataclass(frozen=True)
class Server:
    """Which server software answers, and what it said about itself."""

    flavour: str  # openai, azure, llama-server, llama-cpp-python, vllm, ollama, lmstudio, unknown
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # /v1/models entries by id
    props: dict[str, Any] = field(default_factory=dict)  # llama-server's /props
    lmstudio: dict[str, dict[str, Any]] = field(default_factory=dict)  # /api/v0/models by id
    listed: bool = False  # whether /v1/models answered


def identify(client: openai.OpenAI, provider: str) -> Server:
    """Find out which server software this is, with as few probes as it takes."""
    if provider in KNOWN_PROVIDERS:
        return Server(provider)
    listing = probe(client, "GET", "models")
    entries = _entries(listing.body) if listing.ok else {}
    base = Server("unknown", entries, listed=listing.ok)
    owners = [str(e.get("owned_by", "")) for e in entries.values()]
    if any("max_model_len" in e for e in entries.values()) or "vllm" in owners:
        return Server("vllm", entries, listed=True)
    hinted = [_OWNER_HINTS[o] for o in owners if o in _OWNER_HINTS]
    order = dict.fromkeys([*hinted, *_PROBE_ORDER.get(provider, _DEFAULT_ORDER)])
    for flavour in order:
        found = _RECOGNISERS[flavour](client, base)
        if found is not None:
            return found
    return base


def _entries(body: Any) -> dict[str, dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return {}
    return {str(e["id"]): e for e in data if isinstance(e, dict) and "id" in e}


def _as_llama_server(client: openai.OpenAI, base: Server) -> Server | None:
    answer = probe(client, "GET", "/props")
    body = answer.body if answer.ok and isinstance(answer.body, dict) else {}
    if "default_generation_settings" in body or "n_ctx" in body:
        return Server("llama-server", base.models, props=body, listed=base.listed)
    return None


def _as_ollama(client: openai.OpenAI, base: Server) -> Server | None:
    answer = probe(client, "GET", "/api/version")
    if answer.ok and isinstance(answer.body, dict) and "version" in answer.body:
        return Server("ollama", base.models, listed=base.listed)
    return None


def _as_lmstudio(client: openai.OpenAI, base: Server) -> Server | None:
    answer = probe(client, "GET", "/api/v0/models")
    found = _entries(answer.body) if answer.ok else {}
    if found:
        return Server("lmstudio", base.models, lmstudio=found, listed=base.listed)
    return None


def _as_llama_cpp_python(client: openai.OpenAI, base: Server) -> Server | None:
    # Tokenizing one word generates nothing; it is the one endpoint only this server has.
    answer = probe(client, "POST", "/extras/tokenize", {"input": "Parley"})
    if answer.ok and isinstance(answer.body, dict) and isinstance(answer.body.get("tokens"), list):
        return Server("llama-cpp-python", base.models, listed=base.listed)
    return None


_RECOGNISERS = {
    "llama-server": _as_llama_server,
    "ollama": _as_ollama,
    "lmstudio": _as_lmstudio,
    "llama-cpp-python": _as_llama_cpp_python,
}
