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
from playwright.sync_api import Page, expect

from lib.conversations import ConversationStore
from lib.store.backend import forget_backends, open_backend
from tests import doc_samples as samples
from tests import postgres as pg
from tests.browser.conftest import rerun
from tests.browser.session import bubbles, chat, conversation_id, goto, sidebar
from tests.fake_openai import FakeOpenAI
from tests.replicas import ChatSession, Replicas, files_on_disk, sent_by

pytestmark = pytest.mark.browser

SESSIONS = 20
ROUNDS = 2
TOKEN = re.compile(r"tok\d\d[0-9a-f]{8}")
ALLOWED_ON_DISK = {"prices.toml"}  # each replica's own price table; nothing else
VIEWPORT = {"width": 1400, "height": 1000}
QUESTION = "How do I compute the eigenvalues of a symmetric matrix?"
ANSWER = "Call eigen() on the matrix [1]; its values component holds the eigenvalues [1]."
PICTURE = "a lighthouse at dusk, oil painting"
DECODED = "img => img.complete && img.naturalWidth > 0"


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


def decoded(image) -> bool:  # noqa: ANN001 - a playwright Locator
    image.page.wait_for_function(DECODED, arg=image.element_handle())
    return image.evaluate(DECODED)


def tiles(page: Page):  # noqa: ANN201 - a Playwright Locator
    return page.locator('[class*="st-key-img-tile-"]')


def test_what_replica_a_saves_replica_b_serves(
    replicas: Replicas,
    browser_server: FakeOpenAI,
    open_page,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    """The same user (the one local workspace) chats, uploads a document and makes an
    image on A; on B they find the conversation, get an answer from the document that B
    retrieved itself, and see the image."""
    a, b = replicas[0], replicas[1]
    on_a = open_page(a.url)
    chat(on_a, "Hello from replica A")
    cid = conversation_id(on_a)

    goto(on_a, "Documents")
    pdf = tmp_path / "eigen.pdf"
    pdf.write_bytes(samples.pdf_of_pages([30, 31, 32]))
    on_a.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(pdf))
    with rerun(on_a):
        on_a.get_by_role("button", name=re.compile(r"Index 1 file")).click()
    expect(on_a.get_by_test_id("stAlertContentSuccess")).to_contain_text("eigen.pdf: 3 pages")

    goto(on_a, "Images")
    on_a.get_by_label("Prompt", exact=True).fill(PICTURE)
    with rerun(on_a):
        on_a.get_by_role("button", name="Generate", exact=True).click()
    expect(tiles(on_a).filter(has_text=PICTURE)).to_have_count(1)
    assert {sent_by(r) for r in browser_server.requests} == {"a"}

    # B: the conversation, by its link, and carried on there with A's history.
    on_b = open_page(f"{b.url}/?c={cid}")
    expect(bubbles(on_b).nth(0)).to_contain_text("Hello from replica A")
    expect(bubbles(on_b).nth(1)).to_contain_text("Echo: Hello from replica A")
    expect(sidebar(on_b)).to_contain_text("Hello from replica A")
    chat(on_b, "And hello from replica B")
    last = browser_server.requests_to("/chat/completions")[-1]
    assert sent_by(last) == "b"
    assert [m["content"] for m in last.json["messages"]][-3:] == [
        "Hello from replica A",
        "Echo: Hello from replica A",
        "And hello from replica B",
    ]

    # B: the document A indexed, searched by B (its own query embedding, its own search).
    goto(on_b, "Documents")
    expect(on_b.get_by_text(re.compile(r"3 pages · \d+ chunks"))).to_be_visible()
    with rerun(on_b):
        on_b.get_by_text("Passages only").click()
    browser_server.script(ANSWER, chunk_size=6, chunk_delay=0.03)
    box = on_b.get_by_test_id("stChatInputTextArea")
    box.fill(QUESTION)
    with rerun(on_b):
        box.press("Enter")
    answer = on_b.get_by_test_id("stChatMessage").last
    expect(answer).to_contain_text(
        re.compile(r"Call eigen\(\) on the matrix \[1 · eigen\.pdf p\. \d\]")
    )
    expect(on_b.get_by_test_id("stProgress").last).to_contain_text(
        re.compile(r"Retrieval: \d+ passages")
    )
    embedded = [
        r for r in browser_server.requests_to("/embeddings") if QUESTION in str(r.json["input"])
    ]
    assert embedded and {sent_by(r) for r in embedded} == {"b"}
    asked = browser_server.requests_to("/chat/completions")[-1]
    assert sent_by(asked) == "b"
    assert "eigen(" in asked.json["messages"][0]["content"]

    # B: the image A made, drawn from the bytes in the database.
    goto(on_b, "Images")
    tile = tiles(on_b).filter(has_text=PICTURE)
    expect(tile).to_have_count(1)
    assert decoded(tile.locator("img"))

    for page in (on_a, on_b):
        expect(page.get_by_test_id("stException")).to_have_count(0)
    assert browser_server.errors == []
    assert "Traceback" not in replicas.logs()
    for replica in replicas:
        assert set(files_on_disk(replica)) <= ALLOWED_ON_DISK


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
