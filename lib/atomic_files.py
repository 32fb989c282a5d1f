"""Writing a file so that it is either the old one or the new one, never half of either.

The new content goes to a temporary file beside the target, is flushed and fsynced,
then renamed over the target (`os.replace`, atomic on POSIX) and the directory is
fsynced so the rename itself survives a power cut. If anything fails before the rename,
the temporary file is removed and the old file is untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content into; it replaces `path` on success."""
    # A unique name: two processes writing the same file must not share a temporary one.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    file = open(tmp, "xb")  # noqa: SIM115 - closed below, on every path
    try:
        yield file
        file.flush()
        os.fsync(file.fileno())
        file.close()
        os.replace(tmp, path)
    except BaseException:
        file.close()
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as file:
        file.write(data)


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
