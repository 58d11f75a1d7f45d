"""What every adapter shares: id mapping, payloads, metadata bookkeeping, filter checks and the BM25 channel.
(Who fuses, and the fusion itself, are :class:`hybrid_search.index.SearchIndex`'s, for every adapter.)

An adapter subclasses :class:`BaseIndex` and implements the ``_raw`` primitives for its engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hybrid_search.encoders.bm25 import BM25Channel
from hybrid_search.index import (  # RawHit: re-exported for the adapters
    Filters,
    IndexMeta,
    RawHit,
    SearchIndex,
    StoredDocument,
    from_payload,
    lexical_from_payload,
    matches,
    point_id,
    ranking_of,
    to_payload,
)
from hybrid_search.types import Document, Ranking, SparseVector
from indexers.credentials import redact


class BaseIndex(SearchIndex):
    """Engine-independent half of an adapter. Subclasses set ``engine`` and implement the ``_raw`` methods
    (with ``_hybrid_raw``, declared by :class:`~hybrid_search.index.SearchIndex`, which also holds the fusion
    rules every adapter shares: ``engine_fuses``, ``search_engine_fused`` and ``search_hybrid``)."""

    engine = "base"
    engine_weighted_rrf = False
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

    _ranking = staticmethod(ranking_of)

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
