"""Chat with your documents: the core, with no Streamlit in it.

The pipeline, one module per stage:

- `extract`: bytes → pages of text (pypdfium2 for PDFs, pypdf as the fallback; text files
  with their encoding detected), with clear errors for files that cannot be read.
- `chunking`: pages → token-sized chunks that each carry their page and character range.
- `embeddings`: chunks → vectors through `/v1/embeddings`, batched, retried on 429 with
  a visible wait, and cached in the database by chunk hash and model.
- `library`: documents, pages and chunks in the database, and files in the blob store,
  one workspace per library.
- `search`: the seam to the search indexes: on SQLite `indexes` (FAISS files from
  `vectorstore`, persisted with `faiss.write_index`, never a pickle, and BM25 segments
  from `bm25`); on PostgreSQL `pgsearch` (pgvector, and `pgkeywords`: the same BM25 over
  postings in the database).
- `ingest`: the honest, cancellable upload pipeline and its per-file reports.
- `retrieval`: hybrid dense + keyword search fused by reciprocal rank fusion.
- `rag`: history-aware question rewriting, whole-document or retrieval context, and the
  streamed, cited answer.
"""
