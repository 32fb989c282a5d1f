"""Access decisions without Streamlit: modes, the password check, the growing delay and
workspace ids (lib/access.py)."""

from __future__ import annotations

import pytest

from lib import access
from lib.errors import AccessDenied, WrongPassword

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


def test_the_delay_doubles_per_failure_up_to_a_cap() -> None:
    delays = [access.delay_after(n) for n in range(0, 10)]
    assert delays[0] == 0
    assert delays[1:5] == [1, 2, 4, 8]
    assert all(b >= a for a, b in zip(delays, delays[1:], strict=False))
    assert max(delays) == access.MAX_DELAY == access.delay_after(50)


def test_wrong_passwords_grow_the_delay_and_early_tries_are_refused_unchecked() -> None:
    throttle = access.Throttle()
    now = 1000.0
    reported = []
    for _ in range(4):
        with pytest.raises(WrongPassword) as wrong:
            access.check_password(throttle, "guess", "secret", now=now)
        reported.append(wrong.value.retry_after)
        assert "secret" not in str(wrong.value) and "guess" not in str(wrong.value)
        # The right password, but too soon: refused, and the count does not reset.
        with pytest.raises(WrongPassword, match="Too soon"):
            access.check_password(throttle, "secret", "secret", now=now + reported[-1] / 2)
        now += reported[-1]
    assert reported == [1, 2, 4, 8]
    access.check_password(throttle, "secret", "secret", now=now)
    assert throttle.failures == 0
    with pytest.raises(WrongPassword) as wrong:
        access.check_password(throttle, "guess", "secret", now=now)
    assert wrong.value.retry_after == 1  # success starts the count over


def test_an_empty_password_never_matches_even_an_empty_setting() -> None:
    with pytest.raises(WrongPassword):
        access.check_password(access.Throttle(), "", "", now=0)


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
