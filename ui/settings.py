"""The UI's state: what its controls collect, and how that becomes the search the CLI would run.

The sidebar's values become :class:`SearchSettings`; :meth:`SearchSettings.to_options` turns them into the core's
:class:`~hybrid_search.options.SearchOptions`, the value the CLI and the benchmark build too, so the UI decides no
rule of its own (default channels, weights, filters: the core does). Pure: no Streamlit, so it is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hybrid_search.constants import (
    CHANNELS,
    DEFAULT_FUSION,
    DEFAULT_K,
    DEFAULT_MODE,
    DEFAULT_RERANK_TOP_N,
    DEFAULT_RRF_K,
)
from hybrid_search.options import SearchOptions


@dataclass
class SearchSettings:
    """The UI's controls; :meth:`to_options` makes them the same :class:`SearchOptions` the CLI builds.

    Attributes:
        mode: ``hybrid``, ``sparse``, ``dense`` or ``bm25``.
        k: hits to show.
        channels: the channels a hybrid search fuses (``None``: the index's default).
        fusion, rrf_k, weights: the fusion method, its RRF constant and per-channel weights.
        filters: ``{field: value | [values]}`` (from :func:`hybrid_search.options.parse_filter_boxes`).
        rerank, rerank_model, rerank_top_n: the cross-encoder step.
        prefetch_k: candidates per channel before fusion (``None``: the index's default).
    """

    mode: str = DEFAULT_MODE
    k: int = DEFAULT_K
    channels: list[str] | None = None
    fusion: str = DEFAULT_FUSION
    rrf_k: float = float(DEFAULT_RRF_K)
    weights: dict[str, float] = field(default_factory=dict)
    filters: dict[str, Any] | None = None
    rerank: bool = False
    rerank_model: str | None = None
    rerank_top_n: int = DEFAULT_RERANK_TOP_N
    prefetch_k: int | None = None

    def to_options(self, meta: Any = None) -> SearchOptions:
        """The settings as :class:`SearchOptions` for an index (``meta``), validated.

        A fusion setting the controls show unchanged from the index's default (its tuned fusion, or the
        defaults) is not counted as given, so the options' ``fusion_source`` says where the fusion came from,
        and the default UI search is exactly ``hybrid-search search`` with its defaults.

        Example:
            >>> SearchSettings(mode="bm25", k=5).to_options().mode
            'bm25'
        """
        base = SearchOptions.for_index(meta)
        available = list(meta.channels) if meta is not None else list(CHANNELS)
        channels = tuple(self.channels) if self.mode == "hybrid" and self.channels else None
        fused = list(channels) if channels else base.channels_for(available) if self.mode == "hybrid" else [self.mode]
        weights = {c: float(self.weights.get(c, 1.0)) for c in fused}
        given: dict[str, Any] = {
            "k": int(self.k),
            "mode": self.mode,
            "fusion": self.fusion,
            "rrf_k": float(self.rrf_k),
            "prefetch_k": self.prefetch_k,
            "filters": self.filters or None,
            "rerank": bool(self.rerank),
            "rerank_top_n": int(self.rerank_top_n),
            "explain": True,
        }
        if channels and set(channels) != set(base.channels_for(available)):
            given["channels"] = channels
        if weights != {c: (base.weights or {}).get(c, 1.0) for c in fused}:
            given["weights"] = weights
        for name in ("fusion", "rrf_k", "prefetch_k"):
            if given[name] == getattr(base, name):
                del given[name]
        return SearchOptions.for_index(meta, **given)


def available_modes(meta: Any) -> list[str]:
    """The modes an index supports: hybrid first, then each of its channels."""
    return ["hybrid", *meta.channels]


def default_channels(meta: Any) -> list[str]:
    """What a hybrid search fuses by default on this index (the rule of :class:`SearchOptions`)."""
    return SearchOptions.for_index(meta).channels_for(list(meta.channels))


def model_facts(meta: Any) -> list[tuple[str, str]]:
    """``[(channel, description)]`` of the models an index was built with, for the sidebar."""
    facts = []
    for channel in ("sparse", "dense"):
        settings = getattr(meta, channel) or {}
        if not settings:
            continue
        details = [
            settings.get("architecture"),
            f"{settings.get('dimension')} dims" if settings.get("dimension") else None,
            settings.get("similarity"),
        ]
        if settings.get("max_active_dims"):
            details.append(f"≤{settings['max_active_dims']} active")
        facts.append((channel, f"{settings.get('name')} ({', '.join(str(d) for d in details if d)})"))
    return facts
