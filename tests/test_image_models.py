"""lib.image_models: which image models are offered, what each accepts, validation."""

from __future__ import annotations

import dataclasses

import pytest

from lib import image_models, images
from lib.errors import InvalidInputError
from lib.image_models import (
    ImageRequest,
    choose_image_models,
    default_request,
    describe,
    request_params,
    spec_for,
    validate,
)
from lib.models import sdk_image_models


@pytest.mark.parametrize(
    ("model", "family", "retired"),
    [
        ("gpt-image-2", "gpt-image-2", False),
        ("gpt-image-2-2026-04-21", "gpt-image-2", False),
        ("gpt-image-2.5-flare-2026-09-08", "gpt-image-2.5", False),
        ("gpt-image-1.5", "gpt-image-1.5", False),
        ("gpt-image-1-mini", "gpt-image-1-mini", False),
        ("gpt-image-1", "gpt-image-1", True),
        ("dall-e-3", "dall-e-3", True),
        ("openai/dall-e-2", "dall-e-2", True),
        ("stable-diffusion-xl", "unknown", False),
    ],
)
def test_spec_for_matches_family_and_retirement(model: str, family: str, retired: bool) -> None:
    spec = spec_for(model)
    assert spec.family == family
    assert bool(spec.retired) is retired


def test_every_sdk_model_has_a_known_spec() -> None:
    # The SDK's list is a source of names: each must map to a real family, not "unknown".
    unknown = [m for m in sdk_image_models() if not spec_for(m).known]
    assert unknown == []


def test_server_list_offers_its_image_models_and_never_defaults_to_a_retired_one() -> None:
    server = ["gpt-5-mini", "dall-e-3", "gpt-image-1.5", "text-embedding-3-small"]
    choice = choose_image_models(server, configured="dall-e-3")
    assert choice.default == "gpt-image-1.5"
    assert choice.names == ["gpt-image-1.5", "dall-e-3"]  # retired ones still usable, last
    assert describe("dall-e-3") == "dall-e-3 (retired 2026-05-12)"


def test_only_retired_models_means_no_default() -> None:
    choice = choose_image_models(["dall-e-2", "dall-e-3"], configured="dall-e-3")
    assert choice.default is None and set(choice.names) == {"dall-e-2", "dall-e-3"}


def test_configured_model_comes_first_even_if_the_server_does_not_list_it() -> None:
    choice = choose_image_models(["gpt-image-2"], configured="flux-schnell")
    assert choice.names[0] == "flux-schnell" and choice.default == "flux-schnell"


def test_without_a_server_list_the_sdk_names_minus_retired_are_offered() -> None:
    choice = choose_image_models(None, configured="gpt-image-2")
    assert choice.note and "gpt-image-1.5" in choice.names
    assert not {"dall-e-2", "dall-e-3", "gpt-image-1"} & set(choice.names)


def test_a_server_without_image_models_says_so() -> None:
    choice = choose_image_models(["llama3.2"], configured="gpt-image-2")
    assert choice.names == ["gpt-image-2"] and "no image models" in (choice.note or "")


def request(**changes: object) -> ImageRequest:
    return dataclasses.replace(default_request("a lighthouse at dusk", "gpt-image-2"), **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt": ""}, "Write a prompt"),
        ({"prompt": "x" * 32_001}, "limit is 32,000"),
        ({"model": ""}, "Choose an image model"),
        ({"size": "1792x1024", "model": "gpt-image-1.5"}, "does not accept the size"),
        ({"size": "1000x1000"}, "multiples of 16"),
        ({"size": "4096x1024"}, "at most 3840"),
        ({"size": "3840x1024"}, "aspect ratio"),
        ({"size": "512x512"}, "pixels"),
        ({"size": "big"}, "WIDTHxHEIGHT"),
        ({"quality": "hd"}, "does not accept the quality"),
        ({"quality": "max"}, "does not accept the quality"),
        ({"n": 11}, "between 1 and 10"),
        ({"n": 0}, "between 1 and 10"),
        ({"background": "transparent", "output_format": "jpeg"}, "needs PNG or WebP"),
        ({"output_format": "bmp"}, "output format"),
        ({"compression": 50}, "JPEG and WebP"),
        ({"compression": 101, "output_format": "webp"}, "between 0 and 100"),
        ({"partial_images": 4}, "between 1 and 3"),
        ({"partial_images": 2, "n": 2}, "one image at a time"),
        ({"style": "vivid"}, "style"),
    ],
)
def test_invalid_combinations_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate(request(**changes))


@pytest.mark.parametrize(
    "req",
    [
        default_request("a cat", "dall-e-3"),
        dataclasses.replace(default_request("a cat", "dall-e-3"), quality="hd", style="natural"),
        dataclasses.replace(default_request("a cat", "dall-e-2"), size="256x256", n=4),
        dataclasses.replace(default_request("a cat", "gpt-image-2.5-sunburst"), quality="max"),
        request(size="1536x864", background="transparent", output_format="webp", compression=80),
        request(size="2048x2048"),  # the 16-multiple, 4 MP square gpt-image-2 accepts
        request(partial_images=3),
        dataclasses.replace(default_request("a cat", "sdxl-turbo"), size="640x480"),
    ],
)
def test_valid_requests_pass(req: ImageRequest) -> None:
    validate(req)


@pytest.mark.parametrize(
    ("model", "changes"),
    [
        ("dall-e-3", {"n": 2}),  # DALL-E 3 makes one image per request
        ("dall-e-3", {"size": "auto"}),
        ("dall-e-2", {"quality": "hd"}),
        ("dall-e-2", {"background": "transparent"}),
        ("dall-e-2", {"partial_images": 1}),
        ("gpt-image-1.5", {"size": "1536x864"}),  # custom sizes are gpt-image-2 and 2.5 only
    ],
)
def test_model_specific_limits(model: str, changes: dict) -> None:
    with pytest.raises(InvalidInputError, match=model):
        validate(dataclasses.replace(default_request("a cat", model), **changes))


def test_request_params_send_only_what_differs_and_the_model_accepts() -> None:
    assert request_params(request()) == {"model": "gpt-image-2", "prompt": "a lighthouse at dusk"}
    params = request_params(
        request(size="1024x1536", quality="high", n=2, background="opaque", output_format="jpeg")
    )
    assert params["size"] == "1024x1536" and params["quality"] == "high" and params["n"] == 2
    assert params["background"] == "opaque" and params["output_format"] == "jpeg"
    assert "response_format" not in params  # unsupported by GPT image models
    streamed = request_params(request(partial_images=2))
    assert streamed["stream"] is True and streamed["partial_images"] == 2
    legacy = request_params(default_request("a cat", "dall-e-3"))
    assert legacy == {
        "model": "dall-e-3",
        "prompt": "a cat",
        "size": "1024x1024",
        "quality": "standard",
        "style": "vivid",
    }
    unknown = request_params(default_request("a cat", "flux-dev"))
    assert unknown == {"model": "flux-dev", "prompt": "a cat"}  # the server's own defaults


@pytest.mark.parametrize("spec", [*image_models.FAMILIES.values(), image_models.UNKNOWN])
def test_no_spec_asks_for_an_image_parley_would_refuse(spec: image_models.ImageModelSpec) -> None:
    # lib.images refuses anything over MAX_IMAGE_PIXELS after it is made (and billed).
    if spec.size_limits is not None:
        assert spec.size_limits.max_pixels <= images.MAX_IMAGE_PIXELS
    for size in spec.sizes:
        if "x" in size:
            width, height = map(int, size.split("x"))
            assert width * height <= images.MAX_IMAGE_PIXELS
