"""Voice input in the chat box: the microphone shows only where the server transcribes,
and a recording becomes text in the box for the user to read, edit and send.

A recording is never sent as a message by itself: the transcript goes back into the box
(`chat_view.message_box` puts it there, as it puts back a message that was not saved),
after whatever the user had typed. The audio lives only in this run's memory.
"""

from __future__ import annotations

import logging
import time

import openai
from streamlit.typing import ChatInputValue

from lib import voice
from lib.errors import ParleyError
from lib.server.capabilities import endpoint_exists
from lib.settings import Settings
from lib.ui import clients, state

log = logging.getLogger(__name__)


def offered(current: Settings, api: openai.OpenAI) -> bool:
    """Whether the chat box records: only where the server is known to transcribe (a
    server that did not say would show a microphone that may never work).

    Asks only the transcription endpoint (`capabilities.endpoint_exists`, one POST that
    transcribes nothing), not every capability: the Chat page otherwise probes none, and
    its first run should not cost a chat, an embedding and an image probe too. Kept per
    session and base URL for `clients.MODELS_TTL`, as the other capabilities are.
    """
    key = f"voice.transcribes:{current.base_url}"
    cached = state.get(key)
    if cached and time.monotonic() - cached[0] < clients.MODELS_TTL:
        return cached[1]
    if clients.server(current, api).flavour == "openai":
        found = True  # OpenAI's own API does everything (`capabilities.EVERYTHING`)
    else:
        found = endpoint_exists(api, "transcription") is True
    state.put(key, (time.monotonic(), found))
    return found


def recording(prompt: object) -> bytes | None:
    """The audio the chat box sent with `prompt`, if it sent any."""
    audio = getattr(prompt, "audio", None)
    return audio.getvalue() if audio is not None else None


def into_box(
    current: Settings, api: openai.OpenAI, prompt: ChatInputValue, audio: bytes
) -> tuple[str, str | None]:
    """The text to put back into the chat box, and a message to show, if any: what was
    typed followed by the recording's words, or what was typed alone if it failed. Files
    sent with the recording are not kept (the box cannot be given files back): the
    message says so."""
    typed = prompt.text
    again = " Attach the files again to send them." if prompt.files else ""
    model = voice.transcription_model(clients.server_models(current, api))
    try:
        heard = voice.transcribe(api, audio, model)
    except ParleyError as exc:
        log.info("transcription failed: %s", type(exc).__name__)  # never the audio or text
        kept = " What you had typed is still in the box." if typed.strip() else ""
        return typed, f"{exc}{kept}{again}"
    return f"{typed.rstrip()} {heard}".strip(), again.strip() or None
