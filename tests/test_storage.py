"""Conversation storage: SQLite's migrations and files, then the store on both backends
(CRUD, workspaces, search, the token-count cache)."""

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
from lib.store.backend import Backend, open_backend

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


def sqlite_store(path: Path, workspace: str = "local") -> ConversationStore:
    """A store on the SQLite file `path` (its directory is the data directory)."""
    assert path.name == "parley.db"
    return ConversationStore(open_backend(path.parent), workspace)


def test_upgrade_from_first_migration_keeps_data_and_indexes_it(tmp_path: Path) -> None:
    path = tmp_path / "old" / "parley.db"
    path.parent.mkdir()
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
    hits = sqlite_store(path).search("pelicans")
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
    path = tmp_path / "old" / "parley.db"
    path.parent.mkdir()
    old_database(path, recorded)
    conn = sqlite3.connect(path, isolation_level=None)
    names = [m.name for m in db.MIGRATIONS]  # the renumbered ones, then any added since
    assert db.migrate(conn) == names[recorded:]  # nothing applied twice
    assert db.applied_migrations(conn) == [m.name for m in db.MIGRATIONS]
    assert db.migrate(conn) == []
    conn.close()
    assert sqlite_store(path).get("c1").title == "Kept"


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
    store = sqlite_store(path)
    store.create(model="m")
    db.connect(path).close()
    for file in data_dir.glob("parley.db*"):
        file.unlink()
    assert store.list() == []  # this thread's connection was to the deleted file
    store.create(model="m")
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
    assert sqlite_store(path).list() == []


# The store, on both backends


def test_a_store_needs_a_workspace(backend: Backend) -> None:
    for missing in ("", None):
        with pytest.raises(ValueError, match="workspace is required"):
            ConversationStore(backend, missing)  # type: ignore[arg-type]


def test_conversation_lifecycle(store: ConversationStore) -> None:
    conv = store.create(
        model="gpt-5", system_prompt="Be brief.", params=ChatParams(temperature=0.3, stop=["END"])
    )
    question = store.add_message(conv.id, Message(role="user", content="What is   a  pelican?"))
    answer = store.add_message(
        conv.id, Message(role="assistant", content="A bird.", usage_exact=True, cost=0.5)
    )
    loaded = store.get(conv.id)
    assert loaded.title == "What is a pelican?"  # titled from the first message
    assert loaded.workspace == "local" and loaded.updated_at >= conv.updated_at
    assert loaded.params.temperature == 0.3 and loaded.params.stop == ["END"]
    saved = store.all_messages(conv.id)
    assert [m.content for m in saved] == ["What is   a  pelican?", "A bird."]
    assert [m.id for m in saved] == [question.id, answer.id]  # the ids RETURNING gave
    assert saved[1].usage_exact is True and saved[1].cost == 0.5
    store.rename(conv.id, "Birds")
    assert store.get(conv.id).title == "Birds"
    store.delete(conv.id)
    with pytest.raises(NotFoundError):
        store.get(conv.id)
    with pytest.raises(NotFoundError):
        store.all_messages(conv.id)


def test_list_is_newest_first_and_filters_by_kind(store: ConversationStore) -> None:
    first = store.create(model="m")
    second = store.create(model="m")
    papers = store.create(model="m", kind="documents")
    store.add_message(first.id, Message(role="user", content="bump"))
    assert [c.id for c in store.list()] == [first.id, papers.id, second.id]
    assert [c.id for c in store.list(kind="chat")] == [first.id, second.id]
    assert [c.id for c in store.list(limit=1)] == [first.id]


def test_a_message_is_saved_with_its_conversations_title_or_not_at_all(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = store.create(model="m")

    def no_title(text: str) -> str:
        raise RuntimeError("after the insert, before the title")

    monkeypatch.setattr("lib.conversations._title_from", no_title)
    with pytest.raises(RuntimeError):
        store.add_message(conv.id, Message(role="user", content="lost together"))
    assert store.all_messages(conv.id) == [] and store.get(conv.id).title == "New chat"


def alices(backend: Backend) -> tuple[ConversationStore, str, int]:
    alice = ConversationStore(backend, "alice")
    conv = alice.create(model="m", title="Alice's")
    message = alice.add_message(
        conv.id, Message(role="assistant", content="secret plans", status="streaming")
    )
    return alice, conv.id, message.id


# What another workspace tries with alice's ids: each call must find nothing.
FOREIGN = {
    "get": lambda s, cid, mid: s.get(cid),
    "recent_messages": lambda s, cid, mid: s.recent_messages(cid, 10),
    "all_messages": lambda s, cid, mid: s.all_messages(cid),
    "count_messages": lambda s, cid, mid: s.count_messages(cid),
    "totals": lambda s, cid, mid: s.totals(cid),
    "add_message": lambda s, cid, mid: s.add_message(cid, Message("user", "x")),
    "update_message": lambda s, cid, mid: s.update_message(cid, Message("user", "x", id=mid)),
    "cache_token_counts": lambda s, cid, mid: s.cache_token_counts(cid, [(mid, 1, "x")]),
    "delete_messages_from": lambda s, cid, mid: s.delete_messages_from(cid, mid),
    "clear_messages": lambda s, cid, mid: s.clear_messages(cid),
    "rename": lambda s, cid, mid: s.rename(cid, "mine"),
    "update_settings": lambda s, cid, mid: s.update_settings(cid, model="mine"),
    "delete": lambda s, cid, mid: s.delete(cid),
}


@pytest.mark.parametrize("call", FOREIGN.values(), ids=FOREIGN.keys())
def test_another_workspace_cannot_reach_a_conversation(backend: Backend, call) -> None:  # noqa: ANN001
    alice, cid, mid = alices(backend)
    bob = ConversationStore(backend, "bob")
    with pytest.raises(NotFoundError):
        call(bob, cid, mid)
    (message,) = alice.all_messages(cid)
    assert (message.content, message.tokens) == ("secret plans", None)
    assert alice.get(cid).title == "Alice's" and alice.get(cid).model == "m"


def test_another_workspace_sees_nothing_and_changes_no_streaming_reply(backend: Backend) -> None:
    alice, cid, mid = alices(backend)
    bob = ConversationStore(backend, "bob")
    assert bob.list() == [] and bob.search("secret") == [] and bob.search("alice") == []
    assert bob.update_streaming(cid, mid, content="overwritten", status="failed") is False
    (message,) = alice.all_messages(cid)
    assert (message.content, message.status) == ("secret plans", "streaming")
    assert alice.update_streaming(cid, mid, content="secret plans, more") is True
    assert alice.all_messages(cid)[0].content == "secret plans, more"


def test_search_matches_word_prefixes_and_titles(store: ConversationStore) -> None:
    a = store.create(model="m")
    store.add_message(a.id, Message(role="user", content="Explain photosynthesis in plants"))
    b = store.create(model="m", title="Tax return 2025")
    c = store.create(model="m")
    store.add_message(c.id, Message(role="user", content="Plants need light"))
    assert [h.conversation_id for h in store.search("photosynth")] == [a.id]
    assert [h.conversation_id for h in store.search("PLANT photo")] == [a.id]  # every word
    assert {h.conversation_id for h in store.search("plants")} == {a.id, c.id}
    assert [h.conversation_id for h in store.search("tax")] == [b.id]  # by title
    assert [h.conversation_id for h in store.search("RETURN")] == [b.id]  # in any case
    assert store.search("   ") == [] and store.search("nothing-like-it") == []


def test_a_snippet_marks_the_match_and_says_where_the_message_goes_on(
    store: ConversationStore,
) -> None:
    conv = store.create(model="m")
    words = " ".join(f"word{i}" for i in range(40))
    store.add_message(conv.id, Message(role="user", content=f"{words} pelican {words}"))
    (hit,) = store.search("pelic")
    assert "**pelican**" in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…")
    assert len(hit.snippet.split()) <= 14  # a dozen words or so, not the whole message
    short = store.create(model="m")
    store.add_message(short.id, Message(role="user", content="Explain photosynthesis"))
    assert [h.snippet for h in store.search("photosynthesis")] == ["Explain **photosynthesis**"]


@pytest.mark.parametrize(
    "query",
    [
        "a & | ! ( ) : * '",
        "'pelican' | 'heron'",
        "pelican:* & !heron",
        "pelican <-> heron",
        '"unbalanced',
        "NEAR(pelican heron)",
        "pelican OR heron AND NOT x",
        "col:pelican",
        "back\\slash'quote",
        "%",
        "_",
    ],
)
def test_query_syntax_in_a_search_is_plain_text(store: ConversationStore, query: str) -> None:
    conv = store.create(model="m", title="100% of_them")
    store.add_message(conv.id, Message(role="user", content="A pelican and a heron"))
    other = store.create(model="m", title="Plain")
    store.add_message(other.id, Message(role="user", content="Nothing here"))
    hits = store.search(query)  # never a syntax error
    assert other.id not in {h.conversation_id for h in hits}


def test_search_finds_what_the_words_say_and_no_more(store: ConversationStore) -> None:
    conv = store.create(model="m", title="100% of_them")
    store.add_message(
        conv.id, Message(role="user", content="Don't e-mail O'Reilly about version 1.5")
    )
    found = {
        q: bool(store.search(q))
        for q in ["don't", "e-mail", "o'reilly", "1.5", "%", "of_", "100%", "&", "0%o", "o_t"]
    }
    assert found == {
        "don't": True,
        "e-mail": True,
        "o'reilly": True,
        "1.5": True,
        "%": True,  # in the title, taken literally
        "of_": True,
        "100%": True,
        "&": False,  # no word and no title holds it
        "0%o": False,  # "%" is not a wildcard
        "o_t": False,  # nor is "_"
    }


def test_search_filters_by_kind(store: ConversationStore) -> None:
    chat = store.create(model="m")
    store.add_message(chat.id, Message(role="user", content="pelicans"))
    papers = store.create(model="m", kind="documents", title="Pelican papers")
    store.add_message(papers.id, Message(role="user", content="pelicans in the paper"))
    assert {h.conversation_id for h in store.search("pelican")} == {chat.id, papers.id}
    assert [h.conversation_id for h in store.search("pelican", kind="chat")] == [chat.id]
    assert [h.conversation_id for h in store.search("papers", kind="documents")] == [papers.id]
    assert store.search("papers", kind="chat") == []


def test_recent_window_and_paging(store: ConversationStore) -> None:
    conv = store.create(model="m")
    for i in range(25):
        store.add_message(conv.id, Message(role="user", content=f"m{i}"))
    last = store.recent_messages(conv.id, 10)
    assert [m.content for m in last] == [f"m{i}" for i in range(15, 25)]
    earlier = store.recent_messages(conv.id, 5, before_id=last[0].id)
    assert [m.content for m in earlier] == [f"m{i}" for i in range(10, 15)]
    assert store.count_messages(conv.id) == 25
    assert store.delete_messages_from(conv.id, last[5].id) == 5
    assert store.recent_messages(conv.id, 1)[0].content == "m19"
    assert store.clear_messages(conv.id) == 20 and store.all_messages(conv.id) == []


def test_token_count_cache_and_totals(store: ConversationStore) -> None:
    conv = store.create(model="m")
    user = store.add_message(conv.id, Message(role="user", content="hi"))
    store.add_message(
        conv.id,
        Message(role="assistant", content="yo", prompt_tokens=10, completion_tokens=5, cost=0.25),
    )
    store.add_message(
        conv.id,
        Message(
            role="assistant", content="again", prompt_tokens=20, completion_tokens=7, cost=None
        ),
    )
    store.cache_token_counts(conv.id, [(user.id, 4, "o200k_base")])
    cached = store.recent_messages(conv.id, 3)[0]
    assert (cached.tokens, cached.tokens_encoding) == (4, "o200k_base")
    totals = store.totals(conv.id)
    assert (totals.prompt_tokens, totals.completion_tokens, totals.replies) == (30, 12, 2)
    assert totals.cost == pytest.approx(0.25) and totals.unpriced == 1


def test_a_saved_reply_is_never_overwritten_by_a_late_streaming_update(
    store: ConversationStore,
) -> None:
    conv = store.create(model="m")
    row = store.add_message(conv.id, Message("assistant", "part", status="streaming"))
    assert store.update_streaming(conv.id, row.id, content="partial", meta={"k": 1}) is True
    row.content, row.status = "the whole reply", "ok"
    store.update_message(conv.id, row)
    assert store.update_streaming(conv.id, row.id, content="late") is False
    (saved,) = store.all_messages(conv.id)
    assert (saved.content, saved.status) == ("the whole reply", "ok")


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
    conv = store.create(model="m")
    with pytest.raises(InvalidInputError, match=message):
        store.update_settings(conv.id, params=params)
    assert store.get(conv.id).params == ChatParams()


def test_export_markdown_and_json(store: ConversationStore) -> None:
    conv = store.create(model="gpt-5", system_prompt="Be kind.")
    store.add_message(conv.id, Message(role="user", content="Cite it"))
    store.add_message(
        conv.id,
        Message(
            role="assistant",
            content="See [1].",
            status="stopped",
            meta={"citations": [{"file": "R-intro.pdf", "page": 12}]},
        ),
    )
    conv = store.get(conv.id)
    messages = store.all_messages(conv.id)
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
        "INSERT INTO conversations "
        "(id, workspace, kind, title, model, system_prompt, params, created_at, updated_at) "
        "VALUES ('half', 'local', 'chat', 't', 'm', '', '{}', 1, 1)"
    )
    # A caller that failed mid-transaction must not leave its writes to the next caller.
    again = db.thread_connection(path)
    assert not again.in_transaction
    assert again.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
