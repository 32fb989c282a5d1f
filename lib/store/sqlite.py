"""The embedded backend: `parley.db` in the data directory, files beside it.

Connections are `lib/store/sqlite_pool.py`'s, one reused per thread and the file migrated
once per process (`lib/store/sqlite_schema.py`), so a statement costs no open or close. A
transaction takes SQLite's write lock at once (`BEGIN IMMEDIATE`, waiting up to the busy
timeout), so two writers queue instead of one failing half-way; inside another transaction
it becomes a savepoint. A full disk becomes `DiskFull` naming the data directory, a
damaged file `DatabaseCorrupt` naming it (`lib/store/sqlite_schema.py`).
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lib.diskfull import translate_disk_errors
from lib.store import sqlite_schema as db
from lib.store.backend import Backend
from lib.store.blobs import LocalBlobs


class SQLiteBackend(Backend):
    dialect = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.path = data_dir / "parley.db"
        self._blobs = LocalBlobs(data_dir)
        self._held = threading.local()  # this thread's connection inside a `with`

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def blobs(self) -> LocalBlobs:
        return self._blobs

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        held = getattr(self._held, "conn", None)
        if held is not None:  # a nested block: the same connection, inside its transaction
            yield held
            return
        with translate_disk_errors(self.data_dir):
            # The thread's reused connection (rolled back if a caller left it mid-transaction).
            conn = self._held.conn = db.thread_connection(self.path)
            try:
                yield conn
            finally:
                self._held.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connection() as conn, translate_disk_errors(self.data_dir):
            if conn.in_transaction:
                name = f"s{uuid.uuid4().hex[:8]}"
                conn.execute(f"SAVEPOINT {name}")
                try:
                    yield conn
                except BaseException:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                    raise
                conn.execute(f"RELEASE {name}")
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def check(self) -> None:
        """Raise DatabaseCorrupt now if parley.db is not a database."""
        db.check(self.path)
