"""The Chat page on servers other than OpenAI's, under AppTest against the fake server's
flavours: the model a new chat starts with, the context gauge (the server's window and
where it came from, "≈" for estimates, "unknown" when nothing says), and overflow."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from lib.conversations import ChatParams, ConversationStore, Message
from tests.fake_openai import FakeOpenAI

CHAT = "app_pages/chat.py"
MODEL = "tiny-llama"
PROSE = (
    "Herons wade through the shallow reeds at dawn, patient and grey, watching the water "
    "for the flicker of a fish while the mist lifts slowly off the lake. "
) * 3


def opened(app: Callable[..., AppTest], cid: str | None = None) -> AppTest:
    at = app(CHAT, key=None)  # a local server needs no key, as the README sets it up
    if cid:
        at.query_params["c"] = cid
    at.run()
    assert not at.exception, at.exception
    return at


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


def gauge(at: AppTest) -> str:
    return at.progress[0].text


def sidebar_captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.sidebar.caption)


def test_a_new_chat_uses_a_model_the_server_has_and_the_gauge_its_window(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    openai_server.flavour("llama-server", n_ctx=2048)
    openai_server.models = [MODEL]
    at = opened(app)
    assert at.selectbox(key="parley.w.draft.model").value == MODEL
    assert f"gpt-5.4-mini is not on this server; using {MODEL}" in sidebar_captions(at)
    send(at, "Hello there")
    assert openai_server.requests_to("/chat/completions")[-1].json["model"] == MODEL
    # The server's tokenizer counted (exact: no "≈"), and its /props gave the window.
    assert gauge(at).startswith("Context: ") and "≈" not in gauge(at)
    assert gauge(at).endswith("of 2,048 tokens (llama-server /props)")
    assert "llama-server" in sidebar_captions(at)  # the Connection panel names the server


def test_an_unknown_window_is_said_and_estimates_are_marked(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    # The plain fake: an OpenAI-compatible server with no tokenizer and no stated window.
    at = send(opened(app), "Hello there")
    assert gauge(at).startswith("Context: ≈")
    assert gauge(at).endswith("tokens · window unknown (assuming 8k)")


def test_a_new_chat_starts_with_the_model_and_system_prompt_last_chosen_here(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    at = opened(app)
    at.selectbox(key="parley.w.draft.model").set_value("gpt-5").run()
    at.text_area(key="parley.w.draft.system").input("Answer in French.").run()
    fresh = opened(app)  # a new session: a new browser, or the next day
    assert fresh.selectbox(key="parley.w.draft.model").value == "gpt-5"
    assert fresh.text_area(key="parley.w.draft.system").value == "Answer in French."
    assert "is not on this server" not in sidebar_captions(fresh)
    send(fresh, "Bonjour")
    sent = openai_server.requests_to("/chat/completions")[-1].json
    assert sent["model"] == "gpt-5"
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}


def test_an_overflowing_history_is_trimmed_to_the_window_the_server_states(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    openai_server.flavour("llama-cpp-python", n_ctx=2048, word_tokens=3)
    openai_server.models = [MODEL]
    conv = store.create(model=MODEL, params=ChatParams(memory_rounds=100))
    for i in range(25):  # about 7,000 of the server's tokens
        for role in ("user", "assistant"):
            store.add_message(conv.id, Message(role, f"{role} {i}: {PROSE}"))
    at = send(opened(app, conv.id), "Sum it up.")
    assert not at.error
    reply = store.all_messages(conv.id)[-1]
    assert reply.status == "ok" and reply.content.strip()
    assert gauge(at).endswith("of 2,048 tokens (overflow error)")
    again = send(at, "Once more.")  # the session remembers: trimmed at once, no overflow
    assert gauge(again).endswith("of 2,048 tokens (overflow error)")
    streamed = [r for r in openai_server.requests_to("/chat/completions") if r.json.get("stream")]
    assert len(streamed) == 3  # the overflow, its retry, and the next message


def test_an_unpriced_model_gets_the_exact_section_to_add(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    openai_server.models.append("gpt-mystery")  # a model the price table does not know
    at = app(CHAT, PARLEY_PROVIDER="openai")  # the fake as OpenAI: unpriced means unknown
    at.run()
    at.selectbox(key="parley.w.draft.model").set_value("gpt-mystery").run()
    send(at, "Hello")
    hint = next(c.value for c in at.caption if c.value.startswith("To see costs"))
    assert '`[openai.chat."gpt-mystery"]`' in hint and "prices.toml" in hint
