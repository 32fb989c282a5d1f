"""What walking a conversation's tree costs, on SQLite and PostgreSQL, as a path grows.

A conversation is a tree of messages (`lib/conversations.py`): the transcript, the prompt
and the exports read the path that ends at the conversation's leaf by a recursive query,
one primary-key step per message. This times, for a path of N messages (half of its
replies with a second version beside them, so the tree holds 1.25 N rows):

- `window`: `recent_messages(cid, 21)`, what a rerun of the Chat page reads (20 shown, one
  more to know whether there are earlier ones), then `siblings` for those 20;
- `length`: `path_length(cid)`, the whole path counted (the prompt asks it only when the
  path is longer than the memory window);
- `switch`: `show_branch` on the first message's other version, which walks its subtree.

against `flat`: the same 21 messages read by id from a conversation with no tree (the
query the transcript made before branches). PostgreSQL runs in a fresh database of the
tests' real server (`tests/postgres.py`, local Unix socket).

    .venv/bin/python bench/branches.py [--sizes 100,1000,10000] [--repeat 20]
        [--backends sqlite,postgresql]

Prints the median milliseconds of each operation per backend and size, and `window/flat`,
the ratio of a rerun's read with the tree to one without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lib.conversations import ConversationStore, Message  # noqa: E402
from lib.store.backend import Backend, forget_backends, open_backend  # noqa: E402
from tests.postgres import TestPostgres  # noqa: E402


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def grow(store: ConversationStore, size: int) -> tuple[str, int]:
    """A path of `size` messages, every other reply with a second version off the path;
    the first message also has a second version (returned) with one reply under it."""
    conv = store.create(model="m")
    first = store.add_message(conv.id, Message("user", "q0"))
    store.add_message(conv.id, Message("assistant", "a0"))
    for i in range(1, size // 2):
        question = store.add_message(conv.id, Message("user", f"question {i}"))
        store.add_message(conv.id, Message("assistant", f"answer {i}"))
        if i % 2:
            other = Message("assistant", f"other answer {i}")
            store.add_message(conv.id, other, parent=question.id, current=False)
    other_first = store.add_message(
        conv.id, Message("user", "q0 again"), parent=first.parent_id, current=False
    )
    store.add_message(
        conv.id, Message("assistant", "a0 again"), parent=other_first.id, current=False
    )
    return conv.id, other_first.id


def flat_window(store: ConversationStore, cid: str) -> None:
    with store.backend.connection() as conn:
        conn.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT 21", (cid,)
        ).fetchall()


def measure(name: str, backend: Backend, sizes: list[int], repeat: int) -> None:
    store = ConversationStore(backend, "local")
    for size in sizes:
        figures = measure_size(store, size, repeat)
        shown = "  ".join(f"{k} {v:7.2f} ms" for k, v in figures.items())
        ratio = figures["window"] / figures["flat"]
        print(f"{name:10} N={size:>6}  {shown}  window/flat {ratio:.1f}")


def measure_size(store: ConversationStore, size: int, repeat: int) -> dict[str, float]:
    cid, other = grow(store, size)
    leaf = store.get(cid).leaf_id

    def window() -> None:
        store.siblings(cid, store.recent_messages(cid, 21)[1:])

    def switch() -> None:
        store.show_branch(cid, other)
        store.set_leaf(cid, leaf)

    return {
        "flat": median_ms(lambda: flat_window(store, cid), repeat),
        "window": median_ms(window, repeat),
        "length": median_ms(lambda: store.path_length(cid), repeat),
        "switch": median_ms(switch, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    names = args.backends.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in names:
            measure("SQLite", open_backend(Path(tmp)), sizes, args.repeat)
        if "postgresql" in names:
            server = TestPostgres().start()
            try:
                measure(
                    "PostgreSQL",
                    open_backend(Path(tmp), server.fresh_database()),
                    sizes,
                    args.repeat,
                )
            finally:
                forget_backends()
                server.stop()


if __name__ == "__main__":
    main()
