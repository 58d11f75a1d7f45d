"""``bench`` and the learned fusion: ``--fusion tuned`` adds a row of the fusion ``tune`` chooses on the train
split, a fusion the benchmark's index carries gets its row by default, and choosing on the reported split is
refused. On the demo corpus written as a BEIR folder (SPLADE-tiny + BM25, so nothing heavy is encoded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_search.tuning import FusionSetting, fusion_record
from pipelines.bench import run_benchmark
from pipelines.cli import main
from pipelines.tune import TuneOptions, run_tune
from tests.pipelines.test_tune_pipeline import _write_beir


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    return _write_beir(
        tmp_path_factory.mktemp("bench-tuned") / "demo-beir", {"train": range(14), "test": range(14, 20)}
    )


def _bench(beir: Path, tmp: Path, splade, **options):
    return run_benchmark(
        str(beir),
        sparse=splade,
        dense=None,
        split="test",
        out=str(tmp / "bench"),
        cache=str(tmp / "emb"),
        significance_resamples=200,
        progress=False,
        **options,
    )


def test_fusion_tuned_adds_the_row_tune_chooses_on_train_and_an_index_record_is_used_by_default(
    beir, tmp_path, monkeypatch, splade
):
    monkeypatch.chdir(tmp_path)  # tune's ranking cache goes to ./.hybrid-search/tune, as from the CLI
    result = _bench(beir, tmp_path, splade, fusions=("tuned",))
    (row,) = [r for r in result.rows if r.spec.source]
    assert row.name.startswith("tuned on demo-beir train (CV ") and result.baseline in ("BM25", "sparse")
    assert row.p_value is not None  # tested against the best single channel, never its baseline
    report = run_tune(
        TuneOptions(
            str(beir), split="train", eval_split="test", sparse=splade, dense="none", cache=str(tmp_path / "emb")
        )
    )
    assert report["cache"]["rankings"] is True  # the bench's tune filled the cache that `tune` reads
    chosen = FusionSetting.from_record(report["chosen"]["setting"])
    assert row.spec.channels == chosen.channels and row.spec.prefetch_k == chosen.prefetch_k
    assert row.spec.fusion == chosen.method and row.spec.rrf_k == chosen.rrf_k
    # The bench runs it through the real searcher; tune scored it from the cached rankings: the same number.
    assert row.metrics["nDCG@10"] == pytest.approx(report["eval"]["rows"]["tuned"]["metrics"]["nDCG@10"], abs=1e-9)
    assert result.to_dict()["rows"][-1]["tuned"]["source"] == row.spec.source

    # A fusion saved in the benchmark's index: its row is there without asking, named after the record.
    from indexers import open_index

    saved = FusionSetting(("sparse", "bm25"), "zscore", weights=(1.0, 0.5), prefetch_k=25)
    index = open_index(str(tmp_path / "bench" / "index"))
    try:
        index.meta.fusion = fusion_record(saved, dataset="demo-beir", split="train", cv_ndcg10=0.5, cv_std=0.1)
        index.save_meta()
    finally:
        index.close()
    again = _bench(beir, tmp_path, splade)
    (row,) = [r for r in again.rows if r.spec.source]
    assert row.name.startswith("index (tuned on demo-beir train") and "z-score convex (sparse=1,bm25=0.5)" in row.name
    assert row.spec.weights == (("sparse", 1.0), ("bm25", 0.5)) and row.spec.prefetch_k == 25


def test_choosing_on_the_reported_split_is_refused_before_the_corpus_is_encoded(capsys):
    argv = ["bench", "--dataset", "nowhere", "--fusion", "rrf,tuned", "--split", "train", "--tune-split", "train"]
    assert main(argv) == 2
    assert "--tune-split ('train'), which must differ" in capsys.readouterr().err
