"""lib.gallery: files plus rows, newest first, search, deletion, workspace isolation."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image

from lib.conversations import ConversationStore
from lib.errors import NotFoundError
from lib.gallery import ImageStore, workspace_dir_name
from lib.image_models import default_request
from lib.images import GeneratedImage, GenerationResult, Usage, checked_image
from lib.store import sqlite_schema as db
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
def gallery(data_dir: Path) -> ImageStore:
    return ImageStore(data_dir)


def test_save_writes_files_and_rows_that_survive_a_new_store(
    gallery: ImageStore, data_dir: Path
) -> None:
    saved = gallery.save("local", result("a lighthouse", png(colour=(1, 2, 3)), png()))
    assert [s.position for s in saved] == [0, 1] and saved[0].batch == saved[1].batch
    first = saved[0]
    path = gallery.path(first)
    assert path.parent == data_dir / workspace_dir_name("local") / "images"
    assert path.name == f"{first.id}.png" and "lighthouse" not in path.name
    assert path.read_bytes() == png(colour=(1, 2, 3))
    assert first.cost == pytest.approx(0.01)  # each image carries its share of the request
    reopened = ImageStore(data_dir).get("local", first.id)  # as after a restart
    assert reopened.prompt == "a lighthouse" and reopened.model == "gpt-image-2"
    assert (reopened.width, reopened.height, reopened.size) == (64, 64, "auto")
    assert reopened.created_at == pytest.approx(time.time(), abs=60)


def test_large_images_get_a_thumbnail_and_keep_transparency(gallery: ImageStore) -> None:
    big = png(1024, (10, 20, 30, 0), mode="RGBA")
    (image,) = gallery.save("local", result("glass", big))
    thumb = gallery.preview_path(image)
    assert thumb != gallery.path(image) and thumb.suffix == ".webp"
    with Image.open(thumb) as img:
        assert max(img.size) == 512 and img.mode == "RGBA"
    (small,) = gallery.save("local", result("tiny"))
    assert gallery.preview_path(small) == gallery.path(small)  # no thumbnail needed


def test_an_unchecked_bomb_gets_no_thumbnail_and_is_never_decoded(
    gallery: ImageStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever reaches the gallery without checked_image (a future caller, an import)
    # is still checked from its header before the thumbnail would decode it.
    bomb = GeneratedImage(sparse_png(13000, 13000), "image/png", "png", 13000, 13000)
    request = default_request("bomb", "gpt-image-2")
    (image,) = gallery.save("local", GenerationResult(request, [bomb], None, None, 1.0))
    assert image.thumb is None and gallery.preview_path(image) == gallery.path(image)
    assert "no thumbnail" in caplog.text


def test_list_is_newest_first_and_search_matches_every_word(gallery: ImageStore) -> None:
    gallery.save("local", result("a red fox in snow"))
    gallery.save("local", result("a lighthouse at dusk"))
    gallery.save("local", result("a fox and a lighthouse"))
    assert [i.prompt for i in gallery.list("local")] == [
        "a fox and a lighthouse",
        "a lighthouse at dusk",
        "a red fox in snow",
    ]
    assert [i.prompt for i in gallery.list("local", query="FOX lighthouse")] == [
        "a fox and a lighthouse"
    ]
    assert gallery.count("local", query="fox") == 2
    assert gallery.list("local", query="100%") == []  # LIKE wildcards are literal
    assert [i.prompt for i in gallery.list("local", limit=1, offset=1)] == ["a lighthouse at dusk"]


def test_search_also_matches_the_revised_prompt(gallery: ImageStore) -> None:
    revised = GeneratedImage(png(), "image/png", "png", 64, 64, "A watercolour of a heron")
    gallery.save(
        "local", GenerationResult(default_request("bird", "dall-e-3"), [revised], None, None, 1.0)
    )
    (hit,) = gallery.list("local", query="watercolour")
    assert hit.revised_prompt == "A watercolour of a heron" and hit.cost is None


def test_delete_removes_the_file_the_thumbnail_and_the_row(gallery: ImageStore) -> None:
    (image,) = gallery.save("local", result("to delete", png(1024)))
    files = [gallery.path(image), gallery.preview_path(image)]
    assert all(f.exists() for f in files)
    gallery.delete("local", image.id)
    assert not any(f.exists() for f in files)
    with pytest.raises(NotFoundError):
        gallery.get("local", image.id)
    with pytest.raises(NotFoundError):
        gallery.delete("local", image.id)


def test_workspaces_never_see_or_delete_each_others_images(gallery: ImageStore) -> None:
    (mine,) = gallery.save("alice@example.com", result("alice's cat"))
    gallery.save("bob", result("bob's dog"))
    assert [i.prompt for i in gallery.list("alice@example.com")] == ["alice's cat"]
    assert gallery.list("bob", query="cat") == []
    for call in (gallery.get, gallery.delete, gallery.read):
        with pytest.raises(NotFoundError):
            call("bob", mine.id)
    assert gallery.get_many("bob", [mine.id]) == []
    assert gallery.path(mine).exists()  # bob's delete attempt touched nothing
    assert workspace_dir_name("alice@example.com") != workspace_dir_name("alice_example_com")
    with pytest.raises(ValueError):
        gallery.list("")


def test_conversation_link_is_checked_and_survives_conversation_deletion(
    gallery: ImageStore, store: ConversationStore
) -> None:
    conv = store.create("local", model="gpt-5-mini")
    with pytest.raises(NotFoundError):
        gallery.save("other", result("x"), conversation_id=conv.id)
    (image,) = gallery.save("local", result("linked"), conversation_id=conv.id)
    assert [i.id for i in gallery.for_conversation("local", conv.id)] == [image.id]
    store.delete("local", conv.id)
    kept = gallery.get("local", image.id)
    assert kept.conversation_id is None and gallery.path(kept).exists()


def test_a_failed_insert_leaves_no_orphan_files(gallery: ImageStore, data_dir: Path) -> None:
    conn = db.connect(data_dir / "parley.db")
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON images BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    conn.close()
    with pytest.raises(sqlite3.IntegrityError):
        gallery.save("local", result("doomed", png(1024)))
    assert list(gallery.images_dir("local").iterdir()) == []


def test_a_missing_file_is_reported_not_crashed(gallery: ImageStore) -> None:
    (image,) = gallery.save("local", result("vanishing"))
    gallery.path(image).unlink()
    with pytest.raises(NotFoundError, match="missing"):
        gallery.read("local", image.id)


def test_migration_upgrades_a_database_from_before_images(data_dir: Path) -> None:
    path = data_dir / "old.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    db.migrate(conn, [m for m in db.MIGRATIONS if m[0] != "0003_images"])
    assert "0003_images" not in db.applied_migrations(conn)
    assert db.migrate(conn) == ["0003_images"]
    assert db.migrate(conn) == []  # running again is a no-op
    conn.close()
