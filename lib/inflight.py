"""Replies being written right now, told apart from replies whose process died.

A reply is saved while it streams, with status "streaming" and `meta["owner"]` naming the
process and the reply. When a conversation is read back, such a row is live if:
- it belongs to this process (same boot id) and its reply is still registered here, so
  another session of the same server sees it still arriving; or
- it belongs to another process on this host that is still running (the terminal chat
  and the web app share one database), checked by pid and, where /proc has it, the
  process's start time, so a pid reused after a crash does not count; or
- it belongs to a process on another host (replicas sharing PostgreSQL), whose pids mean
  nothing here: live while its heartbeat is fresh. Every HEARTBEAT_S the writing process
  stamps `owner["beat"]` on each reply it is writing, however long the model stays quiet,
  and a reply whose beat is older than STALE_AFTER_S (clock skew between hosts included)
  was cut off.
Anything else was cut off by a crash, a kill or a restart, and reads as interrupted. A
reader that judges too early costs nothing lasting: the writer's final save overwrites
the status whatever it is.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lib.conversation import Message
    from lib.conversations import ConversationStore

log = logging.getLogger(__name__)

CUT_OFF = "Parley stopped while this reply was being written."
BOOT_ID = uuid.uuid4().hex  # this process's incarnation, so a reused pid is not mistaken
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
_live: set[str] = set()
_tracked: dict[str, tuple[ConversationStore, str, int, dict[str, Any]]] = {}
_lock = threading.Lock()
_beating: threading.Thread | None = None


def host_id() -> str:
    """This host: its name (containers get their own) and the kernel's boot id where Linux
    has one (a rebooted host is another incarnation)."""
    boot = ""
    with suppress(OSError):
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{socket.gethostname()}/{boot}"


def start_token(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None if unknown."""
    with suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22; the command name (field 2) may hold spaces, so count from its ")".
        return stat.rsplit(")", 1)[1].split()[19]
    return None


_PID = os.getpid()
_STARTED = start_token(_PID)
HOST = host_id()


def register() -> dict[str, Any]:
    """Mark a new reply as live in this process; returns the owner record for its meta."""
    reply = uuid.uuid4().hex
    with _lock:
        _live.add(reply)
    return {
        "pid": _PID,
        "started": _STARTED,
        "boot": BOOT_ID,
        "host": HOST,
        "beat": round(time.time(), 1),
        "reply": reply,
    }


def track(owner: dict[str, Any], store: ConversationStore, conversation_id: str, row: int) -> None:
    """The reply's row exists: keep its heartbeat until it is released."""
    global _beating
    with _lock:
        if owner.get("reply") not in _live:
            return
        _tracked[owner["reply"]] = (store, conversation_id, row, owner)
        if _beating is None:
            _beating = threading.Thread(target=_heartbeat, name="parley-reply-beat", daemon=True)
            _beating.start()


def release(owner: dict[str, Any] | None) -> None:
    """The reply is saved for good (or abandoned): it is no longer live."""
    if owner:
        with _lock:
            _live.discard(owner.get("reply"))
            _tracked.pop(owner.get("reply"), None)


def _heartbeat() -> None:
    global _beating
    while True:
        time.sleep(HEARTBEAT_S)
        with _lock:
            if not _tracked:
                _beating = None
                return
            rows = list(_tracked.values())
        for store, conversation_id, row, owner in rows:
            owner["beat"] = round(time.time(), 1)
            try:
                store.update_streaming(conversation_id, row, meta={"owner": owner})
            except Exception as exc:  # noqa: BLE001 - the reply goes on; readers may judge it cut off
                log.warning("could not stamp a reply's heartbeat: %s", exc)


def is_live(owner: dict[str, Any] | None) -> bool:
    """Whether the reply with this owner record is still being written by a running process."""
    if not owner:
        return False
    if owner.get("boot") == BOOT_ID:
        with _lock:
            return owner.get("reply") in _live
    host = owner.get("host")
    if host is not None and host != HOST:
        beat = owner.get("beat")
        return isinstance(beat, int | float) and time.time() - beat < STALE_AFTER_S
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == _PID or os.name != "posix":
        # Our pid with another boot id is an earlier run of this very process. (Elsewhere
        # than POSIX, signal 0 is not a harmless probe, so another process's row is
        # taken as cut off.)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to someone else
    except OSError:
        return False
    started = owner.get("started")
    return started is None or start_token(pid) in (None, started)


def settle(
    store: ConversationStore, conversation_id: str, messages: list[Message]
) -> list[Message]:
    """Mark replies left "streaming" by a process that is gone as interrupted, in the store
    and in `messages`; a reply still being written (here or elsewhere) is left alone."""
    for message in messages:
        if message.status != "streaming" or is_live(message.meta.get("owner")):
            continue
        meta = {**message.meta, "error": CUT_OFF}
        if store.update_streaming(conversation_id, message.id, status="interrupted", meta=meta):
            message.status, message.meta = "interrupted", meta
    return messages
