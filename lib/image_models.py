"""Image models: which ones to offer, what each accepts, and checking a request against it.

Names come from the configured image model, the server's `/v1/models` and, when the
server cannot say, the names the installed SDK declares (`openai.types.ImageModel`); no
list here decides what exists. What a model accepts (sizes, quality, n, background,
output format, live previews) is known per family; a model Parley does not recognise
gets a permissive spec and the server has the last word. `validate` raises
InvalidInputError before any request is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from lib.errors import InvalidInputError
from lib.models import sdk_image_models

MAX_PROMPT_CHARS = 32_000
SERVER_DEFAULT = "default"  # a size that is not sent, for servers Parley does not know
GPT_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")
GPT_QUALITIES = ("auto", "low", "medium", "high")
GPT_BACKGROUNDS = ("auto", "opaque", "transparent")
GPT_FORMATS = ("png", "jpeg", "webp")
ALPHA_FORMATS = ("png", "webp")  # transparent backgrounds need one of these
MAX_PARTIAL_IMAGES = 3
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
# Words that mark a server's model id as an image model (OpenAI's and common local ones).
_IMAGE_WORDS = ("image", "dall-e", "flux", "stable-diffusion", "sdxl", "imagen")


@dataclass(frozen=True)
class SizeLimits:
    """Limits for arbitrary WIDTHxHEIGHT sizes (the gpt-image-2 family's published ones)."""

    multiple: int = 16
    max_edge: int = 3840
    min_pixels: int = 655_360
    max_pixels: int = 3840 * 2160
    max_ratio: float = 3.0


@dataclass(frozen=True)
class ImageModelSpec:
    family: str
    sizes: tuple[str, ...] = GPT_SIZES  # the offered presets; the first is the default
    size_limits: SizeLimits | None = None  # set when any WIDTHxHEIGHT within limits works
    qualities: tuple[str, ...] = GPT_QUALITIES  # empty: the parameter is never sent
    max_n: int = 10
    backgrounds: tuple[str, ...] = GPT_BACKGROUNDS
    output_formats: tuple[str, ...] = GPT_FORMATS
    styles: tuple[str, ...] = ()
    streaming: bool = True  # partial images over SSE
    retired: str = ""  # the date the provider retired it, if it did
    replacement: str = ""
    known: bool = True

    @property
    def compression(self) -> bool:
        return any(f in self.output_formats for f in ("jpeg", "webp"))


_GPT_CUSTOM = SizeLimits()
_LEGACY = dict(backgrounds=(), output_formats=(), streaming=False)

# Longest matching prefix wins, so "gpt-image-1.5" is not the retired "gpt-image-1".
FAMILIES: dict[str, ImageModelSpec] = {
    "gpt-image-2.6": ImageModelSpec("gpt-image-2.6"),
    "gpt-image-2.5": ImageModelSpec(
        "gpt-image-2.5",
        size_limits=_GPT_CUSTOM,
        qualities=(*GPT_QUALITIES, "xhigh", "max"),
    ),
    "gpt-image-2": ImageModelSpec("gpt-image-2", size_limits=_GPT_CUSTOM),
    "gpt-image-1.5": ImageModelSpec("gpt-image-1.5"),
    "gpt-image-1-mini": ImageModelSpec("gpt-image-1-mini"),
    "gpt-image-1": ImageModelSpec(
        "gpt-image-1", retired="2026-10-23", replacement="gpt-image-2 or gpt-image-1.5"
    ),
    "gpt-image": ImageModelSpec("gpt-image"),
    "chatgpt-image": ImageModelSpec("chatgpt-image"),
    "dall-e-3": ImageModelSpec(
        "dall-e-3",
        sizes=("1024x1024", "1792x1024", "1024x1792"),
        qualities=("standard", "hd"),
        max_n=1,
        styles=("vivid", "natural"),
        retired="2026-05-12",
        replacement="gpt-image-2",
        **_LEGACY,
    ),
    "dall-e-2": ImageModelSpec(
        "dall-e-2",
        sizes=("1024x1024", "512x512", "256x256"),
        qualities=(),
        retired="2026-05-12",
        replacement="gpt-image-2",
        **_LEGACY,
    ),
}

# Servers Parley does not know (LocalAI, a Stable Diffusion wrapper...): send only what
# every Images API accepts, let the user type any size, and let the server decide.
UNKNOWN = ImageModelSpec(
    "unknown",
    sizes=(SERVER_DEFAULT, "1024x1024", "512x512", "256x256", "1536x1024", "1024x1536"),
    size_limits=SizeLimits(
        # No more than lib.images.MAX_IMAGE_PIXELS, which refuses anything larger anyway:
        # a request for a bigger image would be billed and then thrown away.
        multiple=1,
        max_edge=8192,
        min_pixels=1,
        max_pixels=4096**2,
        max_ratio=8,
    ),
    qualities=(),
    known=False,
    **_LEGACY,
)


def spec_for(model: str) -> ImageModelSpec:
    """What `model` accepts: its family's spec, or the permissive one for unknown models."""
    name = _SNAPSHOT.sub("", model.split("/")[-1].strip().lower())
    for prefix in sorted(FAMILIES, key=len, reverse=True):
        if name.startswith(prefix):
            return FAMILIES[prefix]
    return UNKNOWN


def is_retired(model: str) -> bool:
    return bool(spec_for(model).retired)


def looks_like_image_model(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _IMAGE_WORDS)


@dataclass(frozen=True)
class ModelChoice:
    names: list[str]  # current models first, retired ones last
    default: str | None  # never a retired model; None when only retired ones are known
    note: str | None = None


def choose_image_models(server_models: list[str] | None, configured: str) -> ModelChoice:
    """The image models to offer and the default, from config, the server and the SDK."""
    note = None
    if server_models is None:
        # Without the server's word, offer only models the SDK does not mark as retired.
        found = [m for m in sdk_image_models() if not is_retired(m)]
        note = "Could not read the server's model list; showing the image models the SDK knows."
    else:
        found = [m for m in server_models if looks_like_image_model(m)]
        if not found:
            note = (
                "The server lists no image models; type the model's name, or set "
                "PARLEY_IMAGE_MODEL."
            )
    names = list(dict.fromkeys([configured, *found])) if configured else list(dict.fromkeys(found))
    current = [m for m in names if not is_retired(m)]
    retired = [m for m in names if is_retired(m)]
    return ModelChoice(current + retired, current[0] if current else None, note)


def describe(model: str) -> str:
    """A label for a model list: retired models say so."""
    spec = spec_for(model)
    return f"{model} (retired {spec.retired})" if spec.retired else model


@dataclass
class ImageRequest:
    """One generation: the prompt and the options, as the user chose them."""

    prompt: str
    model: str
    size: str = "auto"
    quality: str = "auto"
    n: int = 1
    background: str = "auto"
    output_format: str = "png"
    compression: int | None = None  # 0-100, jpeg and webp only
    partial_images: int = 0  # > 0 streams that many previews
    style: str | None = None  # dall-e-3 only

    @property
    def spec(self) -> ImageModelSpec:
        return spec_for(self.model)


def default_request(prompt: str, model: str) -> ImageRequest:
    """A request with the defaults `model` accepts."""
    spec = spec_for(model)
    return ImageRequest(
        prompt=prompt,
        model=model,
        size=spec.sizes[0],
        quality=spec.qualities[0] if spec.qualities else "auto",
        background=spec.backgrounds[0] if spec.backgrounds else "auto",
        output_format=spec.output_formats[0] if spec.output_formats else "png",
        style=spec.styles[0] if spec.styles else None,
    )


def normalized(request: ImageRequest) -> ImageRequest:
    """The request with its prompt and size tidied (whitespace, "1024 X 1024")."""
    size = request.size.strip().lower().replace(" ", "").replace("×", "x")
    return replace(request, prompt=request.prompt.strip(), model=request.model.strip(), size=size)


def validate(request: ImageRequest) -> None:
    """Raise InvalidInputError, naming the problem, unless the model accepts `request`."""
    if not request.model:
        raise InvalidInputError("Choose an image model.")
    spec = request.spec
    model = request.model
    if not request.prompt:
        raise InvalidInputError("Write a prompt first: describe the image you want.")
    if len(request.prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            f"The prompt is {len(request.prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}."
        )
    _check_size(model, spec, request.size)
    _check_choice(model, "quality", request.quality, spec.qualities, default="auto")
    _check_choice(model, "background", request.background, spec.backgrounds, default="auto")
    _check_choice(model, "output format", request.output_format, spec.output_formats, "png")
    if request.style is not None:
        _check_choice(model, "style", request.style, spec.styles, default=None)
    if not 1 <= request.n <= spec.max_n:
        raise InvalidInputError(
            f"{model} makes 1 image per request."
            if spec.max_n == 1
            else f"{model} makes between 1 and {spec.max_n} images per request."
        )
    if request.background == "transparent" and request.output_format not in ALPHA_FORMATS:
        raise InvalidInputError(
            f"A transparent background needs PNG or WebP output, not "
            f"{request.output_format.upper()}."
        )
    if request.compression is not None:
        if request.output_format not in ("jpeg", "webp"):
            raise InvalidInputError("Compression applies to JPEG and WebP output only.")
        if not 0 <= request.compression <= 100:
            raise InvalidInputError("Compression must be between 0 and 100.")
    _check_partials(model, spec, request)


def _check_choice(
    model: str, what: str, value: str, allowed: tuple[str, ...], default: str | None
) -> None:
    if allowed and value not in allowed:
        raise InvalidInputError(
            f"{model} does not accept the {what} “{value}”. Choose one of: {', '.join(allowed)}."
        )
    if not allowed and value != default:
        raise InvalidInputError(f"{model} has no {what} setting; leave it at “{default}”.")


def _check_size(model: str, spec: ImageModelSpec, size: str) -> None:
    if size in spec.sizes:
        return
    limits = spec.size_limits
    match = _SIZE.match(size)
    if limits is None or match is None:
        offered = ", ".join(spec.sizes)
        extra = " or WIDTHxHEIGHT" if limits else ""
        raise InvalidInputError(
            f"{model} does not accept the size “{size}”. Choose one of: {offered}{extra}."
        )
    width, height = int(match[1]), int(match[2])
    problem = _size_problem(width, height, limits)
    if problem:
        raise InvalidInputError(f"{model} does not accept the size {size}: {problem}.")


def _size_problem(width: int, height: int, limits: SizeLimits) -> str:
    if width <= 0 or height <= 0:
        return "width and height must be positive"
    if width % limits.multiple or height % limits.multiple:
        return f"width and height must both be multiples of {limits.multiple}"
    if max(width, height) > limits.max_edge:
        return f"the longer edge may be at most {limits.max_edge} pixels"
    if max(width, height) / min(width, height) > limits.max_ratio:
        return f"the aspect ratio must be between 1:{limits.max_ratio:g} and {limits.max_ratio:g}:1"
    pixels = width * height
    if not limits.min_pixels <= pixels <= limits.max_pixels:
        return (
            f"it has {pixels:,} pixels; between {limits.min_pixels:,} and "
            f"{limits.max_pixels:,} are allowed"
        )
    return ""


def _check_partials(model: str, spec: ImageModelSpec, request: ImageRequest) -> None:
    if not request.partial_images:
        return
    if not spec.streaming:
        raise InvalidInputError(f"{model} cannot stream previews; turn live previews off.")
    if not 0 < request.partial_images <= MAX_PARTIAL_IMAGES:
        raise InvalidInputError(f"Live previews: between 1 and {MAX_PARTIAL_IMAGES} partials.")
    if request.n > 1:
        # A streamed request reports usage per completed image in a way that cannot be
        # attributed reliably for n > 1, so Parley streams single images only.
        raise InvalidInputError("Live previews work with one image at a time; set n to 1.")


def request_params(request: ImageRequest) -> dict[str, Any]:
    """The keyword arguments for `client.images.generate`: only what the model accepts
    and what differs from its defaults, so strict servers accept the request."""
    spec = request.spec
    params: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
    if request.size not in (SERVER_DEFAULT, "auto"):
        params["size"] = request.size
    if spec.qualities and request.quality != "auto":
        params["quality"] = request.quality
    if spec.backgrounds and request.background != "auto":
        params["background"] = request.background
    if spec.output_formats and request.output_format != "png":
        params["output_format"] = request.output_format
    if request.compression is not None:
        params["output_compression"] = request.compression
    if request.n > 1:
        params["n"] = request.n
    if request.style and spec.styles:
        params["style"] = request.style
    if request.partial_images:
        params["stream"] = True
        params["partial_images"] = request.partial_images
    return params
