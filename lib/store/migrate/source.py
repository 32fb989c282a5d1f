"""The source of a move: parley.db, checked, then read in one snapshot."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lib.errors import ConfigError, DatabaseCorrupt
from lib.store import sqlite_schema
from lib.store.migrate.run import MigrationError, quote

DATABASE = "parley.db"
SKIPPED_TABLES = {"schema_migrations"}  # each backend records its own migrations


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key
    parents: frozenset[str]  # the tables its foreign keys refer to


def open_source(data_dir: Path) -> sqlite3.Connection:
    """parley.db, upgraded to this version as any open would, checked whole (SQLite's
    quick_check and foreign keys), then read-only inside one read transaction, so every
    step and every check sees the same rows."""
    path = data_dir / DATABASE
    if not path.is_file():
        raise ConfigError(
            f"There is nothing to move: {data_dir} has no {DATABASE}.",
            hint="Point --data-dir (or PARLEY_DATA_DIR) at the data directory to move.",
        )
    try:
        sqlite_schema.connect(path).close()
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
        except BaseException:
            conn.close()
            raise
    except (sqlite3.DatabaseError, DatabaseCorrupt) as exc:
        raise _damaged(path, str(exc)) from exc
    if result != "ok" or orphans:
        conn.close()
        raise _damaged(path, result if result != "ok" else _orphans(orphans))
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
    return conn


def _damaged(path: Path, reason: str) -> DatabaseCorrupt:
    return DatabaseCorrupt(
        f"The database {path} is damaged ({reason}), so nothing was copied.",
        hint="Restore your latest backup into an empty data directory "
        "(`python -m lib.cli restore BACKUP --data-dir DIR`) and move that one.",
    )


def _orphans(rows: list[tuple]) -> str:
    counts = Counter(r[0] for r in rows)
    found = ", ".join(f"{n} in {table}" for table, n in sorted(counts.items()))
    return f"rows that refer to rows no longer there: {found}"


def source_tables(conn: sqlite3.Connection) -> list[Table]:
    """parley.db's own tables (not FTS5's), each after the tables it refers to. Found in
    the file, not listed here, so a table a later migration adds is moved too."""
    names = sorted(
        row[1]
        for row in conn.execute("PRAGMA table_list")
        if row[0] == "main" and row[2] == "table" and not row[1].startswith("sqlite_")
    )
    found = {name: _table(conn, name) for name in names if name not in SKIPPED_TABLES}
    ordered: list[Table] = []
    while found:
        ready = [t for t in found.values() if not t.parents & found.keys()]
        if not ready:
            raise MigrationError(f"The tables {sorted(found)} refer to each other in a cycle.")
        ordered += [found.pop(t.name) for t in ready]
    return ordered


def _table(conn: sqlite3.Connection, name: str) -> Table:
    info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
    key = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
    parents = {r[2] for r in conn.execute(f"PRAGMA foreign_key_list({quote(name)})")}
    return Table(name, tuple(r[1] for r in info), key, frozenset(parents - {name}))
