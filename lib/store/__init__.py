"""Where Parley keeps things: one store layer over two backends.

`PARLEY_DATABASE_URL` picks the backend. Unset, everything lives in the data directory:
SQLite (`parley.db`), FAISS and BM25 index files, and the files themselves: the
embedded default, for one process on one disk. A `postgresql://` URL puts every store
on PostgreSQL (full-text search, pgvector, and by default the files too), so several app
replicas can share it and a host that wipes its disk (Streamlit Community Cloud) loses
nothing.

- `backend.py`: what a backend is (`Backend`: connections, transactions, the blob store)
  and `open_backend`, the one place that reads the setting.
- `sqlite.py` / `postgres.py`: the two backends; `postgres_schema.py` is PostgreSQL's
  migrations (SQLite's are `lib/store/sqlite_schema.py`).
- `blobs.py`: files by key, in the data directory or in PostgreSQL.
- `base.py`: `WorkspaceStore`, the base of every store, bound to one workspace when
  opened.
"""
