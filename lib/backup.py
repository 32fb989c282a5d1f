"""Backing up a data directory while Parley runs, and restoring a backup into an empty one.

A backup is a directory, not an archive: every file of the data directory at the same
relative path, plus `manifest.json` with each file's size and SHA-256. A directory because
the files it holds (PDFs, images, thumbnails) never change once written, so rsync, restic
or borg copy only what is new from one backup to the next, while an archive is a new blob
each time; because one lost image can be taken back by hand; and because it needs no
second copy to build or unpack. It is built under a hidden `.NAME.partial-*` name and
renamed when complete, so a backup that stopped halfway never looks like one.

Consistent while the app runs:
1. Copy every file (pass 1), skipping the SQLite files and temporary and lock files.
2. Take every workspace's index lock (no FAISS index can change), copy each SQLite
   database with SQLite's online backup API (`sqlite3.Connection.backup`: one read
   transaction, so a snapshot, which writers in WAL mode are not blocked by), then copy
   the files created or replaced since pass 1 (pass 2). Files are written before their
   rows, so every row in the snapshot has its file by pass 2, and the indexes match it.
3. Check that each file the snapshot names is in the backup; one deleted in the moment
   between the snapshot and pass 2 is listed as `missing` in the manifest and reported.

`restore` refuses a data directory that is not empty, verifies every file against the
manifest while copying it into a hidden staging directory inside the target, checks the
database, and only then moves the files into place (and migrates an older database).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lib import locks
from lib.atomic_files import fsync_directory
from lib.errors import BackupError
from lib.store import sqlite_schema as db
from lib.store.backend import redact_url

MANIFEST = "manifest.json"
FORMAT = "parley-backup"
VERSION = 1
DATABASE = "parley.db"
SQLITE_MAGIC = b"SQLite format 3\x00"
# Temporary files of atomic writes, SQLite's side files, and lock files.
SKIPPED_SUFFIXES = (".tmp", ".part", "-wal", "-shm", "-journal", ".lock")
_BLOCK = 1 << 20
Entry = dict[str, int | str]  # {"size": ..., "sha256": ...}


@dataclass
class Report:
    path: Path
    files: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


# Backing up


def backup(data_dir: Path, target: Path, *, database_url: str | None = None) -> Report:
    """Copy `data_dir` into a new backup directory `target`; see the module docstring.

    Refused when the data lives in PostgreSQL (`database_url`): this would copy a
    parley.db the app no longer uses, and look like a backup of what it does use."""
    if database_url:
        raise BackupError(
            f"This deployment keeps its data in PostgreSQL ({redact_url(database_url)}), "
            "and `backup` copies only an embedded (SQLite) data directory.",
            hint="Back the database up with PostgreSQL's own tools, e.g. `pg_dump "
            "--format=custom --file parley.dump URL` (and restore with pg_restore); with "
            "PARLEY_BLOB_STORE=local, copy the data directory's files as well.",
        )
    started = time.monotonic()
    data_dir, target = data_dir.resolve(), target.resolve()
    _check_backup_paths(data_dir, target)
    staging = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        files: dict[str, Entry] = {}
        seen: dict[str, tuple[int, int, int]] = {}
        databases = _copy_files(data_dir, staging, files, seen)
        with contextlib.ExitStack() as held:
            for folder in sorted((data_dir / "documents").glob("*/")):
                held.enter_context(locks.exclusive(folder / locks.INDEX_LOCK))
            for relative in databases:
                files[relative] = _snapshot(data_dir / relative, staging / relative)
            _copy_files(data_dir, staging, files, seen)
        missing = _missing_files(staging)
        _write_manifest(staging, data_dir, files, missing)
        if target.exists():
            target.rmdir()  # an empty directory (checked above)
        os.rename(staging, target)
        fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(int(e["size"]) for e in files.values())
    return Report(target, len(files), size, missing, round(time.monotonic() - started, 2))


def _check_backup_paths(data_dir: Path, target: Path) -> None:
    if not (data_dir / DATABASE).is_file():
        raise BackupError(f"There is nothing to back up: {data_dir} has no {DATABASE}.")
    if target == data_dir or data_dir in target.parents:
        raise BackupError(f"Put the backup outside the data directory {data_dir}.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} already exists; give a new path for the backup.")


def _copy_files(
    data_dir: Path, staging: Path, files: dict[str, Entry], seen: dict[str, tuple[int, int, int]]
) -> list[str]:
    """Copy each file not yet copied, or changed since; return the SQLite databases found."""
    databases = []
    for relative, path in _walk(data_dir):
        try:
            stat = path.stat()
            if relative == DATABASE or _is_sqlite(path):
                databases.append(relative)
                continue
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if seen.get(relative) == key:
                continue
            files[relative] = _copy(path, staging / relative)
            seen[relative] = key
        except FileNotFoundError:
            continue  # deleted while we walked: the snapshot decides whether it mattered
    return databases


def _walk(root: Path) -> list[tuple[str, Path]]:
    found = []
    for folder, dirs, names in os.walk(root):  # never follows symbolic links
        dirs[:] = sorted(d for d in dirs if not d.startswith(".restoring-"))
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith(SKIPPED_SUFFIXES) or path.is_symlink() or not path.is_file():
                continue
            found.append((path.relative_to(root).as_posix(), path))
    return found


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _copy(source: Path, target: Path) -> Entry:
    """Copy one file durably, hashing what was read; returns its manifest entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as src, target.open("wb") as dst:
        while block := src.read(_BLOCK):
            digest.update(block)
            dst.write(block)
            size += len(block)
        dst.flush()
        os.fsync(dst.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _snapshot(source: Path, target: Path) -> Entry:
    """A consistent copy of a live SQLite database, as one self-contained file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = sqlite3.connect(source, timeout=30)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, one snapshot
            dst.execute("PRAGMA journal_mode = DELETE")  # no -wal beside the copy
        finally:
            dst.close()
            src.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(
            f"{source} could not be read ({exc}), so no backup was made.", hint=_DAMAGED_HINT
        ) from exc
    return _entry(target)


_DAMAGED_HINT = (
    "If the file is damaged, restore your latest good backup into an empty data directory."
)


def _missing_files(staging: Path) -> list[str]:
    """Files the backed-up database names that are not in the backup."""
    conn = sqlite3.connect(f"file:{staging / DATABASE}?mode=ro", uri=True)
    try:
        images = [r[0] for r in conn.execute(
            "SELECT file FROM images UNION ALL SELECT thumb FROM images WHERE thumb IS NOT NULL"
        )]  # fmt: skip
        documents = [  # a blob key; before the blob store, a bare name in the old folder
            r[1] if "/" in r[1] else f"documents/{document_folder(r[0])}/{r[1]}"
            for r in conn.execute("SELECT workspace, stored_as FROM documents")
        ]
    except sqlite3.OperationalError:  # a database from before these tables: nothing named
        images, documents = [], []
    try:
        attached = [r[0] for r in conn.execute(
            "SELECT blob FROM attachments UNION ALL SELECT thumb FROM attachments "
            "WHERE thumb IS NOT NULL UNION ALL SELECT sent FROM attachments WHERE sent IS NOT NULL"
        )]  # fmt: skip
    except sqlite3.OperationalError:  # from before attachments (migration 0009)
        attached = []
    finally:
        conn.close()
    return sorted(n for n in images + documents + attached if not (staging / n).is_file())


def document_folder(workspace: str) -> str:
    """`lib.documents.library.workspace_key`, which this module cannot import cheaply
    (it loads FAISS); tests/test_backup.py checks that the two agree."""
    return hashlib.sha256(workspace.encode("utf-8")).hexdigest()[:32]


def _write_manifest(
    staging: Path, data_dir: Path, files: dict[str, Entry], missing: list[str]
) -> None:
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_dir": str(data_dir),
        "files": dict(sorted(files.items())),
        "missing": missing,
    }
    path = staging / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    with path.open("rb") as file:
        os.fsync(file.fileno())
    fsync_directory(staging)


def _entry(path: Path) -> Entry:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


# Restoring


def restore(source: Path, data_dir: Path) -> Report:
    """Put the backup in `source` into `data_dir`, which must be empty or not exist."""
    started = time.monotonic()
    files = read_manifest(source)
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(
            f"{data_dir} is not empty. Restore only into an empty data directory: stop "
            "Parley and move this one aside (or choose another with --data-dir)."
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".restoring-{uuid.uuid4().hex[:8]}"
    try:
        bad = [name for name, entry in files.items() if not _restored(source, staging, name, entry)]
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise BackupError(
                f"The backup in {source} does not match its manifest ({shown}: missing or "
                "changed since the backup was made), so nothing was restored."
            )
        _check_database(staging / DATABASE)
        for entry in staging.iterdir():
            os.replace(entry, data_dir / entry.name)
        staging.rmdir()
        fsync_directory(data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    db.connect(data_dir / DATABASE).close()  # a backup from an older version is migrated
    size = sum(int(e["size"]) for e in files.values())
    return Report(data_dir, len(files), size, [], round(time.monotonic() - started, 2))


def read_manifest(source: Path) -> dict[str, Entry]:
    """The backup's files by relative path; BackupError if it is not a Parley backup."""
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} is not a Parley backup: no readable {MANIFEST}.") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupError(f"{source} is not a Parley backup this version can restore.")
    files = manifest.get("files")
    if not isinstance(files, dict) or DATABASE not in files:
        raise BackupError(f"The manifest in {source} lists no {DATABASE}.")
    for name in files:
        _require_relative(name, source)
    return files


def _require_relative(name: str, source: Path) -> None:
    # A manifest is input: a path that leaves the data directory must never be written.
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or not path.parts:
        raise BackupError(f"The manifest in {source} names an unsafe path: {name!r}.")


def _restored(source: Path, staging: Path, name: str, entry: Entry) -> bool:
    """Copy one file into staging; False if it is missing or differs from the manifest."""
    try:
        copied = _copy(source / name, staging / name)
    except FileNotFoundError:
        return False
    return copied == {"size": entry.get("size"), "sha256": entry.get("sha256")}


def _check_database(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        result = str(exc)
    if result != "ok":
        raise BackupError(f"The backed-up {DATABASE} is damaged ({result}); nothing was restored.")
