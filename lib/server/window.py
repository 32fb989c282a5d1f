"""A model's context window, from the server that runs it, and the budget trimming uses.

llama.cpp's `llama-server` states it at `/props`, vLLM as `max_model_len` in
`/v1/models`, Ollama at `/api/ps` (a loaded model) or `/api/show`, LM Studio at
`/api/v0/models`; llama-cpp-python's server states it only in its overflow error
("Requested tokens (24335) exceed context window of 2048"), which
`context_window_from_error` reads, as it reads vLLM's and OpenAI's. OpenAI and Azure
come from `lib.models`' table. When none of these says, the window is unknown and
trimming assumes `UNKNOWN_WINDOW`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import openai

from lib.models import known_context_window
from lib.server.probe import KNOWN_PROVIDERS, Server, probe

UNKNOWN_WINDOW = 8_192  # what trimming assumes when the window cannot be known
OLLAMA_DEFAULT_NUM_CTX = 4_096  # Ollama's default num_ctx since 0.6 (2,048 before)
ESTIMATE_MARGIN = 0.15  # room left when counts are estimates (tiktoken for a llama model)


@dataclass(frozen=True)
class ContextWindow:
    """A model's context window as far as it can be known. `tokens` is None when it
    cannot; then trimming assumes `UNKNOWN_WINDOW` and the gauge says "unknown"."""

    tokens: int | None
    source: str  # where the figure came from, for the gauge's tooltip
    exact: bool  # the server's own figure for this model, as it runs now
    note: str = ""  # a warning for the user (Ollama's silent truncation, say)

    @property
    def for_trimming(self) -> int:
        return self.tokens or UNKNOWN_WINDOW


UNKNOWN = ContextWindow(None, "unknown", exact=False)


def trim_window(window: ContextWindow, *, counts_exact: bool, override: int | None = None) -> int:
    """The window trimming fills: the conversation's override, else the server's, else
    `UNKNOWN_WINDOW`; less `ESTIMATE_MARGIN` when the counts are estimates, so a
    tokenizer that splits text finer than tiktoken's does not overflow it."""
    tokens = override or window.for_trimming
    return tokens if counts_exact else int(tokens / (1 + ESTIMATE_MARGIN))


def context_window(client: openai.OpenAI, server: Server, model: str) -> ContextWindow:
    """The window `model` has on this server (`server` from `identify`)."""
    if server.flavour in KNOWN_PROVIDERS:
        known = known_context_window(model)
        return ContextWindow(known, "Parley's model table", True) if known else UNKNOWN
    if server.flavour == "vllm":
        return _positive(server.models.get(model, {}).get("max_model_len"), "vLLM /v1/models")
    if server.flavour == "llama-server":
        settings = server.props.get("default_generation_settings") or {}
        n_ctx = settings.get("n_ctx") or server.props.get("n_ctx")
        return _positive(n_ctx, "llama-server /props")
    if server.flavour == "ollama":
        return _ollama_window(client, model)
    if server.flavour == "lmstudio":
        return _lmstudio_window(server.lmstudio.get(model, {}))
    return UNKNOWN


def _positive(value: Any, source: str, exact: bool = True, note: str = "") -> ContextWindow:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return ContextWindow(value, source, exact, note)
    return UNKNOWN


def _ollama_window(client: openai.OpenAI, model: str) -> ContextWindow:
    # A loaded model reports the num_ctx it runs with, and a Modelfile may set one;
    # nothing else is certain: the server's OLLAMA_CONTEXT_LENGTH is invisible, and
    # Ollama's OpenAI endpoint ignores a num_ctx in the request (its documentation says
    # so), so Parley cannot raise it and must not trim to the model's trained maximum.
    running = probe(client, "GET", "/api/ps")
    loaded = running.body.get("models") if running.ok and isinstance(running.body, dict) else []
    for entry in loaded if isinstance(loaded, list) else []:
        if isinstance(entry, dict) and model in (entry.get("name"), entry.get("model")):
            window = _positive(entry.get("context_length"), "Ollama /api/ps")
            if window.tokens:
                return window
    shown = probe(client, "POST", "/api/show", {"model": model, "name": model})
    if not (shown.ok and isinstance(shown.body, dict)):
        return UNKNOWN
    num_ctx = re.search(r"^\s*num_ctx\s+(\d+)", str(shown.body.get("parameters") or ""), re.M)
    if num_ctx:
        return _positive(int(num_ctx.group(1)), "Ollama Modelfile num_ctx")
    info = shown.body.get("model_info") or {}
    trained = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    trained = trained if isinstance(trained, int) and trained > 0 else None
    supports = f" (the model supports {trained:,})" if trained else ""
    note = (
        "Ollama cuts longer prompts without saying so; Parley assumes its default num_ctx "
        f"of {OLLAMA_DEFAULT_NUM_CTX:,} tokens{supports}. To use more, set PARAMETER "
        "num_ctx in a Modelfile or OLLAMA_CONTEXT_LENGTH on the server."
    )
    assumed = min(OLLAMA_DEFAULT_NUM_CTX, trained or OLLAMA_DEFAULT_NUM_CTX)
    return ContextWindow(assumed, "Ollama's default num_ctx", False, note)


def _lmstudio_window(entry: dict[str, Any]) -> ContextWindow:
    loaded = _positive(entry.get("loaded_context_length"), "LM Studio /api/v0/models")
    if loaded.tokens:
        return loaded
    note = "LM Studio may load the model with a shorter context than its maximum."
    return _positive(entry.get("max_context_length"), "LM Studio /api/v0/models", False, note)


# An overflow error, in each server's words. The first group is the window.
_OVERFLOW_PATTERNS = (
    re.compile(r"exceed(?:s|ed)? (?:the )?context window of (\d[\d,]*)", re.I),  # llama-cpp-py
    re.compile(r"maximum context length is (\d[\d,]*) tokens", re.I),  # OpenAI, vLLM
    re.compile(r"context (?:window|length|size) (?:is|of) (\d[\d,]*)", re.I),
    re.compile(r"available context size \((\d[\d,]*) tokens\)", re.I),  # llama-server
)
# How many tokens the server counted in the prompt it refused, in each server's words.
_PROMPT_PATTERNS = (
    re.compile(r"\((\d[\d,]*) in the messages", re.I),  # vLLM, llama-cpp-python's 400
    re.compile(r"your messages resulted in (\d[\d,]*) tokens", re.I),  # OpenAI
    re.compile(r"your request has (\d[\d,]*) input tokens", re.I),  # newer vLLM
    re.compile(r"requested tokens \((\d[\d,]*)\)", re.I),  # llama-cpp-python's own text
    re.compile(r"request \((\d[\d,]*) tokens\) exceeds", re.I),  # llama-server
)


def context_window_from_error(error: BaseException | str) -> ContextWindow | None:
    """The window an overflow error states, if it states one.

    Reads the message and the error body of `error` and of its causes (a Parley
    ContextTooLong raised from the SDK's error is read through to it). llama-server's
    own error carries `n_ctx` in its body rather than in the text.
    """
    for text, body in _error_texts(error):
        n_ctx = body.get("n_ctx") if isinstance(body, dict) else None
        if isinstance(n_ctx, int) and n_ctx > 0:
            return ContextWindow(n_ctx, "the server's overflow error", True)
        for pattern in _OVERFLOW_PATTERNS:
            match = pattern.search(text)
            if match:
                return ContextWindow(int(match.group(1).replace(",", "")), "overflow error", True)
    return None


def prompt_tokens_from_error(error: BaseException | str) -> int | None:
    """How many tokens the server counted in the prompt an overflow error refused, if it
    says: with the window, it tells how far Parley's own count was from the server's."""
    for text, body in _error_texts(error):
        counted = body.get("n_prompt_tokens") if isinstance(body, dict) else None
        if isinstance(counted, int) and counted > 0:
            return counted
        for pattern in _PROMPT_PATTERNS:
            match = pattern.search(text)
            if match:
                return int(match.group(1).replace(",", ""))
    return None


def _error_texts(error: BaseException | str) -> list[tuple[str, Any]]:
    if isinstance(error, str):
        return [(error, None)]
    found, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        body = getattr(current, "body", None)
        inner = body.get("error", body) if isinstance(body, dict) else body
        found.append((f"{current} {json.dumps(inner, default=str)}", inner))
        current = current.__cause__ or current.__context__
    return found
