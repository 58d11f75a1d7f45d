"""What every adapter shares: id mapping, payloads, metadata bookkeeping, filter checks, the BM25 channel
and the choice between engine-side and client-side fusion.

An adapter subclasses :class:`BaseIndex` and implements the ``_raw`` primitives for its engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

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

    def _retrieve_raw(self, pids: list[str], payload: bool | list[str], sparse: bool) -> list[tuple[dict, SparseVector | None]]:
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

    def get(self, ids: Sequence[str]) -> list[Document]:
        """Stored documents, in the order of ``ids``; ids that are not stored are left out."""
        return [stored.document for stored in self.fetch(ids)]

    def stored_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        rows = self._retrieve_raw([point_id(i) for i in ids], ["doc_id", "content_hash"], False)
        return {p["doc_id"]: p.get("content_hash", "") for p, _ in rows}

    def sparse_vectors(self, ids: Sequence[str]) -> dict[str, SparseVector]:
        rows = self._retrieve_raw([point_id(i) for i in ids], ["doc_id"], True)
        return {p["doc_id"]: v for p, v in rows if v is not None}

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
        engine_fusion: bool = True,
    ) -> Ranking:
        """Fuse the sparse and dense channels, in the engine where it computes the same formula.

        Engine-side fusion covers unweighted RRF and DBSF where the engine has them. Weighted fusion (unless
        the engine computes our weighted formula) and the convex combination run client-side over the same
        per-channel candidates, so the result is the same formula either way.
        """
        self.meta.check_filters(filters)
        # Engines fuse with unit weights; anything else is fused here so the scores mean the same.
        uniform = all(float(w) == 1.0 for w in (weights or {}).values())
        if (
            engine_fusion
            and sparse is not None
            and dense is not None
            and sparse.nnz > 0
            and fusion in self.engine_fusions
            and float(rrf_k).is_integer()  # engines take an integer k
            and (uniform or fusion == "rrf" and self.engine_weighted_rrf)
        ):
            return self._ranking(self._hybrid_raw(sparse, dense, k, prefetch_k, fusion, rrf_k, filters))
        rankings: dict[str, Ranking] = {}
        if sparse is not None:
            rankings["sparse"] = self.search_sparse(sparse, prefetch_k, filters)
        if dense is not None:
            rankings["dense"] = self.search_dense(dense, prefetch_k, filters)
        return fuse(fusion, rankings, k=rrf_k, weights=weights, limit=k)
