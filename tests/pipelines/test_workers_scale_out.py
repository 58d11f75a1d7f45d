"""Scaling indexing out: shards of a corpus into one index, and several encoding worker processes.

Real models, real passages, a real engine (Qdrant Edge); shards run one after the other here, as separate
machines would against one server index.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from indexers import open_index
from pipelines.cli import main
from pipelines.indexing import index_corpus
from pipelines.workers import ScaleOptions, Shard, select_shard, shard_of

N_DOCS = 40
QUERIES = [
    "what is the daily life of thai people",
    "causes of left ventricular hypertrophy",
    "how long is life cycle of flea",
]


def write_corpus(path: Path, docs) -> Path:
    with path.open("w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path, demo_docs) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", demo_docs[:N_DOCS])


def stored_ids(location: str) -> list[str]:
    with open_index(location) as index:
        return sorted(p["doc_id"] for p in index._scroll_raw())


def top10(location: str, splade, minilm) -> dict[str, list[tuple[str, float]]]:
    """Sparse and dense top 10 (ids and scores) of a few queries."""
    out = {}
    with open_index(location, exact=True) as index:
        for query in QUERIES:
            sparse = index.search_sparse(splade.encode_query([query])[0], 10)
            dense = index.search_dense(minilm.encode_query([query])[0], 10)
            out[query] = [(h.id, h.score) for h in (*sparse, *dense)]
    return out


def assert_same_hits(a: dict, b: dict) -> None:
    """Same ids in the same order; scores equal to float rounding (a batch's padding moves the last digit)."""
    assert a.keys() == b.keys()
    for query, hits in a.items():
        assert [i for i, _ in hits] == [i for i, _ in b[query]], query
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in b[query]], rtol=1e-5, atol=1e-5)


# --- the shard function ---------------------------------------------------------------------------
def test_shard_of_is_stable_across_runs_and_machines():
    # Fixed values: a change of hash would move documents between shards of an index being filled.
    assert [shard_of(i, 4) for i in ("doc-42", "0", "D1555982", "abc")] == [3, 1, 3, 1]


def test_shards_partition_the_ids_evenly():
    ids = [f"doc-{i}" for i in range(6000)]
    counts = Counter(shard_of(i, 3) for i in ids)
    assert sum(counts.values()) == 6000 and set(counts) == {0, 1, 2}
    assert all(1800 < c < 2200 for c in counts.values())
    parts = [{i for i in ids if Shard(k, 3).holds(i)} for k in range(3)]
    assert set.union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)


def test_shard_parse_and_select(demo_docs):
    assert Shard.parse(" 2/5 ") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    for bad in ("5/5", "-1/2", "1", "a/b", "1/0", ""):
        with pytest.raises(ValueError, match="use I/N"):
            Shard.parse(bad)
    docs = demo_docs[:N_DOCS]
    halves = [list(select_shard(iter(docs), Shard(k, 2))) for k in range(2)]
    assert sorted(d.id for d in halves[0] + halves[1]) == sorted(d.id for d in docs)
    assert list(select_shard(docs, None)) == docs


# --- shards into one index -----------------------------------------------------------------------
def test_two_shards_into_one_index_equal_a_single_run_and_a_rerun_changes_nothing(tmp_path, corpus, splade, minilm):
    single, sharded = str(tmp_path / "single"), str(tmp_path / "sharded")
    whole = index_corpus(corpus, single, sparse=splade, dense=minilm, progress=False, batch_size=16)
    reports = [
        index_corpus(
            corpus,
            sharded,
            sparse=splade,
            dense=minilm,
            progress=False,
            batch_size=16,
            scale=ScaleOptions(shard=Shard(k, 2)),
        )
        for k in range(2)
    ]
    # Each shard took only its own documents; the second opened the index the first created.
    assert [r.indexed for r in reports] == [
        sum(shard_of(json.loads(x)["_id"], 2) == k for x in corpus.read_text().splitlines()) for k in range(2)
    ]
    assert 0 < reports[0].indexed < N_DOCS and reports[1].count == whole.count == N_DOCS
    assert stored_ids(sharded) == stored_ids(single)
    assert_same_hits(top10(sharded, splade, minilm), top10(single, splade, minilm))

    ids = stored_ids(sharded)
    with open_index(sharded) as index:
        before = index.sparse_vectors(ids)
    rerun = index_corpus(
        corpus, sharded, sparse=splade, dense=minilm, progress=False, scale=ScaleOptions(shard=Shard(1, 2))
    )
    assert (rerun.indexed, rerun.skipped_unchanged, rerun.count) == (0, reports[1].indexed, N_DOCS)
    with open_index(sharded) as index:
        after = index.sparse_vectors(ids)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k].indices, after[k].indices) for k in before)


def test_shard_on_the_command_line(tmp_path, capsys, corpus):
    location = str(tmp_path / "idx")
    for k in range(2):
        assert (
            main(
                [
                    "index",
                    str(corpus),
                    "--index",
                    location,
                    "--dense",
                    "none",
                    "--shard",
                    f"{k}/2",
                    "--no-progress",
                    "--json",
                ]
            )
            == 0
        )
    outputs = [json.loads(chunk) for chunk in capsys.readouterr().out.replace("}\n{", "}\x00{").split("\x00")]
    assert [o["shard"] for o in outputs] == ["0/2", "1/2"]
    assert sum(o["indexed"] for o in outputs) == N_DOCS and outputs[-1]["count"] == N_DOCS


# --- several workers ---------------------------------------------------------------------------------
def test_two_workers_store_the_same_vectors_as_one(tmp_path, demo_docs, splade, minilm):
    n = 16  # each worker process loads both models: keep the encoding small
    corpus = write_corpus(tmp_path / "corpus.jsonl", demo_docs[:n])
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    first = index_corpus(corpus, one, sparse=splade, dense=minilm, progress=False, batch_size=4)
    # The workers reload the models by the names these encoders were loaded by.
    second = index_corpus(
        corpus,
        two,
        sparse=splade,
        dense=minilm,
        progress=False,
        batch_size=4,
        scale=ScaleOptions(device="cpu", workers=2),
    )
    assert (second.indexed, second.count) == (first.indexed, first.count) == (n, n)
    ids = stored_ids(one)
    assert stored_ids(two) == ids
    with open_index(one) as a, open_index(two) as b:
        va, vb = a.sparse_vectors(ids), b.sparse_vectors(ids)
        for i in ids:
            assert np.array_equal(va[i].indices, vb[i].indices)
            np.testing.assert_allclose(va[i].values, vb[i].values, rtol=0, atol=1e-5)
        # Every stored dense vector, through exact dense search scores over the whole index.
        for query in QUERIES:
            vector = minilm.encode_query([query])[0]
            sa = {h.id: h.score for h in a.search_dense(vector, n)}
            sb = {h.id: h.score for h in b.search_dense(vector, n)}
            assert sa.keys() == sb.keys()
            assert max(abs(sa[k] - sb[k]) for k in sa) < 1e-5
    # A rerun with workers skips everything, like a one-process rerun (and starts no process: nothing to encode).
    again = index_corpus(
        corpus, two, sparse=splade, dense=minilm, progress=False, scale=ScaleOptions(device="cpu", workers=2)
    )
    assert (again.indexed, again.skipped_unchanged) == (0, n)


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path):
    from pipelines.workers import EncoderPool, EncoderSpec, WorkerError

    pool = EncoderPool(EncoderSpec(sparse=str(tmp_path / "no-such-model")), ["cpu", "cpu"])
    try:
        with pytest.raises(WorkerError, match="rerun the same command to resume"):
            pool.submit(["a passage"]).result(timeout=600)
    finally:
        pool.close()
