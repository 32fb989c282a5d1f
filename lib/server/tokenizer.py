"""Counting tokens with the server's own tokenizer, or saying that a count is an estimate.

A count is exact only when the tokenizer is the model's own: tiktoken for OpenAI's models
on OpenAI or Azure, and the server's tokenizer elsewhere: `llama-server`'s and vLLM's
`/tokenize`, llama-cpp-python's `/extras/tokenize`. A model on any other server (Ollama,
LM Studio) is counted with tiktoken and marked as an estimate, and trimming then leaves a
margin free (`lib.server.window.trim_window`).

A `ServerCounter` stands in for `lib.tokens.Counter` (`count`, `count_message`, `name`,
`exact`), one request per text it has not counted before. Each message's count is stored
with the message under the counter's `name` ("server:<base URL>:<model>"), so a reply
asks the server about the new message and the reply only, and the counter remembers the
last `CACHE_SIZE` texts it counted (a system prompt, say). When the tokenizer fails,
counting falls back to estimates (under the estimate's name) for `RETRY_AFTER_S`, so a
dead tokenizer costs one timeout, not one per message.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import openai

from lib import tokens
from lib.providers import server_key
from lib.server.probe import KNOWN_PROVIDERS, Server, probe

log = logging.getLogger(__name__)
CACHE_SIZE = 512  # texts whose counts a counter remembers
RETRY_AFTER_S = 60.0  # how long a failed tokenizer is left alone
_SAMPLE = "Parley"


class TokenCounter(Protocol):
    """What trimming and accounting need of a counter (`lib.tokens.Counter` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def exact(self) -> bool: ...

    def count(self, text: str) -> int: ...

    def count_message(self, text: str) -> int: ...


@dataclass(frozen=True)
class Dialect:
    """How one server software's tokenizer is asked."""

    name: str
    path: str

    def body(self, text: str, model: str) -> dict[str, Any]:
        if self.name == "llama-server":
            return {"content": text}  # no BOS: the per-message overhead is added apart
        if self.name == "vllm":
            return {"model": model, "prompt": text, "add_special_tokens": False}
        return {"input": text, "model": model}

    def read(self, body: Any) -> int | None:
        """The count in the server's answer, or None if it is not one."""
        if not isinstance(body, dict):
            return None
        if isinstance(body.get("count"), int):
            return body["count"]
        found = body.get("tokens")
        return len(found) if isinstance(found, list) else None


DIALECTS = {
    "llama-server": Dialect("llama-server", "/tokenize"),
    "vllm": Dialect("vllm", "/tokenize"),
    "llama-cpp-python": Dialect("llama-cpp-python", "/extras/tokenize"),
}
# Which dialects to try for each kind of server; others have no tokenizer endpoint.
_TRIED = {
    "llama-server": ("llama-server",),
    "vllm": ("vllm",),
    "llama-cpp-python": ("llama-cpp-python",),
    "unknown": ("llama-server", "vllm", "llama-cpp-python"),
}


def find_tokenizer(client: openai.OpenAI, server: Server, model: str) -> Dialect | None:
    """The server's tokenizer for `model`, found by tokenizing one word."""
    for name in _TRIED.get(server.flavour, ()):
        dialect = DIALECTS[name]
        answer = probe(client, "POST", dialect.path, dialect.body(_SAMPLE, model))
        if answer.ok and dialect.read(answer.body):
            return dialect
    return None


def counter_for_server(client: openai.OpenAI, server: Server, model: str) -> TokenCounter:
    """The most honest counter for `model` on this server (`server` from `identify`)."""
    if server.flavour in KNOWN_PROVIDERS:
        return tokens.counter_for(model)
    estimate = estimate_counter(model)
    dialect = find_tokenizer(client, server, model)
    if dialect is None:
        return estimate
    return ServerCounter(client, dialect, model, estimate)


def estimate_counter(model: str) -> tokens.Counter:
    """tiktoken's count, marked as an estimate: off OpenAI, a model's name is no proof
    of its tokenizer (a llama model can be served as "gpt-4o")."""
    return tokens.Counter(tokens.counter_for(model).encoding, exact=False)


class ServerCounter:
    """Counts with the server's tokenizer; see the module docstring for the caching."""

    def __init__(
        self,
        client: openai.OpenAI,
        dialect: Dialect,
        model: str,
        fallback: tokens.Counter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.dialect, self.model, self.fallback = client, dialect, model, fallback
        self._name = f"server:{server_key(str(client.base_url))}:{model}"
        self._clock = clock
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self.requests = 0  # sent to the tokenizer so far (for tests and benchmarks)

    @property
    def degraded(self) -> bool:
        """True while the tokenizer is left alone after a failure."""
        return self._failed_at is not None and self._clock() - self._failed_at < RETRY_AFTER_S

    @property
    def name(self) -> str:
        return self.fallback.name if self.degraded else self._name

    @property
    def exact(self) -> bool:
        return not self.degraded

    def count_message(self, text: str) -> int:
        return self.count(text) + tokens.TOKENS_PER_MESSAGE

    def count(self, text: str) -> int:
        if not text:
            return 0
        if self.degraded:  # every count made now is an estimate, stored under its name
            return self.fallback.count(text)
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        counted = self._ask(text)
        if counted is None:
            return self.fallback.count(text)
        with self._lock:
            self._cache[key] = counted
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return counted

    def _ask(self, text: str) -> int | None:
        self.requests += 1
        answer = probe(self.client, "POST", self.dialect.path, self.dialect.body(text, self.model))
        counted = self.dialect.read(answer.body) if answer.ok else None
        if counted is None:
            log.warning("the server's tokenizer failed (%s); estimating", answer.status)
            self._failed_at = self._clock()
        return counted
