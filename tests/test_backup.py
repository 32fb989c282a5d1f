"""Backups: `python -m lib.cli backup PATH` while a reply streams, `restore` into a new data
directory, and everything is there; restore refuses a non-empty directory and a backup
that does not match its manifest, and leaves nothing behind when it refuses."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
from PIL import Image

from lib import backup, chat
from lib.conversations import ConversationStore, Message
from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary, workspace_key
from lib.errors import BackupError
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GenerationResult, Usage, checked_image
from lib.store import sqlite_schema as db
from lib.store.backend import open_backend
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent
WS = "local"
MODEL = "text-embedding-3-small"
NOTES = ("# Field notes\n\nThe heron nests by the river in spring.\n\n" * 40).encode()
ROWING = ("# Rowing\n\nA sculler feathers the blade on the recovery.\n\n" * 40).encode()
STREAMED = " ".join(f"word{i}" for i in range(3000))


def png(size: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lib.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )


@pytest.fixture
def client(openai_server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")


@pytest.fixture
def filled(data_dir: Path, client: openai.OpenAI) -> Path:
    """A data directory with conversations, two documents and images (one with a thumb)."""
    store = ConversationStore(open_backend(data_dir), WS)
    for i in range(3):
        conv = store.create(model="gpt-test", system_prompt=f"Prompt {i}")
        store.add_message(conv.id, Message(role="user", content=f"Question {i}"))
        store.add_message(conv.id, Message(role="assistant", content=f"Answer {i}"))
    library = DocumentLibrary(open_backend(data_dir), WS)
    embedder = Embedder(client, MODEL, cache=library.cache)
    ingestor = Ingestor(library, embedder, limit_bytes=1 << 30)
    for name, data in (("notes.md", NOTES), ("rowing.md", ROWING)):
        assert ingestor.ingest(name, data).status == "indexed"
    request = default_request("a heron at dawn", "gpt-image-2")
    images = [checked_image(png(1024, (20, 90, 160))), checked_image(png(64, (200, 30, 30)))]
    gallery = ImageStore(open_backend(data_dir), WS)
    gallery.save(GenerationResult(request, images, Usage(5, 272), 0.04, 1.5))
    return data_dir


def snapshot(data_dir: Path) -> dict[str, object]:
    """Everything a user would miss, read through the stores."""
    store = ConversationStore(open_backend(data_dir), WS)
    library = DocumentLibrary(open_backend(data_dir), WS)
    gallery = ImageStore(open_backend(data_dir), WS)
    convs = store.list(limit=100)
    docs = library.list()
    images = gallery.list(limit=100)
    return {
        "conversations": {
            c.id: (
                c.title,
                c.system_prompt,
                [(m.role, m.content, m.status) for m in store.all_messages(c.id)],
            )
            for c in convs
        },  # fmt: skip
        "documents": {d.id: (d.name, d.sha256, library.read_file(d)) for d in docs},
        "chunks": len(library.chunk_ids([d.id for d in docs])),
        "images": {
            i.id: (
                i.prompt,
                gallery.read(i),
                gallery.preview(i) if i.thumb else None,
            )
            for i in images
        },  # fmt: skip
    }


def test_a_backup_taken_while_a_reply_streams_restores_everything(
    filled: Path, client: openai.OpenAI, openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    store = ConversationStore(open_backend(filled), WS)
    streaming = store.create(model="gpt-test")
    before = snapshot(filled)
    openai_server.script(STREAMED, chunk_size=8, chunk_delay=0.02)  # about 8 s in all
    started, stop, received = threading.Event(), threading.Event(), []

    def stream() -> None:
        ctx = chat.ChatContext(ConversationStore(open_backend(filled), WS), client)
        for piece in chat.send(ctx, streaming.id, "Count for me, slowly."):
            received.append(piece)
            started.set()
            if stop.is_set():
                break  # the consumer leaves: the reply is closed and its partial kept

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        assert started.wait(WAIT), "the reply never started"
        done = cli("backup", str(tmp_path / "backup"), "--data-dir", str(filled))
        assert streamer.is_alive(), "the reply finished before the backup did"
    finally:
        stop.set()
        streamer.join(WAIT)
    assert done.returncode == 0, done.stderr
    assert "Backed up" in done.stderr
    restored = tmp_path / "restored"
    back = cli("restore", str(tmp_path / "backup"), "--data-dir", str(restored))
    assert back.returncode == 0, back.stderr
    assert "every file matched the manifest" in back.stderr

    after = snapshot(restored)
    for key in ("documents", "chunks", "images"):
        assert after[key] == before[key], key
    ours = after["conversations"].pop(streaming.id)
    theirs = before["conversations"].pop(streaming.id)
    assert after["conversations"] == before["conversations"]
    assert ours[2][: len(theirs[2]) + 1] == [("user", "Count for me, slowly.", "ok")]
    for _role, content, _status in ours[2][1:]:  # a partial saved while streaming, if any
        assert STREAMED.startswith(content)
    # The indexes came back consistent with the database: nothing needed rebuilding.
    library = DocumentLibrary(open_backend(restored), WS)
    assert library.search.open_index(MODEL).size == before["chunks"]
    for doc in library.list():
        library.search.keyword_segment(doc)
    assert library.repairs == []
    manifest = json.loads((tmp_path / "backup" / backup.MANIFEST).read_text())
    assert manifest["missing"] == [] and "parley.db" in manifest["files"]


def test_restore_refuses_a_data_directory_that_is_not_empty(filled: Path, tmp_path: Path) -> None:
    backup.backup(filled, tmp_path / "backup")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    result = cli("restore", str(tmp_path / "backup"), "--data-dir", str(occupied))
    assert result.returncode == 1
    assert f"{occupied} is not empty" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]


def flip_a_byte(root: Path, files: dict) -> str:
    name = next(n for n in files if n.endswith(".png"))
    data = bytearray((root / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / name).write_bytes(bytes(data))
    return name


def delete_a_document(root: Path, files: dict) -> str:
    name = next(n for n in files if n.endswith(".md"))
    (root / name).unlink()
    return name


def escape_the_directory(root: Path, files: dict) -> str:
    manifest = json.loads((root / backup.MANIFEST).read_text())
    manifest["files"]["../outside.txt"] = {"size": 1, "sha256": "0" * 64}
    (root / backup.MANIFEST).write_text(json.dumps(manifest))
    return "../outside.txt"


def garbage_manifest(root: Path, files: dict) -> str:
    (root / backup.MANIFEST).write_text("{not json")
    return "not a Parley backup"


@pytest.mark.parametrize(
    "tamper", [flip_a_byte, delete_a_document, escape_the_directory, garbage_manifest]
)
def test_restore_verifies_the_backup_and_restores_nothing_if_it_does_not_match(
    tamper,
    filled: Path,
    tmp_path: Path,  # noqa: ANN001 - one of the functions above
) -> None:
    source = tmp_path / "backup"
    backup.backup(filled, source)
    named = tamper(source, backup.read_manifest(source))
    target = tmp_path / "restored"
    with pytest.raises(BackupError, match="nothing was restored|unsafe path|not a Parley"):
        backup.restore(source, target)
    with pytest.raises(BackupError) as caught:
        backup.restore(source, target)
    assert named in str(caught.value)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "outside.txt").exists()


def test_backup_refuses_targets_that_would_go_wrong(filled: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    cases = {
        filled / "inside": "outside the data directory",
        taken: "already exists",
    }
    for target, message in cases.items():
        with pytest.raises(BackupError, match=message):
            backup.backup(filled, target)
    with pytest.raises(BackupError, match="nothing to back up"):
        backup.backup(tmp_path / "empty", tmp_path / "b")
    assert not (filled / "inside").exists()


def test_a_damaged_database_is_refused_not_copied(data_dir: Path, tmp_path: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "parley.db").write_bytes(os.urandom(4096))
    with pytest.raises(BackupError, match="parley.db could not be read"):
        backup.backup(data_dir, tmp_path / "backup")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_backup_that_fails_midway_leaves_nothing_that_looks_like_one(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing_copy(source: Path, target: Path) -> dict:
        calls.append(source)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        return real_copy(source, target)

    real_copy = backup._copy
    monkeypatch.setattr(backup, "_copy", failing_copy)
    with pytest.raises(OSError, match="No space"):
        backup.backup(filled, tmp_path / "backup")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_backup_from_an_older_version_is_migrated_on_restore(
    data_dir: Path, tmp_path: Path
) -> None:
    data_dir.mkdir(parents=True)
    conn = sqlite3.connect(data_dir / "parley.db", isolation_level=None)
    db.migrate(conn, db.MIGRATIONS[:2])
    conn.close()
    backup.backup(data_dir, tmp_path / "backup")
    backup.restore(tmp_path / "backup", tmp_path / "restored")
    conn = sqlite3.connect(tmp_path / "restored" / "parley.db")
    assert db.applied_migrations(conn) == [m.name for m in db.MIGRATIONS]
    conn.close()


def test_the_backup_finds_documents_where_the_library_keeps_them() -> None:
    for workspace in ("local", "shared", "u_0123456789abcdef"):
        assert backup.document_folder(workspace) == workspace_key(workspace)
