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
import openai
import psycopg
import pytest
from PIL import Image

from lib.conversations import ConversationStore, Message
from lib.documents.embeddings import Embedder, normalise
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.errors import ConfigError, DatabaseCorrupt, DatabaseUnavailable
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GenerationResult, Usage, checked_image
from lib.preferences import Preferences
from lib.store.backend import Backend, forget_backends, open_backend
from lib.store.migrate import MigrationError, MigrationReport, Tally, describe, migrate_store
from tests.fake_openai import FakeOpenAI
from tests.postgres import TestPostgres as PostgresServer
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent
WORKSPACES = ("local", "u_alice")
MODEL = "text-embedding-3-small"  # the fake server's: 256 dimensions
OLD_MODEL = "text-embedding-ada-002"  # the legacy documents'
OLD_DIM = 8
NOTES = "".join(f"# Field notes {i}\n\nThe heron nests by the river in spring {i}.\n\n"
              for i in range(40)).encode()  # fmt: skip
ROWING = "".join(f"# Rowing {i}\n\nA sculler feathers the blade on stroke {i}.\n\n"
               for i in range(40)).encode()  # fmt: skip


# The source: a data directory as the app leaves it


def png(size: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def add_legacy_document(backend: Backend, workspace: str, doc_id: str, texts: list[str]) -> None:
    """A document as the library stored it before the store layer, which the library no
    longer writes: `stored_as` a bare name in `documents/<digest>/`, embedded by an older
    model whose cached vectors are deliberately not unit length."""
    data = ("\n\n".join(texts) + f"\n({workspace})\n").encode()
    folder = hashlib.sha256(workspace.encode()).hexdigest()[:32]
    backend.blobs.put(f"documents/{folder}/{doc_id}.md", data)
    rng = np.random.default_rng(len(workspace))
    with backend.transaction() as conn:
        conn.execute(
            "INSERT INTO documents (id, workspace, name, sha256, size, kind, stored_as, status, "
            "report, tokens, embedding_model, created_at, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, 'markdown', ?, 'ready', '{}', ?, ?, 1.5, 2.5)",
            (doc_id, workspace, f"Notes {doc_id}.md", hashlib.sha256(data).hexdigest(),
             len(data), f"{doc_id}.md", 10 * len(texts), OLD_MODEL),
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
            vector = (rng.normal(size=OLD_DIM) * 3).astype("<f4").tobytes()
            conn.execute(
                "INSERT INTO embedding_cache VALUES (?, ?, ?, ?)",
                (workspace, OLD_MODEL, digest, vector),
            )


def fill(backend: Backend, client: openai.OpenAI | None) -> None:
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
        add_legacy_document(backend, workspace, f"d{n}a", texts)
        library = DocumentLibrary(backend, workspace)
        embedder = Embedder(client, MODEL, cache=library.cache) if client else None
        for name, data, by in (("rowing.md", ROWING, embedder), ("keywords.md", NOTES, None)):
            report = Ingestor(library, by, limit_bytes=1 << 30).ingest(name, data + name.encode())
            assert report.status == "indexed", report.message
        library.set_conversation_documents(second.id, [f"d{n}a"])
        library.set_chat_settings(second.id, "auto", 6)
        Preferences(backend, workspace).put("http://localhost:11434/v1", model="llama3")


@pytest.fixture
def source(data_dir: Path, openai_server: FakeOpenAI) -> Iterator[Path]:
    client = openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test")
    fill(open_backend(data_dir), client)
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


def assert_documents_match(old: DocumentLibrary, new: DocumentLibrary) -> None:
    """The same documents, files, pages and chunks, and the same passages found by meaning
    and by keyword, on PostgreSQL (pgvector, BM25 postings) as on SQLite (FAISS, BM25)."""
    docs = old.list()
    assert new.list() == docs and len(docs) == 3
    ids = [d.id for d in docs]
    assert new.pages(ids) == old.pages(ids)
    chunk_ids = [int(i) for i in old.chunk_ids(ids)]
    assert new.chunks(chunk_ids) == old.chunks(chunk_ids)
    rowing = next(d for d in docs if d.name == "rowing.md")
    for doc in docs:
        assert new.read_file(doc) == old.read_file(doc)
    first, *_ = new.chunk_texts(rowing.id)[0]
    [(blob,)] = sqlite_rows(
        old.backend.data_dir,
        "SELECT e.vector FROM chunks c JOIN embedding_cache e ON e.hash = c.hash "
        f"WHERE c.id = {first} AND e.workspace = '{old.workspace}' AND e.model = '{MODEL}'",
    )
    query = normalise(np.frombuffer(blob, dtype="<f4")[None, :])[0]
    found = new.search.vectors(MODEL, query, ids, 3)
    assert found[0][0] == first and found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [i for i, _ in found] == [i for i, _ in old.search.vectors(MODEL, query, ids, 3)]
    assert new.search.keywords("heron nests river", ids, 3)


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
    [(embedded,)] = sqlite_rows(
        source,
        "SELECT count(*) FROM chunks WHERE document_id IN "
        "(SELECT id FROM documents WHERE embedding_model IS NOT NULL)",
    )
    tallies = {t.item: t for t in report.tallies}
    assert tallies["messages"].copied == 10 and tallies["messages"].present == 0
    assert tallies["files"].copied == 2 * (3 + 3)  # per workspace: 2 images, 1 thumb, 3 docs
    assert tallies["vectors"].copied == embedded > 2 * 3  # the keyword-only ones have none

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
        assert_documents_match(DocumentLibrary(sqlite, workspace), DocumentLibrary(pg, workspace))

    cached = dict(
        sqlite_rows(
            source,
            "SELECT c.id, e.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN embedding_cache e ON e.workspace = d.workspace AND e.model = d.embedding_model "
            "AND e.hash = c.hash",
        )
    )
    moved = pg_rows(target, "SELECT chunk_id, model, dim, embedding::text FROM chunk_vectors")
    assert {r[0] for r in moved} == set(cached)
    assert {(r[1], r[2]) for r in moved} == {(MODEL, 256), (OLD_MODEL, OLD_DIM)}
    for chunk_id, _, _, text in moved:
        want = normalise(np.frombuffer(cached[chunk_id], dtype="<f4")[None, :])[0]
        got = np.array(text.strip("[]").split(","), dtype=np.float32)
        np.testing.assert_array_equal(got, want)  # unit length, as in the FAISS index
    hnsw = pg_rows(target, "SELECT indexdef FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'")
    assert len(hnsw) == 2, hnsw  # one per (model, dimension), as on a first upload

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
    [(embedded,)] = sqlite_rows(
        source,
        "SELECT count(*) FROM chunks WHERE document_id IN "
        "(SELECT id FROM documents WHERE embedding_model IS NOT NULL)",
    )
    conn = sqlite3.connect(source / "parley.db")
    with conn:
        conn.execute(
            "DELETE FROM embedding_cache WHERE workspace = 'u_alice' AND hash = ?",
            (hashlib.sha256(b"They fish at dawn.").hexdigest(),),
        )
    conn.close()

    report = migrate_store(source, target)

    assert not report.ok
    [failed] = [c for c in report.checks if not c.ok]
    assert failed.item == "vectors" and "1 chunks have no saved vector" in failed.detail
    assert "Notes d1a.md (u_alice): 1" in failed.detail
    assert pg_rows(target, "SELECT count(*) FROM chunk_vectors") == [(embedded - 1,)]


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
    fill(open_backend(data_dir), None)
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
    fill(open_backend(data_dir), None)
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
