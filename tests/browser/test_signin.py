"""Signed-in users, for real: Streamlit's st.login against a real OIDC provider on
loopback (tests/oidc), two users in two browser contexts, each in their own workspace.

User B must not be able to see, search, open by URL, retrieve from or export anything of
user A's: conversations, documents, images or totals.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from lib import access
from lib.conversations import ConversationStore
from lib.documents.library import DocumentLibrary
from lib.gallery import ImageStore
from lib.store.backend import open_backend
from tests.browser.conftest import StreamlitServer, free_port, rerun, wait_for_idle
from tests.browser.oidc import ALICE, BOB, OidcProvider, write_secrets
from tests.browser.session import (
    Sessions,
    bubbles,
    chat,
    conversation_id,
    goto,
    search_conversations,
    sidebar,
    sign_in,
)
from tests.fake_openai import FakeOpenAI

pytestmark = pytest.mark.browser


@dataclass
class AliceWork:
    secret: str
    chat_id: str
    document_chat_id: str


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


def add_document(page: Page, path: Path) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(path))
    with rerun(page):
        page.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(f"{path.name}: 1 page")


def ask_documents(page: Page, question: str, *, passages_only: bool = False) -> None:
    if passages_only:  # retrieve passages from the workspace's index, never whole files
        with rerun(page):
            page.get_by_text("Passages only").click()
    chat(page, question)


def alice_works(page: Page, app_url: str, tmp_path: Path) -> AliceWork:
    """Alice signs in and leaves a trace everywhere: a chat, a document and an image."""
    secret = f"zebra{uuid.uuid4().hex[:8]}"
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_test_id("stChatInput")).to_have_count(0)
    sign_in(page, app_url, ALICE)
    chat(page, f"My secret ingredient is {secret}")
    chat_id = conversation_id(page)
    expect(page.get_by_text("Conversation total")).to_be_visible()

    goto(page, "Documents")
    notes = tmp_path / "alice-notes.md"
    notes.write_text(f"# Launch notes\n\nThe launch code word is {secret}. Keep it safe.\n")
    add_document(page, notes)
    ask_documents(page, f"What is the launch code word? Is it {secret}?")
    document_chat_id = conversation_id(page)

    goto(page, "Images")
    page.get_by_label("Prompt", exact=True).fill(f"a {secret} on a skateboard")
    with rerun(page):
        page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator('[class*="st-key-img-tile-"]').filter(has_text=secret)).to_have_count(1)
    return AliceWork(secret, chat_id, document_chat_id)


def bob_finds_nothing_of_alices(
    page: Page, app_url: str, tmp_path: Path, alice: AliceWork, server: FakeOpenAI
) -> None:
    secret = alice.secret
    sign_in(page, app_url, BOB)
    assert secret not in body_text(page)
    search_conversations(page, secret)
    expect(sidebar(page)).to_contain_text("No matches.")

    # Alice's conversation ids in Bob's URL: "not found", and nothing of them shows.
    for cid in (alice.chat_id, alice.document_chat_id):
        page.goto(f"{app_url}/?c={cid}")
        wait_for_idle(page)
        expect(page.get_by_text("That conversation was not found")).to_be_visible()
        expect(bubbles(page)).to_have_count(0)
        expect(sidebar(page).locator(f".st-key-menu_{cid}")).to_have_count(0)  # no export
        expect(page.get_by_text("Conversation total")).to_have_count(0)
        assert secret not in body_text(page)
    chat(page, "Bob's own question")

    goto(page, "Documents")
    expect(page.get_by_text("Your library is empty")).to_be_visible()
    search_conversations(page, secret)
    expect(sidebar(page)).to_contain_text("No matches.")
    own = tmp_path / "bob-notes.md"
    own.write_text("# Bob's notes\n\nThe launch is on Tuesday; the code word is unknown.\n")
    add_document(page, own)
    asked_before = len(server.requests_to("/chat/completions"))
    ask_documents(page, f"What is the launch code word, {secret}?", passages_only=True)
    sent = [r.json for r in server.requests_to("/chat/completions")[asked_before:]]
    assert sent and all("Bob's notes" in str(r["messages"]) for r in sent[-1:])
    assert not [r for r in sent if "Keep it safe" in str(r["messages"])], "retrieved Alice's"
    assert "alice-notes.md" not in body_text(page)

    goto(page, "Images")
    expect(page.get_by_text("No images yet")).to_be_visible()
    page.get_by_label("Search by prompt").fill(secret)
    with rerun(page):
        page.get_by_label("Search by prompt").press("Enter")
    expect(page.get_by_text("No image matches that search")).to_be_visible()
    assert secret not in body_text(page)


def test_two_users_sign_in_and_never_see_each_others_work(
    signin_app: tuple[StreamlitServer, OidcProvider],
    sessions: Sessions,
    browser_server: FakeOpenAI,
    tmp_path: Path,
) -> None:
    app, provider = signin_app
    alice_page = sessions.open(app.url)
    alice = alice_works(alice_page, app.url, tmp_path)
    bob_page = sessions.open(app.url)
    bob_finds_nothing_of_alices(bob_page, app.url, tmp_path, alice, browser_server)

    # Each workspace is keyed by the provider's issuer and the user's subject.
    alice_ws = access.identity_workspace(provider.issuer, ALICE.sub)
    bob_ws = access.identity_workspace(provider.issuer, BOB.sub)
    backend = open_backend(app.data_dir)
    alices = {c.id for c in ConversationStore(backend, alice_ws).list()}
    assert alices == {alice.chat_id, alice.document_chat_id}
    assert alice.chat_id not in {c.id for c in ConversationStore(backend, bob_ws).list()}
    assert [d.name for d in DocumentLibrary(backend, alice_ws).list()] == ["alice-notes.md"]
    assert [d.name for d in DocumentLibrary(backend, bob_ws).list()] == ["bob-notes.md"]
    assert len(ImageStore(backend, alice_ws).list()) == 1
    assert ImageStore(backend, bob_ws).list() == []

    # Alice, reloading, still sees her own and not Bob's.
    alice_page.goto(f"{app.url}/?c={alice.chat_id}")
    wait_for_idle(alice_page)
    expect(sidebar(alice_page)).to_contain_text(f"Signed in as {ALICE.name}")
    expect(bubbles(alice_page).first).to_contain_text(alice.secret)
    assert "Bob's own question" not in body_text(alice_page)

    # Signing out goes through the provider and leaves only the sign-in button.
    sidebar(alice_page).get_by_role("button", name="Sign out").click()
    alice_page.get_by_role("button", name="Yes, sign me out").click()
    alice_page.wait_for_url(f"{app.url}/**")
    wait_for_idle(alice_page)
    expect(alice_page.get_by_role("button", name="Sign in")).to_be_visible()
    alice_page.goto(f"{app.url}/?c={alice.chat_id}")
    wait_for_idle(alice_page)
    expect(alice_page.get_by_role("button", name="Sign in")).to_be_visible()
    assert alice.secret not in body_text(alice_page)
    assert "Traceback" not in Path(app.log).read_text()
