"""What a storage backend is, and which one this deployment uses.

A backend hands out connections (`connection()`: statements that each commit on their own)
and transactions (`transaction()`: statements that go in whole or not at all). Both yield
an object with the DB-API `execute` / `executemany`, whose SQL uses `?` placeholders and
whose rows can be read by column name or by position, whichever backend runs it; the SQL
the stores write is the subset SQLite and PostgreSQL share (`INSERT ... RETURNING`,
`ON CONFLICT`), and the few statements that differ are chosen by `dialect`.

One connection policy per backend: SQLite reuses one connection per thread
(`lib/store/sqlite_pool.py`); PostgreSQL lends one from a pool (psycopg 3) for the length of a
`with` block. Either way a nested `connection()` or `transaction()` in the same thread
reuses the connection already in hand, so a store method may call another inside a
transaction and see its own uncommitted rows.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol

from lib.errors import ConfigError


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, params: Any, /) -> Cursor: ...


class Backend(ABC):
    dialect: ClassVar[str]  # "sqlite" or "postgresql"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir  # prices.toml, and the files of the local blob store

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data is, for messages (never includes a password)."""

    @abstractmethod
    def connection(self) -> AbstractContextManager[Connection]:
        """A connection whose statements each commit on their own."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection inside one transaction: committed when the block ends, rolled back
        if it raises. Writers are serialised (SQLite takes its write lock at the start)."""

    @property
    @abstractmethod
    def blobs(self):  # noqa: ANN201 - a lib.store.blobs.BlobStore
        """Where files (uploads, images, thumbnails) are kept."""

    @abstractmethod
    def check(self) -> None:
        """Raise DatabaseCorrupt or DatabaseUnavailable now if the database can't be used."""

    def close(self) -> None:  # noqa: B027 - only a pooled backend has anything to release
        """Release connections (tests, and a process about to exit)."""


_backends: dict[tuple[str, str, str], Backend] = {}
_backends_lock = threading.Lock()


def open_backend(
    data_dir: Path, database_url: str | None = None, blob_store: str | None = None
) -> Backend:
    """This process's backend for these settings, made once and then shared.

    A backend holds connections and no user's data, so one per process serves every
    session (each store it opens is bound to one workspace).
    """
    kind = _blob_kind(database_url, blob_store)
    key = (str(data_dir), database_url or "", kind)
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = _make(data_dir, database_url, kind)
        return backend


def backend_for(settings: Any) -> Backend:
    """The backend `lib.settings.Settings` names."""
    return open_backend(settings.data_dir, settings.database_url, settings.blob_store)


def forget_backends() -> None:
    """Close and forget every backend (tests, between databases)."""
    with _backends_lock:
        for backend in _backends.values():
            backend.close()
        _backends.clear()


def _blob_kind(database_url: str | None, blob_store: str | None) -> str:
    kind = (blob_store or ("database" if database_url else "local")).strip().lower()
    if kind not in ("local", "database"):
        raise ConfigError(
            f"PARLEY_BLOB_STORE is {blob_store!r}.",
            hint='Use "local" (the data directory) or "database" (PostgreSQL).',
        )
    if kind == "database" and not database_url:
        raise ConfigError(
            'PARLEY_BLOB_STORE is "database" but no PARLEY_DATABASE_URL is set.',
            hint="Set PARLEY_DATABASE_URL to a postgresql:// URL, or use the local store.",
        )
    return kind


def _make(data_dir: Path, database_url: str | None, blob_kind: str) -> Backend:
    if not database_url:
        from lib.store.sqlite import SQLiteBackend

        return SQLiteBackend(data_dir)
    scheme = database_url.split(":", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"PARLEY_DATABASE_URL must start with postgresql:// (it starts with {scheme}:).",
            hint="Leave it unset for the embedded SQLite database in the data directory.",
        )
    from lib.store.postgres import PostgresBackend  # psycopg loads only when it is used

    return PostgresBackend(data_dir, database_url, files_in_database=blob_kind == "database")


def is_database_error(exc: BaseException) -> bool:
    """Whether `exc` is a failure of either backend's driver (sqlite3's or psycopg's), for
    the few callers that report a storage failure instead of crashing (an interim save of
    a streaming reply, the terminal's one-line errors). psycopg is not imported for this:
    if it was never loaded, none of its errors can have been raised."""
    import sqlite3
    import sys

    if isinstance(exc, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def redact_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))
