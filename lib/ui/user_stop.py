"""Telling the user's Stop apart from every other reason a script run ends mid-reply.

The chat input's Stop control (`st.chat_input(submit_mode="stop")`) sends the browser's
"stop script" message; Streamlit then raises StopException in the running script. So do a
rerun that replaces the run (fast reruns, when the user clicks something else), the
session closing and the server shutting down (SIGTERM), none of which is the user asking
to stop this reply. Streamlit does not say which it was, so `AppSession`'s handler for
the browser's message is wrapped once to note the session; `requested()` reads and
clears the note. Only then is a cut-off reply saved as "stopped" ("Stopped by you").

A stopped run can draw nothing more: every element it sends after the Stop raises
StopException again. So the stopped reply would stay a bare bubble (no "Stopped by you",
no actions, no gauge) until the user's next click. `redraw()` asks for one more run of
the page once the stopped one has ended: `AppSession`'s handler of its script runner's
events is wrapped too, and on that runner's SHUTDOWN it reruns with the client state the
run ended with (its page and query string, no widget trigger: nothing is sent again), as
Streamlit itself reruns a page whose source changed.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from streamlit.runtime.app_session import AppSession
from streamlit.runtime.scriptrunner import ScriptRunnerEvent, get_script_run_ctx

log = logging.getLogger(__name__)
_stopped: set[str] = set()  # session ids whose user pressed Stop in the current run
_redraw: set[str] = set()  # session ids to run again once their stopped run has ended
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
    _install_redraw()


def _install_redraw() -> None:
    original = getattr(AppSession, "_handle_scriptrunner_event_on_event_loop", None)
    if original is None or getattr(original, "_parley", False):
        if original is None:
            log.warning("Streamlit has no runner-event handler to watch; a stop redraws later")
        return

    @functools.wraps(original)
    def handle(self: AppSession, sender: Any, event: Any, *args: Any, **kwargs: Any) -> None:
        current = sender is getattr(self, "_scriptrunner", None)
        original(self, sender, event, *args, **kwargs)
        if event != ScriptRunnerEvent.SHUTDOWN:
            return
        with _lock:
            if self.id not in _redraw:
                return
            _redraw.discard(self.id)
        ended = getattr(self, "_client_state", None)
        # Not the current runner's end: a newer run is already drawing the page.
        if current and ended is not None and getattr(self, "_scriptrunner", None) is None:
            self.request_rerun(ended)

    handle._parley = True  # type: ignore[attr-defined]
    AppSession._handle_scriptrunner_event_on_event_loop = handle  # type: ignore[method-assign]


def _session_id() -> str | None:
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else None


def forget() -> None:
    """Before a reply streams: a Stop pressed earlier is not about this reply."""
    with _lock:
        _stopped.discard(_session_id())


def redraw() -> None:
    """After saving a reply the user stopped: run the page once more when this run has
    ended, so the reply is drawn complete at once (see the module docstring)."""
    session = _session_id()
    if session is not None:
        with _lock:
            _redraw.add(session)


def requested() -> bool:
    """Whether this session's user pressed Stop since `forget()`; clears the note."""
    session = _session_id()
    with _lock:
        if session in _stopped:
            _stopped.discard(session)
            return True
    return False


_install()
