"""Damaged files never lock a user out: index files are written atomically and checked
when loaded; a broken index is rebuilt from the stored chunks and the embedding cache
(no embedding request) and the user is told; a damaged parley.db is named, with the way
out, while the app keeps running."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import openai
import pytest
from streamlit.testing.v1 import AppTest

from lib import atomic_files
from lib.documents.bm25 import Segment
from lib.documents.embeddings import Embedder
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.documents.vectorstore import ParleyFAISS
from lib.store.backend import open_backend
from tests.fake_openai import FakeOpenAI

MODEL = "text-embedding-3-small"
WS = "local"  # the web app's workspace in local mode, so the pages see these documents
NOTES = ("# Field notes\n\nThe heron nests by the river in spring.\n\n" * 40).encode()
ROWING = ("# Rowing\n\nA sculler feathers the blade on the recovery.\n\n" * 40).encode()


@pytest.fixture
def library(data_dir: Path) -> DocumentLibrary:
    # Index files are SQLite's (on PostgreSQL the database holds the indexes: nothing to
    # damage beside it).
    return DocumentLibrary(open_backend(data_dir), WS)


@pytest.fixture
def client(openai_server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")


def ingest(library: DocumentLibrary, client: openai.OpenAI, name: str, data: bytes):  # noqa: ANN201
    embedder = Embedder(client, MODEL, cache=library.cache)
    report = Ingestor(library, embedder, limit_bytes=1 << 30).ingest(name, data)
    assert report.status == "indexed", report.message
    return report


def index_file(data_dir: Path) -> Path:
    (path,) = data_dir.glob("documents/*/index-*.faiss")
    return path


def embedding_requests(server: FakeOpenAI) -> int:
    """Requests that embed something (the page's capability probe sends no input)."""
    return len([r for r in server.requests_to("/embeddings") if (r.json or {}).get("input")])


# Ways a file gets damaged


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def overwrite_in_place(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\0" * 64  # same size: only the checksum can tell
    path.write_bytes(bytes(data))


def replace_with_garbage(path: Path) -> None:
    path.write_bytes(b"\x93NUMPY not what it seems " * 40)


def old_format(path: Path) -> None:
    # How indexes were saved before the checked header: FAISS's bytes alone.
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(4))
    index.add_with_ids(np.eye(4, dtype=np.float32), np.arange(4))
    faiss.write_index(index, str(path))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": truncate,
    "overwritten in place": overwrite_in_place,
    "replaced by garbage": replace_with_garbage,
    "an older format": old_format,
    "deleted": Path.unlink,
}


# Writing


class DiskFillsUp(io.FileIO):
    """A file on a disk with room for only `ROOM` bytes: writes past it fail midway."""

    ROOM = 100

    def write(self, data) -> int:  # noqa: ANN001 - any bytes-like object
        room = self.ROOM - self.tell()
        if len(data) > room:
            super().write(bytes(data)[: max(room, 0)])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def save_faiss(path: Path) -> None:
    store = ParleyFAISS()
    store.add_vectors([1, 2], np.eye(2, 8, dtype=np.float32))
    store.save(path)


def save_segment(path: Path) -> None:
    Segment.build([1, 2], ["herons nest", "rivers flow"]).save(path)


def save_bytes(path: Path) -> None:
    atomic_files.write_bytes(path, b"new content")


WRITERS = {"faiss index": (save_faiss, "x.faiss"), "bm25 segment": (save_segment, "x.npz")}


@pytest.mark.parametrize("kind", WRITERS)
def test_a_write_that_fails_midway_leaves_the_old_file_intact(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save, filename = WRITERS[kind]
    path = tmp_path / filename
    save(path)
    before = path.read_bytes()
    assert len(before) > DiskFillsUp.ROOM
    monkeypatch.setattr(atomic_files, "open", DiskFillsUp, raising=False)
    with pytest.raises((OSError, RuntimeError), match="No space left"):
        save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [filename]  # no temporary file left


def test_an_atomic_write_is_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    save_bytes(path)
    assert events == ["fsync", "replace", "fsync"]  # the file, the rename, the directory
    assert path.read_bytes() == b"new content"


def test_a_failed_atomic_write_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_files.atomic_write(path) as file:
        file.write(b"partial")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# Loading and rebuilding


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_vector_index_is_rebuilt_from_the_cache_without_embedding_requests(
    damage: Callable[[Path], None],
    library: DocumentLibrary,
    client: openai.OpenAI,
    openai_server: FakeOpenAI,
    data_dir: Path,
) -> None:
    ingest(library, client, "notes.md", NOTES)
    ingest(library, client, "rowing.md", ROWING)
    before = library.search.open_index(MODEL)
    _ids, vectors = before.all_vectors()
    expected = [before.search_vector(v, 3) for v in vectors[:4]]
    damage(index_file(data_dir))
    sent = embedding_requests(openai_server)
    session = DocumentLibrary(library.backend, WS)  # a new session, as after a restart
    store = session.search.open_index(MODEL)
    assert embedding_requests(openai_server) == sent
    assert store.size == before.size
    assert [store.search_vector(v, 3) for v in vectors[:4]] == expected
    (notice,) = session.repairs
    assert "rebuilt it from your stored passages" in notice and "no new embedding" in notice
    assert str(data_dir) not in notice
    later = DocumentLibrary(library.backend, WS)  # the rebuilt index was saved, checked
    assert later.search.open_index(MODEL).size == before.size and later.repairs == []


def test_an_upload_after_the_damage_works_and_only_embeds_the_new_file(
    library: DocumentLibrary, client: openai.OpenAI, openai_server: FakeOpenAI, data_dir: Path
) -> None:
    first = ingest(library, client, "notes.md", NOTES)
    truncate(index_file(data_dir))
    sent = embedding_requests(openai_server)
    session = DocumentLibrary(library.backend, WS)
    second = ingest(session, client, "rowing.md", ROWING)
    assert "faiss" not in second.message.lower()
    assert embedding_requests(openai_server) == sent + 1  # the new file's one batch
    assert session.search.open_index(MODEL).size == first.chunks + second.chunks
    assert len(session.repairs) == 1


def test_documents_without_cached_vectors_become_keyword_only_and_are_named(
    library: DocumentLibrary, client: openai.OpenAI, data_dir: Path
) -> None:
    notes = ingest(library, client, "notes.md", NOTES)
    rowing = ingest(library, client, "rowing.md", ROWING)
    with library.backend.connection() as conn:
        conn.execute(
            "DELETE FROM embedding_cache WHERE hash IN "
            "(SELECT hash FROM chunks WHERE document_id = ?)",
            (rowing.document_id,),
        )
    replace_with_garbage(index_file(data_dir))
    store = library.search.open_index(MODEL)
    assert store.size == notes.chunks
    assert library.get(rowing.document_id).embedding_model is None
    assert library.get(notes.document_id).embedding_model == MODEL
    (notice,) = library.repairs
    assert "Keyword search only for rowing.md" in notice


def stale(path: Path) -> None:
    Segment.build([10_001, 10_002], ["another", "document"]).save(path)


SEGMENT_DAMAGE = {**{k: DAMAGE[k] for k in ("truncated", "replaced by garbage")}, "stale": stale}


@pytest.mark.parametrize("damage", SEGMENT_DAMAGE.values(), ids=SEGMENT_DAMAGE.keys())
def test_a_damaged_keyword_segment_is_rebuilt_and_said(
    damage: Callable[[Path], None], library: DocumentLibrary, client: openai.OpenAI
) -> None:
    report = ingest(library, client, "notes.md", NOTES)
    doc = library.get(report.document_id)
    good = library.search.keyword_segment(doc)
    (segment_file,) = library.search.folder.glob("*.bm25.npz")
    damage(segment_file)
    rebuilt = library.search.keyword_segment(doc)
    assert rebuilt.chunk_ids.tolist() == good.chunk_ids.tolist()
    assert np.array_equal(rebuilt.terms, good.terms)
    assert library.repairs == [
        "The keyword index of notes.md was damaged and has been rebuilt from its stored passages."
    ]
    assert Segment.load(segment_file).chunk_ids.tolist() == good.chunk_ids.tolist()


def test_a_missing_keyword_segment_is_built_quietly(
    library: DocumentLibrary, client: openai.OpenAI
) -> None:
    report = ingest(library, client, "notes.md", NOTES)
    for path in library.search.folder.glob("*.bm25.npz"):
        path.unlink()  # as for documents indexed before keyword segments existed
    library.search.keyword_segment(library.get(report.document_id))
    assert library.repairs == []


# The pages


def upload(at: AppTest, name: str, data: bytes) -> None:
    at.file_uploader[0].upload(name, data, "text/markdown")
    at.run()
    at.button(key="parley.w.index").click().run()
    assert not at.exception, at.exception


def test_the_documents_page_rebuilds_a_damaged_index_and_says_so(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, data_dir: Path
) -> None:
    at = app("app_pages/documents.py")
    at.run()
    upload(at, "notes.md", NOTES)
    truncate(index_file(data_dir))
    sent = embedding_requests(openai_server)
    fresh = app("app_pages/documents.py")  # another visitor, or the same one after a restart
    fresh.run()
    assert not fresh.exception, fresh.exception
    (warning,) = [w.value for w in fresh.warning]
    assert "rebuilt it from your stored passages" in warning
    assert embedding_requests(openai_server) == sent
    fresh.run()
    assert [w.value for w in fresh.warning] == []  # said once


def test_an_upload_on_the_page_after_the_damage_succeeds_and_says_so(
    app: Callable[..., AppTest], data_dir: Path
) -> None:
    at = app("app_pages/documents.py")
    at.run()
    upload(at, "notes.md", NOTES)
    overwrite_in_place(index_file(data_dir))
    upload(at, "rowing.md", ROWING)
    assert [e.value for e in at.error] == []
    assert [s.value[:6] for s in at.success] == ["rowing"]
    assert any("rebuilt it from your stored passages" in w.value for w in at.warning)


@pytest.mark.parametrize(
    "page", ["app_pages/chat.py", "app_pages/documents.py", "app_pages/images.py"]
)
def test_a_corrupt_database_is_named_and_the_app_keeps_running(
    page: str, app: Callable[..., AppTest], data_dir: Path
) -> None:
    path = data_dir / "parley.db"
    data_dir.mkdir(parents=True)
    path.write_bytes(os.urandom(4096))
    at = app(page)
    at.run()
    assert not at.exception, at.exception
    (error,) = [e.value for e in at.error]
    assert str(path) in error and "damaged" in error
    assert "move parley.db" in error and "python -m lib.cli restore" in error
    path.rename(data_dir / "parley.db.damaged")  # what the message says to do
    at.run()
    assert not at.exception and [e.value for e in at.error] == []
