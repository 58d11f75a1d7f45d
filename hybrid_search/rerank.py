"""Cross-encoder reranking of the top candidates.

No trained relevance cross-encoder is reachable without the Hub, so the default Hub model
(``cross-encoder/ms-marco-MiniLM-L6-v2``) needs the network once; a local folder works offline.

Example:
    >>> from hybrid_search.rerank import Reranker
    >>> reranker = Reranker.load("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> reranker.score("what is paris", ["Paris is the capital of France.", "Bananas are yellow."])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hybrid_search.models import load_model

DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"


class Reranker:
    """A sentence-transformers ``CrossEncoder`` that scores (query, document) pairs."""

    def __init__(self, model: Any, name: str, *, batch_size: int = 32) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(cls, name: str = DEFAULT_RERANKER, *, device: str | None = None, **kwargs: Any) -> Reranker:
        """Load a folder or Hub id onto ``device`` (``None``: ``$HYBRID_SEARCH_DEVICE``, else ``auto``)."""
        from sentence_transformers import CrossEncoder

        model, path = load_model(CrossEncoder, name, device)
        return cls(model, name, **kwargs)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        if not documents:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, d) for d in documents]
        return np.asarray(
            self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), dtype=np.float32
        )
