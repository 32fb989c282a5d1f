"""How Parley opens its SQLite files: one connection policy, reuse per thread, and a file
prepared (put in WAL mode, then the caller's `prepare`, i.e. migrated) once per process
per file.

"Once per file" means per file on disk, not per path: the key is the path with the file's
device and inode, so a database deleted (or restored) while the process runs is prepared
again. The key stays valid because an idle "anchor" connection holds each prepared file
open, so its inode cannot be reused; forgetting the anchor forgets the key.

The schema itself is not here (`lib/store/sqlite_schema.py` owns the migrations); this
module knows only SQLite's connection-level settings.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's lock before giving up
Prepare = Callable[[sqlite3.Connection], None]
FileKey = tuple[str, int, int]  # path, device, inode

# One idle connection per recently prepared file, held so that closing a store call's
# short-lived connection never closes the last one: SQLite checkpoints (with an fsync) and
# deletes the WAL whenever the last connection closes, which cost ~1-20 ms per call
# (see bench/chat_overhead.py). Bounded, since tests open a fresh database each.
_ANCHOR_LIMIT = 8
_anchors: OrderedDict[FileKey, sqlite3.Connection] = OrderedDict()
_prepare_lock = threading.Lock()


def file_key(path: Path) -> FileKey | None:
    """Which file `path` names now, or None if there is none."""
    name = str(path)
    try:
        stat = os.stat(name)
    except FileNotFoundError:
        return None
    return (name, stat.st_dev, stat.st_ino)


def open_connection(path: Path) -> sqlite3.Connection:
    """A new connection with Parley's settings, without preparing the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    # In WAL mode NORMAL is corruption-safe and survives an app crash; only a power cut or
    # OS crash can lose the last commits. FULL would fsync the WAL on every commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def connect(path: Path, prepare: Prepare) -> sqlite3.Connection:
    """Open `path`, preparing the file first if this process has not yet.

    Connections are never shared between threads: Streamlit runs each session's script in
    its own thread. The caller closes this one; `thread_connection` reuses one per thread.
    """
    conn = open_connection(path)
    key = file_key(path)
    if key not in _anchors:
        with _prepare_lock:
            key = file_key(path)
            if key not in _anchors:
                try:
                    use_wal(conn)
                    prepare(conn)
                except BaseException:
                    conn.close()
                    raise
                _hold_open(path, key)
    return conn


def use_wal(conn: sqlite3.Connection, timeout: float = BUSY_TIMEOUT) -> None:
    """Switch the file to WAL mode, waiting (bounded) while another process holds it.

    Changing the journal mode needs the file to itself, and SQLite may answer "database is
    locked" at once rather than through the busy timeout when processes start together.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("could not switch the database to WAL mode")
        time.sleep(0.01)


def _hold_open(path: Path, key: FileKey | None) -> None:
    # Never queried again, only closed (maybe from another thread) when evicted.
    anchor = sqlite3.connect(path, timeout=BUSY_TIMEOUT, check_same_thread=False)
    anchor.execute("PRAGMA schema_version").fetchall()  # a read opens the WAL and holds it
    key = key or file_key(path)
    for old in [k for k in _anchors if k[0] == key[0] and k != key]:
        _anchors.pop(old).close()  # that file was deleted or replaced
    _anchors[key] = anchor
    while len(_anchors) > _ANCHOR_LIMIT:
        _anchors.popitem(last=False)[1].close()


_THREAD_LIMIT = 4
_per_thread = threading.local()


def thread_connection(path: Path, prepare: Prepare) -> sqlite3.Connection:
    """This thread's open connection to `path`, for callers that do not close it.

    A new connection costs ~0.3 ms before its first query (SQLite parses the whole schema),
    more than most store queries; reusing one per thread saves that on every call. Never
    shared between threads; Streamlit runs each script run in its own thread, whose
    connections close when it ends. A few per thread, since tests use a fresh database each.
    """
    conns: OrderedDict[str, tuple[FileKey | None, sqlite3.Connection]] = (
        _per_thread.__dict__.setdefault("conns", OrderedDict())
    )
    name = str(path)
    key = file_key(path)
    held = conns.get(name)
    if held is not None and (held[0] != key or key not in _anchors):
        conns.pop(name)[1].close()  # the file was deleted or replaced: prepare the new one
        held = None
    if held is None:
        conn = connect(path, prepare)
        conns[name] = (file_key(path), conn)
        while len(conns) > _THREAD_LIMIT:
            conns.popitem(last=False)[1][1].close()
        return conn
    conns.move_to_end(name)  # least recently used goes first
    conn = held[1]
    if conn.in_transaction:
        conn.rollback()  # a caller failed mid-transaction: never carry its writes forward
    return conn
