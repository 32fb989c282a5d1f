"""Server flavours for the fake: what llama-server, llama-cpp-python, vLLM, Ollama and LM
Studio add to (or leave out of) the OpenAI API, so Parley's probes can be tested.

    server.flavour("llama-server", n_ctx=2048)         # /props, /tokenize; no images
    server.flavour("vllm", n_ctx=4096)                 # max_model_len, /tokenize
    server.flavour("ollama", context_length=131072, num_ctx=8192)
    server.flavour("lmstudio", loaded_ctx=4096, vision=True)
    server.flavour("llama-cpp-python", slow={"/extras/tokenize": 5.0})
    server.flavour("llama-cpp-python", n_ctx=2048, word_tokens=3)  # overflows as it does

`FakeOpenAI._route` asks `answer` first: a `(status, body)` is sent as JSON, None falls
through to the fake's OpenAI routes (chat, embeddings and images stay the fake's own).
The response shapes follow each server's documented answers (llama.cpp's server README
and web UI types, vLLM's protocol, Ollama's api.md, LM Studio's REST API v0 page).
The fake's tokenizer is its usage count: one token per whitespace-separated word.

Chat completions keep the fake's replies but take on each server's ways (`Flavour.
overflow`, `streams_usage`, `first_delta`). llama-cpp-python's, as its
0.3.36 server did against a 2,048-token model: a prompt of n_ctx tokens or more is a 400
`context_length_exceeded` ("This model's maximum context length is 2048 tokens. However,
you requested 7658 tokens (7650 in the messages, 8 in the completion)...") when not
streamed, and when streamed a 200 event stream that ends before its first event (the
ValueError "Requested tokens (7650) exceed context window of 2048" goes only to its log);
no usage chunk even when `stream_options.include_usage` asks for one; a first delta of
`{"role": "assistant"}` with no content, then the text, and `{}` with the finish reason;
the connection closed after refusing an overflow, so a client that reuses it is reset
(tests/peers/QUIRKS.md has the payloads). The option `empty_deltas` adds a
`{"content": ""}` delta after each piece of text, which llama-cpp-python's source sends
when a token decodes to no bytes. llama-server refuses an overflow with a 400
`exceed_context_size_error` carrying `n_prompt_tokens` and `n_ctx`, streamed or not;
vLLM with a 400 naming `max_model_len` when the prompt and max_tokens exceed it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from tests.fake_images import error_body, message_text

FLAVOURS = ("llama-server", "llama-cpp-python", "vllm", "ollama", "lmstudio")
NOT_FOUND_FASTAPI = {"detail": "Not Found"}  # llama-cpp-python's (and vLLM's) 404 body
SILENT = "silent"  # an overflow answered with an event stream that ends at once


def fake_tokens(text: str) -> list[int]:
    """The fake's token ids: one per word, stable across runs."""
    return [zlib.crc32(word.encode()) % 32_000 for word in text.split()]


@dataclass
class Flavour:
    name: str
    n_ctx: int = 4096  # llama-server's n_ctx, vLLM's max_model_len, LM Studio's maximum
    embeddings: bool = True  # False: llama-server 501, vLLM "does not support"
    vision: bool = False
    tools: bool | None = None  # None: the server does not say
    context_length: int = 131_072  # Ollama: what the model was trained for
    num_ctx: int | None = None  # Ollama: a Modelfile's PARAMETER num_ctx
    loaded_ctx: int | None = None  # Ollama /api/ps, LM Studio loaded_context_length
    word_tokens: int = 1  # the server's tokens per word (3: finer than tiktoken splits)
    empty_deltas: bool = False  # a {"content": ""} delta after each piece of text
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    broken: dict[str, int] = field(default_factory=dict)  # path -> status to fail with

    def __post_init__(self) -> None:
        if self.name not in FLAVOURS:
            raise ValueError(f"unknown flavour {self.name!r}: one of {', '.join(FLAVOURS)}")

    # How /v1/chat/completions differs (see the module docstring)

    def tokens(self, text: str) -> list[int]:
        """The server's token ids for `text`: `word_tokens` per word."""
        return [t for t in fake_tokens(text) for _ in range(self.word_tokens)]

    def overflow(self, req: dict[str, Any]) -> tuple[int, Any] | str | None:
        """How this server refuses a prompt too long for its context: `(status, body)`,
        `SILENT`, or None when it fits (or the server cuts it without a word)."""
        messages = req.get("messages") or []
        prompt_tokens = sum(len(self.tokens(message_text(m))) for m in messages)
        wanted = req.get("max_tokens") or req.get("max_completion_tokens")
        if self.name == "llama-cpp-python" and prompt_tokens >= self.n_ctx:
            if req.get("stream"):
                return SILENT
            message = (
                f"This model's maximum context length is {self.n_ctx} tokens. However, you "
                f"requested {prompt_tokens + (wanted or 0)} tokens ({prompt_tokens} in the "
                f"messages, {wanted} in the completion). Please reduce the length of the "
                "messages or completion."
            )
            body = error_body(400, message, code="context_length_exceeded", param="messages")
            return 400, body
        if self.name == "llama-server" and prompt_tokens >= self.n_ctx:
            message = (
                f"request ({prompt_tokens} tokens) exceeds the available context size "
                f"({self.n_ctx} tokens), try increasing it"
            )
            error = {"code": 400, "message": message, "type": "exceed_context_size_error"}
            return 400, {"error": error | {"n_prompt_tokens": prompt_tokens, "n_ctx": self.n_ctx}}
        if self.name == "vllm" and prompt_tokens + (wanted or 0) > self.n_ctx:
            message = (
                f"This model's maximum context length is {self.n_ctx} tokens. However, you "
                f"requested {prompt_tokens + (wanted or 0)} tokens ({prompt_tokens} in the "
                f"messages, {wanted or 0} in the completion). Please reduce the length of "
                "the messages or completion."
            )
            body = {"object": "error", "message": message, "type": "BadRequestError"}
            return 400, body | {"param": None, "code": 400}
        return None

    @property
    def closes_after_overflow(self) -> bool:
        """Whether the connection is closed after refusing an overflow (the next request
        on it is reset)."""
        return self.name == "llama-cpp-python"

    @property
    def streams_usage(self) -> bool:
        return self.name != "llama-cpp-python"

    @property
    def first_delta(self) -> dict[str, Any] | None:
        """The first chunk's delta, or None for the fake's own (OpenAI's)."""
        return {"role": "assistant"} if self.name == "llama-cpp-python" else None


def answer(fake: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    """The flavour's answer to this request, or None to let the fake's routes answer."""
    flavour: Flavour | None = fake.flavoured
    if flavour is None:
        return None
    route = _ROUTES[flavour.name].get((method, path))
    if route is None:
        return None
    fake._sleep(flavour.slow.get(path, 0.0))
    if path in flavour.broken:
        return flavour.broken[path], error_body(flavour.broken[path])
    if fake.api_key is not None and headers.get("authorization") != f"Bearer {fake.api_key}":
        return 401, error_body(401)
    return route(fake, flavour, body if isinstance(body, dict) else {})


def _models(owner: str, *, window_field: str | None = None, **extra: Any) -> Any:
    """/v1/models as this server lists it; `window_field` carries the flavour's n_ctx."""

    def route(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
        window = {window_field: flavour.n_ctx} if window_field else {}
        entries = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": owner} | extra | window
            for m in fake.models
        ]
        return 200, {"object": "list", "data": entries}

    return route


def _missing(status: int, message: str | None = None) -> Any:
    def route(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
        return status, (error_body(status, message) if message else NOT_FOUND_FASTAPI)

    return route


def _props(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    props: dict[str, Any] = {
        "default_generation_settings": {"id": 0, "n_ctx": flavour.n_ctx, "params": {}},
        "total_slots": 1,
        "model_path": f"/models/{fake.models[0] if fake.models else 'model'}.gguf",
        "modalities": {"vision": flavour.vision, "audio": False},
        "chat_template": "{{ messages }}",
        "build_info": "b0000-parley-fake",
    }
    if flavour.tools is not None:
        props["chat_template_caps"] = {"supports_tools": flavour.tools}
    return 200, props


def _llama_tokenize(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    return 200, {"tokens": flavour.tokens(str(body.get("content", "")))}


def _llama_embeddings(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any] | None:
    if flavour.embeddings:
        return None  # the fake's own embeddings answer
    message = "This server does not support embeddings. Start it with `--embeddings`"
    return 501, {"error": {"code": 501, "message": message, "type": "not_supported_error"}}


def _python_tokenize(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    if not isinstance(body.get("input"), str):
        detail = [{"type": "missing", "loc": ["body", "input"], "msg": "Field required"}]
        return 422, {"detail": detail}
    return 200, {"tokens": flavour.tokens(body["input"])}


def _vllm_tokenize(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    if not isinstance(body.get("prompt"), str):
        return 400, error_body(400, "1 validation error: prompt Field required")
    found = flavour.tokens(body["prompt"])
    return 200, {"count": len(found), "max_model_len": flavour.n_ctx, "tokens": found}


def _vllm_embeddings(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any] | None:
    if flavour.embeddings:
        return None
    return 400, error_body(400, "The model does not support Embeddings API")


def _ollama_show(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    name = body.get("model") or body.get("name")
    if name not in fake.models:
        return 404, {"error": f"model '{name}' not found"}
    parameters = 'stop "<|eot_id|>"'
    if flavour.num_ctx:
        parameters += f"\nnum_ctx {flavour.num_ctx}"
    capabilities = ["completion", *(["vision"] if flavour.vision else [])]
    capabilities += ["tools"] if flavour.tools else []
    return 200, {
        "parameters": parameters,
        "details": {"format": "gguf", "family": "llama", "parameter_size": "1B"},
        "model_info": {
            "general.architecture": "llama",
            "llama.context_length": flavour.context_length,
        },
        "capabilities": capabilities,
    }


def _ollama_ps(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    if not flavour.loaded_ctx or not fake.models:
        return 200, {"models": []}
    model = fake.models[0]
    return 200, {"models": [{"name": model, "model": model, "context_length": flavour.loaded_ctx}]}


def _lmstudio_models(fake: Any, flavour: Flavour, body: dict) -> tuple[int, Any]:
    def entry(model: str) -> dict[str, Any]:
        kind = "embeddings" if "embed" in model else ("vlm" if flavour.vision else "llm")
        found: dict[str, Any] = {
            "id": model,
            "object": "model",
            "type": kind,
            "arch": "llama",
            "state": "loaded" if flavour.loaded_ctx else "not-loaded",
            "max_context_length": flavour.n_ctx,
        }
        if flavour.loaded_ctx:
            found["loaded_context_length"] = flavour.loaded_ctx
        if flavour.tools is not None:
            found["capabilities"] = ["tool_use"] if flavour.tools else []
        return found

    return 200, {"object": "list", "data": [entry(m) for m in fake.models]}


_NO_IMAGES = {
    ("POST", "/v1/images/generations"): _missing(404),
    ("POST", "/v1/audio/transcriptions"): _missing(404),
}
_ROUTES: dict[str, dict[tuple[str, str], Any]] = {
    "llama-server": {
        ("GET", "/v1/models"): _models("llamacpp", meta={"n_ctx_train": 131_072}),
        ("GET", "/props"): _props,
        ("POST", "/tokenize"): _llama_tokenize,
        ("POST", "/v1/embeddings"): _llama_embeddings,
        **_NO_IMAGES,
    },
    "llama-cpp-python": {
        ("GET", "/v1/models"): _models("me", permissions=[]),
        ("POST", "/extras/tokenize"): _python_tokenize,
        **_NO_IMAGES,
    },
    "vllm": {
        ("GET", "/v1/models"): _models(
            "vllm", root="model", parent=None, window_field="max_model_len"
        ),
        ("POST", "/tokenize"): _vllm_tokenize,
        ("POST", "/v1/embeddings"): _vllm_embeddings,
        ("POST", "/v1/images/generations"): _missing(404),
    },
    "ollama": {
        ("GET", "/v1/models"): _models("library"),
        ("GET", "/api/version"): lambda fake, flavour, body: (200, {"version": "0.6.8"}),
        ("POST", "/api/show"): _ollama_show,
        ("GET", "/api/ps"): _ollama_ps,
        **_NO_IMAGES,
    },
    "lmstudio": {
        ("GET", "/v1/models"): _models("organization_owner"),
        ("GET", "/api/v0/models"): _lmstudio_models,
        **_NO_IMAGES,
    },
}
