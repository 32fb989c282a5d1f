"""A full disk loses nothing: the stores say "the disk is full" naming the data directory,
a billed image stays in the session (a download, and a save retried once there is room),
and a chat message that could not be saved comes back into the input.

The disk is filled at the lowest level Parley touches: every SQLite connection opened
while it is full refuses writes exactly as SQLite does on a full disk (SQLITE_FULL,
"database or disk is full"), and file writes fail with ENOSPC at their fsync. A real
SQLITE_FULL (from `max_page_count`) checks that the fake one is classified the same way.
On PostgreSQL the conversation tables' writes fail with the server's own disk_full error
(SQLSTATE 53100, raised by a trigger while the disk is "full"), so the chat page's tests
run on both backends.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore, Message
from lib.diskfull import is_disk_full, translate_disk_errors
from lib.errors import DiskFull
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GeneratedImage, GenerationResult
from lib.markup import escape
from lib.store.backend import Backend, open_backend
from lib.store.base import workspace_dir_name
from lib.ui.chat_view import INPUT_KEY
from tests.fake_images import render_png
from tests.fake_openai import FakeOpenAI

WRITES = ("insert", "update", "delete", "replace", "create", "drop", "alter")


@dataclass
class Disk:
    """The data directory's disk: a test fills it (the database, the files or both)."""

    database_full: bool = False
    files_full: bool = False

    def fill(self, *, database: bool = True, files: bool = True) -> None:
        self.database_full, self.files_full = database, files

    def free(self) -> None:
        self.fill(database=False, files=False)


def sqlite_full() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode, exc.sqlite_errorname = sqlite3.SQLITE_FULL, "SQLITE_FULL"
    return exc


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    state = Disk()

    class FullableConnection(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if state.database_full and sql.lstrip().lower().startswith(WRITES):
                raise sqlite_full()
            return super().execute(sql, *args)

        def executemany(self, sql: str, *args: object) -> sqlite3.Cursor:
            if state.database_full and sql.lstrip().lower().startswith(WRITES):
                raise sqlite_full()
            return super().executemany(sql, *args)

    connect, fsync = sqlite3.connect, os.fsync

    def fullable_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        return connect(*args, factory=FullableConnection, **kwargs)

    def fullable_fsync(fd: int) -> None:
        if state.files_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(sqlite3, "connect", fullable_connect)
    monkeypatch.setattr(os, "fsync", fullable_fsync)
    return state


def real_sqlite_full(tmp_path: Path) -> sqlite3.Error:
    """What SQLite itself raises when the database may not grow."""
    conn = sqlite3.connect(tmp_path / "tiny.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 1")  # clamped to the current size
    try:
        conn.execute("INSERT INTO t VALUES (randomblob(100000))")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite wrote past max_page_count")


# The classification


@pytest.mark.parametrize(
    ("make", "full"),
    [
        pytest.param(real_sqlite_full, True, id="sqlite-real-SQLITE_FULL"),
        pytest.param(lambda _: sqlite_full(), True, id="sqlite-fake-SQLITE_FULL"),
        pytest.param(
            lambda _: sqlite3.OperationalError("database or disk is full"),
            True,
            id="sqlite-message-only",
        ),  # fmt: skip
        pytest.param(lambda _: OSError(errno.ENOSPC, "No space left"), True, id="ENOSPC"),
        pytest.param(lambda _: OSError(errno.EDQUOT, "Quota exceeded"), True, id="EDQUOT"),
        pytest.param(
            lambda _: sqlite3.OperationalError("database is locked"), False, id="sqlite-locked"
        ),  # fmt: skip
        pytest.param(lambda _: OSError(errno.EACCES, "Permission denied"), False, id="EACCES"),
        pytest.param(lambda _: ValueError("database or disk is full"), False, id="not-storage"),
    ],
)
def test_only_a_full_disk_becomes_disk_full(
    tmp_path: Path, make: Callable[[Path], BaseException], full: bool
) -> None:
    error = make(tmp_path)
    assert is_disk_full(error) is full
    with pytest.raises(DiskFull if full else type(error)) as raised:
        with translate_disk_errors(tmp_path / "data"):
            raise error
    if full:
        assert str(tmp_path / "data") in str(raised.value) and "disk is full" in str(raised.value)
        assert raised.value.__cause__ is error
    else:
        assert raised.value is error  # anything else passes through untouched


# The stores


_PG_FULL_TABLES = ("conversations", "messages")
_PG_FILL = """
    CREATE TABLE test_disk (is_full boolean NOT NULL);
    INSERT INTO test_disk VALUES (false);
    CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT is_full FROM test_disk) THEN
            RAISE EXCEPTION 'could not extend file: No space left on device'
                USING ERRCODE = 'disk_full';
        END IF;
        RETURN coalesce(NEW, OLD);
    END $$;
""" + "".join(
    f"CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE OR DELETE ON {t} "
    "FOR EACH ROW EXECUTE FUNCTION test_disk_full();"
    for t in _PG_FULL_TABLES
)
_PG_UNFILL = "".join(f"DROP TRIGGER test_disk_full ON {t};" for t in _PG_FULL_TABLES) + (
    "DROP FUNCTION test_disk_full(); DROP TABLE test_disk;"
)


@dataclass
class PostgresDisk(Disk):
    """PostgreSQL's disk: while full, the conversation tables refuse every write."""

    url: str = ""

    def fill(self, *, database: bool = True, files: bool = True) -> None:
        super().fill(database=database, files=False)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("UPDATE test_disk SET is_full = %s", (database,))


@pytest.fixture
def database_disk(request: pytest.FixtureRequest, backend: Backend) -> Iterator[Disk]:
    """The disk under the conversations, on each backend in turn."""
    if backend.dialect == "sqlite":
        yield request.getfixturevalue("disk")
        return
    url = backend.url  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_PG_FILL)
    try:
        yield PostgresDisk(url=url)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_PG_UNFILL)


def where(backend: Backend) -> str:
    """What a full-disk message names: the data directory, or the database."""
    return str(backend.data_dir) if backend.dialect == "sqlite" else backend.location


def conversations(backend: Backend) -> ConversationStore:
    return ConversationStore(backend, "local")


def test_the_conversation_store_reports_a_full_disk_and_keeps_working_after(
    database_disk: Disk, backend: Backend
) -> None:
    disk, store = database_disk, conversations(backend)
    conv = store.create(model="gpt-5-mini")
    disk.fill()
    with pytest.raises(DiskFull, match="disk is full") as raised:
        store.add_message(conv.id, Message("user", "hello"))
    assert where(backend) in str(raised.value)
    assert store.all_messages(conv.id) == []  # reads still work
    disk.free()
    store.add_message(conv.id, Message("user", "hello"))
    assert [m.content for m in store.all_messages(conv.id)] == ["hello"]


def a_result(prompt: str = "a red kite") -> GenerationResult:
    png = render_png(prompt, size=640)  # larger than a tile: a thumbnail is written too
    return GenerationResult(
        default_request(prompt, "gpt-image-2"),
        [GeneratedImage(png, "image/png", "png", 640, 640)],
        None,
        0.04,
        1.0,
    )


@pytest.mark.parametrize(
    "full",
    [
        pytest.param({"database": True, "files": False}, id="database"),
        pytest.param({"database": False, "files": True}, id="files"),
    ],
)
def test_the_gallery_keeps_no_half_saved_image_and_saves_it_once_there_is_room(
    disk: Disk, data_dir: Path, full: dict[str, bool]
) -> None:
    images, result = ImageStore(open_backend(data_dir), "local"), a_result()
    images.list()  # the database exists before the disk fills
    disk.fill(**full)
    with pytest.raises(DiskFull, match="disk is full"):
        images.save(result)
    assert images.list() == []
    assert list(images.blobs.keys(workspace_dir_name("local"))) == []  # no file without its row
    disk.free()
    (saved,) = images.save(result)
    assert images.read(saved) == result.images[0].data


# The pages


def test_a_chat_message_on_a_full_disk_comes_back_into_the_input(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, database_disk: Disk, backend: Backend
) -> None:
    disk = database_disk
    at = app("app_pages/chat.py")
    at.run()
    typed = "A long question I took ten minutes to write, about pelicans and their bills."
    disk.fill()
    at.chat_input(key=INPUT_KEY).set_value(typed).run()
    assert not at.exception, at.exception
    (error,) = at.error
    # Shown as typed: the Markdown source escapes the path's underscores.
    assert "disk is full" in error.value and escape(where(backend)) in error.value
    assert "not sent" in error.value
    box = at.chat_input(key=INPUT_KEY)
    assert box.proto.value == typed and box.proto.set_value  # filled back in, not submitted
    assert openai_server.requests_to("/chat/completions") == []

    disk.free()
    at.chat_input(key=INPUT_KEY).set_value(typed).run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value == f"Echo: {typed}"
    (conv,) = conversations(backend).list()
    saved = conversations(backend).all_messages(conv.id)
    assert [(m.role, m.content) for m in saved] == [
        ("user", typed),
        ("assistant", f"Echo: {typed}"),
    ]


def test_a_reply_that_cannot_be_saved_is_reported_and_can_be_retried(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    database_disk: Disk,
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk, add_message = database_disk, ConversationStore.add_message

    def fill_after_the_question(self, cid, message, **placement):  # noqa: ANN001, ANN003, ANN202
        saved = add_message(self, cid, message, **placement)
        if message.role == "user":
            disk.fill()  # the question is saved; its reply will not fit
        return saved

    monkeypatch.setattr(ConversationStore, "add_message", fill_after_the_question)
    at = app("app_pages/chat.py")
    at.run()
    at.chat_input(key=INPUT_KEY).set_value("Will this fit?").run()
    assert not at.exception, at.exception
    assert any("disk is full" in e.value and "Retry" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    (conv,) = conversations(backend).list()
    saved = conversations(backend).all_messages(conv.id)
    assert [m.content for m in saved] == ["Will this fit?"]

    disk.free()
    monkeypatch.setattr(ConversationStore, "add_message", add_message)
    at.button(key="parley.w.regen").click().run()
    assert not at.exception, at.exception
    saved = conversations(backend).all_messages(conv.id)
    assert [(m.role, m.content, m.status) for m in saved] == [
        ("user", "Will this fit?", "ok"),
        ("assistant", "Echo: Will this fit?", "ok"),
    ]


def generations(server: FakeOpenAI, prompt: str) -> int:
    """Image requests made for `prompt` (a capability probe asks with none of its own)."""
    return sum(r.json.get("prompt") == prompt for r in server.requests_to("/images/generations"))


def test_a_billed_image_on_a_full_disk_is_offered_and_saved_once_there_is_room(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, disk: Disk, data_dir: Path
) -> None:
    at = app("app_pages/images.py")
    at.run()
    at.text_area(key="parley.w.img.prompt").input("a red kite over the sea")
    disk.fill()
    at.button(key="parley.w.img.go").click().run()
    assert not at.exception, at.exception
    assert generations(openai_server, "a red kite over the sea") == 1  # made, and billed
    assert any("disk is full" in e.value and escape(str(data_dir)) in e.value for e in at.error)
    assert "Not saved yet" in at.warning[0].value
    (download,) = at.get("download_button")
    assert download.proto.label == "Download"
    assert download.proto.url  # served from this session's memory, not the disk
    assert ImageStore(open_backend(data_dir), "local").list() == []

    at.button(key="parley.w.img.unsaved.save").click().run()  # still full: still offered
    assert not at.exception, at.exception
    assert any("disk is full" in e.value for e in at.error)
    assert "Not saved yet" in at.warning[0].value

    disk.free()
    at.button(key="parley.w.img.unsaved.save").click().run()
    assert not at.exception, at.exception
    (saved,) = ImageStore(open_backend(data_dir), "local").list()
    assert saved.prompt == "a red kite over the sea"
    assert not any("Not saved yet" in w.value for w in at.warning)
    assert "parley.w.img.unsaved.save" not in [b.key for b in at.button]
    assert generations(openai_server, "a red kite over the sea") == 1  # never generated twice


def test_an_illustration_on_a_full_disk_waits_on_the_images_page(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, disk: Disk, data_dir: Path
) -> None:
    at = app("app_pages/chat.py")
    at.run()
    at.chat_input(key=INPUT_KEY).set_value("Describe a lighthouse in a storm").run()
    openai_server.script("A white lighthouse in a violent storm, oil painting")
    at.button(key="parley.w.illustrate").click().run()
    disk.fill()
    at.button(key="parley.w.illustrate.go").click().run()
    assert not at.exception, at.exception
    assert any("disk is full" in e.value and "Images page" in e.value for e in at.error)

    at.switch_page("app_pages/images.py").run()  # the same session
    assert not at.exception, at.exception
    assert "Not saved yet" in at.warning[0].value
    disk.free()
    at.button(key="parley.w.img.unsaved.save").click().run()
    assert not at.exception, at.exception
    (saved,) = ImageStore(open_backend(data_dir), "local").list()
    assert saved.prompt == "A white lighthouse in a violent storm, oil painting"
    assert generations(openai_server, saved.prompt) == 1
