"""A real OpenID Connect provider for the sign-in journeys: tests/oidc/server.mjs (the
OpenID-certified `oidc-provider` package) run by Node.js on loopback.

`npm ci --prefix tests/oidc` installs it (`make test` does). The provider and Parley need
each other's address, so the port of the provider is chosen first, Parley's secrets point
at it, and the provider starts once Parley's port (its redirect URI) is known.
"""

from __future__ import annotations

import json
import secrets
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.conftest import REPO, stop_process
from tests.waits import WAIT

OIDC_DIR = REPO / "tests" / "oidc"
CLIENT_ID = "parley"


@dataclass(frozen=True)
class User:
    sub: str
    username: str
    password: str
    name: str
    email: str


ALICE = User("248289761001", "alice", "alice-Pa55", "Alice Archer", "alice@example.test")
BOB = User("248289761002", "bob", "bob-Pa55", "Bob Baker", "bob@example.test")


def require_node() -> str:
    node = shutil.which("node")
    if node is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            "The test identity provider is not installed: run `make test`, or "
            "`npm ci --prefix tests/oidc` (needs Node.js 20.19 or later)."
        )
    return node


def write_secrets(path: Path, provider_port: int, client_secret: str) -> Path:
    """Parley's secrets.toml for sign-in against the provider on `provider_port`.

    Streamlit fills `{port}` in redirect_uri with its own port.
    """
    path.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{client_secret}"\n'
        f'server_metadata_url = "http://127.0.0.1:{provider_port}'
        '/.well-known/openid-configuration"\n'
    )
    return path


class OidcProvider:
    """The Node.js provider process, configured with a client for Parley and two users."""

    def __init__(
        self, workdir: Path, port: int, redirect_uri: str, client_secret: str, users: list[User]
    ) -> None:
        config = {
            "port": port,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": client_secret,
                    "redirect_uris": [redirect_uri],
                    "post_logout_redirect_uris": [redirect_uri],
                }
            ],
            "users": [u.__dict__ for u in users],
        }
        config_path = workdir / "oidc.json"
        config_path.write_text(json.dumps(config))
        self.log = workdir / "oidc.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [require_node(), str(OIDC_DIR / "server.mjs"), str(config_path)],
            cwd=OIDC_DIR,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        self.issuer = self._wait_ready()

    def _wait_ready(self, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            if not select.select([self.proc.stdout], [], [], 0.5)[0]:
                continue
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"OIDC provider exited: {self.log.read_text()[-2000:]}")
            try:
                return json.loads(line)["issuer"]
            except (ValueError, KeyError, TypeError):
                continue  # a warning line, not the ready line
        raise RuntimeError("the OIDC provider did not start in time")

    def stop(self) -> None:
        stop_process(self.proc, self._log_file)
