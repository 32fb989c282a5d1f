"""Several replicas of Parley on one PostgreSQL, as a team server runs them.

Each replica is its own `streamlit run Home.py` process (`StreamlitServer`, the same
process the browser journeys start) on its own port, with its own data directory and
log, and all of them on one `PARLEY_DATABASE_URL`. Nothing else is shared: the data
directories are separate, so whatever one replica shows of another's work came through
the database (files included: the blob store defaults to PostgreSQL with a database URL).
All replicas talk to one local OpenAI-compatible server, so a test sees every request any
of them sent, and each replica has its own API key (`sk-replica-a`, `sk-replica-b`...),
so the test can tell which replica sent it (`sent_by`).

They start side by side (each waits on `/_stcore/health`, as a load balancer's health
check would), so the first page of each can race the other's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import ChatInputValue
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

from tests.browser.conftest import StreamlitServer
from tests.browser.protocol import RERUN, ScriptSession
from tests.fake_openai import FakeOpenAI, RecordedRequest
from tests.waits import WAIT

NAMES = "abcdefgh"
SIDEBAR = 1  # the first index of a delta path: 0 the main area, 1 the sidebar, 3 the bottom


class Replicas:
    """`count` replicas on `database_url`; `replicas[0]` is A, `replicas[1]` is B."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        server: FakeOpenAI,
        *,
        count: int = 2,
        secrets: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # One secrets file for all: replicas behind one address share their secrets
        # (an APP_PASSWORD, the [auth] cookie_secret). Never the developer's own file.
        secrets_file = root / "secrets.toml"
        secrets_file.write_text(secrets)
        self.database_url = database_url
        values = {
            "PARLEY_DATABASE_URL": database_url,
            "OPENAI_BASE_URL": server.base_url,
            "STREAMLIT_SECRETS_FILES": str(secrets_file),
            "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",  # a deployment watches no files
            **(env or {}),
        }
        names = NAMES[:count]
        with ThreadPoolExecutor(count) as pool:
            starting = [
                pool.submit(
                    StreamlitServer,
                    root / f"data-{n}",
                    {**values, "OPENAI_API_KEY": key(n)},
                    root / f"replica-{n}.log",
                )
                for n in names
            ]
            self.servers: list[StreamlitServer] = []
            errors = []
            for future in starting:
                try:
                    self.servers.append(future.result())
                except RuntimeError as exc:  # the others must still be stopped
                    errors.append(exc)
        if errors:
            self.stop()
            raise errors[0]

    def __getitem__(self, index: int) -> StreamlitServer:
        return self.servers[index]

    def __iter__(self):  # noqa: ANN204 - an iterator of StreamlitServer
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def logs(self) -> str:
        """Every replica's log, each under its port (for a failing test's message)."""
        return "\n".join(
            f"--- replica on {s.port} ---\n{Path(s.log).read_text()}" for s in self.servers
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []


def key(name: str) -> str:
    """The API key replica `name` ("a", "b"...) sends with every request."""
    return f"sk-replica-{name}"


def sent_by(request: RecordedRequest) -> str:
    """Which replica ("a", "b"...) sent a request the fake server recorded."""
    return request.headers.get("authorization", "").removeprefix("Bearer sk-replica-")


def files_on_disk(server: StreamlitServer) -> list[str]:
    """What a replica wrote to its own data directory (relative paths).

    On PostgreSQL with the database blob store there should be no database file and no
    stored file here; anything listed is a candidate for state one replica keeps from the
    others."""
    root = Path(server.data_dir)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


class ChatSession(ScriptSession):
    """A Streamlit session over the websocket (no browser), that chats on the Chat page.

    It keeps what the last script run drew outside the sidebar (in one shared workspace the
    sidebar lists everyone's conversations), each element as last
    updated (a streamed reply is one element redrawn many times), and the conversation
    the app put in the URL.
    """

    def __init__(self, app_url: str) -> None:
        super().__init__(app_url)
        self.main: dict[tuple[int, ...], Element] = {}
        self.conversation_id: str | None = None
        self.page = ""  # the page to run by its URL name ("documents"); "" for the default

    def run(self, widgets: Iterable[WidgetState] = ()) -> list[Element]:
        msg = BackMsg()
        msg.rerun_script.query_string = f"c={self.conversation_id}" if self.conversation_id else ""
        msg.rerun_script.page_name = self.page
        msg.rerun_script.widget_states.widgets.extend(widgets)
        self._ws.send(msg.SerializeToString())
        drawn: dict[tuple[int, ...], Element] = {}
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self._ws.recv(timeout=WAIT))
            kind = forward.WhichOneof("type")
            if kind == "new_session":  # a run starts (a rerun starts afresh)
                drawn = {}
            elif kind == "page_info_changed":
                query = parse_qs(forward.page_info_changed.query_string)
                self.conversation_id = query.get("c", [self.conversation_id])[0]
            elif kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                drawn[tuple(forward.metadata.delta_path)] = forward.delta.new_element
            elif kind == "script_finished" and forward.script_finished != RERUN:
                self.main = {p: e for p, e in sorted(drawn.items()) if p[0] != SIDEBAR}
                return list(drawn.values())

    def chat(self, text: str) -> None:
        """Send `text` from the chat box and wait for the run that streams the reply."""
        box = next(e.chat_input for e in self.main.values() if e.WhichOneof("type") == "chat_input")
        value = WidgetState(id=box.id, chat_input_value=ChatInputValue(data=text))
        self.run([value])

    def texts(self) -> list[str]:
        """The text of every Markdown element outside the sidebar, in page order."""
        return [e.markdown.body for e in self.main.values() if e.WhichOneof("type") == "markdown"]

    def exceptions(self) -> list[str]:
        return [
            e.exception.message for e in self.main.values() if e.WhichOneof("type") == "exception"
        ]
