"""How the Chat page's rerun cost grows with the conversation, against a naive page.

Each rerun of a Streamlit page runs the whole script, so a page that draws every message
gets slower as the conversation grows. Parley draws a recent window (`DEFAULT_WINDOW`
messages) and loads earlier ones on demand. This measures `AppTest.run()` for the Chat page
(through Home.py, with its sidebar, parameters and gauge) and for `bench/naive_chat.py`
(every message drawn with `st.chat_message` + `st.markdown`, as streamlit/llm-examples
does), on conversations of 10, 100 and 1,000 messages seeded into a temporary data
directory, against an in-process FakeOpenAI. Every page is warmed up, then all six are
rerun once per round in a shuffled order, so machine noise hits them alike; each figure is
a median.

AppTest's own cost per run is part of every figure, so the targets are ratios measured in
the same run:
    Parley@1000 / Parley@10   <= 1.3  (rerun cost must not grow with the history)
    Parley@1000 / naive@1000  <= 1.0
Each ratio is printed as a ratio of medians, then in brackets as the median of the
per-round ratios, which cancels load that changes between rounds; when the two disagree
much, the machine was busy and the run is worth repeating.

It also times `lib.memory.trim_to_budget` on a 10,000-message history whose token counts
are cached (target <= 5 ms), and the whole `lib.prompt.prepare` on a 10,000-message
conversation in SQLite.

    .venv/bin/python bench/rerun.py [--runs 15] [--sizes 10,100,1000] [--history 10000]
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from lib import chat  # noqa: E402
from lib.conversations import ChatParams, ConversationStore, Message  # noqa: E402
from lib.memory import output_reserve, trim_to_budget  # noqa: E402
from lib.models import context_window  # noqa: E402
from lib.prompt import prepare  # noqa: E402
from lib.store.backend import open_backend  # noqa: E402
from lib.tokens import counter_for  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402

MODEL = "gpt-5-mini"
WORKSPACE = "local"  # the workspace a session without sign-in uses (lib/ui/state.py)
TARGET_GROWTH = 1.3
# Streamlit warns that AppTest and the store run outside `streamlit run`: expected here.
QUIET_LOGGERS = (
    "streamlit.runtime.scriptrunner_utils.script_run_context",
    "streamlit.runtime.caching.cache_data_api",
)
TARGET_VS_NAIVE = 1.0
TARGET_TRIM_MS = 5.0
WORDS = (
    "the model reply context window token stream session cache query index page render "
    "history message latency budget prompt server client retry storage search export"
).split()


# -- realistic conversations ------------------------------------------------------------------
def paragraph(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def reply_text(rng: random.Random) -> str:
    """An assistant reply with the Markdown real replies have: paragraphs, a list, code."""
    parts = [paragraph(rng, rng.randint(20, 60))]
    if rng.random() < 0.5:
        parts.append("\n".join(f"- **{rng.choice(WORDS)}**: {paragraph(rng, 8)}" for _ in "abc"))
    if rng.random() < 0.3:
        parts.append("```python\nfor item in items:\n    print(item.name, item.size)\n```")
    parts.append(paragraph(rng, rng.randint(10, 30)))
    return "\n\n".join(parts)


def seed_conversation(
    store: ConversationStore, n_messages: int, seed: int, *, opening: str = "user"
) -> str:
    """A conversation of `n_messages` alternating turns from `opening`, saved as Parley does."""
    rng = random.Random(seed)
    counter = counter_for(MODEL)
    conv = store.create(model=MODEL, title=f"{n_messages} messages")
    for i in range(n_messages):
        if (i % 2 == 0) == (opening == "user"):
            message = Message(role="user", content=paragraph(rng, rng.randint(6, 30)))
        else:
            text = reply_text(rng)
            message = Message(
                role="assistant",
                content=text,
                model=MODEL,
                prompt_tokens=1500 + 40 * i,
                completion_tokens=counter.count(text),
                usage_exact=True,
                cost=0.0012,
                meta={"finish_reason": "stop", "first_token_s": 0.4, "usage_source": "api"},
            )
        message.tokens = counter.count_message(message.content)
        message.tokens_encoding = counter.name
        store.add_message(conv.id, message)
    return conv.id


# -- page reruns ------------------------------------------------------------------------------
def make_app(script: Path, cid: str, server: FakeOpenAI) -> AppTest:
    at = AppTest.from_file(str(script), default_timeout=120)
    at.secrets["OPENAI_API_KEY"] = "sk-bench"
    at.secrets["OPENAI_BASE_URL"] = server.base_url
    at.query_params["c"] = cid
    return at


def check(at: AppTest, label: str, expected_bubbles: int) -> None:
    """A benchmark of a page that failed to render would measure nothing."""
    if at.exception:
        raise RuntimeError(f"{label} raised: {at.exception[0].message}")
    shown = len(at.chat_message)
    if shown != expected_bubbles:
        raise RuntimeError(f"{label} drew {shown} messages, expected {expected_bubbles}")


def time_reruns(apps: dict[str, AppTest], runs: int) -> dict[str, list[float]]:
    """Every page once per round, in a shuffled order, so drift and order hit all alike."""
    times: dict[str, list[float]] = {label: [] for label in apps}
    order = list(apps)
    rng = random.Random(1)
    for _ in range(runs):
        rng.shuffle(order)
        for label in order:
            gc.collect()  # so one page's garbage is not collected on another's clock
            start = time.perf_counter()
            apps[label].run()
            times[label].append(time.perf_counter() - start)
    return times


def rerun_table(server: FakeOpenAI, store: ConversationStore, sizes: list[int], runs: int) -> None:
    from lib.ui.state import DEFAULT_WINDOW

    apps: dict[str, AppTest] = {}
    for n in sizes:
        cid = seed_conversation(store, n, seed=n)
        apps[f"parley@{n}"] = make_app(REPO / "Home.py", cid, server)
        apps[f"naive@{n}"] = make_app(REPO / "bench" / "naive_chat.py", cid, server)
    for label, at in apps.items():
        at.run()  # warm-up: imports, caches, the session's model list
        n = int(label.split("@")[1])
        check(at, label, min(n, DEFAULT_WINDOW) if label.startswith("parley") else n)
    times = time_reruns(apps, runs)
    med = {label: statistics.median(t) * 1000 for label, t in times.items()}
    print(f"AppTest.run(), median of {runs} reruns after a warm-up (ms)")
    print(f"{'messages':>10}{'Parley':>10}{'(drawn)':>9}{'naive':>10}{'Parley/naive':>14}")
    for n in sizes:
        p, q = med[f"parley@{n}"], med[f"naive@{n}"]
        print(f"{n:>10,}{p:>10.1f}{min(n, DEFAULT_WINDOW):>9}{q:>10.1f}{p / q:>14.2f}")
    lo, hi = min(sizes), max(sizes)

    def ratio(a: str, b: str) -> tuple[float, float]:
        """The ratio of medians, and the median of per-round ratios (robust to drift)."""
        paired = statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))
        return med[a] / med[b], paired

    growth, growth_paired = ratio(f"parley@{hi}", f"parley@{lo}")
    vs_naive, vs_naive_paired = ratio(f"parley@{hi}", f"naive@{hi}")
    print("\nratios of medians (median of per-round ratios in brackets)")
    print(
        f"Parley@{hi} / Parley@{lo}: {growth:.2f} [{growth_paired:.2f}] "
        f"{target(growth, TARGET_GROWTH)}"
    )
    print(
        f"Parley@{hi} / naive@{hi}: {vs_naive:.2f} [{vs_naive_paired:.2f}] "
        f"{target(vs_naive, TARGET_VS_NAIVE)}"
    )
    full = [n for n in sizes if n >= DEFAULT_WINDOW and n != hi]
    if full:
        same, same_paired = ratio(f"parley@{hi}", f"parley@{full[0]}")
        print(
            f"Parley@{hi} / Parley@{full[0]}: {same:.2f} [{same_paired:.2f}] (both draw "
            f"{DEFAULT_WINDOW} messages: the cost of the history alone)"
        )
    naive, naive_paired = ratio(f"naive@{hi}", f"naive@{lo}")
    print(f"naive@{hi} / naive@{lo}: {naive:.2f} [{naive_paired:.2f}] (for reference)")


# -- trimming and prepare on 10,000 messages -------------------------------------------------
def median_ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def trim_bench(n: int) -> None:
    rng = random.Random(7)
    history = [
        Message(role="user" if i % 2 == 0 else "assistant", content="", tokens=rng.randint(10, 900))
        for i in range(n)
    ]
    print(f"\ntrim_to_budget on {n:,} messages with cached counts, median of 200 calls")
    cases = [
        (10, context_window(MODEL), "default memory"),
        (500, context_window(MODEL), "the UI's maximum memory"),
        (n, 10_000_000, "every round, 10M-token window override: walks all"),
    ]
    for rounds, window, note in cases:
        run = functools.partial(
            trim_to_budget,
            history,
            system_tokens=50,
            new_tokens=40,
            max_rounds=rounds,
            context_window=window,
            output_budget=output_reserve(window, None),
        )
        kept = len(run().kept)
        ms = median_ms(run, 200)
        print(f"  {note} (keeps {kept:,}): {ms:.3f} ms {target(ms, TARGET_TRIM_MS, ' ms')}")


def prepare_bench(data_dir: Path, n: int) -> None:
    store = ConversationStore(open_backend(data_dir / "prepare"), WORKSPACE)
    start = time.perf_counter()
    # Ends on a reply, then the new question: n messages in all, alternating throughout.
    cid = seed_conversation(store, n - 1, seed=n, opening="user" if n % 2 else "assistant")
    store.add_message(cid, Message(role="user", content="And what about the index?"))
    print(
        f"\nlib.prompt.prepare on a {n:,}-message conversation "
        f"(seeded in {time.perf_counter() - start:.1f} s)"
    )
    ctx = chat.ChatContext(store, client=None)  # prepare never calls the client
    for rounds in (10, 500):
        store.update_settings(cid, params=ChatParams(memory_rounds=rounds))
        conv = store.get(cid)
        prompt = prepare(ctx, conv)
        ms = median_ms(lambda conv=conv: prepare(ctx, conv), 30)
        print(
            f"  memory {rounds:>3} rounds: {len(prompt.messages):,} messages sent, "
            f"{prompt.trim.dropped:,} left out; median {ms:.2f} ms"
        )


def target(value: float, limit: float, unit: str = "") -> str:
    return f"(target <= {limit:g}{unit}: {'met' if value <= limit else 'MISSED'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed reruns per page")
    parser.add_argument("--sizes", default="10,100,1000", help="conversation lengths")
    parser.add_argument("--history", type=int, default=10_000, help="messages for trim/prepare")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp, FakeOpenAI() as server:
        data_dir = Path(tmp)
        os.environ["PARLEY_DATA_DIR"] = str(data_dir)  # the pages read it; never the real data/
        store = ConversationStore(open_backend(data_dir), WORKSPACE)
        rerun_table(server, store, sizes, args.runs)
        trim_bench(args.history)
        prepare_bench(data_dir, args.history)
        if server.errors:
            print("fake server errors:", *server.errors, sep="\n  ")
            return 1
    # A missed target is a figure to report, not a crash: `make bench` runs every script.
    return 0


if __name__ == "__main__":
    sys.exit(main())
