"""What each user last chose for each server: the model and system prompt new chats start with.

One row per (workspace, server) in the `preferences` table, the server keyed by
`lib.providers.server_key` (so credentials in a URL are never stored). A save is one
upsert that leaves a field it was not given as it was, so two sessions saving at once,
in one process or on two replicas, lose neither each other's servers nor each other's
fields. Each workspace keeps its MAX_SERVERS most recently used servers.

Before the table these were JSON files, `<data dir>/preferences/<digest>.json`, one per
workspace. The first use of a workspace's preferences reads its file into the table
(choices already in the table win) and renames it `.json.imported`, so an upgrade keeps
them and a second reading changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.providers import server_key
from lib.store.backend import Backend, Connection
from lib.store.base import WorkspaceStore

log = logging.getLogger(__name__)
MAX_SERVERS = 50  # per workspace; the least recently used server is forgotten first


@dataclass(frozen=True)
class ServerChoice:
    """The user's last choices for one server; None where they never chose."""

    model: str | None = None
    system_prompt: str | None = None


class Preferences(WorkspaceStore):
    def __init__(self, backend: Backend, workspace: str) -> None:
        super().__init__(backend, workspace)
        self._imported = False

    def get(self, base_url: str | None) -> ServerChoice:
        """What this workspace last chose for the server at `base_url`."""
        self._import_legacy_file()
        with self._conn() as conn:
            row = conn.execute(
                "SELECT model, system_prompt FROM preferences WHERE workspace = ? AND server = ?",
                (self.workspace, server_key(base_url)),
            ).fetchone()
        return ServerChoice(row["model"], row["system_prompt"]) if row else ServerChoice()

    def put(
        self, base_url: str | None, *, model: str | None = None, system_prompt: str | None = None
    ) -> None:
        """Remember a choice for this server; None leaves that field as it was, and an
        empty system prompt is a choice too (the user cleared it)."""
        self._import_legacy_file()
        with self._transaction() as conn:
            self._upsert(conn, server_key(base_url), model or None, system_prompt, time.time())
            self._forget_least_recent(conn)

    # The legacy JSON file

    def _import_legacy_file(self) -> None:
        if self._imported:
            return
        self._imported = True
        path = legacy_path(self.backend.data_dir, self.workspace)
        if not path.exists():
            return
        servers = _read_legacy(path)
        with self._transaction() as conn:
            for server, entry in servers.items():
                conn.execute(
                    "INSERT INTO preferences (workspace, server, model, system_prompt, used_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace, server) DO NOTHING",
                    (
                        self.workspace,
                        server,
                        _text(entry.get("model")),
                        _text(entry.get("system_prompt")),
                        _number(entry.get("at")),
                    ),
                )
            self._forget_least_recent(conn)
        try:
            path.rename(path.with_name(path.name + ".imported"))
        except FileNotFoundError:
            pass  # another process imported it at the same time; its rows are the same
        except OSError as exc:  # a read-only data dir: importing again changes nothing
            log.warning("could not rename imported preferences %s: %s", path.name, exc)
        log.info("imported %d servers' preferences from %s", len(servers), path.name)

    # Writing

    def _upsert(
        self,
        conn: Connection,
        server: str,
        model: str | None,
        system_prompt: str | None,
        now: float,
    ) -> None:
        conn.execute(
            "INSERT INTO preferences (workspace, server, model, system_prompt, used_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace, server) DO UPDATE SET "
            "model = COALESCE(excluded.model, preferences.model), "
            "system_prompt = COALESCE(excluded.system_prompt, preferences.system_prompt), "
            "used_at = excluded.used_at",
            (self.workspace, server, model, system_prompt, now),
        )

    def _forget_least_recent(self, conn: Connection) -> None:
        # By time, not by a list of servers to keep: on PostgreSQL a concurrent save that
        # has just used the oldest server is re-checked against the time, and survives.
        conn.execute(
            "DELETE FROM preferences WHERE workspace = ? AND used_at < ("
            " SELECT used_at FROM preferences WHERE workspace = ?"
            " ORDER BY used_at DESC LIMIT 1 OFFSET ?)",
            (self.workspace, self.workspace, MAX_SERVERS - 1),
        )


def legacy_path(data_dir: Path, workspace: str) -> Path:
    """Where the JSON-file version kept `workspace`'s preferences: named by a digest, so
    no workspace name (an email, an OIDC subject) became a path."""
    digest = hashlib.sha256(workspace.encode()).hexdigest()[:32]
    return data_dir / "preferences" / f"{digest}.json"


def _read_legacy(path: Path) -> dict[str, dict[str, Any]]:
    """The servers in a legacy file; an unreadable one counts as none (preferences are a
    convenience), and is renamed like any other so it is not read again."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable preferences %s: %s", path.name, exc)
        return {}
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return {}
    return {k: v for k, v in servers.items() if isinstance(k, str) and isinstance(v, dict)}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
