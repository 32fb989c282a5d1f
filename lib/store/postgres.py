"""The shared backend: every store on PostgreSQL (psycopg 3, a connection pool per process).

What the stores need from it is what `Backend` promises: statements with `?` placeholders
(rewritten here to psycopg's `%s`, once per statement text), rows read by name or position
like `sqlite3.Row`, a connection lent for the length of a `with` block and reused by
nested blocks in the same thread, and transactions (`conn.transaction()`, savepoints when
nested).

The schema (`postgres_schema.py`) is migrated once per process, before the pool opens, on
a connection holding an advisory lock: replicas starting together queue on the lock, and
each finds the others' migrations recorded, so each runs exactly once. The pool's
connections are configured for pgvector's types (numpy arrays in, numpy arrays out).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from lib.errors import DatabaseUnavailable, DiskFull
from lib.store.backend import Backend, redact_url
from lib.store.blobs import DatabaseBlobs, LocalBlobs

log = logging.getLogger(__name__)
POOL_SIZE = 10  # connections per process; a session holds one only inside a `with`
POOL_WAIT = 30.0  # seconds to wait for a free connection before saying the database is busy
CONNECT_TIMEOUT = 10  # seconds
_DISK_FULL = "53100"  # SQLSTATE disk_full


class Row:
    """A row readable as `row["name"]`, `row[0]`, `dict(row)` or unpacked, as sqlite3.Row."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: psycopg.Cursor) -> Any:
    index = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


@functools.lru_cache(maxsize=2048)
def to_psycopg(sql: str) -> str:
    """`?` placeholders become `%s`; a literal `%` is doubled so psycopg leaves it alone.
    The stores never write `?` inside a string literal (jsonb's `?` operator is unused)."""
    return sql.replace("%", "%%").replace("?", "%s")


def array(values: Sequence[str | int]) -> str:
    """An array literal of these strings or integers, to pass as `?::text[]` or
    `?::bigint[]`: psycopg dumps a list element by element, 0.3 ms for 100 document ids,
    which a retrieval passed four times (bench/query.py)."""
    items = (
        str(int(v)) if not isinstance(v, str)
        else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for v in values
    )  # fmt: skip
    return "{" + ",".join(items) + "}"


class PgConnection:
    """A pooled psycopg connection that speaks the stores' `?` SQL."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    def execute(
        self, sql: str, params: Sequence[Any] = (), /, *, binary: bool = False, plain: bool = False
    ) -> psycopg.Cursor:
        """`binary`: results in PostgreSQL's binary format (bytea as raw bytes, not hex).
        `plain`: rows as tuples, not `Row`s, for the few statements that read hundreds of
        rows a question (retrieval's)."""
        cursor = self.raw.cursor(binary=binary, row_factory=tuple_row if plain else None)
        return cursor.execute(to_psycopg(sql), params)

    def executemany(self, sql: str, params: Any, /) -> psycopg.Cursor:
        cur = self.raw.cursor()
        cur.executemany(to_psycopg(sql), params)
        return cur


class PostgresBackend(Backend):
    dialect = "postgresql"

    def __init__(self, data_dir: Path, url: str, *, files_in_database: bool = True) -> None:
        super().__init__(data_dir)
        self.url = url
        self._blobs = DatabaseBlobs(self) if files_in_database else LocalBlobs(data_dir)
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._held = threading.local()  # this thread's connection inside a `with`

    @property
    def location(self) -> str:
        return redact_url(self.url)

    @property
    def blobs(self) -> DatabaseBlobs | LocalBlobs:
        return self._blobs

    @contextmanager
    def connection(self) -> Iterator[PgConnection]:
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        with self._translate_errors():
            pool = self._ready()
        with self._translate_errors(), pool.connection(timeout=POOL_WAIT) as raw:
            conn = self._held.conn = PgConnection(raw)
            try:
                yield conn
            finally:
                self._held.conn = None

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        with self.connection() as conn, self._translate_errors(), conn.raw.transaction():
            yield conn

    def check(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def _ready(self) -> ConnectionPool:
        """The pool, opened after the schema is migrated (once per process)."""
        pool = self._pool
        if pool is not None:
            return pool
        with self._pool_lock:
            if self._pool is None:
                from lib.store import postgres_schema

                with psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                ) as conn:
                    postgres_schema.migrate(conn)
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=POOL_SIZE,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
                    configure=_configure,
                    name="parley",
                    open=True,
                )
            return self._pool

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except PoolTimeout as exc:
            raise DatabaseUnavailable(
                f"The database at {self.location} is too busy: no connection came free "
                f"within {POOL_WAIT:.0f} s."
            ) from exc
        except psycopg.OperationalError as exc:
            if getattr(exc, "sqlstate", None) == _DISK_FULL:
                raise DiskFull(self.location) from exc
            if getattr(exc, "sqlstate", None) is None:  # no answer from the server at all
                raise DatabaseUnavailable(
                    f"Could not reach the database at {self.location}: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no answer'}"
                ) from exc
            raise


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)  # vector and halfvec values as numpy arrays
    conn.row_factory = _row_factory
