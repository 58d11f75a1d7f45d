"""Token-level explanations: why a document matched a query in the sparse channel.

The sparse score is the dot product of two sparse vectors. :func:`explain` decodes its non-zero terms
(a merge-join over the sorted indices) into rows of token, query weight, document weight and
contribution, so that the contributions add up to the score.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

import numpy as np

from hybrid_search.types import SparseVector, TokenContribution


def overlap(query: SparseVector, document: SparseVector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shared indices and both sides' weights at them (indices sorted ascending)."""
    shared, qi, di = np.intersect1d(query.indices, document.indices, assume_unique=True, return_indices=True)
    return shared, query.values[qi], document.values[di]


def explain(
    query: SparseVector,
    document: SparseVector,
    token: Callable[[int], str],
    text_token_ids: AbstractSet[int] | None = None,
    top_k: int | None = None,
) -> list[TokenContribution]:
    """Decode the overlap of ``query`` and ``document`` into contributions, largest first.

    Args:
        query, document: the two sparse vectors.
        token: maps a vocabulary id to its token string.
        text_token_ids: the ids of the document text's own tokenisation. A matched token outside it is
            marked ``expansion=True``: it matched through the model's expansion, not the text.
        top_k: keep only the ``top_k`` largest contributions (the rest still count in the score).

    Example:
        >>> q = SparseVector([1, 5], [1.0, 2.0]); d = SparseVector([5, 7], [0.5, 1.0])
        >>> [(r.token_id, r.contribution) for r in explain(q, d, str)]
        [(5, 1.0)]
    """
    shared, qw, dw = overlap(query, document)
    contrib = qw.astype(np.float64) * dw.astype(np.float64)
    order = np.lexsort((shared, -contrib))
    if top_k is not None:
        order = order[:top_k]
    return [
        TokenContribution(
            token=token(int(shared[i])),
            token_id=int(shared[i]),
            query_weight=float(qw[i]),
            doc_weight=float(dw[i]),
            contribution=float(contrib[i]),
            expansion=text_token_ids is not None and int(shared[i]) not in text_token_ids,
        )
        for i in order
    ]


def explained_score(rows: list[TokenContribution]) -> float:
    return float(sum(r.contribution for r in rows))
