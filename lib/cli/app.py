"""Parley's command line: `python -m lib.cli` chats; `list`, `show`, `export` read the store;
`import` brings conversations in from ChatGPT, Open WebUI, LibreChat or Parley exports;
`backup` and `restore` copy the whole data directory out and back; `migrate-store` moves
it into PostgreSQL.

It runs on the web app's core (`lib.chat`, `lib.conversations`, `lib.export`) and its
SQLite store, so a conversation started in one continues in the other. Settings resolve
as in the app: command-line flags, then `.streamlit/secrets.toml`, then the environment.
An error prints one line and exits non-zero, never a traceback. There is deliberately no
--api-key flag: a key on a command line lands in shell history and `ps` output.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from lib import export
from lib.access import LOCAL_WORKSPACE, valid_workspace
from lib.chat.attachments import AttachmentStore
from lib.cli.hints import describe
from lib.cli.lookup import PROG, ChatOptions, find_conversation, open_chat
from lib.cli.output import Terminal
from lib.conversations import ConversationStore
from lib.errors import ConfigError, ParleyError
from lib.settings import Settings, resolve_settings, workspace_name
from lib.store.backend import backend_for, is_database_error
from lib.usage import money

app = typer.Typer(
    help="Chat with Parley in the terminal, on the same conversations as the web app.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _check_workspace(value: str | None) -> str:
    # The flag, else PARLEY_WORKSPACE from secrets or the environment (one resolver).
    if not value:
        value = reports_errors(_configured_workspace)() or LOCAL_WORKSPACE
    # A typo would otherwise show an empty, valid-looking store.
    if not valid_workspace(value):
        raise typer.BadParameter("use local, shared, or an account's u_… id.")
    return value


Workspace = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        callback=_check_workspace,
        show_default="local, or PARLEY_WORKSPACE",
        help="Whose conversations to use: 'local' (the web app's local mode), 'shared' "
        "(its password mode) or a signed-in account's u_… id.",
    ),
]
ConversationRef = Annotated[
    str, typer.Argument(metavar="ID", help="A conversation id, or a unique prefix of one.")
]
F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn Parley's errors (and storage failures) into one line on stderr and exit 1."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ParleyError as exc:
            message = describe(exc)
        except Exception as exc:
            if not (isinstance(exc, OSError) or is_database_error(exc)):
                raise
            message = f"{type(exc).__name__}: {exc}"
        Terminal().error(message)
        raise typer.Exit(1)

    return run  # type: ignore[return-value]


# Settings and lookups


def _configured_workspace() -> str | None:
    return workspace_name(None, read_secrets(secret_files()), os.environ)


def secret_files() -> list[Path]:
    """Where Streamlit looks by default: the user's global file, then the working directory's."""
    return [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]


def read_secrets(paths: list[Path]) -> dict[str, Any]:
    """The merged secrets files; later files win, as in Streamlit."""
    merged: dict[str, Any] = {}
    for path in dict.fromkeys(p.resolve() for p in paths):
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return merged


def load_settings(explicit: Mapping[str, Any] | None = None) -> Settings:
    flags = {k: v for k, v in (explicit or {}).items() if v not in (None, "")}
    return resolve_settings(flags, read_secrets(secret_files()), os.environ)


def open_store(settings: Settings, workspace: str) -> ConversationStore:
    """The conversations of `workspace`, on the backend the settings name."""
    return ConversationStore(backend_for(settings), workspace)


@app.callback(invoke_without_command=True)
@reports_errors
def chat_command(
    ctx: typer.Context,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Chat model.")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 to 2.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Above 0, at most 1.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", help="Most tokens per reply.")
    ] = None,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="A stop sequence; repeat for up to 4.")
    ] = None,
    n: Annotated[
        int | None, typer.Option("-n", help="Replies per message (1-8); you pick one.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--continue", "-c", help="Continue the most recent chat.")
    ] = False,
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Continue conversation ID.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="Preset: openai, azure, ollama, lmstudio, vllm, ...")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """Chat in the terminal (the default command). Flags given while continuing a
    conversation change its settings, as the web app's sidebar does."""
    if ctx.invoked_subcommand is not None:
        return
    # Imported here: the OpenAI SDK takes most of a second to load, which `list`,
    # `show` and `export` never need.
    from lib import chat
    from lib.cli.lookup import Draft
    from lib.cli.session import ChatSession
    from lib.client import build_client
    from lib.pricing import PriceTable
    from lib.server.facts import Probed

    terminal = Terminal()
    settings = load_settings({"base_url": base_url, "provider": provider, "chat_model": model})
    client = build_client(settings)
    store = open_store(settings, workspace)
    opts = ChatOptions(system, model, temperature, top_p, max_tokens, stop, n, latest, conversation)
    conv = open_chat(store, settings, opts, terminal)
    if isinstance(conv, Draft) and not model:
        conv.model, note = start_model(client, settings)
        if note:
            terminal.note(note, "yellow")
    prices = PriceTable.load(settings.data_dir)
    context = chat.ChatContext(
        store,
        client,
        prices,
        settings.provider,
        settings.max_reply_chars,
        base_url=settings.base_url,
        server=Probed(client, settings.provider),  # the server's tokenizer and window
    )
    ChatSession(context, terminal, conv).run()


def start_model(client: Any, settings: Settings) -> tuple[str, str | None]:
    """The model a new chat starts with: the configured one if the server has it, else
    the one it offers (or its first chat model), with a note saying so. OpenAI and Azure
    are not asked: Azure lists base models, not the deployments a request names."""
    from lib.models import choose_models, list_server_models
    from lib.server.probe import PROBE_TIMEOUT

    if settings.provider in ("openai", "azure"):
        return settings.chat_model, None
    try:  # a metadata answer takes milliseconds: a server that hangs is not waited out
        names: list[str] | None = list_server_models(client.with_options(timeout=PROBE_TIMEOUT))
    except ParleyError:
        return settings.chat_model, None  # the first message will say what is wrong
    chosen, note = choose_models(names, settings.chat_model)
    return chosen[0], note


# Reading the store


@app.command("list")
@reports_errors
def list_command(
    limit: Annotated[int, typer.Option("--limit", "-l", help="How many to show.")] = 20,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. chat.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-q", help="Full-text search in messages.")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """List conversations, newest first (or search them)."""
    store = open_store(load_settings(), workspace)
    terminal = Terminal()
    if search is not None:
        hits = store.search(search, kind=kind, limit=limit)
        items = [(store.get(h.conversation_id), h.snippet) for h in hits]
    else:
        convs = store.list(kind=kind, limit=limit)
        items = [(c, f"{store.count_messages(c.id)} messages") for c in convs]
    if not items:
        terminal.note("No conversations found." if search else "No conversations yet.")
        return
    terminal.conversations(items)


@app.command()
@reports_errors
def show(conversation_id: ConversationRef, workspace: Workspace = None) -> None:
    """Print a conversation (Markdown, rendered on a terminal)."""
    store = open_store(load_settings(), workspace)
    conv = find_conversation(store, conversation_id)
    terminal = Terminal()
    terminal.markdown(export.to_markdown(conv, store.path(conv.id)))
    totals = store.totals(conv.id)
    if terminal.rich and totals.replies:
        terminal.note(
            f"{conv.id} · {totals.replies} replies · {totals.prompt_tokens:,} in · "
            f"{totals.completion_tokens:,} out tokens · {money(totals.cost)}"
        )


class ExportFormat(StrEnum):
    md = "md"
    json = "json"


@app.command("export")
@reports_errors
def export_command(
    conversation_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[ID]",
            help="A conversation id, or a unique prefix of one (not with --all).",
            show_default=False,
        ),
    ] = None,
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="The whole workspace as one zip: every conversation (JSON and Markdown), "
            "the documents and the images, which `import` reads back.",
        ),
    ] = False,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.md,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """Export a conversation as Markdown or JSON, as the web app's download does; with
    --all, the whole workspace as a zip."""
    if everything == (conversation_id is not None):
        raise typer.BadParameter(
            "give a conversation's ID, or --all for the whole workspace (not both).",
            param_hint="ID / --all",
        )
    store = open_store(load_settings(), workspace)
    if everything:
        _export_workspace(store, output)
        return
    conv = find_conversation(store, conversation_id)
    files = AttachmentStore(store.backend, store.workspace)  # attached files go too
    if fmt is ExportFormat.json:  # the whole tree; Markdown, the path shown
        tree = store.all_messages(conv.id)
        text = export.to_json(conv, tree, files.export_entries(tree, data=True)) + "\n"
    else:
        shown = store.path(conv.id)
        text = export.to_markdown(conv, shown, files.export_entries(shown, data=False))
    if output is None:
        Terminal().write(text)
        return
    output.write_text(text, encoding="utf-8")
    Terminal().note(f"Wrote {output}")


def _export_workspace(store: ConversationStore, output: Path | None) -> None:
    from datetime import datetime

    from lib.history.workspace_export import export_workspace

    target = output or Path(f"parley-{store.workspace}-{datetime.now():%Y-%m-%d}.zip")
    if target.is_dir():
        raise typer.BadParameter(f"{target} is a directory; name the zip to write.")
    terminal = Terminal()
    progress = _in_tenths(terminal)

    summary = export_workspace(store.backend, store.workspace, target, progress=progress)
    terminal.write(summary.line() + "\n")


@app.command("import")
@reports_errors
def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="An export: ChatGPT's data export zip (or its conversations.json), Open "
            "WebUI's or LibreChat's chat export JSON, or Parley's own.",
            exists=True,
            dir_okay=False,
        ),
    ],
    workspace: Workspace = None,
) -> None:
    """Import conversations from another app's export; importing the same file again adds
    nothing, and a conversation goes in whole or not at all. Ctrl-C cancels as the
    History page's Cancel does: the import stops after the conversation it is in, and
    the report says what came in; a second Ctrl-C stops at once (what is mid-transaction
    is rolled back)."""
    from lib.history.importer import Importer

    settings = load_settings()
    store = open_store(settings, workspace)
    terminal = Terminal()
    progress = _in_tenths(terminal)

    with _ctrl_c_cancels(terminal) as cancelled:
        job = Importer(store, progress=progress, cancelled=cancelled, ocr=settings.ocr)
        report = job.run(path)
    terminal.write("\n".join(report.lines()) + "\n")
    if report.cancelled:
        raise typer.Exit(130)  # the shell's code for a job stopped by Ctrl-C
    if report.failed:
        raise typer.Exit(1)


@contextlib.contextmanager
def _ctrl_c_cancels(terminal: Terminal) -> Iterator[Callable[[], bool]]:
    """While inside, the first Ctrl-C asks a long job to stop at its next safe point (the
    callable it yields turns true); the second interrupts as usual."""
    asked = threading.Event()

    def on_interrupt(signum: int, frame: Any) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        terminal.note("Stopping after this conversation (Ctrl-C again to stop at once)…")

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread (CliRunner in a thread): no signal to catch
        yield asked.is_set
        return
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


# Backups

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The data directory (default: PARLEY_DATA_DIR, or data/)."),
]


@app.command("backup")
@reports_errors
def backup_command(
    path: Annotated[Path, typer.Argument(help="A new directory to hold the backup.")],
    data_dir: DataDir = None,
) -> None:
    """Back up the database and every file (documents, indexes, images); safe while the
    web app or a chat runs."""
    from lib import backup

    settings = load_settings({"data_dir": data_dir})
    source = settings.data_dir
    report = backup.backup(source, path, database_url=settings.database_url)
    terminal = Terminal()
    terminal.note(
        f"Backed up {report.files} files ({_megabytes(report.bytes)}) from {source} to "
        f"{report.path} in {report.seconds:.1f} s."
    )
    if report.missing:
        terminal.error(
            f"{len(report.missing)} file(s) were deleted while the backup ran, so the "
            f"backup lacks them: {', '.join(report.missing[:5])}"
        )


@app.command("restore")
@reports_errors
def restore_command(
    path: Annotated[Path, typer.Argument(help="A backup made by `backup`.")],
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into an empty data directory, verifying every file first."""
    from lib import backup

    target = load_settings({"data_dir": data_dir}).data_dir
    report = backup.restore(path, target)
    Terminal().note(
        f"Restored {report.files} files ({_megabytes(report.bytes)}) from {path} into "
        f"{target} in {report.seconds:.1f} s; every file matched the manifest."
    )


@app.command("migrate-store")
@reports_errors
def migrate_store_command(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="URL",
            help="The PostgreSQL database: postgresql://user@host/db (default: "
            "PARLEY_DATABASE_URL; PGPASSWORD keeps the password off the command line).",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Copy the data directory (every workspace, row, file and vector) into PostgreSQL,
    then check every table, file and vector; run it again to finish or to re-check: it
    copies nothing twice."""
    from lib.store import migrate

    settings = load_settings({"data_dir": data_dir, "database_url": to})
    terminal = Terminal()

    def progress(tally: migrate.Tally) -> None:
        if tally.finished:
            terminal.note(f"{tally.item}: {tally.copied:,} copied, {tally.present:,} already there")

    report = migrate.migrate_store(
        settings.data_dir, settings.database_url, settings.blob_store, progress=progress
    )
    terminal.write(migrate.describe(report))
    if not report.ok:
        raise typer.Exit(1)


def _in_tenths(terminal: Terminal) -> Callable[[float, str], None]:
    """A progress callback that prints a line each time another tenth is done."""
    shown = {"tenth": -1}

    def progress(share: float, text: str) -> None:
        if int(share * 10) > shown["tenth"]:
            shown["tenth"] = int(share * 10)
            terminal.note(f"{share:4.0%}  {text}")

    return progress


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"


def main() -> None:
    app(prog_name=PROG)
