"""The import ledger (the `imports` table): which source conversation, by app, id in
that app and content fingerprint, became which conversation here. The importer asks it
to skip what is already in (a second import of a file adds nothing), and the workspace
export carries it, so a copy of the workspace still knows where its conversations came
from."""

from __future__ import annotations

import time

from lib.store.base import WorkspaceStore


class ImportLedger(WorkspaceStore):
    """What was imported into this workspace, from where (the `imports` table)."""

    def seen(self, app: str, source_id: str, fingerprint: str) -> bool:
        with self._conn() as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM imports WHERE workspace = ? AND app = ? AND source_id = ? "
                    "AND fingerprint = ?",
                    (self.workspace, app, source_id, fingerprint),
                ).fetchone()
                is not None
            )

    def by_conversation(self) -> dict[str, list[list[str]]]:
        """Each conversation's sources, [app, source id, fingerprint]: what a workspace
        export carries, so its copy still knows them (one query for the workspace)."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT conversation_id, app, source_id, fingerprint FROM imports "
                "WHERE workspace = ? ORDER BY imported_at",
                (self.workspace,),
            ).fetchall()
        out: dict[str, list[list[str]]] = {}
        for r in rows:
            out.setdefault(r[0], []).append([r[1], r[2], r[3]])
        return out

    def record(self, app: str, source_id: str, fingerprint: str, conversation_id: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO imports (workspace, app, source_id, fingerprint, conversation_id, "
                "imported_at) VALUES (?, ?, ?, ?, ?, ?)",
                (self.workspace, app, source_id, fingerprint, conversation_id, time.time()),
            )
