"""Running a slow call, such as an image generation, in a worker thread the UI can poll.

Image calls can take a minute. The worker does the whole job, saving included, so the
result is kept even when the page that started it reruns or is left; the page polls for
progress events and the elapsed time, and can pick the job up again on its next run.
The worker never touches Streamlit: it only runs `lib` code and queues events.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from lib.errors import ParleyError

log = logging.getLogger(__name__)
_FINISHED = object()  # queued last, so a poller wakes up as soon as the job ends


class BackgroundJob:
    """`task(emit)` in a daemon thread; `emit(event)` queues progress for `updates()`."""

    def __init__(self, task: Callable[[Callable[[Any], None]], Any], *, name: str = "job") -> None:
        self.name = name
        self.result: Any = None
        self.error: Exception | None = None
        self.latest: Any = None  # the last event emitted, for a page that reattaches
        self._task = task
        self._events: queue.Queue[Any] = queue.Queue()
        self._done = threading.Event()
        self._started = time.monotonic()
        self._ended: float | None = None
        self._thread = threading.Thread(target=self._main, name=f"parley-{name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.result = self._task(self._emit)
        except ParleyError as exc:
            self.error = exc
        except Exception as exc:  # a bug, not a user-facing condition: keep the traceback
            log.exception("background job %s failed", self.name)
            self.error = exc
        finally:
            self._ended = time.monotonic()
            self._done.set()
            self._events.put(_FINISHED)

    def _emit(self, event: Any) -> None:
        self.latest = event
        self._events.put(event)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def elapsed(self) -> float:
        """Seconds since the job started, frozen when it ends."""
        return (self._ended or time.monotonic()) - self._started

    def updates(self, timeout: float) -> list[Any]:
        """Events queued since the last call, waiting up to `timeout` for the first one."""
        events = []
        try:
            events.append(self._events.get(timeout=timeout))
            while True:
                events.append(self._events.get_nowait())
        except queue.Empty:
            pass
        return [e for e in events if e is not _FINISHED]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (True) or `timeout` passes (False)."""
        return self._done.wait(timeout)
