"""The index protocol every engine adapter implements, and the engine-independent rules around it.

Adapters live in ``indexers/``; this module holds what they share and what the retrieval pipeline relies
on: the record of the models that built an index (and the refusal to query it with others), point ids
derived from the corpus's string ids, the payload layout, and filter validation.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hybrid_search.types import Document, Ranking, SparseVector

#: Namespace for deterministic point ids: ``uuid5(NAMESPACE, doc_id)``.
POINT_NAMESPACE = uuid.UUID("6f0e6c1e-3c1b-4d55-9a8e-8f1f4b5c2d10")
SCHEMA_VERSION = 1
CHANNELS = ("sparse", "dense", "bm25")
#: Settings that must agree between the index and the query-time model.
_MODEL_KEYS = ("name", "architecture", "dimension", "similarity")

Filters = Mapping[str, Any]


class IndexError_(RuntimeError):
    """Base class for index problems the user can act on."""


class IndexNotFoundError(IndexError_):
    pass


class ModelMismatchError(IndexError_):
    pass


class UnknownFilterFieldError(IndexError_, ValueError):
    pass


class EngineUnavailableError(IndexError_):
    """The engine behind an index location does not answer."""


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
        payload[LEXICAL_FIELD] = [int(i) for i in lexical]
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
    fusion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexMeta:
        known = {k: data[k] for k in ("engine", "sparse", "dense", "metadata_fields", "schema", "fusion") if k in data}
        return cls(**known)

    @property
    def channels(self) -> list[str]:
        return [c for c, s in (("sparse", self.sparse), ("dense", self.dense)) if s] + ["bm25"]

    def check_models(self, sparse: Mapping[str, Any] | None, dense: Mapping[str, Any] | None) -> None:
        """Refuse models other than those that built the index, with a message that says which to use."""
        for channel, built, given in (("sparse", self.sparse, sparse), ("dense", self.dense, dense)):
            if built is None or given is None:
                continue
            diffs = [k for k in _MODEL_KEYS if built.get(k) != given.get(k)]
            if diffs:
                detail = ", ".join(f"{k}: index={built.get(k)!r} query={given.get(k)!r}" for k in diffs)
                raise ModelMismatchError(
                    f"the index was built with {channel} model {built.get('name')!r} but this query uses "
                    f"{given.get('name')!r} ({detail}). Query with --{channel} {built.get('name')} or rebuild the index."
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


def filter_conditions(filters: Filters | None) -> list[tuple[str, list[Any]]]:
    """Normalise ``{field: value | [values]}`` into ``[(payload key, [values])]`` (equality / any-of)."""
    out = []
    for name, value in (filters or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        out.append((f"meta.{name}", values))
    return out


def matches(doc: Document, filters: Filters | None) -> bool:
    """Client-side evaluation of the same equality filters, for channels computed outside the engine."""
    for name, value in (filters or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if doc.metadata.get(name) not in values:
            return False
    return True


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


@runtime_checkable
class SearchIndex(Protocol):
    """The operations the pipelines need from an engine.

    Rankings are lists of :class:`~hybrid_search.types.ScoredId` with corpus ids, best first.
    """

    meta: IndexMeta
    location: str

    def upsert(
        self,
        docs: Sequence[Document],
        sparse: Sequence[SparseVector] | None,
        dense: np.ndarray | None,
        *,
        lexical: Sequence[Sequence[int]] | None = None,
    ) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def count(self) -> int: ...

    def get(self, ids: Sequence[str]) -> list[Document]: ...

    def stored_hashes(self, ids: Sequence[str]) -> dict[str, str]: ...

    def sparse_vectors(self, ids: Sequence[str]) -> dict[str, SparseVector]: ...

    def fetch(self, ids: Sequence[str], *, sparse: bool = False) -> list[StoredDocument]: ...

    def search_sparse(self, vector: SparseVector, k: int, filters: Filters | None = None) -> Ranking: ...

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> Ranking: ...

    def search_bm25(self, text: str, k: int, filters: Filters | None = None) -> Ranking: ...

    def search_hybrid(
        self,
        sparse: SparseVector | None,
        dense: np.ndarray | None,
        k: int,
        *,
        prefetch_k: int = 100,
        fusion: str = "rrf",
        rrf_k: float = 60,
        weights: Mapping[str, float] | None = None,
        filters: Filters | None = None,
    ) -> Ranking: ...

    def save_meta(self) -> None: ...

    def close(self) -> None: ...
