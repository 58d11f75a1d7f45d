"""BM25 channel on rank-bm25, for engines without a BM25 of their own.

The caller owns tokenisation, as in rank-bm25: :func:`tokenize` lowercases and splits on word characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from hybrid_search.types import Ranking, ScoredId

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25Channel:
    """Okapi BM25 over ``(id, text)`` pairs.

    Args:
        ids: document ids, in the order of ``texts``.
        texts: the documents' text (title and body).
        k1, b: the usual BM25 parameters.
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str], *, k1: float = 0.9, b: float = 0.4) -> None:
        from rank_bm25 import BM25Okapi

        if len(ids) != len(texts):
            raise ValueError("ids and texts must have the same length")
        self.ids = list(ids)
        self._position = {doc_id: i for i, doc_id in enumerate(self.ids)}
        self._bm25 = BM25Okapi([tokenize(t) for t in texts], k1=k1, b=b) if self.ids else None

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int, allowed: set[str] | None = None) -> Ranking:
        """Top ``k`` ids by BM25 score; ``allowed`` restricts the result to a filtered subset."""
        terms = tokenize(query)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        if allowed is not None:
            mask = np.full(len(self.ids), -np.inf)
            keep = [self._position[i] for i in allowed if i in self._position]
            mask[keep] = 0.0
            scores = scores + mask
        top = np.argsort(-scores, kind="stable")[:k]
        return [ScoredId(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(len(queries), len(self))`` BM25 scores of every document for every query (float32)."""
        out = np.zeros((len(queries), len(self.ids)), dtype=np.float32)
        if self._bm25 is not None:
            for row, query in enumerate(queries):
                terms = tokenize(query)
                if terms:
                    out[row] = self._bm25.get_scores(terms)
        return out

    def score_passages(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """BM25 score of ``passages[i]`` for ``queries[i]``, with this corpus's statistics (IDF, average length).

        For passages that are not corpus documents (a mined training pair's positive is its passage less the
        pseudo-query): rank-bm25 scores only the documents it was built on, so the Okapi formula is applied here
        with its fitted ``idf``, ``k1``, ``b`` and ``avgdl``. A corpus document's text scores as in :meth:`score_matrix`.
        """
        if len(queries) != len(passages):
            raise ValueError("need one passage per query")
        out = np.zeros(len(queries), dtype=np.float32)
        if self._bm25 is None:
            return out
        bm25 = self._bm25
        for row, (query, passage) in enumerate(zip(queries, passages)):
            words = tokenize(passage)
            counts: dict[str, int] = {}
            for word in words:
                counts[word] = counts.get(word, 0) + 1
            norm = bm25.k1 * (1 - bm25.b + bm25.b * len(words) / bm25.avgdl)
            out[row] = sum(
                (bm25.idf.get(term) or 0.0) * counts.get(term, 0) * (bm25.k1 + 1) / (counts.get(term, 0) + norm)
                for term in tokenize(query)
            )
        return out
