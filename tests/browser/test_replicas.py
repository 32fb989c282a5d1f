"""Two replicas of Parley on one PostgreSQL, as a team server behind a load balancer runs
them: what one replica saves, the other serves, and sessions spread over both keep to
themselves.

The replicas (tests/replicas.py) are two `streamlit run` processes with their own data
directories, so nothing reaches B from A except through the database. Each sends its own
API key, so the fake server's records say which replica asked for what.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lib.conversations import ConversationStore
from lib.store.backend import forget_backends, open_backend
from tests import postgres as pg
from tests.fake_openai import FakeOpenAI
from tests.replicas import ChatSession, Replicas, files_on_disk, sent_by

pytestmark = pytest.mark.browser

SESSIONS = 20
ROUNDS = 2
TOKEN = re.compile(r"tok\d\d[0-9a-f]{8}")
ALLOWED_ON_DISK = {"prices.toml"}  # each replica's own price table; nothing else


@pytest.fixture
def replicas(
    tmp_path: Path, postgres: pg.TestPostgres, browser_server: FakeOpenAI
) -> Iterator[Replicas]:
    url = postgres.fresh_database()
    started = Replicas(
        tmp_path / "replicas", url, browser_server, env={"PARLEY_CHAT_MODEL": "gpt-5-mini"}
    )
    yield started
    started.stop()
    forget_backends()
    postgres.drop(url)


def question(token: str, round_: int) -> str:
    return f"Session {token} asks question {round_}"


def test_twenty_sessions_over_two_replicas_keep_to_themselves(
    replicas: Replicas, browser_server: FakeOpenAI, tmp_path: Path
) -> None:
    """20 sessions at once, alternating between the replicas (as a load balancer would
    spread them), each chatting in a conversation of its own in the one local workspace."""
    browser_server.chunk_delay = 0.05  # each reply streams for about half a second
    tokens = [f"tok{i:02d}{uuid.uuid4().hex[:8]}" for i in range(SESSIONS)]
    results: dict[str, tuple[str | None, list[str], list[str]]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(SESSIONS)

    def converse(index: int, token: str) -> None:
        try:
            with ChatSession(replicas[index % len(replicas)].url) as session:
                session.run()
                start.wait()  # every session is open before any sends: the streams overlap
                for round_ in range(ROUNDS):
                    session.chat(question(token, round_))
                results[token] = (session.conversation_id, session.texts(), session.exceptions())
        except BaseException as exc:  # reported below, with the replicas' logs
            failures.append(exc)
            start.abort()

    threads = [
        threading.Thread(target=converse, args=(i, t), name=f"session-{i}")
        for i, t in enumerate(tokens)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"{failures!r}\n{replicas.logs()[-5000:]}"

    store = ConversationStore(open_backend(tmp_path / "reader", replicas.database_url), "local")
    assert len(store.list()) == SESSIONS
    for index, token in enumerate(tokens):
        cid, texts, exceptions = results[token]
        assert exceptions == []
        # What the session was shown holds its own messages only (the sidebar, which lists
        # the whole workspace's conversations, is left out).
        assert set(TOKEN.findall(" ".join(texts))) == {token}
        expected = []
        for round_ in range(ROUNDS):
            expected += [
                ("user", question(token, round_)),
                ("assistant", f"Echo: {question(token, round_)}"),
            ]
        saved = store.all_messages(cid)
        assert [(m.role, m.content) for m in saved] == expected, f"session {index}"
        assert all(m.status == "ok" for m in saved)

    # Each request to the model carried one session's history only, and came from the
    # replica that session was on.
    chats = browser_server.requests_to("/chat/completions")
    assert len(chats) == SESSIONS * ROUNDS
    for request in chats:
        sent = " ".join(str(m["content"]) for m in request.json["messages"])
        (token,) = set(TOKEN.findall(sent))
        assert sent_by(request) == "ab"[tokens.index(token) % 2]
    assert browser_server.errors == []
    assert "Traceback" not in replicas.logs()
    for replica in replicas:
        assert set(files_on_disk(replica)) <= ALLOWED_ON_DISK
