"""Moving a data directory into PostgreSQL: `python -m lib.cli migrate-store --to URL`.

What moves: every row of every table of `parley.db` (every workspace at once, ids
kept, so every reference between rows still holds: `rows.py`), every file the rows name
(document originals, images, thumbnails) into the target's blob store under the same
keys (`files.py`), and a pgvector row for each embedded chunk, built from the embedding
cache (`vectors.py`). The FAISS and BM25 files are not copied: PostgreSQL has its own
indexes, pgvector's and BM25 postings analysed afresh from the copied passages
(`keywords.py`).

It works on tables and blobs, not through the stores, because the two schemas mirror
each other column for column: whatever a store keeps in a row arrives as it was.

Safe to run again, and to stop: each batch is one transaction; a row whose primary key
is in the target already is skipped (`ON CONFLICT DO NOTHING`), as is a file there with
the same SHA-256, so a second run copies nothing and a run stopped half-way is
completed by the next. Then it checks itself against the source's snapshot
(`source.py`): per table the row count and an order-independent hash of the rows' values
(`run.Digest`), per file its SHA-256 as PostgreSQL computes it from the stored bytes, and
the vectors' count and hash. Any mismatch is a failed check (✗), as is a chunk whose
vector the cache lacks.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from lib.errors import ConfigError
from lib.store.backend import redact_url
from lib.store.migrate import files, keywords, rows, vectors
from lib.store.migrate.run import BATCH, MigrationError, MigrationReport, Progress, Run, Tally
from lib.store.migrate.source import DATABASE, open_source, source_tables

__all__ = ["MigrationError", "MigrationReport", "Tally", "describe", "migrate_store"]


def migrate_store(
    data_dir: Path,
    database_url: str | None,
    blob_store: str | None = None,
    *,
    batch_size: int = BATCH,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy the SQLite data directory `data_dir` into the PostgreSQL database at
    `database_url`, then check the copy; `progress` hears of every batch."""
    url = require_postgresql(database_url)
    source = open_source(data_dir)
    try:
        target = rows.open_target(data_dir, url, blob_store)
        tables = source_tables(source)
        rows.check_target_schema(target, tables)
        report = MigrationReport(str(data_dir / DATABASE), target.location)
        run = Run(source, target, report, batch_size, progress or (lambda _: None))
        digests = [(table, rows.copy_table(run, table)) for table in tables]
        rows.advance_identities(target, tables)
        sums = files.copy_files(run)
        vector_digest, missing = vectors.copy_vectors(run)
        keywords.index_keywords(run)
        for table, digest in digests:
            rows.check_table(run, table, digest)
        files.check_files(run, sums)
        vectors.check_vectors(run, vector_digest, missing)
        keywords.check_keywords(run)
        return report
    except psycopg.Error as exc:  # anything the steps did not word themselves
        raise MigrationError(
            f"PostgreSQL refused: {str(exc).strip() or type(exc).__name__}. What was copied "
            "so far is kept; run the command again once the cause is fixed."
        ) from exc
    finally:
        source.close()


def require_postgresql(url: str | None) -> str:
    if not url:
        raise ConfigError(
            "Say which PostgreSQL database to move into.",
            hint="Give --to postgresql://user@host/database, or set PARLEY_DATABASE_URL.",
        )
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"The target must be a postgresql:// URL, not {redact_url(url)!r}.",
            hint="For example --to postgresql://parley@db.example.com/parley.",
        )
    return url


def describe(report: MigrationReport) -> str:
    """The report as the terminal shows it: what was copied, then ✓ or ✗ per check."""
    lines = [f"From {report.source} into {report.target}:"]
    for tally in report.tallies:
        size = f" ({_size(tally.bytes)})" if tally.bytes else ""
        lines.append(
            f"  {tally.item:<24} {tally.copied:>8,} copied{size}, {tally.present:,} already there"
        )
    lines.append("Checks:")
    lines += [f"  {'✓' if c.ok else '✗'} {c.item:<22} {c.detail}" for c in report.checks]
    failed = sum(not c.ok for c in report.checks)
    if failed:
        lines.append(f"✗ {failed} check(s) failed: see the ✗ lines above.")
    elif report.copied == 0:
        lines.append("✓ Nothing to copy: everything was already there, and every check passed.")
    else:
        lines.append(f"✓ Copied {report.copied:,} rows, files and vectors; every check passed.")
    return "\n".join(lines) + "\n"


def _size(count: int) -> str:
    return f"{count / 1_048_576:.1f} MB" if count >= 104_858 else f"{count / 1024:.0f} kB"
