"""The terminal chat (`python -m lib.cli`), driven as a person would use it.

Interactive tests run the CLI in a child process on a pseudo-terminal (pexpect), talking
to the in-process FakeOpenAI through real sockets; piped tests run it with plain pipes.
Conversations made through the web app's core (`lib.chat`) are resumed from the CLI,
and the CLI's are read back through the same store.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pexpect
import pytest

from lib import chat, export
from lib.conversations import ChatParams, Conversation, ConversationStore, Message
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07\x1b]*(\x07|\x1b\\))")
# Variables from the developer's shell that would change what the child does or prints.
SCRUBBED = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "PARLEY_WORKSPACE", "PARLEY_TIMEOUT")
LONG_REPLY = " ".join(f"word{i}" for i in range(200))


@pytest.fixture
def cli_env(
    request: pytest.FixtureRequest, openai_server: FakeOpenAI, data_dir: Path, tmp_path: Path
) -> dict[str, str]:
    """The child's environment: the fake server, this test's data dir, an empty HOME, and
    (for a test on a backend, e.g. through `store`) that backend's PARLEY_DATABASE_URL."""
    if "backend" in request.fixturenames:
        request.getfixturevalue("backend")  # it sets the URL; before the copy below
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        OPENAI_BASE_URL=openai_server.base_url,
        PARLEY_DATA_DIR=str(data_dir),
        HOME=str(home),  # no ~/.streamlit/secrets.toml of the developer's
        PYTHONPATH=str(REPO),
        TERM="xterm-256color",
        LANG="C.UTF-8",
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The child's working directory, where it looks for .streamlit/secrets.toml."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


class Pty:
    """A CLI child on a pseudo-terminal, with everything it printed kept for assertions."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.log = io.StringIO()
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "lib.cli", *args],
            env=env,
            cwd=str(cwd),
            encoding="utf-8",
            dimensions=(40, 120),
            timeout=WAIT,
        )
        self.child.logfile_read = self.log

    def expect(self, text: str) -> None:
        self.child.expect_exact(text)

    def prompt(self) -> None:
        self.expect("You:")

    def say(self, text: str) -> None:
        self.child.sendline(text)

    def finish(self) -> int:
        """Wait for the child to leave; its exit status."""
        self.child.expect(pexpect.EOF)
        self.child.close()
        assert "Traceback" not in self.output
        return self.child.exitstatus

    @property
    def output(self) -> str:
        return ANSI.sub("", self.log.getvalue())


@pytest.fixture
def terminal(cli_env: dict[str, str], workdir: Path) -> Iterator[Callable[..., Pty]]:
    started: list[Pty] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Pty:
        term = Pty(env or cli_env, workdir, *args)
        started.append(term)
        return term

    yield start
    for term in started:
        if term.child.isalive():
            term.child.terminate(force=True)
        term.child.close()


@pytest.fixture
def run(cli_env: dict[str, str], workdir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the CLI with pipes (not a terminal): plain output, scripted input."""

    def run_cli(*args: str, stdin: str = "", env: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "lib.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env or cli_env,
            cwd=workdir,
            timeout=WAIT,
        )

    return run_cli


def core_chat(
    store: ConversationStore,
    server: FakeOpenAI,
    texts: list[str],
    *,
    workspace: str = "local",
    system_prompt: str = "",
) -> Conversation:
    """A conversation made the way the web app makes one: the store and lib.chat."""
    store = ConversationStore(store.backend, workspace)
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client:
        ctx = chat.ChatContext(store, client, provider="custom")
        conv = store.create(model="gpt-5-mini", system_prompt=system_prompt)
        for text in texts:
            for _ in chat.send(ctx, conv.id, text):
                pass
    return store.get(conv.id)


def last_chat_request(server: FakeOpenAI) -> dict:
    return server.requests_to("/chat/completions")[-1].json


# The interactive loop


def test_chat_streams_replies_and_keeps_the_conversation(
    terminal: Callable[..., Pty], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    full = "The quick brown fox jumps over the lazy dog, twice and then once more."
    openai_server.script(full, chunk_size=4, chunk_delay=0.2)
    term = terminal("--system", "Answer briefly.")
    term.prompt()
    term.say("Tell me about foxes")
    term.expect("The quick")
    # The first words are on screen while the reply is still arriving, and saved as such.
    [conv] = store.list()
    deadline = time.monotonic() + WAIT
    while len(store.all_messages(conv.id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    user, partial = store.all_messages(conv.id)
    assert partial.status == "streaming" and full.startswith(partial.content)
    assert len(partial.content) < len(full)
    term.expect("once more.")
    term.prompt()
    term.say("And dogs?")
    term.expect("Echo: And dogs?")
    term.prompt()
    term.say("exit")
    assert term.finish() == 0

    messages = store.all_messages(conv.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "Tell me about foxes", "ok"),
        ("assistant", full, "ok"),
        ("user", "And dogs?", "ok"),
        ("assistant", "Echo: And dogs?", "ok"),
    ]
    sent = last_chat_request(openai_server)["messages"]
    assert sent[0] == {"role": "system", "content": "Answer briefly."}
    assert [m["content"] for m in sent[1:]] == ["Tell me about foxes", full, "And dogs?"]


def test_ctrl_c_stops_the_reply_and_a_second_ctrl_c_leaves(
    terminal: Callable[..., Pty], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    openai_server.script(LONG_REPLY, chunk_size=6, chunk_delay=0.1)
    term = terminal()
    term.prompt()
    term.say("Count for me")
    term.expect("word3")
    term.child.sendintr()
    term.expect("Stopped. The partial reply was kept.")
    assert openai_server.wait_for_disconnects(1), "the HTTP stream was not closed"
    term.prompt()  # still in the chat
    [conv] = store.list()
    user, reply = store.all_messages(conv.id)
    assert reply.status == "stopped"
    assert "word3" in reply.content and LONG_REPLY.startswith(reply.content)
    assert len(reply.content) < len(LONG_REPLY)

    term.child.sendintr()
    assert term.finish() == 0
    assert store.count_messages(conv.id) == 2


def test_ctrl_c_before_the_first_token_keeps_the_question(
    terminal: Callable[..., Pty], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    openai_server.hang(20, route="/chat/completions")  # not the startup's model list
    term = terminal()
    term.prompt()
    term.say("Are you there?")
    deadline = time.monotonic() + WAIT
    while not openai_server.requests_to("/chat/completions") and time.monotonic() < deadline:
        time.sleep(0.05)
    term.child.sendintr()
    term.expect("Stopped before the reply began")
    term.prompt()
    term.say("exit")
    assert term.finish() == 0
    [conv] = store.list()
    assert [m.content for m in store.all_messages(conv.id)] == ["Are you there?"]


@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(lambda t: t.say("exit"), id="exit"),
        pytest.param(lambda t: t.say("退出"), id="tuichu"),
        pytest.param(lambda t: t.say("再见"), id="zaijian"),
        pytest.param(lambda t: t.child.sendintr(), id="ctrl-c"),
        pytest.param(lambda t: t.child.sendeof(), id="ctrl-d"),
    ],
)
def test_exit_words_and_keys_end_the_session(
    terminal: Callable[..., Pty],
    openai_server: FakeOpenAI,
    store: ConversationStore,
    leave: Callable[[Pty], None],
) -> None:
    term = terminal()
    term.prompt()
    term.say("hello")
    term.expect("Echo: hello")
    term.prompt()
    leave(term)
    assert term.finish() == 0
    [conv] = store.list()
    assert store.count_messages(conv.id) == 2  # the exit word is not a message
    assert len(openai_server.requests_to("/chat/completions")) == 1


def test_n_alternatives_are_shown_and_the_pick_continues(
    terminal: Callable[..., Pty], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    term = terminal("-n", "3")
    term.prompt()
    term.say("hi")
    term.expect("Reply 3 of 3")
    term.expect("Echo #3: hi")
    term.expect("Continue from which reply?")
    term.say("7")
    term.expect("Type a number from 1 to 3.")
    term.say("2")
    term.expect("Continuing from reply 2.")
    term.prompt()
    term.say("next")
    term.expect("Continue from which reply?")
    term.say("")
    term.prompt()
    term.say("再见")
    assert term.finish() == 0

    [conv] = store.list()
    first_reply = store.path(conv.id)[1]  # the choices are sibling versions; the path takes #2
    assert first_reply.content == "Echo #2: hi"
    assert [m.content for m in store.all_messages(conv.id)][:4] == [
        "hi", "Echo: hi", "Echo #2: hi", "Echo #3: hi"
    ]  # fmt: skip
    history = [m["content"] for m in last_chat_request(openai_server)["messages"]]
    assert history == ["hi", "Echo #2: hi", "next"]


# Resuming conversations made by the web app's core


@pytest.mark.parametrize("how", ["full id", "id prefix", "--continue"])
def test_resumes_a_conversation_started_in_the_app(
    terminal: Callable[..., Pty],
    openai_server: FakeOpenAI,
    store: ConversationStore,
    how: str,
) -> None:
    core_chat(store, openai_server, ["an older chat"])
    conv = core_chat(store, openai_server, ["What is WAL?"], system_prompt="Be exact.")
    args = {
        "full id": ["--conversation", conv.id],
        "id prefix": ["--conversation", conv.id[:8]],
        "--continue": ["--continue"],
    }[how]
    term = terminal(*args)
    term.expect("Resuming “What is WAL?” (2 messages, gpt-5-mini)")
    term.expect("Echo: What is WAL?")  # the recent history is shown
    term.prompt()
    term.say("And checkpoints?")
    term.expect("Echo: And checkpoints?")
    term.prompt()
    term.say("exit")
    assert term.finish() == 0

    assert len(store.list()) == 2  # no new conversation
    contents = [m.content for m in store.all_messages(conv.id)]
    assert contents == ["What is WAL?", "Echo: What is WAL?", "And checkpoints?",
                        "Echo: And checkpoints?"]  # fmt: skip
    request = last_chat_request(openai_server)
    assert request["model"] == "gpt-5-mini"
    assert [m["content"] for m in request["messages"]] == ["Be exact.", *contents[:3]]


def test_flags_reach_the_request_and_plain_output_when_piped(
    run: Callable[..., subprocess.CompletedProcess], openai_server: FakeOpenAI
) -> None:
    result = run(
        *("--system", "Speak plainly.", "--model", "gpt-4.1-mini", "--temperature", "0.3"),
        *("--top-p", "0.5", "--max-tokens", "50", "--stop", "END", "--stop", "\\n"),
        stdin="hello **there**\nexit\nnot sent\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: hello **there**\n"  # no ANSI codes, no Markdown rendering
    request = last_chat_request(openai_server)
    assert request["model"] == "gpt-4.1-mini"
    assert (request["temperature"], request["top_p"], request["max_tokens"]) == (0.3, 0.5, 50)
    assert request["stop"] == ["END", "\n"]
    assert request["messages"][0] == {"role": "system", "content": "Speak plainly."}
    assert len(openai_server.requests_to("/chat/completions")) == 1


def test_without_model_a_new_chat_uses_one_the_server_has_and_says_so(
    run: Callable[..., subprocess.CompletedProcess], openai_server: FakeOpenAI
) -> None:
    openai_server.models = ["tiny-llama"]  # not the default gpt-5.4-mini
    result = run(stdin="hello\n")
    assert result.returncode == 0, result.stderr
    assert last_chat_request(openai_server)["model"] == "tiny-llama"
    assert "gpt-5.4-mini is not on this server; using tiny-llama." in result.stderr
    assert result.stdout == "Echo: hello\n"


def test_flags_on_resume_change_the_conversation_settings(
    run: Callable[..., subprocess.CompletedProcess],
    openai_server: FakeOpenAI,
    store: ConversationStore,
) -> None:
    conv = core_chat(store, openai_server, ["first"])
    result = run("--conversation", conv.id, "--temperature", "0.7", "-n", "2", stdin="second\n")
    assert result.returncode == 0, result.stderr
    assert "[Reply 2 of 2]\nEcho #2: second" in result.stdout
    saved = store.get(conv.id)
    assert saved.params == ChatParams(temperature=0.7, n=2)
    assert last_chat_request(openai_server)["temperature"] == 0.7


def test_settings_come_from_secrets_toml_before_the_environment(
    run: Callable[..., subprocess.CompletedProcess],
    openai_server: FakeOpenAI,
    cli_env: dict[str, str],
    workdir: Path,
) -> None:
    openai_server.api_key = "sk-from-secrets"
    (workdir / ".streamlit").mkdir()
    (workdir / ".streamlit" / "secrets.toml").write_text(
        f'OPENAI_API_KEY = "sk-from-secrets"\nOPENAI_BASE_URL = "{openai_server.base_url}"\n'
        'PARLEY_CHAT_MODEL = "gpt-5"\n'
    )
    env = {**cli_env, "OPENAI_API_KEY": "sk-from-env", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    result = run(stdin="hi\n", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Echo: hi\n"
    request = openai_server.requests_to("/chat/completions")[-1]
    assert request.headers["authorization"] == "Bearer sk-from-secrets"
    assert request.json["model"] == "gpt-5"


# list, show, export


def test_list_show_and_export_read_the_same_store(
    run: Callable[..., subprocess.CompletedProcess],
    cli_env: dict[str, str],
    workdir: Path,
    openai_server: FakeOpenAI,
    store: ConversationStore,
    tmp_path: Path,
) -> None:
    older = core_chat(store, openai_server, ["pelicans in winter"])
    newer = core_chat(store, openai_server, ["sqlite is small", "and fast"], system_prompt="Hi.")
    core_chat(store, openai_server, ["someone else's secret"], workspace="shared")

    listing = run("list")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split("\t") for line in listing.stdout.splitlines()]
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (newer.id, "chat", "sqlite is small", "4 messages"),
        (older.id, "chat", "pelicans in winter", "2 messages"),
    ]
    assert "secret" not in listing.stdout
    assert run("list", "--workspace", "shared").stdout.split("\t")[3] == "someone else's secret"
    typo = run("list", "--workspace", "sahred")
    assert typo.returncode == 2 and "Invalid value for '--workspace'" in typo.stderr
    # PARLEY_WORKSPACE through the one settings resolver: environment, then secrets.
    from_env = run("list", env={**cli_env, "PARLEY_WORKSPACE": "shared"})
    assert from_env.stdout.split("\t")[3] == "someone else's secret", from_env.stderr
    (workdir / ".streamlit").mkdir()
    (workdir / ".streamlit" / "secrets.toml").write_text('PARLEY_WORKSPACE = "shared"\n')
    assert run("list").stdout.split("\t")[3] == "someone else's secret"
    (workdir / ".streamlit" / "secrets.toml").write_text('PARLEY_WORKSPACE = "sahred"\n')
    assert run("list").returncode == 2
    (workdir / ".streamlit" / "secrets.toml").unlink()
    assert run("list", "--search", "pelicans").stdout.split("\t")[0] == older.id

    messages = store.all_messages(newer.id)
    shown = run("show", newer.id[:10])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == export.to_markdown(newer, messages)

    as_json = run("export", newer.id, "--format", "json")
    assert json.loads(as_json.stdout) == json.loads(export.to_json(newer, messages))
    target = tmp_path / "out.md"
    written = run("export", newer.id, "--format", "md", "--output", str(target))
    assert written.returncode == 0 and written.stdout == ""
    assert target.read_text(encoding="utf-8") == export.to_markdown(newer, messages)


def test_show_renders_markdown_on_a_terminal_and_strips_escapes(
    terminal: Callable[..., Pty], store: ConversationStore
) -> None:
    conv = store.create(model="gpt-5-mini")
    store.add_message(conv.id, Message(role="user", content="format this"))
    store.add_message(
        conv.id,
        Message(role="assistant", content="A **bold** claim\x1b]0;pwned\x07 and <b>tags</b>."),
    )
    term = terminal("show", conv.id)
    assert term.finish() == 0
    raw = term.log.getvalue()
    assert "\x1b]0;pwned" not in raw  # the model's escape sequence never reaches the terminal
    assert "**bold**" not in term.output and "A bold claim" in term.output
    assert "<b>tags</b>" in term.output  # raw HTML is shown as text, not dropped


# Errors: one line, non-zero exit, no traceback


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            [],
            {"PARLEY_PROVIDER": "openai", "OPENAI_BASE_URL": ""},
            "No API key is set for OpenAI. Set OPENAI_API_KEY",
            id="no-key",
        ),
        pytest.param(
            ["--conversation", "nope"],
            {},
            "No conversation 'nope' in workspace 'local'",
            id="bad-id",
        ),
        pytest.param(["show", "nope"], {}, "No conversation 'nope'", id="show-bad-id"),
        pytest.param(["export", "nope", "-f", "json"], {}, "No conversation 'nope'", id="export"),
        pytest.param(
            ["--temperature", "3"], {}, "Temperature must be between 0 and 2.", id="bad-param"
        ),
        pytest.param(
            ["--continue", "--conversation", "x"], {}, "either --continue or", id="both-resumes"
        ),
    ],
)
def test_startup_errors_print_one_line(
    terminal: Callable[..., Pty],
    cli_env: dict[str, str],
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    term = terminal(*args, env={**cli_env, **env})
    status = term.finish()
    assert status == 1
    [line] = [line for line in term.output.splitlines() if line.strip()]
    assert line.startswith("Error: ") and message in line


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("unreachable", "Could not connect to the model server.", id="unreachable"),
        pytest.param("bad-key", "The server rejected the API key (401).", id="bad-key"),
    ],
)
def test_fatal_errors_mid_chat_end_the_session_and_keep_the_question(
    terminal: Callable[..., Pty],
    openai_server: FakeOpenAI,
    cli_env: dict[str, str],
    store: ConversationStore,
    setup: str,
    message: str,
) -> None:
    env = dict(cli_env)
    if setup == "unreachable":
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{_closed_port()}/v1"
    else:
        openai_server.api_key = "sk-right"
        env["OPENAI_API_KEY"] = "sk-wrong"
    term = terminal(env=env)
    term.prompt()
    term.say("hello?")
    term.expect(message)
    assert term.finish() == 1
    [conv] = store.list()
    # The question is kept, with the failed turn saying why (the web page shows it, with Retry).
    assert [(m.content, m.status) for m in store.all_messages(conv.id)] == [
        ("hello?", "ok"),
        ("", "failed"),
    ]


def test_passing_errors_mid_chat_keep_the_session(
    terminal: Callable[..., Pty], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    openai_server.script("partial words then the line drops", chunk_size=5)
    openai_server.drop_after(2)
    term = terminal()
    term.prompt()
    term.say("/retry")
    term.expect("Error: There is no message to answer yet.")
    term.prompt()
    assert store.list() == []  # nothing saved for a command with nothing to do
    term.say("tell me")
    term.expect("Error: The connection dropped in the middle of the reply.")
    term.expect("type /retry to try again")
    term.prompt()
    term.say("/retry")
    term.expect("Echo: tell me")
    term.prompt()
    term.say("exit")
    assert term.finish() == 0
    [conv] = store.list()
    [_, reply] = store.path(conv.id)
    assert reply.content == "Echo: tell me"
    # The cut reply is kept as the earlier version of the answer.
    assert [(m.content, m.parent_id) for m in store.all_messages(conv.id)[1:]] == [
        ("partial wo", reply.parent_id),
        ("Echo: tell me", reply.parent_id),
    ]


def test_bad_secrets_file_is_reported(
    run: Callable[..., subprocess.CompletedProcess], workdir: Path
) -> None:
    (workdir / ".streamlit").mkdir()
    (workdir / ".streamlit" / "secrets.toml").write_text("OPENAI_API_KEY = 'unterminated\n")
    result = run("list")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_never_loads_streamlit(cli_env: dict[str, str], workdir: Path) -> None:
    probe = (
        "import sys, lib.cli.app, lib.cli.session\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'streamlit'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=cli_env, cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
