"""What every step of a move shares: the source snapshot, the target, the report, and the
digest both sides are compared by."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from lib.errors import ParleyError
from lib.store.backend import Backend

BATCH = 1_000  # rows (or files) per transaction: a stopped run loses at most one batch
_MODULUS = 1 << 256


class MigrationError(ParleyError):
    """A row could not be copied, or the target's schema does not match the source's.
    (Here rather than in lib/errors.py: only `migrate-store` raises it.)"""


@dataclass
class Tally:
    """What one step has copied so far; `present` were in the target already."""

    item: str
    copied: int = 0
    present: int = 0
    bytes: int = 0
    finished: bool = False


@dataclass
class Check:
    item: str
    ok: bool
    detail: str


@dataclass
class MigrationReport:
    source: str
    target: str
    files_kept_locally: bool = False  # PARLEY_BLOB_STORE=local: the target reads data_dir
    tallies: list[Tally] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tallies)


Progress = Callable[[Tally], None]


class Digest:
    """A row count and an order-independent hash: the sum, modulo 2^256, of each row's
    SHA-256 over its typed values. Rows are unique (primary keys), so the same rows give
    the same digest in whichever order each database returns them, and any changed,
    missing or extra row changes it."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, values: Iterable[Any]) -> None:
        row = hashlib.sha256()
        for value in values:
            row.update(canonical(value))
        self.total = (self.total + int.from_bytes(row.digest(), "big")) % _MODULUS
        self.count += 1

    @property
    def short(self) -> str:
        return f"{self.total:064x}"[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and (self.count, self.total) == (other.count, other.total)

    __hash__ = None  # type: ignore[assignment] - mutable


def canonical(value: Any) -> bytes:
    """A value as tagged, length-prefixed bytes: 1, 1.0 and "1" differ, as in a database."""
    if value is None:
        tag, data = b"n", b""
    elif isinstance(value, int):
        tag, data = b"i", str(value).encode()
    elif isinstance(value, float):
        tag, data = b"f", value.hex().encode()
    elif isinstance(value, str):
        tag, data = b"s", value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes | bytearray | memoryview):
        tag, data = b"b", bytes(value)
    else:
        raise TypeError(f"no canonical form for {type(value).__name__}")
    return tag + len(data).to_bytes(8, "big") + data


def quote(name: str) -> str:
    """An identifier for either database (`chunks."end"`: end is reserved in PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Run:
    source: sqlite3.Connection  # read-only, inside one read transaction
    target: Backend
    report: MigrationReport
    batch_size: int
    progress: Progress

    def tally(self, item: str) -> Tally:
        tally = Tally(item)
        self.report.tallies.append(tally)
        return tally

    def finish(self, tally: Tally) -> None:
        tally.finished = True
        self.progress(tally)

    def batches(self, sql: str) -> Iterator[list[tuple]]:
        cursor = self.source.execute(sql)
        while rows := cursor.fetchmany(self.batch_size):
            yield rows

    def insert(self, table: str, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Insert a batch in one transaction; how many rows were new."""
        if not rows:
            return 0
        try:
            with self.target.transaction() as conn:
                return conn.executemany(sql, rows).rowcount
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
                raise  # the connection was lost (the backend says so): a rerun continues
            detail = exc.diag.message_detail
            raise MigrationError(
                f"A row of {table} could not be copied: {exc.diag.message_primary or exc}"
                f"{f' ({detail})' if detail else ''}. What was copied before it is kept; "
                "run the command again once the cause is fixed.",
                hint="A conflict with a row not from this data directory means the target "
                "was used before: move into an empty database.",
            ) from exc

    def target_digest(self, sql: str, convert: Callable[[Any], Any] | None = None) -> Digest:
        """The digest of a query's rows in the target, read in batches (a server-side
        cursor), never all at once."""
        found = Digest()
        with self.target.transaction() as conn:
            cursor = conn.raw.cursor(name="parley_migrate_check")
            cursor.itersize = self.batch_size
            cursor.execute(sql)
            for row in cursor:
                found.add(convert(row) if convert else row)
            cursor.close()
        return found

    def compare(self, item: str, source: Digest, target: Digest, unit: str) -> None:
        if source == target:
            detail = f"{source.count:,} {unit}, content hash {source.short}"
        else:
            detail = (
                f"the data directory has {source.count:,} {unit} (hash {source.short}), "
                f"PostgreSQL {target.count:,} (hash {target.short})"
            )
        self.report.checks.append(Check(item, source == target, detail))

    def passed(self, item: str, detail: str) -> None:
        self.report.checks.append(Check(item, True, detail))

    def fail(self, item: str, detail: str) -> None:
        self.report.checks.append(Check(item, False, detail))


def few(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
