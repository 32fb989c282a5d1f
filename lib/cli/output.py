"""Terminal output for the CLI: rich Markdown on a terminal, plain text anywhere else.

Model output and stored messages are untrusted text. On a terminal, escape sequences in
them could move the cursor, retitle the window or fake a prompt, so control characters
are removed before printing there; raw HTML is shown as text, as the web app shows it.
Piped output is written unchanged, so `show` and `export` stay faithful to the store.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType

from markdown_it.token import Token
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from lib.conversations import Conversation, Message

# C0 controls except tab and newline, DEL, and the C1 range (8-bit CSI/OSC).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
STATUS_NOTES = {
    "stopped": "Stopped by you. The partial reply was kept.",
    "interrupted": "Cut off before it finished. The partial reply was kept.",
    "failed": "The server sent no usable reply; /retry asks again.",
    "truncated": "Cut off at Parley's size limit for one reply (PARLEY_MAX_REPLY_CHARS).",
    "streaming": "Still being written.",
}


def clean(text: str) -> str:
    """Text safe to print on a terminal: no escape or other control sequences."""
    return _CONTROL.sub("", text)


class SafeMarkdown(Markdown):
    """Markdown whose raw HTML is shown as text rather than silently dropped."""

    def __init__(self, markup: str, **kwargs: object) -> None:
        super().__init__(clean(markup), **kwargs)  # type: ignore[arg-type]
        _html_as_text(self.parsed)


def _html_as_text(tokens: Iterable[Token]) -> None:
    for token in tokens:
        if token.type == "html_inline":
            token.type = "text"
        elif token.type == "html_block":
            token.type = "code_block"
        if token.children:
            _html_as_text(token.children)


class _Tail:
    """The end of a growing Markdown reply, cut to the screen so a live view never scrolls."""

    def __init__(self) -> None:
        self.text = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(SafeMarkdown(self.text), options, pad=False)
        for line in lines[-max(1, console.size.height - 2) :]:
            yield from line
            yield Segment.line()


class ReplyView:
    """Shows a reply while it streams; on leaving, prints the whole reply once."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.text = ""
        self._tail = _Tail()
        self._live: Live | None = None

    def __enter__(self) -> ReplyView:
        if self.terminal.rich:
            self._live = Live(
                self._tail,
                console=self.terminal.console,
                refresh_per_second=12,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def add(self, piece: str) -> None:
        self.text += piece
        if self._live is None:
            self.terminal.write(piece)
        else:
            self._tail.text = self.text

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is None:
            if self.text:
                self.terminal.write("\n")
            return
        self._live.stop()
        if self.text:
            self.terminal.console.print(SafeMarkdown(self.text))


class Terminal:
    """Where the CLI writes: stdout for content, stderr for notes and errors."""

    def __init__(self, rich: bool | None = None) -> None:
        self.console = Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)
        self.rich = self.console.is_terminal if rich is None else rich

    def write(self, text: str) -> None:
        sys.stdout.write(clean(text) if self.rich else text)
        sys.stdout.flush()

    def markdown(self, text: str) -> None:
        if self.rich:
            self.console.print(SafeMarkdown(text))
        else:
            self.write(text if text.endswith("\n") else text + "\n")

    def note(self, text: str, style: str = "dim") -> None:
        """A remark about the session, never part of the content (goes to stderr)."""
        self.errors.print(Text(clean(text), style=style), soft_wrap=True)

    def error(self, text: str) -> None:
        self.errors.print(Text("Error: " + clean(text), style="bold red"), soft_wrap=True)

    def label(self, text: str, style: str = "bold cyan") -> None:
        if self.rich:
            self.console.print(Text(clean(text), style=style))
        else:
            self.write(f"[{text}]\n")

    def reply_view(self) -> ReplyView:
        return ReplyView(self)

    def message(self, message: Message) -> None:
        """One stored message, as in a transcript."""
        user = message.role == "user"
        self.label("You" if user else "Assistant", "bold green" if user else "bold cyan")
        self.markdown(message.content or "(no text)")
        if message.status in STATUS_NOTES:
            self.note(STATUS_NOTES[message.status], "yellow")

    def conversations(self, items: list[tuple[Conversation, str]]) -> None:
        """A table of conversations with a detail column (message count or search snippet)."""
        if not self.rich:
            for conv, detail in items:
                self.write(
                    "\t".join([conv.id, _when(conv.updated_at), conv.kind, conv.title, detail])
                    + "\n"
                )
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in ("ID", "Updated", "Kind", "Title", ""):
            table.add_column(name, overflow="fold")
        for conv, detail in items:
            table.add_row(
                Text(conv.id[:8], style="cyan"),
                _when(conv.updated_at),
                conv.kind,
                Text(clean(conv.title)),
                Text(clean(detail), style="dim"),
            )
        self.console.print(table)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
