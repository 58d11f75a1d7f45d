"""Token names as OpenSearch / Elasticsearch feature keys: a lossless, dot-free encoding.

Why dots must go: elasticsearch#109118 (https://github.com/elastic/elasticsearch/issues/109118) — "[rank_features]
fields do not support dots in feature names" — and the rank_feature query splits ``field.feature`` at the last
dot (https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-rank-feature-query).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_search.types import SparseVector
from indexers.sparse_keys import (
    MIN_WEIGHT,
    TokenKeys,
    decode_key,
    encode_key,
    load_vocabulary,
)

HARD = [".", "##s", "[unused0]", "a.b", "...", "%", "%2E", "%25", "100%.", "café", "日本", "ß.ẞ", "Ω", "a%2Eb", " ", ""]


@pytest.mark.parametrize("token", HARD)
def test_hard_tokens_round_trip_without_dots(token):
    key = encode_key(token)
    assert "." not in key
    assert decode_key(key) == token


def test_readable_tokens_are_left_alone():
    for token in ("paris", "##s", "[unused0]", "[CLS]", "café", "日本"):
        assert encode_key(token) == token
    assert encode_key("a.b") == "a%2Eb" and encode_key("%") == "%25"


def test_distinct_hard_tokens_get_distinct_keys():
    assert len({encode_key(t) for t in HARD}) == len(HARD)


@pytest.mark.parametrize("bad", ["a.b", "%2F", "%", "x%", "x%2", "%zz"])
def test_keys_not_written_by_encode_key_are_rejected(bad):
    if bad == "%":  # the empty token's key
        assert decode_key(bad) == ""
        return
    with pytest.raises(ValueError):
        decode_key(bad)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_round_trips(token):
    key = encode_key(token)
    assert "." not in key
    assert decode_key(key) == token


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_encoding_is_injective(a, b):
    if a != b:
        assert encode_key(a) != encode_key(b)


def test_real_vocabulary_round_trips_a_real_document_vector(demo_vectors, splade):
    _, sparse, _ = demo_vectors
    vocab = load_vocabulary(splade.settings())
    assert vocab[:3] == splade.tokenizer.convert_ids_to_tokens([0, 1, 2])
    assert any("." in t for t in vocab) and any(t.startswith("##") for t in vocab)
    keys = TokenKeys(vocab)
    for vector in sparse[:5]:
        features = keys.features(vector)
        assert not any("." in k for k in features)
        back = keys.vector(features)
        np.testing.assert_array_equal(back.indices, vector.indices)
        np.testing.assert_array_equal(back.values, vector.values)
    dotted = splade.tokenizer.convert_tokens_to_ids(".")
    assert keys.key(dotted) == "%2E" and keys.index("%2E") == dotted


def test_weights_an_engine_cannot_store_are_left_out():
    keys = TokenKeys(["a", "b.c", "d", "e"])
    vector = SparseVector(np.array([0, 1, 2, 3]), np.array([1.5, 0.25, 0.0, MIN_WEIGHT / 4], dtype=np.float32))
    assert keys.features(vector) == {"a": 1.5, "b%2Ec": 0.25}


def test_models_without_a_vocabulary_use_decimal_dimensions():
    keys = TokenKeys(None)
    vector = SparseVector(np.array([3, 700]), np.array([0.5, 2.0]))
    assert keys.features(vector) == {"3": 0.5, "700": 2.0}
    assert keys.vector({"700": 2.0, "3": 0.5}).indices.tolist() == [3, 700]
    assert load_vocabulary({"name": "x", "architecture": "csr"}) is None


def test_unknown_feature_names_say_which_token():
    with pytest.raises(KeyError, match="a.b"):
        TokenKeys(["x"]).index("a%2Eb")
