"""Drives the fake OpenAI server with the real ``openai`` SDK, so the fake stays honest."""

from __future__ import annotations

import base64
import io
import json
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from PIL import Image

from tests.fake_images import prompt_colour
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOpenAI) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    yield sdk
    sdk.close()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def decode_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    return img


def test_models_list_follows_the_attribute(server: FakeOpenAI, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == server.models
    server.models = ["local-llama"]
    assert [m.id for m in client.models.list()] == ["local-llama"]


def test_plain_chat_echoes_and_records(server: FakeOpenAI, client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="gpt-5-mini", messages=user("hi there"))
    assert resp.choices[0].message.content == "Echo: hi there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 2
    assert resp.usage.completion_tokens == 3
    (req,) = server.requests_to("/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.json["messages"] == user("hi there")


def test_streaming_with_include_usage(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.script("The quick brown fox", chunk_size=3)
    chunks = list(
        client.chat.completions.create(
            model="gpt-5", messages=user("x"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The quick brown fox"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_usage_can_be_omitted(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.script("no usage here", usage=False)
    chunks = list(
        client.chat.completions.create(
            model="gpt-5", messages=user("x"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.choices and c.usage is None for c in chunks)
    server.send_usage = False
    assert client.chat.completions.create(model="m", messages=user("x")).usage is None


def test_n_choices_stream_distinct_texts(client: openai.OpenAI) -> None:
    texts: dict[int, str] = {}
    for chunk in client.chat.completions.create(
        model="gpt-5", messages=user("pick"), n=3, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert sorted(texts) == [0, 1, 2]
    assert texts[0] == "Echo: pick" and len(set(texts.values())) == 3


def test_stop_and_max_tokens(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.script("alpha beta END gamma")
    resp = client.chat.completions.create(model="m", messages=user("x"), stop=["END"])
    assert resp.choices[0].message.content == "alpha beta "
    assert resp.choices[0].finish_reason == "stop"
    server.script("one two three four five")
    resp = client.chat.completions.create(model="m", messages=user("x"), max_tokens=2)
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == ("one two", "length")


@pytest.mark.parametrize(
    ("status", "exc", "code"),
    [
        (401, openai.AuthenticationError, "invalid_api_key"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, None),
        (404, openai.NotFoundError, "model_not_found"),
    ],
)
def test_status_errors_map_to_sdk_exceptions(
    server: FakeOpenAI, client: openai.OpenAI, status: int, exc: type, code: str | None
) -> None:
    server.fail(status, retry_after=7 if status == 429 else None)
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="gpt-5", messages=user("x"))
    assert info.value.status_code == status and info.value.code == code
    assert set(info.value.body) == {"message", "type", "param", "code"}
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"
    # Faults are one-shot: the next request goes through.
    assert client.chat.completions.create(model="gpt-5", messages=user("ok")).choices


def test_context_limit_and_route_filter(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.context_limit = 3
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=user("one two three four"))
    assert info.value.code == "context_length_exceeded"
    server.fail(400, code="content_policy_violation", route="/images/")
    assert client.chat.completions.create(model="m", messages=user("ok")).choices
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gpt-image-2", prompt="forbidden")
    assert info.value.code == "content_policy_violation"


def test_api_key_strict_models_and_reset(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.api_key = "sk-other"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    server.reset()
    server.strict_models = True
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=user("x"))
    assert "gpt-9" in info.value.message
    server.script("scripted")
    server.fail(500, times=2)
    server.reset()
    assert server.requests == [] and not server.strict_models
    reply = client.chat.completions.create(model="gpt-9", messages=user("x"))
    assert reply.choices[0].message.content == "Echo: x"


def test_drop_after_raises_connection_error_mid_stream(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    server.script("abcdefghijklmnopqrstuvwxyz", chunk_size=2)
    server.drop_after(3)
    received = ""
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=user("x"), stream=True):
            received += chunk.choices[0].delta.content or ""
    assert received == "abcdef"


def test_hang_times_out(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.hang(3)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=user("x"), timeout=0.3)
    assert time.monotonic() - start < 2


def test_closing_stream_early_is_seen_as_disconnect(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    server.script("word " * 200, chunk_delay=0.01)
    stream = client.chat.completions.create(model="m", messages=user("x"), stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    assert server.wait_for_disconnects(1)
    # A stream read to the end is not a disconnect.
    list(client.chat.completions.create(model="m", messages=user("x"), stream=True))
    time.sleep(0.05)
    assert server.disconnects == 1


def test_embeddings_are_lexical_and_base64_by_default(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    texts = ["R data frame", "how to create a data frame in R", "plotting graphics"]
    resp = client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert server.requests[-1].json["encoding_format"] == "base64"  # the SDK's silent default
    q, near, far = (d.embedding for d in resp.data)
    assert len(q) == 256 and math.isclose(cosine(q, q), 1.0, rel_tol=1e-5)
    assert cosine(q, near) > 0.5 > abs(cosine(q, far)) + 0.3
    floats = client.embeddings.create(
        model="e", input="R data frame", encoding_format="float", dimensions=64
    )
    assert len(floats.data[0].embedding) == 64 and floats.usage.prompt_tokens == 3


def test_embedding_limits_and_disabled_endpoint(server: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="e", input=["x"] * 2049)
    server.embeddings_enabled = False
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="e", input="x")


def test_images_b64_and_url(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.revise_prompts = True
    resp = client.images.generate(model="gpt-image-2", prompt="a red fox", n=2)
    first, second = (base64.b64decode(d.b64_json or "") for d in resp.data or [])
    assert decode_png(first).getpixel((0, 0)) == prompt_colour("a red fox")
    assert first != second and resp.data and resp.data[0].revised_prompt
    assert resp.usage is not None and resp.usage.total_tokens > 0
    server.image_shape = "url"
    resp = client.images.generate(model="dall-e-3", prompt="a blue whale")
    url = (resp.data or [])[0].url or ""
    assert url.startswith(server.url) and resp.usage is None
    with urllib.request.urlopen(url, timeout=5) as fetched:
        assert decode_png(fetched.read()).size == (64, 64)


def test_corrupt_images(server: FakeOpenAI, client: openai.OpenAI) -> None:
    server.corrupt_images = True
    resp = client.images.generate(model="gpt-image-2", prompt="x")
    with pytest.raises(OSError):
        decode_png(base64.b64decode((resp.data or [])[0].b64_json or ""))


def test_image_streaming_events(client: openai.OpenAI) -> None:
    events = list(
        client.images.generate(
            model="gpt-image-2", prompt="a lighthouse", stream=True, partial_images=2
        )
    )
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"
    ]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert decode_png(base64.b64decode(events[-1].b64_json)).getpixel((0, 0)) == prompt_colour(
        "a lighthouse"
    )


def test_twenty_concurrent_streams_get_their_own_answers(
    server: FakeOpenAI, client: openai.OpenAI
) -> None:
    server.chunk_delay = 0.005
    results: dict[int, str] = {}
    barrier = threading.Barrier(20)

    def run(i: int) -> None:
        barrier.wait()
        stream = client.chat.completions.create(
            model="m", messages=user(f"session {i}"), stream=True
        )
        results[i] = "".join(c.choices[0].delta.content or "" for c in stream)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results == {i: f"Echo: session {i}" for i in range(20)}
    assert server.disconnects == 0 and server.errors == []


def test_unknown_route_and_stop(server: FakeOpenAI) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.base_url}/nope", timeout=5)
    assert info.value.code == 404
    assert set(json.loads(info.value.read())["error"]) == {"message", "type", "param", "code"}
    info.value.close()
    url = server.base_url
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/models", timeout=2)


def test_standalone_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0", "--models", "a,b"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().split()[-1]
        with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0) as sdk:
            assert [m.id for m in sdk.models.list()] == ["a", "b"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_request_hanging_across_reset_does_not_take_the_next_script(
    server: FakeOpenAI,
) -> None:
    slow = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=5)
    server.hang(0.5)
    results: list[object] = []

    def late() -> None:
        try:
            results.append(slow.chat.completions.create(model="m", messages=user("old")))
        except openai.APIConnectionError as exc:
            results.append(exc)

    worker = threading.Thread(target=late)
    worker.start()
    deadline = time.monotonic() + WAIT  # until the request is in, and hanging
    while not server.requests_to("/chat/completions") and time.monotonic() < deadline:
        time.sleep(0.01)
    server.reset()
    server.script("meant for the new test")
    worker.join()
    assert isinstance(results[0], openai.APIConnectionError)
    fresh = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    reply = fresh.chat.completions.create(model="m", messages=user("new"))
    assert reply.choices[0].message.content == "meant for the new test"
