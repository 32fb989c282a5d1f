"""The keyword index of a move: BM25 postings in the database (`lib/documents/pgkeywords.py`)
for every copied document, analysed from its copied passages as an upload's are. Derived
data, not copied: the BM25 files beside the SQLite database are not read. A document that
has its postings already is left alone, so a rerun indexes none; each batch of documents
is one transaction."""

from __future__ import annotations

from lib.store.migrate.run import Run


def index_keywords(run: Run) -> None:
    from lib.documents.pgkeywords import backfill  # loads the documents stack: only here

    tally = run.tally("keyword index")
    with run.target.connection() as conn:
        tally.present = conn.execute("SELECT count(*) FROM keyword_documents").fetchone()[0]
    while True:
        with run.target.transaction() as conn:
            indexed = backfill(conn, limit=run.batch_size)
        tally.copied += indexed
        run.progress(tally)
        if indexed < run.batch_size:
            break
    run.finish(tally)


def check_keywords(run: Run) -> None:
    with run.target.connection() as conn:
        documents, missing, terms = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE k.document_id IS NULL), "
            "(SELECT count(*) FROM keyword_postings) FROM documents d "
            "LEFT JOIN keyword_documents k ON k.document_id = d.id "
            "WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.document_id = d.id)"
        ).fetchone()
    if missing:
        run.fail("keyword index", f"{missing:,} of {documents:,} documents have no postings")
    else:
        run.passed("keyword index", f"{documents:,} documents, {terms:,} term rows")
