"""The interactive chat loop: read a line, send it through `lib.chat`, stream the reply.

Ctrl-C while a reply streams stops it: `Reply.stop()` closes the HTTP stream and saves
the partial text marked "stopped". Ctrl-C (or Ctrl-D) at the prompt leaves, as do
the exit words. Every message is saved by `lib.chat` as it happens, so leaving at any
moment loses nothing, and the web app shows the same conversation.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from lib import chat, errors, inflight
from lib.cli.hints import RETRY, describe
from lib.cli.lookup import Draft
from lib.cli.output import Terminal
from lib.conversations import Conversation, Message
from lib.errors import ParleyError
from lib.usage import usage_line

EXIT_WORDS = {"exit", "退出", "再见"}
HELP = "/help"
HISTORY_SHOWN = 4  # messages reprinted when a conversation is resumed
# Errors that every further message would hit too: end the session instead of repeating.
FATAL = (
    errors.ConfigError,
    errors.AuthenticationFailed,
    errors.ServerUnreachable,
    errors.ModelRejected,
    errors.NotFoundError,
)
HELP_TEXT = (
    f"Type a message and press Enter. {RETRY} answers your last message again. "
    "Ctrl-C stops a reply; Ctrl-C at the prompt, Ctrl-D, or exit / 退出 / 再见 leaves."
)


class Leave(Exception):
    """The user asked to end the session (a Ctrl-C while a stopped reply was being saved)."""


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold Ctrl-C while a stopped reply is saved; the yielded list records presses."""
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


class ChatSession:
    """One terminal chat on one conversation (existing, or a draft saved on first send)."""

    def __init__(
        self,
        ctx: chat.ChatContext,
        terminal: Terminal,
        conversation: Conversation | Draft,
        *,
        interactive: bool | None = None,
        read: Callable[[str], str] = input,
    ) -> None:
        self.ctx = ctx
        self.out = terminal
        self.conv = conversation
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.read = read

    # The loop

    def run(self) -> None:
        """Chat until an exit word, Ctrl-C at the prompt or end of input."""
        if self.interactive:
            _enable_line_editing()
            # Loading the tokenizer takes about half a second, and asking the server for
            # its own and for the model's window a few requests: do it while the user types.
            threading.Thread(target=self._prefetch, daemon=True).start()
            self._greet()
        while True:
            try:
                text = self.read(self._prompt())
            except (KeyboardInterrupt, EOFError):
                if self.interactive:
                    self.out.write("\n")
                return
            command = text.strip()
            if command.lower() in EXIT_WORDS:
                return
            if not command:
                continue
            try:
                self.turn(command)
            except (Leave, KeyboardInterrupt):
                return  # a Ctrl-C outside a reply's stream, e.g. while saving the question

    def turn(self, text: str) -> None:
        """Answer one line; recoverable errors are reported and the loop goes on."""
        try:
            if text == HELP:
                self.out.note(HELP_TEXT, "")
            elif text == RETRY:
                if isinstance(self.conv, Draft):  # don't save an empty conversation for this
                    raise errors.InvalidInputError("There is no message to answer yet.")
                self._answer(chat.regenerate(self.ctx, self.conv.id))
            else:
                self._answer(chat.send(self.ctx, self._saved().id, text))
        except ParleyError as exc:
            # Piped input has no one to read a message and carry on: fail like a script.
            if isinstance(exc, FATAL) or not self.interactive:
                raise
            self.out.error(describe(exc))

    def _saved(self) -> Conversation:
        if isinstance(self.conv, Draft):
            draft = self.conv
            self.conv = self.ctx.store.create(
                model=draft.model,
                system_prompt=draft.system_prompt,
                params=draft.params,
            )
        return self.conv

    # One reply

    def _answer(self, reply: chat.Reply) -> None:
        if reply.conv.params.n > 1:
            self.out.label(f"Reply 1 of {reply.conv.params.n}")
        stopped = self._stream(reply)
        message = reply.message
        if message is None:
            if stopped:  # before the first byte: only the question was saved
                self.out.note(f"Stopped before the reply began; {RETRY} asks again.", "yellow")
            return
        if stopped:
            self.out.note("Stopped. The partial reply was kept.", "yellow")
        elif message.status == "truncated":
            limit = message.meta.get("limit") or 0
            self.out.note(
                f"Cut off at {limit:,} characters, the most Parley keeps of one reply "
                "(PARLEY_MAX_REPLY_CHARS).",
                "yellow",
            )
        if self.interactive:
            self.out.note(usage_line(message))
        if reply.alternatives:
            self._choose([message, *reply.alternatives])

    def _stream(self, reply: chat.Reply) -> bool:
        """Stream the reply; True when Ctrl-C stopped it. A second Ctrl-C leaves."""
        try:
            with self.out.reply_view() as view:
                for piece in reply:
                    view.add(piece)
        except KeyboardInterrupt:
            with deferred_interrupts() as pressed:
                reply.stop()  # closes the HTTP stream; saves the partial text as "stopped"
            if pressed:
                raise Leave() from None
            return True
        finally:
            reply.close()  # a no-op after a complete reply; ends the stream after an error
        return False

    def _choose(self, versions: list[Message]) -> None:
        """Show an n > 1 reply's other choices (saved as its sibling versions) and let the
        user pick which one the chat continues from."""
        for index, version in enumerate(versions[1:], start=2):
            self.out.label(f"Reply {index} of {len(versions)}")
            self.out.markdown(version.content)
        if not self.interactive:
            return  # piped input holds messages, not choices: keep the streamed reply
        pick = self._ask_choice(len(versions), 0)
        if pick != 0:
            chat.switch(self.ctx.store, self._saved().id, versions[pick].id)
            self.out.note(f"Continuing from reply {pick + 1}.")

    def _ask_choice(self, count: int, chosen: int) -> int:
        question = f"Continue from which reply? [1-{count}, Enter keeps {chosen + 1}] "
        while True:
            try:
                answer = self.read(question).strip()
            except (KeyboardInterrupt, EOFError):
                self.out.write("\n")
                return chosen
            if not answer:
                return chosen
            if answer.isdigit() and 1 <= int(answer) <= count:
                return int(answer) - 1
            self.out.note(f"Type a number from 1 to {count}.", "yellow")

    # Around the loop

    def _prefetch(self) -> None:
        self.ctx.server.counter(self.conv.model)
        self.ctx.server.window(self.conv.model)

    def _prompt(self) -> str:
        if not self.interactive:
            return ""
        # \001 and \002 tell readline the escape codes take no room on the line.
        return "\001\x1b[1;32m\002You:\001\x1b[0m\002 " if self.out.rich else "You: "

    def _greet(self) -> None:
        conv = self.conv
        if isinstance(conv, Conversation):
            count = self.ctx.store.count_messages(conv.id)
            self.out.note(f"Resuming “{conv.title}” ({count} messages, {conv.model}).", "bold")
            store = self.ctx.store
            recent = store.recent_messages(conv.id, HISTORY_SHOWN)
            recent = inflight.settle(store, conv.id, recent)  # a crashed reply: interrupted
            if count > len(recent):
                self.out.note(f"… {count - len(recent)} earlier messages (see `show`).")
            for message in recent:
                self.out.message(message)
        else:
            self.out.note(f"New chat with {conv.model}.", "bold")
        self.out.note(HELP_TEXT)


def _enable_line_editing() -> None:
    # Importing readline gives input() arrow keys and history; absent on some platforms.
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401
