"""The suite's one patience: how long a test waits for something outside itself (a server,
a child process, a browser page) before it calls that thing broken.

Generous on purpose. CI shares a noisy machine: with the load average at about 10, a
Streamlit rerun that takes half a second alone took more than five, and a 5 s wait for the
Documents heading failed; at a load of 15 to 20 a fresh server's first Documents page took
90 s. Every wait here ends as soon as what it waits for happens, so a passing test never
spends it; only a broken one does. PARLEY_TEST_WAIT (seconds) changes it.
"""

from __future__ import annotations

import os

WAIT = float(os.environ.get("PARLEY_TEST_WAIT", "120"))  # seconds
UI_TIMEOUT = WAIT * 1000  # the same, in milliseconds: Playwright's unit
JOURNEY_LIMIT = 10 * WAIT  # seconds: pytest-timeout's hang guard for a browser journey
