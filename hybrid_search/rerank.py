"""Cross-encoder reranking of the top candidates.

No trained relevance cross-encoder is reachable without the Hub, so the default Hub model
(``cross-encoder/ms-marco-MiniLM-L6-v2``) needs the network once; a local folder works offline.

Example:
    >>> from hybrid_search.rerank import Reranker
    >>> reranker = Reranker.load("cross-encoder/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> reranker.score("what is paris", ["Paris is the capital of France.", "Bananas are yellow."])  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.models import load_model

DEFAULT_RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"
#: Written next to a reranker by ``hybrid-search finetune --arch cross-encoder``: how much of the final score is
#: the cross-encoder's, chosen on held-out training queries (see :func:`interpolate`).
SETTINGS_FILE = "hybrid_search_rerank.json"


def interpolate(
    scores: Sequence[float] | np.ndarray, weight: float, first_stage: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """Blend cross-encoder scores of passages given in first-stage order with that order itself.

    ``weight * minmax(scores) + (1 - weight) * (n - 1 - rank) / (n - 1)``: both parts lie in [0, 1] per query,
    the first stage entering by its rank (the one thing every fusion method and engine gives). ``weight`` 1 is
    the cross-encoder alone, 0 the first stage unchanged. Interpolating a reranker with the first stage is the
    standard remedy when the reranker is weak on its own (e.g. a small model trained on a small domain set).

    With ``first_stage`` (the first stage's scores, same order), passages whose first-stage scores tie share
    the better rank, so a tie the first stage left open stays open: at weight 0 the result ties exactly where
    the first stage did, and an evaluation breaks those ties the same way for both (RRF ties are common).

    Example:
        >>> interpolate([10.0, 0.0, 5.0], 0.5).tolist()  # the first stage's 2nd and 3rd now tie
        [1.0, 0.25, 0.25]
        >>> interpolate([10.0, 0.0, 5.0], 0.0).tolist()  # the first stage's order
        [1.0, 0.5, 0.0]
        >>> interpolate([10.0, 0.0, 5.0], 0.0, first_stage=[0.3, 0.2, 0.2]).tolist()  # its tie kept
        [1.0, 0.5, 0.5]
        >>> interpolate([10.0, 0.0, 5.0], 1.0).tolist()  # the cross-encoder's scores as they are
        [10.0, 0.0, 5.0]
    """
    values = np.asarray(scores, dtype=np.float64)
    n = values.size
    if n == 0 or weight >= 1.0:
        return values.astype(np.float32)
    spread = float(values.max() - values.min())
    normalised = (values - values.min()) / spread if spread > 0 else np.zeros(n)
    ranks = _first_stage_ranks(n, first_stage)
    order = (n - 1 - ranks) / (n - 1) if n > 1 else np.ones(1)
    return (weight * normalised + (1.0 - weight) * order).astype(np.float32)


def _first_stage_ranks(n: int, first_stage: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """0-based ranks of ``n`` passages in first-stage order; tied first-stage scores share the better rank."""
    if first_stage is None:
        return np.arange(n, dtype=np.float64)
    stage = np.asarray(first_stage, dtype=np.float64)
    if stage.shape != (n,):
        raise ValueError(f"first-stage scores for {stage.size} passages, cross-encoder scores for {n}")
    # A passage's rank is how many passages the first stage scored strictly higher (n is a page: tens).
    return (stage[None, :] > stage[:, None]).sum(axis=1).astype(np.float64)


def load_weight(folder: str | Path) -> float:
    """The interpolation weight stored with a reranker folder; 1.0 (the cross-encoder alone) when there is none."""
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return 1.0
    return float(json.loads(path.read_text(encoding="utf-8")).get("weight", 1.0))


class Reranker:
    """A sentence-transformers ``CrossEncoder`` that scores (query, document) pairs."""

    def __init__(self, model: Any, name: str, *, batch_size: int = 32, weight: float = 1.0) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.weight = weight

    @classmethod
    def load(cls, name: str = DEFAULT_RERANKER, *, device: str | None = None, **kwargs: Any) -> Reranker:
        """Load a folder or Hub id onto ``device`` (``None``: ``$HYBRID_SEARCH_DEVICE``, else ``auto``)."""
        from sentence_transformers import CrossEncoder

        model, path = load_model(CrossEncoder, name, device)
        kwargs.setdefault("weight", load_weight(path))
        return cls(model, name, **kwargs)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        if not documents:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, d) for d in documents]
        return np.asarray(
            self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), dtype=np.float32
        )

    def rerank(
        self, query: str, documents: Sequence[str], first_stage: Sequence[float] | np.ndarray | None = None
    ) -> np.ndarray:
        """Final scores of ``documents`` given in first-stage order: the cross-encoder's, interpolated with that
        order by the reranker's stored weight (:func:`interpolate`, where ``first_stage`` scores keep their
        ties; weight 1 leaves the scores as they are)."""
        return interpolate(self.score(query, documents), self.weight, first_stage)
