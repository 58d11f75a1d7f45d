""" "Why not this document?" (hybrid_search.why_not and ``hybrid-search explain --doc``) on the shipped demo
corpus: a document in the top k, one beyond the prefetch depth, and an id the index does not hold."""

from __future__ import annotations

import json

import pytest

from hybrid_search.retrieval import HybridSearcher
from hybrid_search.tuning import FusionSetting
from hybrid_search.why_not import DocumentNotFoundError, why_not
from pipelines.cli import DATA_DIR, main

QUERY = "what is the mercury planet made of"


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory, splade, minilm) -> str:
    from pipelines.indexing import index_corpus

    location = str(tmp_path_factory.mktemp("why-not") / "index")
    index_corpus(str(DATA_DIR / "demo_corpus.jsonl"), location, sparse=splade, dense=minilm, exact=True, progress=False)
    return location


@pytest.fixture
def searcher(demo_index, splade, minilm):
    # Opened per test: Qdrant Edge holds a folder's write-ahead log, and the CLI test opens it itself.
    from indexers import open_index

    searcher = HybridSearcher(open_index(demo_index, exact=True), sparse=splade, dense=minilm)
    yield searcher
    searcher.index.close()


def test_a_document_in_the_top_k_matches_what_search_returns(searcher):
    result = searcher.search(QUERY, k=5, engine_fusion=False)
    hit = result.hits[1]
    report = why_not(searcher, QUERY, hit.id, FusionSetting(("sparse", "dense")), k=5)
    assert report.in_top_k and report.fused_rank == 2
    assert report.fused_score == pytest.approx(hit.fused_score, abs=1e-9)
    assert {c: s.rank for c, s in report.channels.items() if c in hit.channel_ranks} == hit.channel_ranks
    assert report.kth_score == pytest.approx(result.hits[4].fused_score, abs=1e-9)
    # The token rows add up to its sparse score, and what the document lacks is not among them.
    assert sum(r.contribution for r in report.matched_tokens) == pytest.approx(
        report.channels["sparse"].score, rel=1e-5
    )
    assert not {t for t, _ in report.missing_tokens} & {r.token for r in report.matched_tokens}


def test_a_document_beyond_the_prefetch_is_ranked_exactly_and_told_what_it_needed(searcher, splade):
    qsparse = splade.encode_query([QUERY])[0]
    full = searcher.index.search_sparse(qsparse, 80)
    doc = full[19]  # 20th in sparse: beyond a prefetch of 5
    setting = FusionSetting(("sparse", "dense"), "rrf", prefetch_k=5)
    report = why_not(searcher, QUERY, doc.id, setting, k=3)
    sparse = report.channels["sparse"]
    assert sparse.rank == 20 and sparse.returned and not sparse.in_prefetch
    assert sparse.score == pytest.approx(doc.score, rel=1e-6)
    dense_full = searcher.index.search_dense(searcher.dense.encode_query([QUERY])[0], 80)
    assert report.channels["dense"].rank == [h.id for h in dense_full].index(doc.id) + 1
    assert not report.in_top_k and report.fused_rank is None and report.fused_score is None
    # RRF with every channel searched down to it: the sum of 1 / (60 + its exact rank).
    expected = sum(1 / (60 + report.channels[c].rank) for c in ("sparse", "dense"))
    assert report.fused_score_if_prefetched == pytest.approx(expected, rel=1e-12)
    assert report.kth_score is not None and report.fused_score_if_prefetched < report.kth_score
    assert report.enters_at_weight == {"sparse": None, "dense": None}  # no candidate: no weight helps
    depth = report.enters_at_prefetch_k
    assert depth is None or depth > 5


def test_the_weight_that_would_lift_it_into_the_top_k_is_found(searcher):
    hits = searcher.search(QUERY, k=20, engine_fusion=False).hits
    # A document out of the top k that one channel ranks within it: enough weight on that channel lifts it.
    k, hit, channel = next(
        (k, h, c) for k in (2, 3, 4, 5) for h in hits[k:] for c, r in h.channel_ranks.items() if r <= k
    )
    report = why_not(searcher, QUERY, hit.id, FusionSetting(("sparse", "dense")), k=k)
    assert not report.in_top_k and report.fused_rank == hit.rank
    weight = report.enters_at_weight[channel]
    assert weight is not None and weight > 1
    lifted = searcher.search(QUERY, k=k, engine_fusion=False, weights={channel: weight})
    assert hit.id in [h.id for h in lifted.hits]


def test_explain_cli_prints_json_and_refuses_an_unknown_id(demo_index, capsys):
    assert main(["explain", QUERY, "--doc", "demo-045", "--index", demo_index, "--json", "-k", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["doc_id"] == "demo-045" and set(report["channels"]) == {"sparse", "dense", "bm25"}
    assert report["setting"]["method"] == "rrf" and report["matched_words"]
    assert main(["explain", QUERY, "--doc", "no-such-doc", "--index", demo_index]) == 2
    assert "no document with id 'no-such-doc'" in capsys.readouterr().err
    with pytest.raises(DocumentNotFoundError):
        from indexers import open_index

        index = open_index(demo_index)
        try:
            why_not(HybridSearcher(index), QUERY, "missing", FusionSetting(("bm25",), None))
        finally:
            index.close()


@pytest.fixture(scope="module")
def sparse_only_index(tmp_path_factory, splade) -> str:
    from pipelines.indexing import index_corpus

    location = str(tmp_path_factory.mktemp("why-not-sparse") / "index")
    index_corpus(str(DATA_DIR / "demo_corpus.jsonl"), location, sparse=splade, dense=None, progress=False)
    return location


def test_explain_reads_its_fusion_as_search_does_defaults_then_the_tuned_fusion_then_flags(sparse_only_index, capsys):
    from hybrid_search.tuning import fusion_record
    from indexers import open_index

    def explain(*flags):
        assert main(["explain", QUERY, "--doc", "demo-045", "--index", sparse_only_index, "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    # No tuned fusion, no dense model: what search fuses there (sparse + BM25), not a missing dense channel.
    report = explain()
    assert report["setting"]["channels"] == ["sparse", "bm25"] and report["fusion_source"] == "default"
    tuned = FusionSetting(("sparse", "bm25"), "zscore", weights=(1.0, 0.5), prefetch_k=40)
    index = open_index(sparse_only_index)
    try:
        index.meta.fusion = fusion_record(tuned, dataset="/d/demo", split="train", cv_ndcg10=0.7, cv_std=0.01)
        index.save_meta()
    finally:
        index.close()
    report = explain()
    assert report["setting"] == tuned.to_record() and report["fusion_source"].startswith("index (tuned on demo train")
    report = explain("--prefetch-k", "7", "--channels", "bm25")
    assert report["setting"]["channels"] == ["bm25"] and report["setting"]["prefetch_k"] == 7
    assert report["fusion_source"] == "flags"
    assert main(["explain", QUERY, "--doc", "demo-045", "--index", sparse_only_index, "--channels", "dense"]) == 2
    assert "dense search needs a dense model" in capsys.readouterr().err
