"""Guessing the shared password against a real `streamlit run`, as a script would: one fresh
session per guess (tests/browser/protocol.py), and made-up X-Forwarded-For headers.

AppTest runs every instance under one session id, so only a real server can show that
the wait belongs to the address and the server, not to a session.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lib import access
from tests.browser.conftest import StreamlitServer
from tests.browser.protocol import try_password

pytestmark = pytest.mark.browser

PASSWORD = "s3cond-h0rse-battery"
GUESSES = 10
LONG_WAIT = 8  # seconds left, at least, when the right password is tried during a wait
GIVE_UP_AFTER = 200.0  # seconds of guessing before the test calls the throttle absent


@dataclass
class Answer:
    sent: float
    answered: float
    message: str

    @property
    def checked(self) -> bool:
        return self.message.startswith("Wrong password")

    @property
    def refused(self) -> bool:
        return self.message.startswith("Too soon")

    @property
    def wait(self) -> float:
        """The wait this answer announced ("Wait 5 s", "wait 3 s"), 0 for none."""
        match = re.search(r"[Ww]ait (\d+(?:\.\d+)?) s", self.message)
        return float(match.group(1)) if match else 0.0


def guess(app: StreamlitServer, password: str, headers: dict[str, str] | None = None) -> Answer:
    sent = time.monotonic()
    message = try_password(app.url, password, headers)
    return Answer(sent, time.monotonic(), message)


def into_a_long_wait(app: StreamlitServer, headers: dict[str, str] | None = None) -> list[Answer]:
    """Guess wrong until the address is refused with a long wait still to go; the answers.

    Long enough (LONG_WAIT, and three times the last session's round trip on a loaded
    machine) that a fresh session with the right password is surely inside the wait.
    """
    deadline, answers = time.monotonic() + GIVE_UP_AFTER, []
    while True:
        answer = guess(app, "wrong-guess", headers)
        answers.append(answer)
        round_trip = answer.answered - answer.sent
        if answer.refused and answer.wait >= max(LONG_WAIT, 3 * round_trip):
            return answers
        assert time.monotonic() < deadline, f"the wait never grew: {answer.message!r}"


def most_checks_within(seconds: float) -> int:
    """How many guesses from one address the waits let be compared in `seconds`."""
    checks, free_until = access.FREE_FAILURES, 0.0
    while True:
        free_until += access.PER_ADDRESS.delay_after(checks)
        if free_until > seconds:
            return checks
        checks += 1


def test_a_fresh_session_per_guess_gets_only_a_handful_compared(
    streamlit_app: Callable[..., StreamlitServer],
) -> None:
    app = streamlit_app(APP_PASSWORD=PASSWORD)
    answers = [guess(app, f"wrong-guess-{n}") for n in range(GUESSES)]
    elapsed = answers[-1].answered - answers[0].sent
    checked = [a for a in answers if a.checked]
    assert len(checked) + sum(a.refused for a in answers) == GUESSES, answers
    print(f"{GUESSES} fresh-session guesses in {elapsed:.1f} s: {len(checked)} compared")
    assert access.FREE_FAILURES <= len(checked) <= most_checks_within(elapsed)
    # No guess was compared before the wait the previous compared one announced was over.
    for before, after in zip(checked, checked[1:], strict=False):
        assert after.answered - before.sent >= before.wait, (before, after)

    # The right password, from a fresh session on the same address, waits too.
    answers += into_a_long_wait(app)
    assert try_password(app.url, PASSWORD).startswith("Too soon")

    # Every compared guess is in the log with its address and time; no guess, no password.
    log = Path(app.log).read_text()
    compared = sum(a.checked for a in answers)
    assert log.count("Wrong password from 127.0.0.1 at ") == compared, log[-2000:]
    assert "wrong-guess" not in log and PASSWORD not in log
    assert "Traceback" not in log


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    streamlit_app: Callable[..., StreamlitServer], trusted: str
) -> None:
    # FORWARDED_ALLOW_IPS="": Streamlit's own server (uvicorn) believes X-Forwarded-For from
    # loopback by default; off, the test client is a peer like any other and Parley's
    # setting alone decides.
    app = streamlit_app(
        APP_PASSWORD=PASSWORD, PARLEY_TRUSTED_PROXIES=trusted, FORWARDED_ALLOW_IPS=""
    )
    guesser, colleague = {"X-Forwarded-For": "203.0.113.9"}, {"X-Forwarded-For": "192.0.2.4"}
    into_a_long_wait(app, guesser)
    if not trusted:
        # A header anyone can write: the colleague is the same peer as the guesser.
        assert try_password(app.url, PASSWORD, colleague).startswith("Too soon")
        assert "Wrong password from 127.0.0.1 at " in Path(app.log).read_text()
        return
    # What a client writes itself, left of the proxy's entry, changes nothing.
    spoofed = {"X-Forwarded-For": "192.0.2.4, 203.0.113.9"}
    assert try_password(app.url, PASSWORD, spoofed).startswith("Too soon")
    assert try_password(app.url, PASSWORD, colleague) == ""
    log = Path(app.log).read_text()
    assert "Wrong password from 203.0.113.9 at " in log
    assert "Wrong password from 127.0.0.1" not in log
