"""What each user last chose for each server: the model and system prompt new chats start with.

Kept per workspace in `<data dir>/preferences/<digest of the workspace>.json`, one entry
per server, keyed by `lib.providers.server_key` (so credentials in a URL never reach the
file). Each save is a read-modify-write under an exclusive file lock, written atomically
(`lib.atomic_files`), so two sessions of one user saving at once lose neither the file
nor each other's servers. A file that cannot be read counts as no preferences: they are
a convenience, and the next save replaces it.

Not a table in parley.db for now: the schema changes only through named migrations, and
those are being reworked elsewhere; moving these into a table later is one migration
that reads these files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.atomic_files import write_bytes
from lib.providers import server_key
from lib.workspaces import require_workspace

log = logging.getLogger(__name__)
MAX_SERVERS = 50  # per workspace; the least recently used server is forgotten first


@dataclass(frozen=True)
class ServerChoice:
    """The user's last choices for one server; None where they never chose."""

    model: str | None = None
    system_prompt: str | None = None


class Preferences:
    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "preferences"

    def get(self, workspace: str, base_url: str | None) -> ServerChoice:
        """What this workspace last chose for the server at `base_url`."""
        entry = self._read(self._path(workspace)).get(server_key(base_url), {})
        return ServerChoice(_text(entry.get("model")), _text(entry.get("system_prompt")))

    def put(
        self,
        workspace: str,
        base_url: str | None,
        *,
        model: str | None = None,
        system_prompt: str | None = None,
    ) -> None:
        """Remember a choice for this server; None leaves that field as it was, and an
        empty system prompt is a choice too (the user cleared it)."""
        path = self._path(workspace)
        with self._locked(path):
            servers = self._read(path)
            entry = servers.setdefault(server_key(base_url), {})
            if model:
                entry["model"] = model
            if system_prompt is not None:
                entry["system_prompt"] = system_prompt
            entry["at"] = time.time()
            recent = sorted(servers.items(), key=lambda item: -float(item[1].get("at", 0)))
            data = {"version": 1, "servers": dict(recent[:MAX_SERVERS])}
            write_bytes(path, json.dumps(data, ensure_ascii=False, indent=1).encode())

    def _path(self, workspace: str) -> Path:
        # A digest, so no workspace name (an email, an OIDC subject) becomes a path.
        digest = hashlib.sha256(require_workspace(workspace).encode()).hexdigest()[:32]
        return self.directory / f"{digest}.json"

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with path.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self, path: Path) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable preferences %s: %s", path.name, exc)
            return {}
        servers = data.get("servers") if isinstance(data, dict) else None
        if not isinstance(servers, dict):
            return {}
        return {k: v for k, v in servers.items() if isinstance(v, dict)}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
