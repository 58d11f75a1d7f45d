from __future__ import annotations

import pytest

from hybrid_search.fusion import same_order
from hybrid_search.index import ModelMismatchError, UnknownFilterFieldError
from hybrid_search.rerank import Reranker
from hybrid_search.retrieval import EmptyQueryError, HybridSearcher


@pytest.fixture
def searcher(make_index, splade, minilm):
    return HybridSearcher(make_index("qdrant-edge"), sparse=splade, dense=minilm)


def test_hybrid_hits_carry_ranks_scores_explanations_and_timings(searcher, demo_queries):
    result = searcher.search(next(iter(demo_queries.values())), k=5)
    assert len(result.hits) == 5
    for i, hit in enumerate(result.hits, start=1):
        assert hit.rank == i and hit.document is not None and hit.fused_score == hit.score
        assert set(hit.channel_ranks) <= {"sparse", "dense"} and hit.channel_ranks
        if "sparse" in hit.channel_ranks:
            assert sum(r.contribution for r in hit.explanation) == pytest.approx(hit.channel_scores["sparse"], abs=1e-4)
    assert {"encode_sparse", "encode_dense", "search_sparse", "search_dense", "fusion", "explain"} <= set(
        result.timings_ms
    )
    assert result.query_tokens and result.query_tokens[0][1] >= result.query_tokens[-1][1]


def test_engine_and_client_fusion_agree(searcher, demo_queries):
    for query in demo_queries.values():
        engine = searcher.search(query, k=10, explain_hits=False)
        client = searcher.search(query, k=10, explain_hits=False, engine_fusion=False)
        assert same_order(engine.hits, client.hits), query


@pytest.mark.parametrize("mode", ["sparse", "dense", "bm25"])
def test_single_channel_modes(searcher, mode):
    result = searcher.search("what is the daily life of thai people", k=3, mode=mode)
    assert len(result.hits) == 3
    assert all(list(h.channel_ranks) == [mode] for h in result.hits)
    assert [h.channel_ranks[mode] for h in result.hits] == [1, 2, 3]


def test_three_channel_fusion_and_weights(searcher):
    result = searcher.search(
        "symptoms of a heart attack",
        k=5,
        channels=["sparse", "dense", "bm25"],
        weights={"sparse": 1.0, "dense": 1.0, "bm25": 0.5},
    )
    assert len(result.hits) == 5 and set(result.channel_rankings) == {"sparse", "dense", "bm25"}
    dbsf = searcher.search("symptoms of a heart attack", k=5, fusion="dbsf")
    assert len(dbsf.hits) == 5


def test_bad_queries_are_clear_errors(searcher):
    for bad in ("", "   \n\t"):
        with pytest.raises(EmptyQueryError, match="empty"):
            searcher.search(bad)
    with pytest.raises(UnknownFilterFieldError, match="unknown filter field"):
        searcher.search("paris", filters={"colour": "red"})
    with pytest.raises(ValueError, match="unknown mode"):
        searcher.search("paris", mode="fuzzy")
    with pytest.raises(ValueError, match="unknown fusion"):
        searcher.search("paris", fusion="borda")


def test_queries_with_other_models_are_refused(make_index, splade, minilm):
    from hybrid_search.encoders import SparseEncoder

    index = make_index("qdrant-edge")
    other = SparseEncoder(splade.model, "my-other-splade")
    with pytest.raises(ModelMismatchError, match="splade-tiny"):
        HybridSearcher(index, sparse=other, dense=minilm)


def _tiny_trained_cross_encoder(splade):
    """A cross-encoder built from SPLADE-tiny's BERT and trained for a few steps on real pairs."""
    import torch
    from sentence_transformers import CrossEncoder

    from hybrid_search.models import resolve

    torch.manual_seed(0)
    model = CrossEncoder(resolve("splade-tiny").path, num_labels=1, device="cpu")
    pairs = [
        ("capital of france", "Paris is the capital and largest city of France.", 1.0),
        ("capital of france", "Bananas are a tropical fruit rich in potassium.", 0.0),
        ("python language", "Python is a programming language that emphasises readability.", 1.0),
        ("python language", "The Amazon is the largest rainforest on Earth.", 0.0),
    ] * 8
    optim = torch.optim.AdamW(model.model.parameters(), lr=5e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.model.train()
    losses = []
    for step in range(30):
        batch = pairs[(step * 8) % len(pairs) :][:8]
        features = model.tokenizer([p[0] for p in batch], [p[1] for p in batch], padding=True, return_tensors="pt")
        logits = model.model(**features).logits.view(-1)
        loss = loss_fn(logits, torch.tensor([p[2] for p in batch]))
        loss.backward(), optim.step(), optim.zero_grad()
        losses.append(loss.item())
    model.model.eval()
    assert losses[-1] < losses[0]
    return Reranker(model, "tiny-ce")


def test_reranker_reorders_the_top_candidates(make_index, splade, minilm):
    reranker = _tiny_trained_cross_encoder(splade)
    scores = reranker.score("capital of france", ["Paris is the capital of France.", "Bananas are yellow."])
    assert scores[0] > scores[1]
    searcher = HybridSearcher(make_index("qdrant-edge"), sparse=splade, dense=minilm, reranker=reranker)
    result = searcher.search("what is the capital of france", k=5, rerank_top_n=20)
    reranked = [h.rerank_score for h in result.hits]
    assert all(s is not None for s in reranked)
    assert reranked == sorted(reranked, reverse=True)
    assert "rerank" in result.timings_ms
    plain = searcher.search("what is the capital of france", k=5, rerank=False)
    assert all(h.rerank_score is None for h in plain.hits)


def test_interpolation_keeps_the_first_stages_ties():
    from hybrid_search.rerank import interpolate

    cross = [0.1, 0.9, 0.5, 0.3, 0.7]
    fused = [0.5, 1 / 61, 1 / 61, 1 / 62, 1 / 62]  # an RRF page: two exact ties
    at_zero = interpolate(cross, 0.0, fused).tolist()
    assert at_zero[1] == at_zero[2] and at_zero[3] == at_zero[4] and at_zero[0] > at_zero[1] > at_zero[3]
    assert interpolate(cross, 0.0).tolist() == sorted(interpolate(cross, 0.0).tolist(), reverse=True)
    half = interpolate(cross, 0.5, fused)
    assert half[1] > half[2]  # off the tie, the cross-encoder decides
    with pytest.raises(ValueError, match="first-stage scores for 2"):
        interpolate(cross, 0.5, fused[:2])


def test_a_reranker_at_weight_zero_is_the_first_stage_ties_included(make_index, splade, minilm, demo_queries):
    """Weight 0 must give the first stage's page: the same documents, scores tied where the fused scores
    tie (so an evaluation orders them as it orders the plain hybrid run), in the same order."""
    reranker = _tiny_trained_cross_encoder(splade)
    reranker.weight = 0.0
    searcher = HybridSearcher(make_index("qdrant-edge"), sparse=splade, dense=minilm, reranker=reranker)
    ties = 0
    for text in list(demo_queries.values())[:6]:
        plain = searcher.search(text, k=10, prefetch_k=10, rerank=False).hits
        reranked = searcher.search(text, k=10, prefetch_k=10, rerank_top_n=10).hits
        assert [h.id for h in reranked] == [h.id for h in plain]
        for a, b in zip(plain, plain[1:]):
            tied = a.score == b.score
            ties += tied
            x, y = (next(h.rerank_score for h in reranked if h.id == i) for i in (a.id, b.id))
            assert (x == y) == tied and x >= y
    assert ties, "no fused tie on these queries: the test would not catch a broken tie"


def test_reranker_hub_id_offline_is_a_clear_error(monkeypatch):
    from hybrid_search.models import ModelNotAvailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="offline"):
        Reranker.load("cross-encoder/ms-marco-MiniLM-L6-v2")


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_weighted_fusion_is_never_dropped_by_the_engine(make_index, splade, minilm, fusion):
    """Qdrant fuses with unit weights only; weighted fusion must still apply the weights."""
    from hybrid_search.fusion import fuse

    index = make_index("qdrant-edge")
    q = "what is the daily life of thai people"
    qs, qd = splade.encode_query([q])[0], minilm.encode_query([q])[0]
    weights = {"sparse": 3.0, "dense": 0.5}
    got = index.search_hybrid(qs, qd, 10, fusion=fusion, weights=weights)
    expected = fuse(
        fusion,
        {"sparse": index.search_sparse(qs, 100), "dense": index.search_dense(qd, 100)},
        weights=weights,
        limit=10,
    )
    assert [h.id for h in got] == [h.id for h in expected]
    assert [h.score for h in got] == pytest.approx([h.score for h in expected])


def test_engine_fused_search_without_channel_ranks_is_the_same_ranking(searcher):
    q = "symptoms of a heart attack"
    full = searcher.search(q, k=10, explain_hits=False)
    lean = searcher.search(q, k=10, explain_hits=False, channel_ranks=False)
    assert [h.id for h in lean.hits] == [h.id for h in full.hits]
    assert lean.channel_rankings == {} and not any(h.channel_ranks for h in lean.hits)
    assert "search_sparse" not in lean.timings_ms and "fusion" in lean.timings_ms
