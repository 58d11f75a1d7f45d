"""How each document moved between the stages of one search: channel rankings → fusion → reranking.

The retrieval pipeline records every stage's order in its :class:`~hybrid_search.retrieval.SearchResult`
(``channel_rankings``, ``fused_ranking`` and the final ``hits``). These functions line the stages up side by
side and say, for each document, where it stood in each channel and how far fusion and the reranker moved it.
Ranks start at 1; a shift is positive when a document moved up.

Example:
    >>> stages = {"sparse": ["a", "b", "c"], "dense": ["c", "a"], "fused": ["a", "c", "b"]}
    >>> [(m.id, m.ranks["sparse"], m.ranks["fused"], m.shift("sparse", "fused")) for m in movements(stages, 3)]
    [('a', 1, 1, 0), ('c', 3, 2, 1), ('b', 2, 3, -1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The order stages are shown in; channels first, then what fusion and reranking made of them.
STAGE_ORDER = ("sparse", "dense", "bm25", "fused", "reranked")


def stages(result: Any) -> dict[str, list[str]]:
    """The stages a search went through, in :data:`STAGE_ORDER`, each as a list of ids, best first.

    ``fused`` is there when two or more channels were fused, ``reranked`` when a cross-encoder scored the hits.
    A single-channel search has just that channel.

    Args:
        result: a :class:`~hybrid_search.retrieval.SearchResult`.
    """
    found: dict[str, list[str]] = {c: list(ids) for c, ids in result.channel_rankings.items()}
    if len(result.channel_rankings) > 1:
        found["fused"] = list(result.fused_ranking)
    if any(h.rerank_score is not None for h in result.hits):
        found["reranked"] = [h.id for h in result.hits]
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    return dict(sorted(found.items(), key=lambda item: order.get(item[0], len(order))))


@dataclass
class Movement:
    """One document's rank in each stage (``None``: not in that stage's list)."""

    id: str
    ranks: dict[str, int | None] = field(default_factory=dict)

    def shift(self, before: str, after: str) -> int | None:
        """Places moved up from stage ``before`` to stage ``after`` (negative: down; ``None``: not in both)."""
        a, b = self.ranks.get(before), self.ranks.get(after)
        return None if a is None or b is None else a - b

    def best_channel(self, channels: Sequence[str]) -> tuple[str, int] | None:
        """The channel that ranked the document highest, and that rank."""
        ranked = [(rank, c) for c in channels if (rank := self.ranks.get(c)) is not None]
        if not ranked:
            return None
        rank, channel = min(ranked)
        return channel, rank


def movements(stage_lists: Mapping[str, Sequence[str]], depth: int = 10) -> list[Movement]:
    """Every document in the top ``depth`` of any stage, with its rank in every stage.

    Ranks are looked up in each stage's whole list (a channel keeps its full candidate list), so a document
    fusion lifted into the top 10 from a channel's rank 40 shows that 40. Documents come in the order of the
    last stage, then of the stages before it.
    """
    if depth <= 0:
        raise ValueError("depth must be positive")
    positions = {name: {doc_id: r for r, doc_id in enumerate(ids, start=1)} for name, ids in stage_lists.items()}
    seen: dict[str, None] = {}
    for name in reversed(list(stage_lists)):
        for doc_id in list(stage_lists[name])[:depth]:
            seen.setdefault(doc_id)
    return [Movement(doc_id, {name: positions[name].get(doc_id) for name in stage_lists}) for doc_id in seen]
