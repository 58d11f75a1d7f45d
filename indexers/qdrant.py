"""Qdrant through the official qdrant-client: in memory, a local path, or a server URL.

Local mode (``:memory:`` or a path) is qdrant-client's pure-Python engine: handy for tests and small
corpora, slow beyond ~20k points. A URL talks to a real Qdrant server (see ``docker-compose.yml``).
The :class:`~hybrid_search.index.IndexMeta` lives in the collection's own ``metadata``.
"""

from __future__ import annotations

import os
from typing import Any

from hybrid_search.index import EngineUnavailableError, IndexMeta, IndexNotFoundError
from indexers._qdrant_common import CLIENT_SPELLING, ENGINE_RRF_OFFSET, QdrantFamilyIndex, collection_vectors, raw_hits
from indexers.base import RawHit
from indexers.credentials import redact

DEFAULT_COLLECTION = "documents"


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


class QdrantIndex(QdrantFamilyIndex):
    """A collection in Qdrant (local mode or server).

    Args:
        client: a ``QdrantClient``.
        collection: the collection name.
        exact: exact (full-scan) search instead of HNSW.
    """

    engine = "qdrant"
    spelling = CLIENT_SPELLING
    _models = staticmethod(_models)

    def __init__(self, client: Any, collection: str, meta: IndexMeta, location: str, *, exact: bool = False) -> None:
        super().__init__(location, meta)
        self.client = client
        self.collection = collection
        self.exact = exact

    @classmethod
    def create(
        cls, location: str, meta: IndexMeta, *, collection: str = DEFAULT_COLLECTION, exact: bool = False, **kw: Any
    ) -> QdrantIndex:
        client = make_client(location, **kw)
        if _collection_exists(client, collection, location):
            raise FileExistsError(f"collection {collection!r} already exists at {redact(location)}; open it instead")
        meta.engine = cls.engine
        vectors, sparse = collection_vectors(_models(), cls.spelling, meta)
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

    def _write_points(self, points: list[Any]) -> None:
        self.client.upsert(self.collection, points=points, wait=True)

    def _delete_raw(self, pids) -> None:
        self.client.delete(self.collection, points_selector=_models().PointIdsList(points=list(pids)), wait=True)

    def _count_raw(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def _records(self, pids: list[str], payload: bool | list[str], vectors: bool | list[str]) -> list[Any]:
        return list(self.client.retrieve(self.collection, ids=pids, with_payload=payload, with_vectors=vectors))

    def _page(
        self, offset: Any, limit: int, payload: bool | list[str], vectors: bool | list[str]
    ) -> tuple[list[Any], Any]:
        records, offset = self.client.scroll(
            self.collection, offset=offset, limit=limit, with_payload=payload, with_vectors=vectors
        )
        return list(records), offset

    def _search_raw(self, channel, vector, k, filters) -> list[RawHit]:
        response = self.client.query_points(
            self.collection,
            query=self._vector(channel, vector),
            using=channel,
            query_filter=self._filter(filters),
            search_params=self._params(),
            limit=k,
            with_payload=["doc_id"],
        )
        return raw_hits(response.points)

    def _hybrid_raw(self, sparse, dense, k, prefetch_k, fusion, rrf_k, filters) -> list[RawHit]:
        m = _models()
        flt = self._filter(filters)
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
        return raw_hits(response.points)
