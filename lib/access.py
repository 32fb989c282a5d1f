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
passwords, workspace ids); `lib/ui/auth.py` draws the gate. No Streamlit here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lib import settings
from lib.errors import AccessDenied, WrongPassword

Mode = Literal["local", "password", "signin"]

LOCAL_WORKSPACE = "local"
SHARED_WORKSPACE = "shared"
USER_PREFIX = "u_"
# Every workspace id is one of these shapes, so it is safe as a directory name too.
WORKSPACE_ID = re.compile(r"^(local|shared|u_[0-9a-f]{32})$")

FIRST_DELAY = 1.0  # seconds to wait after the first wrong password
MAX_DELAY = 60.0  # the delay doubles per failure up to this


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


def delay_after(failures: int) -> float:
    """Seconds a session must wait after its n-th consecutive wrong password."""
    if failures <= 0:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - 1))


@dataclass
class Throttle:
    """One session's record of wrong passwords; it lives in that session's state only."""

    failures: int = 0
    retry_at: float = 0.0  # time.monotonic() before which no attempt is checked

    def wait_left(self, now: float) -> float:
        return max(0.0, self.retry_at - now)

    def record_failure(self, now: float) -> float:
        self.failures += 1
        delay = delay_after(self.failures)
        self.retry_at = now + delay
        return delay


def check_password(throttle: Throttle, given: str, expected: str, now: float | None = None) -> None:
    """Admit (return) or raise WrongPassword with the delay before the next try.

    An attempt made before the delay has run out is refused without being compared,
    even if it is right: otherwise the delay would slow nobody down.
    """
    now = time.monotonic() if now is None else now
    wait = throttle.wait_left(now)
    if wait > 0:
        raise WrongPassword(
            f"Too soon: wait {math.ceil(wait)} s before trying again.", retry_after=wait
        )
    if given and password_matches(given, expected):
        throttle.failures, throttle.retry_at = 0, 0.0
        return
    delay = throttle.record_failure(now)
    raise WrongPassword(f"Wrong password. Wait {delay:g} s before the next try.", retry_after=delay)


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
