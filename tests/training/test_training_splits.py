"""Fine-tuning with BEIR splits: hard negatives mined from the hybrid ranking, a tiny real run of each
architecture (the cross-encoder included) trained on ``train`` and judged on ``test``, devices and precision.

The data is built from the demo corpus the repository ships: each passage's title is a query judged
relevant to it, the first queries form the ``train`` split (a qrels file with a header row, as SciFact's) and
the others the ``test`` split (no header row, as DL19's).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_search.training import (
    FinetuneConfig,
    NegativeConfig,
    finetune,
    load_training_data,
)
from hybrid_search.training.negatives import fused_order, select_negatives
from tests.training.demo_beir import write_demo_beir

N_TRAIN = 10
N_TEST = 5


@pytest.fixture(scope="module")
def demo_beir(tmp_path_factory) -> Path:
    """Demo passages (cut to 40 words) in BEIR layout with a ``train`` and a ``test`` split."""
    return write_demo_beir(tmp_path_factory.mktemp("demo-beir"), N_TRAIN, N_TEST, test_header=False)


# --------------------------------------------------------------------------- negatives, pure


def test_fused_order_is_rrf_over_channels():
    scores = {"sparse": np.array([[3.0, 2.0, 1.0, 0.0]]), "dense": np.array([[0.1, 0.9, 0.8, 0.2]])}
    # RRF, ranks from 1: doc 1 is 2nd and 1st, doc 0 1st and 4th, doc 2 3rd and 2nd.
    assert fused_order(scores, 0, depth=4, rrf_k=60) == [1, 0, 2, 3]


def test_select_negatives_skips_positives_guards_false_negatives_and_respects_the_window():
    scores = {"sparse": np.array([[10.0, 9.8, 9.0, 8.0, 7.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])}
    cfg = NegativeConfig(num_negatives=2, dense_model=None)
    picked, stats = select_negatives(scores, [{0}, {5}], cfg)
    # Query 0: doc 1 scores 98% of the positive (a likely unjudged positive) and is skipped.
    assert picked == [[2, 3], [4, 3]]
    assert stats["false_negative_guard"] == 1 and stats["positive_skipped"] == 2 and stats["negatives"] == 4
    # range_min skips the top candidates (doc 1 is then skipped by the window, not the margin); range_max
    # bounds the depth (positives included), and a window too small leaves queries short.
    picked, stats = select_negatives(
        scores, [{0}, {5}], NegativeConfig(num_negatives=2, range_min=1, range_max=3, dense_model=None)
    )
    assert picked == [[2], [3]] and stats["short"] == 2 and stats["false_negative_guard"] == 0
    # A relative margin of 0 keeps everything scored below the positive.
    picked, _ = select_negatives(
        scores, [{0}, {5}], NegativeConfig(num_negatives=1, relative_margin=0.0, dense_model=None)
    )
    assert picked == [[1], [4]]


def test_negative_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="range_min < range_max"):
        NegativeConfig(range_min=5, range_max=5)
    with pytest.raises(ValueError, match="margin"):
        NegativeConfig(relative_margin=1.0)


# --------------------------------------------------------------------------- splits


def test_beir_splits_train_on_train_and_guard_against_the_eval_split(demo_beir):
    train = load_training_data(demo_beir, split="train")
    test = load_training_data(demo_beir, split="test")
    assert len(train) == N_TRAIN and len(test) == N_TEST
    assert not set(train.dataset["query"]) & set(test.dataset["query"])
    # The guard only knows the evaluation split's queries: none of train's is dropped...
    from hybrid_search.dataset import load_dataset

    eval_set = load_dataset(str(demo_beir), split="test")
    judged = [eval_set.queries[q] for q in eval_set.judged_queries]
    assert load_training_data(demo_beir, split="train", eval_queries=judged).dropped["eval_query"] == 0
    # ...while training on the evaluation split itself drops every query, and says so.
    with pytest.raises(ValueError, match="appears in the evaluation set"):
        load_training_data(demo_beir, split="test", eval_queries=judged)


def test_pseudo_queries_join_the_labelled_pairs_each_row_naming_its_passage(demo_beir, tmp_path):
    labelled = load_training_data(demo_beir, split="train")
    mixed = load_training_data(demo_beir, split="train", pseudo_query_ratio=1.0)
    assert mixed.pseudo_queries == N_TRAIN and len(mixed) == 2 * N_TRAIN and mixed.kind == "beir-qrels"
    assert mixed.dataset[:N_TRAIN] == labelled.dataset[:N_TRAIN]  # the labelled pairs first, unchanged
    assert mixed.sources is not None and len(mixed.sources) == len(mixed)
    for query, positive, source in zip(mixed.dataset["query"], mixed.dataset["positive"], mixed.sources):
        passage = mixed.documents[source]
        if query in labelled.dataset["query"]:  # a labelled row names its positive document
            assert positive == passage
        else:  # a mined row names the passage its pseudo-query was cut from
            assert query in passage and set(positive.split()) <= set(passage.split())
    assert "10 of them mined pseudo-queries" in mixed.summary()
    half = load_training_data(demo_beir, split="train", pseudo_query_ratio=0.5)
    assert half.pseudo_queries == 5 and len(half) == N_TRAIN + 5
    sample = load_training_data(demo_beir, split="train", pseudo_query_ratio=1.0, max_examples=12)
    assert sample.pseudo_queries == sum(q not in labelled.dataset["query"] for q in sample.dataset["query"])
    # A mined pseudo-query that leaks an evaluation query is dropped and counted like a labelled one.
    leak = mixed.dataset["query"][N_TRAIN]
    guarded = load_training_data(demo_beir, split="train", pseudo_query_ratio=1.0, eval_queries=[leak])
    assert leak not in guarded.dataset["query"] and guarded.dropped["eval_query"] >= 1
    # Labelled files mine their positives; rows with their own negatives cannot be mixed with mined pairs.
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"query": q, "positive": p} for q, p in zip(labelled.dataset["query"], labelled.dataset["positive"])]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    from_file = load_training_data(pairs, pseudo_query_ratio=0.5)
    assert from_file.pseudo_queries == 5 and len(from_file) == N_TRAIN + 5
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("".join(json.dumps({**r, "negative": "x y z"}) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match="only be added to \\(query, positive\\) pairs"):
        load_training_data(triplets, pseudo_query_ratio=0.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        load_training_data(demo_beir, split="train", pseudo_query_ratio=-1.0)
    with pytest.raises(ValueError, match="every pair is mined already"):
        load_training_data(demo_beir, self_supervised=True, pseudo_query_ratio=1.0)


# --------------------------------------------------------------------------- tiny runs


def tiny(tmp_path: Path, arch: str, data: Path, **overrides) -> FinetuneConfig:
    settings = {
        "arch": arch,
        "base": "minilm" if arch in ("csr", "cross-encoder") else "splade-tiny",
        "train": str(data),
        "train_split": "train",
        "eval": str(data),
        "eval_split": "test",
        "out": str(tmp_path / arch),
        "batch_size": 4,
        "max_steps": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "max_seq_length": 32,
        "warmup_ratio": 0.0,
        "validation_size": 0,
        "progress": False,
        "seed": 1,
        "device": "cpu",
        "negatives": NegativeConfig(num_negatives=None, dense_model=None),
        "rerank_top_n": 5,
    }
    settings.update(overrides)
    return FinetuneConfig(**settings)


@pytest.mark.parametrize("arch", ["splade", "inference-free", "csr"])
def test_tiny_sparse_run_with_splits(tmp_path, demo_beir, arch):
    report = finetune(tiny(tmp_path, arch, demo_beir))
    assert report["data"]["split"] == "train" and report["data"]["examples"] == N_TRAIN
    assert report["eval_guard"] == N_TEST
    for side in ("before", "after"):
        assert report[side]["queries"] == N_TEST and 0 <= report[side]["metrics"]["nDCG@10"] <= 1
    assert report["training"]["device"] == "cpu" and report["training"]["precision"] == "fp32"
    assert report["training"]["steps"] == 2 and report["training"]["reload_max_abs_diff"] <= 1e-4
    if arch == "csr":  # no mined negatives by default: the autoencoder trains on in-batch ones
        assert report["hard_negatives"] is None and "negative" not in report["data"]["columns"]
    else:
        mined = report["hard_negatives"]
        assert mined["negatives"] == N_TRAIN and mined["channels"] == ["sparse"]
        assert "negative" in report["data"]["columns"]
    if arch != "csr":  # small base: the recipe's learning rate is raised 10x
        assert report["training"]["learning_rate"] == pytest.approx(2e-4)


def test_tiny_cross_encoder_run_reranks_and_loads_where_rerankers_load(tmp_path, demo_beir):
    from hybrid_search.rerank import Reranker

    report = finetune(tiny(tmp_path, "cross-encoder", demo_beir))
    mined = report["hard_negatives"]
    assert mined["num_negatives"] == 4 and report["training"]["loss"] == "BinaryCrossEntropyLoss(pos_weight=4)"
    assert report["data"]["examples"] == mined["rows"] * 5  # the positive and 4 negatives per row
    assert report["data"]["columns"] == ["query", "passage", "label"]
    assert report["before"]["system"] == "first stage" and report["after"]["system"].startswith("+ reranker")
    assert set(report["after"]["extra"]["per_query_ndcg10"]) == set(report["before"]["extra"]["per_query_ndcg10"])
    # bench --reranker DIR and search --rerank DIR load it through Reranker.load.
    reranker = Reranker.load(report["output"])
    scores = reranker.score("Kepler's laws", ["Kepler showed that planets orbit in ellipses.", "Bananas."])
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    # No held-out training query: nothing to choose the blend on, so the cross-encoder ranks alone.
    assert report["training"]["interpolation"]["weight"] == 1.0 and reranker.weight == 1.0


def test_cross_encoder_blend_weight_is_chosen_on_held_out_training_queries(tmp_path, demo_beir):
    from hybrid_search.rerank import SETTINGS_FILE, Reranker
    from hybrid_search.training.crossencoder import WEIGHTS

    report = finetune(tiny(tmp_path, "cross-encoder", demo_beir, validation_size=1, max_steps=1))
    blend = report["training"]["interpolation"]
    assert blend["weight"] in WEIGHTS and set(blend["validation_ndcg10"]) == set(WEIGHTS)
    # The held-out query's rows are out of training (5 pairs per row: the positive and 4 negatives).
    assert report["data"]["examples"] == (report["hard_negatives"]["rows"] - 1) * 5
    stored = json.loads((Path(report["output"]) / SETTINGS_FILE).read_text(encoding="utf-8"))
    assert Reranker.load(report["output"]).weight == stored["weight"] == blend["weight"]
    # The reported "after" is the blend; the cross-encoder alone is reported beside it.
    assert report["training"]["reranker_alone"]["system"].startswith("+ reranker")


def test_resume_reuses_the_mined_negatives(tmp_path, demo_beir):
    cfg = tiny(tmp_path, "splade", demo_beir, max_steps=2, save_steps=1)
    first = finetune(cfg)
    resumed = finetune(tiny(tmp_path, "splade", demo_beir, max_steps=3, save_steps=1, resume=True))
    assert resumed["training"]["resumed_from"].endswith("checkpoint-2")
    assert resumed["hard_negatives"] == first["hard_negatives"] and resumed["before"] == first["before"]


def test_device_and_precision_errors(tmp_path, demo_beir):
    from hybrid_search.device import DeviceError
    from hybrid_search.training.finetune import trainer_precision

    assert trainer_precision("cpu", "auto") == {}
    with pytest.raises(ValueError, match="needs a CUDA device"):
        trainer_precision("cpu", "bf16")
    with pytest.raises(DeviceError):
        finetune(tiny(tmp_path, "splade", demo_beir, device="tpu"))


def test_cli_flags_reach_the_config(demo_beir, tmp_path):
    import argparse

    from pipelines.finetune import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "finetune",
            "--arch",
            "cross-encoder",
            "--train",
            str(demo_beir),
            "--out",
            str(tmp_path / "x"),
            "--train-split",
            "train",
            "--eval-split",
            "test",
            "--hard-negatives",
            "2",
            "--mine-models",
            "splade-tiny",
            "--mine-window",
            "3:30",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--pseudo-query-ratio",
            "0.5",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.pseudo_query_ratio == 0.5
    assert cfg.base == "minilm" and cfg.train_split == "train" and cfg.device == "cpu"
    assert cfg.negatives == NegativeConfig(num_negatives=2, dense_model=None, range_min=3, range_max=30)
    bad = parser.parse_args(["finetune", "--arch", "splade", "--train", "x", "--out", "y", "--mine-window", "30"])
    with pytest.raises(ValueError, match="MIN:MAX"):
        config_from_args(bad)


def test_csr_head_trains_over_cached_embeddings_and_chooses_on_held_out_training_queries(tmp_path, demo_beir):
    from hybrid_search.encoders import SparseEncoder
    from hybrid_search.training.csr import LEARNING_RATES, SCALES

    report = finetune(tiny(tmp_path, "csr", demo_beir, validation_size=1, max_steps=4, csr_k=8, csr_hidden_dim=64))
    t = report["training"]
    assert t["validation_queries"] == 1 and len(t["selection"]) == len(LEARNING_RATES) * len(SCALES)
    assert (t["learning_rate"], t["contrastive_scale"]) in {(r, s) for r in LEARNING_RATES for s in SCALES}
    assert 1 <= t["steps"] <= 4 and t["backbone_max_abs_diff"] <= 1e-3
    assert report["after"]["document_active_dims"] <= 8
    # The saved folder is a normal SparseEncoder whose vectors are the trained autoencoder's codes.
    encoder = SparseEncoder.load(report["output"])
    vector = encoder.encode_document(["Kepler showed that planets orbit in ellipses."])[0]
    assert 0 < vector.nnz <= 8
