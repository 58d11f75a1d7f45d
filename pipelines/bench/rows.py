"""What a benchmark runs: the rows of its table (systems), planned from the options.

A row is one system: a single channel, or a fusion of several, each optionally + reranker. The
parsers here turn the CLI's ``--hybrid`` and ``--weighted-rrf`` strings into rows, and
:func:`plan_rows` fixes the table order, so the table reads the same whichever way the options came.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hybrid_search.constants import DEFAULT_RRF_K, FUSION_METHODS
from hybrid_search.options import parse_weights as parse_channel_weights

CHANNEL_ORDER = ("sparse", "dense", "bm25")
_FUSION_LABEL = {"rrf": "RRF", "dbsf": "DBSF", "convex": "convex", "zscore": "z-score"}


@dataclass(frozen=True)
class RowSpec:
    """One system of the table: its channels, how they are fused, and whether it reranks.

    Attributes:
        channels: one channel (``sparse``, ``dense``, ``bm25``) or several to fuse.
        fusion: ``rrf``, ``dbsf`` or ``convex`` for several channels; ``None`` for one.
        weights: per-channel fusion weights (weighted RRF); ``None`` for equal weights.
        rerank: rerank the candidates with the cross-encoder.
        rrf_k, prefetch_k: the row's own RRF constant and prefetch depth (``None``: the run's).
        source: where a learned row's fusion came from (``hybrid-search tune``), e.g. ``tuned on scifact
            train``; ``None`` for a row the options name.
    """

    channels: tuple[str, ...]
    fusion: str | None = None
    weights: tuple[tuple[str, float], ...] | None = None
    rerank: bool = False
    rrf_k: float | None = None
    prefetch_k: int | None = None
    source: str | None = None

    @property
    def hybrid(self) -> bool:
        return len(self.channels) > 1

    @property
    def name(self) -> str:
        if self.source:
            return f"{self.source}: {self.setting_label()}" + (" + reranker" if self.rerank else "")
        if not self.hybrid:
            base = "BM25" if self.channels[0] == "bm25" else self.channels[0]
        elif self.weights:
            spec = ",".join(f"{c}={w:g}" for c, w in self.weights)
            base = f"hybrid weighted {_FUSION_LABEL[self.fusion or 'rrf']} ({spec})"
        else:
            base = f"hybrid {_FUSION_LABEL[self.fusion or 'rrf']} ({'+'.join(self.channels)})"
        return f"{base} + reranker" if self.rerank else base

    @property
    def tag(self) -> str:
        """The row's name as a TREC run tag and file name: no spaces, no parentheses."""
        return re.sub(r"[^A-Za-z0-9+=.,_-]+", "_", self.name.lower().replace(" + ", "+")).strip("_")

    def base(self) -> RowSpec:
        """The same row without the reranker."""
        return replace(self, rerank=False)

    def setting_label(self) -> str:
        """What a learned row runs, as ``tune`` labels it: ``z-score convex (sparse+dense+bm25), prefetch 50``."""
        from hybrid_search.tuning import DEFAULT_PREFETCH_K, FusionSetting

        weights = tuple(w for _, w in self.weights) if self.weights else None
        rrf_k = self.rrf_k if self.rrf_k is not None else DEFAULT_RRF_K
        return FusionSetting(self.channels, self.fusion, rrf_k, weights, self.prefetch_k or DEFAULT_PREFETCH_K).label

    @classmethod
    def learned(cls, setting: Any, source: str) -> RowSpec:
        """The row of a fusion learned by ``tune`` (a :class:`~hybrid_search.tuning.FusionSetting`)."""
        return cls(
            channels=tuple(setting.channels),
            fusion=setting.method,
            weights=tuple(setting.weight_map.items()) if setting.weight_map else None,
            rrf_k=setting.rrf_k,
            prefetch_k=setting.prefetch_k,
            source=source,
        )


def parse_hybrid(spec: str | Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Parse ``"sparse+dense,sparse+dense+bm25"`` into channel tuples in canonical order.

    Example:
        >>> parse_hybrid("dense+sparse,bm25+dense+sparse")
        [('sparse', 'dense'), ('sparse', 'dense', 'bm25')]
    """
    items: list[Any] = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    combos: list[tuple[str, ...]] = []
    for item in items:
        parts = [p.strip() for p in item.split("+")] if isinstance(item, str) else [str(p).strip() for p in item]
        parts = [p for p in parts if p]
        if not parts:
            continue
        unknown = [p for p in parts if p not in CHANNEL_ORDER]
        if unknown:
            raise ValueError(
                f"unknown channel(s) {', '.join(unknown)} in --hybrid {item!r}; channels: sparse, dense, bm25"
            )
        if len(set(parts)) != len(parts) or len(parts) < 2:
            raise ValueError(f"--hybrid {item!r}: name two or three different channels, e.g. sparse+dense")
        combo = tuple(c for c in CHANNEL_ORDER if c in parts)
        if combo not in combos:
            combos.append(combo)
    return combos


def parse_weights(spec: str | Mapping[str, float]) -> dict[str, float]:
    """Parse ``"sparse=2,dense=1"`` into ``{"sparse": 2.0, "dense": 1.0}``.

    Example:
        >>> parse_weights("sparse=2, dense=0.5")
        {'sparse': 2.0, 'dense': 0.5}
    """
    out = parse_channel_weights(spec) or {}
    unknown = sorted(set(out) - set(CHANNEL_ORDER))
    if unknown or len(out) < 2:
        raise ValueError(f"weighted RRF needs weights for two or three of sparse, dense, bm25; got {spec!r}")
    if any(w < 0 for w in out.values()):
        raise ValueError("fusion weights must be non-negative")
    return out


def plan_rows(
    available: Sequence[str],
    *,
    hybrid: Sequence[tuple[str, ...]] | None = None,
    fusions: Sequence[str] = ("rrf",),
    weighted: Sequence[Mapping[str, float]] = (),
    bm25: bool = True,
    rerank: bool = False,
) -> list[RowSpec]:
    """The rows of a benchmark, in table order: single channels, fusions, then the reranked copies.

    Args:
        available: channels the models provide (``sparse``/``dense``; ``bm25`` is always possible).
        hybrid: channel combinations to fuse; ``None`` means sparse+dense when both exist.
        fusions: fusion methods, one row per combination and method.
        weighted: weight maps, one weighted-RRF row each over the channels they name.
        bm25: include the BM25 row.
        rerank: add a ``+ reranker`` copy of every row.

    Example:
        >>> [r.name for r in plan_rows(["sparse", "dense"], rerank=False)]
        ['BM25', 'sparse', 'dense', 'hybrid RRF (sparse+dense)']
    """
    have = set(available) | {"bm25"}
    # BM25 first: the classic baseline leads the table, as in BEIR-style reports.
    singles = [c for c in ("bm25", "sparse", "dense") if c in have and (c != "bm25" or bm25)]
    if hybrid is None:
        hybrid = [("sparse", "dense")] if {"sparse", "dense"} <= have else []
    for method in fusions:
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion {method!r}; choose from {', '.join(FUSION_METHODS)}")
    rows = [RowSpec((c,)) for c in singles]
    for combo in hybrid:
        missing = [c for c in combo if c not in have]
        if missing:
            raise ValueError(
                f"--hybrid {'+'.join(combo)} needs a {' and a '.join(missing)} model; pass --{missing[0]} MODEL"
            )
        rows += [RowSpec(tuple(combo), method) for method in fusions]
    for weights in weighted:
        combo = tuple(c for c in CHANNEL_ORDER if c in weights)
        missing = [c for c in combo if c not in have]
        if missing:
            raise ValueError(f"weighted RRF over {'+'.join(combo)} needs a {' and a '.join(missing)} model")
        rows.append(RowSpec(combo, "rrf", tuple((c, float(weights[c])) for c in combo)))
    if not rows:
        raise ValueError("nothing to benchmark: give a sparse or dense model, or keep the BM25 row")
    return rows + ([replace(r, rerank=True) for r in rows] if rerank else [])
