"""Access decisions without Streamlit: modes, the password check, the waits after wrong
passwords (per client address and server-wide, on an injected clock, counted in the
database on both backends and shared by replicas), client addresses behind proxies, and
workspace ids (lib/access.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lib import access
from lib.errors import AccessDenied, DatabaseUnavailable, WrongPassword
from lib.store.backend import Backend
from lib.store.postgres import PostgresBackend
from lib.store.sqlite import SQLiteBackend

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}


@pytest.mark.parametrize(
    ("secrets", "environ", "mode"),
    [
        ({}, {}, "local"),
        ({"APP_PASSWORD": ""}, {"APP_PASSWORD": ""}, "local"),
        ({"APP_PASSWORD": "pw"}, {}, "password"),
        ({}, {"APP_PASSWORD": "pw"}, "password"),
        ({"auth": {**AUTH, "client_id": "c"}}, {}, "signin"),
        ({"auth": {**AUTH, "client_id": "c"}, "APP_PASSWORD": "pw"}, {}, "signin"),
        ({"auth": {}}, {"APP_PASSWORD": "pw"}, "password"),
        ({"auth": "not a table"}, {}, "local"),
        (None, None, "local"),
    ],
)
def test_mode_comes_from_configuration(secrets, environ, mode) -> None:  # noqa: ANN001
    assert access.detect_mode(secrets, environ) == mode


def test_secrets_password_wins_over_the_environment() -> None:
    assert access.configured_password({"APP_PASSWORD": "a"}, {"APP_PASSWORD": "b"}) == "a"
    assert access.configured_password({}, {"APP_PASSWORD": "b"}) == "b"


def test_a_missing_secrets_file_counts_as_no_secrets() -> None:
    class Missing(dict):
        def get(self, key, default=None):  # noqa: ANN001, ANN201 - st.secrets' behaviour
            raise FileNotFoundError("no secrets.toml")

    assert access.detect_mode(Missing(), {"APP_PASSWORD": "pw"}) == "password"


def test_named_providers_are_listed_and_other_tables_are_not() -> None:
    secrets = {
        "auth": {
            **AUTH,
            "client_kwargs": {"prompt": "login"},
            "google": {"client_id": "g", "client_secret": "s", "server_metadata_url": "u"},
            "auth0": {"client_id": "a", "client_secret": "s", "server_metadata_url": "u"},
        }
    }
    assert access.login_providers(secrets) == ["google", "auth0"]
    assert access.login_providers({"auth": {**AUTH, "client_id": "c"}}) == []


@pytest.mark.parametrize(
    ("given", "ok"),
    [("correct horse", True), ("correct hors", False), ("Correct horse", False), ("", False)],
)
def test_password_matches_only_the_exact_password(given: str, ok: bool) -> None:
    assert access.password_matches(given, "correct horse") is ok


class Clock:
    """The throttle's clock, moved by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def attempt(throttle: access.PasswordThrottle, address: str, given: str) -> str:
    """'admitted', 'wrong' (compared) or 'too soon' (refused unchecked)."""
    try:
        throttle.check(address, given, "secret")
    except WrongPassword as exc:
        assert "secret" not in str(exc) and given not in str(exc)
        return "too soon" if str(exc).startswith("Too soon") else "wrong"
    return "admitted"


def stored(backend: Backend) -> dict[tuple[str, str], int]:
    """The failure counts in the table, by (scope, key)."""
    with backend.connection() as conn:
        rows = conn.execute("SELECT scope, key, failures FROM password_failures").fetchall()
    return {(r["scope"], r["key"]): r["failures"] for r in rows}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock, backend: Backend) -> access.PasswordThrottle:
    return access.PasswordThrottle(access.DatabaseFailures(backend), clock=clock)


@pytest.fixture
def replica(backend: Backend) -> Iterator[Backend]:
    """The same database opened a second time, as another server process opens it."""
    if isinstance(backend, PostgresBackend):
        other: Backend = PostgresBackend(backend.data_dir, backend.url)
    else:
        other = SQLiteBackend(backend.data_dir)
    yield other
    other.close()


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0), (1, 0), (2, 0), (3, 5), (4, 10), (5, 20), (8, 160), (9, 300), (10**6, 300)],
)
def test_an_address_waits_after_three_failures_then_twice_as_long_each_time(
    failures: int, delay: float
) -> None:
    assert access.PER_ADDRESS.delay_after(failures) == delay


def test_each_wrong_password_from_an_address_grows_its_wait(
    throttle: access.PasswordThrottle, clock: Clock
) -> None:
    announced = []
    for n in range(1, 7):
        with pytest.raises(WrongPassword) as wrong:
            throttle.check("203.0.113.7", f"guess-{n}", "secret")
        announced.append(wrong.value.retry_after)
        if wrong.value.retry_after:
            clock.now += wrong.value.retry_after / 2
            assert attempt(throttle, "203.0.113.7", "guess") == "too soon"
            clock.now += wrong.value.retry_after / 2
    assert announced == [0, 0, 5, 10, 20, 40]


@pytest.mark.parametrize("wait", ["address", "server"])
def test_the_right_password_is_refused_unchecked_while_waiting(
    throttle: access.PasswordThrottle, clock: Clock, wait: str
) -> None:
    if wait == "address":
        for _ in range(access.FREE_FAILURES):
            attempt(throttle, "203.0.113.7", "guess")
    else:
        for n in range(access.SERVER_FREE):
            attempt(throttle, f"198.51.100.{n}", "guess")
    assert attempt(throttle, "203.0.113.7", "secret") == "too soon"
    clock.now += access.FIRST_DELAY
    assert attempt(throttle, "203.0.113.7", "secret") == "admitted"


def test_other_addresses_are_unaffected_until_the_server_wide_budget_is_spent(
    throttle: access.PasswordThrottle, clock: Clock
) -> None:
    for _ in range(access.FREE_FAILURES):
        attempt(throttle, "203.0.113.7", "guess")
    assert attempt(throttle, "203.0.113.7", "guess") == "too soon"
    # One failure each from many addresses: all compared, up to the budget.
    outcomes = [attempt(throttle, f"198.51.100.{n}", "guess") for n in range(100)]
    spent = access.SERVER_FREE - access.FREE_FAILURES
    assert outcomes[:spent] == ["wrong"] * spent
    # Then every try waits a little after each failure anywhere, a new address's too.
    assert set(outcomes[spent:]) == {"too soon"}
    assert attempt(throttle, "192.0.2.1", "secret") == "too soon"
    clock.now += access.SERVER_DELAY
    assert attempt(throttle, "192.0.2.1", "guess") == "wrong"
    assert attempt(throttle, "192.0.2.2", "guess") == "too soon"
    # A quiet spell and the server-wide count starts over.
    clock.now += access.SERVER_QUIET
    assert attempt(throttle, "192.0.2.2", "secret") == "admitted"


def test_success_resets_its_address_only(throttle: access.PasswordThrottle, clock: Clock) -> None:
    for address in ("203.0.113.7", "203.0.113.8"):
        for _ in range(access.FREE_FAILURES):
            attempt(throttle, address, "guess")
    clock.now += access.FIRST_DELAY
    assert attempt(throttle, "203.0.113.7", "secret") == "admitted"
    # The count starts over: free tries again before the next wait.
    outcomes = [attempt(throttle, "203.0.113.7", "guess") for _ in range(access.FREE_FAILURES)]
    assert outcomes == ["wrong"] * access.FREE_FAILURES
    assert attempt(throttle, "203.0.113.7", "guess") == "too soon"
    # The other address still has its count: its next failure doubles the wait.
    with pytest.raises(WrongPassword) as wrong:
        throttle.check("203.0.113.8", "guess", "secret")
    assert wrong.value.retry_after == 2 * access.FIRST_DELAY


def test_an_address_that_stops_failing_is_forgotten(
    throttle: access.PasswordThrottle, clock: Clock, backend: Backend
) -> None:
    for _ in range(access.FREE_FAILURES + 2):
        clock.now += access.MAX_DELAY
        attempt(throttle, "203.0.113.7", "guess")
    clock.now += access.FORGET_AFTER
    assert throttle.counts.wait_left(access.PER_ADDRESS, "203.0.113.7", clock.now) == 0
    attempt(throttle, "198.51.100.1", "guess")  # a failure anywhere deletes expired counts
    assert ("address", "203.0.113.7") not in stored(backend)
    with pytest.raises(WrongPassword) as wrong:
        throttle.check("203.0.113.7", "guess", "secret")
    assert wrong.value.retry_after == 0  # a first failure again


def test_an_empty_password_never_matches_even_an_empty_setting(
    throttle: access.PasswordThrottle,
) -> None:
    with pytest.raises(WrongPassword):
        throttle.check("203.0.113.7", "", "")


def test_the_table_is_bounded_by_count_and_by_age(backend: Backend) -> None:
    counts = access.DatabaseFailures(backend)
    rule = dataclasses.replace(access.PER_ADDRESS, max_keys=50)
    for n in range(300):
        counts.record_failure(rule, f"key-{n}", now=float(n))
    assert len(stored(backend)) == 50
    # The most recent failures are the ones kept.
    assert counts.wait_left(rule, "key-0", 300.0) == 0
    counts.record_failure(rule, "key-299", now=300.0)
    assert counts.wait_left(rule, "key-299", 300.0) == 0  # 2 failures: still free
    counts.record_failure(rule, "key-299", now=300.0)
    assert counts.wait_left(rule, "key-299", 300.0) == access.FIRST_DELAY
    # Expired counts go as soon as anything is recorded.
    counts.record_failure(rule, "late", now=299.0 + access.FORGET_AFTER)
    assert set(stored(backend)) == {("address", "late"), ("address", "key-299")}


def test_two_replicas_counting_one_address_lose_no_failure(
    backend: Backend, replica: Backend
) -> None:
    """Each failure is one atomic upsert: four threads on two separately opened backends
    count the same address at once, and every failure is there, each with its own count."""
    per_thread, start = 25, threading.Barrier(4)
    stores = [access.DatabaseFailures(backend), access.DatabaseFailures(replica)]

    def count(counts: access.DatabaseFailures) -> list[float]:
        start.wait()
        rule = access.PER_ADDRESS
        return [counts.record_failure(rule, "203.0.113.7", 1000.0) for _ in range(per_thread)]

    with ThreadPoolExecutor(4) as pool:
        delays = [d for part in pool.map(count, stores * 2) for d in part]
    assert stored(backend) == {("address", "203.0.113.7"): 4 * per_thread}
    assert sorted(delays) == [access.PER_ADDRESS.delay_after(n) for n in range(1, 101)]


def test_tries_sent_at_once_to_two_replicas_are_decided_one_at_a_time(
    clock: Clock, backend: Backend, replica: Backend
) -> None:
    tries = 12
    start, read = threading.Barrier(tries), threading.Barrier(tries)

    class RacingCounts(access.DatabaseFailures):
        # Each read waits until every try has read (or half a second has passed): without
        # one decision at a time over read, compare and count, across both processes,
        # all of them would read "no wait".
        def wait_left(self, rule: access.Backoff, key: str, now: float) -> float:
            wait = super().wait_left(rule, key, now)
            with contextlib.suppress(threading.BrokenBarrierError):
                read.wait(timeout=0.5)
            return wait

    # Two throttles, as two server processes have: each its own lock, one database.
    throttles = [
        access.PasswordThrottle(RacingCounts(backend), clock=clock),
        access.PasswordThrottle(RacingCounts(replica), clock=clock),
    ]

    def guess(n: int) -> str:
        start.wait()
        return attempt(throttles[n % 2], "203.0.113.7", f"guess-{n}")

    with ThreadPoolExecutor(tries) as pool:
        outcomes = list(pool.map(guess, range(tries)))
    assert outcomes.count("wrong") == access.FREE_FAILURES
    assert outcomes.count("too soon") == tries - access.FREE_FAILURES
    # A process started later (a restart, another replica) finds the wait.
    later = access.PasswordThrottle(access.DatabaseFailures(replica), clock=clock)
    assert attempt(later, "203.0.113.7", "secret") == "too soon"


def test_no_try_is_admitted_while_the_counts_cannot_be_read(tmp_path: Path, clock: Clock) -> None:
    """Fail closed: a database that does not answer is an error, not an open gate."""
    down = PostgresBackend(tmp_path, "postgresql://parley@127.0.0.1:1/parley")
    throttle = access.PasswordThrottle(access.DatabaseFailures(down), clock=clock)
    with pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        throttle.check("203.0.113.7", "secret", "secret")


def test_failures_are_logged_with_address_and_time_never_the_guess(
    throttle: access.PasswordThrottle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lib.access")
    for _ in range(access.FREE_FAILURES + 1):
        attempt(throttle, "203.0.113.7", "hunter2-guess")
    attempt(throttle, "203.0.113.7", "secret")
    wrong = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(wrong) == access.FREE_FAILURES
    assert all("203.0.113.7" in r.getMessage() for r in caplog.records)
    assert re.search(r" at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", wrong[0].getMessage())
    assert "refused unchecked" in caplog.records[-1].getMessage()
    assert "hunter2" not in caplog.text and "secret" not in caplog.text


PROXY = "10.0.0.5"


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "client"),
    [
        ("203.0.113.7", [], [], "203.0.113.7"),
        # A peer that is no trusted proxy: its X-Forwarded-For is ignored, spoofed or not.
        ("203.0.113.7", ["198.51.100.1"], [], "203.0.113.7"),
        ("203.0.113.7", ["198.51.100.1"], ["10.0.0.0/8"], "203.0.113.7"),
        # Behind a trusted proxy: the address the proxy appended.
        (PROXY, ["198.51.100.1"], [PROXY], "198.51.100.1"),
        (PROXY, ["198.51.100.1"], ["10.0.0.0/8"], "198.51.100.1"),
        # What the client wrote itself sits to the left of what the proxy appended.
        (PROXY, ["1.1.1.1, 198.51.100.1"], [PROXY], "198.51.100.1"),
        (PROXY, ["1.1.1.1", "198.51.100.1"], [PROXY], "198.51.100.1"),  # two headers
        # A chain of trusted proxies is walked past, from the right.
        (PROXY, ["1.1.1.1, 198.51.100.1, 10.0.0.9"], ["10.0.0.0/8"], "198.51.100.1"),
        (PROXY, ["1.1.1.1, 10.0.0.7, 198.51.100.1"], [PROXY], "198.51.100.1"),
        # No header, or only trusted hops in it: the last address there is.
        (PROXY, [], [PROXY], PROXY),
        (PROXY, ["10.0.0.9"], ["10.0.0.0/8"], "10.0.0.9"),
        # Garbage stops the walk at the last hop vouched for.
        (PROXY, ["198.51.100.1, not-an-ip"], [PROXY], PROXY),
        # Ports, brackets and IPv4-mapped IPv6.
        (PROXY, ["198.51.100.1:4711"], [PROXY], "198.51.100.1"),
        (PROXY, ["[2001:db8::1]:443"], [PROXY], "2001:db8::/64"),
        ("::ffff:203.0.113.7", [], [], "203.0.113.7"),
        # IPv6 counts per /64.
        ("2001:db8:1:2:aaaa::1", [], [], "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", [], [], "2001:db8:1:2::/64"),
        # Streamlit reports loopback as None; trusting either loopback trusts it.
        (None, ["198.51.100.1"], [], "127.0.0.1"),
        (None, ["198.51.100.1"], ["127.0.0.1"], "198.51.100.1"),
        (None, ["198.51.100.1"], ["::1"], "198.51.100.1"),
    ],
)
def test_the_client_address_believes_forwarded_for_only_from_trusted_proxies(
    peer: str | None, forwarded_for: list[str], trusted: list[str], client: str
) -> None:
    assert access.client_address(peer, forwarded_for, trusted) == client


def test_identity_workspaces_are_stable_distinct_and_path_safe() -> None:
    a = access.identity_workspace("https://accounts.google.com", "1001")
    assert a == access.identity_workspace("https://accounts.google.com", "1001")
    others = {
        access.identity_workspace("https://accounts.google.com", "1002"),
        access.identity_workspace("https://login.example.com", "1001"),
        # Concatenation would make these two the same; JSON encoding keeps them apart.
        access.identity_workspace("https://a|b", "c"),
        access.identity_workspace("https://a", "b|c"),
    }
    assert a not in others and len(others) == 4
    assert all(access.valid_workspace(w) for w in {a, *others})
    assert a.startswith("u_") and len(a) == 34


@pytest.mark.parametrize(
    ("iss", "sub"), [(None, "1"), ("https://i", None), ("", "1"), ("https://i", ""), (1, "x")]
)
def test_an_identity_without_issuer_or_subject_is_refused(iss, sub) -> None:  # noqa: ANN001
    with pytest.raises(AccessDenied, match="did not say who you are"):
        access.identity_workspace(iss, sub)


def test_workspace_for_each_mode() -> None:
    user = {"is_logged_in": True, "iss": "https://i", "sub": "42", "email": "a@b"}
    assert access.workspace_for("local", admitted=False, user=None) == "local"
    assert access.workspace_for("password", admitted=True, user=None) == "shared"
    assert access.workspace_for("signin", admitted=False, user=user) == (
        access.identity_workspace("https://i", "42")
    )
    for mode, admitted, who in [
        ("password", False, None),
        ("signin", True, None),  # the password flag means nothing in sign-in mode
        ("signin", False, {**user, "is_logged_in": False}),
        ("signin", False, {}),
    ]:
        with pytest.raises(AccessDenied):
            access.workspace_for(mode, admitted=admitted, user=who)


@pytest.mark.parametrize(
    "workspace", ["", "../local", "local/..", "u_" + "g" * 32, "u_abc", "Local", "shared\n", 7]
)
def test_only_generated_workspace_ids_are_valid(workspace) -> None:  # noqa: ANN001
    assert not access.valid_workspace(workspace)
