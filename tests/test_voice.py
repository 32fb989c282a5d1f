"""Voice input in the core (`lib/voice.py`): a recording sent through the app's client to
the local server's /v1/audio/transcriptions, its limits, and its failures in Parley's terms."""

from __future__ import annotations

import io
import wave

import openai
import pytest

from lib import voice
from lib.errors import AudioTooLong, TranscriptionFailed
from lib.server import probe
from lib.server.capabilities import capabilities
from tests.fake_openai import FakeOpenAI


def wav(seconds: float, said: bytes = b"") -> bytes:
    """A silent 16 kHz 16-bit mono WAV, as the chat box records, with `said` after it."""
    out = io.BytesIO()
    with wave.open(out, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(16000)
        recording.writeframes(b"\0\0" * int(16000 * seconds))
    return out.getvalue() + said


@pytest.fixture
def api(openai_server: FakeOpenAI) -> openai.OpenAI:
    openai_server.transcription_enabled = True
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=0)


def test_a_recording_comes_back_as_its_words(openai_server: FakeOpenAI, api) -> None:
    audio = wav(0.5, b"SAY: What is the capital of France?")
    assert voice.transcribe(api, audio, "whisper-1") == "What is the capital of France?"
    (sent,) = openai_server.requests_to("/audio/transcriptions")
    assert sent.json["model"] == "whisper-1"
    assert sent.json["file"] == audio  # the bytes recorded, sent whole, as a file part
    assert "sk-test" in sent.headers["authorization"]


@pytest.mark.parametrize(
    ("status", "message", "words"),
    [
        (400, "Invalid file format.", "Invalid file format"),
        (401, None, "rejected the API key"),
        (500, "decoder crashed", "decoder crashed"),
        (404, "The model `whisper-1` does not exist", "does not exist"),
    ],
)
def test_a_refused_or_failed_transcription_says_why(
    openai_server: FakeOpenAI, api, status: int, message: str | None, words: str
) -> None:
    openai_server.fail(status, message=message, route="/audio/transcriptions")
    with pytest.raises(TranscriptionFailed, match="could not be transcribed") as caught:
        voice.transcribe(api, wav(0.5), "whisper-1")
    assert words in str(caught.value)
    assert "type your message" in str(caught.value)


def test_silence_heard_as_nothing_is_a_failure(openai_server: FakeOpenAI, api) -> None:
    with pytest.raises(TranscriptionFailed, match="heard no words"):
        voice.transcribe(api, wav(0.2, b"SAY:   "), "whisper-1")


def test_no_server_at_all_is_a_failure(api) -> None:
    gone = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test", max_retries=0)
    with pytest.raises(TranscriptionFailed, match="Could not connect"):
        voice.transcribe(gone, wav(0.2), "whisper-1")


@pytest.mark.parametrize(
    ("audio", "words"),
    [
        (b"", "empty"),
        (wav(voice.MAX_SECONDS + 1), "the limit is 10 minutes"),
        (b"\0" * (voice.MAX_BYTES + 1), "the limit is 25 MB"),
    ],
    ids=["empty", "too long", "too large"],
)
def test_a_recording_over_the_limits_is_refused_before_sending(
    openai_server: FakeOpenAI, api, audio: bytes, words: str
) -> None:
    with pytest.raises(AudioTooLong, match=words):
        voice.transcribe(api, audio, "whisper-1")
    assert openai_server.requests_to("/audio/transcriptions") == []


@pytest.mark.parametrize(
    ("listed", "chosen"),
    [
        (["gpt-5-mini", "whisper-1"], "whisper-1"),
        (["whisper-large-v3", "gpt-4o-mini-transcribe"], "gpt-4o-mini-transcribe"),
        (
            ["gpt-4o-transcribe-diarize", "Systran/faster-whisper-small"],
            "Systran/faster-whisper-small",
        ),
        (["gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-mini-transcribe"], "gpt-4o-mini-transcribe"),
        (["gpt-5-mini"], voice.DEFAULT_MODEL),
        (None, voice.DEFAULT_MODEL),
    ],
)
def test_the_transcription_model_is_one_the_server_lists(listed, chosen: str) -> None:
    assert voice.transcription_model(listed) == chosen


@pytest.mark.parametrize("enabled", [True, False])
def test_capabilities_say_whether_the_server_transcribes(
    openai_server: FakeOpenAI, api, enabled: bool
) -> None:
    openai_server.transcription_enabled = enabled
    assert capabilities(api, probe.identify(api, "custom"), "gpt-5-mini").transcription is enabled
