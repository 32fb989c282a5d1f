"""The files of a move: every file a row names, into the target's blob store by its key.

Image and attachment rows store their files' keys (paths relative to the data
directory); a document row's `stored_as` is its key, or, in rows from before the store
layer (no "/"), a name in `documents/<sha256(workspace)[:32]>/`. With PARLEY_BLOB_STORE
=local the target reads the files where they are, so they are checked, not copied.
"""

from __future__ import annotations

from lib.backup import document_folder
from lib.errors import NotFoundError
from lib.store.blobs import DatabaseBlobs, LocalBlobs, digest
from lib.store.migrate.run import Run, few

Sums = dict[str, str | None]  # key -> SHA-256 in the source, None when the file is missing


def document_key(workspace: str, stored_as: str) -> str:
    return stored_as if "/" in stored_as else f"documents/{document_folder(workspace)}/{stored_as}"


def file_keys(run: Run) -> list[str]:
    images = run.source.execute(
        "SELECT file FROM images UNION SELECT thumb FROM images WHERE thumb IS NOT NULL"
    ).fetchall()
    documents = run.source.execute("SELECT workspace, stored_as FROM documents").fetchall()
    attached = run.source.execute(
        "SELECT blob FROM attachments UNION SELECT thumb FROM attachments WHERE thumb IS NOT NULL "
        "UNION SELECT sent FROM attachments WHERE sent IS NOT NULL"
    ).fetchall()
    named = {r[0] for r in images} | {r[0] for r in attached}
    return sorted(named | {document_key(ws, name) for ws, name in documents})


def copy_files(run: Run) -> Sums:
    """Copy each file the target lacks or holds different bytes for (by SHA-256)."""
    keys, local, tally = file_keys(run), LocalBlobs(run.target.data_dir), run.tally("files")
    if not isinstance(run.target.blobs, DatabaseBlobs):
        run.report.files_kept_locally = True
        sums: Sums = {k: None if (data := _read(local, k)) is None else digest(data) for k in keys}
        tally.present = sum(s is not None for s in sums.values())
        run.finish(tally)
        return sums
    sums = {}
    for start in range(0, len(keys), run.batch_size):
        part = keys[start : start + run.batch_size]
        there = _target_sums(run, part, computed=False)
        for key in part:
            data = _read(local, key)
            sums[key] = None if data is None else digest(data)
            if data is None or there.get(key) == sums[key]:
                tally.present += data is not None
                continue
            run.target.blobs.put(key, data)  # one statement: never half a file
            tally.copied += 1
            tally.bytes += len(data)
        run.progress(tally)
    run.finish(tally)
    return sums


def _read(local: LocalBlobs, key: str) -> bytes | None:
    """The file's bytes, or None if it is missing or its row names no valid key (one
    that would leave the data directory is never read)."""
    try:
        return local.get(key)
    except (NotFoundError, ValueError):
        return None


def _target_sums(run: Run, keys: list[str], *, computed: bool) -> dict[str, str]:
    """The target's SHA-256 per key: as recorded when written (to skip), or `computed`
    by PostgreSQL from the bytes it holds now (to check)."""
    expression = "encode(sha256(data), 'hex')" if computed else "sha256"
    with run.target.connection() as conn:
        rows = conn.execute(
            f"SELECT key, {expression} FROM blobs WHERE key = ANY(?)", (keys,)
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def check_files(run: Run, sums: Sums) -> None:
    missing = sorted(k for k, s in sums.items() if s is None)
    if missing:
        run.fail(
            "files",
            f"{len(missing):,} files the rows name are missing from the data directory, "
            f"so they could not be copied: {few(missing)}",
        )
    present = {k: s for k, s in sums.items() if s is not None}
    if run.report.files_kept_locally:
        where = f"kept in {run.target.data_dir} (PARLEY_BLOB_STORE=local), not copied"
        run.passed("files", f"{len(present):,} files {where}")
        return
    keys, stored = sorted(present), {}
    for start in range(0, len(keys), run.batch_size):
        stored.update(_target_sums(run, keys[start : start + run.batch_size], computed=True))
    with run.target.connection() as conn:
        total = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
    wrong = [k for k in keys if stored.get(k) != present[k]]
    if wrong:
        run.fail("files", f"{len(wrong):,} of {len(keys):,} differ or are absent: {few(wrong)}")
    elif total != len(keys):
        run.fail("files", f"PostgreSQL holds {total:,} files, the data directory {len(keys):,}")
    else:
        run.passed("files", f"{len(keys):,} files, every SHA-256 matches")
