"""Signed-in users, for real: Streamlit's st.login against a real OIDC provider on
loopback (tests/oidc), two users in two browser contexts, each in their own workspace.

User B must not be able to see, search, open by URL, retrieve from or export anything of
user A's: conversations, documents, images or totals.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from lib import access
from lib.conversations import ConversationStore
from tests.browser.conftest import StreamlitServer, free_port, wait_for_idle
from tests.browser.oidc import ALICE, BOB, OidcProvider, write_secrets
from tests.browser.session import (
    Sessions,
    bubbles,
    chat,
    conversation_id,
    search_conversations,
    sidebar,
    sign_in,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def sessions(browser: Browser) -> Iterator[Sessions]:
    opened = Sessions(browser)
    yield opened
    opened.close()


@pytest.fixture
def signin_app(
    tmp_path: Path, streamlit_app: Callable[..., StreamlitServer]
) -> Iterator[tuple[StreamlitServer, OidcProvider]]:
    """Parley with [auth] pointing at a real provider that knows Alice and Bob."""
    provider_port = free_port()
    client_secret = uuid.uuid4().hex
    secrets_file = write_secrets(tmp_path / "secrets.toml", provider_port, client_secret)
    app = streamlit_app(STREAMLIT_SECRETS_FILES=str(secrets_file))
    provider = OidcProvider(
        tmp_path, provider_port, f"{app.url}/oauth2callback", client_secret, [ALICE, BOB]
    )
    yield app, provider
    provider.stop()


def body_text(page: Page) -> str:
    return page.locator("body").inner_text()


def test_two_users_sign_in_and_never_see_each_others_work(
    signin_app: tuple[StreamlitServer, OidcProvider], sessions: Sessions
) -> None:
    app, provider = signin_app
    secret = f"zebra{uuid.uuid4().hex[:8]}"

    alice = sessions.open(app.url)
    expect(alice.get_by_role("button", name="Sign in")).to_be_visible()
    expect(alice.get_by_test_id("stChatInput")).to_have_count(0)
    sign_in(alice, app.url, ALICE)
    chat(alice, f"My secret ingredient is {secret}")
    alice_cid = conversation_id(alice)

    bob = sessions.open(app.url)
    sign_in(bob, app.url, BOB)
    assert secret not in body_text(bob)
    search_conversations(bob, secret)
    expect(sidebar(bob)).to_contain_text("No matches.")

    # Alice's conversation id in Bob's URL: "not found", and nothing of it shows.
    bob.goto(f"{app.url}/?c={alice_cid}")
    wait_for_idle(bob)
    expect(bob.get_by_text("That conversation was not found")).to_be_visible()
    assert secret not in body_text(bob)
    expect(bubbles(bob)).to_have_count(0)
    expect(sidebar(bob).get_by_text("This conversation")).to_have_count(0)  # no export
    chat(bob, "Bob's own question")
    bob_cid = conversation_id(bob)
    assert bob_cid != alice_cid

    # Each workspace is keyed by the provider's issuer and the user's subject.
    store = ConversationStore(app.data_dir / "parley.db")
    alice_ws = access.identity_workspace(provider.issuer, ALICE.sub)
    bob_ws = access.identity_workspace(provider.issuer, BOB.sub)
    assert [c.id for c in store.list(alice_ws)] == [alice_cid]
    assert [c.id for c in store.list(bob_ws)] == [bob_cid]

    # Alice, reloading, still sees her own and not Bob's.
    alice.reload()
    wait_for_idle(alice)
    expect(sidebar(alice)).to_contain_text(f"Signed in as {ALICE.name}")
    expect(bubbles(alice).first).to_contain_text(secret)
    assert "Bob's own question" not in body_text(alice)

    # Signing out goes through the provider and leaves only the sign-in button.
    sidebar(alice).get_by_role("button", name="Sign out").click()
    alice.get_by_role("button", name="Yes, sign me out").click()
    alice.wait_for_url(f"{app.url}/**")
    wait_for_idle(alice)
    expect(alice.get_by_role("button", name="Sign in")).to_be_visible()
    alice.goto(f"{app.url}/?c={alice_cid}")
    wait_for_idle(alice)
    expect(alice.get_by_role("button", name="Sign in")).to_be_visible()
    assert secret not in body_text(alice)
    assert "Traceback" not in Path(app.log).read_text()
