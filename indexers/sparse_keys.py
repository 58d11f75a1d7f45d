"""Vocabulary tokens as sparse feature keys for OpenSearch and Elasticsearch.

Both engines store a sparse vector as a map ``{feature name: weight}`` (``rank_features``, ``sparse_vector``),
and both treat a dot in a feature name as an object path: ``rank_features`` rejects it, and a
``rank_feature`` query on ``sparse.a.b`` looks for the feature ``b`` of a field ``sparse.a``
(elasticsearch#109118). WordPiece vocabularies are full of dots (``.``, ``...``, ``a.m.``), so token names
are escaped with a small, lossless scheme before they become keys:

- ``%`` is written ``%25`` and ``.`` is written ``%2E``; every other character, non-ASCII included, is kept;
- the empty token, which no real vocabulary has, is written ``%`` alone so that the scheme is a bijection.

Keys therefore stay readable (``##s``, ``[unused0]``, ``café`` are unchanged) and :func:`decode_key` undoes
:func:`encode_key` exactly. A model without a vocabulary (CSR latents) uses the decimal dimension as its name.

Example:
    >>> encode_key("a.m.")
    'a%2Em%2E'
    >>> decode_key(encode_key("100%"))
    '100%'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybrid_search.types import SparseVector

_ESCAPES = {"%": "%25", ".": "%2E"}
_UNESCAPES = {v[1:]: k for k, v in _ESCAPES.items()}
_EMPTY = "%"
#: Lucene's FeatureField rejects weights that are not positive normal floats.
MIN_WEIGHT = float(np.finfo(np.float32).tiny)


def encode_key(token: str) -> str:
    """The feature name for a vocabulary token: dots and percent signs escaped, nothing else touched."""
    if token == "":
        return _EMPTY
    return "".join(_ESCAPES.get(ch, ch) for ch in token)


def decode_key(key: str) -> str:
    """The token a feature name encodes; ``ValueError`` for a name :func:`encode_key` cannot produce."""
    if key == _EMPTY:
        return ""
    out: list[str] = []
    i = 0
    while i < len(key):
        ch = key[i]
        if ch == ".":
            raise ValueError(f"feature name {key!r} contains a raw dot; it was not written by encode_key")
        if ch == "%":
            code = key[i + 1 : i + 3]
            if code not in _UNESCAPES:
                raise ValueError(f"feature name {key!r} has a bad escape at position {i}")
            out.append(_UNESCAPES[code])
            i += 3
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class TokenKeys:
    """Converts :class:`SparseVector` objects to and from ``{feature name: weight}`` maps.

    Args:
        vocabulary: the model's tokens, position = vocabulary id; ``None`` names dimensions by their
            decimal id (for CSR, whose dimensions are learned latents).
    """

    def __init__(self, vocabulary: Sequence[str] | None) -> None:
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self._ids: dict[str, int] | None = None
        if self.vocabulary is not None:
            self._ids = {encode_key(tok): i for i, tok in enumerate(self.vocabulary)}
            if len(self._ids) != len(self.vocabulary):
                raise ValueError("the vocabulary has duplicate tokens; token names would not be unique keys")

    def key(self, index: int) -> str:
        if self.vocabulary is None:
            return str(int(index))
        return encode_key(self.vocabulary[int(index)])

    def index(self, key: str) -> int:
        if self._ids is None:
            return int(key)
        try:
            return self._ids[key]
        except KeyError:
            raise KeyError(f"feature {decode_key(key)!r} is not in the model's vocabulary") from None

    def features(self, vector: SparseVector) -> dict[str, float]:
        """``{feature name: weight}``, leaving out weights the engines cannot store (<= 0, subnormal)."""
        return {
            self.key(i): float(w) for i, w in zip(vector.indices.tolist(), vector.values.tolist()) if w >= MIN_WEIGHT
        }

    def vector(self, features: Mapping[str, Any]) -> SparseVector:
        """The :class:`SparseVector` a stored feature map encodes."""
        pairs = sorted((self.index(k), float(v)) for k, v in features.items())
        return SparseVector(
            np.asarray([i for i, _ in pairs], dtype=np.int64), np.asarray([v for _, v in pairs], dtype=np.float32)
        )


def load_vocabulary(settings: Mapping[str, Any] | None) -> list[str] | None:
    """The vocabulary of the sparse model an index records (``IndexMeta.sparse``), or ``None`` for CSR.

    Loads only the tokenizer where the model folder has one; otherwise loads the model through
    :class:`~hybrid_search.encoders.SparseEncoder` (inference-free Routers keep their tokenizer inside).
    """
    if not settings or settings.get("architecture") == "csr":
        return None
    from hybrid_search.models import model_source

    name = str(model_source(settings))
    tokenizer = None
    try:
        from transformers import AutoTokenizer

        from hybrid_search.models import resolve

        tokenizer = AutoTokenizer.from_pretrained(resolve(name).path)
    except (OSError, ValueError):
        from hybrid_search.encoders import SparseEncoder

        tokenizer = SparseEncoder.load(name).tokenizer
    vocab = tokenizer.get_vocab()
    tokens = [f"[id:{i}]" for i in range(max(vocab.values()) + 1)]  # ids a tokenizer leaves unnamed
    for token, index in vocab.items():
        tokens[index] = token
    return tokens
