"""lib.images against the local OpenAI-compatible server: both response shapes, streamed
previews, decoding, usage and cost, and every failure the Images page has to explain."""

from __future__ import annotations

import base64
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from PIL import Image

from lib import errors, images, outbound
from lib.image_models import ImageRequest, default_request
from lib.images import GenerationResult, Preview, checked_image, fetch_image, generate
from lib.pricing import PriceTable
from tests.fake_images import prompt_colour, sparse_png
from tests.fake_openai import FakeOpenAI


def client(server: FakeOpenAI, *, retries: int = 0, timeout: float = 10) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=retries, timeout=timeout
    )


def run(api: openai.OpenAI, req: ImageRequest, **kwargs: object) -> list:
    return list(generate(api, req, **kwargs))


def req(prompt: str = "a red kite over the sea", **changes: object) -> ImageRequest:
    model = str(changes.pop("model", "gpt-image-2"))
    return dataclasses.replace(default_request(prompt, model), **changes)


def pixel(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").getpixel((0, 0))


def test_b64_json_images_are_decoded_priced_and_match_the_prompt(
    openai_server: FakeOpenAI, data_dir: Path
) -> None:
    prices = PriceTable.load(data_dir)
    events = run(client(openai_server), req(n=2), prices=prices)
    (result,) = events
    assert isinstance(result, GenerationResult)
    assert len(result.images) == 2 and result.images[0].data != result.images[1].data
    first = result.images[0]
    assert (first.mime, first.extension, first.width) == ("image/png", "png", 64)
    assert pixel(first.data) == prompt_colour("a red kite over the sea")
    assert result.usage is not None and result.usage.output_tokens == 544
    expected = (result.usage.input_tokens * 5.0 + result.usage.output_tokens * 32.0) / 1e6
    assert result.cost == pytest.approx(expected)
    sent = openai_server.requests_to("/images/generations")[-1].json
    assert sent == {"model": "gpt-image-2", "prompt": "a red kite over the sea", "n": 2}


# What `outbound.image_allow` gives for the fake server as the operator's configured one.
TRUSTED_FAKE = ["127.0.0.1"]


def test_url_shape_is_fetched_at_once_without_the_api_key(openai_server: FakeOpenAI) -> None:
    openai_server.image_shape = "url"
    openai_server.revise_prompts = True
    (result,) = run(client(openai_server), req(model="dall-e-3"), allow=TRUSTED_FAKE)
    image = result.images[0]
    assert pixel(image.data) == prompt_colour("a red kite over the sea")
    assert result.revised_prompt == "A detailed, vivid illustration of a red kite over the sea"
    assert result.usage is None and result.cost is None  # DALL-E reports no usage
    fetch = [r for r in openai_server.requests if r.path.startswith("/files/")]
    assert len(fetch) == 1 and "authorization" not in fetch[0].headers


def test_a_loopback_image_url_from_a_server_not_trusted_is_never_fetched(
    openai_server: FakeOpenAI,
) -> None:
    openai_server.image_shape = "url"
    with pytest.raises(errors.ProviderError, match="could not fetch the image") as caught:
        run(client(openai_server), req(model="dall-e-3"))
    assert "127.0.0.1" not in str(caught.value)
    assert [r for r in openai_server.requests if r.path.startswith("/files/")] == []


def test_streamed_previews_arrive_before_the_result(openai_server: FakeOpenAI) -> None:
    events = run(client(openai_server), req(partial_images=2))
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.index for p in previews] == [0, 1] and isinstance(events[-1], GenerationResult)
    final = events[-1].images[0].data
    assert all(p.data != final for p in previews)  # the partial frames differ from the final
    assert pixel(final) == prompt_colour("a red kite over the sea")
    assert events[-1].usage is not None
    assert openai_server.requests_to("/images/generations")[-1].json["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_an_image_that_fails_to_decode_is_refused(openai_server: FakeOpenAI, stream: bool) -> None:
    openai_server.corrupt_images = True
    with pytest.raises(errors.ProviderError, match="could not be decoded"):
        run(client(openai_server), req(partial_images=2 if stream else 0))


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (
            dict(status=400, code="content_policy_violation"),
            errors.ContentRefused,
            "content policy",
        ),
        (dict(status=400, code="moderation_blocked"), errors.ContentRefused, "content policy"),
        (
            dict(status=400, param="size", message="Invalid size '1536x864'."),
            errors.ModelRejected,
            "Invalid size",
        ),
        (dict(status=404), errors.ModelRejected, "does not exist"),
        (dict(status=429, times=10, retry_after=0), errors.RateLimited, r"Rate limited \(429\)"),
        (dict(status=500, times=10), errors.ServerFailed, "server failed"),
    ],
)
def test_server_refusals_become_clear_domain_errors(
    openai_server: FakeOpenAI, fault: dict, error: type, message: str
) -> None:
    openai_server.fail(**fault)
    with pytest.raises(error, match=message) as caught:
        run(client(openai_server), req())
    assert "Traceback" not in str(caught.value)


def test_429_is_retried_before_failing(openai_server: FakeOpenAI) -> None:
    openai_server.fail(429, retry_after=0, times=10)
    with pytest.raises(errors.RateLimited):
        run(client(openai_server, retries=2), req())
    # Parley's own 3 retries; the SDK's are switched off for image generation.
    assert len(openai_server.requests_to("/images/generations")) == 4


def test_a_timed_out_generation_is_not_resent(openai_server: FakeOpenAI) -> None:
    # It may already be running (and billed) on the server.
    openai_server.hang(2, route="/images")
    with pytest.raises(errors.RequestTimedOut):
        run(client(openai_server, retries=3), req(), timeout=0.3)
    assert len(openai_server.requests_to("/images/generations")) == 1


def test_a_429_that_clears_on_retry_succeeds(openai_server: FakeOpenAI) -> None:
    openai_server.fail(429, retry_after=0)
    (result,) = run(client(openai_server, retries=2), req())
    assert len(result.images) == 1


def test_a_slow_server_times_out(openai_server: FakeOpenAI) -> None:
    openai_server.hang(3, route="/images")
    with pytest.raises(errors.RequestTimedOut):
        run(client(openai_server), req(), timeout=0.5)


def test_a_slow_server_within_the_timeout_is_fine(openai_server: FakeOpenAI) -> None:
    openai_server.hang(0.3, route="/images")
    (result,) = run(client(openai_server, timeout=0.1), req(), timeout=5)
    assert len(result.images) == 1  # the image timeout overrides the client's chat timeout


def test_a_dropped_stream_is_an_error_not_a_hang(openai_server: FakeOpenAI) -> None:
    openai_server.drop_after(1)
    with pytest.raises(errors.ProviderError):
        run(client(openai_server), req(partial_images=2))


@pytest.mark.parametrize(
    "changes",
    [
        {"background": "transparent", "output_format": "jpeg"},
        {"model": "gpt-image-1.5", "size": "1792x1024"},
        {"prompt": "   "},
        {"model": "dall-e-3", "n": 3, "size": "1024x1024", "quality": "standard"},
    ],
)
def test_invalid_requests_fail_before_anything_is_sent(
    openai_server: FakeOpenAI, changes: dict
) -> None:
    with pytest.raises(errors.InvalidInputError):
        generate(client(openai_server), req(**changes))  # raises at call time, not on iteration
    assert openai_server.requests == []


def test_whitespace_in_prompt_and_size_is_tidied(openai_server: FakeOpenAI) -> None:
    run(client(openai_server), req(prompt="  a fox \n", size=" 1536 X 1024 "))
    sent = openai_server.requests_to("/images/generations")[-1].json
    assert sent["prompt"] == "a fox" and sent["size"] == "1536x1024"


def test_local_servers_cost_nothing(openai_server: FakeOpenAI, data_dir: Path) -> None:
    (result,) = run(
        client(openai_server),
        req(model="sdxl"),
        prices=PriceTable.load(data_dir),
        provider="ollama",
    )
    assert result.cost == 0.0


def test_fetch_image_refuses_non_http_urls_and_reads_data_urls() -> None:
    with pytest.raises(errors.ProviderError, match="could not fetch"):
        fetch_image("file:///etc/passwd", allow=["0.0.0.0/0"])
    png = io.BytesIO()
    Image.new("RGB", (2, 2), (1, 2, 3)).save(png, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    assert fetch_image(data_url) == png.getvalue()


def test_an_expired_url_gets_the_one_generic_message(openai_server: FakeOpenAI) -> None:
    # The same words as a refused address or a closed port (tests/test_outbound.py).
    with pytest.raises(errors.ProviderError) as caught:
        fetch_image(f"{openai_server.url}/files/gone.png", allow=TRUSTED_FAKE)
    assert str(caught.value) == f"{outbound.FETCH_FAILED} {outbound.FETCH_HINT}"


@pytest.mark.parametrize(
    "data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a\x00"]
)
def test_checked_image_rejects_garbage(data: bytes) -> None:
    with pytest.raises(errors.ProviderError, match="could not be decoded"):
        checked_image(data)


def test_checked_image_rejects_a_truncated_png() -> None:
    buffer = io.BytesIO()
    Image.effect_noise((128, 128), 50).save(buffer, format="PNG")
    with pytest.raises(errors.ProviderError):
        checked_image(buffer.getvalue()[:-200])


# -- images that would exhaust memory (issue 9, part 3) ---------------------------------------


def peak_rss_growth_mb(call: str) -> float:
    """Peak RSS growth (MB) of a fresh interpreter while it runs `call` on `data`; a
    subprocess, because a process's high-water mark never comes back down."""
    script = f"""
import sys
from bench.image_memory import peak_rss_mb
from lib.images import checked_image
from tests.fake_images import sparse_png
data = sparse_png(13000, 13000)
before = peak_rss_mb()
try:
    {call}
except Exception as exc:
    print(type(exc).__name__, file=sys.stderr)
print(peak_rss_mb() - before)
"""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = sparse_png(13000, 13000)  # 20 KB of PNG, 169 million pixels
    assert len(bomb) < 50_000
    with pytest.raises(errors.ProviderError, match="larger than Parley opens") as caught:
        checked_image(bomb)
    assert "16.8 million pixels" in str(caught.value) and "smaller size" in str(caught.value)
    # With warnings not errors (as in production), Pillow lets it open; the header check
    # still refuses it, and decoding never starts: measured, not assumed.
    assert peak_rss_growth_mb("checked_image(data)") < 20  # Pillow needs ~161 MB for it


def test_an_image_over_the_limit_but_under_pillows_is_refused() -> None:
    # 20 MP: Pillow itself would open it without a word (its warning starts at 89 MP).
    with pytest.raises(errors.ProviderError, match="5000x4000"):
        checked_image(sparse_png(5000, 4000))


def test_the_largest_accepted_image_is_accepted() -> None:
    image = checked_image(sparse_png(4096, 4096))
    assert (image.width, image.height) == (4096, 4096)
    with pytest.raises(errors.ProviderError):
        checked_image(sparse_png(4096, 4097))


def test_bytes_are_capped_before_opening(monkeypatch: pytest.MonkeyPatch) -> None:
    data = sparse_png(64, 64)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(data) - 1)
    with pytest.raises(errors.ProviderError, match="accepts at most"):
        checked_image(data)
