"""Dense encoder: any sentence-transformers ``SentenceTransformer``.

Example:
    >>> from hybrid_search.encoders import DenseEncoder
    >>> enc = DenseEncoder.load("minilm")
    >>> enc.encode_query(["what is paris"]).shape
    (1, 384)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hybrid_search.encoders.sparse import query_threads
from hybrid_search.models import ModelNotAvailableError, load_error, resolve


class DenseEncoder:
    """A ``SentenceTransformer`` that returns float32 numpy rows.

    With a cosine model the rows are L2-normalised, so that a dot product, a cosine and Qdrant's ``Cosine``
    distance all give the same order.
    """

    def __init__(self, model: Any, name: str, *, batch_size: int = 32) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.similarity = model.similarity_fn_name or "cosine"

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> DenseEncoder:
        from sentence_transformers import SentenceTransformer

        resolved = resolve(name)
        try:
            model = SentenceTransformer(resolved.path, device="cpu")
        except ModelNotAvailableError:
            raise
        except Exception as error:  # noqa: BLE001
            if resolved.source == "hub":
                raise load_error(name, error) from error
            raise
        return cls(model, name, **kwargs)

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

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        with query_threads(len(texts)):
            return self._encode(self.model.encode_query, texts, False)

    def encode_document(self, texts: Sequence[str], *, show_progress_bar: bool = False) -> np.ndarray:
        return self._encode(self.model.encode_document, texts, show_progress_bar)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "dimension": self.dimension, "similarity": self.similarity}
