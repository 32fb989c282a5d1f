"""Building OpenAI clients and turning the SDK's errors into Parley's.

One client per (base URL, key). Whether a client may be shared across sessions is the
UI's decision (see `lib/ui/clients.py`); this module only builds them.

No request is ever resent after the server may have run it. The SDK's own retries are off
(`max_retries=0`): they resent a chat request after a timeout or a 5xx, so a slow server
got 4 requests and the user waited 18 s at a 3 s timeout, and a completion that may
already have been billed was paid for again. `send_once` retries only refusals made
before any work: a 429 (after its Retry-After, up to `MAX_RETRY_WAIT`) and a connection
that could not be opened. Chat, document answers and images all send through it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx2
import openai

from lib import errors, outbound
from lib.settings import Settings

log = logging.getLogger(__name__)
REFUSAL_RETRIES = 3  # resends of a request the server refused before doing any work
MAX_RETRY_WAIT = 20.0  # seconds; a longer Retry-After is reported, not waited out
T = TypeVar("T")

# Transport failures that can surface while a response body is being read.
TRANSPORT_ERRORS = (httpx2.TransportError, httpx2.StreamError, httpx2.DecodingError)


def build_client(settings: Settings) -> openai.OpenAI:
    """A client for the configured server; raises MissingKeyError if a key is required.

    A server a visitor chose (`server_trusted` False) is reached only through the
    outbound guard, so its URL cannot point Parley at the host's own network. The client
    never resends a request by itself (see the module docstring): send with `send_once`.
    """
    http_client = None
    if not settings.server_trusted:
        http_client = outbound.guarded_http_client(settings.outbound_allow, settings.timeout)
    return openai.OpenAI(
        api_key=settings.require_key(),
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_retries=0,
        http_client=http_client,
    )


def send_once(
    request: Callable[[], T],
    *,
    retries: int = REFUSAL_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Send a request that may be billed, with errors in Parley's terms (`provider_errors`).

    Resent only after a refusal made before any work: a 429 or a connection refused. A
    timeout, a 5xx or a dropped connection may come after the server did the work, so
    they are raised at once.
    """
    for attempt in range(retries + 1):
        try:
            with provider_errors():
                return request()
        except (errors.RateLimited, errors.ServerUnreachable) as exc:
            wait = None if attempt == retries else refusal_wait(exc.__cause__, attempt)
            if wait is None:
                raise
            log.info("%s; resending in %.1f s", type(exc).__name__, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def resendable(exc: BaseException | None) -> bool:
    """Whether the SDK error `exc` is a refusal made before any work (a 429, or a
    connection that could not be opened), so resending cannot pay twice."""
    if isinstance(exc, openai.RateLimitError):
        return True
    # APITimeoutError is an APIConnectionError too, but caused by a timeout, not a refusal.
    return isinstance(exc, openai.APIConnectionError) and isinstance(
        exc.__cause__, httpx2.ConnectError
    )


def refusal_wait(exc: BaseException | None, attempt: int) -> float | None:
    """Seconds to wait before resending after `exc`, or None when it must not be resent."""
    if not resendable(exc):
        return None
    after = retry_after(exc.response.headers) if isinstance(exc, openai.RateLimitError) else None
    if after is None:
        return _backoff(attempt)
    return after if after <= MAX_RETRY_WAIT else None


def retry_after(headers: httpx2.Headers) -> float | None:
    """The server's Retry-After (or OpenAI's retry-after-ms) in seconds, if it gave one."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers[name]) / divisor)
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _backoff(attempt: int) -> float:
    # Jittered, so sessions refused together do not all come back at the same moment.
    return min(0.5 * 2**attempt, 8.0) * random.uniform(0.8, 1.2)


@contextlib.contextmanager
def provider_errors() -> Iterator[None]:
    """Re-raise the SDK's exceptions as Parley's domain errors, with useful messages."""
    try:
        yield
    except openai.AuthenticationError as exc:
        raise errors.AuthenticationFailed("The server rejected the API key (401).") from exc
    except openai.PermissionDeniedError as exc:
        raise errors.AuthenticationFailed(
            f"This key may not use that resource (403): {_detail(exc)}"
        ) from exc
    except openai.RateLimitError as exc:
        raise errors.RateLimited(f"Rate limited (429): {_detail(exc)}") from exc
    except openai.InternalServerError as exc:
        raise errors.ServerFailed(f"The server failed ({exc.status_code}): {_detail(exc)}") from exc
    except openai.APITimeoutError as exc:
        raise errors.RequestTimedOut("The request timed out.") from exc
    except openai.APIConnectionError as exc:
        raise errors.ServerUnreachable("Could not connect to the model server.") from exc
    except openai.NotFoundError as exc:
        raise errors.ModelRejected(f"Not found (404): {_detail(exc)}") from exc
    except openai.APIStatusError as exc:
        code = _code(exc)
        if code == "context_length_exceeded" or _says_overflow(exc):
            raise errors.ContextTooLong("The request is longer than the model's context.") from exc
        # Image models answer a safety refusal with "moderation_blocked"; DALL-E used the
        # older "content_policy_violation".
        if code in ("content_policy_violation", "moderation_blocked"):
            raise errors.ContentRefused(f"Refused by content policy: {_detail(exc)}") from exc
        raise errors.ModelRejected(
            f"The server refused the request ({exc.status_code}): {_detail(exc)}"
        ) from exc


# How servers without OpenAI's error code say a prompt overflowed the context: vLLM's
# 400 ("maximum context length is 2048 tokens"), llama-server's exceed_context_size_error.
_OVERFLOW_WORDS = ("maximum context length", "exceed_context_size", "exceed context window",
                   "exceeds the available context size")  # fmt: skip


def _says_overflow(exc: openai.APIStatusError) -> bool:
    return exc.status_code == 400 and any(w in str(exc).lower() for w in _OVERFLOW_WORDS)


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body) if isinstance(body.get("error", body), dict) else body
    return getattr(exc, "code", None) or inner.get("code")


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") or (body.get("error") or {}).get("message")
    return str(message or exc.message)[:300]
