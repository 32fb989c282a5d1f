"""How much time Parley's chat path adds to a streamed reply, against the raw openai SDK,
on each storage backend: SQLite (the embedded default) and PostgreSQL.

All paths talk to the same in-process FakeOpenAI, which waits 100 ms before the first
token (a stand-in for a real provider's latency) and then streams a reply of a few hundred
characters in 4-character chunks. Each round runs Parley on every backend, then the raw SDK
(ABC ABC...), so drift in the machine's speed hits all alike.

- Parley: `lib.chat.send(ctx, cid, text)` and iterating the `Reply`, which saves the user
  message, reads and trims the history, counts tokens, streams, prices the reply and saves
  it. On SQLite in a temporary data directory; on PostgreSQL in a fresh database of the
  tests' real server (`tests/postgres.py`, PostgreSQL 18 on a local Unix socket, so no
  network round trip is counted: a hosted database adds its latency per statement).
- Raw SDK: `client.chat.completions.create(stream=True, stream_options=...)` with the same
  history kept in a Python list, iterating the chunks.

The conversations first grow to `--history` rounds (untimed, which also warms tiktoken and
the connection pools), and all remember that many rounds, so every timed request carries
the same history: `--history` rounds plus the new question.

    .venv/bin/python bench/chat_overhead.py [--rounds 30] [--history 20] [--profile]
        [--backends sqlite,postgresql]

Prints the medians, Parley's added milliseconds and `ratio: X` (Parley / raw) for the time
to first token, one per backend; the target is a ratio of at most 1.05 on each.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from lib import chat  # noqa: E402
from lib.client import build_client  # noqa: E402
from lib.conversations import ChatParams, ConversationStore  # noqa: E402
from lib.pricing import PriceTable  # noqa: E402
from lib.settings import resolve_settings  # noqa: E402
from lib.store.backend import Backend, forget_backends, open_backend  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402
from tests.postgres import TestPostgres  # noqa: E402

MODEL = "gpt-5-mini"
WORKSPACE = "bench"
TARGET_RATIO = 1.05
REPLY = (
    "Here is a short plan. First, **measure** before you change anything: time the slow "
    "path with a profiler and note the three biggest costs. Second, fix the largest one "
    "and measure again, because the second-biggest often shrinks with it. Third, write "
    "the figures down next to the commit, so the next person knows what *normal* looks "
    "like.\n\n```python\nstart = time.perf_counter()\nrun()\nprint(time.perf_counter() - "
    "start)\n```\n\nIf the numbers are noisy, take the median of many runs, not the mean."
)
QUESTIONS = [
    "How should I approach speeding up a slow report?",
    "What if the profiler shows most time in the database?",
    "Can you give an example of batching those queries?",
    "How do I know the fix did not break anything?",
]


@dataclass
class Timing:
    """Seconds from the user's message to each point of one round."""

    sent: float  # the request left Parley (or the app) for the SDK
    first: float  # first token
    last: float  # last token
    done: float  # the iteration ended (for Parley: the reply is priced and saved)


def question(i: int) -> str:
    return f"{QUESTIONS[i % len(QUESTIONS)]} (round {i})"


def mark_requests(client: openai.OpenAI) -> list[float]:
    """Note when each chat request is handed to the SDK (both paths are wrapped alike)."""
    marks: list[float] = []
    completions = client.chat.completions
    create = completions.create

    def marked(*args: Any, **kwargs: Any) -> Any:
        marks.append(time.perf_counter())
        return create(*args, **kwargs)

    completions.create = marked  # type: ignore[method-assign]
    return marks


def timed(pieces: Iterator[str], start: float, marks: list[float]) -> Timing:
    """Consume a text stream, noting when its first and last piece arrived."""
    first = last = None
    for piece in pieces:
        if piece:
            last = time.perf_counter()
            first = first or last
    done = time.perf_counter()
    if first is None or last is None:
        raise RuntimeError("the reply had no text")
    return Timing(marks[-1] - start, first - start, last - start, done - start)


class ParleyPath:
    """Parley's lib path: a store on one backend and a client built as the app does."""

    def __init__(self, server: FakeOpenAI, backend: Backend, memory_rounds: int) -> None:
        settings = resolve_settings(
            {}, {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": server.base_url}, {}
        )
        store = ConversationStore(backend, WORKSPACE)
        params = ChatParams(memory_rounds=memory_rounds)
        client = build_client(settings)
        self.marks = mark_requests(client)
        prices = PriceTable.load(backend.data_dir)
        self.ctx = chat.ChatContext(store, client, prices, settings.provider)
        self.cid = store.create(model=MODEL, params=params).id

    def round(self, text: str) -> Timing:
        start = time.perf_counter()
        return timed(iter(chat.send(self.ctx, self.cid, text)), start, self.marks)


class Statements:
    """When each PostgreSQL statement was sent and how long Parley waited for it:
    `PgConnection.execute` and `executemany` wrapped, so a round's statements can be
    counted by phase. Each one is a round trip to the server, which on a hosted database
    costs its network latency, and on a loaded machine a wait for the CPU on both sides."""

    def __init__(self) -> None:
        from lib.store import postgres

        self.spans: list[tuple[float, float]] = []
        for name in ("execute", "executemany"):
            setattr(postgres.PgConnection, name, self._noted(getattr(postgres.PgConnection, name)))

    def _noted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def noted(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.spans.append((began, time.perf_counter()))

        return noted

    def per_phase(self, start: float, timing: Timing) -> tuple[int, int, int, float]:
        """Statements sent before the request, while streaming and after the last token,
        and the seconds spent waiting for those before the request."""
        sent, last, done = (start + t for t in (timing.sent, timing.last, timing.done))
        before = [(a, b) for a, b in self.spans if start <= a < sent]
        return (
            len(before),
            sum(sent <= a < last for a, _ in self.spans),
            sum(last <= a <= done for a, _ in self.spans),
            sum(b - a for a, b in before),
        )


class CountedPath:
    """A ParleyPath whose rounds also count the PostgreSQL statements they sent."""

    def __init__(self, parley: ParleyPath, statements: Statements) -> None:
        self.parley, self.statements = parley, statements
        self.counts: list[tuple[int, int, int, float]] = []

    def round(self, text: str) -> Timing:
        self.statements.spans.clear()
        start = time.perf_counter()
        timing = self.parley.round(text)
        self.counts.append(self.statements.per_phase(start, timing))
        return timing


class RawPath:
    """The raw SDK, with the history in a list as a minimal chat app keeps it."""

    def __init__(self, server: FakeOpenAI, memory_rounds: int) -> None:
        self.client = openai.OpenAI(base_url=server.base_url, api_key="sk-bench")
        self.marks = mark_requests(self.client)
        self.messages: list[dict[str, str]] = []
        self.memory_rounds = memory_rounds

    def round(self, text: str) -> Timing:
        start = time.perf_counter()
        self.messages.append({"role": "user", "content": text})
        # The window Parley's memory setting keeps: the last rounds and the new question.
        window = self.messages[-(2 * self.memory_rounds + 1) :]
        stream = self.client.chat.completions.create(
            model=MODEL,
            messages=window,
            stream=True,
            stream_options={"include_usage": True},
        )
        reply: list[str] = []

        def pieces() -> Iterator[str]:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.index == 0 and choice.delta.content:
                        reply.append(choice.delta.content)
                        yield choice.delta.content

        result = timed(pieces(), start, self.marks)
        self.messages.append({"role": "assistant", "content": "".join(reply)})
        return result


def run_round(server: FakeOpenAI, path: Callable[[str], Timing], text: str) -> Timing:
    server.script(REPLY, chunk_size=4)
    return path(text)


def measure(
    server: FakeOpenAI, parleys: dict[str, Any], raw: RawPath, rounds: int, offset: int
) -> tuple[dict[str, list[Timing]], list[Timing]]:
    """Each round: Parley on every backend, then the raw SDK, on the same question."""
    a: dict[str, list[Timing]] = {name: [] for name in parleys}
    b: list[Timing] = []
    for i in range(rounds):
        text = question(offset + i)
        for name, parley in parleys.items():
            a[name].append(run_round(server, parley.round, text))
        b.append(run_round(server, raw.round, text))
    return a, b


def median_ms(timings: list[Timing], value: Callable[[Timing], float]) -> float:
    return statistics.median(value(t) for t in timings) * 1000


ROWS: list[tuple[str, Callable[[Timing], float]]] = [
    ("time to first token", lambda t: t.first),
    ("time to last token", lambda t: t.last),
    ("  until the request", lambda t: t.sent),
    ("  request to 1st token", lambda t: t.first - t.sent),
    ("  first to last token", lambda t: t.last - t.first),
    ("  after the last token", lambda t: t.done - t.last),
]


def report(parleys: dict[str, list[Timing]], raw: list[Timing]) -> dict[str, tuple[float, float]]:
    """The table (one Parley column per backend, each with its added ms and ratio) and, per
    backend, the ratio of medians and the median of per-round ratios."""
    title = f"median of {len(raw)} rounds"
    head = "".join(f"{name:>11}{'added':>9}{'ratio':>7}" for name in parleys)
    print(f"{title:<24}{head}{'raw SDK':>10}")
    for label, value in ROWS:
        r = median_ms(raw, value)
        cells = ""
        for timings in parleys.values():
            p = median_ms(timings, value)
            ratio = f"{p / r:>7.3f}" if not label.startswith(" ") else " " * 7
            cells += f"{p:>9.1f}ms{p - r:>+7.1f}ms{ratio}"
        print(f"{label:<24}{cells}{r:>8.1f}ms")
    spreads = [
        f"{name} {q[0]:.1f}..{q[-1]:.1f} ms"
        for name, q in (
            (n, statistics.quantiles([t.first * 1000 for t in s], n=10))
            for n, s in [*parleys.items(), ("raw", raw)]
        )
    ]
    print("first token p10..p90: " + ", ".join(spreads))
    results = {}
    for name, timings in parleys.items():
        ratio = median_ms(timings, ROWS[0][1]) / median_ms(raw, ROWS[0][1])
        # Each Parley round and the raw round of the same round run back to back, so their
        # ratio cancels load that changes between rounds; far from `ratio`, it says the
        # machine was busy.
        paired = statistics.median(p.first / r.first for p, r in zip(timings, raw, strict=True))
        results[name] = (ratio, paired)
    return results


def profile(server: FakeOpenAI, parley: Any, rounds: int, offset: int) -> None:
    """Where Parley's own time goes: cProfile over more rounds, sorted by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(rounds):
        run_round(server, parley.round, question(offset + i))
    profiler.disable()
    print(
        f"\ncProfile of {rounds} Parley rounds (top 25 by internal time; socket waits are "
        "the fake server's 100 ms, and the SDK's own request building is shared by both paths):"
    )
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per path")
    parser.add_argument("--history", type=int, default=20, help="rounds remembered")
    parser.add_argument("--first-token-delay", type=float, default=0.1, help="seconds")
    parser.add_argument("--profile", action="store_true", help="also profile Parley's path")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if not names or set(names) - {"sqlite", "postgresql"}:
        parser.error("--backends takes sqlite and/or postgresql")

    postgres = TestPostgres().start() if "postgresql" in names else None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp,
            FakeOpenAI(first_token_delay=args.first_token_delay) as server,
        ):
            data_dir = Path(tmp)
            os.environ["PARLEY_DATA_DIR"] = str(data_dir)  # nothing may touch the real data/
            parleys: dict[str, Any] = {}
            if "sqlite" in names:
                parleys["SQLite"] = ParleyPath(server, open_backend(data_dir), args.history)
            if postgres is not None:
                backend = open_backend(data_dir, postgres.fresh_database())
                counted = CountedPath(ParleyPath(server, backend, args.history), Statements())
                parleys["PostgreSQL"] = counted
            raw = RawPath(server, args.history)
            measure(server, parleys, raw, args.history, 0)
            print(
                f"FakeOpenAI: {args.first_token_delay * 1000:.0f} ms to first token, "
                f"{len(REPLY)}-character reply in 4-character chunks; every request carries "
                f"{args.history} rounds of history ({2 * args.history + 1} messages).\n"
            )
            if postgres is not None:
                counted.counts.clear()
            timings = measure(server, parleys, raw, args.rounds, args.history)
            for name, (ratio, paired) in report(*timings).items():
                print(
                    f"ratio on {name}: {ratio:.3f} (target <= {TARGET_RATIO}: "
                    f"{'met' if ratio <= TARGET_RATIO else 'MISSED'}; "
                    f"median of per-round ratios {paired:.3f})"
                )
            if postgres is not None:
                before, streaming, after, waited = (
                    statistics.median(c[i] for c in counted.counts) for i in range(4)
                )
                print(
                    f"PostgreSQL statements per round (median): {before:g} before the request "
                    f"(waited on: {waited * 1000:.1f} ms), {streaming:g} while streaming, "
                    f"{after:g} after the last token. Each is a round trip to the server: "
                    "here a local socket, on a hosted database its network latency too."
                )
            print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            if server.errors:
                print("fake server errors:", *server.errors, sep="\n  ")
                return 1
            if args.profile:
                for name, parley in parleys.items():
                    print(f"\n=== {name}")
                    profile(server, parley, args.rounds, args.history + args.rounds)
            forget_backends()
    finally:
        if postgres is not None:
            postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
