"""Chatting with the model: the context a reply needs, and the turns of a conversation.

`send` saves the user's message first (so no failure can lose it), then returns a
`Reply` (`lib.chat.reply`), which builds the request from the trimmed history, streams
text chunks for `st.write_stream` or a terminal, and saves the assistant message as it
arrives. `regenerate`, `edit_last_user_message` and `choose_alternative` are the other
turns. `ChatContext.server` (`lib.server.facts`) says how this server counts tokens and
how large the model's window is; `ChatContext.cost` prices a request at its own server's
or provider's price.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import openai

from lib import errors
from lib.chat.attachments import AttachmentStore, NewAttachment
from lib.chat.reply import MIN_SAVE_GAP_S, SAVE_EVERY_CHARS, SAVE_EVERY_S, Reply
from lib.conversations import ConversationStore, Message
from lib.pricing import PriceTable
from lib.prompt import for_model, is_record
from lib.server.facts import Offline, ServerFacts
from lib.settings import DEFAULT_MAX_REPLY_CHARS

__all__ = [
    "MIN_SAVE_GAP_S",
    "RETRYABLE",
    "SAVE_EVERY_CHARS",
    "SAVE_EVERY_S",
    "ChatContext",
    "Reply",
    "choose_alternative",
    "edit_last_user_message",
    "is_record",
    "needs_retry",
    "regenerate",
    "send",
]
RETRYABLE = {"failed", "interrupted"}  # statuses whose turn the page offers to retry


@dataclass
class ChatContext:
    """Everything a reply needs besides the conversation itself. The store is bound to
    the session's workspace, which is the context's workspace too."""

    store: ConversationStore
    client: openai.OpenAI
    prices: PriceTable = field(default_factory=PriceTable)
    provider: str = "openai"
    max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS  # one reply's cap, all choices together
    base_url: str | None = None  # the server's, for its own prices (`PriceTable.cost`)
    server: ServerFacts | None = None  # counter and window; None: Offline(provider)
    # Whether a model takes image parts (`lib.server.capabilities`); None: not known.
    accepts_images: Callable[[str], bool | None] = lambda _model: None

    def __post_init__(self) -> None:
        # Never resent by the SDK, however the client was built (see lib.client.send_once).
        if getattr(self.client, "max_retries", 0):
            self.client = self.client.with_options(max_retries=0)
        if self.server is None:
            self.server = Offline(self.provider)

    @property
    def workspace(self) -> str:
        return self.store.workspace

    @functools.cached_property
    def attachments(self) -> AttachmentStore:
        """Files attached to this workspace's messages (`lib.chat.attachments`)."""
        return AttachmentStore(self.store.backend, self.store.workspace)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What a chat request on this server cost, at its own server's or provider's price."""
        return self.prices.cost(
            model,
            prompt_tokens,
            completion_tokens,
            provider=self.provider,
            base_url=self.base_url,
        )


def needs_retry(last: Message | None) -> bool:
    """Whether the conversation's last turn went unanswered, failed or was cut off."""
    if last is None or is_record(last):
        return False
    return last.role == "user" or last.status in RETRYABLE


def send(
    ctx: ChatContext, conversation_id: str, text: str, files: Sequence[NewAttachment] = ()
) -> Reply:
    """Save the user's message (with the files attached to it, checked beforehand by
    `lib.chat.attachments` and `lib.chat.with_documents`), then return the (not yet
    started) reply stream. Images for a model known not to take them save nothing."""
    text = text.strip()
    if not text and not files:
        raise errors.InvalidInputError("The message is empty.")
    conv = ctx.store.get(conversation_id)
    if any(f.kind == "image" for f in files) and ctx.accepts_images(conv.model) is False:
        raise errors.InvalidInputError(
            f"{conv.model} does not accept images.",
            hint="Choose a model that does under Model & parameters, or send the message "
            "without the image.",
        )
    counter = ctx.server.counter(conv.model)  # counted now, saved with it: one statement less
    message = Message(
        "user", text, tokens=counter.count_message(text), tokens_encoding=counter.name
    )
    if files:
        ctx.attachments.save_message(conv.id, message, files)
    else:
        ctx.store.add_message(conv.id, message)
    return Reply(ctx, conv)


def regenerate(ctx: ChatContext, conversation_id: str) -> Reply:
    """Drop the last reply (keeping it as an alternative) and answer the last question again."""
    conv = ctx.store.get(conversation_id)
    last = ctx.store.recent_messages(conv.id, 1)
    previous: list[str] = []
    if last and is_record(last[0]):
        raise errors.InvalidInputError(
            "The last message is an illustration, not a reply: send a new message instead."
        )
    if last and last[0].role == "assistant":
        if for_model(last[0]):  # a failed reply is no version worth keeping
            previous = [*last[0].meta.get("alternatives", [last[0].content])]
        ctx.store.delete_messages_from(conv.id, last[0].id)
    if not ctx.store.recent_messages(conv.id, 1):
        raise errors.InvalidInputError("There is no message to answer yet.")
    return Reply(ctx, conv, earlier_versions=previous)


def edit_last_user_message(ctx: ChatContext, conversation_id: str, text: str) -> Reply:
    """Replace the last user message (and what followed it) with `text`, and resend."""
    conv = ctx.store.get(conversation_id)
    recent = ctx.store.recent_messages(conv.id, 2)
    users = [m for m in recent if m.role == "user"]
    if not users:
        raise errors.InvalidInputError("There is no message to edit.")
    ctx.store.delete_messages_from(conv.id, users[-1].id)
    return send(ctx, conv.id, text)


def choose_alternative(ctx: ChatContext, conversation_id: str, message_id: int, index: int) -> None:
    """Make alternative `index` of an n > 1 reply the one the conversation continues from."""
    for message in ctx.store.recent_messages(conversation_id, 2):
        if message.id == message_id:
            alternatives = message.meta.get("alternatives") or []
            if not 0 <= index < len(alternatives):
                raise errors.InvalidInputError("There is no such alternative.")
            message.content = alternatives[index]
            message.meta["chosen"] = index
            message.tokens = None
            ctx.store.update_message(conversation_id, message)
            return
    raise errors.InvalidInputError("Only the latest reply's alternatives can be chosen.")
