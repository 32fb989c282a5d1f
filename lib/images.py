"""Generating images through the Images API and checking what comes back.

`generate` validates the request (before anything is sent), calls
`client.images.generate`, and yields `Preview`s while a streamed image is being made, then
one `GenerationResult`. Both response shapes are handled: `b64_json` (the GPT image
models) and `url` (older servers), whose URL is fetched at once because such URLs expire,
through the outbound guard (`lib/outbound.py`): a server cannot make Parley fetch from its
host's own network. Every image is checked before it is accepted: bytes and pixel count
first (from the header, before anything is decoded), then decoded with Pillow, so neither
a broken file nor a decompression bomb reaches the gallery. Usage and cost come from the
response and the price table's "image" section.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
from PIL import Image, UnidentifiedImageError

from lib import errors, outbound
from lib.client import TRANSPORT_ERRORS, provider_errors, send_once
from lib.image_models import ImageRequest, normalized, request_params, validate
from lib.pricing import FREE_PROVIDERS, PriceTable

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # a 3840x2160 PNG is ~25 MB; anything bigger is wrong
# Twice the largest image any known model makes (3840x2160, 8.3 MP). Accepting one at the
# limit (4096x4096 RGBA) peaks 135 MB above the start, as a plain Pillow decode does; a
# 13000x13000 RGB PNG (481 KB, 169 MP) took 653 MB and 13 s before this check, and is
# now refused from its header in 0.1 s and 1 MB (bench/image_memory.py).
MAX_IMAGE_PIXELS = 4096 * 4096
FORMATS = {  # Pillow format -> (mime type, file extension)
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
UNREADABLE_HINT = "Try again; if it keeps happening, try another output format or model."
TOO_MANY_PIXELS = (
    f"The server sent an image larger than Parley opens "
    f"(at most {MAX_IMAGE_PIXELS / 1e6:.1f} million pixels)."
)
PIXELS_HINT = "Ask for a smaller size."


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    mime: str
    extension: str
    width: int
    height: int
    revised_prompt: str | None = None


@dataclass(frozen=True)
class Preview:
    """A partial image streamed while image number `image` is being made."""

    image: int
    index: int
    data: bytes


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class GenerationResult:
    request: ImageRequest
    images: list[GeneratedImage]
    usage: Usage | None  # None when the server reports none (DALL-E, most local servers)
    cost: float | None  # None when unknown
    seconds: float

    @property
    def revised_prompt(self) -> str | None:
        return next((i.revised_prompt for i in self.images if i.revised_prompt), None)


def generate(
    client: openai.OpenAI,
    request: ImageRequest,
    *,
    prices: PriceTable | None = None,
    provider: str = "openai",
    base_url: str | None = None,
    timeout: float | None = None,
    allow: Sequence[str] = (),
) -> Iterator[Preview | GenerationResult]:
    """Check `request` now (raising InvalidInputError before any request), then return
    the iterator that sends it and yields previews and the result.

    `allow` is the outbound allow-list for image URLs (`outbound.image_allow(settings)`);
    `provider` and `base_url` say whose prices apply (`PriceTable.cost`).
    """
    request = normalized(request)
    validate(request)
    # A timed-out or failed generation may still be billed, so the SDK must not resend it
    # on its own; only refusals made before any work are resent (in _send).
    api = client.with_options(max_retries=0, **({"timeout": timeout} if timeout else {}))
    seconds = _seconds(timeout or client.timeout)
    prices = prices or PriceTable()
    return _run(api, request, prices, provider, base_url, seconds, tuple(allow))


def _run(
    api: openai.OpenAI,
    request: ImageRequest,
    prices: PriceTable,
    provider: str,
    base_url: str | None,
    timeout: float,
    allow: tuple[str, ...],
) -> Iterator[Preview | GenerationResult]:
    started = time.perf_counter()
    params = request_params(request)
    response = _send(api, params)
    if params.get("stream"):
        images, usage = yield from _read_stream(response)
    else:
        images, usage = _read_response(response, timeout, allow)
    if not images:
        raise errors.ProviderError("The server answered without an image.", hint=UNREADABLE_HINT)
    cost = None
    if usage is not None or provider in FREE_PROVIDERS:
        cost = prices.cost(
            request.model,
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            provider=provider,
            base_url=base_url,
            kind="image",
        )
    yield GenerationResult(request, images, usage, cost, time.perf_counter() - started)


def _send(api: openai.OpenAI, params: dict[str, Any]) -> Any:
    """Send the request; only refusals made before any work are resent (`send_once`)."""
    return send_once(lambda: api.images.generate(**params))


def _read_response(
    response: Any, timeout: float, allow: tuple[str, ...]
) -> tuple[list[GeneratedImage], Usage | None]:
    images = []
    for item in response.data or []:
        if item.b64_json:
            data = _b64decode(item.b64_json)
        elif item.url:
            data = fetch_image(item.url, timeout=timeout, allow=allow)
        else:
            raise errors.ProviderError("The server's image had neither data nor a URL.")
        images.append(checked_image(data, item.revised_prompt))
    return images, _usage(response.usage)


def _read_stream(stream: Any) -> Iterator[Preview]:
    """Yield previews; return (images, usage) from the completed events."""
    images: list[GeneratedImage] = []
    usage = None
    try:
        with provider_errors():
            for event in stream:
                if event.type == "image_generation.partial_image":
                    preview = _preview(len(images), event)
                    if preview is not None:
                        yield preview
                elif event.type == "image_generation.completed":
                    images.append(checked_image(_b64decode(event.b64_json)))
                    usage = _usage(event.usage) or usage
    except httpx2.TimeoutException as exc:
        raise errors.RequestTimedOut("The image stream stalled.") from exc
    except TRANSPORT_ERRORS as exc:
        raise errors.ProviderError(
            "The connection dropped before the image was finished.", hint="Try again."
        ) from exc
    finally:
        stream.close()  # also when the caller stops early: don't leave the socket open
    return images, usage


def _preview(image: int, event: Any) -> Preview | None:
    try:
        data = _b64decode(event.b64_json)
        checked_image(data)
    except errors.ProviderError:
        # A bad preview is not worth failing over; the final image is checked strictly.
        log.warning("skipped an undecodable partial image")
        return None
    return Preview(image, event.partial_image_index, data)


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(int(raw.input_tokens or 0), int(raw.output_tokens or 0))


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.ProviderError(
            "The server sent image data that is not valid base64.", hint=UNREADABLE_HINT
        ) from exc


def _seconds(timeout: Any) -> float:
    if isinstance(timeout, int | float):
        return float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if read else 60.0


def fetch_image(url: str, *, timeout: float = 60.0, allow: Sequence[str] = ()) -> bytes:
    """Download an image URL from a response at once (they expire within the hour).

    Through the outbound guard, with no redirects, an image content type and at most
    MAX_IMAGE_BYTES; any failure is the one generic error of `outbound.fetch`. The API
    key is never sent: the URL is pre-signed and often on another host.
    """
    if url.startswith("data:image/") and ";base64," in url:
        return _b64decode(url.split(";base64,", 1)[1])
    return outbound.fetch(
        url,
        allow=allow,
        max_bytes=MAX_IMAGE_BYTES,
        content_types=[mime for mime, _ in FORMATS.values()],
        timeout=timeout,
    )


def checked_image(data: bytes, revised_prompt: str | None = None) -> GeneratedImage:
    """Check `data` is a usable image and decode it fully with Pillow; else ProviderError.

    Size and pixel count are checked from the header before any pixel is decoded, so a
    decompression bomb costs a header read, not its decoded size in memory.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise errors.ProviderError(
            f"The server sent an image of {len(data) / 2**20:.0f} MB; Parley accepts at most "
            f"{MAX_IMAGE_BYTES // 2**20} MB."
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            check_pixels(img.size)
            img.verify()  # checksums and structure, without decoding pixels
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # the pixels themselves: catches truncated data
            fmt, (width, height) = img.format, img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own (higher) limit fired inside Image.open, before check_pixels could.
        raise errors.ProviderError(TOO_MANY_PIXELS, hint=PIXELS_HINT) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise errors.ProviderError(
            "The server sent an image that could not be decoded.", hint=UNREADABLE_HINT
        ) from exc
    if fmt not in FORMATS:
        raise errors.ProviderError(f"The server sent an unsupported image format ({fmt}).")
    mime, extension = FORMATS[fmt]
    return GeneratedImage(data, mime, extension, width, height, revised_prompt or None)


def check_pixels(size: tuple[int, int]) -> None:
    """Refuse an image over MAX_IMAGE_PIXELS, given its header's (width, height)."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise errors.ProviderError(
            f"{TOO_MANY_PIXELS} (This one is {width}x{height}.)", hint=PIXELS_HINT
        )
