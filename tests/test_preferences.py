"""The model and system prompt each user last chose per server (lib/preferences.py), on
both backends: kept per workspace and server, no credentials stored, concurrent saves
lose nothing, a bounded number of servers, and the JSON files of earlier versions read
in once."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from lib.preferences import MAX_SERVERS, Preferences, ServerChoice, legacy_path
from lib.store.backend import Backend

LOCAL = "http://localhost:8080/v1"


def rows(backend: Backend) -> list[dict]:
    with backend.connection() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM preferences ORDER BY server")]


def test_choices_are_kept_per_workspace_and_server(backend: Backend) -> None:
    alice, bob = Preferences(backend, "alice"), Preferences(backend, "bob")
    assert alice.get(LOCAL) == ServerChoice()
    alice.put(LOCAL, model="tiny", system_prompt="Be brief.")
    alice.put(LOCAL + "/", system_prompt="")  # cleared, model kept
    alice.put(None, model="gpt-5.4-mini")  # no URL: OpenAI's
    alice.put(LOCAL, model="")  # no model chosen: the last one stays
    bob.put(LOCAL, model="other")
    assert Preferences(backend, "alice").get(LOCAL) == ServerChoice("tiny", "")
    assert alice.get("https://api.openai.com/v1").model == "gpt-5.4-mini"
    assert bob.get(LOCAL) == ServerChoice("other", None)


def test_no_credentials_are_stored(backend: Backend) -> None:
    prefs = Preferences(backend, "alice@example.com")
    prefs.put("http://user:s3cret@gpu-box:8000/v1?key=k", model="m")
    assert prefs.get("http://gpu-box:8000/v1").model == "m"
    stored = json.dumps(rows(backend))
    assert "s3cret" not in stored and "key=k" not in stored and "user" not in stored


def test_an_empty_workspace_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="workspace"):
        Preferences(backend, "")


def test_only_the_most_recent_servers_are_kept(backend: Backend) -> None:
    prefs = Preferences(backend, "alice")
    Preferences(backend, "bob").put("http://host-0/v1", model="bob's")
    for i in range(MAX_SERVERS + 3):
        prefs.put(f"http://host-{i}/v1", model=f"m{i}")
    prefs.put("http://host-3/v1", system_prompt="used again")  # now the most recent
    prefs.put("http://extra/v1", model="x")
    assert prefs.get("http://host-0/v1") == ServerChoice()
    assert prefs.get("http://host-4/v1") == ServerChoice()
    assert prefs.get("http://host-3/v1") == ServerChoice("m3", "used again")
    assert prefs.get(f"http://host-{MAX_SERVERS + 2}/v1").model == f"m{MAX_SERVERS + 2}"
    assert sum(r["workspace"] == "alice" for r in rows(backend)) == MAX_SERVERS
    assert Preferences(backend, "bob").get("http://host-0/v1").model == "bob's"


def test_concurrent_saves_from_two_sessions_lose_nothing(backend: Backend) -> None:
    """Two sessions (each its own store, as two pages would have) save at once: every
    server is kept, and on one server both one's model and the other's prompt."""
    urls = [f"http://host-{i}:8000/v1" for i in range(24)]
    start = threading.Barrier(2)

    def session(n: int) -> None:
        prefs = Preferences(backend, "alice")
        start.wait()
        for url in urls[n::2]:
            prefs.put(url, model=url[7:14])
            if n == 0:
                prefs.put(LOCAL, model="from-0")
            else:
                prefs.put(LOCAL, system_prompt="from-1")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(session, range(2)))
    prefs = Preferences(backend, "alice")
    assert [prefs.get(url).model for url in urls] == [url[7:14] for url in urls]
    assert prefs.get(LOCAL) == ServerChoice("from-0", "from-1")


def write_legacy(backend: Backend, workspace: str, servers: dict) -> None:
    path = legacy_path(backend.data_dir, workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "servers": servers}))


def test_an_earlier_versions_file_is_read_in_once(backend: Backend) -> None:
    write_legacy(
        backend,
        "alice",
        {
            "http://localhost:8080/v1": {"model": "tiny", "system_prompt": "Be brief.", "at": 2.0},
            "https://api.openai.com/v1": {"model": "gpt-5.4-mini", "at": 1.0},
            "http://broken/v1": "not an entry",
        },
    )
    write_legacy(backend, "bob", {LOCAL: {"model": "bob's", "at": 1.0}})
    alice = Preferences(backend, "alice")
    assert alice.get(LOCAL) == ServerChoice("tiny", "Be brief.")
    assert alice.get(None) == ServerChoice("gpt-5.4-mini", None)
    path = legacy_path(backend.data_dir, "alice")
    assert not path.exists() and path.with_name(path.name + ".imported").exists()
    # Read once: a later choice is not undone by a second reading, even of a file put back.
    alice.put(LOCAL, model="newer")
    path.with_name(path.name + ".imported").rename(path)
    assert Preferences(backend, "alice").get(LOCAL) == ServerChoice("newer", "Be brief.")
    assert len([r for r in rows(backend) if r["workspace"] == "alice"]) == 2
    # Bob's file is his own, and waits for his first use.
    assert [r["workspace"] for r in rows(backend)] == ["alice", "alice"]
    assert Preferences(backend, "bob").get(LOCAL).model == "bob's"


@pytest.mark.parametrize("content", ["{not json", "[]", '{"servers": 7}', ""])
def test_an_unreadable_file_counts_as_none(backend: Backend, content: str) -> None:
    path = legacy_path(backend.data_dir, "alice")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    prefs = Preferences(backend, "alice")
    assert prefs.get(None) == ServerChoice()
    prefs.put(None, model="n")
    assert prefs.get(None).model == "n"
    assert not path.exists()
