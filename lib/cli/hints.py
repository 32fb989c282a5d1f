"""Error messages worded for the terminal: the core's hints point at the web app's sidebar."""

from __future__ import annotations

from lib import errors
from lib.errors import ParleyError

RETRY = "/retry"

CLI_HINTS: dict[type[ParleyError], str] = {
    errors.MissingKeyError: (
        "Set OPENAI_API_KEY in the environment (export OPENAI_API_KEY=sk-...) or in "
        ".streamlit/secrets.toml, or point --base-url at a local server such as Ollama "
        "that needs no key."
    ),
    errors.AuthenticationFailed: "Check OPENAI_API_KEY in the environment or secrets.toml.",
    errors.ModelRejected: "Choose another model with --model.",
    errors.StreamInterrupted: f"The partial reply was kept; type {RETRY} to try again.",
    errors.BadReply: f"Your question was kept; type {RETRY} to ask again.",
    errors.ServerUnreachable: "Check --base-url (or OPENAI_BASE_URL) and that the server runs.",
    errors.ContextTooLong: "Lower --max-tokens, or start a new conversation.",
}


def describe(exc: ParleyError) -> str:
    """The error's message with advice that fits a terminal rather than the web app."""
    for kind, hint in CLI_HINTS.items():
        if isinstance(exc, kind):
            return f"{exc.message} {hint}"
    return str(exc)
