"""Pure payload builders for the fake OpenAI server (no sockets, no state).

Mostly images: tiny real PNGs, so client code exercises its genuine decode/display path,
coloured from the prompt so a test can tell which prompt produced which picture. Also the
other request-independent helpers (error bodies, word "tokens", embeddings, reply text),
kept here so tests/fake_openai.py stays about HTTP behaviour.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
import re
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+")

# (type, code, message) as the real API words them; {model} is filled from the request.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-****. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} on requests per min (RPM). Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_CODE_ERRORS: dict[str, tuple[str, str]] = {
    "context_length_exceeded": (
        "invalid_request_error",
        "This model's maximum context length is exceeded. "
        "Please reduce the length of the messages.",
    ),
    "content_policy_violation": (
        "image_generation_user_error",
        "Your request was rejected as a result of our safety system.",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
}


IMAGE_SIZE = 64

# Starts with the PNG signature so naive sniffing accepts it, but no decoder can open it.
CORRUPT_IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR this is not a real image"


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """The background colour (and top-left pixel) of every image rendered for ``prompt``."""
    digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=3).digest()
    return digest[0], digest[1], digest[2]


def render_png(
    prompt: str,
    index: int = 0,
    *,
    size: int = IMAGE_SIZE,
    progress: float = 1.0,
) -> bytes:
    """A PNG whose background is ``prompt_colour(prompt)``.

    ``index`` draws a different accent square so that the n images of one request differ;
    ``progress`` < 1 fades towards grey, mimicking the partial frames of a streamed image.
    """
    from PIL import Image, ImageDraw  # deferred: only image tests pay Pillow's import cost

    base = prompt_colour(prompt)
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    accent = tuple((c + 97 * (index + 1)) % 256 for c in base)
    inset = size // 4 + (index % 4) * 2
    draw.rectangle((inset, inset, size - inset, size - inset), fill=accent)
    if progress < 1.0:
        grey = Image.new("RGB", (size, size), (128, 128, 128))
        img = Image.blend(grey, img, max(0.0, progress))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@functools.cache
def sparse_png(width: int, height: int, *, rgb: bool = False) -> bytes:
    """A valid black PNG of any size, built without decoding it: the decompression bomb
    of issue 9, part 3. 1-bit by default (13000x13000 is 20 KB, made in ~0.5 s; Pillow
    needs a byte a pixel to decode it); `rgb` makes the 8-bit RGB kind the issue found
    (13000x13000 is ~490 KB, made in a few seconds; 3 bytes a pixel decoded).
    """
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" * (1 + (width * 3 if rgb else (width + 7) // 8))  # filter "none", zeros
    packer = zlib.compressobj(6)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    depth, colour = (8, 2) if rgb else (1, 0)  # 8-bit RGB or 1-bit greyscale
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def error_body(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    type: str | None = None,
    param: str | None = None,
    model: str = "",
) -> dict:
    """The ``{"error": {...}}`` body OpenAI returns for ``status``/``code``."""
    etype, default_code, default_msg = _ERRORS.get(status, ("invalid_request_error", None, ""))
    code = default_code if code is None else (code or None)  # "" forces a null code
    if code in _CODE_ERRORS:
        etype, default_msg = _CODE_ERRORS[code]
    text = message or default_msg.replace("{model}", model or "the model")
    return {"error": {"message": text, "type": type or etype, "param": param, "code": code}}


def count_words(text: str) -> int:
    """The fake's token count: whitespace-separated words (deterministic, tokenizer-free)."""
    return len(_WORD.findall(text))


def message_text(message: Any) -> str:
    """Text of a chat message whose content is a string or a list of typed parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


@functools.lru_cache(maxsize=65536)
def _features(word: str, dim: int) -> tuple[tuple[int, float], ...]:
    # The word itself dominates; boundary-marked character bigrams add a little fuzziness
    # so "frames" still lands near "frame". Signed hashing keeps unrelated texts near 0.
    grams = [("w:" + word, 1.0)]
    padded = f"^{word}$"
    grams += [("c:" + padded[i : i + 2], 0.25) for i in range(len(padded) - 1)]
    out = []
    for gram, weight in grams:
        h = int.from_bytes(hashlib.blake2b(gram.encode(), digest_size=8).digest(), "little")
        out.append((h % dim, weight if (h >> 63) & 1 else -weight))
    return tuple(out)


def embed(text: str, dim: int = 256) -> list[float]:
    """L2-normalised feature-hashing vector: lexical overlap means cosine similarity."""
    vec = [0.0] * dim
    for word in _TOKEN.findall(text.lower()):
        for idx, weight in _features(word, dim):
            vec[idx] += weight
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def finish_text(text: str, stop: Any, limit: int | None) -> tuple[str, str]:
    """Apply ``stop`` sequences then a word ``limit``; returns (text, finish_reason)."""
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if s]
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    words = list(_WORD.finditer(text))
    if limit is not None and len(words) > limit:
        return (text[: words[limit - 1].end()] if limit > 0 else ""), "length"
    return text, "stop"


def reply_texts(scripted: list[str] | None, messages: list[Any], n: int) -> list[str]:
    """The n reply texts: scripted ones, else "Echo: <last user message>" variants."""
    if not scripted:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        last = message_text(users[-1]) if users else ""
        return [f"Echo: {last}" if i == 0 else f"Echo #{i + 1}: {last}" for i in range(n)]
    texts = scripted
    # Too few scripted alternatives for n: derive distinct extras rather than repeating.
    return [texts[i] if i < len(texts) else f"{texts[i % len(texts)]} #{i + 1}" for i in range(n)]


def chat_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def embedding_items(texts: list[str], dim: int, as_base64: bool) -> list[dict[str, Any]]:
    items = []
    for i, text in enumerate(texts):
        vec: Any = embed(text, dim)
        if as_base64:  # the SDK asks for base64 by default and decodes little-endian float32
            vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
        items.append({"object": "embedding", "index": i, "embedding": vec})
    return items


def image_usage(model: str, prompt: str, n: int) -> dict[str, Any] | None:
    """Token usage, which the real API reports for GPT image models only."""
    if not model.startswith("gpt-image"):
        return None
    inp, out = count_words(prompt), 272 * n
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "input_tokens_details": {"text_tokens": inp, "image_tokens": 0},
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _request_images(req: dict[str, Any], corrupt: bool) -> tuple[str, str, list[bytes]]:
    prompt, model = str(req["prompt"]), str(req.get("model") or "gpt-image-2")
    n = max(1, int(req.get("n") or 1))
    return prompt, model, [CORRUPT_IMAGE if corrupt else render_png(prompt, i) for i in range(n)]


def images_response(
    req: dict[str, Any],
    *,
    corrupt: bool = False,
    revise: bool = False,
    store: Callable[[bytes], str] | None = None,
) -> dict[str, Any]:
    """The /v1/images/generations body; with ``store`` images are URLs it hands out."""
    prompt, model, images = _request_images(req, corrupt)
    data: list[dict[str, Any]] = []
    for img in images:
        item = {"url": store(img)} if store else {"b64_json": _b64(img)}
        if revise:
            item["revised_prompt"] = f"A detailed, vivid illustration of {prompt}"
        data.append(item)
    result: dict[str, Any] = {"created": int(time.time()), "data": data}
    if (usage := image_usage(model, prompt, len(images))) is not None:
        result["usage"] = usage
    return result


def image_events(
    req: dict[str, Any],
    *,
    corrupt: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of a streamed generation: partial frames, then completed."""
    prompt, model, images = _request_images(req, corrupt)
    partials = max(0, min(3, int(req.get("partial_images") or 0)))
    common = {
        "created_at": int(time.time()),
        "size": req.get("size") or "1024x1024",
        "quality": req.get("quality") or "auto",
        "background": "opaque",
        "output_format": "png",
    }
    # The completed event's usage is not optional in the SDK's model, even for non-GPT models.
    usage = image_usage("gpt-image", prompt, len(images))
    for i, img in enumerate(images):
        for p in range(partials):
            frame = (
                CORRUPT_IMAGE
                if corrupt
                else render_png(prompt, i, progress=(p + 1) / (partials + 1))
            )
            yield (
                "image_generation.partial_image",
                {
                    "type": "image_generation.partial_image",
                    "partial_image_index": p,
                    "b64_json": _b64(frame),
                    **common,
                },
            )
        yield (
            "image_generation.completed",
            {"type": "image_generation.completed", "b64_json": _b64(img), "usage": usage, **common},
        )
