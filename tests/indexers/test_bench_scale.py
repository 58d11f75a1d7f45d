"""``benchmarks/bench_scale.py``: the ``clustered`` generator (deterministic per document, its marginal token
frequencies near the ``fitted`` law, topical co-occurrence that ``fitted`` lacks) and the memory guard."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.paths import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from bench_scale import VOCAB, Clustered, Fitted  # noqa: E402

N = 2000


@pytest.fixture(scope="module")
def clustered():
    data = Clustered()
    return data, data.batch(0, N)


def _df(vectors) -> np.ndarray:
    df = np.zeros(VOCAB)
    for v in vectors:
        df[v.indices] += 1
    return df / len(vectors)


def test_document_i_is_the_same_whatever_the_batch(clustered):
    data, (docs, sparse, dense) = clustered
    again_docs, again_sparse, again_dense = Clustered().batch(1500, 7)
    assert [d.id for d in again_docs] == [d.id for d in docs[1500:1507]]
    for a, b in zip(again_sparse, sparse[1500:1507]):
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values)
    assert np.array_equal(again_dense, dense[1500:1507])
    assert Clustered().queries(3)[2][0].indices.tolist() == data.queries(3)[2][0].indices.tolist()


def test_marginal_document_frequency_follows_the_fitted_law(clustered):
    _, (_, sparse, _) = clustered
    fitted = _df(Fitted().batch(0, N)[1])
    df = _df(sparse)
    head = np.argsort(-fitted)[:200]
    assert np.corrcoef(fitted, df)[0, 1] > 0.95
    assert abs(df[head].mean() / fitted[head].mean() - 1) < 0.25
    assert abs(np.mean([v.nnz for v in sparse]) - np.mean([v.nnz for v in Fitted().batch(0, N)[1]])) < 25


def test_documents_of_one_cluster_share_more_tokens_than_documents_of_different_clusters(clustered):
    data, (_, sparse, dense) = clustered
    labels = np.array([data.cluster_of(i) for i in range(N)])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, N, 20000), rng.integers(0, N, 20000)
    keep = a != b
    a, b = a[keep], b[keep]
    jaccard = np.array(
        [
            len(np.intersect1d(sparse[i].indices, sparse[j].indices))
            / len(np.union1d(sparse[i].indices, sparse[j].indices))
            for i, j in zip(a, b)
        ]
    )
    same = labels[a] == labels[b]
    assert same.sum() > 50
    assert jaccard[same].mean() > 2 * jaccard[~same].mean()
    # The dense half follows the cluster: documents near one dense centre come from one cluster.
    near = np.einsum("ij,ij->i", dense[a], dense[b]) > 0.2  # one centre: ~0.29; two: ~0 ± 0.05
    assert near.sum() > 5 and same[near].all()
    fitted = Fitted().batch(0, N)[1]
    fitted_jaccard = np.mean(
        [
            len(np.intersect1d(fitted[i].indices, fitted[j].indices))
            / len(np.union1d(fitted[i].indices, fitted[j].indices))
            for i, j in zip(a[:2000], b[:2000])
        ]
    )
    assert jaccard[same].mean() > 2 * fitted_jaccard


def test_the_memory_guard_stops_a_run_inside_a_call_that_holds_the_gil(tmp_path):
    scratch = tmp_path / "index"
    scratch.mkdir()
    script = (
        f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_scale as b; "
        f"from pathlib import Path\n"
        f"with b.memory_guard(20000, 0, None): pass\n"
        f"print('within limits', flush=True)\n"
        f"with b.memory_guard(1, 0, Path({str(scratch)!r})): sum(range(10**10))\n"
        f"print('not stopped')"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.stdout == "within limits\n"
    assert run.returncode == -9 and "memory guard: stopped the run: anonymous" in run.stderr
    assert not scratch.exists()
