"""Building OpenAI clients and turning the SDK's errors into Parley's.

One client per (base URL, key). Whether a client may be shared across sessions is the
UI's decision (see `lib/ui/clients.py`); this module only builds them. The SDK retries
429s and 5xx responses itself, with exponential backoff that honours Retry-After, before
any error reaches `provider_errors`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import httpx2
import openai

from lib import errors, outbound
from lib.settings import Settings

log = logging.getLogger(__name__)
MAX_RETRIES = 3

# Transport failures that can surface while a response body is being read.
TRANSPORT_ERRORS = (httpx2.TransportError, httpx2.StreamError, httpx2.DecodingError)


def build_client(settings: Settings, *, max_retries: int = MAX_RETRIES) -> openai.OpenAI:
    """A client for the configured server; raises MissingKeyError if a key is required.

    A server a visitor chose (`server_trusted` False) is reached only through the
    outbound guard, so its URL cannot point Parley at the host's own network.
    """
    http_client = None
    if not settings.server_trusted:
        http_client = outbound.guarded_http_client(settings.outbound_allow, settings.timeout)
    return openai.OpenAI(
        api_key=settings.require_key(),
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_retries=max_retries,
        http_client=http_client,
    )


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
        raise errors.RateLimited(
            f"Rate limited (429), still after retrying with backoff: {_detail(exc)}"
        ) from exc
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
        if code == "context_length_exceeded":
            raise errors.ContextTooLong("The request is longer than the model's context.") from exc
        # Image models answer a safety refusal with "moderation_blocked"; DALL-E used the
        # older "content_policy_violation".
        if code in ("content_policy_violation", "moderation_blocked"):
            raise errors.ContentRefused(f"Refused by content policy: {_detail(exc)}") from exc
        raise errors.ModelRejected(
            f"The server refused the request ({exc.status_code}): {_detail(exc)}"
        ) from exc


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body) if isinstance(body.get("error", body), dict) else body
    return getattr(exc, "code", None) or inner.get("code")


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    message = body.get("message") or (body.get("error") or {}).get("message")
    return str(message or exc.message)[:300]
