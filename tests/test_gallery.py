"""lib.gallery on both backends: blobs plus rows, newest first, search, deletion, no row
without its blobs nor blobs without their row, and workspace isolation."""

from __future__ import annotations

import dataclasses
import errno
import io
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from PIL import Image

from lib import atomic_files
from lib.errors import DiskFull, NotFoundError
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GeneratedImage, GenerationResult, Usage, checked_image
from lib.store import sqlite_schema as db
from lib.store.backend import Backend, forget_backends, open_backend
from lib.store.base import workspace_dir_name
from lib.store.blobs import DatabaseBlobs
from tests import postgres as pg
from tests.fake_images import sparse_png


def png(size: int = 64, colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def result(prompt: str, *images: bytes, cost: float | None = 0.02) -> GenerationResult:
    decoded = [checked_image(data) for data in images or (png(),)]
    return GenerationResult(
        default_request(prompt, "gpt-image-2"), decoded, Usage(5, 272), cost, seconds=1.5
    )


@pytest.fixture
def images(backend: Backend) -> ImageStore:
    return ImageStore(backend, "local")


def blob_keys(store: ImageStore, workspace: str | None = None) -> list[str]:
    return list(store.blobs.keys(workspace_dir_name(workspace or store.workspace)))


def add_conversation(backend: Backend, workspace: str, conv_id: str) -> None:
    with backend.connection() as conn:
        conn.execute(
            "INSERT INTO conversations "
            "(id, workspace, kind, title, model, system_prompt, params, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (conv_id, workspace, "chat", "t", "gpt-5-mini", "", "{}", 1.0, 2.0),
        )


def test_save_writes_blobs_and_rows_that_survive_a_new_store(images: ImageStore) -> None:
    saved = images.save(result("a lighthouse", png(colour=(1, 2, 3)), png()))
    assert [s.position for s in saved] == [0, 1] and saved[0].batch == saved[1].batch
    first = saved[0]
    assert first.file == f"{workspace_dir_name('local')}/images/{first.id}.png"
    assert "lighthouse" not in first.file
    assert images.read(first) == png(colour=(1, 2, 3))
    assert first.cost == pytest.approx(0.01)  # each image carries its share of the request
    reopened = ImageStore(images.backend, "local").get(first.id)  # as after a restart
    assert reopened == first
    assert reopened.prompt == "a lighthouse" and reopened.model == "gpt-image-2"
    assert (reopened.width, reopened.height, reopened.size) == (64, 64, "auto")
    assert reopened.created_at == pytest.approx(time.time(), abs=60)


def test_large_images_get_a_thumbnail_and_keep_transparency(images: ImageStore) -> None:
    big = png(1024, (10, 20, 30, 0), mode="RGBA")
    (image,) = images.save(result("glass", big))
    assert image.thumb == f"{workspace_dir_name('local')}/images/{image.id}.thumb.webp"
    with Image.open(io.BytesIO(images.preview(image))) as img:
        assert img.format == "WEBP" and max(img.size) == 512 and img.mode == "RGBA"
    assert images.read(image) == big
    (small,) = images.save(result("tiny"))
    assert small.thumb is None and images.preview(small) == images.read(small)


def test_an_unchecked_bomb_gets_no_thumbnail_and_is_never_decoded(
    images: ImageStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever reaches the gallery without checked_image (a future caller, an import)
    # is still checked from its header before the thumbnail would decode it.
    bomb = GeneratedImage(sparse_png(13000, 13000), "image/png", "png", 13000, 13000)
    request = default_request("bomb", "gpt-image-2")
    (image,) = images.save(GenerationResult(request, [bomb], None, None, 1.0))
    assert image.thumb is None and images.preview(image) == bomb.data
    assert "no thumbnail" in caplog.text


def test_list_is_newest_first_and_search_matches_every_word(images: ImageStore) -> None:
    images.save(result("a red fox in snow"))
    images.save(result("a lighthouse at dusk"))
    images.save(result("a fox and a lighthouse"))
    assert [i.prompt for i in images.list()] == [
        "a fox and a lighthouse",
        "a lighthouse at dusk",
        "a red fox in snow",
    ]
    # Case ignored on both backends (PostgreSQL's LIKE would not).
    assert [i.prompt for i in images.list(query="FOX lighthouse")] == ["a fox and a lighthouse"]
    assert images.count(query="fox") == 2 and images.count() == 3
    assert images.list(query="100%") == [] and images.list(query="a_red") == []  # literal
    assert [i.prompt for i in images.list(limit=1, offset=1)] == ["a lighthouse at dusk"]


def test_search_also_matches_the_revised_prompt(images: ImageStore) -> None:
    revised = GeneratedImage(png(), "image/png", "png", 64, 64, "A watercolour of a heron")
    images.save(GenerationResult(default_request("bird", "dall-e-3"), [revised], None, None, 1.0))
    (hit,) = images.list(query="watercolour")
    assert hit.revised_prompt == "A watercolour of a heron" and hit.cost is None


def test_delete_removes_the_image_the_thumbnail_and_the_row(images: ImageStore) -> None:
    (image,) = images.save(result("to delete", png(1024)))
    assert sorted(blob_keys(images)) == sorted([image.file, image.thumb])
    images.delete(image.id)
    assert blob_keys(images) == []
    with pytest.raises(NotFoundError):
        images.get(image.id)
    with pytest.raises(NotFoundError):
        images.delete(image.id)


def test_workspaces_never_see_read_or_delete_each_others_images(backend: Backend) -> None:
    alice, bob = ImageStore(backend, "alice@example.com"), ImageStore(backend, "bob")
    (mine,) = alice.save(result("alice's cat", png(1024)))
    bob.save(result("bob's dog"))
    assert [i.prompt for i in alice.list()] == ["alice's cat"]
    assert bob.list(query="cat") == [] and bob.count(query="cat") == 0
    for call in (bob.get, bob.delete):
        with pytest.raises(NotFoundError):
            call(mine.id)
    assert bob.get_many([mine.id]) == [] and bob.for_conversation("c") == []
    # Holding alice's StoredImage (or one forged to name bob) reads none of her blobs.
    forged = dataclasses.replace(mine, workspace="bob")
    for image in (mine, forged):
        for read in (bob.read, bob.preview):
            with pytest.raises(NotFoundError):
                read(image)
        assert not bob.has_file(image)
    assert sorted(blob_keys(alice)) == sorted([mine.file, mine.thumb])  # bob touched nothing
    assert all(k.startswith(workspace_dir_name("bob") + "/") for k in blob_keys(bob))
    assert not any(k in blob_keys(bob) for k in (mine.file, mine.thumb))
    assert workspace_dir_name("alice@example.com") != workspace_dir_name("alice_example_com")
    with pytest.raises(ValueError, match="workspace is required"):
        ImageStore(backend, "")


def test_conversation_link_is_checked_and_survives_conversation_deletion(
    backend: Backend, images: ImageStore
) -> None:
    add_conversation(backend, "local", "c1")
    with pytest.raises(NotFoundError):
        ImageStore(backend, "other").save(result("x"), conversation_id="c1")
    assert blob_keys(images, "other") == []  # the refused save kept no blob
    (image,) = images.save(result("linked"), conversation_id="c1")
    assert [i.id for i in images.for_conversation("c1")] == [image.id]
    with backend.connection() as conn:
        conn.execute("DELETE FROM conversations WHERE id = ?", ("c1",))
    kept = images.get(image.id)
    assert kept.conversation_id is None and images.has_file(kept)


@contextmanager
def refused_rows(backend: Backend) -> Iterator[None]:
    """The database refuses every new image row (a trigger), whichever backend it is."""
    if backend.dialect == "sqlite":
        with backend.connection() as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON images BEGIN SELECT RAISE(ABORT, 'x'); END"
            )
        try:
            yield
        finally:
            with backend.connection() as conn:
                conn.execute("DROP TRIGGER refuse")
        return
    with backend.connection() as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON images FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    try:
        yield
    finally:  # the PostgreSQL database is shared by the tests: leave no trigger behind
        with backend.connection() as conn:
            conn.execute("DROP TRIGGER refuse ON images")
            conn.execute("DROP FUNCTION refuse()")


@contextmanager
def refused_thumbnails(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The image's own blob is written, then its thumbnail's write fails."""
    if not isinstance(backend.blobs, DatabaseBlobs):
        write = atomic_files.write_bytes

        def full_for_thumbnails(path: Path, data: bytes) -> None:
            if path.name.endswith(".thumb.webp"):
                raise OSError(errno.ENOSPC, "No space left on device")
            write(path, data)

        monkeypatch.setattr(atomic_files, "write_bytes", full_for_thumbnails)
        yield
        return
    with backend.connection() as conn:
        conn.execute(
            "CREATE FUNCTION refuse_thumbs() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF right(NEW.key, 11) = '.thumb.webp' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_thumbs BEFORE INSERT ON blobs FOR EACH ROW "
            "EXECUTE FUNCTION refuse_thumbs()"
        )
    try:
        yield
    finally:
        with backend.connection() as conn:
            conn.execute("DROP TRIGGER refuse_thumbs ON blobs")
            conn.execute("DROP FUNCTION refuse_thumbs()")


FAILURES = (sqlite3.Error, psycopg.Error, DiskFull, NotFoundError)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda backend, _: refused_rows(backend), id="row-insert-refused"),
        pytest.param(refused_thumbnails, id="thumbnail-write-fails"),
    ],
)
def test_a_failed_save_leaves_no_row_and_no_blob(
    images: ImageStore,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[..., Any],
) -> None:
    with fault(images.backend, monkeypatch), pytest.raises(FAILURES):
        images.save(result("doomed", png(1024), png(1024, (9, 9, 9))))
    assert images.list() == [] and blob_keys(images) == []
    (saved,) = images.save(result("fine"))  # and the store works after
    assert images.read(saved) == png()


def test_a_missing_blob_is_reported_not_crashed(images: ImageStore) -> None:
    (image,) = images.save(result("vanishing"))
    images.blobs.delete(image.file)
    assert not images.has_file(image)
    for read in (images.read, images.preview):
        with pytest.raises(NotFoundError, match="missing"):
            read(image)
    images.delete(image.id)  # and it can still be deleted
    assert images.list() == []


@pytest.fixture
def pg_url(postgres: pg.TestPostgres) -> Iterator[str]:
    """A database of its own, for the tests that choose PostgreSQL's blob store."""
    url = postgres.fresh_database()
    yield url
    forget_backends()
    postgres.drop(url)


@pytest.mark.parametrize(
    ("blob_store", "in_table", "on_disk"),
    [
        pytest.param(None, True, False, id="default-is-database"),
        pytest.param("database", True, False, id="database"),
        pytest.param("local", False, True, id="local"),
    ],
)
def test_postgresql_keeps_the_bytes_where_parley_blob_store_says(
    pg_url: str, data_dir: Path, blob_store: str | None, in_table: bool, on_disk: bool
) -> None:
    backend = open_backend(data_dir, pg_url, blob_store)
    images = ImageStore(backend, "local")
    (image,) = images.save(result("kept", png(1024)))
    with backend.connection() as conn:
        rows = conn.execute("SELECT key, size, data FROM blobs").fetchall()
    table = {r["key"]: bytes(r["data"]) for r in rows}
    files = [p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()]
    keys = sorted([image.file, image.thumb])
    assert sorted(table) == (keys if in_table else [])
    assert sorted(files) == (keys if on_disk else [])
    assert images.read(image) == png(1024) and (not in_table or table[image.file] == png(1024))
    assert isinstance(images.blobs, DatabaseBlobs) is in_table


def test_a_data_directory_from_before_the_blob_store_keeps_working(data_dir: Path) -> None:
    # As the gallery wrote them before the store layer: a file under
    # <workspace dir>/images/ and a row holding its path relative to the data directory.
    data_dir.mkdir(parents=True)
    conn = db.connect(data_dir / "parley.db")
    folder = data_dir / workspace_dir_name("me@example.com") / "images"
    folder.mkdir(parents=True)
    (folder / "old1.png").write_bytes(png(colour=(5, 6, 7)))
    (folder / "old1.thumb.webp").write_bytes(b"RIFF-old-thumb")
    relative = folder.relative_to(data_dir).as_posix()
    conn.execute(
        "INSERT INTO images (id, workspace, batch, position, file, thumb, mime, width, height, "
        "bytes, prompt, model, size, meta, created_at) "
        "VALUES ('old1', 'me@example.com', 'b', 0, ?, ?, 'image/png', 64, 64, 10, "
        "'an old heron', 'dall-e-3', '1024x1024', '{}', 1.0)",
        (f"{relative}/old1.png", f"{relative}/old1.thumb.webp"),
    )
    conn.close()
    forget_backends()
    images = ImageStore(open_backend(data_dir), "me@example.com")
    (old,) = images.list(query="heron")
    assert images.read(old) == png(colour=(5, 6, 7))
    assert images.preview(old) == b"RIFF-old-thumb"
    (new,) = images.save(result("a new heron"))
    assert (data_dir / new.file).parent == folder  # new images go beside the old ones
    images.delete(old.id)
    assert sorted(p.name for p in folder.iterdir()) == [f"{new.id}.png"]
    forget_backends()


def test_migration_upgrades_a_database_from_before_images(data_dir: Path) -> None:
    path = data_dir / "old.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    db.migrate(conn, [m for m in db.MIGRATIONS if m[0] != "0003_images"])
    assert "0003_images" not in db.applied_migrations(conn)
    assert db.migrate(conn) == ["0003_images"]
    assert db.migrate(conn) == []  # running again is a no-op
    conn.close()
