"""A full disk, said once: SQLite's and the operating system's ways of reporting that the
data directory's disk is full become one domain error, `errors.DiskFull`, naming it.

SQLite answers SQLITE_FULL ("database or disk is full") when a page or its WAL cannot
grow; a file write fails with ENOSPC, or EDQUOT when a quota runs out. Either way the
write did not happen, and the user can only free space, so the pages say exactly that
instead of crashing on a raw `OperationalError`. The stores wrap their connections and
file writes in `translate_disk_errors`; every other error passes through unchanged.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lib.errors import DiskFull

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's or the OS's "no space left" (not any other failure)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF == sqlite3.SQLITE_FULL
        return "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


@contextmanager
def translate_disk_errors(data_dir: Path) -> Iterator[None]:
    """Raise DiskFull, naming `data_dir`, for a full disk inside the block."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        if is_disk_full(exc):
            raise DiskFull(data_dir) from exc
        raise
