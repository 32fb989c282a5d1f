"""Telling the user's Stop apart from every other reason a script run ends mid-reply.

The chat input's Stop control (`st.chat_input(submit_mode="stop")`) sends the browser's
"stop script" message; Streamlit then raises StopException in the running script. So do a
rerun that replaces the run (fast reruns, when the user clicks something else), the
session closing and the server shutting down (SIGTERM), none of which is the user asking
to stop this reply. Streamlit does not say which it was, so `AppSession`'s handler for
the browser's message is wrapped once to note the session; `requested()` reads and
clears the note. Only then is a cut-off reply saved as "stopped" ("Stopped by you").
"""

from __future__ import annotations

import functools
import logging
import threading

from streamlit.runtime.app_session import AppSession
from streamlit.runtime.scriptrunner import get_script_run_ctx

log = logging.getLogger(__name__)
_stopped: set[str] = set()  # session ids whose user pressed Stop in the current run
_lock = threading.Lock()


def _install() -> None:
    original = getattr(AppSession, "_handle_stop_script_request", None)
    if original is None or getattr(original, "_parley", False):
        if original is None:  # a Streamlit without it: every cut-off reads as interrupted
            log.warning("Streamlit has no stop-script handler to watch; Stop reads as cut off")
        return

    @functools.wraps(original)
    def handle(self: AppSession) -> None:
        with _lock:
            _stopped.add(self.id)
        original(self)

    handle._parley = True  # type: ignore[attr-defined]
    AppSession._handle_stop_script_request = handle  # type: ignore[method-assign]


def _session_id() -> str | None:
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else None


def forget() -> None:
    """Before a reply streams: a Stop pressed earlier is not about this reply."""
    with _lock:
        _stopped.discard(_session_id())


def requested() -> bool:
    """Whether this session's user pressed Stop since `forget()`; clears the note."""
    session = _session_id()
    with _lock:
        if session in _stopped:
            _stopped.discard(session)
            return True
    return False


_install()
