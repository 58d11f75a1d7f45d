"""The index protocol every engine adapter implements, and the engine-independent rules around it.

Adapters live in ``indexers/``; this module holds what they share and what the retrieval pipeline relies
on: the record of the models that built an index (and the refusal to query it with others), point ids
derived from the corpus's string ids, the payload layout, and filter validation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hybrid_search.constants import CHANNELS, DEFAULT_PREFETCH_K, DEFAULT_RRF_K  # noqa: F401 - CHANNELS re-exported
from hybrid_search.types import Document, Ranking, ScoredId, SparseVector

#: Namespace for deterministic point ids: ``uuid5(NAMESPACE, doc_id)``.
POINT_NAMESPACE = uuid.UUID("6f0e6c1e-3c1b-4d55-9a8e-8f1f4b5c2d10")
SCHEMA_VERSION = 1
#: Settings that must agree between the index and the query-time model (besides its identity and weights).
_STRUCTURE_KEYS = ("architecture", "dimension", "similarity")

Filters = Mapping[str, Any]


class IndexStateError(RuntimeError):
    """Base class for index problems the user can act on: the CLI prints them as ``error:`` lines."""


class IndexNotFoundError(IndexStateError):
    pass


class ModelMismatchError(IndexStateError):
    pass


class UnknownFilterFieldError(IndexStateError, ValueError):
    pass


class EngineUnavailableError(IndexStateError):
    """The engine behind an index location does not answer."""


class DiskFullError(IndexStateError):
    """Too little free space to write (or, for an embedded engine, even to open) an index safely."""


class IndexReadOnlyError(IndexStateError):
    """The index's files cannot be written, and the engine cannot open them otherwise."""


class IndexCorruptError(IndexStateError):
    """An index file is damaged: the engine or the metadata reader rejected it."""


def check_free_space(folder: str | os.PathLike[str], needed: int, *, margin: int, engine: str) -> None:
    """Refuse, with what to do, when the filesystem of ``folder`` has less than ``margin + needed`` bytes free.

    Embedded engines write through memory-mapped files: on a full disk such a write is a SIGBUS that kills
    the process with no message (and may leave an index that crashes every reader until space is freed).
    Checking before the write, with the engine's own margin, stops cleanly instead, with everything written
    so far kept for a rerun.
    """
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < margin + needed:
        mib = 1 << 20
        raise DiskFullError(
            f"only {free / mib:.1f} MiB free on the disk holding {folder}; {engine} needs at least "
            f"{(margin + needed) / mib:.1f} MiB free to write safely ({margin // mib} MiB of it for its write-ahead "
            "log and memory-mapped files, where a full disk crashes the process). Nothing was lost: free some "
            "space and rerun the same command, and it resumes where it stopped."
        )


@lru_cache(maxsize=1 << 16)
def point_id(doc_id: str) -> str:
    """The engine point id for a corpus id: a UUIDv5, stable across runs and machines."""
    return str(uuid.uuid5(POINT_NAMESPACE, str(doc_id)))


def content_hash(doc: Document) -> str:
    """Hash of everything that is encoded or stored for a document; a rerun skips unchanged ones."""
    blob = json.dumps([doc.id, doc.title, doc.text, doc.metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


#: Payload key of a document's lexical ids: the vocabulary ids of its sparse vector that occur in its own
#: tokenisation. Stored at index time, they let an explanation tell lexical matches from expansion without
#: tokenising each hit again; documents stored without them are tokenised at query time instead.
LEXICAL_FIELD = "lexical"


def to_payload(doc: Document, lexical: Sequence[int] | None = None) -> dict[str, Any]:
    payload = {
        "doc_id": doc.id,
        "title": doc.title,
        "text": doc.text,
        "meta": doc.metadata,
        "content_hash": content_hash(doc),
    }
    if lexical is not None:
        payload[LEXICAL_FIELD] = [int(i) for i in lexical]  # type: ignore[misc]
    return payload


def from_payload(payload: Mapping[str, Any]) -> Document:
    return Document(
        id=str(payload["doc_id"]),
        text=payload.get("text", ""),
        title=payload.get("title", ""),
        metadata=dict(payload.get("meta") or {}),
    )


@dataclass
class IndexMeta:
    """What an index records about itself: its engine, the models that built it, its metadata fields, and
    the fusion ``hybrid-search tune`` learned for it.

    ``fusion`` (``None`` until a tune saves one): ``{"method", "rrf_k", "weights", "channels", "prefetch_k",
    "learned": {"dataset", "split", "date", "cv_ndcg10", "cv_std"}}``; front ends read it through
    :func:`hybrid_search.tuning.fusion_defaults`. Indexes written before it existed load with ``None``.
    """

    engine: str
    sparse: dict[str, Any] | None = None
    dense: dict[str, Any] | None = None
    metadata_fields: list[str] = field(default_factory=list)
    schema: int = SCHEMA_VERSION
    #: An approximate sparse accelerator built beside the index (``{"method": "seismic", ...}``), which
    #: :func:`indexers.open_index` loads; ``None`` when the sparse channel is the engine's exact search.
    sparse_ann: dict[str, Any] | None = None
    #: The fusion learned by ``hybrid-search tune`` (see :func:`hybrid_search.tuning.fusion_record`); search
    #: options start from it (:meth:`hybrid_search.options.SearchOptions.for_index`).
    fusion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexMeta:
        known = {
            k: data[k]
            for k in ("engine", "sparse", "dense", "metadata_fields", "schema", "sparse_ann", "fusion")
            if k in data
        }
        return cls(**known)

    @property
    def channels(self) -> list[str]:
        return [c for c, s in (("sparse", self.sparse), ("dense", self.dense)) if s] + ["bm25"]

    def check_models(self, sparse: Mapping[str, Any] | None, dense: Mapping[str, Any] | None) -> None:
        """Refuse models other than those that built the index, with a message that says what differs.

        The same model is the same name or the same resolved folder (a relative name depends on the working
        directory), with the same weights where both sides recorded a digest (indexes built before digests
        were recorded are checked by name).
        """
        from hybrid_search.models import model_source

        for channel, built, given in (("sparse", self.sparse, sparse), ("dense", self.dense, dense)):
            if built is None or given is None:
                continue
            why = model_difference(built, given)
            if why:
                raise ModelMismatchError(
                    f"the index was built with {channel} model {_describe_model(built)} but this run uses "
                    f"{_describe_model(given)}: {why}. Use --{channel} {model_source(built)} or rebuild the index."
                )

    def add_metadata_fields(self, fields: Sequence[str]) -> bool:
        new = sorted(set(fields) - set(self.metadata_fields))
        self.metadata_fields = sorted(set(self.metadata_fields) | set(new))
        return bool(new)

    def check_filters(self, filters: Filters | None) -> None:
        if not filters:
            return
        unknown = sorted(set(filters) - set(self.metadata_fields))
        if unknown:
            known = ", ".join(self.metadata_fields) or "none (the corpus had no metadata fields)"
            raise UnknownFilterFieldError(f"unknown filter field(s) {', '.join(unknown)}; filterable fields: {known}")


def model_difference(built: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """What differs between the model an index recorded and another one, or ``""`` when they are the same."""
    structure = [k for k in _STRUCTURE_KEYS if built.get(k) != given.get(k)]
    if structure:
        return ", ".join(f"{k}: index={built.get(k)!r} now={given.get(k)!r}" for k in structure)
    same_path = built.get("path") is not None and built.get("path") == given.get("path")
    if built.get("name") != given.get("name") and not same_path:
        return "another model (its name and folder differ)"
    if built.get("weights") and given.get("weights") and built["weights"] != given["weights"]:
        return (
            f"its weights differ (index {built['weights'][:12]}, now {given['weights'][:12]}): the model was "
            "changed or replaced since the index was built, and its vectors would not match the stored ones"
        )
    return ""


def _describe_model(settings: Mapping[str, Any]) -> str:
    details = [
        f"at {settings['path']}" if settings.get("path") not in (None, settings.get("name")) else "",
        f"weights {settings['weights'][:12]}" if settings.get("weights") else "",
    ]
    shown = ", ".join(d for d in details if d)
    return f"{settings.get('name')!r}" + (f" ({shown})" if shown else "")


def filter_conditions(filters: Filters | None) -> list[tuple[str, list[Any]]]:
    """Normalise ``{field: value | [values]}`` into ``[(payload key, [values])]`` (equality / any-of)."""
    out = []
    for name, value in (filters or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        out.append((f"meta.{name}", values))
    return out


@dataclass(frozen=True)
class FilterMatch:
    """One field's filter as the forms a stored value may take: a document matches when its value is one of
    ``texts``, equals one of ``numbers`` (integer or float), or is one of ``flags`` (booleans).

    Metadata keeps the type its corpus gave it: CSV and TSV fields are text (``"2019"``), JSON numbers are
    numbers. A filter typed as ``2019`` or ``"2019"`` matches both, so the user need not know which it is.
    """

    key: str
    texts: tuple[str, ...] = ()
    numbers: tuple[float, ...] = ()
    flags: tuple[bool, ...] = ()


def filter_variants(value: Any) -> tuple[set[str], set[float], set[bool]]:
    """The text, number and boolean forms under which a filter value may be stored.

    Example:
        >>> [sorted(forms) for forms in filter_variants(1.0)]
        [['1', '1.0'], [1.0], []]
        >>> filter_variants("2019"), filter_variants("en")
        (({'2019'}, {2019.0}, set()), ({'en'}, set(), set()))
    """
    texts: set[str] = set()
    numbers: set[float] = set()
    flags: set[bool] = set()
    if isinstance(value, bool):
        flags.add(value)
        texts |= {str(value).lower(), str(value)}
    elif isinstance(value, (int, float)):
        numbers.add(float(value))
        texts.add(str(value))
        if float(value).is_integer():
            texts.add(str(int(value)))
    else:
        text = str(value)
        texts.add(text)
        try:
            number = float(text)
            if math.isfinite(number) and text.strip().lower() not in ("nan", "inf", "-inf", "infinity"):
                numbers.add(number)
        except ValueError:
            pass
        if text.strip().lower() in ("true", "false"):
            flags.add(text.strip().lower() == "true")
    return texts, numbers, flags


def filter_matches(filters: Filters | None) -> list[FilterMatch]:
    """``{field: value | [values]}`` as one :class:`FilterMatch` per field, for the engines' filter builders."""
    out = []
    for key, values in filter_conditions(filters):
        texts: set[str] = set()
        numbers: set[float] = set()
        flags: set[bool] = set()
        for value in values:
            t, n, f = filter_variants(value)
            texts, numbers, flags = texts | t, numbers | n, flags | f
        out.append(FilterMatch(key, tuple(sorted(texts)), tuple(sorted(numbers)), tuple(sorted(flags))))
    return out


def _stored_matches(stored: Any, match: FilterMatch) -> bool:
    if isinstance(stored, bool):
        return stored in match.flags
    if isinstance(stored, (int, float)):
        return float(stored) in match.numbers
    return isinstance(stored, str) and stored in match.texts


def matches(doc: Document, filters: Filters | None) -> bool:
    """Client-side evaluation of the same filters, for channels computed outside the engine."""
    for match in filter_matches(filters):
        if not _stored_matches(doc.metadata.get(match.key.removeprefix("meta.")), match):
            return False
    return True


def who_fuses(
    index: Any,
    channels: Sequence[str],
    fusion: str,
    *,
    weights: Mapping[str, float] | None = None,
    rrf_k: float = DEFAULT_RRF_K,
    engine_fusion: bool = True,
    sparse_empty: bool = False,
) -> str | None:
    """The one rule for who fuses a search: ``"engine"``, ``"client"``, or ``None`` for a single channel.

    The engine fuses when it was not told not to, the index says it can compute this fusion
    (``index.engine_fuses``), and the sparse query has terms (an engine cannot prefetch with an empty
    vector). Everything else fuses client-side, over the per-channel rankings, with the same formula.
    """
    if len(channels) < 2:
        return None
    can = getattr(index, "engine_fuses", None)
    if engine_fusion and not sparse_empty and can is not None and can(fusion, channels, weights=weights, rrf_k=rrf_k):
        return "engine"
    return "client"


@dataclass(frozen=True)
class StoredDocument:
    """A document as an index returns it with what an explanation needs: its stored sparse vector (when
    asked for) and its lexical ids (``None`` where the index stored none)."""

    document: Document
    sparse: SparseVector | None = None
    lexical: frozenset[int] | None = None


def lexical_from_payload(payload: Mapping[str, Any]) -> frozenset[int] | None:
    ids = payload.get(LEXICAL_FIELD)
    return frozenset(map(int, ids)) if isinstance(ids, list) else None


#: One hit as an engine returns it: (payload, score).
RawHit = tuple[Mapping[str, Any], float]


def ranking_of(raw: Sequence[RawHit]) -> Ranking:
    """An engine's hits as a ranking, best first, ties broken by id.

    Engines order exactly equal scores in their own, run-dependent way; breaking ties by id, as
    :mod:`hybrid_search.fusion` does, makes engine and client results, CLI, UI and benchmarks agree.
    """
    hits = [ScoredId(str(p["doc_id"]), float(s)) for p, s in raw]
    return sorted(hits, key=lambda h: (-h.score, h.id))


def tie_crosses(ranking: Ranking, k: int, asked: int) -> bool:
    """Whether a ranking asked for ``asked`` hits may hide members of the score tie at position ``k``.

    True when the engine filled the request and its last hit ties with the ``k``-th: more documents
    with that score may lie beyond what was returned.
    """
    return len(ranking) >= asked > k > 0 and ranking[-1].score == ranking[k - 1].score


@runtime_checkable
class SearchIndex(Protocol):
    """What a search reads from an engine's index, and the engine-independent fusion rules, once.

    Rankings are lists of :class:`~hybrid_search.types.ScoredId` with corpus ids, best first. An adapter
    (``indexers.base.BaseIndex``) implements the reads and the engine's own fusion, :meth:`_hybrid_raw`;
    :meth:`engine_fuses`, :meth:`search_engine_fused` and :meth:`search_hybrid` are written here for all of
    them. Writes belong to the adapters.
    """

    meta: IndexMeta
    location: str
    engine: str
    #: Fusion methods the engine can run itself.
    engine_fusions: tuple[str, ...]
    #: Whether the engine fuses with weighted RRF the way we do (Σ w/(k+rank)). Qdrant does not.
    engine_weighted_rrf: bool

    def count(self) -> int: ...

    def get(self, ids: Sequence[str]) -> list[Document]: ...

    def fetch(self, ids: Sequence[str], *, sparse: bool = False) -> list[StoredDocument]: ...

    def search_sparse(self, vector: SparseVector, k: int, filters: Filters | None = None) -> Ranking: ...

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> Ranking: ...

    def search_bm25(self, text: str, k: int, filters: Filters | None = None) -> Ranking: ...

    def close(self) -> None: ...

    def _hybrid_raw(
        self,
        sparse: SparseVector,
        dense: np.ndarray,
        k: int,
        prefetch_k: int,
        fusion: str,
        rrf_k: float,
        filters: Filters | None,
    ) -> list[RawHit]:
        """Sparse + dense fused by the engine, in one query: the primitive an engine adapter implements."""
        raise NotImplementedError

    def engine_fuses(
        self,
        fusion: str,
        channels: Sequence[str],
        *,
        weights: Mapping[str, float] | None = None,
        rrf_k: float = DEFAULT_RRF_K,
    ) -> bool:
        """Whether the engine computes this fusion itself with our formula: what the index can fuse.

        Engines fuse sparse + dense, with the methods in :attr:`engine_fusions`, an integer RRF k, and unit
        weights (unless the engine computes weighted RRF as Σ w/(k+rank), :attr:`engine_weighted_rrf`).
        Whether a given search uses it is decided in one place, :func:`who_fuses`.
        """
        if set(channels) != {"sparse", "dense"} or len(channels) != 2 or fusion not in self.engine_fusions:
            return False
        if fusion == "rrf" and not float(rrf_k).is_integer():
            return False
        uniform = all(float(w) == 1.0 for c, w in (weights or {}).items() if c in channels)
        return uniform or (fusion == "rrf" and self.engine_weighted_rrf)

    def search_engine_fused(
        self,
        sparse: SparseVector,
        dense: np.ndarray,
        k: int,
        *,
        prefetch_k: int = DEFAULT_PREFETCH_K,
        fusion: str = "rrf",
        rrf_k: float = DEFAULT_RRF_K,
        filters: Filters | None = None,
    ) -> Ranking:
        """Sparse + dense fused by the engine (one query). Only for a fusion :meth:`engine_fuses` accepts."""
        if not self.engine_fuses(fusion, ("sparse", "dense"), rrf_k=rrf_k):
            raise ValueError(f"{self.engine} cannot fuse {fusion} with rrf_k={rrf_k:g} itself; fuse client-side")
        self.meta.check_filters(filters)
        # RRF gives equal scores to, e.g., the 3rd sparse-only and the 3rd dense-only document, and the
        # engine cuts such a tie group at ``k`` in its own order. One more hit shows whether the group
        # crosses the cut; if it does, the engine is asked again, deeper, until the group is whole, so the
        # page holds the same documents as client fusion's (score, then id). A fused list holds at most
        # both prefetches, so the deepening stops there.
        most = 2 * max(prefetch_k, k)
        limit = k + 1
        while True:
            ranking = ranking_of(self._hybrid_raw(sparse, dense, limit, prefetch_k, fusion, rrf_k, filters))
            if limit >= most or not tie_crosses(ranking, k, limit):
                return ranking[:k]
            limit = min(most, 2 * limit)

    def search_hybrid(
        self,
        sparse: SparseVector | None,
        dense: np.ndarray | None,
        k: int,
        *,
        prefetch_k: int = DEFAULT_PREFETCH_K,
        fusion: str = "rrf",
        rrf_k: float = DEFAULT_RRF_K,
        weights: Mapping[str, float] | None = None,
        filters: Filters | None = None,
        engine_fusion: bool = True,
    ) -> Ranking:
        """Fuse the sparse and dense channels, in the engine where it computes the same formula.

        A convenience for scripts with vectors in hand; :class:`~hybrid_search.retrieval.HybridSearcher`
        makes the same choice (:func:`who_fuses`) and reuses its per-channel rankings.
        """
        from hybrid_search.fusion import fuse

        self.meta.check_filters(filters)
        channels = [c for c, v in (("sparse", sparse), ("dense", dense)) if v is not None]
        sparse_empty = sparse is not None and sparse.nnz == 0
        by = who_fuses(
            self, channels, fusion, weights=weights, rrf_k=rrf_k, engine_fusion=engine_fusion, sparse_empty=sparse_empty
        )
        if by == "engine" and sparse is not None and dense is not None:
            return self.search_engine_fused(
                sparse, dense, k, prefetch_k=prefetch_k, fusion=fusion, rrf_k=rrf_k, filters=filters
            )
        rankings: dict[str, Ranking] = {}
        if sparse is not None:
            rankings["sparse"] = self.search_sparse(sparse, prefetch_k, filters)
        if dense is not None:
            rankings["dense"] = self.search_dense(dense, prefetch_k, filters)
        return fuse(fusion, rankings, rrf_k=rrf_k, weights=weights, limit=k)
