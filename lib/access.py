"""Who may use this Parley server, and whose workspace a session reads and writes.

Three modes, chosen by configuration alone:

- ``local`` (the default): no gate; one workspace, ``"local"``.
- ``password``: ``APP_PASSWORD`` in secrets or the environment; everyone who passes the
  password form shares one workspace, ``"shared"``.
- ``signin``: an ``[auth]`` section in ``.streamlit/secrets.toml`` (Streamlit's OIDC
  sign-in); each identity gets its own workspace, derived from the identity provider's
  issuer and the user's stable subject, never from an email or a display name (both can
  change hands).

This module holds the decisions (mode, password check, the growing delay after wrong
passwords and the table it is counted in, workspace ids); `lib/ui/auth.py` draws the
gate. No Streamlit here.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from lib import settings
from lib.errors import AccessDenied, WrongPassword
from lib.store.backend import Backend, Connection

log = logging.getLogger(__name__)

Mode = Literal["local", "password", "signin"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOCAL_WORKSPACE = "local"
SHARED_WORKSPACE = "shared"
USER_PREFIX = "u_"
# Every workspace id is one of these shapes, so it is safe as a directory name too.
WORKSPACE_ID = re.compile(r"^(local|shared|u_[0-9a-f]{32})$")


def auth_configured(secrets: Mapping[str, Any] | None) -> bool:
    """True when secrets hold a non-empty ``[auth]`` section (Streamlit's OIDC sign-in)."""
    return settings.auth_section(secrets) is not None


def configured_password(
    secrets: Mapping[str, Any] | None, environ: Mapping[str, str] | None
) -> str | None:
    """APP_PASSWORD from secrets, else the environment; an empty value means none."""
    return settings.app_password(secrets, environ)


def detect_mode(secrets: Mapping[str, Any] | None, environ: Mapping[str, str] | None) -> Mode:
    """Sign-in when ``[auth]`` is configured, else a password if one is set, else local.

    Sign-in wins over a password: it is the stronger of the two, and giving each user a
    workspace of their own is the reason to configure it.
    """
    if auth_configured(secrets):
        return "signin"
    if configured_password(secrets, environ):
        return "password"
    return "local"


def login_providers(secrets: Mapping[str, Any] | None) -> list[str]:
    """Named providers (``[auth.google]``...) or ``[]`` for the single default one."""
    section = settings.auth_section(secrets)
    if section is None:
        return []
    # The same test Streamlit applies: a nested table with client settings is a provider.
    return [
        name
        for name, value in section.items()
        if isinstance(value, Mapping) and ("client_id" in value or "server_metadata_url" in value)
    ]


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; hashing first hides the length of the password too."""
    a = hashlib.sha256(given.encode()).digest()
    b = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(a, b)


# Wrong passwords are counted per client address and server-wide, in the database, so
# every session of every server process on it counts together and a restart forgets
# nothing. (A count kept in the session started over with every new session: a script
# that opened one per guess had 61 to 74 a minute checked.)
FREE_FAILURES = 3  # wrong passwords an address may make before it has to wait
FIRST_DELAY = 5.0  # seconds to wait after the FREE_FAILURES-th; doubles per further one
MAX_DELAY = 300.0  # so a patient guesser from one address gets 12 tries an hour
FORGET_AFTER = 3600.0  # an address with no failure for this long starts over
MAX_ADDRESSES = 10_000  # tracked at once; the oldest failure goes first
# Many addresses (a botnet) slow everyone a little: once this many failures came with no
# quiet minute between them, every try waits SERVER_DELAY after the last failure anywhere.
SERVER_FREE = 30
SERVER_DELAY = 1.0
SERVER_QUIET = 60.0
SERVER = "*"  # the server-wide count's key
LOOPBACKS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
# The PostgreSQL advisory lock every replica takes to decide one password try at a time.
DECISION_LOCK = 0x70617373776F7264  # "password"


@dataclass(frozen=True)
class Backoff:
    """One count's rule: how long a key waits after its n-th failure, when its count is
    forgotten, and how many keys it tracks at once. `scope` names its rows."""

    scope: str
    free: int  # failures allowed before any wait
    first: float  # seconds after the free-th failure; doubled per failure after it
    cap: float
    forget_after: float  # seconds without a failure after which the count starts over
    max_keys: int

    def delay_after(self, failures: int) -> float:
        if failures < max(self.free, 1):
            return 0.0
        # The exponent is capped: 2.0 ** 2000 would overflow long after the cap is reached.
        return min(self.cap, self.first * 2.0 ** min(failures - max(self.free, 1), 32))


PER_ADDRESS = Backoff("address", FREE_FAILURES, FIRST_DELAY, MAX_DELAY, FORGET_AFTER, MAX_ADDRESSES)
SERVER_WIDE = Backoff("server", SERVER_FREE, SERVER_DELAY, SERVER_DELAY, SERVER_QUIET, 1)


class FailureCounts(Protocol):
    """What `PasswordThrottle` needs from where failures are counted: by rule and key,
    times on the throttle's clock (seconds). `decision()` is held around each try's
    reads, comparison and counting, so that no other try, in any process sharing the
    counts, is decided in between."""

    def decision(self) -> AbstractContextManager[object]: ...
    def wait_left(self, rule: Backoff, key: str, now: float) -> float: ...
    def record_failure(self, rule: Backoff, key: str, now: float) -> float: ...  # its delay
    def reset(self, rule: Backoff, key: str) -> None: ...


class DatabaseFailures:
    """Failure counts in the `password_failures` table, on either backend.

    Server-wide, not a `WorkspaceStore`: a try is counted before its session has any
    workspace (passing the gate is what gives it one), against the client's address and
    the whole server, so the rows belong to no user. They hold addresses, counts and
    times, never a guess.

    A failure is one upsert that returns the new count (`INSERT ... ON CONFLICT DO UPDATE
    ... RETURNING`), so two replicas counting the same address never lose one. A count
    whose last failure is `forget_after` old starts over, and is deleted with the
    oldest beyond `max_keys` whenever a failure is recorded.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @contextmanager
    def decision(self) -> Iterator[object]:
        # SQLite's transaction takes the database's write lock at once (BEGIN IMMEDIATE),
        # which every process on the file queues for; PostgreSQL's needs the advisory lock,
        # and READ COMMITTED whatever the server's default, so that each read after the
        # lock sees the failures the previous holder committed.
        with self.backend.transaction() as conn:
            if self.backend.dialect == "postgresql":
                conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                conn.execute("SELECT pg_advisory_xact_lock(?)", (DECISION_LOCK,))
            yield conn

    def wait_left(self, rule: Backoff, key: str, now: float) -> float:
        with self.backend.connection() as conn:
            row = conn.execute(
                "SELECT failures, last_failure FROM password_failures WHERE scope = ? AND key = ?",
                (rule.scope, key),
            ).fetchone()
        if row is None or now - row["last_failure"] >= rule.forget_after:
            return 0.0
        return max(0.0, row["last_failure"] + rule.delay_after(row["failures"]) - now)

    def record_failure(self, rule: Backoff, key: str, now: float) -> float:
        with self.backend.transaction() as conn:
            (failures,) = conn.execute(
                "INSERT INTO password_failures (scope, key, failures, last_failure) "
                "VALUES (?, ?, 1, ?) ON CONFLICT (scope, key) DO UPDATE SET failures = "
                " CASE WHEN excluded.last_failure - password_failures.last_failure >= ?"
                " THEN 1 ELSE password_failures.failures + 1 END,"
                " last_failure = excluded.last_failure "
                "RETURNING failures",
                (rule.scope, key, now, rule.forget_after),
            ).fetchone()
            self._prune(conn, rule, now)
        return rule.delay_after(failures)

    def reset(self, rule: Backoff, key: str) -> None:
        with self.backend.connection() as conn:
            conn.execute(
                "DELETE FROM password_failures WHERE scope = ? AND key = ?", (rule.scope, key)
            )

    def _prune(self, conn: Connection, rule: Backoff, now: float) -> None:
        conn.execute(
            "DELETE FROM password_failures WHERE scope = ? AND last_failure <= ?",
            (rule.scope, now - rule.forget_after),
        )
        conn.execute(
            "DELETE FROM password_failures WHERE scope = ? AND last_failure < ("
            " SELECT last_failure FROM password_failures WHERE scope = ?"
            " ORDER BY last_failure DESC LIMIT 1 OFFSET ?)",
            (rule.scope, rule.scope, rule.max_keys - 1),
        )


class PasswordThrottle:
    """The password check with its waits, per client address and server-wide.

    The counts are in `counts` (the database), so a new session, another replica or a
    restart is no way around them. The clock is wall-clock time by default: every
    replica must read the same one (`time.monotonic` counts from each machine's boot).
    """

    def __init__(self, counts: FailureCounts, clock: Callable[[], float] = time.time) -> None:
        self.counts = counts
        self._clock = clock
        # One decision at a time: tries sent at once from many sessions must not all be
        # compared before the first of them is counted. This lock queues this process's
        # tries; `counts.decision()` queues them with every other process's.
        self._lock = threading.Lock()

    def check(self, address: str, given: str, expected: str) -> None:
        """Admit (return) or raise WrongPassword with the wait before the next try.

        A try made while its address, or the whole server, has to wait is refused without
        being compared, even if it is right: otherwise the wait would slow nobody down.
        A right password resets its address's count, not the server-wide one.
        """
        with self._lock, self.counts.decision():
            now = self._clock()
            wait = max(
                self.counts.wait_left(PER_ADDRESS, address, now),
                self.counts.wait_left(SERVER_WIDE, SERVER, now),
            )
            if wait > 0:  # raised inside the decision, which has written nothing
                log.info("Password try from %s refused unchecked (%.0f s to wait)", address, wait)
                raise WrongPassword(
                    f"Too soon: wait {math.ceil(wait)} s before trying again.", retry_after=wait
                )
            if given and password_matches(given, expected):
                self.counts.reset(PER_ADDRESS, address)
                return
            delay = max(
                self.counts.record_failure(PER_ADDRESS, address, now),
                self.counts.record_failure(SERVER_WIDE, SERVER, now),
            )
        when = datetime.now(UTC).isoformat(timespec="seconds")
        log.warning("Wrong password from %s at %s; next try in %g s", address, when, delay)
        wait_text = f" Wait {delay:g} s before the next try." if delay else ""
        raise WrongPassword("Wrong password." + wait_text, retry_after=delay)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[str]
) -> str:
    """The address a password try is counted against.

    `peer` is the connection's own address (Streamlit gives None for loopback). Only when
    it is one of the operator's `trusted_proxies` (IPs or networks) is X-Forwarded-For
    believed, since anyone else can write that header: it is read from the right, past
    the trusted proxies, and the first address that is not one is the client. An entry
    that is not an address stops the walk at the last hop vouched for. IPv6 is counted
    per /64, the block one subscriber usually holds.
    """
    networks = [ipaddress.ip_network(item, strict=False) for item in trusted_proxies]
    hop = LOOPBACKS[0] if peer is None else _parse_address(peer)
    if hop is None:
        return str(peer)[:64]
    entries = [item for value in forwarded_for for item in value.split(",")]
    while entries and _is_trusted(hop, networks):
        previous = _parse_address(entries.pop())
        if previous is None:
            break
        hop = previous
    if isinstance(hop, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{hop}/64", strict=False))
    return str(hop)


def _is_trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    # Streamlit reports either loopback as None, so trusting one trusts both.
    candidates = LOOPBACKS if address.is_loopback else (address,)
    return any(a in net for a in candidates for net in networks)


def _parse_address(text: str) -> IPAddress | None:
    """An address from a header entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def identity_workspace(issuer: Any, subject: Any) -> str:
    """A stable workspace id for one identity: the same (issuer, subject), the same id.

    The pair is JSON-encoded before hashing so no choice of strings can make two
    different identities collide by concatenation.
    """
    if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
        raise AccessDenied(
            "Your identity provider did not say who you are.",
            hint="Its ID token must carry the 'iss' and 'sub' claims. Sign out and try again.",
        )
    digest = hashlib.sha256(json.dumps([issuer, subject]).encode()).hexdigest()
    return USER_PREFIX + digest[:32]


def workspace_for(mode: Mode, *, admitted: bool, user: Mapping[str, Any] | None) -> str:
    """The workspace of a session in this mode; AccessDenied if it has not passed the gate."""
    if mode == "local":
        return LOCAL_WORKSPACE
    if mode == "password":
        if not admitted:
            raise AccessDenied("Enter the password to use Parley.")
        return SHARED_WORKSPACE
    if not user or not user.get("is_logged_in"):
        raise AccessDenied("Sign in to use Parley.")
    return identity_workspace(user.get("iss"), user.get("sub"))


def valid_workspace(workspace: str) -> bool:
    """True for ids this module makes; use before turning a workspace into a path."""
    return isinstance(workspace, str) and WORKSPACE_ID.fullmatch(workspace) is not None
