"""The image gallery: every generated image as a blob, with a row describing it.

An image's bytes, and a small WebP thumbnail for any image larger than a gallery tile,
go through the backend's blob store (files in the data directory, or PostgreSQL's
`blobs` table) under generated keys (never the prompt): `<workspace dir>/images/<id>.<ext>`
and `<id>.thumb.webp` beside it. Rows written before the blob store held the same
relative paths, so an existing data directory keeps working. The row (table `images`)
holds the key, the prompt, the revised prompt, model, size, time, the conversation it
illustrates and the owning workspace.

The store is bound to one workspace (`WorkspaceStore`): every query filters on it, and a
blob is read or deleted only under that workspace's own key prefix, so no one sees or
deletes another's images, even through a forged `StoredImage`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image

from lib.errors import NotFoundError, ProviderError
from lib.image_models import ImageRequest
from lib.images import GenerationResult, Usage, check_pixels, checked_image
from lib.store.base import WorkspaceStore, workspace_dir_name

log = logging.getLogger(__name__)
THUMB_EDGE = 512  # pixels: sharp in a three-column gallery and in a chat bubble
# Pillow's own bomb limit (89 MP warns, 179 MP raises); the warning is raised only where
# warnings are errors, as under pytest.
_PILLOW_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
MISSING = "The image file is missing from storage."


@dataclass(frozen=True)
class StoredImage:
    id: str
    workspace: str
    batch: str
    position: int
    file: str  # the blob key (for old rows, the same path relative to the data directory)
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
    def from_row(cls, row: Any) -> StoredImage:
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
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM images"


class ImageStore(WorkspaceStore):
    """One workspace's images: rows in the backend's `images` table, bytes in its blobs."""

    # Writing

    def save(
        self,
        result: GenerationResult,
        *,
        conversation_id: str | None = None,
        created_at: float | None = None,
    ) -> list[StoredImage]:
        """Store every image of `result` and record it; returns them in order.

        The blobs are written first and the rows in one transaction after them; if either
        fails (DiskFull on a full disk) the blobs written so far are removed, so there is
        never a row without its file nor a file without its row, and `result` can be
        saved again later.
        """
        batch, now = uuid.uuid4().hex, created_at or time.time()
        saved: list[StoredImage] = []
        written: list[str] = []
        try:
            for position, image in enumerate(result.images):
                image_id = uuid.uuid4().hex
                key = self.blob_key("images", f"{image_id}.{image.extension}")
                self.blobs.put(key, image.data)
                written.append(key)
                thumb = None
                if (small := _thumbnail(image.data, key)) is not None:
                    thumb = self.blob_key("images", f"{image_id}.thumb.webp")
                    self.blobs.put(thumb, small)
                    written.append(thumb)
                saved.append(
                    self._record(
                        result,
                        image_id,
                        position,
                        (key, thumb),
                        batch,
                        now + position * 1e-6,
                        conversation_id,
                    )  # fmt: skip
                )
            self._insert(saved, conversation_id)
        except BaseException:
            for key in written:
                self._forget_blob(key)
            raise
        return saved

    def _insert(self, images: list[StoredImage], conversation_id: str | None) -> None:
        marks = ", ".join("?" * len(_COLUMNS))
        rows = [
            [json.dumps(v) if k == "meta" else v for k, v in zip(_COLUMNS, _values(i), strict=True)]
            for i in images
        ]
        with self._transaction() as conn:
            if conversation_id is not None:  # checked in the transaction that links it
                found = conn.execute(
                    "SELECT 1 FROM conversations WHERE id = ? AND workspace = ?",
                    (conversation_id, self.workspace),
                ).fetchone()
                if found is None:
                    raise NotFoundError("Conversation not found.")
            conn.executemany(f"INSERT INTO images ({', '.join(_COLUMNS)}) VALUES ({marks})", rows)

    def restore(
        self,
        data: bytes,
        *,
        prompt: str,
        model: str,
        created_at: float | None = None,
        revised_prompt: str | None = None,
        size: str = "auto",
        quality: str | None = "auto",
        background: str | None = "auto",
        n: int = 1,
        usage: tuple[int, int] | None = None,
        cost: float | None = None,
        seconds: float = 0.0,
        conversation_id: str | None = None,
    ) -> StoredImage:
        """Save an image file made elsewhere (a workspace export's) with the request,
        usage and cost it was made with: checked as a generated image is (ProviderError if
        it is not a usable one), dated by `created_at`, linked to `conversation_id` (this
        workspace's, or NotFoundError)."""
        image = checked_image(data, revised_prompt)
        request = ImageRequest(  # a quality or background of None: as the row had it
            prompt=prompt, model=model, size=size, n=n, quality=quality, background=background
        )
        result = GenerationResult(request, [image], Usage(*usage) if usage else None, cost, seconds)
        (saved,) = self.save(result, conversation_id=conversation_id, created_at=created_at)
        return saved

    def content_hashes(self) -> dict[str, str]:
        """The sha256 of every image's bytes, with the id of an image holding them, to tell
        an image already here (an import run twice). Images saved since 2026-12 carry it in
        `meta`; older ones are read and hashed, once per call."""
        with self._conn() as conn:
            rows = conn.execute(f"{_SELECT} WHERE workspace = ?", (self.workspace,)).fetchall()
        hashes: dict[str, str] = {}
        for row in rows:
            image = StoredImage.from_row(row)
            digest = image.meta.get("sha256")
            if not digest and self.has_file(image):
                digest = hashlib.sha256(self.read(image)).hexdigest()
            if digest:
                hashes.setdefault(digest, image.id)
        return hashes

    def delete(self, image_id: str) -> None:
        """Delete the row, then the blobs (a missing blob is not an error)."""
        image = self.get(image_id)
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM images WHERE id = ? AND workspace = ?", (image_id, self.workspace)
            )
        for key in (image.file, image.thumb):
            if key:
                self._forget_blob(key)

    # Reading

    def get(self, image_id: str) -> StoredImage:
        with self._conn() as conn:
            row = conn.execute(
                f"{_SELECT} WHERE id = ? AND workspace = ?", (image_id, self.workspace)
            ).fetchone()
        if row is None:
            raise NotFoundError("Image not found.")
        return StoredImage.from_row(row)

    def get_many(self, image_ids: list[str]) -> list[StoredImage]:
        """The images that still exist, in the order asked for."""
        if not image_ids:
            return []
        marks = ", ".join("?" * len(image_ids))
        with self._conn() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE workspace = ? AND id IN ({marks})",
                [self.workspace, *image_ids],
            ).fetchall()
        found = {r["id"]: StoredImage.from_row(r) for r in rows}
        return [found[i] for i in image_ids if i in found]

    def list(self, *, query: str = "", limit: int = 24, offset: int = 0) -> list[StoredImage]:
        """Newest first; `query` keeps images whose prompt or revised prompt has every word."""
        where, args = self._filter(query)
        with self._conn() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [StoredImage.from_row(r) for r in rows]

    def count(self, *, query: str = "") -> int:
        where, args = self._filter(query)
        with self._conn() as conn:
            return conn.execute(f"SELECT count(*) FROM images WHERE {where}", args).fetchone()[0]

    def for_conversation(self, conversation_id: str) -> list[StoredImage]:
        with self._conn() as conn:
            rows = conn.execute(
                f"{_SELECT} WHERE workspace = ? AND conversation_id = ? ORDER BY created_at",
                (self.workspace, conversation_id),
            ).fetchall()
        return [StoredImage.from_row(r) for r in rows]

    def read(self, image: StoredImage) -> bytes:
        """The full-size image's bytes (NotFoundError if its blob is gone)."""
        return self._blob(image, image.file)

    def preview(self, image: StoredImage) -> bytes:
        """The thumbnail's bytes if there is one, else the image's own."""
        return self._blob(image, image.thumb or image.file)

    def has_file(self, image: StoredImage) -> bool:
        return self._owns(image, image.file) and self.blobs.exists(image.file)

    # Helpers

    def _record(
        self,
        result: GenerationResult,
        image_id: str,
        position: int,
        keys: tuple[str, str | None],
        batch: str,
        created_at: float,
        conversation_id: str | None,
    ) -> StoredImage:
        image, request, usage = result.images[position], result.request, result.usage
        return StoredImage(
            id=image_id,
            workspace=self.workspace,
            batch=batch,
            position=position,
            file=keys[0],
            thumb=keys[1],
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
            meta={
                "n": request.n,
                "seconds": round(result.seconds, 2),
                "sha256": hashlib.sha256(image.data).hexdigest(),  # see content_hashes
            },
            created_at=created_at,  # a batch's images keep their order
        )

    def _filter(self, query: str) -> tuple[str, list[Any]]:
        # SQLite's LIKE ignores ASCII case; PostgreSQL's needs ILIKE to do the same.
        like = "ILIKE" if self.dialect == "postgresql" else "LIKE"
        where, args = "workspace = ?", [self.workspace]
        for word in query.split():
            pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where += (
                f" AND (prompt {like} ? ESCAPE '\\' "
                f"OR coalesce(revised_prompt, '') {like} ? ESCAPE '\\')"
            )
            args += [pattern, pattern]
        return where, args

    def _owns(self, image: StoredImage, key: str) -> bool:
        """Whether `key` is this workspace's to touch: rows only ever hold keys Parley
        made under the workspace's own directory; refuse anything else anyway."""
        prefix = workspace_dir_name(self.workspace) + "/"
        return image.workspace == self.workspace and key.startswith(prefix)

    def _blob(self, image: StoredImage, key: str) -> bytes:
        if not self._owns(image, key):
            raise NotFoundError("Image not found.")
        try:
            return self.blobs.get(key)
        except NotFoundError:
            raise NotFoundError(MISSING) from None

    def _forget_blob(self, key: str) -> None:
        # Cleaning up after a failure, or after the row is gone: never the error to report.
        try:
            self.blobs.delete(key)
        except Exception as exc:  # noqa: BLE001 - logged; the caller's outcome stands
            log.warning("could not remove an image blob: %s", exc)


def _values(image: StoredImage) -> list[Any]:
    return [getattr(image, name) for name in _COLUMNS]


def _thumbnail(data: bytes, key: str) -> bytes | None:
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
        log.warning("no thumbnail for %s: %s", key.rsplit("/", 1)[-1], exc)
        return None
    return buffer.getvalue()
