"""Voice input on the Chat page under AppTest: the chat box records only where the server
transcribes, and a recording's words go into the box, never sent by themselves.

AppTest's chat input types text and attaches files but cannot record, so `record` stages
the audio as an attached file would be and sends it as the browser sends a recording:
in the value's `audio_file_info`, not among its files.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import ChatInput

from lib.conversations import ConversationStore
from tests.fake_openai import FakeOpenAI
from tests.test_voice import wav

CHAT = "app_pages/chat.py"


@pytest.fixture
def recordable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let `record` send a staged file as the chat box's recording."""
    plain = ChatInput._widget_state.fget

    def with_audio(widget: ChatInput):  # noqa: ANN202 - a WidgetState
        state = plain(widget)
        if getattr(widget, "_recording", False) and state.HasField("chat_input_value"):
            uploaded = state.chat_input_value.file_uploader_state.uploaded_file_info
            state.chat_input_value.audio_file_info.CopyFrom(uploaded[0])
            del uploaded[:]
        return state

    monkeypatch.setattr(ChatInput, "_widget_state", property(with_audio))


def record(at: AppTest, audio: bytes, typed: str = "") -> AppTest:
    box = at.chat_input[0]
    assert box.proto.accept_audio, "the chat box does not record"
    box.set_value(typed)
    box._files = [(str(uuid.uuid4()), "recording.wav", audio, "audio/wav")]
    box._recording = True
    at.run()
    assert not at.exception, at.exception
    return at


def recordings(server: FakeOpenAI) -> list:
    """Transcription requests with audio in them (not the capability probe's empty one)."""
    return [r for r in server.requests_to("/audio/transcriptions") if "file" in (r.json or {})]


def asked(server: FakeOpenAI) -> list:
    """Chat requests with a question in them (not the capability probe's empty one)."""
    return [r for r in server.requests_to("/chat/completions") if (r.json or {}).get("messages")]


def opened(app: Callable[..., AppTest]) -> AppTest:
    at = app(CHAT)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("transcribes", [True, False])
def test_the_box_records_only_where_the_server_transcribes(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, transcribes: bool
) -> None:
    openai_server.transcription_enabled = transcribes
    assert opened(app).chat_input[0].proto.accept_audio is transcribes


def test_a_recording_fills_the_box_after_what_was_typed(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, store: ConversationStore, recordable
) -> None:
    openai_server.transcription_enabled = True
    openai_server.models = [*openai_server.models, "gpt-4o-mini-transcribe"]
    at = record(opened(app), wav(0.5, b"SAY: what herons eat"), typed="Tell me")
    box = at.chat_input[0]
    assert box.proto.value == "Tell me what herons eat" and box.proto.set_value
    (sent,) = recordings(openai_server)
    assert sent.json["model"] == "gpt-4o-mini-transcribe"
    # Nothing was sent to the model or saved: the user reads, edits and sends it.
    assert not asked(openai_server)
    assert store.list() == [] and not at.chat_message and not at.error


@pytest.mark.parametrize(
    ("fault", "audio", "words"),
    [
        (500, wav(0.5, b"SAY: hi"), "could not be transcribed"),
        (400, wav(0.5, b"SAY: hi"), "could not be transcribed"),
        (None, wav(0.5, b"SAY:"), "heard no words"),
        (None, wav(601), "the limit is 10 minutes"),
    ],
    ids=["server failed", "refused", "silence", "too long"],
)
def test_a_failed_recording_says_why_and_keeps_what_was_typed(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    recordable,
    fault: int | None,
    audio: bytes,
    words: str,
) -> None:
    openai_server.transcription_enabled = True
    at = opened(app)
    if fault:
        openai_server.fail(fault, route="/audio/transcriptions")
    at = record(at, audio, typed="Tell me")
    assert at.chat_input[0].proto.value == "Tell me"
    (shown,) = at.warning
    assert words in shown.value and "still in the box" in shown.value
    assert not asked(openai_server)
