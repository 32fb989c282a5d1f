"""The store layer's contract, on both backends: placeholders, rows, transactions that go
in whole or not at all, nested blocks on one connection, and files through the blob store."""

from __future__ import annotations

import threading

import pytest

from lib.errors import ConfigError, NotFoundError
from lib.store.backend import Backend, open_backend, redact_url
from lib.store.base import WorkspaceStore


def _add(conn, title: str, conv_id: str = "c1") -> None:  # noqa: ANN001
    conn.execute(
        "INSERT INTO conversations "
        "(id, workspace, kind, title, model, system_prompt, params, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (conv_id, "ws", "chat", title, "m", "", "{}", 1.0, 2.0),
    )


def test_rows_read_by_name_and_position_and_percent_signs_survive(backend: Backend) -> None:
    with backend.connection() as conn:
        _add(conn, "100% sure? yes")
        row = conn.execute(
            "SELECT id, title FROM conversations WHERE title LIKE ?", ("%sure%",)
        ).fetchone()
    assert (row[0], row["title"]) == ("c1", "100% sure? yes")
    assert dict(row) == {"id": "c1", "title": "100% sure? yes"}


def test_a_failed_transaction_leaves_nothing(backend: Backend) -> None:
    with pytest.raises(RuntimeError), backend.transaction() as conn:
        _add(conn, "kept?")
        raise RuntimeError("half-way")
    with backend.connection() as conn:
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0


def test_nested_blocks_share_the_connection_and_see_uncommitted_rows(backend: Backend) -> None:
    with backend.transaction() as outer:
        _add(outer, "inside")
        with backend.connection() as inner:
            assert inner.execute("SELECT title FROM conversations").fetchone()[0] == "inside"
        with pytest.raises(ValueError), backend.transaction() as nested:  # a savepoint
            _add(nested, "undone", "c2")
            raise ValueError
    with backend.connection() as conn:
        titles = [r[0] for r in conn.execute("SELECT title FROM conversations")]
    assert titles == ["inside"]


def test_threads_get_their_own_connections(backend: Backend) -> None:
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                with backend.transaction() as conn:
                    _add(conn, f"t{n}-{i}", f"c{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with backend.connection() as conn:
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 80


def test_blobs_round_trip_and_refuse_keys_that_leave_the_store(backend: Backend) -> None:
    store = WorkspaceStore(backend, "alice@example.com")
    key = store.blob_key("images", "abc.png")
    assert key.startswith("alice_example_com-") and key.endswith("/images/abc.png")
    backend.blobs.put(key, b"\x89PNG")
    assert backend.blobs.get(key) == b"\x89PNG" and backend.blobs.exists(key)
    assert list(backend.blobs.keys(key.split("/")[0])) == [key]
    backend.blobs.delete(key)
    with pytest.raises(NotFoundError):
        backend.blobs.get(key)
    for bad in ("../x", "/etc/passwd", "a//b", "a/./b", ""):
        with pytest.raises(ValueError):
            backend.blobs.put(bad, b"")


def test_a_store_refuses_an_empty_workspace(backend: Backend) -> None:
    with pytest.raises(ValueError):
        WorkspaceStore(backend, "")


@pytest.mark.parametrize(
    ("url", "blobs", "message"),
    [
        ("mysql://x/y", None, "must start with postgresql://"),
        (None, "database", "no PARLEY_DATABASE_URL"),
        ("postgresql://x/y", "s3", "PARLEY_BLOB_STORE"),
    ],
)
def test_bad_settings_say_what_to_set(tmp_path, url, blobs, message) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match=message):
        open_backend(tmp_path, url, blobs)


def test_a_password_never_appears_in_the_location() -> None:
    url = "postgresql://parley:s3cret@db.example:5432/parley"
    assert redact_url(url) == "postgresql://parley:***@db.example:5432/parley"


def test_an_array_literal_carries_any_string_or_integer(postgres, data_dir) -> None:  # noqa: ANN001
    """`postgres.array` (PostgreSQL's): ids passed as one literal (`?::text[]`) arrive
    exactly as given, whatever quotes, backslashes, commas or braces a caller's id holds."""
    from lib.store.postgres import PostgresBackend, array

    url = postgres.fresh_database()
    backend = PostgresBackend(data_dir, url)
    hostile = ['a"b', "c\\d", "e,f", "{g}", "", "NULL", "h'); DROP TABLE chunks; --", "é ü"]
    try:
        with backend.connection() as conn:
            assert conn.execute("SELECT ?::text[]", (array(hostile),)).fetchone()[0] == hostile
            numbers = conn.execute("SELECT ?::bigint[]", (array([1, -2, 3]),)).fetchone()[0]
        assert numbers == [1, -2, 3]
    finally:
        backend.close()
        postgres.drop(url)


def test_plain_rows_are_tuples_and_the_next_statement_reads_by_name(postgres, data_dir) -> None:  # noqa: ANN001
    """`PgConnection.execute(plain=True)` (retrieval's statements that read hundreds of
    rows) gives plain tuples, binary or not; the connection's other statements still get
    rows readable by name."""
    from lib.store.postgres import PostgresBackend

    url = postgres.fresh_database()
    backend = PostgresBackend(data_dir, url)
    try:
        with backend.connection() as conn:
            _add(conn, "t")
            plain = conn.execute("SELECT id, title FROM conversations", plain=True).fetchall()
            raw = conn.execute("SELECT ?::bytea", (b"\x00\xff",), binary=True, plain=True)
            row = conn.execute("SELECT id, title FROM conversations").fetchone()
        assert plain == [("c1", "t")] and type(plain[0]) is tuple
        assert raw.fetchone() == (b"\x00\xff",)
        assert row["title"] == "t"
    finally:
        backend.close()
        postgres.drop(url)
