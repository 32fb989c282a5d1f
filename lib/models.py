"""What Parley knows about models: names from the server and the SDK, context windows.

Model names are read at run time from the server's `/v1/models`. When the server does
not answer, the names the installed `openai` package declares (`openai.types.ChatModel`)
are the fallback, so nothing here is a hand-kept list of what exists.
"""

from __future__ import annotations

import typing

import openai
from openai.types import ChatModel, EmbeddingModel, ImageModel

# Known context windows by name prefix, longest prefix first wins. A model not matched
# here uses DEFAULT_CONTEXT_WINDOW unless the conversation overrides it.
CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-6": 1_000_000,
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "chatgpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "o1": 200_000,
    "o3": 200_000,
    "o4": 200_000,
    "llama3.1": 128_000,
    "llama3.2": 128_000,
    "qwen2.5": 32_768,
}
# Conservative for unknown local models: Ollama's default num_ctx is smaller than most
# models' maximum, and overflowing it silently truncates the prompt.
DEFAULT_CONTEXT_WINDOW = 8_192

_NOT_CHAT = (
    "embedding",
    "embed",
    "image",
    "dall-e",
    "tts",
    "whisper",
    "moderation",
    "transcribe",
    "audio",
    "realtime",
    "davinci",
    "babbage",
)


def context_window(model: str, override: int | None = None) -> int:
    return override or known_context_window(model) or DEFAULT_CONTEXT_WINDOW


def known_context_window(model: str) -> int | None:
    """The window Parley's table gives `model`, or None when the table does not know it."""
    name = model.split("/")[-1].lower()
    for prefix in sorted(CONTEXT_WINDOWS, key=len, reverse=True):
        if name.startswith(prefix):
            return CONTEXT_WINDOWS[prefix]
    return None


def sdk_chat_models() -> list[str]:
    return list(typing.get_args(ChatModel))


def sdk_image_models() -> list[str]:
    return list(typing.get_args(ImageModel))


def sdk_embedding_models() -> list[str]:
    return list(typing.get_args(EmbeddingModel))


def list_server_models(client: openai.OpenAI) -> list[str]:
    """Every model id the server lists, sorted; raises a ParleyError if it cannot say."""
    from lib.client import provider_errors

    with provider_errors():
        return sorted(m.id for m in client.models.list())


def chat_models(all_models: list[str]) -> list[str]:
    return [m for m in all_models if not any(word in m.lower() for word in _NOT_CHAT)]


def choose_models(
    server_models: list[str] | None, default: str, last_used: str | None = None
) -> tuple[list[str], str | None]:
    """The chat models to offer, the one new chats start with first, and a note for the UI.

    New chats start with the model the user last chose for this server (`last_used`) if
    the server still has it, else the configured `default`; when the server lists
    neither, with the only chat model it offers or the first, and the note says so.
    """
    if server_models is None:
        names = sdk_chat_models()
        note = "Could not read the server's model list; showing the models the SDK knows."
        first = last_used or default
        return [first, *(n for n in names if n != first)], note
    names = chat_models(server_models)
    for wanted in (last_used, default):
        found = _on_server(wanted, names) if wanted else None
        if found:
            return [found, *(n for n in names if n != found)], None
    if not names:
        return [default], "The server lists no chat models; type the model's name."
    return names, f"{default} is not on this server; using {names[0]}."


def _on_server(name: str, names: list[str]) -> str | None:
    """`name` as the server lists it: Ollama lists "llama3.2" as "llama3.2:latest"."""
    for candidate in (name, f"{name}:latest"):
        if candidate in names:
            return candidate
    return None
