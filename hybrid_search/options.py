"""One value for everything a search can be asked: :class:`SearchOptions`, validated once.

The CLI, the UI and the benchmark all build a :class:`SearchOptions` (the CLI from its flags, the UI from its
controls, the benchmark from its rows), so there is one weight parser, one filter parser and one rule for the
channels a hybrid search fuses by default. An index may carry a fusion learned by ``hybrid-search tune``
(``IndexMeta.fusion``); :meth:`SearchOptions.for_index` starts from it, lets what the user gave override it,
and records where the fusion came from in :attr:`SearchOptions.fusion_source`.

Example:
    >>> options = SearchOptions(k=5, channels=("sparse", "dense", "bm25"), weights={"bm25": 0.5})
    >>> options.channels_for(["sparse", "dense", "bm25"])
    ['sparse', 'dense', 'bm25']
    >>> SearchOptions(rrf_k=-1)
    Traceback (most recent call last):
    ...
    ValueError: rrf_k (the RRF constant) must be a finite number >= 0; got -1
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from hybrid_search.constants import (
    CHANNELS,
    DEFAULT_FUSION,
    DEFAULT_HYBRID_CHANNELS,
    DEFAULT_K,
    DEFAULT_MODE,
    DEFAULT_PREFETCH_K,
    DEFAULT_RERANK_TOP_N,
    DEFAULT_RRF_K,
    FUSION_METHODS,
    MODES,
)

#: The settings a learned fusion (``IndexMeta.fusion``) may set, by their name there → option name.
TUNED_FIELDS = {
    "method": "fusion",
    "rrf_k": "rrf_k",
    "weights": "weights",
    "channels": "channels",
    "prefetch_k": "prefetch_k",
}
FUSION_FIELDS = tuple(TUNED_FIELDS.values())
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# --- parsers: the one place text becomes option values ------------------------------------------
def parse_channels(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"sparse,dense,bm25"`` → ``("sparse", "dense", "bm25")``; checked by :class:`SearchOptions`."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if str(p).strip()) or None


def parse_weights(items: str | Sequence[str] | Mapping[str, Any] | None) -> dict[str, float] | None:
    """``CHANNEL=NUMBER`` pairs, as repeated flags or one comma-separated string, into ``{channel: weight}``.

    Example:
        >>> parse_weights(["sparse=2", "dense=0.5"]) == parse_weights("sparse=2, dense=0.5")
        True
        >>> parse_weights("sparse=two")
        Traceback (most recent call last):
        ...
        ValueError: bad weight 'sparse=two': use CHANNEL=NUMBER, e.g. sparse=2
    """
    if items is None:
        return None
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    else:
        raw = items.split(",") if isinstance(items, str) else [p for item in items for p in item.split(",")]
        pairs = []
        for item in filter(None, (s.strip() for s in raw)):
            name, sep, value = item.partition("=")
            if not sep or not _NUMBER.fullmatch(value.strip()):
                raise ValueError(f"bad weight {item!r}: use CHANNEL=NUMBER, e.g. sparse=2")
            pairs.append((name.strip(), value))
    try:
        return {name: float(value) for name, value in pairs} or None
    except (TypeError, ValueError):
        raise ValueError(f"bad weights {items!r}: each weight must be a number") from None


def parse_filter_value(text: str) -> str | int | float | bool:
    """A filter value typed in: integers and decimals become numbers, ``true``/``false`` booleans, the rest text.

    The index matches a value against both its text and its number forms (see
    :func:`hybrid_search.index.filter_variants`), so ``2019`` finds a year stored as ``"2019"`` or ``2019``.

    Example:
        >>> [parse_filter_value(v) for v in ("2019", "1.5", "true", "null", '"x"', "nan")]
        [2019, 1.5, True, 'null', '"x"', 'nan']
    """
    value = text.strip()
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if _NUMBER.fullmatch(value):
        number = float(value)
        if re.fullmatch(r"[+-]?\d+", value):
            return int(value)
        return number
    return value


def _add_filter(filters: dict[str, Any], name: str, value: Any) -> None:
    if name in filters:
        prev = filters[name]
        filters[name] = (prev if isinstance(prev, list) else [prev]) + [value]
    else:
        filters[name] = value


def parse_filters(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``FIELD=VALUE`` items (the CLI's repeatable ``--filter``); repeating a field means any of its values.

    Example:
        >>> parse_filters(["lang=en", "lang=de", "year=2019"])
        {'lang': ['en', 'de'], 'year': 2019}
    """
    filters: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"bad filter {item!r}: use FIELD=VALUE")
        _add_filter(filters, name.strip(), parse_filter_value(value))
    return filters or None


def parse_filter_boxes(values: Mapping[str, str]) -> dict[str, Any] | None:
    """The UI's filter boxes: ``"en"`` is one value, ``"en, de"`` any of several; empty boxes are ignored.

    Example:
        >>> parse_filter_boxes({"lang": "en, de", "year": "2019", "source": "  "})
        {'lang': ['en', 'de'], 'year': 2019}
    """
    filters: dict[str, Any] = {}
    for name, text in values.items():
        for part in (p for p in (text or "").split(",") if p.strip()):
            _add_filter(filters, name, parse_filter_value(part))
    return filters or None


# --- the options --------------------------------------------------------------------------------
def _positive_int(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ValueError(f"{name} ({what}) must be a whole number >= 1; got {value!r}")
    return int(value)


def _check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not filters:
        return None
    out = {}
    for name, value in filters.items():
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        for v in values:
            if v is None or not isinstance(v, (str, int, float, bool)):
                raise ValueError(f"filter {name}: values are text, numbers or true/false; got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"filter {name}: {v} is not a value a document can have")
        if not values:
            raise ValueError(f"filter {name}: give at least one value")
        out[str(name)] = list(values) if isinstance(value, (list, tuple, set)) else value
    return out


def default_channels(available: Sequence[str]) -> list[str]:
    """What a hybrid search fuses when not told: sparse + dense, or the vector channel there is with BM25.

    Example:
        >>> default_channels(["sparse", "dense", "bm25"]), default_channels(["sparse", "bm25"])
        (['sparse', 'dense'], ['sparse', 'bm25'])
    """
    vectors = [c for c in DEFAULT_HYBRID_CHANNELS if c in available]
    return vectors if len(vectors) == len(DEFAULT_HYBRID_CHANNELS) else [*vectors, "bm25"]


@dataclass(frozen=True)
class SearchOptions:
    """What one search does; invalid values raise :class:`ValueError` when the options are made.

    Attributes:
        k: hits to return.
        mode: ``hybrid`` (fuse ``channels``) or one channel: ``sparse``, ``dense``, ``bm25``.
        channels: the channels a hybrid search fuses; ``None``: :func:`default_channels` of what the index has.
        fusion: ``rrf``, ``dbsf`` or ``convex``.
        rrf_k: the RRF constant (ranks start at 1), not to be confused with ``k``.
        weights: per-channel fusion weights (1 where not given).
        prefetch_k: candidates taken from each channel before fusion.
        filters: ``{field: value | [values]}`` equality filters on document metadata.
        rerank, rerank_top_n: rescore the top ``rerank_top_n`` with the cross-encoder, when there is one.
        explain: decode each hit's sparse token overlap with the query.
        engine_fusion: let the engine fuse when it computes the same formula.
        channel_ranks: also run each channel alone, for every hit's per-channel rank, score and fusion term.
            Without it, an engine-fused search is one engine query.
        fusion_source: where the fusion settings came from: ``default``, ``index (tuned on …)`` or ``flags``.
    """

    k: int = DEFAULT_K
    mode: str = DEFAULT_MODE
    channels: tuple[str, ...] | None = None
    fusion: str = DEFAULT_FUSION
    rrf_k: float = DEFAULT_RRF_K
    weights: dict[str, float] | None = None
    prefetch_k: int = DEFAULT_PREFETCH_K
    filters: dict[str, Any] | None = None
    rerank: bool = True
    rerank_top_n: int = DEFAULT_RERANK_TOP_N
    explain: bool = True
    engine_fusion: bool = True
    channel_ranks: bool = True
    fusion_source: str = "default"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "k", _positive_int("k", self.k, "hits to return"))
        set_(self, "prefetch_k", _positive_int("prefetch_k", self.prefetch_k, "candidates per channel"))
        set_(self, "rerank_top_n", _positive_int("rerank_top_n", self.rerank_top_n, "candidates to rerank"))
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.fusion not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.fusion!r}; choose one of {', '.join(FUSION_METHODS)}")
        try:
            rrf_k = float(self.rrf_k)
        except (TypeError, ValueError):
            rrf_k = math.nan
        if not (math.isfinite(rrf_k) and rrf_k >= 0):
            raise ValueError(f"rrf_k (the RRF constant) must be a finite number >= 0; got {self.rrf_k!r}")
        set_(self, "rrf_k", rrf_k)
        set_(self, "channels", self._checked_channels(self.channels))
        set_(self, "weights", self._checked_weights(self.weights))
        set_(self, "filters", _check_filters(self.filters))

    @staticmethod
    def _checked_channels(channels: Sequence[str] | None) -> tuple[str, ...] | None:
        if channels is None:
            return None
        channels = parse_channels(channels)
        if not channels:
            raise ValueError(f"name at least one channel to fuse: {', '.join(CHANNELS)}")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(map(repr, unknown))}; channels: {', '.join(CHANNELS)}")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channels {','.join(channels)}: name each channel once")
        return channels

    @staticmethod
    def _checked_weights(weights: Mapping[str, Any] | None) -> dict[str, float] | None:
        parsed = parse_weights(weights) if weights else None
        for name, w in (parsed or {}).items():
            if name not in CHANNELS:
                raise ValueError(f"weight for unknown channel {name!r}; channels: {', '.join(CHANNELS)}")
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"fusion weights must be finite and non-negative; got {name}={w}")
        return parsed

    # --- resolving against an index -----------------------------------------------------------
    def channels_for(self, available: Sequence[str]) -> list[str]:
        """The channels this search runs, given those the index (and its loaded models) can serve.

        Raises:
            ValueError: a channel asked for is not available, or weights name a channel not fused.
        """
        if self.mode != "hybrid":
            wanted = [self.mode]
        else:
            wanted = list(self.channels) if self.channels else default_channels(available)
        for channel in wanted:
            if channel not in available:
                raise ValueError(
                    f"{channel} search needs a {channel} model and an index built with one "
                    f"(this one has: {', '.join(available)})"
                )
        if len(wanted) > 1:
            stray = sorted(set(self.weights or {}) - set(wanted))
            if stray:
                raise ValueError(
                    f"weights given for channels that are not fused: {', '.join(stray)} (fusing {', '.join(wanted)})"
                )
        return wanted

    def weights_for(self, channels: Sequence[str]) -> dict[str, float] | None:
        """The weights of the fused ``channels`` (``None`` when there are none to apply)."""
        chosen = {c: w for c, w in (self.weights or {}).items() if c in channels}
        return chosen or None

    @classmethod
    def for_index(cls, meta: Any, **given: Any) -> SearchOptions:
        """Options for a search on an index: its learned fusion (if any), overridden by what is ``given``.

        ``given`` holds only what the user set (``None`` values count as not set). A fusion setting given
        makes :attr:`fusion_source` ``flags``; else it names the tuning run, or says ``default``.
        """
        given = {name: value for name, value in given.items() if value is not None}
        if "explain_hits" in given:  # the keyword the searcher had before SearchOptions
            given["explain"] = given.pop("explain_hits")
        tuned, source = tuned_fusion(meta)
        if tuned.get("channels") and "channels" in given and "weights" in tuned:
            # The learned weights belong to the learned channels; others fused now keep weight 1.
            tuned["weights"] = {
                c: w for c, w in tuned["weights"].items() if c in (parse_channels(given["channels"]) or ())
            }
        if any(name in given for name in FUSION_FIELDS):
            source = "flags"
        return cls(**{**tuned, **given, "fusion_source": source})

    def with_(self, **changes: Any) -> SearchOptions:
        """A copy with ``changes``, validated again."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels) if self.channels else None
        return out


def tuned_fusion(meta: Any) -> tuple[dict[str, Any], str]:
    """The option values of an index's learned fusion (``IndexMeta.fusion``) and a description of its source.

    Example:
        >>> class Meta:
        ...     fusion = {"method": "dbsf", "weights": {"dense": 2.0}, "channels": ["sparse", "dense"],
        ...               "learned": {"dataset": "/data/scifact", "split": "train", "date": "2026-12-03"}}
        >>> values, source = tuned_fusion(Meta())
        >>> values["fusion"], values["weights"], values["channels"], source
        ('dbsf', {'sparse': 1.0, 'dense': 2.0}, ['sparse', 'dense'], 'index (tuned on scifact train, 2026-12-03)')
    """
    from hybrid_search.tuning import fusion_defaults

    stored = getattr(meta, "fusion", None)
    if not stored:
        return {}, "default"
    values = {option: value for option, value in fusion_defaults(meta).items() if value is not None}
    learned = stored.get("learned") or {}
    where = " ".join(str(x) for x in (Path(str(learned.get("dataset") or "")).name, learned.get("split")) if x)
    when = learned.get("date")
    detail = ", ".join(x for x in (where, str(when) if when else "") if x)
    return values, f"index (tuned on {detail})" if detail else "index (tuned)"


def option_names() -> list[str]:
    """The fields of :class:`SearchOptions`, for front ends that map their own names onto them."""
    return [f.name for f in fields(SearchOptions)]
