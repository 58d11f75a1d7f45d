"""What a rerun reuses: the corpus embeddings (:mod:`pipelines.embedding_cache`) and the index under ``--out``.

The index folder is reused when a sidecar next to it records the same corpus and model keys; a Seismic
accelerator beside it is reused when it was built with the default settings.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.index import IndexMeta
from hybrid_search.types import Document, SparseVector

logger = logging.getLogger(__name__)

BACKENDS = ("qdrant-edge", "qdrant-local")
_INDEX_SIDECAR = "index.bench.json"


def _index_keys(sparse: Any, dense: Any) -> dict[str, str | None]:
    from pipelines.embedding_cache import cache_key, encoder_fingerprint

    return {
        "sparse": cache_key(encoder_fingerprint("sparse", sparse)) if sparse else None,
        "dense": cache_key(encoder_fingerprint("dense", dense)) if dense else None,
    }


@dataclass(frozen=True)
class CorpusVectors:
    """A corpus and its precomputed vectors, as an index is built from them.

    Attributes:
        docs: the documents, in order.
        sparse_vectors, dense_matrix: one vector (row) per document; ``None`` for a channel left out.
        fingerprint: the corpus fingerprint (:meth:`~hybrid_search.dataset.RetrievalDataset.fingerprint`).
    """

    docs: Sequence[Document]
    sparse_vectors: Sequence[SparseVector] | None
    dense_matrix: np.ndarray | None
    fingerprint: str


def build_index(
    backend: str,
    out: Path,
    corpus: CorpusVectors,
    sparse: Any,
    dense: Any,
    *,
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[Any, bool]:
    """Open the benchmark's index, reusing the one under ``out`` when it holds the same vectors.

    Qdrant Edge lives in ``out/index`` (exact search) next to a sidecar that records the corpus and
    model keys it was built from; ``qdrant-local`` is qdrant-client's in-memory engine, built each run.
    ``tune`` builds its own index the same way.

    Returns:
        ``(index, reused)``.
    """
    from indexers import create_index

    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    docs = corpus.docs
    meta = IndexMeta(engine="", sparse=sparse.settings() if sparse else None, dense=dense.settings() if dense else None)
    expected = {"corpus": corpus.fingerprint, "documents": len(docs), **_index_keys(sparse, dense)}
    if backend == "qdrant-local":
        index = create_index(":memory:", meta, exact=True)
    else:
        reused = _reuse_edge_index(out, expected, len(docs))
        if reused is not None:
            return reused, True
        out.mkdir(parents=True, exist_ok=True)
        index = create_index(str(out / "index"), meta, exact=True)
    _upsert_all(index, docs, corpus.sparse_vectors, corpus.dense_matrix, batch_size=batch_size, progress=progress)
    if backend == "qdrant-edge":
        index.flush()
        (out / _INDEX_SIDECAR).write_text(json.dumps(expected, indent=2), encoding="utf-8")
    return index, False


def _reuse_edge_index(out: Path, expected: dict[str, Any], n_docs: int) -> Any | None:
    """The Qdrant Edge index under ``out`` when its sidecar records ``expected`` and it holds every document;
    else ``None``, with a stale index of other vectors removed so that a fresh one can take its place.

    Raises:
        FileExistsError: ``out/index`` exists and is not a hybrid-search index (it is never deleted).
    """
    from indexers import open_index
    from indexers.qdrant_edge import META_FILE

    folder, sidecar = out / "index", out / _INDEX_SIDECAR
    if not folder.exists():
        return None
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if recorded == expected:
        index = open_index(str(folder), exact=True, sparse_ann=False)
        if index.count() == n_docs:
            return index
        index.close()
    if not (folder / META_FILE).exists():
        raise FileExistsError(f"{folder} exists and is not a hybrid-search index; pass another --out")
    logger.info("rebuilding %s: it was built from other vectors", folder)
    sidecar.unlink(missing_ok=True)
    shutil.rmtree(folder)
    return None


def _upsert_all(
    index: Any,
    docs: Sequence[Document],
    sparse_vectors: Sequence[SparseVector] | None,
    dense_matrix: np.ndarray | None,
    *,
    batch_size: int,
    progress: bool,
) -> None:
    """Write the documents and their precomputed vectors in batches, with a progress bar."""
    from tqdm.auto import tqdm

    with tqdm(total=len(docs), desc="indexing", unit="doc", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(docs), batch_size):
            stop = start + batch_size
            index.upsert(
                docs[start:stop],
                sparse_vectors[start:stop] if sparse_vectors is not None else None,
                dense_matrix[start:stop] if dense_matrix is not None else None,
            )
            bar.update(len(docs[start:stop]))


def _accelerate(index: Any, method: str, reused: bool, progress: bool) -> Any:
    """The benchmark's index with a sparse accelerator of the default settings: the one already beside
    it when the index was reused and has one, else a fresh build."""
    from indexers.seismic import SeismicSettings, accelerate, build

    recorded = index.meta.sparse_ann or {}
    defaults = SeismicSettings()
    if not (reused and recorded.get("method") == method and recorded.get("settings") == defaults.to_dict()):
        build(index, defaults, progress=progress)
    wrapped = accelerate(index)
    if wrapped.accelerator is None:  # recorded but unreadable (an interrupted run): build it again
        build(wrapped, defaults, progress=progress)
    return wrapped


def open_store(cache: Any, progress: bool) -> Any:
    """The embedding cache a run uses: ``cache`` itself when it is one, a folder's, the default, or a disabled one."""
    from pipelines.embedding_cache import EmbeddingCache

    if isinstance(cache, EmbeddingCache):
        return cache
    root = None if isinstance(cache, bool) else cache
    return EmbeddingCache(root, progress=progress, enabled=bool(cache))
