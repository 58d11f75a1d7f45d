"""IR metrics over runs and qrels, computed by ``ir_measures``, and a paired significance test.

Nothing is hand-rolled: ``ir_measures`` (which delegates to ``pytrec_eval``) computes every measure.
Aggregates are means over the *judged* queries (queries with at least one qrel): a judged query that is
missing from the run, or has an empty ranking, scores 0 on every measure. That is what ``ir_measures`` does
by itself (the equivalent of ``trec_eval -c``), and this module relies on it and fills the per-query tables
the same way. Queries in the run without qrels are ignored. A judged query whose judgements are all below
the relevance threshold also counts, with 0, as in TREC DL reporting.

Example:
    >>> evaluate({"q1": {"d1": 1.0}}, {"q1": {"d1": 1}})["nDCG@10"]
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping

import ir_measures
import numpy as np

__all__ = ["METRIC_NAMES", "evaluate", "evaluate_per_query", "measures", "paired_significance"]

#: Names of the metrics returned by :func:`evaluate`, in table order.
METRIC_NAMES: tuple[str, ...] = ("nDCG@10", "MRR@10", "MAP", "R@100")


def measures(rel_threshold: int = 1) -> dict[str, ir_measures.Measure]:
    """The reported measures as ``ir_measures`` objects.

    nDCG uses the graded judgements as gains and ignores the threshold; the binary
    measures count a document as relevant when its grade is ``>= rel_threshold``
    (TREC DL passage uses 2).

    Args:
        rel_threshold: Minimum grade counted as relevant by MRR, MAP and recall.

    Returns:
        ``{"nDCG@10": nDCG@10, "MRR@10": RR(rel=t)@10, "MAP": AP(rel=t), "R@100": R(rel=t)@100}``.
    """
    if rel_threshold < 1:
        raise ValueError("rel_threshold must be >= 1")
    t = int(rel_threshold)
    return {
        "nDCG@10": ir_measures.nDCG @ 10,
        "MRR@10": ir_measures.RR(rel=t) @ 10,
        "MAP": ir_measures.AP(rel=t),
        "R@100": ir_measures.R(rel=t) @ 100,
    }


def _prepare(
    run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    if not judged:
        raise ValueError("qrels contain no judged query")
    clean_run = {
        str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in run.items() if str(q) in judged and docs
    }
    return clean_run, judged


def evaluate_per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    rel_threshold: int = 1,
) -> dict[str, dict[str, float]]:
    """Per-query values of the reported measures.

    Every judged query gets a value for every measure; judged queries that are absent
    from the run (or have an empty ranking) get 0.0. Ranks come from the scores (higher is
    better; ties broken by ``pytrec_eval``'s document-id order).

    Args:
        run: ``{query_id: {doc_id: score}}``.
        qrels: ``{query_id: {doc_id: grade}}``.
        rel_threshold: See :func:`measures`.

    Returns:
        ``{metric_name: {query_id: value}}`` with values in ``[0, 1]``.
    """
    clean_run, judged = _prepare(run, qrels)
    ms = measures(rel_threshold)
    by_measure = {m: n for n, m in ms.items()}
    out: dict[str, dict[str, float]] = {n: dict.fromkeys(judged, 0.0) for n in ms}
    for metric in ir_measures.iter_calc(list(ms.values()), judged, clean_run):
        out[by_measure[metric.measure]][metric.query_id] = float(metric.value)
    return out


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    rel_threshold: int = 1,
) -> dict[str, float]:
    """Mean of the reported measures over the judged queries.

    Uses ``ir_measures.calc_aggregate``, which averages over every query in the qrels and
    scores judged queries missing from the run as 0 (``trec_eval -c``); queries in the
    run but not in the qrels are ignored.

    Args:
        run: ``{query_id: {doc_id: score}}``.
        qrels: ``{query_id: {doc_id: grade}}``.
        rel_threshold: See :func:`measures`.

    Returns:
        ``{"nDCG@10": ..., "MRR@10": ..., "MAP": ..., "R@100": ...}``, each in ``[0, 1]``.
    """
    clean_run, judged = _prepare(run, qrels)
    ms = measures(rel_threshold)
    agg = ir_measures.calc_aggregate(list(ms.values()), judged, clean_run)
    return {n: float(agg.get(m, 0.0)) for n, m in ms.items()}


def paired_significance(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    n_resamples: int = 10000,
    seed: int = 0,
) -> float:
    """Two-sided paired randomisation test on per-query scores.

    Uses ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` (the labels
    of each query's pair are swapped at random) and the mean difference as statistic.
    When ``2**n <= n_resamples`` scipy enumerates all sign assignments exactly.

    Args:
        a: Per-query values of system A (e.g. one entry of :func:`evaluate_per_query`).
        b: Per-query values of system B.
        n_resamples: Monte-Carlo resamples.
        seed: Seed of the resampling generator.

    Returns:
        The p-value over the query ids the two have in common.

    Raises:
        ValueError: No query id in common.
    """
    from scipy.stats import permutation_test

    common = sorted(set(a).intersection(b))
    if not common:
        raise ValueError("paired_significance: the two runs have no query id in common")
    x = np.asarray([float(a[q]) for q in common], dtype=np.float64)
    y = np.asarray([float(b[q]) for q in common], dtype=np.float64)
    if np.array_equal(x, y):
        return 1.0

    def mean_diff(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(u - v, axis=axis)

    result = permutation_test(
        (x, y),
        mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))
