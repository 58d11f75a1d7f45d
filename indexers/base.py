"""What every adapter shares: id mapping, payloads, metadata bookkeeping, filter checks, the BM25 channel
and the choice between engine-side and client-side fusion.

An adapter subclasses :class:`BaseIndex` and implements the ``_raw`` primitives for its engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hybrid_search.constants import DEFAULT_PREFETCH_K, DEFAULT_RRF_K
from hybrid_search.encoders.bm25 import BM25Channel
from hybrid_search.fusion import fuse
from hybrid_search.index import (
    Filters,
    IndexMeta,
    StoredDocument,
    from_payload,
    lexical_from_payload,
    matches,
    point_id,
    to_payload,
    who_fuses,
)
from hybrid_search.types import Document, Ranking, ScoredId, SparseVector
from indexers.credentials import redact

RawHit = tuple[Mapping[str, Any], float]  # (payload, score)


class BaseIndex:
    """Engine-independent half of an adapter. Subclasses set ``engine`` and implement the ``_raw`` methods."""

    engine = "base"
    #: Whether the engine fuses with weighted RRF the way we do (Σ w/(k+rank)). Qdrant does not.
    engine_weighted_rrf = False
    #: Fusion methods the engine can run itself.
    engine_fusions: tuple[str, ...] = ("rrf",)

    def __init__(self, location: str, meta: IndexMeta) -> None:
        self.location = redact(location)  # what reports, messages and the UI show: never a password
        self.meta = meta
        self._bm25: BM25Channel | None = None

    # --- primitives an adapter implements -------------------------------------------------------
    def _upsert_raw(
        self, pids: list[str], payloads: list[dict], sparse: Sequence[SparseVector] | None, dense: np.ndarray | None
    ) -> None:
        raise NotImplementedError

    def _delete_raw(self, pids: list[str]) -> None:
        raise NotImplementedError

    def _count_raw(self) -> int:
        raise NotImplementedError

    def _retrieve_raw(
        self, pids: list[str], payload: bool | list[str], sparse: bool
    ) -> list[tuple[dict, SparseVector | None]]:
        raise NotImplementedError

    def _search_raw(self, channel: str, vector: Any, k: int, filters: Filters | None) -> list[RawHit]:
        raise NotImplementedError

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
        raise NotImplementedError

    def _scroll_raw(self) -> Iterator[dict]:
        raise NotImplementedError

    def save_meta(self) -> None:
        raise NotImplementedError

    def ensure_free_space(self, needed: int) -> None:
        """Raise :class:`~hybrid_search.index.DiskFullError` if writing ``needed`` more bytes is unsafe.

        Embedded engines on this machine's disk check it; a server manages its own disk, so by default
        there is nothing to check here.
        """

    def close(self) -> None:
        pass

    # --- the protocol ---------------------------------------------------------------------------
    def __enter__(self) -> BaseIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upsert(
        self,
        docs: Sequence[Document],
        sparse: Sequence[SparseVector] | None,
        dense: np.ndarray | None,
        *,
        lexical: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """Insert or replace ``docs`` with their vectors.

        ``lexical`` (optional, one list per document): the ids of each sparse vector that occur in the
        document's own tokenisation, as :meth:`~hybrid_search.encoders.SparseEncoder.lexical_ids` gives
        them; stored with the document so that explanations need no tokenizer at query time.
        """
        if not docs:
            return
        if self.meta.sparse and sparse is None or self.meta.dense and dense is None:
            raise ValueError(f"this index has channels {self.meta.channels[:-1]}; give a vector for each")
        if lexical is not None and len(lexical) != len(docs):
            raise ValueError(f"got {len(lexical)} lexical id lists for {len(docs)} documents")
        payloads = [to_payload(d, lexical[i] if lexical is not None else None) for i, d in enumerate(docs)]
        self._upsert_raw([point_id(d.id) for d in docs], payloads, sparse, dense)
        self._bm25 = None
        if self.meta.add_metadata_fields({k for d in docs for k in d.metadata}):
            self.save_meta()

    def delete(self, ids: Sequence[str]) -> None:
        self._delete_raw([point_id(i) for i in ids])
        self._bm25 = None

    def count(self) -> int:
        return self._count_raw()

    def stored_ids(self) -> Iterator[str]:
        """Every stored document's corpus id, in the engine's order."""
        for payload in self._scroll_raw():
            yield str(payload["doc_id"])

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents, in the order of ``ids``; ids that are not stored are left out."""
        return [stored.document for stored in self.fetch(ids)]

    def stored_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        rows = self._retrieve_raw([point_id(i) for i in ids], ["doc_id", "content_hash"], False)
        return {p["doc_id"]: p.get("content_hash", "") for p, _ in rows}

    def sparse_vectors(self, ids: Sequence[str]) -> dict[str, SparseVector]:
        rows = self._retrieve_raw([point_id(i) for i in ids], ["doc_id"], True)
        return {p["doc_id"]: v for p, v in rows if v is not None}

    def scroll_sparse(self, batch_size: int = 1000) -> Iterator[list[tuple[str, SparseVector]]]:
        """Every stored document's id and sparse vector, in batches: what a sparse accelerator
        (``indexers.seismic``) is built from. Adapters with a vector-returning scroll override this."""
        ids: list[str] = []
        for payload in self._scroll_raw():
            ids.append(str(payload["doc_id"]))
            if len(ids) == batch_size:
                yield list(self.sparse_vectors(ids).items())
                ids = []
        if ids:
            yield list(self.sparse_vectors(ids).items())

    def fetch(self, ids: Sequence[str], *, sparse: bool = False) -> list[StoredDocument]:
        """Documents with their lexical ids and, with ``sparse=True``, their stored sparse vectors, in the
        order of ``ids`` (ids not stored are left out): one engine round trip for what an explained result
        page needs."""
        rows = self._retrieve_raw([point_id(i) for i in ids], True, sparse and bool(self.meta.sparse))
        found = {p["doc_id"]: StoredDocument(from_payload(p), v, lexical_from_payload(p)) for p, v in rows}
        return [found[i] for i in ids if i in found]

    @staticmethod
    def _ranking(raw: list[RawHit]) -> Ranking:
        # Engines order exactly equal scores in their own, run-dependent way; breaking ties by id, as
        # hybrid_search.fusion does, makes engine and client results, CLI, UI and benchmarks agree.
        hits = [ScoredId(str(p["doc_id"]), float(s)) for p, s in raw]
        return sorted(hits, key=lambda h: (-h.score, h.id))

    def _require(self, channel: str) -> None:
        if channel != "bm25" and not getattr(self.meta, channel):
            raise ValueError(f"this index has no {channel} channel (channels: {', '.join(self.meta.channels)})")

    def search_sparse(self, vector: SparseVector, k: int, filters: Filters | None = None) -> Ranking:
        self._require("sparse")
        self.meta.check_filters(filters)
        if vector.nnz == 0:
            return []
        return self._ranking(self._search_raw("sparse", vector, k, filters))

    def search_dense(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> Ranking:
        self._require("dense")
        self.meta.check_filters(filters)
        return self._ranking(self._search_raw("dense", np.asarray(vector, dtype=np.float32), k, filters))

    def search_bm25(self, text: str, k: int, filters: Filters | None = None) -> Ranking:
        """BM25 on rank-bm25 over the stored texts, built on first use and dropped on every write."""
        self.meta.check_filters(filters)
        if self._bm25 is None:
            docs = [from_payload(p) for p in self._scroll_raw()]
            self._bm25_docs = {d.id: d for d in docs}
            self._bm25 = BM25Channel([d.id for d in docs], [d.full_text for d in docs])
        allowed = None
        if filters:
            allowed = {i for i, d in self._bm25_docs.items() if matches(d, filters)}
        return self._bm25.search(text, k, allowed)

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
        Whether a given search uses it is decided in one place, :func:`hybrid_search.index.who_fuses`.
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
        return self._ranking(self._hybrid_raw(sparse, dense, k, prefetch_k, fusion, rrf_k, filters))

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
        makes the same choice (:func:`~hybrid_search.index.who_fuses`) and reuses its per-channel rankings.
        """
        self.meta.check_filters(filters)
        channels = [c for c, v in (("sparse", sparse), ("dense", dense)) if v is not None]
        by = who_fuses(
            self,
            channels,
            fusion,
            weights=weights,
            rrf_k=rrf_k,
            engine_fusion=engine_fusion,
            sparse_empty=sparse is not None and sparse.nnz == 0,
        )
        if by == "engine":
            return self.search_engine_fused(
                sparse, dense, k, prefetch_k=prefetch_k, fusion=fusion, rrf_k=rrf_k, filters=filters
            )
        rankings: dict[str, Ranking] = {}
        if sparse is not None:
            rankings["sparse"] = self.search_sparse(sparse, prefetch_k, filters)
        if dense is not None:
            rankings["dense"] = self.search_dense(dense, prefetch_k, filters)
        return fuse(fusion, rankings, rrf_k=rrf_k, weights=weights, limit=k)
