"""The base of every store: a backend and one workspace, bound when the store is opened.

`ConversationStore(backend, workspace)` can only ever read and write that workspace's
rows: the workspace is checked once, here, and every query the store runs filters on
`self.workspace`. There is no method that takes another workspace, so a caller cannot
pass the wrong one.

Files go through `self.blobs` under `blob_key(kind, name)`: one directory scheme for
every store, `<workspace dir>/<kind>/<generated name>`. Keys written before this scheme
(documents under `documents/<digest>/`, images under `<slug>-<digest>/images/`) stay
valid, since a row stores its own key.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import AbstractContextManager

from lib.store.backend import Backend, Connection
from lib.store.blobs import BlobStore, check_key
from lib.workspaces import require_workspace

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def workspace_dir_name(workspace: str) -> str:
    """A directory name for `workspace`: readable, filesystem-safe, and unique (hashed),
    since workspace ids may be e-mail addresses or contain anything."""
    require_workspace(workspace)
    slug = _UNSAFE.sub("_", workspace).strip("_")[:40] or "ws"
    return f"{slug}-{hashlib.sha256(workspace.encode()).hexdigest()[:12]}"


class WorkspaceStore:
    def __init__(self, backend: Backend, workspace: str) -> None:
        self.backend = backend
        self.workspace = require_workspace(workspace)

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    @property
    def blobs(self) -> BlobStore:
        return self.backend.blobs

    def _conn(self) -> AbstractContextManager[Connection]:
        return self.backend.connection()

    def _transaction(self) -> AbstractContextManager[Connection]:
        return self.backend.transaction()

    def blob_key(self, kind: str, name: str) -> str:
        """Where a file of this workspace is kept; `name` is generated, never a user's."""
        return check_key(f"{workspace_dir_name(self.workspace)}/{kind}/{name}")
