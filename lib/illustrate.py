"""Illustrating a conversation: an image prompt written from its last exchange, and the
resulting images linked both ways.

`write_prompt` asks the conversation's chat model for a prompt, which the user edits
before anything is generated. `attach` saves the images to the gallery with the
conversation's id, and adds an assistant message whose `meta["images"]` lists them, so
the conversation shows (and exports) its pictures and the gallery knows their origin.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib import errors
from lib.chat import ChatContext
from lib.client import send_once
from lib.conversations import Message
from lib.gallery import ImageStore, StoredImage
from lib.images import GenerationResult

MAX_EXCHANGE_CHARS = 4000  # per message: enough to know the subject, cheap to send
INSTRUCTIONS = (
    "You write prompts for an image generation model. From the conversation excerpt, "
    "write one prompt for a single image that illustrates what it is about: the subject, "
    "setting, composition, style and mood, in concrete visual terms, under 80 words. "
    "No text in the image unless the excerpt needs it. Reply with the prompt only."
)
ILLUSTRATION = "illustration"  # Message.meta["kind"] of the messages `attach` adds


@dataclass(frozen=True)
class PromptDraft:
    text: str
    model: str
    cost: float | None


def last_exchange(ctx: ChatContext, conversation_id: str) -> list[Message]:
    """The last user message and the replies after it (earlier illustrations left out)."""
    recent = ctx.store.recent_messages(conversation_id, 12)
    recent = [m for m in recent if m.meta.get("kind") != ILLUSTRATION and m.content.strip()]
    users = [i for i, m in enumerate(recent) if m.role == "user"]
    return recent[users[-1] :] if users else recent[-1:]


def write_prompt(ctx: ChatContext, conversation_id: str) -> PromptDraft:
    """Ask the conversation's chat model for an image prompt from the last exchange."""
    conv = ctx.store.get(conversation_id)
    exchange = last_exchange(ctx, conv.id)
    if not exchange:
        raise errors.InvalidInputError("There is nothing to illustrate yet: send a message first.")
    excerpt = "\n\n".join(
        f"{'User' if m.role == 'user' else 'Assistant'}: {_clip(m.content)}" for m in exchange
    )
    messages = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": excerpt},
    ]
    create = ctx.client.chat.completions.create
    completion = send_once(lambda: create(model=conv.model, messages=messages))
    text = _clean(completion.choices[0].message.content if completion.choices else "")
    if not text:
        raise errors.ProviderError(
            "The chat model did not write a prompt.", hint="Write one yourself and generate."
        )
    cost = None
    if completion.usage is not None:
        usage = completion.usage
        cost = ctx.cost(conv.model, usage.prompt_tokens, usage.completion_tokens)
    return PromptDraft(text, conv.model, cost)


def attach(
    ctx: ChatContext,
    images: ImageStore,
    conversation_id: str,
    result: GenerationResult,
    *,
    prompt_cost: float | None = None,
) -> tuple[list[StoredImage], Message]:
    """Save `result` to the gallery linked to the conversation, and add its message."""
    if images.workspace != ctx.workspace:
        raise ValueError("the image store and the conversation belong to different workspaces")
    saved = images.save(result, conversation_id=conversation_id)
    request = result.request
    meta = {
        "kind": ILLUSTRATION,
        "images": [image.id for image in saved],
        "prompt": request.prompt,
    }
    if result.revised_prompt:
        meta["revised_prompt"] = result.revised_prompt
    cost = None
    if result.cost is not None:
        cost = result.cost + (prompt_cost or 0.0)
    message = Message(
        role="assistant",
        # The text also goes to the chat model with later messages, so it says what the
        # picture shows rather than pretending the model drew it.
        content=f"*Illustration:* {request.prompt}",
        model=request.model,
        usage_exact=True,  # no token counts to estimate: the cost is the image's
        cost=cost,
        meta=meta,
    )
    return saved, ctx.store.add_message(conversation_id, message)


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_EXCHANGE_CHARS else text[:MAX_EXCHANGE_CHARS] + "…"


def _clean(text: str | None) -> str:
    text = (text or "").strip()
    for prefix in ("Prompt:", "prompt:", "Image prompt:"):
        text = text.removeprefix(prefix).strip()
    quotes = {'"': '"', "'": "'", "“": "”"}
    if len(text) > 1 and quotes.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text
