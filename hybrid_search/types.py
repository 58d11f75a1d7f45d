"""Plain data types shared by every layer.

Nothing here imports an engine or a model, so indexers, pipelines and the UI can all
depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Document:
    """One corpus entry, keyed by the corpus's own string id."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Title and text joined the way BEIR and sentence-transformers do."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass
class SparseVector:
    """A sparse vector as sorted, unique ``indices`` and their ``values``."""

    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.indices.shape != self.values.shape or self.indices.ndim != 1:
            raise ValueError("indices and values must be 1-D arrays of the same length")
        if self.indices.size > 1 and not (self.indices[1:] > self.indices[:-1]).all():
            order = np.argsort(self.indices, kind="stable")
            self.indices, self.values = self.indices[order], self.values[order]
            if np.any(np.diff(self.indices) == 0):
                raise ValueError("sparse vector indices must be unique")

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def dot(self, other: SparseVector) -> float:
        _, a, b = np.intersect1d(self.indices, other.indices, assume_unique=True, return_indices=True)
        return float(np.dot(self.values[a].astype(np.float64), other.values[b].astype(np.float64)))

    def to_dict(self) -> dict[str, list]:
        return {"indices": self.indices.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> SparseVector:
        return cls(np.asarray(data["indices"]), np.asarray(data["values"]))


def sparse_to_csr(vectors: Sequence[SparseVector]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack sparse vectors into CSR arrays ``(indptr, indices, values)``: row ``r`` is
    ``indices/values[indptr[r]:indptr[r + 1]]``. The one packer, for the embedding cache, the Seismic
    accelerator's forward index and scipy matrices alike.

    ``indptr`` is int64, ``indices`` int32 (vocabulary ids fit, and halving them matters for big corpora),
    ``values`` float32.

    Example:
        >>> indptr, indices, values = sparse_to_csr([SparseVector([3, 7], [1.0, 2.0]), SparseVector([], [])])
        >>> indptr.tolist(), indices.tolist()
        ([0, 2, 2], [3, 7])
    """
    lengths = np.fromiter((v.nnz for v in vectors), dtype=np.int64, count=len(vectors))
    indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if not vectors:
        return indptr, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    indices = np.concatenate([v.indices for v in vectors]).astype(np.int32)
    return indptr, indices, np.concatenate([v.values for v in vectors]).astype(np.float32)


def csr_to_sparse(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> list[SparseVector]:
    """Unpack CSR arrays into one :class:`SparseVector` per row (the inverse of :func:`sparse_to_csr`)."""
    return [SparseVector(indices[s:e], values[s:e]) for s, e in zip(indptr[:-1], indptr[1:])]


@dataclass
class ScoredId:
    """One entry of a single channel's ranking."""

    id: str
    score: float


#: A ranking is an ordered list, best first.
Ranking = list[ScoredId]


@dataclass
class TokenContribution:
    """One matched vocabulary token of a sparse explanation."""

    token: str
    token_id: int
    query_weight: float
    doc_weight: float
    contribution: float
    expansion: bool  # True when the token is not in the document text's own tokenisation


@dataclass
class FusionTerm:
    """One channel's part in a hit's fused score: the terms of a hit add up to its fused score.

    Attributes:
        channel: ``sparse``, ``dense`` or ``bm25``.
        rank: the document's rank among the channel's candidates (from 1); ``None`` when it is not one of them.
        score: the channel's raw score for the document; ``None`` when it is not a candidate there.
        weight: the channel's weight in the sum (for the convex combination, already divided by the weights' total).
        normalised: the score as fusion saw it (DBSF: ``mean ± 3σ`` scaled; convex: min-max); ``None`` for RRF.
        term: what the channel adds: RRF ``weight / (k + rank)``, DBSF and convex ``weight × normalised``; 0 when
            the document is not a candidate of the channel.
    """

    channel: str
    rank: int | None
    score: float | None
    weight: float
    normalised: float | None
    term: float


@dataclass
class Hit:
    """One result of the retrieval pipeline."""

    id: str
    document: Document | None
    score: float
    rank: int
    channel_ranks: dict[str, int] = field(default_factory=dict)
    channel_scores: dict[str, float] = field(default_factory=dict)
    fused_score: float | None = None
    rerank_score: float | None = None
    explanation: list[TokenContribution] | None = None
    #: Each fused channel's rank, score and term (hybrid searches with per-channel rankings); they add up to
    #: ``fused_score``.
    fusion_terms: list[FusionTerm] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
