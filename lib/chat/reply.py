"""A reply streamed from the model: the one request path, saving as it streams, how it ends.

`Reply` builds the request from the trimmed history (`lib.prompt`), streams text chunks
for `st.write_stream` or a terminal, and saves the assistant message as it arrives (so a
crash loses at most about a second of it) and for good when the stream ends, fails, is
stopped or is cut off. Closing a `Reply` early closes the HTTP stream and keeps the
partial text, marked.

A reply's status says how it ended: "ok"; "streaming" while it arrives; "stopped" by the
user's Stop only; "interrupted" when the connection dropped, the page was left or Parley
stopped (`lib.inflight` tells a dead process's reply from a live one); "truncated" at the
size cap (`ChatContext.max_reply_chars`); "failed" when the server's answer was no reply
(`meta["error"]` says what it did wrong). A failed reply is not sent back to the model.

Counts and the window come from `ChatContext.server` (`lib.server.facts`). When the server
says the prompt overflowed its context before any text came (OpenAI's and llama-cpp-python's
`context_length_exceeded`, vLLM's and llama-server's 400, an error event mid-stream, or
llama-cpp-python's silent empty stream, see `lib.server.overflow`), the reply learns the
window the error states, remembers it through `server.learn_window`, trims to it in the
server's own token terms and sends once more (`overflow.RETRIES`); then it gives up with
a message saying what to shorten. An overflow never ends as an empty "ok" reply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from lib import errors, inflight
from lib.client import TRANSPORT_ERRORS, send_once
from lib.conversations import Conversation, Message
from lib.memory import TrimResult
from lib.prompt import Prompt, prepare, request_options, trim_limit
from lib.server import overflow
from lib.store.backend import is_database_error
from lib.tokens import TOKENS_PER_REPLY

if TYPE_CHECKING:
    from lib.chat import ChatContext

log = logging.getLogger(__name__)
# A streaming reply is saved every SAVE_EVERY_S, or sooner once SAVE_EVERY_CHARS of new
# text arrived (but at most every MIN_SAVE_GAP_S, since each save re-indexes the text).
SAVE_EVERY_S = 1.0
SAVE_EVERY_CHARS = 500
MIN_SAVE_GAP_S = 0.25


class Reply:
    """An assistant reply as an iterator of text chunks (choice 0 when n > 1).

    After iteration, `stop()` or `close()`, `message` is the saved assistant message (None
    when nothing arrived and there was nothing to report). Subclasses change what is sent
    and what is saved through two public hooks, `system_prompt` and `annotate`, and inherit
    the rest: the one request path, the streaming saves, the size cap and the faults.
    """

    def __init__(self, ctx: ChatContext, conv: Conversation, after: int | None = None) -> None:
        self.ctx = ctx
        self.conv = conv
        # The message answered: the reply is sent the path ending there and saved after it,
        # wherever the conversation's shown path goes meanwhile. None: the end of the path
        # shown when the request is built.
        self.after = after
        self.alternatives: list[Message] = []  # choices 1.. of an n > 1 reply, its siblings
        self.prompt: Prompt | None = None  # the request as last sent
        self.message: Message | None = None
        self.started_at = time.perf_counter()
        self.first_token_at: float | None = None
        self._texts: dict[int, str] = {}
        self._chars = 0  # over every choice, against ctx.max_reply_chars
        self._truncated = False
        self._usage: Any = None
        self._finish: dict[int, str | None] = {}
        self._stream: Any = None
        self._events = 0  # chunks read from the current stream
        self._system: str | None = None  # the system prompt being sent
        self._shrink = False
        self._fit: overflow.Fit | None = None  # this reply's overflow; None: the last one
        self._overflows = 0
        self._done = False
        self._unbilled = False  # set by `fail` for a request that did no work
        self._row: Message | None = None  # the row saved while streaming
        self._saved_at = 0.0
        self._saved_chars = 0
        self._owner: dict[str, Any] | None = None
        self._pieces: Iterator[str] | None = None

    # Hooks for subclasses

    def system_prompt(self, too_long: int) -> str:
        """The system message to send. `too_long` counts how often the server already said
        this reply's prompt was longer than its context: return something shorter to try
        again, or the same text to let the history be halved once, then give up."""
        return self.conv.system_prompt

    def annotate(self, message: Message) -> None:
        """Add to a finished reply's `meta` (and cost) just before it is saved."""

    # Streaming

    def __iter__(self) -> Iterator[str]:
        # An iterator, not a generator: when Streamlit stops a script run, st.write_stream
        # drops its iterator, and a generator would end the reply there, before the page
        # could say whether the user's Stop was the reason (`stop`) or not (`close`).
        return self

    def __next__(self) -> str:
        if self._pieces is None:
            self._pieces = self._run()
        try:
            return next(self._pieces)
        except KeyboardInterrupt:
            self.stop()  # Ctrl-C in a terminal is the user's Stop
            raise
        except errors.ProviderError as exc:
            self.fail(exc)  # a no-op when the stream already saved how it ended
            raise
        except BaseException:
            self.close()  # a no-op after the end or a saved failure
            raise

    @property
    def trim(self) -> TrimResult | None:
        return self.prompt.trim if self.prompt else None

    def _run(self) -> Iterator[str]:
        self._system = self.system_prompt(0)
        while True:
            try:
                self._open()
                yield from self._read()
                return
            except _Overflow as overflow:
                self._refit(overflow.error)

    def _read(self) -> Iterator[str]:
        kind = self._stream.response.headers.get("content-type", "")
        if "html" in kind:
            self._fail(
                f"The server answered with a web page ({kind}), not a reply: a proxy or a "
                "sign-in page may stand between Parley and the model server."
            )
        try:
            for chunk in self._stream:
                piece = self._take(chunk)
                if piece:
                    if self.first_token_at is None:
                        self.first_token_at = time.perf_counter()
                    yield piece
                    self._save_progress()
                if self._truncated:
                    break
        except GeneratorExit:  # abandoned without stop() or close(): keep the partial text
            self.close()
            raise
        except (openai.APIConnectionError, *TRANSPORT_ERRORS) as exc:
            if not isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
                self._check_silence()  # a server that hung up at once may have overflowed
            self._cut(exc)
        except openai.APIError as exc:  # an error event in a 200 stream
            if overflow.in_stream(exc) and not any(self._texts.values()):
                self._stream.close()
                raise _Overflow(exc) from exc
            reason = f"The server reported an error in the middle of the reply: {exc.message}"
            self._fail(reason, too_long=overflow.in_stream(exc))
        except json.JSONDecodeError:
            self._fail("The server sent a malformed event (not JSON) in the reply stream.")
        if self._truncated:
            self._stream.close()  # the server learns at once that the rest is not wanted
            self._save("truncated", limit=self.ctx.max_reply_chars)
            return
        if not any(self._texts.values()):
            self._check_silence()
            self._fail(
                "The server sent an empty reply."
                if "event-stream" in kind or not kind
                else f"The server answered with {kind}, not a stream of reply events."
            )
        self._save("ok")

    def _take(self, chunk: Any) -> str:
        """Record one chunk; return choice 0's new text, cut at the size cap."""
        self._events += 1
        if chunk.usage is not None:
            self._usage = chunk.usage
        text = ""
        for choice in chunk.choices or []:
            piece = (choice.delta.content or "") if choice.delta else ""
            room = self.ctx.max_reply_chars - self._chars
            if len(piece) > room:
                piece, self._truncated = piece[: max(0, room)], True
            self._chars += len(piece)
            self._texts[choice.index] = self._texts.get(choice.index, "") + piece
            if choice.finish_reason:
                self._finish[choice.index] = choice.finish_reason
            if choice.index == 0:
                text += piece
        return text

    def _request(self) -> dict[str, Any]:
        return dict(model=self.conv.model, **request_options(self.conv, self.ctx.provider))

    def _open(self) -> None:
        try:
            self.prompt = prepare(
                self.ctx,
                self.conv,
                shrink=self._shrink,
                system=self._system,
                fit=self._fit,
                end=self.after,
            )
            self.after = self.prompt.end
        except errors.ContextTooLong as exc:
            if not self._overflows:
                raise
            raise errors.ContextTooLong(self._alone_too_long()) from exc
        request = self._request()
        create, messages = self.ctx.client.chat.completions.create, self.prompt.messages
        self._events = 0

        def stream() -> Any:
            return create(
                messages=messages, stream=True, stream_options={"include_usage": True}, **request
            )

        try:
            if self._overflows:
                self._stream = overflow.send_after_refusal(stream, self.ctx.provider)
            else:
                self._stream = send_once(stream)
        except errors.ContextTooLong as exc:
            raise _Overflow(exc) from exc

    # Overflow

    def _check_silence(self) -> None:
        """Raise `_Overflow` if a stream that sent no event at all was an overflow
        (llama-cpp-python's way, see `lib.server.overflow`)."""
        if self._events or self.prompt is None:
            return
        self._stream.close()
        request = {**self._request(), "messages": self.prompt.messages}
        create = self.ctx.client.chat.completions.create
        why = overflow.ask_why_silent(create, request, self.ctx.provider)
        if why is not None:
            raise _Overflow(why) from why

    def _refit(self, error: BaseException) -> None:
        """After an overflow: trim to the window the error states, in the server's own
        token terms, and send once more; or give up, saying what to shorten."""
        self._overflows += 1
        before = self.prompt
        counted = before.trim.prompt_tokens if before else 0
        fit = (
            before.limit.fit
            if before
            else overflow.Fit(scale=self.ctx.server.scale(self.conv.model))
        )
        self._fit, stated = overflow.refit(error, self.ctx.server, self.conv.model, counted, fit)
        if before is None or self._overflows > overflow.RETRIES:
            window = stated or self.ctx.server.window(self.conv.model)
            raise errors.ContextTooLong(overflow.still_too_long(window)) from error
        smaller = trim_limit(self.ctx, self.conv, before.counter, self._fit).tokens
        shorter = self.system_prompt(self._overflows)
        if shorter != self._system:
            self._system = shorter
        elif smaller >= before.limit.tokens:  # nothing learnt: send half the history
            if not before.trim.kept:
                raise errors.ContextTooLong(self._alone_too_long()) from error
            self._shrink = True

    def _alone_too_long(self) -> str:
        return overflow.alone_too_long(self.ctx.server.window(self.conv.model))

    # Ending

    def stop(self) -> None:
        """The user's Stop: close the HTTP stream and keep what arrived, marked stopped."""
        self._end("stopped")

    def close(self) -> None:
        """End the reply for any other reason (the page was left, Parley is shutting down):
        close the HTTP stream and keep what arrived, marked interrupted. A no-op once saved."""
        self._end("interrupted", error="The reply was cut off before it finished.")

    def fail(self, error: BaseException) -> None:
        """Save the turn as failed with `error`'s message when no reply came: the server
        could not be reached or refused the request, or the question could not be fitted.
        The error then stands where the reply would be, and a reload still shows it with
        Retry, instead of a question left unanswered with nothing to say why. A no-op once
        saved (a stream that failed or was cut saved its own ending)."""
        if self._done:
            return
        if self._stream is not None:
            self._stream.close()
        # Refused before any work, or never sent: nothing used or billed. A request that
        # timed out or got a 5xx may have run, so it is counted like any other.
        self._unbilled = self._stream is None and not isinstance(
            error, errors.RequestTimedOut | errors.ServerFailed
        )
        self._save("failed", error=str(error))

    def _end(self, status: str, **meta: Any) -> None:
        if self._stream is not None:
            self._stream.close()
            if not self._done and (any(self._texts.values()) or self._row is not None):
                self._save(status, **meta)
        if not self._done:
            inflight.release(self._owner)

    def _cut(self, exc: BaseException) -> None:
        log.warning("stream interrupted: %s", type(exc).__name__)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            what = "The server went quiet for longer than the timeout"
        else:
            what = "The connection dropped"
        if not any(self._texts.values()):
            self._fail(f"{what} before the reply began.")
        self._save("interrupted", error=f"{what} in the middle of the reply.")
        raise errors.StreamInterrupted(f"{what} in the middle of the reply.") from exc

    def _fail(self, reason: str, *, too_long: bool = False) -> None:
        """Close the stream, save the turn as failed with `reason`, and raise it."""
        self._stream.close()
        self._save("failed", error=reason)
        if too_long:
            raise errors.ContextTooLong(reason)
        raise errors.BadReply(reason)

    @property
    def text(self) -> str:
        return self._texts.get(0, "")

    # Saving

    def _save_progress(self) -> None:
        """Save the text so far, at most about a second (or SAVE_EVERY_CHARS) behind."""
        now = time.monotonic()
        gap, unsaved = now - self._saved_at, self._chars - self._saved_chars
        if self._row is not None and not (
            gap >= SAVE_EVERY_S or (unsaved >= SAVE_EVERY_CHARS and gap >= MIN_SAVE_GAP_S)
        ):
            return
        self._saved_at, self._saved_chars = now, self._chars
        store, cid = self.ctx.store, self.conv.id
        try:
            if self._row is None:
                # Registered before the row exists, so no reader ever takes it for an orphan.
                self._owner = self._owner or inflight.register()
                row = Message("assistant", self.text, "streaming", self.conv.model)
                row.meta["owner"] = self._owner
                self._row = store.add_message(cid, row, parent=self.after)
                inflight.track(self._owner, store, cid, self._row.id)
            else:
                store.update_streaming(cid, self._row.id, content=self.text)
        except Exception as exc:
            if not (isinstance(exc, errors.ParleyError) or is_database_error(exc)):
                raise
            # DiskFull, a database gone away: the reply goes on, and the final save retries.
            log.warning("could not save the reply so far: %s", exc)

    def _save(self, status: str, **extra: Any) -> None:
        if self._done:
            return
        self._done = True
        texts = [self._texts.get(i, "") for i in range(max(self._texts, default=0) + 1)]
        meta: dict[str, Any] = {"finish_reason": self._finish.get(0), **extra}
        if self.first_token_at is not None:
            meta["first_token_s"] = round(self.first_token_at - self.started_at, 3)
        message = Message(
            role="assistant", content=texts[0], status=status, model=self.conv.model, meta=meta
        )
        self._account(message, texts)
        self.annotate(message)
        store, cid = self.ctx.store, self.conv.id
        try:
            if self._row is None:
                self.message = store.add_message(cid, message, parent=self.after)
            else:
                message.id, message.created_at = self._row.id, self._row.created_at
                message.parent_id = self._row.parent_id
                store.update_message(cid, message)
                self.message = message
            if status != "failed":
                self._save_alternatives(texts[1:], status)
        finally:
            inflight.release(self._owner)

    def _save_alternatives(self, texts: list[str], status: str) -> None:
        """Choices 1.. of an n > 1 reply, as siblings of choice 0 (which the path takes and
        which carries the request's usage and cost)."""
        for i, text in enumerate(texts, start=1):
            sibling = Message(
                "assistant",
                text,
                status,
                self.conv.model,
                meta={"finish_reason": self._finish.get(i), "choice": i},
            )
            self.alternatives.append(
                self.ctx.store.add_message(self.conv.id, sibling, parent=self.after, current=False)
            )

    def _account(self, message: Message, texts: list[str]) -> None:
        if self._unbilled:
            message.tokens, message.prompt_tokens, message.completion_tokens = 0, 0, 0
            message.cost = 0.0
            return
        prompt = self.prompt
        counter = prompt.counter if prompt else self.ctx.server.counter(self.conv.model)
        message.tokens = counter.count_message(message.content)
        message.tokens_encoding = counter.name
        if self._usage is not None:
            message.prompt_tokens = self._usage.prompt_tokens
            message.completion_tokens = self._usage.completion_tokens
            message.usage_exact = True
            message.meta["usage_source"] = "api"
        else:
            message.prompt_tokens = prompt.trim.prompt_tokens if prompt else None
            message.completion_tokens = sum(counter.count(t) for t in texts) + TOKENS_PER_REPLY
            message.usage_exact = counter.exact
            message.meta["usage_source"] = _counted_by(counter.name, counter.exact)
        if prompt is not None:
            message.meta["context"] = _context_meta(prompt, counter.exact)
        message.cost = self.ctx.cost(
            self.conv.model, message.prompt_tokens or 0, message.completion_tokens or 0
        )


class _Overflow(Exception):
    """The server said the prompt is longer than its context, before any text came."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _counted_by(name: str, exact: bool) -> str:
    if not exact:
        return "estimate"
    return "tokenizer" if name.startswith("server:") else "tiktoken"


def _context_meta(prompt: Prompt, counts_exact: bool) -> dict[str, Any]:
    """What the gauge shows of a request: its parts, and the window it was trimmed to."""
    trim, limit = prompt.trim, prompt.limit
    known = bool(limit.override or limit.window.tokens)
    return {
        "system": trim.system_tokens,
        "history": trim.history_tokens,
        "new": trim.new_tokens,
        "dropped": trim.dropped,
        "window": limit.shown,
        "window_source": "your override" if limit.override else limit.window.source,
        "window_known": known,
        "estimate": not counts_exact,
    }
