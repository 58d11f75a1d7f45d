"""Corpus embeddings cached on disk, keyed by the model, its settings and the corpus content.

A benchmark rerun that only changes fusion, the reranker or the index backend then reads the vectors
back instead of encoding the corpus again. One cache entry holds one channel of one corpus:

    cache_dir()/embeddings/sparse/<model>/<corpus fingerprint>-<model key>/
        vectors.npz    CSR rows: indptr, indices, values (row i = document ids[i])
        ids.json       the document ids, in row order
        meta.json      what the key was computed from, for people reading the cache
    cache_dir()/embeddings/dense/<model>/<corpus fingerprint>-<model key>/
        vectors.npy    float32 (n_docs, dim)
        ids.json, meta.json

The model key hashes the encoder's ``settings()``, its ``max_seq_length``, prompts, the
sentence-transformers version and the model's weights, so a model fine-tuned into the same folder
gets a new entry rather than stale vectors. Entries are written to a temporary folder and renamed into
place, so an interrupted run never leaves half an entry behind.

Example:
    >>> from pipelines.embedding_cache import EmbeddingCache
    >>> cache = EmbeddingCache()  # doctest: +SKIP
    >>> vectors, hit = cache.sparse(splade, docs, dataset.fingerprint())  # doctest: +SKIP
    >>> hit  # True on the second call: nothing was encoded  # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.models import (  # weights_digest: re-exported for callers
    cache_dir,
    weights_digest,
)
from hybrid_search.types import Document, SparseVector, csr_to_sparse, sparse_to_csr  # the packer, re-exported

logger = logging.getLogger(__name__)

#: Documents encoded per call; a multiple of the encoders' batch size so batches match one big call.
CHUNK = 256
_FORMAT = 1


# --------------------------------------------------------------------------- pure helpers


def encoder_fingerprint(kind: str, encoder: Any) -> dict[str, Any]:
    """Everything about an encoder that changes its document vectors, as a JSON-able dict.

    Args:
        kind: ``"sparse"`` or ``"dense"``.
        encoder: a :class:`~hybrid_search.encoders.SparseEncoder` or
            :class:`~hybrid_search.encoders.DenseEncoder`.
    """
    import sentence_transformers

    model = encoder.model
    precision = getattr(encoder, "vector_precision", "float32")
    return {
        **({"precision": precision} if precision != "float32" else {}),
        "format": _FORMAT,
        "kind": kind,
        # The settings minus where the weights were loaded from (the key must not depend on the folder)
        # and their digest, which is the "weights" entry below.
        "settings": {k: v for k, v in encoder.settings().items() if k not in ("path", "weights")},
        "max_seq_length": encoder.max_seq_length,
        "prompts": dict(getattr(model, "prompts", None) or {}),
        "default_prompt_name": getattr(model, "default_prompt_name", None),
        "sentence_transformers": sentence_transformers.__version__,
        "weights": weights_digest(model),
    }


def cache_key(fingerprint: dict[str, Any]) -> str:
    """16 hex digits identifying an :func:`encoder_fingerprint`."""
    blob = json.dumps(fingerprint, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_")[-60:] or "model"


def _length_order(texts: Sequence[str]) -> np.ndarray:
    # Longest first, as sentence-transformers orders a single call: batches pad to similar lengths, and
    # chunking a sorted list gives the same batches as one call over the whole corpus.
    return np.argsort([-len(t) for t in texts], kind="stable")


def encode_in_chunks(
    encode: Callable[[list[str]], Any],
    texts: Sequence[str],
    *,
    desc: str,
    progress: bool = True,
    chunk: int = CHUNK,
) -> list[Any]:
    """Encode texts in length-sorted chunks with one progress bar; results come back in input order.

    Args:
        encode: ``texts -> sequence of per-text results`` (a list of vectors or a 2-D array).
        texts: what to encode.
        desc: the progress bar's label.
        progress: show the bar.
        chunk: texts per call.
    """
    from tqdm.auto import tqdm

    order = _length_order(texts)
    out: list[Any] = [None] * len(texts)
    with tqdm(total=len(texts), desc=desc, unit="doc", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(order), chunk):
            positions = order[start : start + chunk]
            for position, result in zip(positions, encode([texts[i] for i in positions])):
                out[position] = result
            bar.update(len(positions))
    return out


# --------------------------------------------------------------------------- the cache


class EmbeddingCache:
    """Document vectors on disk, one entry per (channel, model, corpus).

    Args:
        root: the cache folder; default ``hybrid_search.models.cache_dir() / "embeddings"``.
        progress: show progress bars when encoding.
        enabled: ``False`` encodes every time and writes nothing (same interface, no disk).

    Attributes:
        encoded: documents encoded per channel by this object (0 after cache hits): a counter tests
            and reports can rely on.
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, progress: bool = True, enabled: bool = True
    ) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "embeddings"
        self.progress = progress
        self.enabled = enabled
        self.encoded = {"sparse": 0, "dense": 0}

    def entry(self, kind: str, encoder: Any, corpus_fingerprint: str) -> tuple[Path, dict[str, Any]]:
        """The folder of one entry and the fingerprint its key was computed from."""
        fingerprint = encoder_fingerprint(kind, encoder)
        folder = self.root / kind / _slug(encoder.name) / f"{corpus_fingerprint}-{cache_key(fingerprint)}"
        return folder, {**fingerprint, "corpus": corpus_fingerprint}

    def sparse(
        self, encoder: Any, docs: Sequence[Document], corpus_fingerprint: str
    ) -> tuple[list[SparseVector], bool]:
        """Sparse document vectors in ``docs`` order, and whether they came from the cache.

        Args:
            encoder: a :class:`~hybrid_search.encoders.SparseEncoder`.
            docs: the corpus.
            corpus_fingerprint: e.g. :meth:`~hybrid_search.dataset.RetrievalDataset.fingerprint`.
        """
        folder, meta = self.entry("sparse", encoder, corpus_fingerprint)
        ids = [d.id for d in docs]
        stored = self._load(folder, ids, "vectors.npz")
        if stored is not None:
            with np.load(stored[0]) as npz:
                rows = csr_to_sparse(npz["indptr"], npz["indices"], npz["values"])
            return [rows[i] for i in stored[1]], True
        vectors: list[SparseVector] = encode_in_chunks(
            lambda texts: encoder.encode_document(texts),
            [d.full_text for d in docs],
            desc=f"encoding sparse ({encoder.name})",
            progress=self.progress,
        )
        self.encoded["sparse"] += len(docs)
        indptr, indices, values = sparse_to_csr(vectors)
        self._save(
            folder, ids, meta, lambda d: np.savez(d / "vectors.npz", indptr=indptr, indices=indices, values=values)
        )
        return vectors, False

    def dense(self, encoder: Any, docs: Sequence[Document], corpus_fingerprint: str) -> tuple[np.ndarray, bool]:
        """Dense document vectors ``(len(docs), dim)`` in ``docs`` order, and whether they came from the cache."""
        folder, meta = self.entry("dense", encoder, corpus_fingerprint)
        ids = [d.id for d in docs]
        stored = self._load(folder, ids, "vectors.npy")
        if stored is not None:
            return np.load(stored[0])[stored[1]], True
        rows = encode_in_chunks(
            lambda texts: encoder.encode_document(texts),
            [d.full_text for d in docs],
            desc=f"encoding dense ({encoder.name})",
            progress=self.progress,
        )
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(docs), -1)
        self.encoded["dense"] += len(docs)
        self._save(folder, ids, meta, lambda d: np.save(d / "vectors.npy", matrix))
        return matrix, False

    # --- storage --------------------------------------------------------------------------------
    def _load(self, folder: Path, ids: list[str], filename: str) -> tuple[Path, np.ndarray] | None:
        """``(vector file, row of each requested id)`` when the entry holds exactly these ids."""
        if not self.enabled:
            return None
        try:
            stored_ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        path = folder / filename
        if not path.is_file():
            return None
        if stored_ids == ids:
            return path, np.arange(len(ids))
        row = {doc_id: i for i, doc_id in enumerate(stored_ids)}
        if len(row) != len(stored_ids) or set(row) != set(ids):
            # Same content hash but other ids cannot happen for a RetrievalDataset; re-encode to be safe.
            logger.warning("embedding cache %s holds other document ids; encoding again", folder)
            return None
        return path, np.asarray([row[i] for i in ids])

    def _save(self, folder: Path, ids: list[str], meta: dict[str, Any], write: Callable[[Path], None]) -> None:
        if not self.enabled:
            return
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            write(tmp)
            (tmp / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            if folder.exists():  # an entry that failed validation, or a concurrent run's
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        except OSError as error:
            # A read-only or full cache must not fail the benchmark: the vectors are in memory.
            logger.warning("could not write embedding cache %s: %s", folder, error)
            shutil.rmtree(tmp, ignore_errors=True)
