"""Driving Parley sessions in browser contexts for the access journeys: opening a session,
chatting, the password gate and signing in at the test identity provider.

Every context records each URL it requested or navigated to, so a test can check that a
secret never reached one.
"""

from __future__ import annotations

import re

from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.browser.conftest import new_context, rerun, wait_for_idle
from tests.browser.oidc import User
from tests.waits import UI_TIMEOUT

VIEWPORT = {"width": 1300, "height": 900}
REPLY_TIMEOUT = UI_TIMEOUT  # the older name, for tests that still import it


class Sessions:
    """Browser contexts (each its own cookies, so its own Streamlit session and identity)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.urls: list[str] = []  # every request and navigation of every context

    def open(self, url: str) -> Page:
        return self.open_many(url, 1)[0]

    def open_many(
        self,
        url: str,
        count: int,
        *,
        timeout: float = UI_TIMEOUT,
        viewport: dict | None = None,
        shared_context: bool = False,
    ) -> list[Page]:
        """`count` sessions, loading side by side rather than one after another.

        Every tab is a Streamlit session of its own (its own websocket). With
        `shared_context` they are tabs of one context, which share the browser's cache and
        so load in about half the CPU time, but also its cookies.
        """
        pages, context = [], None
        for _ in range(count):
            if context is None or not shared_context:
                context = new_context(self.browser, viewport=viewport or VIEWPORT)
                self.contexts.append(context)
                context.on("request", lambda request: self.urls.append(request.url))
            page = context.new_page()
            page.on("framenavigated", lambda frame: self.urls.append(frame.url))
            page.goto(url, wait_until="commit", timeout=timeout)
            pages.append(page)
        for page in pages:
            wait_for_idle(page, timeout=timeout)
        return pages

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def sidebar(page: Page) -> Locator:
    return page.get_by_test_id("stSidebar")


def bubbles(page: Page) -> Locator:
    return page.get_by_test_id("stChatMessage")


def send(page: Page, text: str) -> None:
    """Type `text` into the chat input and send it, without waiting for the reply."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def chat(page: Page, text: str, reply: str | None = None) -> None:
    """Send `text` and wait until the reply (by default the fake's echo) is saved and drawn."""
    count = bubbles(page).count()
    with rerun(page):
        send(page, text)
    last = bubbles(page).nth(count + 1)
    expect(last).to_contain_text(reply or f"Echo: {text}")
    expect(last).to_contain_text("out tokens")
    wait_for_idle(page)


def goto(page: Page, name: str) -> None:
    """Open a page through the sidebar's navigation, as a user would."""
    with rerun(page):
        sidebar(page).get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def conversation_id(page: Page) -> str:
    match = re.search(r"[?&]c=([0-9a-f]+)", page.url)
    assert match, f"no conversation id in {page.url}"
    return match.group(1)


def submit_password(page: Page, password: str) -> str:
    """Submit the gate's form; return the error it shows ("" when admitted)."""
    errors = page.get_by_test_id("stAlertContentError")
    page.get_by_label("Password", exact=True).fill(password)
    with rerun(page):
        page.get_by_role("button", name="Enter").click()
    return errors.first.inner_text() if errors.count() else ""


def sign_in(page: Page, app_url: str, user: User) -> None:
    """Parley's Sign in button, the provider's own form, and back to Parley signed in."""
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/interaction/.*"))
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password", exact=True).fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{app_url}/**")
    wait_for_idle(page)
    expect(sidebar(page)).to_contain_text(f"Signed in as {user.name}")


def search_conversations(page: Page, text: str) -> None:
    box = sidebar(page).get_by_placeholder("Search messages…")
    if box.input_value() == text:  # Enter on an unchanged input does not rerun
        wait_for_idle(page)
        return
    box.fill(text)
    with rerun(page):
        box.press("Enter")
