"""Replies being written right now, told apart from replies whose process died.

A reply is saved while it streams, with status "streaming" and `meta["owner"]` naming the
process and the reply. When a conversation is read back, such a row is live if:
- it belongs to this process (same boot id) and its reply is still registered here, so
  another session of the same server sees it still arriving; or
- it belongs to another process that is still running (the terminal chat and the web app
  share one database), checked by pid and, where /proc has it, the process's start time,
  so a pid reused after a crash does not count.
Anything else was cut off by a crash, a kill or a restart, and reads as interrupted.
"""

from __future__ import annotations

import os
import threading
import uuid
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lib.conversation import Message
    from lib.conversations import ConversationStore

CUT_OFF = "Parley stopped while this reply was being written."
BOOT_ID = uuid.uuid4().hex  # this process's incarnation, so a reused pid is not mistaken
_live: set[str] = set()
_lock = threading.Lock()


def start_token(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None if unknown."""
    with suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22; the command name (field 2) may hold spaces, so count from its ")".
        return stat.rsplit(")", 1)[1].split()[19]
    return None


_PID = os.getpid()
_STARTED = start_token(_PID)


def register() -> dict[str, Any]:
    """Mark a new reply as live in this process; returns the owner record for its meta."""
    reply = uuid.uuid4().hex
    with _lock:
        _live.add(reply)
    return {"pid": _PID, "started": _STARTED, "boot": BOOT_ID, "reply": reply}


def release(owner: dict[str, Any] | None) -> None:
    """The reply is saved for good (or abandoned): it is no longer live."""
    if owner:
        with _lock:
            _live.discard(owner.get("reply"))


def is_live(owner: dict[str, Any] | None) -> bool:
    """Whether the reply with this owner record is still being written by a running process."""
    if not owner:
        return False
    if owner.get("boot") == BOOT_ID:
        with _lock:
            return owner.get("reply") in _live
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
