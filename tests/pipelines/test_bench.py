"""``hybrid-search bench`` on a small slice of the real MS MARCO / DL19 data, with the real small models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_search.types import Hit, SparseVector
from pipelines.bench import (
    canonical_order,
    parse_hybrid,
    parse_weights,
    plan_rows,
    rank_scores,
    run_benchmark,
)
from pipelines.cli import main
from pipelines.embedding_cache import EmbeddingCache, cache_key, csr_to_sparse, encoder_fingerprint, sparse_to_csr

N_QUERIES = 5
DOCS_PER_QUERY = 5
FILLER_DOCS = 25


# --------------------------------------------------------------------------- pure parts


def test_rows_are_planned_from_the_options():
    rows = plan_rows(
        ["sparse", "dense"],
        hybrid=parse_hybrid("sparse+dense,bm25+dense+sparse"),
        fusions=["rrf", "dbsf"],
        weighted=[parse_weights("sparse=2,dense=1")],
        rerank=True,
    )
    names = [r.name for r in rows]
    assert names[:4] == ["BM25", "sparse", "dense", "hybrid RRF (sparse+dense)"]
    assert "hybrid DBSF (sparse+dense+bm25)" in names and "hybrid weighted RRF (sparse=2,dense=1)" in names
    assert len(names) == 2 * 8 and names[-1].endswith(" + reranker")
    tags = [r.tag for r in rows]
    assert len(set(tags)) == len(tags) and not any(c in "".join(tags) for c in " ()")


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_hybrid("sparse+colbert"),
        lambda: parse_hybrid("sparse"),
        lambda: parse_weights("sparse=two,dense=1"),
        lambda: plan_rows(["dense"], hybrid=[("sparse", "dense")]),
        lambda: plan_rows(["sparse", "dense"], fusions=["max"]),
    ],
)
def test_bad_options_are_value_errors(call):
    with pytest.raises(ValueError):
        call()


def test_ties_are_ordered_like_trec_eval_whatever_order_the_engine_returned():
    engine = [Hit("d1", None, 0.0325, 1), Hit("d3", None, 0.0325000001, 2), Hit("d2", None, 0.03, 3)]
    client = [Hit("d3", None, 0.0325, 1), Hit("d1", None, 0.0325, 2), Hit("d2", None, 0.03, 3)]
    assert canonical_order(engine) == canonical_order(client) == ["d3", "d1", "d2"]
    # A reranked head and the fused tail behind it never form one tie group.
    mixed = [Hit("a", None, 1.0, 1, rerank_score=1.0), Hit("b", None, 1.0, 2)]
    assert canonical_order(mixed) == ["a", "b"]
    assert rank_scores(["x", "y"]) == {"x": 2.0, "y": 1.0}


def test_sparse_vectors_round_trip_through_csr():
    vectors = [SparseVector([5, 1], [0.5, 2.0]), SparseVector([], []), SparseVector([30521], [1.25])]
    back = csr_to_sparse(*sparse_to_csr(vectors))
    assert [v.indices.tolist() for v in back] == [[1, 5], [], [30521]]
    assert [v.values.tolist() for v in back] == [[2.0, 0.5], [], [1.25]]


def test_the_cache_key_follows_the_model_settings(splade):
    before = cache_key(encoder_fingerprint("sparse", splade))
    splade.max_active_dims = 64
    try:
        assert cache_key(encoder_fingerprint("sparse", splade)) != before
    finally:
        splade.max_active_dims = None
    assert cache_key(encoder_fingerprint("sparse", splade)) == before


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def slice_data(msmarco_dir):
    """A few judged DL19 queries, their judged passages and some unjudged filler passages."""
    from hybrid_search.dataset import load_beir

    data = load_beir(msmarco_dir)
    qids = data.judged_queries[:N_QUERIES]
    doc_ids: list[str] = []
    for q in qids:
        ranked = sorted(data.qrels[q].items(), key=lambda kv: -kv[1])
        doc_ids += [d for d, _ in ranked[:DOCS_PER_QUERY] if d in data.corpus]
    judged = {d for q in qids for d in data.qrels[q]}
    doc_ids += [d for d in data.corpus if d not in judged][:FILLER_DOCS]
    doc_ids = list(dict.fromkeys(doc_ids))
    qrels = {q: {d: g for d, g in data.qrels[q].items() if d in set(doc_ids)} for q in qids}
    return [data.corpus[d] for d in doc_ids], {q: data.queries[q] for q in qids}, qrels


@pytest.fixture(scope="module")
def beir_dir(slice_data, tmp_path_factory) -> Path:
    """The slice as a BEIR folder whose qrels have a header row (the DL19 copy has none)."""
    docs, queries, qrels = slice_data
    root = tmp_path_factory.mktemp("beir") / "dl19-slice"
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    with (root / "queries.jsonl").open("w") as f:
        for q, text in queries.items():
            f.write(json.dumps({"_id": q, "text": text}) + "\n")
    with (root / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, judged in qrels.items():
            for d, g in judged.items():
                f.write(f"{q}\t{d}\t{g}\n")
    return root


@pytest.fixture(scope="module")
def hub_layout_dir(slice_data, tmp_path_factory) -> Path:
    """The same slice laid out like a Hub repository: corpus/, queries/, qrels/ parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs, queries, qrels = slice_data
    root = tmp_path_factory.mktemp("hub") / "NanoSlice"
    tables = {
        "corpus": {"_id": [d.id for d in docs], "title": [d.title for d in docs], "text": [d.text for d in docs]},
        "queries": {"_id": list(queries), "text": list(queries.values())},
        "qrels": {
            "query-id": [q for q, j in qrels.items() for _ in j],
            "corpus-id": [d for j in qrels.values() for d in j],
            "score": [g for j in qrels.values() for g in j.values()],
        },
    }
    for subset, columns in tables.items():
        (root / subset).mkdir(parents=True)
        pq.write_table(pa.table(columns), root / subset / "train-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def tiny_reranker(slice_data):
    """A cross-encoder built from SPLADE-tiny's BERT with a fresh one-logit head, trained for a few steps."""
    import torch
    from sentence_transformers import CrossEncoder

    from hybrid_search.models import resolve
    from hybrid_search.rerank import Reranker

    docs, queries, qrels = slice_data
    torch.manual_seed(0)
    model = CrossEncoder(resolve("splade-tiny").path, num_labels=1, device="cpu")
    text = {d.id: d.full_text for d in docs}
    judged = {d for j in qrels.values() for d in j}
    negatives = [d.id for d in docs if d.id not in judged]
    pairs = []
    for i, (q, judged_docs) in enumerate(qrels.items()):
        for d, g in judged_docs.items():
            pairs.append((queries[q], text[d], 1.0 if g >= 2 else 0.0))
        pairs.append((queries[q], text[negatives[i % len(negatives)]], 0.0))
    hf, tokenizer = model.model, model.tokenizer
    optimiser = torch.optim.AdamW(hf.parameters(), lr=3e-4)
    hf.train()
    for _ in range(3):
        features = tokenizer(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        logits = hf(**features).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([p[2] for p in pairs]))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    hf.eval()
    return Reranker(model, "tiny-test-cross-encoder")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="module")
def first_run(beir_dir, splade, minilm, tiny_reranker, cache_root, tmp_path_factory):
    cache = EmbeddingCache(cache_root, progress=False)
    out = tmp_path_factory.mktemp("bench") / "out"
    result = run_benchmark(
        str(beir_dir),
        sparse=splade,
        dense=minilm,
        reranker=tiny_reranker,
        rel_threshold=2,
        hybrid="sparse+dense,sparse+dense+bm25",
        fusions=["rrf", "dbsf"],
        weighted=["sparse=2,dense=1"],
        out=out,
        cache=cache,
        rerank_top_n=20,
        progress=False,
        significance_resamples=2000,
    )
    return result, cache, out


# --------------------------------------------------------------------------- the benchmark


def test_table_has_every_row_and_column(first_run, slice_data):
    result, cache, _ = first_run
    names = [r.name for r in result.rows]
    assert names[:4] == ["BM25", "sparse", "dense", "hybrid RRF (sparse+dense)"]
    assert {
        "hybrid DBSF (sparse+dense)",
        "hybrid RRF (sparse+dense+bm25)",
        "hybrid weighted RRF (sparse=2,dense=1)",
        "sparse + reranker",
        "hybrid RRF (sparse+dense) + reranker",
    } <= set(names)
    table = result.markdown()
    header = next(line for line in table.splitlines() if line.startswith("| system"))
    for column in ("nDCG@10", "MRR@10", "MAP", "R@100", "p50 ms", "p95 ms", "q dims", "d dims", "index MB", "p"):
        assert f" {column} |" in header
    assert "relevance threshold 2" in table and "MRR@10 = RR(rel=2)@10" in table and "MAP = AP(rel=2)" in table
    for name in names:
        assert f"| {name} |" in table
    by_name = {r.name: r for r in result.rows}
    assert by_name["hybrid RRF (sparse+dense)"].fused_by == "engine"
    assert by_name["hybrid RRF (sparse+dense+bm25)"].fused_by == "client"  # the engine fuses two channels
    assert by_name["hybrid weighted RRF (sparse=2,dense=1)"].fused_by == "client"  # Qdrant RRF is unweighted
    assert result.baseline in {"BM25", "sparse", "dense"}
    assert all(r.p_value is not None for r in result.rows if r.name != result.baseline)
    for row in result.rows:
        assert set(row.metrics) == {"nDCG@10", "MRR@10", "MAP", "R@100"}
        assert 0 <= row.metrics["nDCG@10"] <= 1 and row.latency["p95_ms"] >= row.latency["p50_ms"] > 0
    assert by_name["sparse"].avg_active_dims_doc > 20 and by_name["dense"].avg_active_dims_doc == 384
    assert by_name["hybrid RRF (sparse+dense)"].index_bytes > by_name["dense"].index_bytes > 0
    # The cross-encoder really reorders candidates: its rows differ from the rows it reranks.
    assert by_name["sparse + reranker"].per_query != by_name["sparse"].per_query
    assert result.cache == {"sparse": False, "dense": False}
    assert cache.encoded == {"sparse": len(slice_data[0]), "dense": len(slice_data[0])}


def test_outputs_are_written(first_run, beir_dir):
    result, _, out = first_run
    data = json.loads((out / "results.json").read_text())
    assert data["rel_threshold"] == 2
    assert data["measures"] == {
        "nDCG@10": "nDCG@10",
        "MRR@10": "RR(rel=2)@10",
        "MAP": "AP(rel=2)",
        "R@100": "R(rel=2)@100",
    }
    assert [r["name"] for r in data["rows"]] == [r.name for r in result.rows]
    assert {"nDCG@10", "RR(rel=2)@10", "AP(rel=2)", "R(rel=2)@100", "p50_ms", "p95_ms"} <= set(data["rows"][0])
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("name,tag,") and len(csv_lines) == len(result.rows) + 1
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| system |" in (out / "results.md").read_text()
    from hybrid_search.dataset import load_dataset
    from hybrid_search.metrics import evaluate
    from hybrid_search.trec import read_trec_run

    for row in result.rows:
        run = read_trec_run(out / row.run_file)
        assert len(run) == N_QUERIES and max(len(docs) for docs in run.values()) <= 100 * len(row.spec.channels)
    # A run file reproduces its row's numbers.
    sparse = result.row("sparse")
    qrels = load_dataset(beir_dir).qrels
    assert evaluate(read_trec_run(out / sparse.run_file), qrels, 2) == pytest.approx(sparse.metrics)


def test_rerun_hits_the_cache_and_client_fusion_gives_the_same_numbers(
    first_run, beir_dir, splade, minilm, tiny_reranker, cache_root
):
    result, _, out = first_run
    cache = EmbeddingCache(cache_root, progress=False)
    again = run_benchmark(
        str(beir_dir),
        sparse=splade,
        dense=minilm,
        reranker=tiny_reranker,
        rel_threshold=2,
        hybrid="sparse+dense,sparse+dense+bm25",
        fusions=["rrf", "dbsf"],
        weighted=["sparse=2,dense=1"],
        out=out,
        cache=cache,
        rerank_top_n=20,
        progress=False,
        significance_resamples=2000,
        client_fusion=True,
    )
    assert again.cache == {"sparse": True, "dense": True} and cache.encoded == {"sparse": 0, "dense": 0}
    assert again.index["reused"]
    assert all(r.fused_by in (None, "client") for r in again.rows)
    for engine, client in zip(result.rows, again.rows):
        assert engine.name == client.name
        assert client.metrics == engine.metrics, engine.name
        assert client.per_query == engine.per_query, engine.name


def test_cli_runs_unchanged_on_a_hub_parquet_layout(first_run, hub_layout_dir, cache_root, tmp_path, capsys):
    result, _, _ = first_run
    code = main(
        [
            "bench",
            "--dataset",
            str(hub_layout_dir),
            "--sparse",
            "splade-tiny",
            "--dense",
            "minilm",
            "--rel-threshold",
            "2",
            "--index-backend",
            "qdrant-local",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(cache_root),
            "--json",
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["dataset"]["name"] == "NanoSlice" and data["index"]["backend"] == "qdrant-local"
    # Same passages and models: the embeddings come from the cache the BEIR run filled.
    assert data["cache"] == {"sparse": True, "dense": True}
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows) == ["BM25", "sparse", "dense", "hybrid RRF (sparse+dense)"]
    for name, row in rows.items():
        expected = result.row(name).metrics
        assert row["nDCG@10"] == pytest.approx(expected["nDCG@10"], abs=1e-9)
        assert row["RR(rel=2)@10"] == pytest.approx(expected["MRR@10"], abs=1e-9)
        assert row["AP(rel=2)"] == pytest.approx(expected["MAP"], abs=1e-9)
        assert row["R(rel=2)@100"] == pytest.approx(expected["R@100"], abs=1e-9)
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == sorted(
        f"{r['tag']}.trec" for r in data["rows"]
    )


def test_nano_msmarco_offline_says_to_pass_a_beir_folder(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["bench", "--dataset", "nano-msmarco", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and "NanoMSMARCO" in err and "BEIR folder" in err
    assert "Traceback" not in err


def test_an_unknown_hybrid_channel_fails_before_anything_is_loaded(capsys):
    code = main(["bench", "--dataset", "nano-msmarco", "--hybrid", "sparse+colbert", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and "colbert" in err


def test_a_row_without_timed_queries_is_written_as_null_not_nan(tmp_path):
    """A row whose latency could not be measured (NaN) must still give valid JSON: ``null``, never ``NaN``."""
    from pipelines.bench.measure import latency_stats
    from pipelines.bench.report import BenchResult, RowResult
    from pipelines.bench.rows import RowSpec

    row = RowResult(
        spec=RowSpec(channels=("sparse",)),
        metrics={"nDCG@10": 0.5},
        latency=latency_stats([]),
        per_query={"q1": 0.5},
        fused_by=None,
        avg_active_dims_query=float("nan"),
        avg_active_dims_doc=12.0,
        index_bytes=None,
    )
    result = BenchResult(
        dataset={"name": "x"},
        rel_threshold=1,
        measures={"nDCG@10": "nDCG@10"},
        rows=[row],
        baseline=None,
        settings={},
        index={},
        cache={},
    )
    written = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert written["rows"][0]["p50_ms"] is None
    assert written["rows"][0]["avg_active_dims_query"] is None
    assert written["rows"][0]["nDCG@10"] == 0.5
