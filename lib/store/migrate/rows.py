"""The target of a move, and its tables: rows copied as they are, ids and all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg

from lib.errors import DatabaseUnavailable
from lib.store.backend import Backend, open_backend
from lib.store.migrate.run import Digest, MigrationError, Run, quote
from lib.store.migrate.source import Table


def open_target(data_dir: Path, url: str, blob_store: str | None) -> Backend:
    """The PostgreSQL backend, its schema migrated; DatabaseUnavailable (a message, not a
    traceback) if the server cannot be reached or refuses the login or the database."""
    backend = open_backend(data_dir, url, blob_store)
    try:
        backend.check()
    except psycopg.Error as exc:  # what the backend leaves alone: errors with a SQLSTATE
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise DatabaseUnavailable(
            f"Could not use the database at {backend.location}: {first}",
            hint="Check the URL, the password (PGPASSWORD or ~/.pgpass keep it off the "
            "command line) and that the database exists.",
        ) from exc
    return backend


def check_target_schema(target: Backend, tables: Sequence[Table]) -> None:
    """Refuse before copying anything if a source table or column has no place there."""
    for table in tables:
        have = set(_columns(target, table.name, "is_generated = 'NEVER'"))
        lacking = [c for c in table.columns if c not in have]
        if not have or lacking:
            what = "no table" if not have else f"no column {', '.join(lacking)} in the table"
            raise MigrationError(
                f"The PostgreSQL database at {target.location} has {what} {table.name}, "
                "which the data directory has, so nothing was copied.",
                hint="Move with the same version of Parley that last opened the data directory.",
            )


def _columns(target: Backend, table: str, condition: str) -> list[str]:
    with target.connection() as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            f"current_schema() AND table_name = ? AND {condition} ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [r[0] for r in rows]


def copy_table(run: Run, table: Table) -> Digest:
    """Copy the rows whose primary key the target lacks; the source rows' digest."""
    columns = ", ".join(quote(c) for c in table.columns)
    conflict = f"({', '.join(quote(c) for c in table.key)})" if table.key else ""
    insert = (
        f"INSERT INTO {quote(table.name)} ({columns}) "
        f"VALUES ({', '.join('?' * len(table.columns))}) ON CONFLICT {conflict} DO NOTHING"
    )
    tally, source = run.tally(table.name), Digest()
    for rows in run.batches(f"SELECT {columns} FROM {quote(table.name)}"):
        for row in rows:
            source.add(row)
        copied = run.insert(table.name, insert, rows)
        tally.copied += copied
        tally.present += len(rows) - copied
        run.progress(tally)
    run.finish(tally)
    return source


def check_table(run: Run, table: Table, source: Digest) -> None:
    columns = ", ".join(quote(c) for c in table.columns)
    target = run.target_digest(f"SELECT {columns} FROM {quote(table.name)}")
    run.compare(table.name, source, target, "rows")


def advance_identities(target: Backend, tables: Sequence[Table]) -> None:
    """Move each identity sequence past the copied ids (never back), so the next row the
    app inserts gets a new id instead of colliding with a copied one."""
    for table in tables:
        for column in _columns(target, table.name, "is_identity = 'YES'"):
            with target.connection() as conn:
                conn.execute(
                    "SELECT setval(s, GREATEST(m, COALESCE(pg_sequence_last_value(s), 0))) "
                    "FROM (SELECT pg_get_serial_sequence(?, ?)::regclass AS s, "
                    f"(SELECT max({quote(column)}) FROM {quote(table.name)}) AS m) AS x "
                    "WHERE m IS NOT NULL",
                    (quote(table.name), column),
                )
