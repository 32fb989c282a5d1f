"""Reranking through the server's `/v1/rerank`, where it has one.

A cross-encoder reads the question and a passage together, so it can tell the passage
that answers from the one that only shares its words, which neither BM25 nor a
bi-encoder's vectors can. llama.cpp's `llama-server --reranking` and vLLM (`--task
score`, or a reranker model) both answer `POST /v1/rerank` with Jina's and Cohere's
shape: `{"model", "query", "documents": [...], "top_n"}` in, `{"results": [{"index",
"relevance_score"}, ...]}` out. Parley sends the first RERANK_POOL fused candidates and
takes their order from it; a server without the endpoint, or one that fails, leaves the
fused order, and retrieval says so (`lib/documents/retrieval.py`).

Off unless `PARLEY_RERANK_MODEL` (`Settings.rerank_model`) names the server's reranking
model: OpenAI has no such endpoint, and a request per question costs a reranker's time
(a cross-encoder reads every candidate whole).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import openai

from lib.client import provider_errors
from lib.errors import ProviderError

log = logging.getLogger(__name__)
RERANK_POOL = 20  # candidates sent: a cross-encoder's cost grows with each


class Reranker:
    """Orders passages for a question by the server's reranking model."""

    def __init__(self, client: openai.OpenAI, model: str) -> None:
        self.client = client
        self.model = model

    def order(self, question: str, passages: Sequence[str]) -> list[int]:
        """Indexes into `passages`, most relevant first; raises ParleyError if the server
        cannot rerank."""
        if not passages:
            return []
        with provider_errors():
            body = self.client.post(
                "/rerank",
                body={"model": self.model, "query": question, "documents": list(passages),
                      "top_n": len(passages)},
                cast_to=object,
            )  # fmt: skip
        results = body.get("results") if isinstance(body, dict) else None
        try:
            ranked = sorted(results, key=lambda r: -float(r["relevance_score"]))
            order = [int(r["index"]) for r in ranked]
        except (TypeError, KeyError, ValueError) as exc:
            raise ProviderError("The server's rerank answer is not one Parley can read.") from exc
        if sorted(order) != list(range(len(passages))):
            order = [i for i in dict.fromkeys(order) if 0 <= i < len(passages)]
            order += [i for i in range(len(passages)) if i not in set(order)]
        return order
