from __future__ import annotations

import numpy as np
import pytest
import torch

from hybrid_search.encoders import BM25Channel, SparseEncoder, build_csr, build_inference_free, corpus_idf, tokenize
from hybrid_search.types import SparseVector

TEXTS = ["The capital of France is Paris.", "Python is a programming language created by Guido van Rossum."]


def test_splade_vectors_are_sorted_and_match_sentence_transformers(splade):
    vectors = splade.encode_document(TEXTS)
    reference = splade.model.encode_document(TEXTS, convert_to_tensor=True).to_dense().numpy()
    for vec, row in zip(vectors, reference):
        assert np.all(np.diff(vec.indices) > 0)
        assert vec.values.dtype == np.float32 and np.all(vec.values > 0)
        np.testing.assert_array_equal(vec.indices, np.flatnonzero(row))
        np.testing.assert_allclose(vec.values, row[vec.indices], atol=1e-6)
    query = splade.encode_query(["capital of france"])[0]
    expected = float(splade.model.similarity(
        splade.model.encode_query(["capital of france"]), splade.model.encode_document(TEXTS[:1])
    )[0, 0])
    assert query.dot(vectors[0]) == pytest.approx(expected, rel=1e-5)


def test_decode_and_vocabulary(splade):
    vec = splade.encode_document(TEXTS[:1])[0]
    top = splade.decode(vec, top_k=3)
    assert [t for t, _ in top][:1] == ["capital"] and len(top) == 3
    assert all(a[1] >= b[1] for a, b in zip(top, top[1:]))
    assert splade.dimension == 30522 and splade.architecture == "splade"
    assert splade.tokenizer.convert_tokens_to_ids("paris") in splade.text_token_ids(TEXTS[0])


def test_max_active_dims_is_honoured(splade):
    capped = SparseEncoder(splade.model, "splade-tiny", max_active_dims=5)
    full = splade.encode_document(TEXTS)
    for small, big in zip(capped.encode_document(TEXTS), full):
        assert small.nnz == 5
        assert set(small.indices) <= set(big.indices)
        assert small.values.min() >= np.sort(big.values)[-5] - 1e-6


def test_sparsity_statistics(splade):
    enc = SparseEncoder(splade.model, "splade-tiny")
    docs = enc.encode_document(TEXTS)
    enc.encode_query(["paris"])
    stats = enc.sparsity()
    assert stats["avg_active_dims_document"] == pytest.approx(np.mean([v.nnz for v in docs]))
    assert stats["avg_active_dims_query"] > 0


def test_truncation_is_counted(splade):
    assert splade.count_truncated(["short text", "word " * 600]) == 1


def test_inference_free_query_side_is_corpus_idf(splade):
    corpus = ["paris is the capital of france", "france borders spain", "the cat sat on the mat"]
    model = build_inference_free("splade-tiny", corpus)
    enc = SparseEncoder(model, "if")
    assert enc.architecture == "inference-free"
    idf = corpus_idf(corpus, splade.tokenizer)
    query = enc.encode_query(["paris france"])[0]
    ids = splade.tokenizer.convert_tokens_to_ids(["paris", "france"])
    assert sorted(query.indices.tolist()) == sorted(ids)
    # "france" appears in two documents, "paris" in one: rarer means heavier.
    assert query.values[list(query.indices).index(ids[0])] > query.values[list(query.indices).index(ids[1])]
    np.testing.assert_allclose(sorted(query.values), sorted(idf[ids].numpy()), rtol=1e-6)
    # The document side is the full SPLADE MLM: it expands beyond the words of the text.
    doc = enc.encode_document(["paris is the capital of france"])[0]
    assert doc.nnz > len(tokenize("paris is the capital of france"))


def test_csr_builds_on_minilm_with_k_active_dims():
    enc = SparseEncoder(build_csr("minilm", k=16), "csr")
    assert enc.architecture == "csr" and not enc.has_vocabulary
    vec = enc.encode_document(["hello world"])[0]
    assert vec.nnz == 16 and enc.dimension == 4 * 384
    assert enc.decode(vec, 1)[0][0].startswith("latent:")


def test_dense_is_normalised_cosine(minilm):
    rows = minilm.encode_document(TEXTS)
    assert rows.shape == (2, 384) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert minilm.settings()["similarity"] == "cosine"


def test_bm25_channel_ranks_and_filters():
    bm25 = BM25Channel(["a", "b", "c"], ["paris france capital", "python language", "paris hilton"])
    assert [h.id for h in bm25.search("paris capital", 3)] == ["a", "c"]
    assert [h.id for h in bm25.search("paris", 3, allowed={"c"})] == ["c"]
    assert bm25.search("   ", 3) == []


def test_sparse_vector_validation():
    vec = SparseVector([5, 1], [2.0, 1.0])
    assert vec.indices.tolist() == [1, 5] and vec.values.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="unique"):
        SparseVector([1, 1], [1.0, 2.0])
    with pytest.raises(ValueError):
        SparseVector([1, 2], [1.0])
    assert SparseVector.from_dict(vec.to_dict()).dot(vec) == pytest.approx(5.0)
    assert torch is not None
