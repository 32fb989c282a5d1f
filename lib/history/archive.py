"""Opening an export file: a zip (ChatGPT's data export, Parley's workspace export) or a
single JSON file (Open WebUI, LibreChat, Parley), read a conversation at a time.

Big exports stream: a JSON array is parsed item by item with ijson (its C backend, yajl2),
so memory holds one conversation, not the file. ChatGPT's `conversations.json` of 10,000
conversations is hundreds of megabytes; `json.load` would hold it all, several times over
as Python objects. A top-level object (one LibreChat or Parley conversation) is read whole,
up to MAX_OBJECT_BYTES.

Guards, all before anything is inflated or parsed: the file at most MAX_EXPORT_BYTES; a
zip's directory read first, with at most MAX_MEMBERS entries, no encrypted ones, and no
entry above MAX_INFLATED or (past 64 MB) inflating more than BOMB_RATIO times; `zipfile`
stops an entry at its declared size and fails its CRC, so a lying entry is an error, not
gigabytes. A truncated file is said to be truncated, and what was read before the cut
stays imported, each conversation whole.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import ijson

from lib.documents.formats.archive import size_text
from lib.errors import InvalidInputError, UnreadableExport
from lib.history.apps import parse
from lib.history.model import ImportedConversation

MAX_EXPORT_BYTES = 1536 * 1024 * 1024
MAX_OBJECT_BYTES = 256 * 1024 * 1024
MAX_INFLATED = 8 * 1024 * 1024 * 1024
MAX_MEMBERS = 200_000
BOMB_RATIO = 200
MAX_FILE_BYTES = 50 * 1024 * 1024  # an image or file a conversation refers to


class FileTooLarge(InvalidInputError):
    """A file the export holds, but above the limit for its kind: named with its size and
    the limit, so a report does not call it missing."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        shown, most = size_text(size), size_text(limit)
        if shown == most:  # 50.0 MB and a byte over it
            shown, most = f"{size:,} bytes", f"{limit:,} bytes"
        super().__init__(f"too large to import: {shown}, over the limit of {most}")
        self.name, self.size, self.limit = name, size, limit


@dataclass
class Failure:
    where: str
    reason: str


Item = ImportedConversation | Failure


class Export:
    """One export file, opened and checked; `items()` yields its conversations."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path, self.name = path, name or path.name
        size = path.stat().st_size
        if size > MAX_EXPORT_BYTES:
            raise UnreadableExport(
                f"{self.name} is {size_text(size)}; Parley imports exports of at most "
                f"{size_text(MAX_EXPORT_BYTES)}.",
                hint="Split the export, or import its conversations.json on its own.",
            )
        if size == 0:
            raise UnreadableExport(f"{self.name} is empty.")
        self.total = 0  # bytes of JSON to read, for progress
        self.done = 0
        self._zip: zipfile.ZipFile | None = None
        self._files: dict[str, zipfile.ZipInfo] = {}
        self._references: dict[str, zipfile.ZipInfo] | None = None
        self._manifest: dict | None = None
        self._manifest_read = False
        with path.open("rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            self._open_zip()
        else:
            self.total = size

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Reading

    def items(self) -> Iterator[Item]:
        """Each conversation in the export, or why one could not be read."""
        if self._zip is None:
            with self.path.open("rb") as f:
                yield from self._json(self.name, f)
            return
        members = self._json_members()
        if not members and self.workspace_manifest() is not None:
            return  # a Parley workspace with documents or images only
        if not members:
            raise UnreadableExport(
                f"{self.name} is a zip, but holds no conversations: no conversations.json "
                "(ChatGPT) and no chat JSON files (Open WebUI, LibreChat, Parley).",
                hint="Choose the export file itself: ChatGPT's data export zip, or the JSON "
                "file another app saved.",
            )
        for member in members:
            with self._zip.open(member) as f:
                yield from self._json(member.filename, f)

    def file(self, reference: str) -> tuple[str, bytes] | None:
        """(name, bytes) of a file a conversation refers to, if the zip holds it: ChatGPT
        names them by their asset id followed by the original name. One held but above
        MAX_FILE_BYTES raises FileTooLarge (it is there: not missing)."""
        if self._zip is None or not reference:
            return None
        info = self._by_reference().get(PurePosixPath(reference).name)
        if info is None:
            return None
        name = PurePosixPath(info.filename).name
        if info.file_size > MAX_FILE_BYTES:
            raise FileTooLarge(name, info.file_size, MAX_FILE_BYTES)
        with self._zip.open(info) as f:
            return name, f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]

    def _by_reference(self) -> dict[str, zipfile.ZipInfo]:
        """Each member under every name a reference may give it: its file name, and each
        part of it before a "-" or "." ("file-Ab1-heron.png" under "file", "file-Ab1",
        "file-Ab1-heron" and itself); the first member in the zip wins. Made once: looking
        through the members for each reference took up to 27 ms in a zip of 20,000 files,
        about four and a half minutes for all of their references."""
        if self._references is None:
            self._references = {}
            for name, info in self._files.items():
                base = PurePosixPath(name).name
                for cut, char in enumerate(base):
                    if char in "-." and cut:
                        self._references.setdefault(base[:cut], info)
                self._references.setdefault(base, info)
        return self._references

    def workspace_manifest(self) -> dict | None:
        """manifest.json of a Parley workspace export (lib/history/workspace_export.py), or
        None for any other file. Read once: its links are asked for per conversation."""
        if self._manifest_read:
            return self._manifest
        self._manifest_read = True
        info = self._files.get("manifest.json")
        if self._zip is None or info is None or info.file_size > MAX_OBJECT_BYTES:
            return None
        try:
            data = json.loads(self._zip.read(info))
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError):
            return None
        if isinstance(data, dict) and "parley_workspace" in data:
            self._manifest = data
        return self._manifest

    def member_names(self, prefix: str) -> list[str]:
        return sorted(n for n in self._files if n.startswith(prefix))

    def member(self, name: str, limit: int) -> bytes | None:
        """The bytes of the zip's member called exactly `name`, if it holds one; one of more
        than `limit` bytes raises FileTooLarge (a lying size fails its CRC:
        UnreadableExport)."""
        info = self._files.get(name)
        if self._zip is None or info is None:
            return None
        if info.file_size > limit:
            raise FileTooLarge(PurePosixPath(name).name, info.file_size, limit)
        try:
            with self._zip.open(info) as f:
                return f.read(limit + 1)[:limit]
        except (zipfile.BadZipFile, OSError) as exc:
            raise UnreadableExport(f"{name} in {self.name} is damaged ({exc}).") from exc

    # Inside

    def _open_zip(self) -> None:
        try:
            archive = zipfile.ZipFile(self.path)
            members = archive.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
            raise UnreadableExport(
                f"{self.name} is damaged or truncated: it is not a complete zip archive.",
                hint="Download the export again.",
            ) from exc
        if len(members) > MAX_MEMBERS:
            raise UnreadableExport(
                f"{self.name} holds {len(members):,} files; Parley opens exports of at most "
                f"{MAX_MEMBERS:,}."
            )
        if any(m.flag_bits & 0x1 for m in members):
            raise UnreadableExport(f"{self.name} is protected by a password.")
        for m in members:
            big = m.file_size > 64 * 1024 * 1024
            if m.file_size > MAX_INFLATED or (
                big and m.file_size > BOMB_RATIO * max(1, m.compress_size)
            ):
                raise UnreadableExport(
                    f"{self.name} looks like a zip bomb: {m.filename} would unpack from "
                    f"{size_text(m.compress_size)} to {size_text(m.file_size)}, so nothing "
                    "was imported.",
                )
        self._zip = archive
        self._files = {m.filename: m for m in members if not m.is_dir()}

    def _json_members(self) -> list[zipfile.ZipInfo]:
        names = [i for n, i in self._files.items() if n.lower().endswith(".json")]
        chatgpt = [i for i in names if PurePosixPath(i.filename).name.startswith("conversations")]
        # ChatGPT's zip also holds user.json, message_feedback.json...: only conversations.
        chosen = chatgpt or [
            i for i in names if PurePosixPath(i.filename).parts[0] in ("conversations", "chats")
        ] or names  # fmt: skip
        chosen.sort(key=lambda i: i.filename)
        self.total = sum(i.file_size for i in chosen)
        return chosen

    def _json(self, where: str, raw: IO[bytes]) -> Iterator[Item]:
        f = _Counting(raw, self)
        first = _first_byte(f)
        if first == b"[":
            index = 0
            try:
                for item in ijson.items(_Prefixed(first, f), "item", use_float=True):
                    index += 1
                    yield _parsed(item, f"{where} #{index}")
            except ijson.IncompleteJSONError as exc:
                raise UnreadableExport(
                    f"{self.name} ends in the middle of conversation {index + 1} of {where}: "
                    f"the file is truncated or damaged ({exc}). The {index} before it were "
                    "read.",
                    hint="Download the export again.",
                ) from exc
            except ijson.JSONError as exc:
                raise UnreadableExport(
                    f"{where} in {self.name} is not valid JSON after conversation {index} ({exc})."
                ) from exc
        elif first == b"{":
            data = _Prefixed(first, f).read(MAX_OBJECT_BYTES + 1)
            if len(data) > MAX_OBJECT_BYTES:
                raise UnreadableExport(
                    f"{where} holds one JSON object over {size_text(MAX_OBJECT_BYTES)}; "
                    "Parley reads conversations as a JSON list when they are this large."
                )
            try:
                item = json.loads(data)
            except (ValueError, UnicodeDecodeError) as exc:
                raise UnreadableExport(
                    f"{where} is not valid JSON (it may be truncated): {exc}."
                ) from exc
            if isinstance(item, dict) and isinstance(item.get("conversations"), list):
                for index, each in enumerate(item["conversations"], start=1):
                    yield _parsed(each, f"{where} #{index}")
            else:
                yield _parsed(item, where)
        elif first == b"":
            raise UnreadableExport(f"{where} in {self.name} is empty.")
        else:
            raise UnreadableExport(
                f"{where} is not an export: it is not JSON (it begins with {first!r})."
            )


def _parsed(item: Any, where: str) -> Item:
    try:
        return parse(item)
    except UnreadableExport as exc:
        return Failure(where, str(exc))


def _first_byte(f: IO[bytes]) -> bytes:
    while True:
        b = f.read(1)
        if b == b"\xef":  # a UTF-8 byte order mark
            f.read(2)
            continue
        if not b or not b.isspace():
            return b


class _Counting(io.RawIOBase):
    """Reads through, adding what was read to the export's progress."""

    def __init__(self, raw: IO[bytes], export: Export) -> None:
        self.raw, self.export = raw, export

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.export.done += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Prefixed(io.RawIOBase):
    """A stream with its first byte, already read, put back in front."""

    def __init__(self, first: bytes, rest: IO[bytes]) -> None:
        self.first, self.rest = first, rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson's probe for bytes or text: it must not take the first byte
            return b""
        head, self.first = self.first, b""
        if n is None or n < 0:
            return head + self.rest.read()
        return head + self.rest.read(max(0, n - len(head)))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
