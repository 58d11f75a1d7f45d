"""Qdrant Edge: Qdrant's own engine, in-process and on disk. The embedded default.

Layout of an index folder::

    PATH/hybrid_search.json   the IndexMeta (engine, models, metadata fields)
    PATH/shard/               the Qdrant Edge shard (segments + write-ahead log)

Writes go through the shard's write-ahead log, so a process killed mid-indexing loses at most the batch
it was writing; the indexing pipeline's resume logic does the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.index import (
    FilterMatch,
    Filters,
    IndexMeta,
    IndexNotFoundError,
    IndexStateError,
    filter_matches,
)
from hybrid_search.types import SparseVector
from indexers.base import BaseIndex, RawHit

META_FILE = "hybrid_search.json"
_DISTANCES = {"cosine": "Cosine", "dot": "Dot", "euclidean": "Euclid", "manhattan": "Manhattan"}
#: Qdrant ranks from 0 where our RRF ranks from 1: its k is ours + 1 (ARCHITECTURE.md).
ENGINE_RRF_OFFSET = 1


class IndexLockedError(IndexStateError):
    """Another process holds the index's write-ahead log."""


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


def _edge_condition(match: FilterMatch) -> Any:
    """One field's condition: its text forms, its number forms (an exact range, which matches integers and
    floats alike) and its booleans, any of which may be how the corpus stored the value."""
    qe = _qe()
    options = []
    if match.texts:
        texts = list(match.texts)
        options.append(qe.FieldCondition(key=match.key, match=qe.MatchValue(texts[0]) if len(texts) == 1
                                         else qe.MatchAny(texts)))
    options += [qe.FieldCondition(key=match.key, range=qe.RangeFloat(gte=n, lte=n)) for n in match.numbers]
    options += [qe.FieldCondition(key=match.key, match=qe.MatchValue(b)) for b in match.flags]
    return options[0] if len(options) == 1 else qe.Filter(should=options)


def edge_filter(filters: Filters | None) -> Any:
    if not filters:
        return None
    return _qe().Filter(must=[_edge_condition(m) for m in filter_matches(filters)])


class QdrantEdgeIndex(BaseIndex):
    """An index in a local folder, served by Qdrant Edge.

    Use :meth:`create` for a new index and :meth:`open` for an existing one.

    Args:
        path: the index folder.
        exact: exact (full-scan) dense search instead of HNSW, e.g. for reproducible benchmarks.
    """

    engine = "qdrant-edge"
    engine_fusions = ("rrf", "dbsf")

    def __init__(self, path: str | os.PathLike[str], meta: IndexMeta, shard: Any, *, exact: bool = False) -> None:
        super().__init__(str(path), meta)
        self.path = Path(path)
        self.shard = shard
        self.exact = exact

    @classmethod
    def create(cls, path: str | os.PathLike[str], meta: IndexMeta, *, exact: bool = False) -> QdrantEdgeIndex:
        qe = _qe()
        path = Path(path)
        if (path / META_FILE).exists():
            raise FileExistsError(f"an index already exists at {path}; open it instead")
        meta.engine = cls.engine
        vectors = {}
        if meta.dense:
            distance = getattr(qe.Distance, _DISTANCES[meta.dense.get("similarity", "cosine")])
            vectors["dense"] = qe.EdgeVectorParams(size=int(meta.dense["dimension"]), distance=distance)
        sparse = {"sparse": qe.EdgeSparseVectorParams()} if meta.sparse else None
        shard = qe.EdgeShard.create(str(path / "shard"), qe.EdgeConfig(vectors=vectors or None, sparse_vectors=sparse))
        index = cls(path, meta, shard, exact=exact)
        index.save_meta()
        return index

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, exact: bool = False) -> QdrantEdgeIndex:
        path = Path(path)
        if not (path / META_FILE).exists():
            raise IndexNotFoundError(
                f"no index at {path}. Build one with: hybrid-search index CORPUS --index {path}"
            )
        meta = IndexMeta.from_dict(json.loads((path / META_FILE).read_text()))
        try:
            shard = _qe().EdgeShard.load(str(path / "shard"))
        except Exception as error:  # noqa: BLE001 - the engine raises a bare Exception
            if "WouldBlock" in str(error):
                raise IndexLockedError(
                    f"the index at {path} is open in another process (a running `hybrid-search ui`, or an "
                    "indexing job). Qdrant Edge allows one process per index: stop that process, or search "
                    "through it."
                ) from error
            raise
        return cls(path, meta, shard, exact=exact)

    def save_meta(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(self.meta.to_dict(), indent=2))
        os.replace(tmp, self.path / META_FILE)  # atomic: a crash never leaves half a meta file

    def close(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None

    def flush(self) -> None:
        self.shard.flush()

    def optimize(self) -> bool:
        """Build the engine's indexes (HNSW, merged segments) now rather than on demand."""
        return bool(self.shard.optimize())

    # --- primitives -----------------------------------------------------------------------------
    def _params(self) -> Any:
        return _qe().SearchParams(exact=True) if self.exact else None

    def _upsert_raw(self, pids, payloads, sparse, dense) -> None:
        qe = _qe()
        points = []
        for i, (pid, payload) in enumerate(zip(pids, payloads)):
            vector: dict[str, Any] = {}
            if sparse is not None:
                vector["sparse"] = qe.SparseVector(sparse[i].indices.tolist(), sparse[i].values.tolist())
            if dense is not None:
                vector["dense"] = dense[i].tolist()
            points.append(qe.Point(pid, vector, payload))
        self.shard.update(qe.UpdateOperation.upsert_points(points))

    def _delete_raw(self, pids) -> None:
        self.shard.update(_qe().UpdateOperation.delete_points(list(pids)))

    def _count_raw(self) -> int:
        return int(self.shard.count(_qe().CountRequest(exact=True)))

    def _retrieve_raw(self, pids, payload, sparse):
        records = self.shard.retrieve(list(pids), with_payload=payload, with_vector=["sparse"] if sparse else False)
        out = []
        for r in records:
            vec = None
            if sparse and r.vector and "sparse" in r.vector:
                v = r.vector["sparse"]
                vec = SparseVector(np.asarray(v.indices), np.asarray(v.values))
            out.append((r.payload or {}, vec))
        return out

    def _query_vector(self, channel: str, vector: Any) -> Any:
        qe = _qe()
        if channel == "sparse":
            return qe.Query.Nearest(qe.SparseVector(vector.indices.tolist(), vector.values.tolist()), using="sparse")
        return qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using="dense")

    def _search_raw(self, channel, vector, k, filters) -> list[RawHit]:
        qe = _qe()
        request = qe.QueryRequest(
            limit=k,
            query=self._query_vector(channel, vector),
            filter=edge_filter(filters),
            params=self._params(),
            with_payload=["doc_id"],
        )
        return [(p.payload, p.score) for p in self.shard.query(request)]

    def _hybrid_raw(self, sparse, dense, k, prefetch_k, fusion, rrf_k, filters) -> list[RawHit]:
        qe = _qe()
        flt = edge_filter(filters)
        prefetches = [
            qe.Prefetch(limit=prefetch_k, query=self._query_vector(c, v), filter=flt, params=self._params())
            for c, v in (("sparse", sparse), ("dense", dense))
        ]
        fused = qe.Fusion.Rrf(k=int(rrf_k) + ENGINE_RRF_OFFSET) if fusion == "rrf" else qe.Fusion.Dbsf()
        request = qe.QueryRequest(limit=k, prefetches=prefetches, query=fused, filter=flt, with_payload=["doc_id"])
        return [(p.payload, p.score) for p in self.shard.query(request)]

    def _scroll_raw(self) -> Iterator[dict]:
        qe = _qe()
        offset = None
        while True:
            records, offset = self.shard.scroll(qe.ScrollRequest(offset=offset, limit=1000, with_payload=True))
            for r in records:
                yield r.payload
            if offset is None:
                break
