"""Presets for the OpenAI-compatible servers Parley knows how to talk to.

Every provider here speaks the OpenAI REST API (`/v1/models`, `/v1/chat/completions`,
`/v1/embeddings`, `/v1/images/generations`); a preset only fills in the base URL, says
whether a key is needed, and suggests default models.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

# Local servers ignore the key, but the OpenAI SDK refuses to build a client without one.
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class Provider:
    id: str
    label: str
    base_url: str
    needs_key: bool
    chat_model: str = ""
    embedding_model: str = ""
    image_model: str = ""
    help: str = ""


PROVIDERS: dict[str, Provider] = {
    p.id: p
    for p in (
        Provider(
            "openai",
            "OpenAI",
            "https://api.openai.com/v1",
            needs_key=True,
            chat_model="gpt-5.4-mini",
            embedding_model="text-embedding-3-small",
            image_model="gpt-image-2",
            help="Needs an API key from platform.openai.com.",
        ),
        Provider(
            "azure",
            "Azure OpenAI",
            "https://YOUR-RESOURCE.openai.azure.com/openai/v1",
            needs_key=True,
            help="Set the base URL to your resource's /openai/v1 endpoint; models are "
            "your deployment names.",
        ),
        Provider(
            "ollama",
            "Ollama",
            "http://localhost:11434/v1",
            needs_key=False,
            chat_model="llama3.2",
            embedding_model="nomic-embed-text",
            help="Run `ollama serve` and `ollama pull llama3.2`.",
        ),
        Provider(
            "lmstudio",
            "LM Studio",
            "http://localhost:1234/v1",
            needs_key=False,
            help="Start the local server from LM Studio's Developer tab.",
        ),
        Provider(
            "vllm",
            "vLLM",
            "http://localhost:8000/v1",
            needs_key=False,
            help="Run `vllm serve MODEL`; pass --api-key there if you set one here.",
        ),
        Provider(
            "llamacpp",
            "llama.cpp server",
            "http://localhost:8080/v1",
            needs_key=False,
            help="Run `llama-server -m model.gguf`.",
        ),
        Provider(
            "custom",
            "Custom base URL",
            "",
            needs_key=False,
            help="Any OpenAI-compatible server; a key is sent only if you give one.",
        ),
    )
}


def guess_provider(base_url: str | None) -> str:
    """The preset whose base URL matches, else OpenAI for no URL and custom for any other."""
    if not base_url:
        return "openai"
    normalised = base_url.rstrip("/")
    for provider in PROVIDERS.values():
        if provider.base_url and provider.base_url.rstrip("/") == normalised:
            return provider.id
    if ".openai.azure.com" in normalised:
        return "azure"
    return "custom"


def server_key(base_url: str | None) -> str:
    """A server's base URL as a key for what is kept per server (prices, preferences,
    token counts): no credentials, query or trailing slash, lower-case scheme and host."""
    if not base_url:
        return PROVIDERS["openai"].base_url
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: keep no port rather than fail on a key
        port = ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"
