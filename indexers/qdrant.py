"""Qdrant through the official qdrant-client: in memory, a local path, or a server URL.

Local mode (``:memory:`` or a path) is qdrant-client's pure-Python engine: handy for tests and small
corpora, slow beyond ~20k points. A URL talks to a real Qdrant server (see ``docker-compose.yml``).
The :class:`~hybrid_search.index.IndexMeta` lives in the collection's own ``metadata``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from hybrid_search.index import (
    EngineUnavailableError,
    FilterMatch,
    Filters,
    IndexMeta,
    IndexNotFoundError,
    filter_matches,
)
from hybrid_search.types import SparseVector
from indexers.base import BaseIndex, RawHit
from indexers.credentials import redact

DEFAULT_COLLECTION = "documents"
_DISTANCES = {"cosine": "COSINE", "dot": "DOT", "euclidean": "EUCLID", "manhattan": "MANHATTAN"}
ENGINE_RRF_OFFSET = 1  # Qdrant ranks from 0, our RRF from 1 (README, "Fusion")


def _models() -> Any:
    from qdrant_client import models

    return models


def make_client(location: str, *, api_key: str | None = None, timeout: int = 60) -> Any:
    """A ``QdrantClient`` for ``:memory:``, a folder, or an ``http(s)://`` URL.

    The API key comes from the argument or ``QDRANT_API_KEY``; it is never logged.
    """
    try:
        from qdrant_client import QdrantClient
    except ImportError as error:  # pragma: no cover - qdrant-client is a base dependency
        raise ImportError("qdrant-client is missing: pip install 'hybrid-search'") from error
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location, api_key=api_key or os.environ.get("QDRANT_API_KEY"), timeout=timeout)
    return QdrantClient(path=location)


def _collection_exists(client: Any, collection: str, location: str) -> bool:
    """``collection_exists``, with an unreachable server turned into a clear error."""
    try:
        return bool(client.collection_exists(collection))
    except Exception as error:  # noqa: BLE001 - httpx/grpc/qdrant errors all mean the same to the user
        if location.startswith(("http://", "https://")):
            raise EngineUnavailableError(f"cannot reach Qdrant at {redact(location)}: {redact(error)}") from error
        raise


def _client_condition(match: FilterMatch) -> Any:
    """One field's condition over the forms its value may be stored in (see ``qdrant_edge._edge_condition``)."""
    m = _models()
    options = []
    if match.texts:
        texts = list(match.texts)
        options.append(
            m.FieldCondition(
                key=match.key, match=m.MatchValue(value=texts[0]) if len(texts) == 1 else m.MatchAny(any=texts)
            )
        )
    options += [m.FieldCondition(key=match.key, range=m.Range(gte=n, lte=n)) for n in match.numbers]
    options += [m.FieldCondition(key=match.key, match=m.MatchValue(value=b)) for b in match.flags]
    return options[0] if len(options) == 1 else m.Filter(should=options)


def client_filter(filters: Filters | None) -> Any:
    if not filters:
        return None
    return _models().Filter(must=[_client_condition(m) for m in filter_matches(filters)])


class QdrantIndex(BaseIndex):
    """A collection in Qdrant (local mode or server).

    Args:
        client: a ``QdrantClient``.
        collection: the collection name.
        exact: exact (full-scan) search instead of HNSW.
    """

    engine = "qdrant"
    engine_fusions = ("rrf", "dbsf")

    def __init__(self, client: Any, collection: str, meta: IndexMeta, location: str, *, exact: bool = False) -> None:
        super().__init__(location, meta)
        self.client = client
        self.collection = collection
        self.exact = exact

    @classmethod
    def create(
        cls, location: str, meta: IndexMeta, *, collection: str = DEFAULT_COLLECTION, exact: bool = False, **kw: Any
    ) -> QdrantIndex:
        m = _models()
        client = make_client(location, **kw)
        if _collection_exists(client, collection, location):
            raise FileExistsError(f"collection {collection!r} already exists at {redact(location)}; open it instead")
        meta.engine = cls.engine
        vectors = {}
        if meta.dense:
            distance = getattr(m.Distance, _DISTANCES[meta.dense.get("similarity", "cosine")])
            vectors["dense"] = m.VectorParams(size=int(meta.dense["dimension"]), distance=distance)
        sparse = {"sparse": m.SparseVectorParams()} if meta.sparse else None
        client.create_collection(
            collection, vectors_config=vectors, sparse_vectors_config=sparse, metadata={"hybrid_search": meta.to_dict()}
        )
        return cls(client, collection, meta, location, exact=exact)

    @classmethod
    def open(
        cls, location: str, *, collection: str = DEFAULT_COLLECTION, exact: bool = False, client: Any = None, **kw: Any
    ) -> QdrantIndex:
        client = client or make_client(location, **kw)
        if not _collection_exists(client, collection, location):
            shown = redact(location)
            raise IndexNotFoundError(
                f"no collection {collection!r} at {shown}. Build one with: hybrid-search index CORPUS --index {shown}"
            )
        stored = (client.get_collection(collection).config.metadata or {}).get("hybrid_search")
        if not stored:
            raise IndexNotFoundError(f"collection {collection!r} at {redact(location)} was not built by hybrid-search")
        return cls(client, collection, IndexMeta.from_dict(stored), location, exact=exact)

    def save_meta(self) -> None:
        self.client.update_collection(self.collection, metadata={"hybrid_search": self.meta.to_dict()})

    def close(self) -> None:
        self.client.close()

    # --- primitives -----------------------------------------------------------------------------
    def _params(self) -> Any:
        # Local mode always searches exactly (and warns about the parameter); servers need it said.
        remote = self.location.startswith(("http://", "https://"))
        return _models().SearchParams(exact=True) if self.exact and remote else None

    def _upsert_raw(self, pids, payloads, sparse, dense) -> None:
        m = _models()
        points = []
        for i, (pid, payload) in enumerate(zip(pids, payloads)):
            vector: dict[str, Any] = {}
            if sparse is not None:
                vector["sparse"] = m.SparseVector(indices=sparse[i].indices.tolist(), values=sparse[i].values.tolist())
            if dense is not None:
                vector["dense"] = dense[i].tolist()
            points.append(m.PointStruct(id=pid, vector=vector, payload=payload))
        self.client.upsert(self.collection, points=points, wait=True)

    def _delete_raw(self, pids) -> None:
        self.client.delete(self.collection, points_selector=_models().PointIdsList(points=list(pids)), wait=True)

    def _count_raw(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def _retrieve_raw(self, pids, payload, sparse):
        records = self.client.retrieve(
            self.collection, ids=list(pids), with_payload=payload, with_vectors=["sparse"] if sparse else False
        )
        out = []
        for r in records:
            vec = None
            if sparse and isinstance(r.vector, dict) and "sparse" in r.vector:
                v = r.vector["sparse"]
                vec = SparseVector(np.asarray(v.indices), np.asarray(v.values))
            out.append((r.payload or {}, vec))
        return out

    @staticmethod
    def _vector(channel: str, vector: Any) -> Any:
        if channel == "sparse":
            return _models().SparseVector(indices=vector.indices.tolist(), values=vector.values.tolist())
        return np.asarray(vector, dtype=np.float32).tolist()

    def _search_raw(self, channel, vector, k, filters) -> list[RawHit]:
        response = self.client.query_points(
            self.collection,
            query=self._vector(channel, vector),
            using=channel,
            query_filter=client_filter(filters),
            search_params=self._params(),
            limit=k,
            with_payload=["doc_id"],
        )
        return [(p.payload, p.score) for p in response.points]

    def _hybrid_raw(self, sparse, dense, k, prefetch_k, fusion, rrf_k, filters) -> list[RawHit]:
        m = _models()
        flt = client_filter(filters)
        prefetch = [
            m.Prefetch(query=self._vector(c, v), using=c, limit=prefetch_k, filter=flt, params=self._params())
            for c, v in (("sparse", sparse), ("dense", dense))
        ]
        query = (
            m.RrfQuery(rrf=m.Rrf(k=int(rrf_k) + ENGINE_RRF_OFFSET))
            if fusion == "rrf"
            else m.FusionQuery(fusion=m.Fusion.DBSF)
        )
        response = self.client.query_points(
            self.collection, prefetch=prefetch, query=query, query_filter=flt, limit=k, with_payload=["doc_id"]
        )
        return [(p.payload, p.score) for p in response.points]

    def _scroll_raw(self) -> Iterator[dict]:
        offset = None
        while True:
            records, offset = self.client.scroll(self.collection, offset=offset, limit=1000, with_payload=True)
            for r in records:
                yield r.payload
            if offset is None:
                break
