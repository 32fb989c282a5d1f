"""Whether the model server answers, how many models it lists, and whether it took the key.

One GET of `/v1/models` through `probe` (the chat's own client, `PROBE_TIMEOUT`, no retry,
nothing billed) says all three: no HTTP answer means the server is down or unreachable;
401 or 403 means it refused the key; 200 with a list means it answers, with that many
models, and took the key (or needs none). The same answer gives the model list the pages
offer, so the status and the model picker never disagree.

The UI keeps an answer that listed models for a while and re-asks a failure on the next
script run (`lib/ui/clients.py`): the fallback list shown while a server was down no
longer outlives the server's return by minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import openai

from lib.server.probe import probe

KEY_REFUSED = {401, 403}


@dataclass(frozen=True)
class Status:
    """What one look at the server's model list showed."""

    answered: bool  # an HTTP answer came
    key_accepted: bool | None  # None: no answer, so not known
    models: tuple[str, ...] | None  # the ids listed, sorted; None: it could not say
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        """The server answered, took the key and listed its models."""
        return self.models is not None

    def summary(self) -> str:
        """One line for the Connection panel, e.g. "Answers · 12 models · key accepted"."""
        if not self.answered:
            return "No answer: the server is down or cannot be reached."
        if self.key_accepted is False:
            return f"Answers, but refused the API key ({self.http_status})."
        if self.models is None:
            return f"Answers, but gave no model list ({self.http_status})."
        count = len(self.models)
        return f"Answers · {count} model{'s' * (count != 1)} listed · key accepted"


def check(client: openai.OpenAI) -> Status:
    """Ask the server for its model list once, and say what the answer showed."""
    answer = probe(client, "GET", "models")
    if answer.status is None:
        return Status(answered=False, key_accepted=None, models=None)
    if answer.status in KEY_REFUSED:
        return Status(True, False, None, answer.status)
    data = answer.body.get("data") if isinstance(answer.body, dict) else None
    if not answer.ok or not isinstance(data, list):
        return Status(True, None, None, answer.status)
    names = sorted({str(e["id"]) for e in data if isinstance(e, dict) and "id" in e})
    return Status(True, True, tuple(names), answer.status)
