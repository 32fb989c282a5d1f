"""The gate under AppTest: local, password and sign-in modes, and per-user workspaces.

AppTest runs one session and cannot follow a real OIDC redirect, so sign-in here seeds
`at.user` with the claims Streamlit would put there; tests/browser/test_access_browser.py
runs the real `st.login` flow against a real identity provider.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from lib import access
from lib.conversations import ConversationStore, Message

PASSWORD = "tr0ub4dor&3"
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "a-cookie-secret-for-tests-only",
    "client_id": "parley",
    "client_secret": "s3cret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
ALICE = {"is_logged_in": True, "iss": "http://idp.test", "sub": "alice-1", "name": "Alice"}
BOB = {"is_logged_in": True, "iss": "http://idp.test", "sub": "bob-2", "name": "Bob"}


def seed(store: ConversationStore, workspace: str, secret: str) -> str:
    store = ConversationStore(store.backend, workspace)
    conv = store.create(model="gpt-5-mini", title=f"Plans for {secret}")
    store.add_message(conv.id, Message("user", f"Tell me about {secret}"))
    return conv.id


def everything_shown(at: AppTest) -> str:
    """All text an AppTest run drew, widgets' labels and values included."""
    return repr(at._tree)


def enter(at: AppTest, password: str) -> AppTest:
    at.text_input[0].input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_local_mode_has_no_gate_and_one_workspace(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    seed(store, "local", "pelicans")
    at = app()
    at.run()
    assert not at.exception
    assert not any(b.label == "Sign out" for b in at.sidebar.button)
    assert any("Plans for pelicans" in b.label for b in at.sidebar.button)


@pytest.mark.parametrize("where", ["secrets", "env"])
def test_password_gate_hides_every_page_and_conversation_url(
    app: Callable[..., AppTest],
    store: ConversationStore,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    cid = seed(store, "shared", "quokkas")
    if where == "env":
        monkeypatch.setenv("APP_PASSWORD", PASSWORD)
        at = app()
    else:
        at = app(APP_PASSWORD=PASSWORD)
    at.query_params["c"] = cid
    at.run()
    assert not at.exception
    shown = everything_shown(at)
    assert "quokkas" not in shown and cid not in shown
    assert not at.chat_input and not at.sidebar.button
    assert at.text_input[0].label == "Password"

    # Before the gate no page script is registered, only the gate at each page's address.
    for page in ("app_pages/chat.py", "app_pages/documents.py", "app_pages/images.py"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)


def test_wrong_password_is_refused_with_a_delay_and_never_echoed(
    app: Callable[..., AppTest],
) -> None:
    at = app(APP_PASSWORD=PASSWORD)
    at.run()
    for _ in range(access.FREE_FAILURES - 1):
        enter(at, "not-it")
        assert at.error[0].value == "Wrong password."
    enter(at, "not-it")
    assert f"Wrong password. Wait {access.FIRST_DELAY:g} s" in at.error[0].value
    # Right, but within the delay: refused without being checked.
    enter(at, PASSWORD)
    assert "Too soon" in at.error[0].value
    shown = everything_shown(at)
    assert PASSWORD not in shown and "not-it" not in shown
    assert all(PASSWORD not in str(v) for v in at.session_state.values())
    # The wait is the server's, not the session's: a fresh session state waits too.
    again = app(APP_PASSWORD=PASSWORD)
    again.run()
    enter(again, PASSWORD)
    assert "Too soon" in again.error[0].value


def test_right_password_opens_the_shared_workspace(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    cid = seed(store, "shared", "quokkas")
    at = app(APP_PASSWORD=PASSWORD)
    at.query_params["c"] = cid
    at.run()
    enter(at, PASSWORD)
    assert not at.error
    assert at.title[0].value == "Plans for quokkas"  # the ?c= link survives the gate
    assert "Shared workspace" in at.sidebar.caption[0].value
    assert PASSWORD not in everything_shown(at)
    assert "Sign out" in [b.label for b in at.sidebar.button]  # used in the browser tests


def test_sign_in_mode_shows_only_a_sign_in_button_before_login(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    cid = seed(store, access.identity_workspace(ALICE["iss"], ALICE["sub"]), "quokkas")
    at = app(auth=AUTH, APP_PASSWORD=PASSWORD)
    at.user = {"is_logged_in": False}
    at.query_params["c"] = cid
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.text_input  # sign-in wins over the password
    assert "quokkas" not in everything_shown(at)


def test_each_signed_in_user_sees_only_their_own_workspace(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    alice_ws = access.identity_workspace(ALICE["iss"], ALICE["sub"])
    cid = seed(store, alice_ws, "quokkas")
    at = app(auth=AUTH)
    at.user = ALICE
    at.query_params["c"] = cid
    at.run()
    assert not at.exception
    assert at.title[0].value == "Plans for quokkas"
    assert "Signed in as Alice" in at.sidebar.caption[0].value

    bob = app(auth=AUTH)
    bob.user = BOB
    bob.query_params["c"] = cid
    bob.run()
    assert not bob.exception
    assert "not found" in bob.warning[0].value
    assert "quokkas" not in everything_shown(bob)
    search = next(t for t in bob.sidebar.text_input if t.label == "Search conversations")
    search.input("quokkas").run()
    assert "No matches." in [c.value for c in bob.sidebar.caption]


def test_an_identity_without_a_subject_gets_no_workspace(app: Callable[..., AppTest]) -> None:
    at = app(auth=AUTH)
    at.user = {"is_logged_in": True, "iss": "http://idp.test", "email": "x@y"}
    at.run()
    assert not at.exception
    assert "did not say who you are" in at.error[0].value
    assert [b.label for b in at.button] == ["Sign out"]
    assert not at.chat_input
