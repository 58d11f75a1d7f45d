"""hybrid_search.tuning: the vectorised re-fusion agrees with hybrid_search.fusion, the candidate grid,
cross-validation with the one-standard-error rule, and the record an index keeps."""

from __future__ import annotations

import random

import numpy as np
import pytest

import hybrid_search.tuning as tuning
from hybrid_search.fusion import fuse, zscore
from hybrid_search.index import IndexMeta
from hybrid_search.options import SearchOptions
from hybrid_search.tuning import (
    DEFAULT_RRF,
    CandidateTable,
    FusionSetting,
    NdcgScorer,
    RankingArrays,
    candidate_space,
    choose,
    cv_folds,
    fused_top,
    fused_top_columns,
    fusion_defaults,
    fusion_record,
    nested_cv,
    score_settings,
    verify_with_ir_measures,
    weight_vectors,
)
from hybrid_search.types import ScoredId


def _trec_order(ranking):
    """trec_eval's order: score descending, ties by id descending."""
    return [h.id for h in sorted(ranking, key=lambda h: (-h.score, [-ord(ch) for ch in h.id]))]


@pytest.fixture(scope="module")
def random_rankings():
    rng = random.Random(7)
    docs = [f"d{i:03d}" for i in range(120)]
    qids = [f"q{i}" for i in range(25)]
    rankings = {c: {} for c in ("sparse", "dense", "bm25")}
    for q in qids:
        for by_query in rankings.values():
            chosen = rng.sample(docs, rng.choice([1, 30, 80]))
            # Scores rounded to one decimal: many exact ties, the hard case for tie-breaking.
            scores = sorted((round(rng.gauss(5, 2), 1) for _ in chosen), reverse=True)
            by_query[q] = [ScoredId(d, s) for d, s in zip(chosen, scores)]
    return qids, rankings


def test_vectorised_fusion_agrees_with_the_fusion_module_for_every_method(random_rankings):
    qids, rankings = random_rankings
    table = CandidateTable.build(rankings, qids)
    settings = [s for s in candidate_space(list(rankings), prefetch=(5, 50), rrf_ks=(1, 60)) if s.fused]
    assert {s.method for s in settings} == {"rrf", "dbsf", "convex", "zscore"}
    for setting in settings[::3]:
        tops = fused_top(table, setting)
        for row, q in enumerate(qids):
            cut = {c: rankings[c][q][: setting.prefetch_k] for c in setting.channels}
            expected = _trec_order(fuse(setting.method, cut, k=setting.rrf_k, weights=setting.weight_map))[:10]
            assert tops[row] == expected, (setting, q)


def test_a_channel_alone_is_its_own_top_ten(random_rankings):
    qids, rankings = random_rankings
    tops = fused_top(CandidateTable.build(rankings, qids), FusionSetting(("dense",), None))
    assert tops == [_trec_order(rankings["dense"][q][:10]) for q in qids]


def test_zscore_gives_a_missing_document_the_channels_lowest_score():
    a = [ScoredId("x", 3.0), ScoredId("y", 1.0)]
    b = [ScoredId("z", 2.0), ScoredId("y", 1.0)]
    fused = {h.id: h.score for h in zscore({"a": a, "b": b})}
    z = 1 / np.sqrt(2)  # (3 - 2) / std([3, 1]) with the sample standard deviation
    assert fused["y"] == pytest.approx(-z)
    assert fused["x"] == pytest.approx(0.5 * z - 0.5 * z)
    assert fused["x"] == pytest.approx(fused["z"])


def test_the_grid_keeps_weights_once_up_to_scale_and_puts_single_channels_first():
    assert weight_vectors(2) == [None, (0.25, 1.0), (0.5, 1.0), (1.0, 0.25), (1.0, 0.5)]
    three = weight_vectors(3)
    assert len(three) == len(set(three)) and (1.0, 1.0, 1.0) not in three
    space = candidate_space(["sparse", "dense"])
    assert [s.channels for s in space[:2]] == [("sparse",), ("dense",)]
    assert DEFAULT_RRF in space and len(space) == len(set(space))
    assert all(s.channels == ("sparse", "dense") for s in space[2:])
    assert len(candidate_space(["sparse", "dense", "bm25"])) > 500


def test_the_simplest_setting_within_one_standard_error_wins():
    settings = [
        FusionSetting(("sparse",), None),
        FusionSetting(("dense",), None),
        DEFAULT_RRF,
        FusionSetting(("sparse", "dense"), "zscore", weights=(1.0, 0.5)),
    ]
    rrf = np.array([0.60, 0.62, 0.58, 0.61, 0.59])
    wobble = np.array([0.010, -0.005, 0.008, -0.004, 0.003])  # mean +0.0024, standard error 0.0030
    # The weighted z-score is best on average but within noise of default RRF, which is simpler; both beat
    # the channels by far more than the noise.
    scores = np.stack([rrf - 0.05 + wobble / 2, rrf - 0.06 - wobble, rrf, rrf + wobble])
    decision = choose(settings, scores)
    assert decision.best == 3 and decision.within[2] and not decision.within[0]
    assert settings[decision.chosen] == DEFAULT_RRF and decision.best_single == 0
    # No fusion beyond noise: the best channel alone is recommended, though a fusion has the top mean.
    scores = np.stack([rrf, rrf - 0.05, rrf - wobble / 3, rrf + wobble])
    decision = choose(settings, scores)
    assert decision.best == 3 and settings[decision.chosen] == FusionSetting(("sparse",), None)
    held = nested_cv(settings, scores)
    assert held.shape == (5,) and np.all((held > 0.5) & (held < 0.7))


def test_the_grid_is_scikit_learns_parameter_grid_in_its_order():
    """The grid is enumerated without scikit-learn (its import costs a warm tune seconds), in the order its
    ParameterGrid gives, which the choice's last tie-break follows."""
    from itertools import combinations

    from sklearn.model_selection import ParameterGrid

    have = ["sparse", "dense", "bm25"]
    expected = [FusionSetting((c,), None) for c in have]
    for n in (2, 3):
        for combo in combinations(have, n):
            common = {"weights": weight_vectors(n), "prefetch_k": [25, 50, 100, 200]}
            grid = [{"method": ["rrf"], "rrf_k": [10, 20, 40, 60, 100], **common}]
            grid += [{"method": ["dbsf", "convex", "zscore"], "rrf_k": [60], **common}]
            expected += [FusionSetting(combo, **params) for params in ParameterGrid(grid)]
    assert candidate_space(have) == expected


@pytest.mark.parametrize(("n", "k", "seed"), [(23, 5, 3), (809, 5, 0), (10, 10, 1), (7, 2, 42)])
def test_folds_are_scikit_learns_shuffled_kfold(n, k, seed):
    from sklearn.model_selection import KFold

    expected = [test for _, test in KFold(n_splits=k, shuffle=True, random_state=seed).split(np.arange(n))]
    assert [f.tolist() for f in cv_folds(n, k, seed)] == [f.tolist() for f in expected]


def test_ranking_arrays_give_back_the_rankings_and_restrict_to_rows(random_rankings):
    qids, rankings = random_rankings
    arrays = RankingArrays.from_rankings(rankings, qids)
    back = arrays.as_rankings()
    assert list(back) == list(rankings)
    assert all(back[c][q] == rankings[c][q] for c in rankings for q in qids)
    part = arrays.rows(qids[5:1:-1])
    assert part.qids == qids[5:1:-1] and part.as_rankings()["bm25"][qids[3]] == rankings["bm25"][qids[3]]
    assert CandidateTable.from_arrays(part).ids == CandidateTable.build(rankings, qids[5:1:-1]).ids


def test_the_narrowed_top_ten_is_the_whole_tables(random_rankings, monkeypatch):
    """A fusion's top ten is looked for among the best-ranked documents first and proved complete by a bound,
    else redone over all candidates: every setting gives what the whole table gives, whatever the level."""
    qids, rankings = random_rankings
    table = CandidateTable.build(rankings, qids, levels=(5, 10, 25, 50, 100))
    settings = [s for s in candidate_space(list(rankings), prefetch=(50, 100), rrf_ks=(1, 60)) if s.fused]
    monkeypatch.setattr(tuning, "NARROW_LEVEL", 10**9)  # never narrowed
    whole = [fused_top_columns(table, s) for s in settings]
    for level in (10, 25):
        monkeypatch.setattr(tuning, "NARROW_LEVEL", level)
        for setting, (top, real) in zip(settings, whole):
            narrowed_top, narrowed_real = fused_top_columns(table, setting, cache={})
            assert np.array_equal(np.where(real, top, -1), np.where(narrowed_real, narrowed_top, -1)), setting
    # The grid ranks the settings that differ only in their weights together: the same tops again.
    group = [
        s
        for s in settings
        if (s.channels, s.method, s.rrf_k, s.prefetch_k) == (("sparse", "dense", "bm25"), "rrf", 1, 100)
    ]
    tops, reals = tuning._weights_top_columns(table, group)
    assert len(group) == len(weight_vectors(3)) and tops.shape == (len(group), len(qids), 10)
    for setting, top, real in zip(group, tops, reals):
        expected_top, expected_real = whole[settings.index(setting)]
        assert np.array_equal(np.where(expected_real, expected_top, -1), np.where(real, top, -1)), setting


def test_folds_partition_the_queries_and_refuse_too_few():
    folds = cv_folds(23, 5, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))
    with pytest.raises(ValueError, match="at least 5"):
        cv_folds(3, 5)


def test_ndcg_comes_from_ir_measures_and_is_memoised():
    import ir_measures

    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"c": 1}}
    scorer = NdcgScorer(qrels)
    values = scorer(["q1", "q2", "q1"], [["b", "x", "a"], [], ["b", "x", "a"]])
    run = {"q1": {"b": 3.0, "x": 2.0, "a": 1.0}}
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], {"q1": qrels["q1"]}, run)[ir_measures.nDCG @ 10]
    assert values[0] == pytest.approx(expected) and values[2] == values[0] and values[1] == 0.0
    assert len(scorer._memo) == 2


def test_the_record_round_trips_through_the_index_metadata_and_sets_search_defaults():
    setting = FusionSetting(("sparse", "bm25"), "convex", weights=(1.0, 0.5), prefetch_k=50)
    record = fusion_record(setting, dataset="scifact", split="train", cv_ndcg10=0.71, cv_std=0.02)
    meta = IndexMeta.from_dict({**IndexMeta(engine="qdrant-edge").to_dict(), "fusion": record})
    assert meta.fusion["learned"]["split"] == "train" and meta.fusion["learned"]["date"].endswith("Z")
    assert fusion_defaults(meta) == {
        "mode": "hybrid",
        "channels": ["sparse", "bm25"],
        "fusion": "convex",
        "rrf_k": 60.0,
        "weights": {"sparse": 1.0, "bm25": 0.5},
        "prefetch_k": 50,
    }
    assert IndexMeta.from_dict({"engine": "x"}).fusion is None and fusion_defaults(IndexMeta(engine="x")) == {}
    # Read through SearchOptions.for_index (the one reader), flags override the learned fusion one by one.
    available = ["sparse", "dense", "bm25"]
    assert FusionSetting.from_options(SearchOptions.for_index(meta), available) == setting
    assert FusionSetting.from_options(SearchOptions.for_index(meta, prefetch_k=20), available) == FusionSetting(
        ("sparse", "bm25"), "convex", weights=(1.0, 0.5), prefetch_k=20
    )
    other = FusionSetting.from_options(SearchOptions.for_index(meta, channels=["dense", "sparse"]), available)
    assert other.channels == ("dense", "sparse") and other.weights is None and other.method == "convex"
    # No tuned fusion: the defaults search has, on any index (BM25 joins a single-model index).
    plain = IndexMeta(engine="x")
    assert FusionSetting.from_options(SearchOptions.for_index(plain), available) == DEFAULT_RRF
    assert FusionSetting.from_options(SearchOptions.for_index(plain), ["sparse", "bm25"]).channels == (
        "sparse",
        "bm25",
    )
    alone = fusion_record(FusionSetting(("dense",), None), dataset="d", split="train", cv_ndcg10=0.6, cv_std=0.01)
    assert fusion_defaults(IndexMeta(engine="x", fusion=alone))["mode"] == "dense"


def test_the_numpy_ndcg_kernel_is_trec_evals_ndcg_at_10_on_graded_judgements(random_rankings):
    import ir_measures

    qids, rankings = random_rankings
    rng = random.Random(11)
    docs = sorted({h.id for by_q in rankings.values() for r in by_q.values() for h in r})
    # Grades 0..3, one negative, unjudged documents, and a query with no relevant document at all.
    qrels = {q: {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(docs, 15)} for q in qids}
    qrels[qids[0]][docs[0]] = -1
    qrels[qids[1]] = {docs[1]: 0}
    table = CandidateTable.build(rankings, qids)
    settings = candidate_space(list(rankings), prefetch=(5, 50), rrf_ks=(1, 60))[::5]
    values = score_settings(table, settings, qrels)
    for i, setting in enumerate(settings):
        run = {q: {d: float(10 - r) for r, d in enumerate(top)} for q, top in zip(qids, fused_top(table, setting))}
        expected = dict.fromkeys(qids, 0.0)
        for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, {q: r for q, r in run.items() if r}):
            expected[m.query_id] = m.value
        assert np.abs(values[i] - np.array([expected[q] for q in qids])).max() <= 1e-9, setting.label


def test_verification_rescores_with_ir_measures_and_refuses_a_kernel_that_disagrees(random_rankings):
    qids, rankings = random_rankings
    qrels = {q: {h.id: 1 for h in rankings["dense"][q][:3]} for q in qids}
    table = CandidateTable.build(rankings, qids)
    settings = candidate_space(list(rankings), prefetch=(5,), rrf_ks=(60,))[:6]
    values = score_settings(table, settings, qrels)
    assert verify_with_ir_measures(table, settings, values.copy(), range(6), NdcgScorer(qrels)) <= 1e-9
    values[2, 0] += 0.01
    with pytest.raises(RuntimeError, match="differs from ir_measures"):
        verify_with_ir_measures(table, settings, values, [2], NdcgScorer(qrels))
