"""A Parley message's meta as an export gives it, checked before it is stored.

The pages read a message's meta without checking it (Parley wrote it): a citation's `n`
goes into an expander's label as it is, a score through `:.2f`, the gauge divides by
`context["window"]`. An export is a file from anywhere, so its meta is held to the shapes
Parley writes (`lib/chat/reply.py`, `lib/documents/rag.py`, `lib/illustrate.py`): each
key Parley writes keeps only the fields of the type Parley gives them, and is dropped
whole when a field the pages read unconditionally is missing or of another type; any
other key is kept only with a plain value (text, number, true/false, null), which no page
reads. Attachment ids and a streaming reply's process (`LOCAL`) mean nothing elsewhere
and are never taken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LOCAL = ("attachments", "owner")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


# (field checks, the fields that must be there)
CITATION = ({
    "n": _int, "file": _text, "document_id": _text, "chunk_id": _int, "page": _or_none(_int),
    "label": _or_none(_text), "start": _int, "end": _int, "score": _or_none(_number),
    "similarity": _or_none(_number), "keyword_rank": _or_none(_int), "text": _text,
    "cited": lambda v: isinstance(v, bool),
}, ("n",))  # fmt: skip
CONTEXT = ({
    "system": _int, "history": _int, "new": _int, "dropped": _int, "sources": _int,
    "window": lambda v: _int(v) and v > 0, "window_source": _or_none(_text),
    "window_known": lambda v: isinstance(v, bool), "estimate": lambda v: isinstance(v, bool),
}, ("system", "history", "new", "dropped", "window"))  # fmt: skip
RAG = ({
    "mode": _text, "search": _or_none(_text), "question": _or_none(_text), "sources": _int,
    "reason": _or_none(_text), "notes": _texts,
}, ("mode", "sources"))  # fmt: skip
REWRITE = ({"prompt_tokens": _int, "completion_tokens": _int}, ())
SCALARS = {
    "error": _text, "limit": _int, "kind": _text, "prompt": _text, "revised_prompt": _text,
    "usage_source": _text, "first_token_s": _number, "finish_reason": _or_none(_text),
    "choice": _int, "imported_from": _text, "images": _texts, "files": _texts,
}  # fmt: skip
RECORDS = {"context": CONTEXT, "rag": RAG, "rewrite": REWRITE}


def checked_meta(meta: dict) -> dict[str, Any]:
    """`meta` held to the shapes Parley writes (see the module's docstring)."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key in LOCAL:
            continue
        if key == "citations":
            if isinstance(value, list):
                out[key] = [c for c in map(_record(CITATION), value) if c is not None]
        elif key in RECORDS:
            if (record := _record(RECORDS[key])(value)) is not None:
                out[key] = record
        elif key in SCALARS:
            if SCALARS[key](value):
                out[key] = value
        elif _plain(value):
            out[key] = value
    return out


def _record(shape: tuple[dict, tuple]) -> Callable[[Any], dict | None]:
    checks, required = shape

    def checked(value: Any) -> dict | None:
        if not isinstance(value, dict):
            return None
        kept = {k: v for k, v in value.items() if k in checks and checks[k](v)}
        return kept if all(k in kept for k in required) else None

    return checked
