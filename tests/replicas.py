"""Several replicas of Parley on one PostgreSQL, as a team server runs them.

Each replica is its own `streamlit run Home.py` process (`StreamlitServer`, the same
process the browser journeys start) on its own port, with its own data directory and
log, and all of them on one `PARLEY_DATABASE_URL`. Nothing else is shared: the data
directories are separate, so whatever one replica shows of another's work came through
the database (files included: the blob store defaults to PostgreSQL with a database URL).
All replicas talk to one local OpenAI-compatible server, so a test sees every request any
of them sent.

They start side by side (each waits on `/_stcore/health`, as a load balancer's health
check would), so the first page of each can race the other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.browser.conftest import StreamlitServer
from tests.fake_openai import FakeOpenAI

NAMES = "abcdefgh"


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
        key: str = "sk-test",
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
            "OPENAI_API_KEY": key,
            "STREAMLIT_SECRETS_FILES": str(secrets_file),
            **(env or {}),
        }
        names = NAMES[:count]
        with ThreadPoolExecutor(count) as pool:
            starting = [
                pool.submit(StreamlitServer, root / f"data-{n}", values, root / f"replica-{n}.log")
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


def files_on_disk(server: StreamlitServer) -> list[str]:
    """What a replica wrote to its own data directory (relative paths).

    On PostgreSQL with the database blob store there should be no database file and no
    stored file here; anything listed is a candidate for state one replica keeps from the
    others."""
    root = Path(server.data_dir)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
