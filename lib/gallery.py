"""The image gallery: every generated image as a file, with a SQLite row describing it.

Files live in `<data dir>/<workspace dir>/images/` under generated names (never the
prompt), with a small WebP thumbnail beside any image larger than a gallery tile. The
row (table `images`, migration 0003_images) holds the prompt, the revised prompt, model,
size, time, the conversation it illustrates and the owning workspace. Every call takes
the workspace and every query filters on it, so no one sees or deletes another's images.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image

from lib.diskfull import translate_disk_errors
from lib.errors import NotFoundError, ProviderError
from lib.images import GenerationResult, check_pixels
from lib.store import sqlite_schema as db

log = logging.getLogger(__name__)
THUMB_EDGE = 512  # pixels: sharp in a three-column gallery and in a chat bubble
# Pillow's own bomb limit (89 MP warns, 179 MP raises); the warning is raised only where
# warnings are errors, as under pytest.
_PILLOW_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def workspace_dir_name(workspace: str) -> str:
    """A directory name for `workspace`: readable, filesystem-safe, and unique (hashed),
    since workspace ids may be e-mail addresses or contain anything."""
    _require_workspace(workspace)
    slug = _UNSAFE.sub("_", workspace).strip("_")[:40] or "ws"
    return f"{slug}-{hashlib.sha256(workspace.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class StoredImage:
    id: str
    workspace: str
    batch: str
    position: int
    file: str  # relative to the data directory
    thumb: str | None
    mime: str
    width: int
    height: int
    bytes: int
    prompt: str
    revised_prompt: str | None
    model: str
    size: str  # as requested ("auto", "1024x1024"...)
    quality: str | None
    background: str | None
    conversation_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None  # this image's share of its request's cost
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredImage:
        data = dict(row)
        data["meta"] = json.loads(data["meta"] or "{}")
        return cls(**data)

    @property
    def extension(self) -> str:
        return self.file.rsplit(".", 1)[-1]

    def download_name(self) -> str:
        words = re.sub(r"[^A-Za-z0-9]+", "-", self.prompt).strip("-").lower()[:40].rstrip("-")
        return f"parley-{words or 'image'}-{self.id[:8]}.{self.extension}"


_COLUMNS = [f.name for f in fields(StoredImage)]


class ImageStore:
    """Images in `<data dir>/parley.db` and under `<data dir>/<workspace dir>/images/`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "parley.db"

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        # The thread's reused connection, as ConversationStore does: opening one per call
        # cost more than the gallery's queries.
        with translate_disk_errors(self.data_dir):
            yield db.thread_connection(self.db_path)

    def images_dir(self, workspace: str) -> Path:
        return self.data_dir / workspace_dir_name(workspace) / "images"

    # Writing

    def save(
        self, workspace: str, result: GenerationResult, *, conversation_id: str | None = None
    ) -> list[StoredImage]:
        """Write every image of `result` to disk and record it; returns them in order.

        On a full disk nothing is kept (DiskFull): `result` can be saved again later.
        """
        with translate_disk_errors(self.data_dir):
            return self._save(workspace, result, conversation_id)

    def _save(
        self, workspace: str, result: GenerationResult, conversation_id: str | None
    ) -> list[StoredImage]:
        if conversation_id is not None:
            self._require_conversation(workspace, conversation_id)
        folder = self.images_dir(workspace)
        folder.mkdir(parents=True, exist_ok=True)
        batch, now = uuid.uuid4().hex, time.time()
        saved: list[StoredImage] = []
        written: list[Path] = []
        try:
            for position, image in enumerate(result.images):
                image_id = uuid.uuid4().hex
                path = folder / f"{image_id}.{image.extension}"
                _write_atomically(path, image.data)
                written.append(path)
                thumb = _write_thumbnail(folder / f"{image_id}.thumb.webp", image.data)
                if thumb is not None:
                    written.append(thumb)
                files = (self._relative(path), self._relative(thumb) if thumb else None)
                saved.append(
                    _record(
                        workspace,
                        result,
                        image_id,
                        position,
                        files,
                        batch,
                        now + position * 1e-6,
                        conversation_id,
                    )  # fmt: skip
                )
            self._insert(saved)
        except BaseException:
            # No row without its file, and no file without its row.
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return saved

    def _insert(self, images: list[StoredImage]) -> None:
        marks = ", ".join("?" * len(_COLUMNS))
        rows = [
            [json.dumps(v) if k == "meta" else v for k, v in zip(_COLUMNS, _values(i), strict=True)]
            for i in images
        ]
        with self._conn() as conn:
            conn.execute("BEGIN")
            try:
                conn.executemany(
                    f"INSERT INTO images ({', '.join(_COLUMNS)}) VALUES ({marks})", rows
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def delete(self, workspace: str, image_id: str) -> None:
        """Delete the row, then the files (a missing file is not an error)."""
        image = self.get(workspace, image_id)
        with self._conn() as conn:
            conn.execute("DELETE FROM images WHERE id = ? AND workspace = ?", (image_id, workspace))
        for relative in (image.file, image.thumb):
            if relative:
                try:
                    self._absolute(relative).unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not remove an image file: %s", exc)

    # Reading

    def get(self, workspace: str, image_id: str) -> StoredImage:
        _require_workspace(workspace)
        with self._conn() as conn:
            row = conn.execute(
                "SELECT * FROM images WHERE id = ? AND workspace = ?", (image_id, workspace)
            ).fetchone()
        if row is None:
            raise NotFoundError("Image not found.")
        return StoredImage.from_row(row)

    def get_many(self, workspace: str, image_ids: list[str]) -> list[StoredImage]:
        """The images that still exist, in the order asked for."""
        _require_workspace(workspace)
        if not image_ids:
            return []
        marks = ", ".join("?" * len(image_ids))
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT * FROM images WHERE workspace = ? AND id IN ({marks})",
                [workspace, *image_ids],
            ).fetchall()
        found = {r["id"]: StoredImage.from_row(r) for r in rows}
        return [found[i] for i in image_ids if i in found]

    def list(
        self, workspace: str, *, query: str = "", limit: int = 24, offset: int = 0
    ) -> list[StoredImage]:
        """Newest first; `query` keeps images whose prompt or revised prompt has every word."""
        where, args = _filter(workspace, query)
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT * FROM images WHERE {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [StoredImage.from_row(r) for r in rows]

    def count(self, workspace: str, *, query: str = "") -> int:
        where, args = _filter(workspace, query)
        with self._conn() as conn:
            return conn.execute(f"SELECT count(*) FROM images WHERE {where}", args).fetchone()[0]

    def for_conversation(self, workspace: str, conversation_id: str) -> list[StoredImage]:
        _require_workspace(workspace)
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT * FROM images WHERE workspace = ? AND conversation_id = ? "
                "ORDER BY created_at",
                (workspace, conversation_id),
            ).fetchall()
        return [StoredImage.from_row(r) for r in rows]

    def path(self, image: StoredImage) -> Path:
        return self._absolute(image.file)

    def preview_path(self, image: StoredImage) -> Path:
        """The thumbnail if there is one, else the image itself."""
        return self._absolute(image.thumb or image.file)

    def read(self, workspace: str, image_id: str) -> bytes:
        image = self.get(workspace, image_id)
        try:
            return self.path(image).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError("The image file is missing from the data directory.") from exc

    # Helpers

    def _require_conversation(self, workspace: str, conversation_id: str) -> None:
        _require_workspace(workspace)
        with self._conn() as conn:
            row = conn.execute(
                "SELECT 1 FROM conversations WHERE id = ? AND workspace = ?",
                (conversation_id, workspace),
            ).fetchone()
        if row is None:
            raise NotFoundError("Conversation not found.")

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    def _absolute(self, relative: str) -> Path:
        path = (self.data_dir / relative).resolve()
        # Rows only ever hold names Parley generated; refuse anything that escapes anyway.
        if not path.is_relative_to(self.data_dir.resolve()):
            raise NotFoundError("Image not found.")
        return path


def _record(
    workspace: str,
    result: GenerationResult,
    image_id: str,
    position: int,
    files: tuple[str, str | None],
    batch: str,
    created_at: float,
    conversation_id: str | None,
) -> StoredImage:
    image, request, usage = result.images[position], result.request, result.usage
    return StoredImage(
        id=image_id,
        workspace=workspace,
        batch=batch,
        position=position,
        file=files[0],
        thumb=files[1],
        mime=image.mime,
        width=image.width,
        height=image.height,
        bytes=len(image.data),
        prompt=request.prompt,
        revised_prompt=image.revised_prompt,
        model=request.model,
        size=request.size,
        quality=request.quality,
        background=request.background,
        conversation_id=conversation_id,
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        cost=result.cost / len(result.images) if result.cost is not None else None,
        meta={"n": request.n, "seconds": round(result.seconds, 2)},
        created_at=created_at,  # a batch's images keep their order
    )


def _values(image: StoredImage) -> list[Any]:
    return [getattr(image, name) for name in _COLUMNS]


def _filter(workspace: str, query: str) -> tuple[str, list[Any]]:
    _require_workspace(workspace)
    where, args = "workspace = ?", [workspace]
    for word in query.split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where += (
            " AND (prompt LIKE ? ESCAPE '\\' OR coalesce(revised_prompt, '') LIKE ? ESCAPE '\\')"
        )
        args += [pattern, pattern]
    return where, args


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_thumbnail(path: Path, data: bytes) -> Path | None:
    """A WebP thumbnail (alpha kept) for images larger than a tile; None if not needed.

    A thumbnail is a convenience: if one cannot be made, the gallery shows the original.
    The pixel limit is checked again from the header (whatever reaches here unchecked
    must not be decoded), and `thumbnail` first shrinks by whole factors while decoding
    (JPEG's `draft`) or right after (`reduce`), so it never resamples the full image.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            check_pixels(img.size)
            if max(img.size) <= THUMB_EDGE:
                return None
            img.thumbnail((THUMB_EDGE, THUMB_EDGE), reducing_gap=2.0)
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            small = img.convert("RGBA" if has_alpha else "RGB")
        buffer = io.BytesIO()
        small.save(buffer, format="WEBP", quality=85)
    except (OSError, ValueError, ProviderError, *_PILLOW_BOMBS) as exc:
        log.warning("no thumbnail for %s: %s", path.name, exc)
        return None
    _write_atomically(path, buffer.getvalue())
    return path


def _require_workspace(workspace: str) -> None:
    # A guard, not a formality: no query may run without knowing whose data it touches.
    if not workspace or not isinstance(workspace, str):
        raise ValueError("a workspace is required")
