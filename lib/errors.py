"""Parley's domain errors.

The core raises these; only the UI layer (pages, `lib/ui/`, the CLI) turns them into
messages. Every message is written for the person using the app: it says what went
wrong and, where there is one, what to do about it.
"""

from __future__ import annotations


class ParleyError(Exception):
    """Base class for every error Parley reports to a user."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ConfigError(ParleyError):
    """A setting is missing or invalid."""


class MissingKeyError(ConfigError):
    """No API key is configured for a provider that needs one."""

    hint = (
        "Add OPENAI_API_KEY to .streamlit/secrets.toml or the environment, type a key in "
        "the sidebar, or choose a local server such as Ollama that needs no key."
    )


class NotFoundError(ParleyError):
    """A conversation, document or image does not exist in this workspace."""


class InvalidInputError(ParleyError):
    """The user gave input Parley cannot use."""


class DocumentError(InvalidInputError):
    """An uploaded file cannot be indexed; the message names the file and the reason."""


class UnreadableDocument(DocumentError):
    """Corrupt, truncated, empty, mislabelled or of a type Parley does not read."""


class EncryptedDocument(DocumentError):
    hint = "Remove the password (for example, print it to a new PDF) and upload it again."


class NoTextFound(DocumentError):
    hint = "It looks like a scan: run OCR on it (for example with ocrmypdf) and upload the result."


class FileTooLarge(DocumentError):
    """Bigger than the per-file upload limit."""


class UnreadableExport(InvalidInputError):
    """A file given to import is not a conversation export Parley reads (lib/history/)."""


class ImportCancelled(ParleyError):
    """The user cancelled an import; conversations already imported stay, whole."""


class IngestCancelled(ParleyError):
    """The user stopped indexing; nothing from the unfinished file was kept."""


class DatabaseCorrupt(ParleyError):
    """parley.db is not a database, or is damaged; the message names the file."""


class DatabaseUnavailable(ParleyError):
    """The PostgreSQL server does not answer, or has no connection free; nothing was saved."""

    hint = "Check that the database server is running and PARLEY_DATABASE_URL is right."


class BackupError(ParleyError):
    """A backup cannot be made or restored; the message says why and where."""


class DiskFull(ParleyError):
    """The disk holding the data directory is full (or over quota): nothing was saved.

    `unsaved` may carry work already done, and perhaps paid for, that could not be saved
    (a generated image), so the page can offer it another way and save it again later.
    """

    hint = "Free some space on that disk, then try again."

    def __init__(self, data_dir: object, *, unsaved: object = None) -> None:
        super().__init__(
            f"The disk is full: Parley could not save to its data directory, {data_dir}."
        )
        self.data_dir = data_dir
        self.unsaved = unsaved


class ProviderError(ParleyError):
    """The model server failed or refused a request."""


class AuthenticationFailed(ProviderError):
    hint = "Check the API key in the sidebar, secrets or environment."


class RateLimited(ProviderError):
    hint = "The provider is rate-limiting requests; wait a moment and try again."


class ServerFailed(ProviderError):
    hint = "The model server had an internal error; try again shortly."


class RequestTimedOut(ProviderError):
    hint = "The server took too long to answer; try again, or raise the timeout."


class ServerUnreachable(ProviderError):
    hint = "Check the base URL, and that the server is running."


class OutboundRefused(ProviderError):
    """The outbound guard (`lib/outbound.py`) refused a local or private address."""


class ContextTooLong(ProviderError):
    hint = "Lower the memory window or max output tokens, or start a new conversation."


class ModelRejected(ProviderError):
    hint = "Choose another model or setting in the sidebar."


class ContentRefused(ProviderError):
    hint = "The provider's content policy refused this request; rephrase the prompt."


class StreamInterrupted(ProviderError):
    hint = "The partial reply was kept; use Retry to ask again."


class BadReply(ProviderError):
    """The server answered 200 but sent no usable reply: a web page, a malformed event, an
    error in the middle of the stream, or nothing at all."""

    hint = "Your question was kept; use Retry to ask again."


class AccessDenied(ParleyError):
    """This session has not passed the password gate or signed in."""


class WrongPassword(AccessDenied):
    """A wrong password, or a try made before the delay after the last one ran out."""

    def __init__(self, message: str, *, retry_after: float, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class AudioTooLong(InvalidInputError):
    """A recording for voice input is empty, or over the size or length limit (lib/voice.py)."""

    hint = "Record a shorter message, or type it."


class TranscriptionFailed(ProviderError):
    """The server refused or failed to turn a recording into text; what was typed stays."""

    hint = "Record again, or type your message instead."
