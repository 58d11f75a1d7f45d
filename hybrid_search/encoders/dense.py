"""Dense encoder: any sentence-transformers ``SentenceTransformer``.

Example:
    >>> from hybrid_search.encoders import DenseEncoder
    >>> enc = DenseEncoder.load("minilm")
    >>> enc.encode_query(["what is paris"]).shape
    (1, 384)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hybrid_search.device import autocast_documents, document_precision, is_cpu
from hybrid_search.encoders.sparse import query_threads
from hybrid_search.models import RecordedModel

logger = logging.getLogger(__name__)


BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
#: Environment variable that picks the backend where none is given (e.g. for the UI).
BACKEND_ENV = "HYBRID_SEARCH_DENSE_BACKEND"


class DenseEncoder(RecordedModel):
    """A ``SentenceTransformer`` that returns float32 numpy rows.

    With a cosine model the rows are L2-normalised, so that a dot product, a cosine and Qdrant's ``Cosine``
    distance all give the same order.

    Args:
        backend: ``auto`` (default) encodes queries with the model's verified float32 ONNX export on ONNX
            Runtime where that works (the same vectors; 2.2x faster than sentence-transformers for one
            query, see :mod:`hybrid_search.encoders.onnx_dense`) and document batches with PyTorch (ONNX
            Runtime measured no faster there); ``torch`` always uses sentence-transformers' PyTorch path;
            ``onnx`` uses ONNX for both; ``onnx-int8`` uses int8 weights for both, about 1.9x faster on
            documents but not identical (opt-in; -0.40 nDCG@10 on DL19, see docs/benchmarks.md).
            ONNX Runtime runs on the CPU here: on a GPU ``auto`` means ``torch``, and documents are encoded
            in the precision :func:`~hybrid_search.device.document_precision` gives.
    """

    def __init__(self, model: Any, name: str, *, batch_size: int = 32, backend: str | None = None) -> None:
        backend = backend or os.environ.get(BACKEND_ENV) or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"unknown dense backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.device = str(getattr(model, "device", "cpu"))
        self.precision = document_precision(self.device)
        if not is_cpu(self.device):
            if backend not in ("auto", "torch"):
                raise ValueError(
                    f"the dense backend {backend!r} runs on the CPU; use --device cpu, "
                    f"or the torch backend on {self.device}"
                )
            backend = "torch"
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.similarity = model.similarity_fn_name or "cosine"
        self.backend = backend
        self._onnx: Any = None  # built on first use: the export takes seconds, loading should not

    def _onnx_forward(self) -> Any:
        """The ONNX Runtime path, or None where the backend is (or falls back to) PyTorch."""
        if self.backend == "torch" or self._onnx is False:
            return None
        if self._onnx is None:
            from hybrid_search.encoders.onnx_dense import OnnxDenseForward, OnnxUnavailable

            try:
                self._onnx = OnnxDenseForward(self.model, "onnx" if self.backend == "auto" else self.backend)
            except OnnxUnavailable as error:
                if self.backend != "auto":
                    raise
                logger.info("dense model %s stays on PyTorch: %s", self.name, error)
                self._onnx = False
                return None
        return self._onnx

    @property
    def vector_precision(self) -> str:
        """``float32`` where the vectors equal sentence-transformers' (to float rounding), else what differs."""
        if self.backend == "onnx-int8":
            return "int8-weights"
        return "float32" if self.precision == "fp32" else f"{self.precision}-autocast"

    @property
    def active_backend(self) -> str:
        """What actually encodes: ``torch``, ``onnx`` or ``onnx-int8`` (exports on first call)."""
        forward = self._onnx_forward()
        return forward.precision if forward is not None else "torch"

    @staticmethod
    def _model_class() -> Any:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length or 512)

    def _encode(self, method: Any, texts: Sequence[str], show_progress_bar: bool) -> np.ndarray:
        return np.asarray(
            method(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.similarity == "cosine",
                show_progress_bar=show_progress_bar,
            ),
            dtype=np.float32,
        )

    def _encode_onnx(self, forward: Any, texts: Sequence[str], threads: int | None, progress: bool) -> np.ndarray:
        rows = forward(texts, self.batch_size, threads=threads, show_progress_bar=progress)
        if self.similarity == "cosine" and not forward.normalize:
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return rows

    def encode_query(self, texts: Sequence[str], *, alone: bool = False) -> np.ndarray:
        """Query embeddings. A handful of queries runs on one thread, so that the sparse encoder can run
        beside it; ``alone=True`` says nothing else runs meanwhile, and a float32 ONNX model may use every
        thread (int8 products are too small to split: two threads measured slower than one)."""
        forward = self._onnx_forward() if not self.model.prompts.get("query") else None
        if forward is not None:
            split = len(texts) > 4 or alone and forward.precision == "onnx"
            return self._encode_onnx(forward, texts, None if split else 1, False)
        with query_threads(len(texts)):
            return self._encode(self.model.encode_query, texts, False)

    def encode_document(self, texts: Sequence[str], *, show_progress_bar: bool = False) -> np.ndarray:
        use_onnx = self.backend != "auto" and not self.model.prompts.get("document")
        forward = self._onnx_forward() if use_onnx else None
        if forward is not None:
            return self._encode_onnx(forward, texts, None, show_progress_bar)
        with autocast_documents(self.device, self.precision):
            return self._encode(self.model.encode_document, texts, show_progress_bar)

    def settings(self) -> dict[str, Any]:
        """What an index records about the model that built it; a query must match it."""
        return {"name": self.name, "dimension": self.dimension, "similarity": self.similarity, **self.identity()}
