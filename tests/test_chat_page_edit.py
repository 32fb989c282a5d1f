"""Editing a question on the Chat page, under AppTest against the local server: the new
version keeps the original's attachments, in its bubble and in what the model is sent."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

from PIL import Image
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore
from tests.fake_openai import FakeOpenAI


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "purple").save(out, format="PNG")
    return out.getvalue()


def last_sent(server: FakeOpenAI) -> list:
    requests = [r.json for r in server.requests_to("/chat/completions") if "messages" in r.json]
    return requests[-1]["messages"][-1]["content"]


def test_an_edited_question_keeps_its_attachments_on_screen_and_for_the_model(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    at = app()
    at.run()
    image = png()
    at.chat_input[0].set_value("What is this?").upload("plum.png", image, "image/png")
    at.run()
    assert not at.exception, at.exception
    cid = store.list()[0].id
    question = store.path(cid)[0]

    at.button(key=f"parley.w.edit.open.{question.id}").click().run()
    at.text_area(key=f"parley.w.edit.{question.id}").set_value("What colour is this?")
    at.button(key=f"parley.w.edit.send.{question.id}").click().run()
    assert not at.exception, at.exception

    edited = store.path(cid)[0]
    assert edited.id != question.id and edited.content == "What colour is this?"
    bubble = at.chat_message[0]
    assert bubble.markdown[0].value == "What colour is this?"
    assert any("plum.png · 40 × 30" in c.value for c in bubble.caption)
    assert len(bubble.get("image")) == 1  # the thumbnail, with the new version
    text, picture = last_sent(openai_server)
    assert text == {"type": "text", "text": "What colour is this?"}
    assert base64.b64decode(picture["image_url"]["url"].split(",", 1)[1]) == image
    assert at.chat_message[1].markdown[0].value.startswith("Echo: What colour is this?")
