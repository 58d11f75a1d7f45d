"""Judge a sparse model on a retrieval dataset: exact dot-product search in memory, metrics and sparsity.

The corpus and the queries are encoded into scipy CSR matrices; one sparse matrix product scores every query
against every document, exactly (no index, no approximation). The metrics come from
:func:`hybrid_search.metrics.evaluate` (ir_measures) over the judged queries, and the active dimensions are
the mean number of non-zero entries per query and per document vector. A sparse model has to be judged on both:
a model can buy effectiveness with dense vectors that an inverted index cannot serve cheaply.

Example:
    >>> from hybrid_search.encoders import SparseEncoder
    >>> from hybrid_search.dataset import load_dataset
    >>> from hybrid_search.training.evaluate import evaluate_sparse
    >>> result = evaluate_sparse(SparseEncoder.load("splade-tiny"), load_dataset("../shared/data/msmarco-dl19-5k"))  # doctest: +SKIP
    >>> round(result.metrics["nDCG@10"], 4)  # doctest: +SKIP
    0.8096
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hybrid_search.dataset import RetrievalDataset
from hybrid_search.metrics import evaluate, evaluate_per_query
from hybrid_search.types import SparseVector, sparse_to_csr


@dataclass
class SparseEvalResult:
    """Effectiveness and sparsity of one model on one dataset."""

    dataset: str
    metrics: dict[str, float]
    query_active_dims: float
    document_active_dims: float
    queries: int
    documents: int
    rel_threshold: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_query_ndcg10(self) -> dict[str, float]:
        """nDCG@10 of each judged query, for paired significance tests between two models."""
        return self.extra.get("per_query_ndcg10", {})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseEvalResult:
        return cls(**data)


def to_csr(vectors: list[SparseVector], dim: int) -> Any:
    """Stack sparse vectors into a ``(len(vectors), dim)`` scipy CSR matrix."""
    from scipy.sparse import csr_matrix

    indptr, indices, values = sparse_to_csr(vectors)
    return csr_matrix((values, indices, indptr), shape=(len(vectors), dim))


def exact_search(
    query_vectors: list[SparseVector], doc_vectors: list[SparseVector], doc_ids: list[str], dim: int, top_k: int = 100
) -> list[dict[str, float]]:
    """Top-k documents per query by exact dot product: ``[{doc_id: score}, ...]`` in query order.

    Documents with a score of 0 (no overlap) are left out, as an inverted index would leave them out.
    """
    queries, docs = to_csr(query_vectors, dim), to_csr(doc_vectors, dim)
    scores = (queries @ docs.T).toarray()
    k = min(top_k, scores.shape[1])
    out = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k] if k < row.size else np.arange(row.size)
        out.append({doc_ids[i]: float(row[i]) for i in top if row[i] != 0})
    return out


def evaluate_sparse(
    encoder: Any,
    dataset: RetrievalDataset,
    *,
    top_k: int = 100,
    rel_threshold: int = 1,
    progress: bool = False,
    doc_vectors: list[SparseVector] | None = None,
) -> SparseEvalResult:
    """Encode ``dataset``'s corpus and judged queries with ``encoder`` and score them exactly.

    Args:
        encoder: a :class:`hybrid_search.encoders.SparseEncoder` (or a sentence-transformers
            ``SparseEncoder``, which is wrapped).
        dataset: the evaluation set; only its judged queries are encoded.
        top_k: documents kept per query (``R@100`` needs 100).
        rel_threshold: lowest grade counted relevant by the binary measures (nDCG uses the graded gains).
        progress: show a progress bar while the corpus is encoded.
        doc_vectors: the corpus already encoded by this model, in ``dataset.corpus`` order (e.g. from an
            embedding cache); the corpus is then not encoded again.
    """
    from hybrid_search.encoders import SparseEncoder

    if not isinstance(encoder, SparseEncoder):
        encoder = SparseEncoder(encoder, "in-memory")
    start = time.perf_counter()
    qids = dataset.judged_queries
    qids = [q for q in qids if q in dataset.queries]
    if not qids:
        raise ValueError(f"evaluation set {dataset.name} has no judged query with text")
    doc_ids = list(dataset.corpus)
    if doc_vectors is not None and len(doc_vectors) != len(doc_ids):
        raise ValueError(f"{len(doc_vectors)} document vectors for a corpus of {len(doc_ids)}")
    doc_vecs = (
        doc_vectors
        if doc_vectors is not None
        else encoder.encode_document([dataset.corpus[d].full_text for d in doc_ids], show_progress_bar=progress)
    )
    query_vecs = encoder.encode_query([dataset.queries[q] for q in qids])
    dim = encoder.dimension
    hits = exact_search(query_vecs, doc_vecs, doc_ids, dim, top_k)
    run = dict(zip(qids, hits))
    metrics = evaluate(run, dataset.qrels, rel_threshold=rel_threshold)
    per_query = evaluate_per_query(run, dataset.qrels, rel_threshold=rel_threshold)["nDCG@10"]
    return SparseEvalResult(
        dataset=dataset.name,
        metrics=metrics,
        query_active_dims=float(np.mean([v.nnz for v in query_vecs])),
        document_active_dims=float(np.mean([v.nnz for v in doc_vecs])) if doc_vecs else 0.0,
        queries=len(qids),
        documents=len(doc_ids),
        rel_threshold=rel_threshold,
        seconds=time.perf_counter() - start,
        extra={"per_query_ndcg10": per_query},
    )


def validation_dataset(rows: Any, docs: list[Any]) -> RetrievalDataset:
    """Held-out training rows as a small retrieval set over the training corpus (query ids ``v0, v1...``, each
    row's positive judged 1), so that recipes are compared by nDCG@10 of training queries, never by the test
    split; its corpus fingerprint is the corpus's own, so cached corpus vectors serve it."""
    doc_id: dict[str, str] = {}
    for doc in docs:
        doc_id.setdefault(doc.full_text, doc.id)
    queries = {f"v{i}": q for i, q in enumerate(dict.fromkeys(rows["query"]))}
    qid = {q: i for i, q in queries.items()}
    qrels: dict[str, dict[str, int]] = {}
    for query, positive in zip(rows["query"], rows["positive"]):
        if positive in doc_id:
            qrels.setdefault(qid[query], {})[doc_id[positive]] = 1
    return RetrievalDataset("train-validation", {d.id: d for d in docs}, queries, qrels)
