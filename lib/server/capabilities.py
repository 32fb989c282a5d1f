"""What a server can do: chat, embeddings, image generation, image input, tools, transcription.

Each endpoint is asked with a body it must reject before doing any work (`{}` for chat,
images and transcription; an empty list of inputs for embeddings), so nothing is ever
generated or billed: 404, 405 or 501 means there is no such endpoint, and so does a 400
whose message says the server or model does not support it (vLLM's "The model does not
support Embeddings API", llama-server's "This server does not support embeddings"); any
other 400 or 422 means the endpoint is there. A server that does not answer, or refuses
the key, leaves the capability unknown (None), and the UI lets the user try.

Image input and tools cannot be asked that way; they come from what the server says of
the model (llama-server's `/props` modalities, Ollama's `/api/show` capabilities, LM
Studio's model type), else they stay unknown. OpenAI's own API is known to do everything.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import openai

from lib.server.probe import Server, probe

NO_ENDPOINT = {404, 405, 501}
REJECTED_REQUEST = {400, 422}
_UNSUPPORTED = ("not support", "unsupported", "not enabled", "not available")
# The endpoint and the body that asks it without a request to act on.
_ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("chat/completions", {}),
    "embeddings": ("embeddings", {"input": []}),
    "images": ("images/generations", {}),
    "transcription": ("audio/transcriptions", {}),
}
MISSING = {
    "chat": "This server has no chat completions.",
    "embeddings": "This server has no embeddings, so documents are searched by keyword only.",
    "images": "This server has no image generation.",
    "vision": "This model does not accept images.",
    "tools": "This model does not call tools.",
    "transcription": "This server has no audio transcription.",
}


@dataclass(frozen=True)
class Capabilities:
    """True: it can; False: it cannot; None: the server did not say."""

    chat: bool | None = None
    embeddings: bool | None = None
    images: bool | None = None
    vision: bool | None = None
    tools: bool | None = None
    transcription: bool | None = None

    def missing(self, feature: str) -> str | None:
        """The plain sentence to show when `feature` is known to be missing, else None."""
        return MISSING[feature] if getattr(self, feature) is False else None

    def as_dict(self) -> dict[str, bool | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


EVERYTHING = Capabilities(True, True, True, True, True, True)


def capabilities(
    client: openai.OpenAI, server: Server, model: str, embedding_model: str = ""
) -> Capabilities:
    """What this server can do, and what `model` on it accepts (`server` from `identify`)."""
    if server.flavour == "openai":
        return EVERYTHING
    found = {name: endpoint_exists(client, name, embedding_model) for name in _ENDPOINTS}
    found.update(_model_features(client, server, model))
    return Capabilities(**found)


def endpoint_exists(client: openai.OpenAI, name: str, model: str = "") -> bool | None:
    """Whether the server has the endpoint for `name` ("chat", "embeddings", ...)."""
    path, body = _ENDPOINTS[name]
    answer = probe(client, "POST", path, {**body, "model": model} if model else body)
    if answer.status in NO_ENDPOINT:
        return False
    if answer.status in REJECTED_REQUEST:
        return not _says_unsupported(answer.body)
    return True if answer.ok else None


def _says_unsupported(body: Any) -> bool:
    inner = body.get("error", body) if isinstance(body, dict) else body
    text = str(inner.get("message") or inner.get("detail") or "") if isinstance(inner, dict) else ""
    return any(phrase in text.lower() for phrase in _UNSUPPORTED)


def _model_features(client: openai.OpenAI, server: Server, model: str) -> dict[str, bool | None]:
    if server.flavour == "llama-server":
        modalities = server.props.get("modalities") or {}
        caps = server.props.get("chat_template_caps") or {}
        return {"vision": modalities.get("vision"), "tools": caps.get("supports_tools")}
    if server.flavour == "ollama":
        answer = probe(client, "POST", "/api/show", {"model": model, "name": model})
        body = answer.body if answer.ok and isinstance(answer.body, dict) else {}
        listed = body.get("capabilities")
        if isinstance(listed, list):
            return {"vision": "vision" in listed, "tools": "tools" in listed}
    if server.flavour == "lmstudio":
        entry = server.lmstudio.get(model, {})
        tools = entry.get("capabilities")
        return {
            "vision": entry.get("type") == "vlm" if entry.get("type") else None,
            "tools": "tool_use" in tools if isinstance(tools, list) else None,
            "embeddings": any(e.get("type") == "embeddings" for e in server.lmstudio.values()),
        }
    return {}
