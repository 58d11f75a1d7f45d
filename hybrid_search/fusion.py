"""Rank fusion as small pure functions over channel rankings.

Each function takes ``{channel: Ranking}`` (best first) and returns one fused :data:`Ranking`.
Ties are broken by document id so that the output is deterministic.

- :func:`rrf`: Reciprocal Rank Fusion, Cormack, Clarke & Büttcher, SIGIR 2009:
  ``score(d) = Σ_i w_i / (k + rank_i(d))``, ranks from 1, ``k = 60``.
- :func:`dbsf`: Distribution-Based Score Fusion (Qdrant's): each channel's scores are scaled so that
  ``mean ± 3σ`` maps to ``[0, 1]``, then summed.
- :func:`convex`: min-max normalised convex combination ``Σ_i w_i · minmax_i(d)``
  (Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023).
- :func:`zscore`: z-score normalised convex combination ``Σ_i w_i · (s_i(d) - μ_i) / σ_i``, the
  standard-score normalisation of the same paper (its §4); a document missing from a channel takes that
  channel's lowest z-score, as :func:`convex` gives it that channel's lowest normalised score (0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hybrid_search.types import Ranking, ScoredId

FUSION_METHODS = ("rrf", "dbsf", "convex", "zscore")
DEFAULT_RRF_K = 60


def _weights(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(weights or {})
    unknown = set(weights) - set(rankings)
    if unknown:
        raise ValueError(f"weights given for unknown channels {sorted(unknown)}; channels: {sorted(rankings)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("fusion weights must be non-negative")
    return {name: float(weights.get(name, 1.0)) for name in rankings}


def _sorted(scores: dict[str, float], limit: int | None) -> Ranking:
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [ScoredId(doc_id, score) for doc_id, score in ordered[:limit]]


def rrf(
    rankings: Mapping[str, Ranking],
    k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> Ranking:
    """Reciprocal Rank Fusion: ``Σ w_i / (k + rank_i)`` with ranks starting at 1.

    Example:
        >>> from hybrid_search.types import ScoredId
        >>> fused = rrf({"a": [ScoredId("x", 9), ScoredId("y", 8)], "b": [ScoredId("y", 3)]}, k=60)
        >>> [h.id for h in fused]
        ['y', 'x']
    """
    if k < 0:
        raise ValueError("RRF k must be >= 0")
    w = _weights(rankings, weights)
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + w[name] / (k + rank)
    return _sorted(scores, limit)


def _dbsf_normalise(ranking: Ranking) -> dict[str, float]:
    # The same statistics as Qdrant's DBSF (sample standard deviation), so both sides agree.
    if not ranking:
        return {}
    if len(ranking) == 1:
        return {ranking[0].id: 0.5}
    values = [h.score for h in ranking]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    if std == 0:
        return {h.id: 0.5 for h in ranking}
    low, high = mean - 3 * std, mean + 3 * std
    return {h.id: (h.score - low) / (high - low) for h in ranking}


def dbsf(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None, limit: int | None = None
) -> Ranking:
    """Distribution-Based Score Fusion: sum of ``mean ± 3σ``-scaled scores."""
    w = _weights(rankings, weights)
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        for doc_id, value in _dbsf_normalise(ranking).items():
            scores[doc_id] = scores.get(doc_id, 0.0) + w[name] * value
    return _sorted(scores, limit)


def convex(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None, limit: int | None = None
) -> Ranking:
    """Min-max normalised convex combination; a document missing from a channel scores 0 there."""
    w = _weights(rankings, weights)
    total = sum(w.values()) or 1.0
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        if not ranking:
            continue
        low = min(h.score for h in ranking)
        span = max(h.score for h in ranking) - low
        for hit in ranking:
            value = (hit.score - low) / span if span > 0 else 1.0
            scores[hit.id] = scores.get(hit.id, 0.0) + w[name] / total * value
    return _sorted(scores, limit)


def _zscores(ranking: Ranking) -> dict[str, float]:
    # Sample standard deviation, as DBSF; a list without spread carries no preference: all zeros.
    if len(ranking) < 2:
        return {h.id: 0.0 for h in ranking}
    values = [h.score for h in ranking]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return {h.id: (h.score - mean) / std if std > 0 else 0.0 for h in ranking}


def zscore(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None, limit: int | None = None
) -> Ranking:
    """Z-score normalised convex combination ``Σ_i (w_i / Σw) · z_i(d)``.

    A document a channel did not return scores that channel's lowest z-score: it ranked at best as low as
    the channel's last candidate, which is how :func:`convex` treats it too (min-max maps the last to 0).

    Example:
        >>> from hybrid_search.types import ScoredId
        >>> a = [ScoredId("x", 3), ScoredId("y", 2.5), ScoredId("w", 0)]
        >>> fused = zscore({"a": a, "b": [ScoredId("y", 5), ScoredId("z", 1)]})
        >>> [h.id for h in fused]
        ['y', 'x', 'w', 'z']
    """
    w = _weights(rankings, weights)
    total = sum(w.values()) or 1.0
    normalised = {name: _zscores(ranking) for name, ranking in rankings.items()}
    floor = {name: min(z.values()) for name, z in normalised.items() if z}
    ids = {doc_id for z in normalised.values() for doc_id in z}
    scores = {
        doc_id: sum(w[name] / total * z.get(doc_id, floor[name]) for name, z in normalised.items() if z)
        for doc_id in ids
    }
    return _sorted(scores, limit)


def fuse(
    method: str,
    rankings: Mapping[str, Ranking],
    *,
    k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> Ranking:
    """Dispatch to :func:`rrf`, :func:`dbsf`, :func:`convex` or :func:`zscore` by name."""
    if method == "rrf":
        return rrf(rankings, k=k, weights=weights, limit=limit)
    if method == "dbsf":
        return dbsf(rankings, weights=weights, limit=limit)
    if method == "convex":
        return convex(rankings, weights=weights, limit=limit)
    if method == "zscore":
        return zscore(rankings, weights=weights, limit=limit)
    raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")


def same_order(a: Ranking, b: Ranking, k: int = 10, *, tol: float = 1e-6) -> bool:
    """True when two fused rankings agree on their top ``k`` up to the order of tied scores.

    Engines break exact score ties in their own internal order, so documents with equal fused scores
    are compared as sets, and a tie group cut by the ``k`` boundary may differ in its members.
    """
    a, b = a[:k], b[:k]
    if len(a) != len(b):
        return False
    i = 0
    while i < len(a):
        j = i
        while j < len(a) and abs(a[j].score - a[i].score) <= tol:
            j += 1
        if any(abs(h.score - a[i].score) > tol for h in b[i:j]):
            return False
        if j < len(a) and {h.id for h in a[i:j]} != {h.id for h in b[i:j]}:
            return False
        i = j
    return True
