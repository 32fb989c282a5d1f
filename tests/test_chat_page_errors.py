"""Errors in the reply's place, and the Connection panel's status, under AppTest.

With the model server down, the turn ends as a failed reply saved in the conversation: the
error is drawn in the assistant's bubble with Retry (on the Chat and Documents pages), a
reload still shows it, and Retry answers once the server is back. On the Images page a
failed generation's error stays where its pictures would be, with Retry, for the session.
The Connection panel says whether the server answers, how many models it lists and
whether it took the key, and a failed look is not kept: the run after the server comes
back knows it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore
from lib.gallery import ImageStore
from lib.store.backend import Backend
from tests.fake_openai import FakeOpenAI
from tests.test_chat_page import bubbles, retry_button, send
from tests.test_documents_page import INTRO, PAGE, ask, upload
from tests.test_images_page import PROMPT, generate, generations, images_page

UNREACHABLE = "Could not connect to the model server"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A server of this test's own on a fixed port, so it can be stopped and come back."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeOpenAI(port=port).start()
    yield fake
    fake.stop()


@pytest.fixture
def chat(app: Callable[..., AppTest], server: FakeOpenAI) -> Callable[[], AppTest]:
    url = server.base_url  # the same while it is stopped
    return lambda: app(OPENAI_BASE_URL=url)


def panel(at: AppTest) -> str:
    """The Connection panel's status line."""
    lines = [c.value for c in at.sidebar.caption if "Answers" in c.value or "answer" in c.value]
    assert len(lines) == 1, [c.value for c in at.sidebar.caption]
    return lines[0]


def test_the_server_down_leaves_a_failed_turn_in_place_that_survives_a_reload_and_retries(
    chat: Callable[[], AppTest], server: FakeOpenAI, store: ConversationStore
) -> None:
    at = chat()
    at.run()
    send(at, "First question")
    server.stop()
    send(at, "Are you there?")

    assert [name for name, _ in bubbles(at)] == ["user", "assistant", "user", "assistant"]
    failed = at.chat_message[3]
    assert UNREACHABLE in failed.error[0].value and "Retry" in failed.error[0].value
    retry_button(at)
    assert [e.value for e in at.error].count(failed.error[0].value) == 1  # not again on top
    assert "No answer" in panel(at)  # the failed request had the panel look again
    cid = store.list()[0].id
    saved = store.all_messages(cid)
    assert [(m.role, m.status) for m in saved] == [
        ("user", "ok"),
        ("assistant", "ok"),
        ("user", "ok"),
        ("assistant", "failed"),
    ]
    assert UNREACHABLE in saved[3].meta["error"]
    # Nothing reached the server: the failed turn costs nothing and is counted as priced.
    assert (saved[3].prompt_tokens, saved[3].completion_tokens, saved[3].cost) == (0, 0, 0.0)
    assert store.totals(cid).unpriced == 0

    fresh = chat()  # a reload: a new session on the same URL
    fresh.query_params["c"] = cid
    fresh.run()
    assert UNREACHABLE in fresh.chat_message[3].error[0].value
    button = retry_button(fresh)

    server.start()
    button.click().run()
    assert not fresh.exception
    assert bubbles(fresh)[2:] == [
        ("user", "Are you there?"),
        ("assistant", "Echo: Are you there?"),
    ]
    assert [m.status for m in store.all_messages(cid)] == ["ok"] * 4  # the failed one dropped


def test_the_retry_of_a_failed_turn_is_not_drawn_above_the_new_reply(
    chat: Callable[[], AppTest], server: FakeOpenAI, store: ConversationStore
) -> None:
    """Retry rewinds in its click's callback: the run that answers draws one reply."""
    at = chat()
    at.run()
    server.fail(503, times=1, route="chat/completions")
    send(at, "Once more")
    assert "server failed" in at.chat_message[1].error[0].value
    retry_button(at).click().run()
    assert bubbles(at) == [("user", "Once more"), ("assistant", "Echo: Once more")]
    assert not [b for b in at.button if b.key and b.key.startswith("parley.w.retry.")]


def test_the_connection_panel_says_whether_the_server_answers_and_sees_it_come_back(
    chat: Callable[[], AppTest], server: FakeOpenAI
) -> None:
    server.models = ["gpt-5.4-mini", "gpt-5-mini", "text-embedding-3-small"]
    at = chat()
    at.run()
    assert panel(at) == ":material/check_circle: Answers · 3 models listed · key accepted"
    assert not [c for c in at.sidebar.caption if "Could not read" in c.value]

    server.stop()
    at.sidebar.button(key="parley.w.test_connection").click().run()
    assert "No answer: the server is down" in panel(at)
    assert [c for c in at.sidebar.caption if "Could not read the server's model list" in c.value]
    at.run()  # a failed look is asked again on every run, not kept
    assert "No answer" in panel(at)

    server.start()
    at.run()  # no Test needed: the next run sees it
    assert panel(at).endswith("Answers · 3 models listed · key accepted")
    assert not [c for c in at.sidebar.caption if "Could not read" in c.value]


def test_the_connection_panel_says_when_the_key_is_refused(
    chat: Callable[[], AppTest], server: FakeOpenAI
) -> None:
    server.api_key = "sk-the-right-one"
    at = chat()
    at.run()
    assert "refused the API key (401)" in panel(at)
    send(at, "Hello?")
    assert "rejected the API key" in at.chat_message[1].error[0].value


def test_a_good_look_is_kept_between_runs(chat: Callable[[], AppTest], server: FakeOpenAI) -> None:
    at = chat()
    at.run()
    looks = len(server.requests_to("/models"))
    at.run()
    at.run()
    assert len(server.requests_to("/models")) == looks


def test_on_the_documents_page_a_failed_answer_is_in_place_with_retry(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app(PAGE, PARLEY_PROVIDER="openai")
    at.run()
    upload(at, INTRO)
    openai_server.fail(401, route="chat/completions")
    ask(at, "What is R?")
    answer = at.chat_message[1]
    assert answer.name == "assistant"
    assert "rejected the API key" in answer.error[0].value
    cid = store.list(kind="documents")[0].id
    assert [m.status for m in store.all_messages(cid)] == ["ok", "failed"]

    [b for b in answer.button if b.key.startswith("parley.w.retry.")][0].click().run()
    assert not at.exception
    assert len(at.chat_message) == 2
    assert at.chat_message[1].markdown[0].value.startswith("Echo:")
    assert [m.status for m in store.all_messages(cid)] == ["ok", "ok"]


def test_on_the_images_page_a_failed_generation_stays_in_place_with_retry(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, backend: Backend
) -> None:
    at = images_page(app)
    openai_server.fail(503, route="/images")
    generate(at, "a heron at dawn")
    assert "server failed" in at.error[0].value
    at.run()  # any other click: the error stays where the pictures would be
    assert "server failed" in at.error[0].value
    at.text_area(key=PROMPT).input("something else entirely").run()

    at.button(key="parley.w.img.retry").click().run()
    assert not at.exception and not at.error
    (saved,) = ImageStore(backend, "local").list()
    assert saved.prompt == "a heron at dawn"  # the failed request, not the edited form
    assert len(generations(openai_server)) == 2
