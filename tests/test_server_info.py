"""Probing the model server (lib/server): which software it is, its context window, what it
can do and its tokenizer, against the local fake server in each flavour
(tests/fake_flavours.py), through the real SDK and sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from lib import errors, tokens
from lib.client import build_client
from lib.server import probe, window
from lib.server.capabilities import EVERYTHING, Capabilities, capabilities
from lib.server.tokenizer import DIALECTS, RETRY_AFTER_S, ServerCounter, counter_for_server
from lib.settings import Settings
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

MODEL = "tiny-llama"
LONG_WORDS = "supercalifragilisticexpialidocious antidisestablishmentarianism"


def client_for(server: FakeOpenAI, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=WAIT)


@pytest.fixture
def local(openai_server: FakeOpenAI) -> FakeOpenAI:
    """The fake serving one local model, as a small llama.cpp or Ollama setup would."""
    openai_server.models = [MODEL]
    return openai_server


def flavoured(server: FakeOpenAI, flavour: str | None, **options: Any) -> openai.OpenAI:
    if flavour:
        server.flavour(flavour, **options)
    return client_for(server)


@pytest.mark.parametrize(
    ("flavour", "provider", "expected"),
    [
        ("llama-server", "custom", "llama-server"),
        ("llama-server", "llamacpp", "llama-server"),
        ("llama-cpp-python", "custom", "llama-cpp-python"),
        ("llama-cpp-python", "llamacpp", "llama-cpp-python"),
        ("vllm", "custom", "vllm"),
        ("vllm", "vllm", "vllm"),
        ("ollama", "custom", "ollama"),
        ("ollama", "ollama", "ollama"),
        ("lmstudio", "custom", "lmstudio"),
        ("lmstudio", "lmstudio", "lmstudio"),
        (None, "custom", "unknown"),
    ],
)
def test_identify_tells_the_servers_apart(
    local: FakeOpenAI, flavour: str | None, provider: str, expected: str
) -> None:
    server = probe.identify(flavoured(local, flavour), provider)
    assert server.flavour == expected and server.listed
    assert list(server.models) == [MODEL]
    assert len(local.requests) <= 5  # the listing, then at most four 404s
    assert all(r.headers["authorization"] == "Bearer sk-test" for r in local.requests)


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_openai_and_azure_windows_are_not_probed(local: FakeOpenAI, provider: str) -> None:
    api = client_for(local)
    server = probe.identify(api, provider)
    assert server.flavour == provider
    assert window.context_window(api, server, "gpt-5-mini").tokens == 400_000
    assert local.requests == []


def test_openai_can_do_everything_without_being_asked(local: FakeOpenAI) -> None:
    api = client_for(local)
    assert capabilities(api, probe.identify(api, "openai"), "gpt-5-mini") == EVERYTHING
    assert local.requests == []


@pytest.mark.parametrize(
    ("flavour", "options", "tokens", "exact", "source"),
    [
        ("llama-server", {"n_ctx": 2048}, 2048, True, "llama-server /props"),
        ("vllm", {"n_ctx": 4096}, 4096, True, "vLLM /v1/models"),
        ("ollama", {"num_ctx": 8192}, 8192, True, "Ollama Modelfile num_ctx"),
        ("ollama", {"loaded_ctx": 6144, "num_ctx": 8192}, 6144, True, "Ollama /api/ps"),
        ("ollama", {}, 4096, False, "Ollama's default num_ctx"),
        ("ollama", {"context_length": 2048}, 2048, False, "Ollama's default num_ctx"),
        ("lmstudio", {"loaded_ctx": 4096, "n_ctx": 32768}, 4096, True, "LM Studio /api/v0/models"),
        ("lmstudio", {"n_ctx": 32768}, 32768, False, "LM Studio /api/v0/models"),
        ("llama-cpp-python", {}, None, False, "unknown"),  # it says so only when overflowed
        (None, {}, None, False, "unknown"),
    ],
)
def test_context_window_from_each_server(
    local: FakeOpenAI,
    flavour: str | None,
    options: dict,
    tokens: int | None,
    exact: bool,
    source: str,
) -> None:
    api = flavoured(local, flavour, **options)
    found = window.context_window(api, probe.identify(api, "custom"), MODEL)
    assert (found.tokens, found.exact, found.source) == (tokens, exact, source)
    assert found.for_trimming == (tokens or window.UNKNOWN_WINDOW)


def test_ollama_default_window_comes_with_a_warning(local: FakeOpenAI) -> None:
    api = flavoured(local, "ollama", context_length=131_072)
    found = window.context_window(api, probe.identify(api, "ollama"), MODEL)
    assert "num_ctx" in found.note and "131,072" in found.note and "4,096" in found.note


@pytest.mark.parametrize(
    ("model", "tokens"),
    [("gpt-5.4-mini", 400_000), ("gpt-4o-2024-08-06", 128_000), ("my-deployment", None)],
)
def test_openai_windows_come_from_the_table(
    local: FakeOpenAI, model: str, tokens: int | None
) -> None:
    api = client_for(local)
    found = window.context_window(api, probe.identify(api, "azure"), model)
    assert found.tokens == tokens and found.exact == (tokens is not None)


def _sdk_error(status: int, body: dict) -> openai.APIStatusError:
    import httpx2

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(status, json=body, request=request)
    return openai.APIStatusError(body["error"]["message"], response=response, body=body["error"])


def _wrapped(exc: BaseException) -> errors.ContextTooLong:
    try:
        raise errors.ContextTooLong("The request is longer than the model's context.") from exc
    except errors.ContextTooLong as outer:
        return outer


LLAMA_SERVER_BODY = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5000,
        "n_ctx": 4096,
    }
}


@pytest.mark.parametrize(
    ("error", "tokens"),
    [
        ("Requested tokens (24335) exceed context window of 2048", 2048),  # llama-cpp-python
        (
            "This model's maximum context length is 4096 tokens. However, you requested "
            "5000 tokens (4000 in the messages, 1000 in the completion).",
            4096,
        ),  # vLLM
        ("This model's maximum context length is 128,000 tokens.", 128_000),  # OpenAI
        (_sdk_error(400, LLAMA_SERVER_BODY), 4096),  # llama-server: the number is in the body
        (_wrapped(_sdk_error(400, LLAMA_SERVER_BODY)), 4096),  # read through Parley's error
        (_wrapped(ValueError("exceed context window of 512")), 512),
        ("The server failed (500): out of memory", None),
        (errors.ContextTooLong("The request is longer than the model's context."), None),
    ],
    ids=lambda v: str(v)[:30],
)
def test_window_learned_from_overflow_errors(error: Any, tokens: int | None) -> None:
    found = window.context_window_from_error(error)
    assert (found.tokens if found else None) == tokens
    if found:
        assert found.exact


@pytest.mark.parametrize(
    ("tokens", "counts_exact", "override", "expected"),
    [
        (2048, True, None, 2048),
        (2048, False, None, int(2048 / 1.15)),
        (None, True, None, window.UNKNOWN_WINDOW),
        (None, False, None, int(window.UNKNOWN_WINDOW / 1.15)),
        (2048, True, 1000, 1000),  # the conversation's override wins
        (None, False, 1000, int(1000 / 1.15)),
    ],
)
def test_trimming_window(tokens: int | None, counts_exact: bool, override: Any, expected: int):
    known = window.ContextWindow(tokens, "test", tokens is not None)
    assert window.trim_window(known, counts_exact=counts_exact, override=override) == expected


NOTHING_KNOWN = Capabilities()


@pytest.mark.parametrize(
    ("flavour", "options", "expected"),
    [
        (None, {}, Capabilities(True, True, True, None, None, False)),
        (
            "llama-server",
            {"embeddings": False},
            Capabilities(True, False, False, False, None, False),
        ),
        (
            "llama-server",
            {"vision": True, "tools": True},
            Capabilities(True, True, False, True, True, False),
        ),
        ("llama-cpp-python", {}, Capabilities(True, True, False, None, None, False)),
        ("vllm", {"embeddings": False}, Capabilities(True, False, False, None, None, False)),
        ("ollama", {}, Capabilities(True, True, False, False, False, False)),
        (
            "ollama",
            {"vision": True, "tools": True},
            Capabilities(True, True, False, True, True, False),
        ),
        ("lmstudio", {"vision": True}, Capabilities(True, False, False, True, None, False)),
        ("lmstudio", {"tools": True}, Capabilities(True, False, False, False, True, False)),
    ],
)
def test_capabilities_of_each_server(
    local: FakeOpenAI, flavour: str | None, options: dict, expected: Capabilities
) -> None:
    api = flavoured(local, flavour, **options)
    found = capabilities(api, probe.identify(api, "custom"), MODEL)
    assert found == expected
    # Asked without anything to act on: no reply, image or embedding was made.
    for request in local.requests:
        assert not (request.json or {}).get("messages") and not (request.json or {}).get("prompt")
        assert (request.json or {}).get("input") in (None, [], "Parley")


def test_lmstudio_embeddings_need_an_embedding_model(local: FakeOpenAI) -> None:
    local.models = [MODEL, "text-embedding-nomic-embed-text-v1.5"]
    api = flavoured(local, "lmstudio")
    assert capabilities(api, probe.identify(api, "lmstudio"), MODEL).embeddings is True


def test_the_fake_without_embeddings_has_none(local: FakeOpenAI) -> None:
    local.embeddings_enabled = False
    api = client_for(local)
    assert capabilities(api, probe.identify(api, "custom"), MODEL).embeddings is False


def test_a_refused_key_leaves_capabilities_unknown(local: FakeOpenAI) -> None:
    local.api_key = "sk-right"
    api = client_for(local, key="sk-wrong")
    server = probe.identify(api, "custom")
    assert capabilities(api, server, MODEL) == NOTHING_KNOWN
    assert window.context_window(api, server, MODEL) == window.UNKNOWN


@pytest.mark.parametrize(
    ("found", "feature", "message"),
    [
        (Capabilities(images=False), "images", "This server has no image generation."),
        (Capabilities(embeddings=False), "embeddings", "keyword"),
        (Capabilities(images=True), "images", None),
        (Capabilities(), "vision", None),  # unknown is not missing
    ],
)
def test_missing_says_it_plainly(found: Capabilities, feature: str, message: str | None):
    said = found.missing(feature)
    assert (said is None) if message is None else (message in said)


def test_a_slow_server_is_given_up_on_without_a_retry(local: FakeOpenAI) -> None:
    api = flavoured(local, "llama-server", slow={"/props": 2.0})
    answer = probe.probe(api, "GET", "/props", timeout=0.2)
    assert answer == probe.Answer(None)
    assert len(local.requests_to("/props")) == 1


def test_a_visitor_server_is_probed_through_the_outbound_guard(
    local: FakeOpenAI, data_dir: Path
) -> None:
    settings = Settings(
        provider="custom",
        base_url=local.base_url,
        api_key="sk-visitor",
        key_source="sidebar",
        chat_model=MODEL,
        embedding_model="",
        image_model="",
        data_dir=data_dir,
        server_trusted=False,
    )
    api = build_client(settings)
    assert probe.identify(api, "custom") == probe.Server("unknown")
    assert local.requests == []  # loopback is refused before any connection


@pytest.mark.parametrize(
    ("base_url", "root"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
        ("https://example.com/openai/v1", "https://example.com/openai"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_server_root(base_url: str, root: str) -> None:
    assert probe.server_root(base_url) == root


# Token counting


@pytest.mark.parametrize(
    ("flavour", "provider", "model", "counted_by"),
    [
        ("llama-server", "custom", MODEL, "server"),
        ("vllm", "vllm", MODEL, "server"),
        ("llama-cpp-python", "llamacpp", MODEL, "server"),
        ("ollama", "ollama", MODEL, "estimate"),
        ("lmstudio", "lmstudio", MODEL, "estimate"),
        (None, "custom", "gpt-4o", "estimate"),  # a name is no proof of the tokenizer
        (None, "openai", "gpt-4o", "tiktoken"),
    ],
)
def test_counts_use_the_servers_tokenizer_where_it_has_one(
    local: FakeOpenAI, flavour: str | None, provider: str, model: str, counted_by: str
) -> None:
    local.models = [model]
    api = flavoured(local, flavour)
    counter = counter_for_server(api, probe.identify(api, provider), model)
    estimate = tokens.counter_for(model).count(LONG_WORDS)
    if counted_by == "server":
        assert isinstance(counter, ServerCounter) and counter.exact
        assert counter.name == f"server:{local.base_url}:{model}"
        assert counter.count(LONG_WORDS) == 2 != estimate  # the fake's tokenizer: words
    else:
        assert counter.exact == (counted_by == "tiktoken")
        assert counter.count(LONG_WORDS) == estimate
        assert counter.name == "o200k_base"


def test_the_server_counter_asks_once_per_text(local: FakeOpenAI) -> None:
    api = flavoured(local, "llama-server")
    counter = counter_for_server(api, probe.identify(api, "llamacpp"), MODEL)
    asked = len(local.requests_to("/tokenize"))
    assert counter.count_message("one two three") == 3 + tokens.TOKENS_PER_MESSAGE
    assert counter.count("one two three") == 3
    assert counter.count("") == 0
    assert len(local.requests_to("/tokenize")) == asked + 1


def test_a_failing_tokenizer_falls_back_to_estimates_for_a_while(local: FakeOpenAI) -> None:
    now = [1000.0]
    api = flavoured(local, "llama-server")
    fallback = tokens.Counter(tokens.get_encoding("o200k_base"), exact=False)
    counter = ServerCounter(api, DIALECTS["llama-server"], MODEL, fallback, lambda: now[0])
    local.flavoured.broken["/tokenize"] = 500
    assert counter.count(LONG_WORDS) == fallback.count(LONG_WORDS)
    assert (counter.exact, counter.name) == (False, "o200k_base")
    counter.count("another text")  # estimated without asking the broken tokenizer again
    assert counter.requests == 1
    del local.flavoured.broken["/tokenize"]
    now[0] += RETRY_AFTER_S + 1
    assert counter.count(LONG_WORDS) == 2 and counter.exact and counter.requests == 2
