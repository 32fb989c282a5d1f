"""Conversation storage: migrations, CRUD, workspaces, search, token-count cache."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lib import export
from lib.conversations import ChatParams, ConversationStore, Message
from lib.errors import DatabaseCorrupt, InvalidInputError, NotFoundError
from lib.store import sqlite_schema as db

REPO = Path(__file__).resolve().parent.parent
# The names the code before the renumbering recorded, in the order it ran them.
OLD_NAMES = [
    ("0001_conversations", "0001_conversations"),
    ("0002_message_search", "0002_message_search"),
    ("0004_images", "0003_images"),
    ("0003_documents", "0004_documents"),
    ("0003_documents_drop_fts", "0005_documents_drop_fts"),
    ("0006_message_totals_index", "0006_message_totals_index"),
]


def test_blank_database_gets_every_migration_in_wal_mode(data_dir: Path) -> None:
    conn = db.connect(data_dir / "parley.db")
    assert db.applied_migrations(conn) == [m.name for m in db.MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.migrate(conn) == []  # safe to run twice


def test_upgrade_from_first_migration_keeps_data_and_indexes_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db.migrate(conn, db.MIGRATIONS[:1])  # a database from before full-text search
    conn.execute(
        "INSERT INTO conversations VALUES ('c1', 'local', 'chat', 'Old', 'm', '', '{}', 1, 1)"
    )
    conn.execute(
        "INSERT INTO messages (conversation_id, role, content, created_at) "
        "VALUES ('c1', 'user', 'pelicans migrate in winter', 1)"
    )
    conn.close()
    store = ConversationStore(path)
    hits = store.search("local", "pelicans")
    assert [h.conversation_id for h in hits] == ["c1"]
    assert "pelicans" in hits[0].snippet


def test_failed_migration_rolls_back_and_is_not_recorded(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)

    def bad(c: sqlite3.Connection) -> None:
        db.run_script(c, "CREATE TABLE b (y); SELEC oops;")

    steps = [db.Migration("0001_ok", lambda c: db.run_script(c, "CREATE TABLE a (x);")),
             db.Migration("0002_bad", bad)]  # fmt: skip
    with pytest.raises(sqlite3.Error):
        db.migrate(conn, steps)
    assert db.applied_migrations(conn) == ["0001_ok"]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "b" not in tables
    assert not conn.in_transaction


def test_migrations_are_numbered_in_the_order_they_run() -> None:
    names = [m.name for m in db.MIGRATIONS]
    assert [n[:4] for n in names] == [f"{i:04d}" for i in range(1, len(names) + 1)]
    assert names == [new for _, new in OLD_NAMES] + names[len(OLD_NAMES) :]
    with pytest.raises(ValueError, match="must sort after"):
        db.migration("0002_too_early")(lambda conn: None)
    assert [m.name for m in db.MIGRATIONS] == names


def old_database(path: Path, recorded: int) -> None:
    """A database as the code before the renumbering left it, `recorded` migrations in."""
    steps = {m.name: m for m in db.MIGRATIONS}
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for old, new in OLD_NAMES[:recorded]:
        steps[new].apply(conn)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 1)", (old,))
    conn.execute(
        "INSERT INTO conversations VALUES ('c1', 'local', 'chat', 'Kept', 'm', '', '{}', 1, 1)"
    )
    conn.close()


@pytest.mark.parametrize("recorded", range(1, len(OLD_NAMES) + 1))
def test_upgrade_renames_old_names_and_runs_only_the_missing(tmp_path: Path, recorded: int) -> None:
    path = tmp_path / "old.db"
    old_database(path, recorded)
    conn = sqlite3.connect(path, isolation_level=None)
    news = [new for _, new in OLD_NAMES]
    assert db.migrate(conn) == news[recorded:]  # nothing applied twice
    assert db.applied_migrations(conn) == [m.name for m in db.MIGRATIONS]
    assert db.migrate(conn) == []
    conn.close()
    assert ConversationStore(path).get("local", "c1").title == "Kept"


WORKER = """
import sys
from pathlib import Path
from lib.store import sqlite_schema as db
for line in sys.stdin:
    try:
        db.connect(Path(line.strip())).close()
        print("ok", flush=True)
    except Exception as exc:
        print("failed:", type(exc).__name__, exc, flush=True)
"""


def test_five_processes_opening_a_fresh_database_together_all_succeed(tmp_path: Path) -> None:
    # Before migrations took the write lock, 3 processes failed 1-3 of 5 trials with
    # "table ... already exists". Each worker is told the new file at the same moment.
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER], cwd=REPO, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(5)
    ]  # fmt: skip
    try:
        for trial in range(20):
            path = tmp_path / f"trial-{trial}.db"
            for worker in workers:
                worker.stdin.write(f"{path}\n")
            for worker in workers:
                worker.stdin.flush()
            answers = [worker.stdout.readline().strip() for worker in workers]
            assert answers == ["ok"] * 5, f"trial {trial}: {answers}"
            conn = sqlite3.connect(path)
            assert db.applied_migrations(conn) == [m.name for m in db.MIGRATIONS]
            conn.close()
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=30)


def test_a_database_deleted_while_running_is_migrated_again(data_dir: Path) -> None:
    path = data_dir / "parley.db"
    store = ConversationStore(path)
    store.create("local", model="m")
    db.connect(path).close()
    for file in data_dir.glob("parley.db*"):
        file.unlink()
    assert store.list("local") == []  # this thread's connection was to the deleted file
    store.create("local", model="m")
    conn = db.connect(path)
    assert db.applied_migrations(conn) == [m.name for m in db.MIGRATIONS]
    assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1


def test_a_corrupt_database_is_named_with_the_way_out(data_dir: Path) -> None:
    path = data_dir / "parley.db"
    data_dir.mkdir(parents=True)
    path.write_bytes(b"this is not SQLite " * 500)
    for open_it in (db.connect, db.thread_connection, db.check):
        with pytest.raises(DatabaseCorrupt, match="damaged") as caught:
            open_it(path)
        assert str(path) in str(caught.value) and "restore" in str(caught.value)
    path.rename(data_dir / "parley.db.damaged")  # the way out the message gives
    db.check(path)
    assert ConversationStore(path).list("local") == []


def test_conversation_lifecycle(store: ConversationStore) -> None:
    conv = store.create(
        "local",
        model="gpt-5",
        system_prompt="Be brief.",
        params=ChatParams(temperature=0.3, stop=["END"]),
    )
    store.add_message("local", conv.id, Message(role="user", content="What is   a  pelican?"))
    store.add_message("local", conv.id, Message(role="assistant", content="A bird."))
    loaded = store.get("local", conv.id)
    assert loaded.title == "What is a pelican?"  # titled from the first message
    assert loaded.params.temperature == 0.3 and loaded.params.stop == ["END"]
    assert [m.content for m in store.all_messages("local", conv.id)] == [
        "What is   a  pelican?",
        "A bird.",
    ]
    store.rename("local", conv.id, "Birds")
    assert store.get("local", conv.id).title == "Birds"
    store.delete("local", conv.id)
    with pytest.raises(NotFoundError):
        store.get("local", conv.id)


def test_list_is_newest_first(store: ConversationStore) -> None:
    first = store.create("local", model="m")
    second = store.create("local", model="m")
    store.add_message("local", first.id, Message(role="user", content="bump"))
    assert [c.id for c in store.list("local")] == [first.id, second.id]


def test_workspaces_are_isolated(store: ConversationStore) -> None:
    conv = store.create("alice", model="m")
    store.add_message("alice", conv.id, Message(role="user", content="secret plans"))
    assert store.list("bob") == []
    assert store.search("bob", "secret") == []
    for call in (
        lambda: store.get("bob", conv.id),
        lambda: store.recent_messages("bob", conv.id, 10),
        lambda: store.add_message("bob", conv.id, Message(role="user", content="x")),
        lambda: store.rename("bob", conv.id, "mine"),
        lambda: store.delete("bob", conv.id),
        lambda: store.totals("bob", conv.id),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert store.count_messages("alice", conv.id) == 1
    with pytest.raises(ValueError):
        store.list("")


def test_search_matches_prefixes_and_titles(store: ConversationStore) -> None:
    a = store.create("local", model="m")
    store.add_message("local", a.id, Message(role="user", content="Explain photosynthesis"))
    b = store.create("local", model="m", title="Tax return")
    assert [h.conversation_id for h in store.search("local", "photosynth")] == [a.id]
    assert [h.conversation_id for h in store.search("local", "tax")] == [b.id]
    assert store.search("local", '"unbalanced') == []  # quotes cannot break the query
    assert store.search("local", "   ") == []


def test_recent_window_and_paging(store: ConversationStore) -> None:
    conv = store.create("local", model="m")
    for i in range(25):
        store.add_message("local", conv.id, Message(role="user", content=f"m{i}"))
    last = store.recent_messages("local", conv.id, 10)
    assert [m.content for m in last] == [f"m{i}" for i in range(15, 25)]
    earlier = store.recent_messages("local", conv.id, 5, before_id=last[0].id)
    assert [m.content for m in earlier] == [f"m{i}" for i in range(10, 15)]


def test_token_count_cache_and_totals(store: ConversationStore) -> None:
    conv = store.create("local", model="m")
    user = store.add_message("local", conv.id, Message(role="user", content="hi"))
    store.add_message(
        "local",
        conv.id,
        Message(role="assistant", content="yo", prompt_tokens=10, completion_tokens=5, cost=0.25),
    )
    store.add_message(
        "local",
        conv.id,
        Message(
            role="assistant", content="again", prompt_tokens=20, completion_tokens=7, cost=None
        ),
    )
    store.cache_token_counts("local", conv.id, [(user.id, 4, "o200k_base")])
    cached = store.recent_messages("local", conv.id, 3)[0]
    assert (cached.tokens, cached.tokens_encoding) == (4, "o200k_base")
    totals = store.totals("local", conv.id)
    assert (totals.prompt_tokens, totals.completion_tokens, totals.replies) == (30, 12, 2)
    assert totals.cost == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (ChatParams(temperature=2.5), "Temperature"),
        (ChatParams(top_p=0), "top_p"),
        (ChatParams(max_tokens=0), "Max output tokens"),
        (ChatParams(n=9), "n must"),
        (ChatParams(stop=["a", "b", "c", "d", "e"]), "stop sequences"),
        (ChatParams(memory_rounds=-1), "memory window"),
    ],
)
def test_invalid_parameters_are_refused(
    store: ConversationStore, params: ChatParams, message: str
) -> None:
    conv = store.create("local", model="m")
    with pytest.raises(InvalidInputError, match=message):
        store.update_settings("local", conv.id, params=params)
    assert store.get("local", conv.id).params == ChatParams()


def test_export_markdown_and_json(store: ConversationStore) -> None:
    conv = store.create("local", model="gpt-5", system_prompt="Be kind.")
    store.add_message("local", conv.id, Message(role="user", content="Cite it"))
    store.add_message(
        "local",
        conv.id,
        Message(
            role="assistant",
            content="See [1].",
            status="stopped",
            meta={"citations": [{"file": "R-intro.pdf", "page": 12}]},
        ),
    )
    conv = store.get("local", conv.id)
    messages = store.all_messages("local", conv.id)
    md = export.to_markdown(conv, messages)
    assert "# Cite it" in md and "> **System:** Be kind." in md
    assert "## Assistant *(stopped)*" in md and "[1] R-intro.pdf, page 12" in md
    data = __import__("json").loads(export.to_json(conv, messages))
    assert data["messages"][1]["citations"] == [{"file": "R-intro.pdf", "page": 12}]
    assert data["system_prompt"] == "Be kind." and data["model"] == "gpt-5"
    assert export.filename(conv, "md") == "Cite-it.md"


def test_thread_connections_are_reused_per_thread_and_never_shared(data_dir: Path) -> None:
    import threading

    path = data_dir / "parley.db"
    first = db.thread_connection(path)
    assert db.thread_connection(path) is first
    other: list[sqlite3.Connection] = []
    worker = threading.Thread(target=lambda: other.append(db.thread_connection(path)))
    worker.start()
    worker.join()
    assert other[0] is not first
    first.execute("BEGIN")
    first.execute(
        "INSERT INTO conversations VALUES ('half', 'local', 'chat', 't', 'm', '', '{}', 1, 1)"
    )
    # A caller that failed mid-transaction must not leave its writes to the next caller.
    again = db.thread_connection(path)
    assert not again.in_transaction
    assert again.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
