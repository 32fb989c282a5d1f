"""Files by key: uploads, generated images and their thumbnails.

A key is a relative path made by the store that owns the file (`WorkspaceStore.blob_key`:
the workspace's directory, then the kind, then a generated name); no name a user chose is
ever part of one. Two stores keep them:

- `LocalBlobs`, the default: files under the data directory, written atomically (fsync,
  rename). A shared volume mounted as the data directory serves several replicas.
- `DatabaseBlobs`: rows of the `blobs` table in PostgreSQL, so a deployment whose disk is
  wiped on restart (Streamlit Community Cloud) needs nothing but its database.

The browser never sees a key or a path: pages read the bytes and hand them to Streamlit,
which serves them the same way whichever store held them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from lib import atomic_files
from lib.diskfull import translate_disk_errors
from lib.errors import NotFoundError


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...  # NotFoundError when there is none
    def delete(self, key: str) -> None: ...  # no error when there is none
    def exists(self, key: str) -> bool: ...
    def keys(self, prefix: str = "") -> Iterator[str]: ...


def check_key(key: str) -> str:
    """Refuse a key that could leave its store (absolute, `..`, empty parts)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"not a blob key: {key!r}")
    return key


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobs:
    """Files under `root` (the data directory), one per key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        with translate_disk_errors(self.root):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_files.write_bytes(path, data)

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotFoundError("That file is no longer stored.") from None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()


class DatabaseBlobs:
    """Files as rows of PostgreSQL's `blobs` table (key, bytes, size, SHA-256)."""

    def __init__(self, backend) -> None:  # noqa: ANN001 - a PostgresBackend (import cycle)
        self.backend = backend

    def put(self, key: str, data: bytes) -> None:
        with self.backend.connection() as conn:
            conn.execute(
                "INSERT INTO blobs (key, data, size, sha256) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, size = excluded.size, "
                "sha256 = excluded.sha256",
                (check_key(key), data, len(data), digest(data)),
            )

    def get(self, key: str) -> bytes:
        with self.backend.connection() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE key = ?", (check_key(key),)).fetchone()
        if row is None:
            raise NotFoundError("That file is no longer stored.")
        return bytes(row[0])

    def delete(self, key: str) -> None:
        with self.backend.connection() as conn:
            conn.execute("DELETE FROM blobs WHERE key = ?", (check_key(key),))

    def exists(self, key: str) -> bool:
        with self.backend.connection() as conn:
            row = conn.execute("SELECT 1 FROM blobs WHERE key = ?", (check_key(key),)).fetchone()
        return row is not None

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self.backend.connection() as conn:
            rows = conn.execute(
                "SELECT key FROM blobs WHERE starts_with(key, ?) ORDER BY key", (prefix,)
            ).fetchall()
        yield from (r[0] for r in rows)
