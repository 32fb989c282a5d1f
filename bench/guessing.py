"""How many passwords a script gets compared per minute by opening a fresh session per guess.

A wait kept in one browser session's state slows nobody who simply opens another session.
This starts Parley in password mode (`streamlit run`, as the browser tests do) and, for
`--seconds`, submits wrong passwords from the same address, each from a new Streamlit
session over Streamlit's own websocket protocol (tests/browser/protocol.py, the way a
script would; a Chromium context per guess is about five times slower), `--parallel` at
a time. Each answer is either "Wrong password" (the guess was compared) or "Too soon"
(refused without comparison). The figure that matters is guesses *compared* per minute.

Unlike the other scripts here this is not a ratio: it is the rate an attacker gets, and
with the shared throttle that is set by its waits, not by the machine. Measured on 2
cores shared with other work (load average 10 to 13), 60 s each: before, with the wait in
session state, every guess was compared, 43 a minute (47 with --parallel 4; 61 to 74 on a
quieter machine); after, 6 in the first minute either way (3 at once, then after 5, 10
and 20 s) and the other 17 (38 in parallel) refused unchecked, then one per wait,
doubling to one per 300 s.

    .venv/bin/python bench/guessing.py [--seconds 60] [--parallel 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser.conftest import StreamlitServer  # noqa: E402
from tests.browser.protocol import try_password  # noqa: E402

PASSWORD = "bench-0nly-password"


def guess_for(seconds: float, url: str, parallel: int) -> tuple[int, int, float]:
    """(compared, refused, elapsed) for fresh-session guesses made during `seconds`."""
    compared = refused = 0
    start = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        while time.monotonic() - start < seconds:
            for message in pool.map(lambda n: try_password(url, f"guess-{n}"), range(parallel)):
                if message.startswith("Wrong password"):
                    compared += 1
                elif message.startswith("Too soon"):
                    refused += 1
                else:
                    raise RuntimeError(f"unexpected answer: {message!r}")
    return compared, refused, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"APP_PASSWORD": PASSWORD, "STREAMLIT_SECRETS_FILES": f"{tmp}/none.toml"}
        server = StreamlitServer(Path(tmp) / "data", env, Path(tmp) / "streamlit.log")
        try:
            compared, refused, elapsed = guess_for(args.seconds, server.url, args.parallel)
        finally:
            server.stop()
    per_minute = 60.0 / elapsed
    print(f"{compared + refused} fresh-session guesses in {elapsed:.0f} s")
    print(f"compared {compared:4d}  ({compared * per_minute:.0f} a minute)")
    print(f"refused  {refused:4d}  ({refused * per_minute:.0f} a minute, not compared)")


if __name__ == "__main__":
    main()
