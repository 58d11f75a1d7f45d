"""Encoders: text to sparse and dense vectors, plus a BM25 channel.

The names are imported on first use (PEP 562): the sparse and dense encoders need torch, whose import costs
seconds, and most of what imports this package (the indexers' BM25 channel, every CLI command at start-up)
never encodes anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybrid_search.encoders.bm25 import BM25Channel, tokenize
    from hybrid_search.encoders.dense import DenseEncoder
    from hybrid_search.encoders.sparse import (
        ARCHITECTURES,
        SparseEncoder,
        build_csr,
        build_inference_free,
        build_splade,
        corpus_idf,
        detect_architecture,
    )

_HOMES = {
    "BM25Channel": "bm25",
    "tokenize": "bm25",
    "DenseEncoder": "dense",
    "ARCHITECTURES": "sparse",
    "SparseEncoder": "sparse",
    "build_csr": "sparse",
    "build_inference_free": "sparse",
    "build_splade": "sparse",
    "corpus_idf": "sparse",
    "detect_architecture": "sparse",
}

__all__ = [
    "ARCHITECTURES",
    "BM25Channel",
    "DenseEncoder",
    "SparseEncoder",
    "build_csr",
    "build_inference_free",
    "build_splade",
    "corpus_idf",
    "detect_architecture",
    "tokenize",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
