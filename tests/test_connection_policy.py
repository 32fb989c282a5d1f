"""The operator's key is bound to the operator's server (issue: safe to host).

A visitor who names another server in the Connection panel (or whose session state says
so) must never make Parley send the operator's key there. The unit table covers the
policy; the page tests run the real chat path in every access mode against two loopback
servers: the operator's, and a "visitor's" one that records every Authorization header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from streamlit.testing.v1 import AppTest

from lib.errors import ConfigError
from lib.providers import PLACEHOLDER_KEY
from lib.settings import resolve_settings
from tests.fake_openai import FakeOpenAI
from tests.test_auth_page import ALICE, AUTH, PASSWORD, enter

OPERATOR_KEY = "sk-operator-secret-0123456789"
VISITOR_URL = "http://visitor.example/v1"


@pytest.mark.parametrize(
    ("secrets", "visitor", "expected"),
    [
        # A server key makes the deployment hosted: visitors keep the operator's server.
        (
            {"OPENAI_API_KEY": OPERATOR_KEY},
            {"base_url": VISITOR_URL},
            ("https://api.openai.com/v1", OPERATOR_KEY, "secrets", True),
        ),
        (
            {"OPENAI_API_KEY": OPERATOR_KEY},
            {"provider": "ollama"},
            ("https://api.openai.com/v1", OPERATOR_KEY, "secrets", True),
        ),
        # Bring-your-own-key for the operator's server stays available by default.
        (
            {"OPENAI_API_KEY": OPERATOR_KEY},
            {"api_key": "sk-mine"},
            ("https://api.openai.com/v1", "sk-mine", "sidebar", True),
        ),
        (
            {"OPENAI_API_KEY": OPERATOR_KEY, "PARLEY_ALLOW_VISITOR_KEY": "false"},
            {"api_key": "sk-mine"},
            ("https://api.openai.com/v1", OPERATOR_KEY, "secrets", True),
        ),
        # Allowed to choose a server: it gets the visitor's key, or none, never the operator's.
        (
            {"OPENAI_API_KEY": OPERATOR_KEY, "PARLEY_ALLOW_CUSTOM_SERVER": "true"},
            {"base_url": VISITOR_URL},
            (VISITOR_URL, None, None, False),
        ),
        (
            {"OPENAI_API_KEY": OPERATOR_KEY, "PARLEY_ALLOW_CUSTOM_SERVER": True},
            {"base_url": VISITOR_URL, "api_key": "sk-mine"},
            (VISITOR_URL, "sk-mine", "sidebar", False),
        ),
        # A gate makes it hosted even without a server key.
        (
            {"APP_PASSWORD": PASSWORD},
            {"base_url": VISITOR_URL},
            ("https://api.openai.com/v1", None, None, True),
        ),
        (
            {"auth": AUTH},
            {"base_url": VISITOR_URL},
            ("https://api.openai.com/v1", None, None, True),
        ),
        # Someone running Parley on their own machine with no server key keeps the freedom.
        (
            {},
            {"base_url": VISITOR_URL, "api_key": "sk-mine"},
            (VISITOR_URL, "sk-mine", "sidebar", True),
        ),
        ({}, {"provider": "ollama"}, ("http://localhost:11434/v1", None, None, True)),
    ],
)
def test_policy_binds_the_key_to_its_server(secrets: dict, visitor: dict, expected: tuple) -> None:
    s = resolve_settings(None, secrets, {}, visitor=visitor)
    assert (s.base_url, s.api_key, s.key_source, s.server_trusted) == expected


def test_a_refused_choice_is_explained() -> None:
    s = resolve_settings(
        None, {"OPENAI_API_KEY": OPERATOR_KEY}, {}, visitor={"base_url": VISITOR_URL}
    )
    assert "does not let visitors choose another server" in s.policy.notice
    assert s.policy.hosted and not s.policy.allow_custom_server


def test_policies_come_from_the_operator_only() -> None:
    # An explicit (command-line) value or a visitor's cannot switch a policy on.
    s = resolve_settings(
        {"allow_custom_server": "true"},
        {"OPENAI_API_KEY": OPERATOR_KEY},
        {},
        visitor={"allow_custom_server": "true", "base_url": VISITOR_URL},
    )
    assert s.base_url == "https://api.openai.com/v1" and not s.policy.allow_custom_server


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PARLEY_TIMEOUT", "soon", "PARLEY_TIMEOUT must be a positive number"),
        ("PARLEY_TIMEOUT", "-3", "PARLEY_TIMEOUT must be a positive number"),
        ("PARLEY_MAX_REPLY_CHARS", "2.5", "PARLEY_MAX_REPLY_CHARS must be a positive number"),
        ("PARLEY_ALLOW_CUSTOM_SERVER", "maybe", "PARLEY_ALLOW_CUSTOM_SERVER must be true or false"),
        ("PARLEY_TRUSTED_PROXIES", "10.0.0.1, proxy", "'proxy', which is not an IP address"),
        ("PARLEY_OUTBOUND_ALLOW", "ok.test, 10.0.0.0/33", "neither a host name nor a network"),
    ],
)
def test_malformed_settings_say_which_and_how(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_settings(None, {}, {name: value})


def test_typed_settings() -> None:
    s = resolve_settings(
        None,
        {"PARLEY_TIMEOUT": "2.5", "PARLEY_MAX_REPLY_CHARS": "5000"},
        {"PARLEY_TRUSTED_PROXIES": "10.0.0.1,192.168.0.0/16", "PARLEY_OUTBOUND_ALLOW": "a.test"},
    )
    assert s.timeout == 2.5 and s.max_reply_chars == 5000
    assert s.trusted_proxies == ("10.0.0.1", "192.168.0.0/16")
    assert s.outbound_allow == ("a.test",)


# The real chat path, in each access mode.


@pytest.fixture
def visitor_server() -> Iterator[FakeOpenAI]:
    """A second loopback server standing for one a visitor controls; it records headers."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


def authorizations(server: FakeOpenAI) -> list[str]:
    return [r.headers.get("authorization", "") for r in server.requests]


def open_chat(app: Callable[..., AppTest], mode: str, **secrets: str) -> AppTest:
    extra: dict = {"APP_PASSWORD": PASSWORD} if mode == "password" else {}
    at = app(key=OPERATOR_KEY, **extra, **secrets)
    if mode == "signin":
        at.secrets["auth"] = AUTH
        at.user = ALICE
    at.run()
    if mode == "password":
        enter(at, PASSWORD)
    assert not at.exception, at.exception
    return at


def chat(at: AppTest, text: str = "hello") -> AppTest:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


MODES = ["local", "password", "signin"]


@pytest.mark.parametrize("mode", MODES)
def test_a_visitor_cannot_send_the_operator_key_elsewhere(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    visitor_server: FakeOpenAI,
    mode: str,
) -> None:
    at = open_chat(app, mode)
    # No Base URL box by default in a hosted deployment...
    assert not [t for t in at.sidebar.text_input if t.label == "Base URL"]
    # ...and a session whose state names another server anyway is not obeyed either.
    at.session_state["parley.base_url"] = visitor_server.base_url
    at.session_state["parley.provider"] = "custom"
    chat(at)
    assert visitor_server.requests == []
    assert f"Bearer {OPERATOR_KEY}" in authorizations(openai_server)
    assert any("does not let visitors choose another server" in w.value for w in at.warning)


@pytest.mark.parametrize("mode", MODES)
def test_a_chosen_server_gets_only_the_visitors_key(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    visitor_server: FakeOpenAI,
    mode: str,
) -> None:
    at = open_chat(app, mode, PARLEY_ALLOW_CUSTOM_SERVER="true", PARLEY_OUTBOUND_ALLOW="127.0.0.1")
    [url_box] = [t for t in at.sidebar.text_input if t.label == "Base URL"]
    url_box.input(visitor_server.base_url).run()
    chat(at)
    sent = authorizations(visitor_server)
    assert sent and all(h == f"Bearer {PLACEHOLDER_KEY}" for h in sent), sent
    assert any("never sent to a server you choose" in c.value for c in at.caption)
    # With a key of their own, that key and only that key goes to their server.
    [key_box] = [t for t in at.sidebar.text_input if t.label == "API key"]
    key_box.input("sk-visitor-own").run()
    chat(at, "again")
    assert all(OPERATOR_KEY not in h for h in authorizations(visitor_server))
    assert "Bearer sk-visitor-own" in authorizations(visitor_server)


def test_a_malformed_setting_is_a_message_not_a_crash(app: Callable[..., AppTest]) -> None:
    at = app(PARLEY_TIMEOUT="soon")
    at.run()
    assert not at.exception
    assert any("PARLEY_TIMEOUT must be a positive number" in e.value for e in at.error)
