"""What the two Qdrant adapters share: collection layout, points, filters, records and paging.

``indexers.qdrant`` (over qdrant-client: local mode or a server) and ``indexers.qdrant_edge`` (over
qdrant-edge-py, in-process) drive the same engine, whose models carry the same names and fields in both
clients but for a few spellings (:class:`Spelling`). Everything built from those models lives here, once;
each adapter keeps what its client really does differently: where an index lives, how it is opened, and
the shape of its query, write and scroll calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hybrid_search.index import FilterMatch, Filters, IndexMeta, filter_matches
from hybrid_search.types import SparseVector
from indexers.base import BaseIndex, RawHit

#: Qdrant ranks from 0 where our RRF ranks from 1: its k is ours + 1 (README, "Fusion").
ENGINE_RRF_OFFSET = 1
#: Our similarity names, as Qdrant names its distances (qdrant-client spells them in capitals).
DISTANCES = {"cosine": "Cosine", "dot": "Dot", "euclidean": "Euclid", "manhattan": "Manhattan"}
#: How many records one scroll page holds.
PAGE_SIZE = 1000


@dataclass(frozen=True)
class Spelling:
    """The model names one client spells its own way (the rest are the same in both)."""

    range: str  # the float range condition
    point: str
    vector_params: str
    sparse_params: str
    upper_distances: bool  # qdrant-client: Distance.COSINE; Qdrant Edge: Distance.Cosine


#: qdrant-client's ``models`` (``indexers.qdrant``).
CLIENT_SPELLING = Spelling("Range", "PointStruct", "VectorParams", "SparseVectorParams", upper_distances=True)
#: The ``qdrant_edge`` module (``indexers.qdrant_edge``).
EDGE_SPELLING = Spelling("RangeFloat", "Point", "EdgeVectorParams", "EdgeSparseVectorParams", upper_distances=False)


def _condition(m: Any, spelling: Spelling, match: FilterMatch) -> Any:
    """One field's condition over the forms its value may be stored in: its text forms, its number forms (an
    exact range, which matches integers and floats alike) and its booleans, any of which may be how the
    corpus stored the value."""
    options = []
    if match.texts:
        texts = list(match.texts)
        value = m.MatchValue(value=texts[0]) if len(texts) == 1 else m.MatchAny(any=texts)
        options.append(m.FieldCondition(key=match.key, match=value))
    number_range = getattr(m, spelling.range)
    options += [m.FieldCondition(key=match.key, range=number_range(gte=n, lte=n)) for n in match.numbers]
    options += [m.FieldCondition(key=match.key, match=m.MatchValue(value=b)) for b in match.flags]
    return options[0] if len(options) == 1 else m.Filter(should=options)


def qdrant_filter(m: Any, spelling: Spelling, filters: Filters | None) -> Any:
    """``filters`` as a Qdrant ``Filter`` (``None`` for none): every field must match one of its forms."""
    if not filters:
        return None
    return m.Filter(must=[_condition(m, spelling, match) for match in filter_matches(filters)])


def collection_vectors(m: Any, spelling: Spelling, meta: IndexMeta) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The named dense and sparse vector configs of a collection (or shard) for ``meta``'s channels."""
    vectors = {}
    if meta.dense:
        name = DISTANCES[meta.dense.get("similarity", "cosine")]
        distance = getattr(m.Distance, name.upper() if spelling.upper_distances else name)
        vectors["dense"] = getattr(m, spelling.vector_params)(size=int(meta.dense["dimension"]), distance=distance)
    sparse = {"sparse": getattr(m, spelling.sparse_params)()} if meta.sparse else None
    return vectors, sparse


def query_vector(m: Any, channel: str, vector: Any) -> Any:
    """A query (or stored) vector as the client takes it: a ``SparseVector`` or a list of floats."""
    if channel == "sparse":
        return m.SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())
    return np.asarray(vector, dtype=np.float32).tolist()


def stored_sparse(record: Any) -> SparseVector | None:
    """The sparse vector a retrieved or scrolled record carries, if any."""
    if not record.vector or "sparse" not in record.vector:
        return None
    v = record.vector["sparse"]
    return SparseVector(np.asarray(v.indices), np.asarray(v.values))


def raw_hits(points: Sequence[Any]) -> list[RawHit]:
    return [(p.payload, p.score) for p in points]


class QdrantFamilyIndex(BaseIndex):
    """The half of a Qdrant adapter that is the same in both clients.

    A subclass says how its client spells the models (:attr:`spelling`, :meth:`_models`) and makes the
    client's own calls: :meth:`_write_points`, :meth:`_records`, :meth:`_page`, plus the searches.
    """

    engine_fusions = ("rrf", "dbsf")
    spelling: ClassVar[Spelling]

    @staticmethod
    def _models() -> Any:
        """The module holding this client's model classes (imported on first use)."""
        raise NotImplementedError

    def _write_points(self, points: list[Any]) -> None:
        raise NotImplementedError

    def _records(self, pids: list[str], payload: bool | list[str], vectors: bool | list[str]) -> list[Any]:
        """The stored records of ``pids`` (the client's ``retrieve``)."""
        raise NotImplementedError

    def _page(
        self, offset: Any, limit: int, payload: bool | list[str], vectors: bool | list[str]
    ) -> tuple[list[Any], Any]:
        """One scroll page from ``offset`` (``None``: the start) and the next page's offset (``None``: done)."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------
    def _filter(self, filters: Filters | None) -> Any:
        return qdrant_filter(self._models(), self.spelling, filters)

    def _vector(self, channel: str, vector: Any) -> Any:
        return query_vector(self._models(), channel, vector)

    def _upsert_raw(self, pids, payloads, sparse, dense) -> None:
        m = self._models()
        point = getattr(m, self.spelling.point)
        points = []
        for i, (pid, payload) in enumerate(zip(pids, payloads)):
            vector: dict[str, Any] = {}
            if sparse is not None:
                vector["sparse"] = query_vector(m, "sparse", sparse[i])
            if dense is not None:
                vector["dense"] = dense[i].tolist()
            points.append(point(id=pid, vector=vector, payload=payload))
        self._write_points(points)

    def _retrieve_raw(self, pids, payload, sparse):
        records = self._records(list(pids), payload, ["sparse"] if sparse else False)
        return [(r.payload or {}, stored_sparse(r) if sparse else None) for r in records]

    def _pages(self, payload: bool | list[str], vectors: bool | list[str], limit: int = PAGE_SIZE) -> Iterator[list]:
        offset = None
        while True:
            records, offset = self._page(offset, limit, payload, vectors)
            yield records
            if offset is None:
                break

    def _scroll_raw(self) -> Iterator[dict]:
        for records in self._pages(True, False):
            for r in records:
                yield r.payload

    def scroll_sparse(self, batch_size: int = PAGE_SIZE) -> Iterator[list[tuple[str, SparseVector]]]:
        """Every stored id and sparse vector, a scroll page at a time (the vectors come with the page)."""
        for records in self._pages(["doc_id"], ["sparse"], batch_size):
            rows = [(str(r.payload["doc_id"]), v) for r in records if (v := stored_sparse(r)) is not None]
            if rows:
                yield rows
