"""A prompt longer than the server's context: how each server says so, what that teaches,
and the requests that follow.

Servers say it three ways. A 400 before any stream: OpenAI's and llama-cpp-python's
`context_length_exceeded`, vLLM's "maximum context length is N tokens", llama-server's
`exceed_context_size_error` (`lib.client.provider_errors` makes each a ContextTooLong).
An error event in the stream (`in_stream`). Or, llama-cpp-python's when streamed, a 200
event stream that ends before its first event, the reason only in its log
(tests/peers/QUIRKS.md): asked the same again without streaming, for one token, it
answers the 400 (`ask_why_silent`).

The error states the window (`window.context_window_from_error`) and often how many of
the server's tokens the prompt took (`window.prompt_tokens_from_error`); against Parley's
count of the same prompt, that gives the server's tokens per counted token. `refit`
remembers both (`ServerFacts.learn_window`) and returns the `Fit` the retry is trimmed to,
so even a tokenizer three times finer than tiktoken's is fitted on the first retry. A
reply retries once (`RETRIES`), then says what to shorten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import openai

from lib import errors
from lib.client import send_once
from lib.pricing import BILLED_PROVIDERS
from lib.server.facts import ServerFacts
from lib.server.window import ContextWindow, context_window_from_error, prompt_tokens_from_error

log = logging.getLogger(__name__)
RETRIES = 1  # an overflow is answered by one retry with less, then a clear message
T = TypeVar("T")


@dataclass(frozen=True)
class Fit:
    """What an overflow error taught: the window the server stated (`cap`), and its
    tokens per token Parley counted (`scale`, at least 1)."""

    cap: int | None = None
    scale: float = 1.0


def in_stream(exc: openai.APIError) -> bool:
    """Whether an error event in a stream says the prompt overflowed the context."""
    body = exc.body if isinstance(exc.body, dict) else {}
    text = f"{body.get('code', '')} {body.get('type', '')} {exc.message}".lower()
    return "context" in text and any(w in text for w in ("exceed", "length", "overflow", "long"))


def refit(
    error: BaseException, facts: ServerFacts, model: str, counted: int, before: Fit
) -> tuple[Fit, ContextWindow | None]:
    """The fit for the retry after `error`, and the window it stated; both are
    remembered in `facts` for the requests after this one. `counted` is Parley's count
    of the refused prompt, `before` the fit it was trimmed to."""
    stated = context_window_from_error(error)
    theirs = prompt_tokens_from_error(error)
    scale = max(1.0, theirs / counted) if theirs and counted else before.scale
    facts.learn_window(model, stated, scale)
    size = stated.tokens if stated else "not stated"
    log.info("context overflow: window %s, the server counted %s (we %s)", size, theirs, counted)
    return Fit(stated.tokens if stated else before.cap, scale), stated


def ask_why_silent(
    create: Callable[..., Any], request: dict[str, Any], provider: str
) -> errors.ContextTooLong | None:
    """Why a stream ended before its first event, if it was an overflow: the same
    request, not streamed, for one token (see the module docstring). Servers that bill
    are not asked."""
    if provider in BILLED_PROVIDERS:
        return None
    request = {**request, "max_tokens": 1, "n": 1}
    request.pop("max_completion_tokens", None)
    try:
        send_after_refusal(lambda: create(**request), provider)
    except errors.ContextTooLong as exc:
        return exc
    except (errors.ParleyError, openai.APIError) as exc:
        log.info("asked why the stream was empty: %s", type(exc).__name__)
    return None


def send_after_refusal(request: Callable[[], T], provider: str) -> T:
    """`send_once`, for the request that follows an overflow: llama-cpp-python closes the
    connection after refusing one, and the client may still take that connection from its
    pool and be reset. A server that bills nothing is sent it once more, on a new one."""
    try:
        return send_once(request)
    except errors.ServerUnreachable:
        if provider in BILLED_PROVIDERS:
            raise
        log.info("the connection was closed after an overflow; sending again")
        return send_once(request)


def alone_too_long(window: ContextWindow) -> str:
    return (
        "The message and system prompt alone are longer than this model's context "
        f"window{_size(window)}, with room left for the reply: shorten them, or lower the "
        "max output tokens."
    )


def still_too_long(window: ContextWindow) -> str:
    return (
        "The server still found the request longer than this model's context "
        f"window{_size(window)} after Parley trimmed the history: start a new conversation, "
        "shorten the system prompt, or lower the max output tokens."
    )


def _size(window: ContextWindow) -> str:
    return f" ({window.tokens:,} tokens)" if window.tokens else ""
