"""Importing a big ChatGPT export: conversations per second and peak memory.

A ChatGPT data export of `--conversations` conversations (default 10,000, each `--turns`
questions and answers of `--words` words) is generated into a temporary zip
(tests/history_samples.py), then, each in a fresh process so its peak RSS is its own:
1. **Parley**: `Importer.run` into a fresh data directory on the embedded SQLite (or
   `--database-url`), streaming the zip's conversations.json with ijson, one transaction
   per conversation;
2. **json.load**: the baseline a simple importer uses, reading the same conversations.json
   whole with `json.load` and walking it, writing nothing.
Prints conversations per second, peak RSS growth over the process's start, and the
ratio of the two peaks. It asserts nothing.

    .venv/bin/python bench/history_import.py [--conversations 10000] [--turns 4] [--words 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_parley(path: Path, data_dir: Path) -> dict:
    os.environ["PARLEY_DATA_DIR"] = str(data_dir)
    from lib.conversations import ConversationStore
    from lib.history.importer import Importer
    from lib.store.backend import open_backend

    url = os.environ.get("PARLEY_DATABASE_URL") or None
    store = ConversationStore(open_backend(data_dir, url), "local")
    store.list()  # the schema is made before the clock starts
    start_mb, started = peak_mb(), time.perf_counter()
    report = Importer(store).run(path)
    seconds = time.perf_counter() - started
    return {"n": len(report.imported), "seconds": seconds, "peak": peak_mb() - start_mb,
            "failed": len(report.failed)}  # fmt: skip


def run_json_load(path: Path) -> dict:
    import zipfile

    start_mb, started = peak_mb(), time.perf_counter()
    with zipfile.ZipFile(path) as archive, archive.open("conversations.json") as f:
        conversations = json.load(f)
    n = sum(1 for c in conversations if c.get("mapping"))
    seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "peak": peak_mb() - start_mb, "failed": 0}


def child(kind: str, path: Path, data_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(data_dir)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, path, data_dir = args.child
        result = run_parley(Path(path), Path(data_dir)) if kind == "parley" else (
            run_json_load(Path(path)))  # fmt: skip
        print(json.dumps(result))
        return 0

    from tests.history_samples import write_big_chatgpt

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        path = write_big_chatgpt(
            root / "export.zip", args.conversations, args.turns, words=args.words
        )
        import zipfile

        with zipfile.ZipFile(path) as archive:
            inflated = archive.getinfo("conversations.json").file_size
        print(
            f"ChatGPT export: {args.conversations:,} conversations of {args.turns * 2} "
            f"messages, {path.stat().st_size / 2**20:.1f} MB zipped, conversations.json "
            f"{inflated / 2**20:.1f} MB (made in {time.perf_counter() - started:.1f} s)"
        )
        baseline = child("json", path, root / "unused")
        parley = child("parley", path, root / "data")
        for name, r in (("Parley import", parley), ("json.load only", baseline)):
            print(
                f"  {name:<15} {r['n']:>7,} conversations in {r['seconds']:6.1f} s = "
                f"{r['n'] / r['seconds']:7.0f} /s   peak RSS +{r['peak']:7.1f} MB"
            )
        print(
            f"peak RSS ratio Parley / json.load: {parley['peak'] / max(baseline['peak'], 1):.2f} "
            f"(Parley also writes every conversation to the store; json.load writes nothing)"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
