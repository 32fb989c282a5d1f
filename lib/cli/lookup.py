"""Which conversation a command works on: an id or prefix, the latest chat, or a new draft.

Kept free of the OpenAI SDK so that `list`, `show` and `export` start quickly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lib.cli.output import Terminal
from lib.conversations import ChatParams, Conversation, ConversationStore
from lib.errors import InvalidInputError, NotFoundError
from lib.settings import Settings

PROG = "python -m lib.cli"


@dataclass
class Draft:
    """A conversation not yet saved: created with the first message, like the web app."""

    model: str
    system_prompt: str = ""
    params: ChatParams = field(default_factory=ChatParams)


def find_conversation(store: ConversationStore, ref: str) -> Conversation:
    """The conversation with this id, or the only one whose id starts with `ref`."""
    ref = ref.strip()
    if ref:
        try:
            return store.get(ref)
        except NotFoundError:
            pass
        matches = [c for c in store.list(limit=1_000_000) if c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise InvalidInputError(
                f"{len(matches)} conversations start with {ref!r}.", hint="Give more of the id."
            )
    raise NotFoundError(
        f"No conversation {ref!r} in workspace {store.workspace!r}.",
        hint=f"`{PROG} list` shows the ids.",
    )


@dataclasses.dataclass
class ChatOptions:
    """The chat flags; None means "keep the conversation's own (or the default)"."""

    system: str | None = None
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    n: int | None = None
    latest: bool = False
    conversation: str | None = None

    def params(self, base: ChatParams) -> ChatParams:
        changes = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "n": self.n,
            # As in the web app's field, "\n" typed literally means a newline.
            "stop": [s.replace("\\n", "\n") for s in self.stop] if self.stop else None,
        }
        params = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
        params.validate()
        return params


def open_chat(
    store: ConversationStore,
    settings: Settings,
    opts: ChatOptions,
    terminal: Terminal,
) -> Conversation | Draft:
    """The conversation to continue (with the flags applied), or a draft for a new one."""
    if opts.latest and opts.conversation:
        raise InvalidInputError("Use either --continue or --conversation, not both.")
    conv = None
    if opts.conversation:
        conv = find_conversation(store, opts.conversation)
    elif opts.latest:
        conv = next(iter(store.list(kind="chat", limit=1)), None)
        if conv is None:
            terminal.note("There is no conversation to continue yet; starting a new one.")
    if conv is None:
        model = opts.model or settings.chat_model
        return Draft(model, opts.system or "", opts.params(ChatParams()))
    if conv.kind != "chat":
        raise InvalidInputError(
            f"Conversation {conv.id[:8]} is a {conv.kind} conversation.",
            hint="Continue it in the web app; `show` and `export` work here.",
        )
    params = opts.params(conv.params)
    store.update_settings(conv.id, model=opts.model, system_prompt=opts.system, params=params)
    return store.get(conv.id)
