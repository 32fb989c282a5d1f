"""How much time Parley's chat path adds to a streamed reply, against the raw openai SDK.

Both paths talk to the same in-process FakeOpenAI, which waits 100 ms before the first
token (a stand-in for a real provider's latency) and then streams a reply of a few hundred
characters in 4-character chunks. Each round runs Parley then the raw SDK (ABAB), so drift
in the machine's speed hits both alike.

- Parley: `lib.chat.send(ctx, cid, text)` and iterating the `Reply`, which saves the user
  message, reads and trims the history, counts tokens, streams, prices the reply and saves
  it to SQLite.
- Raw SDK: `client.chat.completions.create(stream=True, stream_options=...)` with the same
  history kept in a Python list, iterating the chunks.

Both conversations first grow to `--history` rounds (untimed, which also warms tiktoken and
the connection pools), and both remember that many rounds, so every timed request carries
the same history: `--history` rounds plus the new question.

    .venv/bin/python bench/chat_overhead.py [--rounds 30] [--history 20] [--profile]

Prints the medians, Parley's added milliseconds and `ratio: X` (Parley / raw) for the time
to first token; the target is a ratio of at most 1.05.
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from lib import chat  # noqa: E402
from lib.client import build_client  # noqa: E402
from lib.conversations import ChatParams, ConversationStore  # noqa: E402
from lib.pricing import PriceTable  # noqa: E402
from lib.settings import resolve_settings  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

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

Timing = tuple[float, float]  # seconds to first token, seconds to last token


def question(i: int) -> str:
    return f"{QUESTIONS[i % len(QUESTIONS)]} (round {i})"


def timed(pieces: Iterator[str], start: float) -> Timing:
    """Consume a text stream; return when its first and last piece arrived."""
    first = None
    for piece in pieces:
        if first is None and piece:
            first = time.perf_counter()
    end = time.perf_counter()
    if first is None:
        raise RuntimeError("the reply had no text")
    return first - start, end - start


class ParleyPath:
    """Parley's lib path: a store in a temp data dir and a client built as the app does."""

    def __init__(self, server: FakeOpenAI, data_dir: Path, memory_rounds: int) -> None:
        settings = resolve_settings(
            {}, {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": server.base_url}, {}
        )
        store = ConversationStore(data_dir / "parley.db")
        params = ChatParams(memory_rounds=memory_rounds)
        self.ctx = chat.ChatContext(
            store, WORKSPACE, build_client(settings), PriceTable.load(data_dir), settings.provider
        )
        self.cid = store.create(WORKSPACE, model=MODEL, params=params).id

    def round(self, text: str) -> Timing:
        start = time.perf_counter()
        return timed(iter(chat.send(self.ctx, self.cid, text)), start)


class RawPath:
    """The raw SDK, with the history in a list as a minimal chat app keeps it."""

    def __init__(self, server: FakeOpenAI, memory_rounds: int) -> None:
        self.client = openai.OpenAI(base_url=server.base_url, api_key="sk-bench")
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

        result = timed(pieces(), start)
        self.messages.append({"role": "assistant", "content": "".join(reply)})
        return result


def run_round(server: FakeOpenAI, path: Callable[[str], Timing], text: str) -> Timing:
    server.script(REPLY, chunk_size=4)
    return path(text)


def measure(
    server: FakeOpenAI, parley: ParleyPath, raw: RawPath, rounds: int, offset: int
) -> tuple[list[Timing], list[Timing]]:
    a: list[Timing] = []
    b: list[Timing] = []
    for i in range(rounds):
        text = question(offset + i)
        a.append(run_round(server, parley.round, text))
        b.append(run_round(server, raw.round, text))
    return a, b


def median_ms(timings: list[Timing], which: int) -> float:
    return statistics.median(t[which] for t in timings) * 1000


def report(parley: list[Timing], raw: list[Timing]) -> float:
    rows = [("time to first token", 0), ("time to last token", 1)]
    print(
        f"{'median over ' + str(len(parley)) + ' rounds':<24}{'Parley':>10}{'raw SDK':>10}"
        f"{'added':>10}{'ratio':>8}"
    )
    for label, which in rows:
        p, r = median_ms(parley, which), median_ms(raw, which)
        print(f"{label:<24}{p:>8.1f}ms{r:>8.1f}ms{p - r:>+8.1f}ms{p / r:>8.3f}")
    ratio = median_ms(parley, 0) / median_ms(raw, 0)
    spread = [statistics.quantiles([t[0] * 1000 for t in s], n=10) for s in (parley, raw)]
    print(
        f"first token p10..p90: Parley {spread[0][0]:.1f}..{spread[0][-1]:.1f} ms, "
        f"raw {spread[1][0]:.1f}..{spread[1][-1]:.1f} ms"
    )
    return ratio


def profile(server: FakeOpenAI, parley: ParleyPath, rounds: int, offset: int) -> None:
    """Where Parley's own time goes: cProfile over more rounds, sorted by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(rounds):
        run_round(server, parley.round, question(offset + i))
    profiler.disable()
    print(
        f"\ncProfile of {rounds} Parley rounds (top 20 by internal time; waits on the "
        "socket are the fake server's 100 ms):"
    )
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per path")
    parser.add_argument("--history", type=int, default=20, help="rounds remembered")
    parser.add_argument("--first-token-delay", type=float, default=0.1, help="seconds")
    parser.add_argument("--profile", action="store_true", help="also profile Parley's path")
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp,
        FakeOpenAI(first_token_delay=args.first_token_delay) as server,
    ):
        data_dir = Path(tmp)
        os.environ["PARLEY_DATA_DIR"] = str(data_dir)  # nothing may touch the real data/
        parley = ParleyPath(server, data_dir, args.history)
        raw = RawPath(server, args.history)
        measure(server, parley, raw, args.history, 0)
        print(
            f"FakeOpenAI: {args.first_token_delay * 1000:.0f} ms to first token, "
            f"{len(REPLY)}-character reply in 4-character chunks; every request carries "
            f"{args.history} rounds of history ({2 * args.history + 1} messages).\n"
        )
        timings = measure(server, parley, raw, args.rounds, args.history)
        ratio = report(*timings)
        print(
            f"ratio: {ratio:.3f} (target <= {TARGET_RATIO}: "
            f"{'met' if ratio <= TARGET_RATIO else 'MISSED'})"
        )
        if server.errors:
            print("fake server errors:", *server.errors, sep="\n  ")
            return 1
        if args.profile:
            profile(server, parley, args.rounds, args.history + args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
