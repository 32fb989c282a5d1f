"""Exclusive locks between processes (`flock` on a lock file), for writers that must not
overlap: the FAISS index writers of a workspace, and a backup that copies their files."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INDEX_LOCK = ".index.lock"  # in each workspace's documents directory


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold `path`'s lock (waiting for whoever holds it), creating the file if needed."""
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
