"""What the chat path asks of the model server: a model's token counter and context
window, and what an overflow error taught: the window, and how many of the server's
tokens a counted token is (`scale`, when Parley's counts are estimates or the server's
chat template adds more than Parley allows for).

`lib.chat.ChatContext.server` holds one. `Offline` asks the server nothing: tiktoken
(exact only for OpenAI's models on OpenAI or Azure) and Parley's model table. `Probed`
asks the server once per model (`probe.identify`, then `tokenizer.counter_for_server`
and `window.context_window`) and keeps the answers as long as it lives: the terminal
chat's process. The web app keeps them per session (`lib.ui.clients.server_facts`), so
no probe runs between a question and its first token after the page's first run.
"""

from __future__ import annotations

import functools
import threading
from typing import Protocol

import openai

from lib import tokens
from lib.models import known_context_window
from lib.server import probe, tokenizer, window
from lib.server.tokenizer import TokenCounter
from lib.server.window import UNKNOWN, ContextWindow


class ServerFacts(Protocol):
    """What trimming and accounting need to know of `model` where it runs."""

    def counter(self, model: str) -> TokenCounter: ...

    def window(self, model: str) -> ContextWindow: ...

    def learn_window(self, model: str, learnt: ContextWindow | None, scale: float) -> None: ...

    def scale(self, model: str) -> float: ...


class Offline:
    """Parley's own tables, and the windows overflow errors stated since it was made."""

    def __init__(self, provider: str = "openai") -> None:
        self.provider = provider
        self.learnt: dict[str, ContextWindow] = {}
        self.scales: dict[str, float] = {}

    def counter(self, model: str) -> TokenCounter:
        if self.provider in probe.KNOWN_PROVIDERS:
            return tokens.counter_for(model)
        return tokenizer.estimate_counter(model)  # off OpenAI a name proves no tokenizer

    def window(self, model: str) -> ContextWindow:
        if model in self.learnt:
            return self.learnt[model]
        known = known_context_window(model) if self.provider in probe.KNOWN_PROVIDERS else None
        return ContextWindow(known, "Parley's model table", True) if known else UNKNOWN

    def learn_window(self, model: str, learnt: ContextWindow | None, scale: float) -> None:
        if learnt is not None:
            self.learnt[model] = learnt
        self.scales[model] = scale

    def scale(self, model: str) -> float:
        return self.scales.get(model, 1.0)


class Probed(Offline):
    """The server's own answers, asked once per model (see the module docstring)."""

    def __init__(self, client: openai.OpenAI, provider: str) -> None:
        super().__init__(provider)
        self.client = client
        self._counters: dict[str, TokenCounter] = {}
        self._windows: dict[str, ContextWindow] = {}
        self._lock = threading.Lock()

    @functools.cached_property
    def server(self) -> probe.Server:
        return probe.identify(self.client, self.provider)

    def counter(self, model: str) -> TokenCounter:
        with self._lock:
            if model not in self._counters:
                found = tokenizer.counter_for_server(self.client, self.server, model)
                self._counters[model] = found
            return self._counters[model]

    def window(self, model: str) -> ContextWindow:
        with self._lock:
            if model in self.learnt:
                return self.learnt[model]
            if model not in self._windows:
                self._windows[model] = window.context_window(self.client, self.server, model)
            return self._windows[model]
