"""Chatting with the model: the context a reply needs, and the turns of a conversation.

`send` saves the user's message first (so no failure can lose it), then returns a
`Reply` (`lib.chat.reply`), which builds the request from the trimmed history, streams
text chunks for `st.write_stream` or a terminal, and saves the assistant message as it
arrives. `regenerate` (any reply), `edit` (any user message) and `switch` (between a
message's versions) are the other turns: a conversation is a tree (`lib.conversations`),
and each reply follows the one path that ends at the message it answers.
`ChatContext.server` (`lib.server.facts`) says how this server counts tokens and how
large the model's window is; `ChatContext.cost` prices a request at its own server's
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
    "branch_edit",
    "edit",
    "is_record",
    "needs_retry",
    "regenerate",
    "reveal",
    "rewind",
    "send",
    "switch",
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
    return Reply(ctx, conv, after=message.id)


def rewind(store: ConversationStore, conversation_id: str, message_id: int | None = None) -> int:
    """Make the path shown end at the question to answer again, and return its id: the
    question `message_id` answers (a reply, kept as a version unless it failed at the end
    of the path), or `message_id` itself (a question); with no id, the end of the path."""
    if message_id is None:
        last = store.recent_messages(conversation_id, 1)
        target = last[0] if last else None
    else:
        target = store.get_message(conversation_id, message_id)
    if target is not None and is_record(target):
        raise errors.InvalidInputError(
            "That message is an illustration, not a reply: send a new message instead."
        )
    question = target.parent_id if target is not None and target.role == "assistant" else None
    if target is not None and target.role == "user":
        question = target.id
    if question is None:
        raise errors.InvalidInputError("There is no message to answer yet.")
    failed = target.role == "assistant" and not for_model(target)
    if failed and target.id == store.get(conversation_id).leaf_id:
        store.delete_messages_from(conversation_id, target.id)  # no version worth keeping
    store.set_leaf(conversation_id, question)
    return question


def regenerate(ctx: ChatContext, conversation_id: str, message_id: int | None = None) -> Reply:
    """Answer a question again as a new version beside the earlier ones (`rewind`)."""
    after = rewind(ctx.store, conversation_id, message_id)
    return Reply(ctx, ctx.store.get(conversation_id), after=after)


def branch_edit(
    store: ConversationStore, conversation_id: str, message_id: int, text: str
) -> Message:
    """Save `text` as a new version of user message `message_id` (its sibling: the earlier
    version and what followed it stay, one "‹ ›" away) and show the path ending there.
    The new version has the original's attachments (copies of their rows, the same stored
    files: shown with it, sent with it, kept if the original is deleted), so, as with
    `send`, the files alone are a message."""
    text = text.strip()
    original = store.get_message(conversation_id, message_id)
    if original.role != "user":
        raise errors.InvalidInputError("Only your own messages can be edited.")
    if not text and not original.meta.get("attachments"):
        raise errors.InvalidInputError("The message is empty.")
    edited, after = Message("user", text), original.parent_id
    if not original.meta.get("attachments"):
        return store.add_message(conversation_id, edited, parent=after)
    files = AttachmentStore(store.backend, store.workspace)
    return files.save_version(conversation_id, edited, original, parent=after)


def edit(ctx: ChatContext, conversation_id: str, message_id: int, text: str) -> Reply:
    """Edit a user message as a new version (`branch_edit`) and answer it."""
    question = branch_edit(ctx.store, conversation_id, message_id, text)
    return Reply(ctx, ctx.store.get(conversation_id), after=question.id)


def switch(store: ConversationStore, conversation_id: str, message_id: int) -> None:
    """Show the branch through `message_id` (a sibling version of a message on the path);
    the model is sent this path from the next message on."""
    store.show_branch(conversation_id, message_id)


def reveal(store: ConversationStore, conversation_id: str, message_id: int) -> None:
    """Show a message found by search: the path stays if it holds the message, else it
    switches to the branch through it."""
    if all(m.id != message_id for m in store.path(conversation_id)):
        store.show_branch(conversation_id, message_id)
