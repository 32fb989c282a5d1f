"""What llama-cpp-python's server does differently from OpenAI, pinned payload by payload.

Each test here checks one entry of QUIRKS.md against the running server, so that the
fake test server (tests/fake_openai.py), which imitates these quirks for `make test`,
finds out when a new llama-cpp-python version changes one.
"""

from __future__ import annotations

import json
import socket

import httpx2
import pytest

from tests.peers.conftest import N_CTX, LlamaServer
from tests.waits import WAIT

pytestmark = pytest.mark.peers
HELLO = [{"role": "user", "content": "Hello"}]
TOO_LONG = [{"role": "user", "content": "Herons wade in reeds. " * 150}]  # 2,750 tokens


def post(server: LlamaServer, path: str, body: dict) -> httpx2.Response:
    # A new connection each time: after an overflow the server drops the connection.
    return httpx2.post(server.root + path, json=body, timeout=WAIT)


def events(server: LlamaServer, body: dict) -> list[str]:
    """The `data:` payloads of one streamed chat completion, [DONE] included."""
    with httpx2.Client(timeout=WAIT) as client:
        with client.stream("POST", f"{server.base_url}/chat/completions", json=body) as r:
            assert r.status_code == 200
            return [line[6:] for line in r.iter_lines() if line.startswith("data: ")]


def test_models_lists_the_model_file_path(llama_server: LlamaServer) -> None:
    body = httpx2.get(f"{llama_server.base_url}/models", timeout=WAIT).json()
    (entry,) = body["data"]
    assert body["object"] == "list" and entry["id"].endswith(".gguf")
    assert entry == {"id": entry["id"], "object": "model", "owned_by": "me", "permissions": []}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/props"),  # llama-server's; llama-cpp-python has no window report
        ("POST", "/tokenize"),  # llama-server's and vLLM's
        ("GET", "/health"),
        ("GET", "/slots"),
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/audio/transcriptions"),
    ],
)
def test_routes_it_does_not_have(llama_server: LlamaServer, method: str, path: str) -> None:
    r = httpx2.request(method, llama_server.root + path, json={}, timeout=WAIT)
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})


def test_openapi_lists_every_route(llama_server: LlamaServer) -> None:
    paths = httpx2.get(f"{llama_server.root}/openapi.json", timeout=WAIT).json()["paths"]
    assert sorted(paths) == [
        "/extras/detokenize",
        "/extras/tokenize",
        "/extras/tokenize/count",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
    ]


def test_its_own_tokenizer_under_extras(llama_server: LlamaServer) -> None:
    body = {"input": "Hello world", "model": llama_server.model}
    tokens = post(llama_server, "/extras/tokenize", body).json()
    assert list(tokens) == ["tokens"] and tokens["tokens"][0] == 1  # BOS included
    count = post(llama_server, "/extras/tokenize/count", body).json()
    assert count == {"count": len(tokens["tokens"])}
    text = post(llama_server, "/extras/detokenize", {"tokens": tokens["tokens"]}).json()
    assert list(text) == ["text"] and "Hello world" in text["text"]


def test_a_stream_has_no_usage_chunk_even_when_asked(llama_server: LlamaServer) -> None:
    body = {
        "model": "gpt-5.4-mini",  # any name: the one model answers, and the name is echoed
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 4,
    }
    *chunks, done = events(llama_server, body)
    assert done == "[DONE]"
    parsed = [json.loads(c) for c in chunks]
    assert all("usage" not in c for c in parsed)
    assert all(set(c) == {"id", "model", "created", "object", "choices"} for c in parsed)
    assert {c["model"] for c in parsed} == {"gpt-5.4-mini"}
    deltas = [c["choices"][0]["delta"] for c in parsed]
    # A role-only first delta, one delta per token, an empty last delta with the reason.
    assert deltas[0] == {"role": "assistant"} and deltas[-1] == {}
    assert all(list(d) == ["content"] and d["content"] for d in deltas[1:-1])
    assert len(deltas) == 4 + 2
    assert [c["choices"][0]["finish_reason"] for c in parsed][-1] == "length"


def test_without_a_stream_usage_is_reported(llama_server: LlamaServer) -> None:
    r = post(llama_server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 3, "n": 2})
    body = r.json()
    assert len(body["choices"]) == 1  # n is ignored
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert body["usage"]["completion_tokens"] == 3


def test_a_prompt_over_the_window_is_a_400_without_a_stream(llama_server: LlamaServer) -> None:
    head, body = raw_post(llama_server, "/v1/chat/completions", {"messages": TOO_LONG})
    assert head.startswith("HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(body) == {
        "error": {
            "message": f"This model's maximum context length is {N_CTX} tokens. However, you "
            "requested 2750 tokens (2750 in the messages, None in the completion). Please "
            "reduce the length of the messages or completion.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def test_a_prompt_over_the_window_is_an_empty_200_stream(llama_server: LlamaServer) -> None:
    """200 and event-stream headers, then the body ends at once: no event, no error, no
    [DONE]; the server logs the reason and closes the connection."""
    body = {"messages": TOO_LONG, "stream": True, "stream_options": {"include_usage": True}}
    head, raw = raw_post(llama_server, "/v1/chat/completions", body)
    assert head.startswith("HTTP/1.1 200 OK\r\n")
    assert "content-type: text/event-stream; charset=utf-8" in head.lower()
    assert "transfer-encoding: chunked" in head.lower()
    assert raw == b"0\r\n\r\n"  # the chunked body's end, nothing in it
    log = llama_server.log_text()
    assert f"ValueError: Requested tokens (2750) exceed context window of {N_CTX}" in log


def raw_post(server: LlamaServer, path: str, body: dict) -> tuple[str, bytes]:
    """The response's head and raw body, read until the server closes the connection (it
    does after an overflow, though it says keep-alive; a socket timeout fails the test)."""
    data = json.dumps(body).encode()
    host, port = server.root.removeprefix("http://").split(":")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        sock.sendall(request + data)
        while chunk := sock.recv(65536):
            received += chunk
    head, _, raw = received.partition(b"\r\n\r\n")
    return head.decode(), raw


def test_a_prompt_that_fits_runs_to_the_window_end_without_error(
    llama_server: LlamaServer,
) -> None:
    near = [{"role": "user", "content": "Herons wade in reeds. " * 85}]  # 1,532 tokens
    body = {"messages": near, "stream": True, "max_tokens": 1000}
    *chunks, done = events(llama_server, body)
    last = json.loads(chunks[-1])["choices"][0]
    assert done == "[DONE]" and last["finish_reason"] == "length"
    assert len(chunks) - 2 < 1000  # cut at the window's end, silently


@pytest.mark.parametrize("encoding_format", [None, "base64"])
def test_pooled_embeddings_are_float_lists(
    llama_server: LlamaServer, encoding_format: str | None
) -> None:
    body = {"model": "any", "input": ["a heron", "a kestrel flies"]}
    if encoding_format:
        body["encoding_format"] = encoding_format  # ignored: floats all the same
    r = post(llama_server, "/v1/embeddings", body).json()
    assert [(d["object"], d["index"], len(d["embedding"])) for d in r["data"]] == [
        ("embedding", 0, 64),
        ("embedding", 1, 64),
    ]
    assert all(isinstance(x, float) for x in r["data"][0]["embedding"])
    assert r["model"] == "any" and set(r["usage"]) == {"prompt_tokens", "total_tokens"}


def test_embeddings_truncate_long_inputs_silently(llama_server: LlamaServer) -> None:
    body = {"input": ["Herons wade in reeds. " * 100]}  # 1,800 tokens
    r = post(llama_server, "/v1/embeddings", body).json()
    assert r["usage"]["prompt_tokens"] == 512  # n_batch, the server's default


def test_a_chat_model_gives_one_embedding_per_token(chat_model_server: LlamaServer) -> None:
    body = {"input": ["a heron", "a kestrel flies"]}
    r = post(chat_model_server, "/v1/embeddings", body).json()
    counts = [
        post(chat_model_server, "/extras/tokenize/count", {"input": t}).json()
        for t in body["input"]
    ]
    shapes = [(len(d["embedding"]), len(d["embedding"][0])) for d in r["data"]]
    assert shapes == [(counts[0]["count"], 64), (counts[1]["count"], 64)]
