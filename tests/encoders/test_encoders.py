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
    expected = float(
        splade.model.similarity(
            splade.model.encode_query(["capital of france"]), splade.model.encode_document(TEXTS[:1])
        )[0, 0]
    )
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


def test_bm25_scores_an_outside_passage_with_the_corpus_statistics():
    texts = ["paris france capital city", "python language", "paris hilton hotel paris", "rivers of france"]
    texts += ["ocean tides", "mountain passes"]
    bm25 = BM25Channel(list("abcdef"), texts)
    queries = ["paris france", "python", "hotel in paris"]
    matrix = bm25.score_matrix(queries)
    assert matrix.shape == (3, 6) and matrix[1].argmax() == 1 and matrix[1, 0] == 0
    # A corpus document's own text scores as rank-bm25 scores it in the matrix ...
    for q, query in enumerate(queries):
        np.testing.assert_allclose(bm25.score_passages([query] * 6, texts), matrix[q], rtol=1e-5)
    # ... and a passage that is not in the corpus is scored with the corpus's IDF and average length: adding a
    # matching term raises its score, adding a word the query lacks (a longer passage) lowers it.
    base, more, longer = bm25.score_passages(["paris france"] * 3, ["paris", "paris france", "paris is big"])
    assert more > base > longer > 0
    with pytest.raises(ValueError, match="one passage per query"):
        bm25.score_passages(["a", "b"], ["x"])


def test_sparse_vector_validation():
    vec = SparseVector([5, 1], [2.0, 1.0])
    assert vec.indices.tolist() == [1, 5] and vec.values.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="unique"):
        SparseVector([1, 1], [1.0, 2.0])
    with pytest.raises(ValueError):
        SparseVector([1, 2], [1.0])
    assert SparseVector.from_dict(vec.to_dict()).dot(vec) == pytest.approx(5.0)
    assert torch is not None


def _st_reference(model, texts):
    return model.encode_document(texts, convert_to_tensor=True).to_dense().numpy()


@pytest.fixture(scope="module")
def splade_reference(splade, small_docs):
    """sentence-transformers' document vectors for 300 real passages and a few edge cases."""
    texts = [d.full_text for d in small_docs] + ["", "a", "word " * 700]
    return texts, _st_reference(splade.model, texts)


@pytest.mark.parametrize("screen", [True, False], ids=["bf16-screen", "fp32"])
def test_each_fast_path_gives_sentence_transformers_vectors(splade, splade_reference, screen):
    """Both fast head variants, on 300 passages: the same active dimensions, values within float rounding.

    Where the CPU has no native bfloat16 its products are emulated (minutes for 300 passages on 2 cores, and the
    product never picks the screen there: ``fast_bf16_cpu``), so the screen is checked on the first 8 passages,
    the empty text and a one-letter one (the 700-word text would pad every row of its batch to 512 tokens)."""
    from hybrid_search.encoders.fast_splade import FastSpladeForward, fast_bf16_cpu

    texts, reference = splade_reference
    assert len(texts) >= 300
    if screen and not fast_bf16_cpu():
        keep = [*range(8), len(texts) - 3, len(texts) - 2]
        texts, reference = [texts[i] for i in keep], reference[keep]
    fast = FastSpladeForward.for_model(splade.model, screen=screen)
    assert fast is not None and fast.screen is screen
    splade.model.eval()
    dense = fast(texts, 32).numpy()
    np.testing.assert_array_equal(dense > 0, reference > 0)
    assert np.abs(dense - reference).max() <= 1e-5
    # Threads only split the work (other batches pad differently, hence float rounding).
    np.testing.assert_allclose(fast(texts[:20], 8, threads=1).numpy(), dense[:20], atol=1e-5)


def test_bf16_screen_bound_holds_with_no_slack(splade, splade_reference):
    """The screen is exact because its margin bounds the bfloat16 error: check the bound itself, per entry,
    on real hidden states (the error never exceeds 3u·‖h‖‖w‖, the margin is 4u)."""
    from hybrid_search.encoders.fast_splade import BF16_UNIT_ROUNDOFF, FastSpladeForward

    fast = FastSpladeForward.for_model(splade.model, screen=True)
    splade.model.eval()
    texts, _ = splade_reference
    with torch.inference_mode():
        features = fast.transformer.preprocess(texts[:16])
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = fast.transform(fast.body(**inputs).last_hidden_state)[features["attention_mask"].bool()]
        weight = fast.weights.weight
        exact = hidden @ weight.t()
        approx = (hidden.bfloat16() @ weight.t().bfloat16()).float()
        bound = 3 * BF16_UNIT_ROUNDOFF * torch.outer(hidden.norm(dim=1), weight.norm(dim=1))
    assert ((approx - exact).abs() <= bound).all()


@pytest.mark.parametrize("arch", ["splade", "inference-free"])
def test_fast_document_path_equals_sentence_transformers(splade, demo_docs, arch):
    """The default (fast) document encoder gives sentence-transformers' vectors, to float rounding."""
    model = splade.model if arch == "splade" else build_inference_free("splade-tiny", ["a corpus", "of two"])
    texts = [d.full_text for d in demo_docs[:40]] + ["", "a", "word " * 700]
    fast = SparseEncoder(model, arch)
    assert fast._fast_documents is not None
    reference = _st_reference(model, texts)
    for vec, row in zip(fast.encode_document(texts), reference):
        np.testing.assert_array_equal(vec.indices, np.flatnonzero(row))
        np.testing.assert_allclose(vec.values, row[vec.indices], atol=1e-5)
    slow = SparseEncoder(model, arch, fast=False, max_active_dims=7)
    capped = SparseEncoder(model, arch, max_active_dims=7)
    for a, b in zip(slow.encode_document(texts[:10]), capped.encode_document(texts[:10])):
        np.testing.assert_array_equal(a.indices, b.indices)


def test_fast_path_follows_weight_updates(splade):
    """Fine-tuning changes weights in place; the fast path must not keep serving the old ones."""
    import copy

    model = copy.deepcopy(splade.model)
    enc = SparseEncoder(model, "copy")
    before = enc.encode_document(TEXTS[:1])[0]
    decoder = model[0].auto_model.get_output_embeddings()
    with torch.no_grad():
        decoder.weight.mul_(1.5)
    after = enc.encode_document(TEXTS[:1])[0]
    reference = _st_reference(model, TEXTS[:1])[0]
    np.testing.assert_allclose(after.values, reference[after.indices], atol=1e-5)
    assert not np.allclose(before.values, after.values[: before.nnz]) or before.nnz != after.nnz


def test_inference_free_query_lookup_gives_sentence_transformers_vectors(queries):
    """The table-lookup query path returns sentence-transformers' inference-free query vectors exactly,
    follows weight updates, and leaves capped queries to sentence-transformers."""
    model = build_inference_free("splade-tiny", ["tides follow the moon", "the moon is a satellite"])
    enc = SparseEncoder(model, "if")
    assert enc._fast_queries is not None
    texts = list(queries.values())[:200] + ["", "the the the moon", "word " * 900, "naïve café ☕ 東京"]
    reference = model.encode_query(texts, convert_to_tensor=True).to_dense().numpy()
    for vec, row in zip(enc.encode_query(texts), reference):
        np.testing.assert_array_equal(vec.indices, np.flatnonzero(row))
        np.testing.assert_array_equal(vec.values, row[vec.indices])
    static = model[0].sub_modules["query"][0]
    with torch.no_grad():
        static.weight.mul_(2.0)
    doubled = enc.encode_query(texts[:1])[0]
    np.testing.assert_allclose(doubled.values, 2 * reference[0][doubled.indices], rtol=1e-6)
    capped = SparseEncoder(model, "if", max_active_dims=2).encode_query(["tides follow the moon every day"])[0]
    assert capped.nnz == 2


def test_splade_query_paths_give_sentence_transformers_vectors(splade, queries, small_docs):
    """One query at a time, SPLADE runs on its verified ONNX export (the default) or on the exact PyTorch fast
    pass; both give sentence-transformers' vectors, on 300 texts (DL19-style queries and passages)."""
    from hybrid_search.encoders import SparseEncoder

    assert splade.query_backend == "onnx"
    torch_path = SparseEncoder(splade.model, "splade-tiny", onnx_queries=False)
    assert torch_path.query_backend == "torch"
    texts = list(queries.values()) + [d.full_text for d in small_docs]
    texts = texts[:300]
    assert len(texts) == 300
    reference = splade.model.encode_query(texts, convert_to_tensor=True).to_dense().numpy()
    for encoder in (splade, torch_path):
        for text, row in zip(texts, reference):
            vec = encoder.encode_query([text])[0]
            np.testing.assert_array_equal(vec.indices, np.flatnonzero(row))
            np.testing.assert_allclose(vec.values, row[vec.indices], atol=1e-4)
    batch = splade.encode_query(texts[:40])  # more than a handful: the threaded PyTorch pass
    np.testing.assert_array_equal(batch[7].indices, np.flatnonzero(reference[7]))
    capped = SparseEncoder(splade.model, "splade-tiny", max_active_dims=5).encode_query([texts[0]])[0]
    assert capped.nnz == 5 and set(capped.indices) <= set(np.flatnonzero(reference[0]))


def test_splade_query_export_failure_stays_on_pytorch(splade, monkeypatch):
    """Where the ONNX export is unavailable (no onnxruntime, a failed check), queries stay on PyTorch."""
    from hybrid_search.encoders import SparseEncoder, onnx_splade
    from hybrid_search.encoders.onnx_dense import OnnxUnavailable

    def refuse(*args, **kwargs):
        raise OnnxUnavailable("the ONNX export differs from PyTorch by 1.00e-02; staying on PyTorch")

    monkeypatch.setattr(onnx_splade.OnnxSpladeQuery, "__init__", refuse)
    encoder = SparseEncoder(splade.model, "splade-tiny")
    assert encoder.query_backend == "torch"
    vec = encoder.encode_query(["capital of france"])[0]
    np.testing.assert_array_equal(vec.indices, splade.encode_query(["capital of france"])[0].indices)


def test_dense_onnx_default_gives_sentence_transformers_vectors(minilm, small_docs):
    """The float32 ONNX export (the default for queries) gives sentence-transformers' vectors on 300
    passages and on queries."""
    from hybrid_search.encoders import DenseEncoder

    texts = [d.full_text for d in small_docs] + ["", "a"]
    assert len(texts) >= 300 and minilm.active_backend == "onnx"
    torch_enc = DenseEncoder(minilm.model, "minilm", backend="torch")
    onnx_enc = DenseEncoder(minilm.model, "minilm", backend="onnx")
    assert torch_enc.active_backend == "torch"
    assert np.abs(onnx_enc.encode_document(texts) - torch_enc.encode_document(texts)).max() <= 1e-5
    queries = ["what is paris", "tides and the moon"]
    assert np.abs(minilm.encode_query(queries) - torch_enc.encode_query(queries)).max() <= 1e-5
    # The verified export is cached by a fingerprint of the weights and reused, not redone.
    from hybrid_search.encoders.onnx_dense import OnnxDenseForward

    first = minilm._onnx_forward()
    stamp = (first.folder / "verified.json").stat().st_mtime_ns
    again = OnnxDenseForward(minilm.model)
    assert again.folder == first.folder and (again.folder / "verified.json").stat().st_mtime_ns == stamp


def test_dense_int8_is_opt_in_close_and_cached_apart(minilm, demo_docs):
    """int8 weights are a request, not a default; the vectors stay close, and the embedding cache never
    serves float32 vectors for them (or the reverse)."""
    from hybrid_search.encoders import DenseEncoder
    from pipelines.embedding_cache import cache_key, encoder_fingerprint

    int8 = DenseEncoder(minilm.model, "minilm", backend="onnx-int8")
    texts = [d.full_text for d in demo_docs[:64]]
    cosines = (int8.encode_document(texts) * minilm.encode_document(texts)).sum(axis=1)
    assert cosines.min() > 0.97 and int8.vector_precision == "int8-weights"
    assert cache_key(encoder_fingerprint("dense", int8)) != cache_key(encoder_fingerprint("dense", minilm))
    assert cache_key(encoder_fingerprint("dense", minilm)) == cache_key(
        encoder_fingerprint("dense", DenseEncoder(minilm.model, "minilm", backend="torch"))
    )
    with pytest.raises(ValueError, match="unknown dense backend"):
        DenseEncoder(minilm.model, "minilm", backend="fp8")


def test_dense_auto_falls_back_to_torch_where_onnx_cannot_serve(minilm):
    """A layout the ONNX path does not cover stays on PyTorch under auto, and is refused under onnx."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    from hybrid_search.encoders import DenseEncoder
    from hybrid_search.encoders.onnx_dense import OnnxUnavailable

    transformer = minilm.model[0]
    model = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode="weightedmean")], device="cpu")
    auto = DenseEncoder(model, "weighted")
    assert auto.active_backend == "torch" and auto.encode_query(["paris"]).shape == (1, 384)
    with pytest.raises(OnnxUnavailable, match="pooling"):
        DenseEncoder(model, "weighted", backend="onnx").encode_query(["paris"])
