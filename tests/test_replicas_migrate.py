"""Replicas starting together on an empty PostgreSQL database migrate it exactly once.

Each replica is a real process that opens `PostgresBackend` on the same URL and runs a
query, which is what a Parley replica does on its first page. The processes import
everything first and then wait on a shared start signal, so they reach the advisory lock
in `lib/store/postgres_schema.migrate` together rather than one after another as Python
happens to start them. Each reports the migrations it applied itself: across all of
them, every migration must be applied by exactly one, and recorded once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from lib.store.postgres_schema import MIGRATIONS
from tests import postgres as pg
from tests.waits import WAIT

REPO = Path(__file__).resolve().parent.parent
REPLICAS = 5
ROUNDS = 5

# One replica: import, say "ready", wait for "go" on stdin, then open the backend and run
# a query. `migrate` is wrapped to report what this process applied (the backend itself
# discards the list).
REPLICA = """
import json, sys, tempfile
from pathlib import Path
from lib.store import postgres_schema
from lib.store.postgres import PostgresBackend

applied = []
migrate = postgres_schema.migrate
def reporting(conn):
    done = migrate(conn)
    applied.extend(done)
    return done
postgres_schema.migrate = reporting

backend = PostgresBackend(Path(tempfile.mkdtemp()), sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
with backend.connection() as conn:
    count = conn.execute("SELECT count(*) FROM conversations").fetchone()[0]
backend.close()
print(json.dumps({"applied": applied, "conversations": count}), flush=True)
"""


def start_replicas(url: str) -> list[subprocess.Popen]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, url],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    for proc in procs:  # every one has imported psycopg and the schema before any starts
        line = proc.stdout.readline()
        assert line == "ready\n", f"a replica did not start: {line!r} {proc.stderr.read()}"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_replicas_starting_together_migrate_an_empty_database_once(
    postgres: pg.TestPostgres, round_: int
) -> None:
    url = postgres.empty_database()
    try:
        reports = []
        for proc in start_replicas(url):
            out, err = proc.communicate(timeout=WAIT)
            assert proc.returncode == 0, f"a replica failed:\n{err}"
            reports.append(json.loads(out.strip().splitlines()[-1]))

        names = [m.name for m in MIGRATIONS]
        applied = [name for r in reports for name in r["applied"]]
        assert sorted(applied) == names  # each applied by one replica, none twice, none lost
        assert [r["conversations"] for r in reports] == [0] * REPLICAS
        with psycopg.connect(url) as conn:
            recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
            extensions = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
        assert sorted(recorded) == names
        assert extensions == 1
    finally:
        postgres.drop(url)
