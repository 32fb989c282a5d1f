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

`--zip-mb 1024` makes the export about that big on disk: beside the conversations, PNGs of
random pixels (incompressible, ~1 MB each at the default `--image-side 600`), each sent
by one conversation's first question, so the importer reads, checks and stores every one
as that message's attachment. The figures then show whether memory follows the file's
size (it should not: one conversation and its files at a time).

`--database-url URL` imports into that PostgreSQL database; `--postgres` starts the
tests' own server (tests/postgres.py) and imports into a fresh database on it.

    .venv/bin/python bench/history_import.py [--conversations 10000] [--turns 4] [--words 40]
        [--zip-mb 1024 [--image-side 600]] [--database-url URL | --postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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
    with store.backend.connection() as conn:
        attached = conn.execute("SELECT count(*) FROM attachments").fetchone()[0]
    return {"n": len(report.imported), "seconds": seconds, "peak": peak_mb() - start_mb,
            "failed": len(report.failed), "attachments": attached,
            "not_imported": len(report.missing_files) + len(report.not_imported)}  # fmt: skip


def run_json_load(path: Path) -> dict:
    import zipfile

    start_mb, started = peak_mb(), time.perf_counter()
    with zipfile.ZipFile(path) as archive, archive.open("conversations.json") as f:
        conversations = json.load(f)
    n = sum(1 for c in conversations if c.get("mapping"))
    seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "peak": peak_mb() - start_mb, "failed": 0}


def child(kind: str, path: Path, data_dir: Path, database_url: str | None = None) -> dict:
    env = {**os.environ, "PARLEY_DATABASE_URL": database_url or ""}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path), str(data_dir)],
        capture_output=True, text=True, check=True, cwd=REPO, env=env,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started  # with the process's start and imports
    return result


def image_count(zip_mb: int, side: int) -> int:
    """Images of `side` pixels square that make a zip of about `zip_mb` MB."""
    from tests.history_samples import noise_png

    return max(0, round(zip_mb * 2**20 / len(noise_png(side))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--zip-mb", type=int, default=0, help="add images up to ~this size")
    parser.add_argument("--image-side", type=int, default=600)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database-url",
        default=os.environ.get("PARLEY_DATABASE_URL") or None,
        help="import into this PostgreSQL database (default: PARLEY_DATABASE_URL)",
    )
    where.add_argument("--postgres", action="store_true", help="start the tests' server")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, path, data_dir = args.child
        result = run_parley(Path(path), Path(data_dir)) if kind == "parley" else (
            run_json_load(Path(path)))  # fmt: skip
        print(json.dumps(result))
        return 0

    server = None
    if args.postgres:
        from tests.postgres import TestPostgres

        server = TestPostgres().start()
        args.database_url = server.fresh_database()
    try:
        bench(args)
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.root, ignore_errors=True)
    return 0


def bench(args: argparse.Namespace) -> None:
    import zipfile

    from tests.history_samples import write_big_chatgpt

    images = image_count(args.zip_mb, args.image_side) if args.zip_mb else 0
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        path = write_big_chatgpt(
            root / "export.zip", args.conversations, args.turns, words=args.words,
            images=images, image_side=args.image_side,
        )  # fmt: skip
        with zipfile.ZipFile(path) as archive:
            inflated = archive.getinfo("conversations.json").file_size
        zipped = path.stat().st_size / 2**20
        print(
            f"ChatGPT export: {args.conversations:,} conversations of {args.turns * 2} "
            f"messages, {images:,} images of {args.image_side}x{args.image_side} random "
            f"pixels; {zipped:,.1f} MB zipped, conversations.json {inflated / 2**20:.1f} MB "
            f"(made in {time.perf_counter() - started:.1f} s)"
        )
        where = "PostgreSQL" if args.database_url else "SQLite"
        baseline = child("json", path, root / "unused")
        parley = child("parley", path, root / "data", args.database_url)
        for name, r in ((f"Parley ({where})", parley), ("json.load only", baseline)):
            print(
                f"  {name:<19} {r['n']:>7,} conversations in {r['seconds']:6.1f} s = "
                f"{r['n'] / r['seconds']:7.0f} /s   peak RSS +{r['peak']:7.1f} MB"
            )
        print(
            f"peak RSS ratio Parley / json.load: {parley['peak'] / max(baseline['peak'], 1):.2f} "
            f"(Parley also writes every conversation to the store; json.load writes nothing)"
        )
        print(
            f"Parley: {parley['attachments']:,} attachments stored, "
            f"{parley['not_imported']:,} files not imported, {parley['failed']:,} failures; "
            f"import {parley['seconds']:.1f} s, {parley['wall']:.1f} s with process start; "
            f"peak RSS growth {parley['peak']:.1f} MB for a {zipped:,.1f} MB zip "
            f"({parley['peak'] / zipped:.3f} MB per MB)"
        )
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    sys.exit(main())
