"""Encoders: text to sparse and dense vectors, plus a BM25 channel."""

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
