"""Voice input: a recording turned into text for the chat box, through the server's
`/v1/audio/transcriptions` (whether it has one: `lib.server.capabilities`).

The audio goes in memory from the browser to the server through the app's own client and
request path (`lib.client.send_once`); it is never written to disk or logged, and
neither is the transcript. Limits are checked before anything is sent: OpenAI refuses a
file over 25 MB, and `MAX_SECONDS` bounds what a visitor can make the server work on.
The chat box records 16 kHz 16-bit mono WAV (Streamlit's default), 32 KB a second, so
ten minutes is about 19 MB, under the byte limit.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence

import openai

from lib import client as requests
from lib.errors import AudioTooLong, ProviderError, TranscriptionFailed

MAX_BYTES = 25 * 1024 * 1024  # OpenAI's limit for one transcription upload
MAX_SECONDS = 600
DEFAULT_MODEL = "whisper-1"  # what OpenAI and most local servers (whisper.cpp, vLLM) accept


def transcription_model(listed: Sequence[str] | None) -> str:
    """A model the server lists for transcription, else `DEFAULT_MODEL`.

    OpenAI's transcription models are "whisper-1" and "gpt-4o(-mini)-transcribe" (the
    openai package's `AudioModel`); a "transcribe" model is preferred over Whisper, and a
    diarizing one is skipped: it answers speaker segments, not one text.
    """
    names = [n for n in listed or () if "diarize" not in n.lower()]
    for word in ("transcribe", "whisper"):
        found = [n for n in names if word in n.lower()]
        if found:
            return min(found, key=len)  # the plain name before its dated snapshots
    return DEFAULT_MODEL


def seconds(audio: bytes) -> float | None:
    """How long a WAV recording lasts, from its header; None for other formats."""
    try:
        with wave.open(io.BytesIO(audio)) as recording:
            return recording.getnframes() / float(recording.getframerate() or 1)
    except (wave.Error, EOFError):
        return None


def check(audio: bytes) -> None:
    """Refuse an empty recording, or one over `MAX_BYTES` or `MAX_SECONDS`."""
    if not audio:
        raise AudioTooLong("The recording is empty.", hint="Record again, a little longer.")
    if len(audio) > MAX_BYTES:
        size = len(audio) / 1024 / 1024
        raise AudioTooLong(f"The recording is {size:.0f} MB; the limit is 25 MB.")
    length = seconds(audio)
    if length is not None and length > MAX_SECONDS:
        raise AudioTooLong(
            f"The recording lasts {length / 60:.0f} minutes; "
            f"the limit is {MAX_SECONDS // 60} minutes."
        )


def transcribe(
    api: openai.OpenAI, audio: bytes, model: str, *, filename: str = "recording.wav"
) -> str:
    """The words in `audio`, as the server's `model` heard them.

    Raises AudioTooLong before sending anything, and TranscriptionFailed when the server
    refuses or fails, or hears nothing; the cause stays chained for the log.
    """
    check(audio)
    try:
        answer = requests.send_once(
            lambda: api.audio.transcriptions.create(
                model=model, file=(filename, audio, "audio/wav"), response_format="json"
            )
        )
    except ProviderError as exc:
        raise TranscriptionFailed(f"The recording could not be transcribed: {exc.message}") from exc
    text = (getattr(answer, "text", None) or "").strip()
    if not text:
        raise TranscriptionFailed("The server heard no words in the recording.")
    return text
