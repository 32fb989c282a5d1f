"""`python -m lib.cli migrate-store`: a data directory with two workspaces (conversations,
messages, documents with vectors, images, preferences) moved into a real PostgreSQL,
checked by the command itself and again here through the PostgreSQL stores; a rerun
copies nothing, a run stopped half-way is completed by the next, tampering is caught,
and a bad target or a damaged source is refused with a message, not a traceback."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image

from lib.conversations import ConversationStore, Message
from lib.documents.embeddings import normalise
from lib.errors import ConfigError, DatabaseCorrupt, DatabaseUnavailable
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GenerationResult, Usage, checked_image
from lib.preferences import Preferences
from lib.store.backend import Backend, forget_backends, open_backend
from lib.store.base import WorkspaceStore
from lib.store.migrate import MigrationError, MigrationReport, Tally, describe, migrate_store
from tests.postgres import TestPostgres as PostgresServer
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent
WORKSPACES = ("local", "u_alice")
MODEL = "text-embedding-test"
DIM = 8


# The source: a data directory as the app leaves it


def png(size: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def add_document(
    backend: Backend,
    workspace: str,
    doc_id: str,
    texts: list[str],
    *,
    legacy: bool,
    model: str | None,
) -> None:
    """A document as the library stores it: the file, its row, a page, chunks, and (with
    a model) each chunk's vector in the embedding cache, deliberately not unit length.
    `legacy`: `stored_as` is a bare name in `documents/<digest>/`, as before the store layer."""
    data = ("\n\n".join(texts) + f"\n({workspace})\n").encode()
    name = f"{doc_id}.md"
    if legacy:
        folder = hashlib.sha256(workspace.encode()).hexdigest()[:32]
        stored_as, key = name, f"documents/{folder}/{name}"
    else:
        stored_as = key = WorkspaceStore(backend, workspace).blob_key("documents", name)
    backend.blobs.put(key, data)
    rng = np.random.default_rng(len(doc_id) + len(workspace))
    with backend.transaction() as conn:
        conn.execute(
            "INSERT INTO documents (id, workspace, name, sha256, size, kind, stored_as, status, "
            "report, tokens, embedding_model, created_at, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, 'markdown', ?, 'ready', '{}', ?, ?, 1.5, 2.5)",
            (doc_id, workspace, f"Notes {doc_id}.md", hashlib.sha256(data).hexdigest(),
             len(data), stored_as, 10 * len(texts), model),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO document_pages VALUES (?, 1, 1, '1', ?, ?)", (doc_id, 10, data.decode())
        )
        for i, text in enumerate(texts):
            digest = hashlib.sha256(text.encode()).hexdigest()
            conn.execute(
                'INSERT INTO chunks (document_id, page, label, start, "end", tokens, hash, text) '
                "VALUES (?, 1, '1', ?, ?, 10, ?, ?)",
                (doc_id, i * 100, i * 100 + len(text), digest, text),
            )
            if model:
                vector = (rng.normal(size=DIM) * 3).astype("<f4").tobytes()
                conn.execute(
                    "INSERT OR IGNORE INTO embedding_cache VALUES (?, ?, ?, ?)",
                    (workspace, model, digest, vector),
                )


def fill(backend: Backend) -> None:
    for n, workspace in enumerate(WORKSPACES):
        store = ConversationStore(backend, workspace)
        first = store.create(model="gpt-test", system_prompt=f"You are terse ({workspace}).")
        store.add_message(first.id, Message(role="user", content=f"Where do herons nest? {n}"))
        store.add_message(
            first.id,
            Message(
                role="assistant",
                content="In colonies, high in trees: 100% of the time? No.",
                model="gpt-test",
                prompt_tokens=12,
                completion_tokens=30,
                usage_exact=True,
                cost=0.0012,
                meta={"finish": "stop"},
            ),
        )
        second = store.create(model="gpt-test", kind="documents")
        for i in range(3):
            store.add_message(second.id, Message(role="user", content=f"Rowing question {i}"))
        request = default_request(f"a heron at dawn {n}", "gpt-image-2")
        images = [checked_image(png(1024, (20, 90, 160))), checked_image(png(64, (200, 30, 30)))]
        ImageStore(backend, workspace).save(
            GenerationResult(request, images, Usage(5, 272), 0.04, 1.5), conversation_id=first.id
        )
        texts = [f"Herons nest in colonies ({workspace}).", "They fish at dawn.", "Oars."]
        add_document(backend, workspace, f"d{n}a", texts, legacy=True, model=MODEL)
        rowing = [f"Rowing at dawn ({workspace}).", "Feathering the oar."]
        add_document(backend, workspace, f"d{n}b", rowing, legacy=False, model=MODEL)
        add_document(backend, workspace, f"d{n}c", ["Keyword only."], legacy=False, model=None)
        with backend.connection() as conn:
            conn.execute("INSERT INTO conversation_documents VALUES (?, ?)", (second.id, f"d{n}a"))
            conn.execute("INSERT INTO document_chats VALUES (?, 'auto', 6)", (second.id,))
        Preferences(backend, workspace).put("http://localhost:11434/v1", model="llama3")


@pytest.fixture
def source(data_dir: Path) -> Iterator[Path]:
    fill(open_backend(data_dir))
    yield data_dir
    forget_backends()


@pytest.fixture
def target(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.fresh_database()
    yield url
    forget_backends()
    postgres.drop(url)


def sqlite_rows(data_dir: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(data_dir / "parley.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def pg_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


TABLES = [
    "conversations", "messages", "images", "documents", "document_pages", "chunks",
    "embedding_cache", "conversation_documents", "document_chats", "preferences",
]  # fmt: skip


def checks(report: MigrationReport) -> dict[str, list[bool]]:
    found: dict[str, list[bool]] = {}
    for check in report.checks:
        found.setdefault(check.item, []).append(check.ok)
    return found


# Moving


def test_everything_moves_is_checked_and_reads_back_through_the_stores(
    source: Path, target: str
) -> None:
    report = migrate_store(source, target)

    assert report.ok, describe(report)
    assert {t: checks(report)[t] for t in TABLES} == {t: [True] for t in TABLES}
    assert checks(report)["files"] == checks(report)["vectors"] == [True]
    for table in TABLES:  # counted again here, not only by the command
        [(want,)] = sqlite_rows(source, f"SELECT count(*) FROM {table}")
        assert pg_rows(target, f"SELECT count(*) FROM {table}") == [(want,)], table
        assert want > 0, table
    tallies = {t.item: t for t in report.tallies}
    assert tallies["messages"].copied == 10 and tallies["messages"].present == 0
    assert tallies["files"].copied == 2 * (3 + 3)  # per workspace: 2 images, 1 thumb, 3 docs
    assert tallies["vectors"].copied == 2 * (3 + 2)  # the keyword-only document has none

    sqlite, pg = open_backend(source), open_backend(source, target)
    for workspace in WORKSPACES:
        before, after = ConversationStore(sqlite, workspace), ConversationStore(pg, workspace)
        convs = before.list()
        assert [c.id for c in after.list()] == [c.id for c in convs] and len(convs) == 2
        for conv in convs:
            assert after.get(conv.id) == conv
            assert after.all_messages(conv.id) == before.all_messages(conv.id)
        assert [h.conversation_id for h in after.search("herons")] == [convs[-1].id]
        old, new = ImageStore(sqlite, workspace), ImageStore(pg, workspace)
        assert new.list() == old.list() and len(new.list()) == 2
        for image in new.list():
            assert new.read(image) == old.read(image) and new.preview(image) == old.preview(image)
        assert Preferences(pg, workspace).get("http://localhost:11434/v1").model == "llama3"
    for doc_id, stored_as, workspace in sqlite_rows(
        source, "SELECT id, stored_as, workspace FROM documents"
    ):
        key = stored_as if "/" in stored_as else (
            f"documents/{hashlib.sha256(workspace.encode()).hexdigest()[:32]}/{stored_as}"
        )  # fmt: skip
        assert pg.blobs.get(key) == sqlite.blobs.get(key), doc_id

    cached = dict(
        sqlite_rows(
            source,
            "SELECT c.id, e.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN embedding_cache e ON e.workspace = d.workspace AND e.model = d.embedding_model "
            "AND e.hash = c.hash",
        )
    )
    moved = pg_rows(target, "SELECT chunk_id, model, dim, embedding::text FROM chunk_vectors")
    assert {r[0] for r in moved} == set(cached) and {(r[1], r[2]) for r in moved} == {(MODEL, DIM)}
    for chunk_id, _, _, text in moved:
        want = normalise(np.frombuffer(cached[chunk_id], dtype="<f4")[None, :])[0]
        got = np.array(text.strip("[]").split(","), dtype=np.float32)
        np.testing.assert_array_equal(got, want)  # unit length, as in the FAISS index

    # New rows on PostgreSQL get new ids: the sequences moved past the copied ones.
    conv = ConversationStore(pg, "local").list()[0]
    added = ConversationStore(pg, "local").add_message(conv.id, Message("user", "After the move"))
    assert added.id > max(r[0] for r in sqlite_rows(source, "SELECT id FROM messages"))


def test_a_second_run_copies_nothing_and_says_so(source: Path, target: str) -> None:
    first = migrate_store(source, target)
    again = migrate_store(source, target)

    assert first.ok and again.ok and first.copied > 0
    assert again.copied == 0
    assert {t.item: t.present for t in again.tallies} == {t.item: t.copied for t in first.tallies}
    assert "Nothing to copy: everything was already there" in describe(again)


def test_a_run_stopped_half_way_is_completed_by_the_next(source: Path, target: str) -> None:
    batches = []

    def stop_in_the_middle_of_messages(tally: Tally) -> None:
        batches.append(tally.item)
        if tally.item == "messages" and batches.count("messages") == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, after two batches of messages

    with pytest.raises(KeyboardInterrupt):
        migrate_store(source, target, batch_size=3, progress=stop_in_the_middle_of_messages)
    assert pg_rows(target, "SELECT count(*) FROM messages") == [(6,)]  # two whole batches
    assert pg_rows(target, "SELECT count(*) FROM blobs") == [(0,)]

    finished = migrate_store(source, target, batch_size=3)

    assert finished.ok, describe(finished)
    tallies = {t.item: t for t in finished.tallies}
    assert (tallies["messages"].copied, tallies["messages"].present) == (4, 6)
    assert tallies["conversations"].copied == 0
    assert migrate_store(source, target).copied == 0


def test_the_command_line_moves_reports_and_exits_zero(source: Path, target: str) -> None:
    done = cli("migrate-store", "--to", target, "--data-dir", str(source))

    assert done.returncode == 0, done.stderr
    assert "✗" not in done.stdout
    for table in TABLES:
        assert any(line.startswith(f"  ✓ {table} ") for line in done.stdout.splitlines()), table
    assert "✓ files" in done.stdout and "every SHA-256 matches" in done.stdout
    assert "messages: 10 copied, 0 already there" in done.stderr  # progress, as it goes

    again = cli("migrate-store", "--data-dir", str(source), env={"PARLEY_DATABASE_URL": target})
    assert again.returncode == 0 and "Nothing to copy" in again.stdout


# Catching what does not match


def tamper_message(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE messages SET content = 'changed' WHERE id = 1")


def tamper_file(url: str) -> None:
    with psycopg.connect(url) as conn:  # the bytes change, the recorded SHA-256 does not
        conn.execute("UPDATE blobs SET data = 'x' WHERE key = (SELECT min(key) FROM blobs)")


def tamper_vector(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE chunk_vectors SET embedding = embedding + embedding WHERE chunk_id = 1"
        )


def add_foreign_row(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO conversations VALUES ('elsewhere', 'local', 'chat', 't', 'm', '', "
            "'{}', 1, 2)"
        )


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (tamper_message, "messages"),
        (tamper_file, "files"),
        (tamper_vector, "vectors"),
        (add_foreign_row, "conversations"),
    ],
)
def test_a_target_that_no_longer_matches_fails_its_check(
    source: Path,
    target: str,
    change: Callable[[str], None],
    failed: str,
) -> None:
    assert migrate_store(source, target).ok
    change(target)

    report = migrate_store(source, target)

    assert not report.ok
    assert [item for item, oks in checks(report).items() if not all(oks)] == [failed]
    assert f"✗ {failed}" in describe(report) and "1 check(s) failed" in describe(report)


def test_a_chunk_without_a_saved_vector_is_reported_not_dropped(source: Path, target: str) -> None:
    conn = sqlite3.connect(source / "parley.db")
    with conn:
        conn.execute(
            "DELETE FROM embedding_cache WHERE hash = (SELECT hash FROM chunks "
            "WHERE document_id = 'd1b' ORDER BY id LIMIT 1) AND workspace = 'u_alice'"
        )
    conn.close()

    report = migrate_store(source, target)

    assert not report.ok
    [failed] = [c for c in report.checks if not c.ok]
    assert failed.item == "vectors" and "1 chunks have no saved vector" in failed.detail
    assert "Notes d1b.md (u_alice): 1" in failed.detail
    assert pg_rows(target, "SELECT count(*) FROM chunk_vectors") == [(9,)]


def test_a_file_missing_from_the_data_directory_is_reported(source: Path, target: str) -> None:
    [(thumb,)] = sqlite_rows(source, "SELECT thumb FROM images WHERE thumb IS NOT NULL LIMIT 1")
    (source / thumb).unlink()

    report = migrate_store(source, target)

    assert [c.item for c in report.checks if not c.ok] == ["files"]
    [failed] = [c for c in report.checks if not c.ok]
    assert "1 files the rows name are missing from the data directory" in failed.detail
    assert thumb in failed.detail
    assert {t.item: t.copied for t in report.tallies}["files"] == 11


def test_files_kept_in_the_data_directory_are_checked_not_copied(source: Path, target: str) -> None:
    report = migrate_store(source, target, "local")

    assert report.ok and report.files_kept_locally
    [files] = [c for c in report.checks if c.item == "files"]
    assert "12 files kept in" in files.detail and "PARLEY_BLOB_STORE=local" in files.detail
    assert pg_rows(target, "SELECT count(*) FROM blobs") == [(0,)]


# Refusing


def garbage_database(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "parley.db").write_bytes(b"this is not a database" * 100)


def damaged_pages(data_dir: Path) -> None:
    fill(open_backend(data_dir))
    forget_backends()
    path = data_dir / "parley.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data), page):  # every page after the schema's
        data[start + 8 : start + 64] = b"\xff" * 56
    path.write_bytes(bytes(data))


def orphan_rows(data_dir: Path) -> None:
    fill(open_backend(data_dir))
    forget_backends()
    conn = sqlite3.connect(data_dir / "parley.db")  # foreign keys off, as in a bare sqlite3
    with conn:
        conn.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at) "
            "VALUES ('gone', 'user', 'orphan', 1)"
        )
    conn.close()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (garbage_database, "is damaged"),
        (damaged_pages, "is damaged"),
        (orphan_rows, "rows that refer to rows no longer there: 1 in messages"),
    ],
)
def test_a_damaged_source_is_refused_and_nothing_copied(
    data_dir: Path,
    target: str,
    make: Callable[[Path], None],
    why: str,
) -> None:
    make(data_dir)

    with pytest.raises(DatabaseCorrupt, match=why) as caught:
        migrate_store(data_dir, target)

    assert "restore" in caught.value.hint
    assert pg_rows(target, "SELECT count(*) FROM conversations") == [(0,)]


@pytest.mark.parametrize(
    ("url", "error", "says"),
    [
        (None, ConfigError, "Say which PostgreSQL database"),
        ("", ConfigError, "Say which PostgreSQL database"),
        ("mysql://root:secret@db/parley", ConfigError, "must be a postgresql:// URL"),
        ("data/parley.db", ConfigError, "must be a postgresql:// URL"),
        ("postgresql://parley:secret@127.0.0.1:1/parley", DatabaseUnavailable, "Could not"),
    ],
)
def test_a_target_that_is_not_a_reachable_postgresql_is_refused(
    source: Path, url: str | None, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says) as caught:
        migrate_store(source, url)
    assert "secret" not in str(caught.value)


def test_a_database_that_does_not_exist_is_refused(source: Path, postgres: PostgresServer) -> None:
    with pytest.raises(DatabaseUnavailable, match="Could not"):
        migrate_store(source, postgres.url("no_such_database"))


def test_a_target_missing_a_column_is_refused_before_anything_is_copied(
    source: Path, target: str
) -> None:
    with psycopg.connect(target) as conn:
        conn.execute("ALTER TABLE images DROP COLUMN background")

    with pytest.raises(MigrationError, match="no column background in the table images"):
        migrate_store(source, target)

    assert pg_rows(target, "SELECT count(*) FROM conversations") == [(0,)]


def test_there_is_nothing_to_move_without_a_database(data_dir: Path, target: str) -> None:
    with pytest.raises(ConfigError, match="has no parley.db"):
        migrate_store(data_dir, target)
    assert not (data_dir / "parley.db").exists()  # not created by looking


# The command line: one line and exit 1, never a traceback


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return subprocess.run(
        [sys.executable, "-m", "lib.cli", *args],
        cwd=REPO,
        env={**base, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8", **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=WAIT * 2,
    )


def test_the_command_line_refuses_an_unreachable_server_in_one_line(source: Path) -> None:
    url = "postgresql://parley:secret@127.0.0.1:1/parley"
    done = cli("migrate-store", "--to", url, "--data-dir", str(source))

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: Could not reach the database at postgresql://parley:***@")
    assert "Traceback" not in done.stderr and "secret" not in done.stderr


def test_the_command_line_refuses_a_damaged_source_in_one_line(data_dir: Path, target: str) -> None:
    garbage_database(data_dir)
    done = cli("migrate-store", "--to", target, "--data-dir", str(data_dir))

    assert done.returncode == 1 and "is damaged" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_mismatch_makes_the_command_exit_non_zero(source: Path, target: str) -> None:
    assert migrate_store(source, target).ok
    tamper_message(target)

    done = cli("migrate-store", "--to", target, "--data-dir", str(source))

    assert done.returncode == 1
    assert "  ✗ messages" in done.stdout and "✗ 1 check(s) failed" in done.stdout


def test_backup_of_a_postgresql_deployment_points_to_pg_dump(
    source: Path, target: str, tmp_path: Path
) -> None:
    done = cli(
        "backup", str(tmp_path / "backup"), "--data-dir", str(source),
        env={"PARLEY_DATABASE_URL": target},
    )  # fmt: skip

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "keeps its data in PostgreSQL" in done.stderr and "pg_dump" in done.stderr
    assert not (tmp_path / "backup").exists()
