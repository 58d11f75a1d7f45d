"""Fine-tuning: data loading and mining, bad-data errors, and a tiny real run of each architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_search.training import (
    EvalQueryGuard,
    FinetuneConfig,
    MiningConfig,
    TrainingDataError,
    finetune,
    load_training_data,
    mine_pairs,
)
from hybrid_search.types import Document

N_DOCS = 24


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dl19(msmarco_dir):
    from hybrid_search.dataset import load_beir

    return load_beir(msmarco_dir)


@pytest.fixture(scope="module")
def tiny_beir(dl19, tmp_path_factory) -> Path:
    """3 judged DL19 queries over 24 real passages (some of them relevant), in BEIR layout."""
    qids = dl19.judged_queries[:3]
    relevant = [d for q in qids for d in sorted(d for d, g in dl19.qrels[q].items() if g >= 2)[:3]]
    ids = list(dict.fromkeys(relevant + list(dl19.corpus)[:N_DOCS]))[:N_DOCS]
    root = tmp_path_factory.mktemp("tiny-beir")
    # Passages are cut to 40 words: encoding dominates these tests and full MS MARCO passages are 3x longer.
    texts = {i: " ".join(dl19.corpus[i].text.split()[:40]) for i in ids}
    write_jsonl(root / "corpus.jsonl", [{"_id": i, "title": "", "text": texts[i]} for i in ids])
    write_jsonl(root / "queries.jsonl", [{"_id": q, "text": dl19.queries[q]} for q in qids])
    (root / "qrels").mkdir()
    rows = [f"{q}\t{d}\t{g}\n" for q in qids for d, g in dl19.qrels[q].items() if d in ids]
    (root / "qrels" / "test.tsv").write_text("".join(rows), encoding="utf-8")
    return root


def tiny_config(tmp_path: Path, arch: str, train: str, **overrides) -> FinetuneConfig:
    """A run of 3 steps on one batch of 4 examples: every step sees the same examples, so losses compare."""
    settings = {
        "arch": arch,
        "base": "minilm" if arch == "csr" else "splade-tiny",
        "train": train,
        "out": str(tmp_path / arch),
        "max_examples": 4,
        "batch_size": 4,
        "max_steps": 3,
        "logging_steps": 1,
        "save_steps": 3,
        "max_seq_length": 24,
        "warmup_ratio": 0.0,
        "learning_rate": 1e-3 if arch == "csr" else 2e-4,
        "progress": False,
        "seed": 1,
    }
    settings.update(overrides)
    return FinetuneConfig(**settings)


# --------------------------------------------------------------------------- mining


DOCS = [
    Document(
        "a",
        "The Eiffel tower is in Paris. It was built for the 1889 World's Fair. Millions of people "
        "visit it every year and climb its stairs to the top platform.",
    ),
    Document(
        "b",
        "Photosynthesis turns light into chemical energy. Plants store that energy as sugar in their "
        "leaves and roots. Oxygen is released into the air as a by-product of the process.",
    ),
    Document(
        "c",
        "A single long sentence without any full stop that still describes how glaciers slowly carve "
        "deep valleys into mountains over thousands of years of ice movement",
    ),
    Document("d", "Too short."),
]


def test_mining_is_deterministic_seeded_and_order_free():
    cfg = MiningConfig(pairs_per_doc=2, seed=7)
    first, stats = mine_pairs(DOCS, cfg)
    again, _ = mine_pairs(DOCS, cfg)
    reversed_order, _ = mine_pairs(list(reversed(DOCS)), cfg)
    other_seed, _ = mine_pairs(DOCS, MiningConfig(pairs_per_doc=2, seed=8))
    assert first == again

    def key(p):
        return (p["doc_id"], p["query"])

    assert sorted(first, key=key) == sorted(reversed_order, key=key)
    assert first != other_seed
    assert stats["documents"] == 4 and stats["too_short"] == 1
    for pair in first:
        assert 4 <= len(pair["query"].split()) <= 16
        assert len(pair["positive"].split()) >= 12
    # The single-sentence passage still gives a word-window query.
    assert any(p["doc_id"] == "c" for p in first)


def test_mining_never_leaks_eval_queries(dl19, msmarco_dir):
    queries = list(dl19.queries.values())
    guard = EvalQueryGuard(queries)
    docs = [
        Document(
            "x",
            f"Some introduction here. {queries[0].capitalize()}? The answer is long enough to count "
            "as a passage with plenty of words in it.",
        )
    ] * 1
    leaked, stats = mine_pairs(docs * 5, MiningConfig(pairs_per_doc=3, keep_sentence_prob=0.0), guard=guard)
    assert all(not guard.leaks(p["query"]) for p in leaked)
    assert stats["eval_query"] >= 1
    # On the real corpus: one passage contains a DL19 query nearly verbatim, and it is dropped.
    data = load_training_data(msmarco_dir / "corpus.jsonl", eval_queries=queries)
    assert data.kind == "self-supervised" and data.dropped["eval_query"] >= 1
    assert not any(guard.leaks(q) for q in data.dataset["query"])


# --------------------------------------------------------------------------- data loading


def test_labelled_formats_and_column_mapping(tmp_path, tiny_beir):
    rows = [
        {
            "question": f"question {i} about tides",
            "answer": f"passage {i} about the moon and tides",
            "bad": f"unrelated passage {i}",
            "teacher": [1.0 * i, 0.5],
        }
        for i in range(5)
    ]
    data = load_training_data(
        write_jsonl(tmp_path / "qa.jsonl", rows), columns="positive=answer,negative=bad,label=teacher"
    )
    assert data.kind == "labelled" and data.dataset.column_names == ["query", "positive", "negative", "label"]
    assert data.columns["query"] == "question" and data.dataset[2]["label"] == [2.0, 0.5]

    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("q_text,doc_text\nwhat is a tide,The tide is the rise of the sea.\n,empty query row\n")
    data = load_training_data(csv_file, columns={"query": "q_text", "positive": "doc_text"})
    assert len(data) == 1 and data.dropped["empty"] == 1

    # Parquet and a saved Hugging Face dataset go through the same column detection.
    import datasets

    table = datasets.Dataset.from_dict({"query": ["what is a tide"], "positive": ["The tide is the rise of the sea."]})
    table.to_parquet(str(tmp_path / "pairs.parquet"))
    table.save_to_disk(str(tmp_path / "saved"))
    assert len(load_training_data(tmp_path / "pairs.parquet")) == 1
    assert load_training_data(str(tmp_path / "saved")).dataset[0]["query"] == "what is a tide"

    # A BEIR folder's qrels are (query, relevant passage) pairs; its own queries cannot also be eval queries.
    qrels = load_training_data(tiny_beir, split="test")
    assert qrels.kind == "beir-qrels" and len(qrels) > 0
    with pytest.raises(TrainingDataError, match="appears in the evaluation set"):
        load_training_data(tiny_beir, split="test", eval_queries=qrels.dataset["query"])
    with pytest.raises(TrainingDataError, match="no qrels/train.tsv"):
        load_training_data(tiny_beir)

    # No query column: the text is mined.
    mined = load_training_data(tiny_beir / "corpus.jsonl")
    assert mined.kind == "self-supervised" and len(mined.documents) == N_DOCS


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([], {}, "is empty"),
        ([{"text": "only text here"}], {"self_supervised": False}, "no query column"),
        ([{"query": "q", "passage_text": "p"}], {}, "no positive"),
        ([{"query": "q", "positive": "p"}], {"columns": "query=question"}, "'question' named in the column mapping"),
        ([{"query": "q", "positive": "p"}], {"columns": "anchor"}, "use ROLE=COLUMN"),
        ([{"query": "q", "positive": "p"}], {"columns": "passage=positive"}, "unknown role"),
        ([{"query": ["a", "list"], "positive": "p"}], {}, "holds list, expected text"),
        ([{"query": "q", "positive": "p", "label": "high"}], {}, "expected a number"),
        ([{"query": "", "positive": "p"}], {}, "none of its 1 rows is usable"),
    ],
)
def test_bad_training_data_raises_a_clear_value_error(tmp_path, rows, kwargs, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=message):
        load_training_data(path, **kwargs)


def test_distillation_picks_the_loss_and_checks_label_shapes():
    from hybrid_search.training import build_loss, build_model
    from hybrid_search.training.build import check_label_shape

    model = build_model("splade", "splade-tiny")
    assert type(build_loss("splade", model, label=True).loss).__name__ == "SparseMarginMSELoss"
    assert type(build_loss("splade", model, label=True, distill="kl-div").loss).__name__ == "SparseDistillKLDivLoss"
    assert type(build_loss("splade", model).loss).__name__ == "SparseMultipleNegativesRankingLoss"
    check_label_shape([0.7], 1, "margin-mse")
    check_label_shape([[9.0, 2.0, 1.0]], 2, "kl-div")
    with pytest.raises(ValueError, match="at least one negative"):
        check_label_shape([0.7], 0, "margin-mse")
    with pytest.raises(ValueError, match="needs a list of 3 teacher scores"):
        check_label_shape([0.7], 2, "kl-div")
    with pytest.raises(ValueError, match="margin per negative"):
        check_label_shape([0.7], 2, "margin-mse")


def test_cli_reports_bad_data_without_a_traceback(tmp_path, capsys):
    from pipelines import cli

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "what", "answer_text": "no positive column"}])
    code = cli.main(
        [
            "finetune",
            "--arch",
            "splade",
            "--train",
            str(bad),
            "--out",
            str(tmp_path / "m"),
            "--columns",
            "positive=answer",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "'answer' named in the column mapping" in err
    assert "Traceback" not in err
    code = cli.main(
        ["finetune", "--arch", "csr", "--train", str(bad), "--out", str(tmp_path / "m"), "--then-index", str(bad)]
    )
    assert code == 2 and "--then-index needs --index" in capsys.readouterr().err


# --------------------------------------------------------------------------- tiny real runs


def _check_run(report: dict, arch: str) -> None:
    losses = [loss for _, loss in report["training"]["losses"]]
    assert len(losses) == report["training"]["steps"] and losses[-1] < losses[0], losses
    assert report["training"]["reload_max_abs_diff"] <= 1e-5
    card = Path(report["output"], "README.md").read_text()
    assert "## Evaluation on" in card and "| before |" in card and "| after |" in card
    assert 0.0 <= report["ndcg10_p_value"] <= 1.0 and "paired randomisation test" in card
    assert card.startswith("---\n")  # sentence-transformers' metadata block stays first
    for side in ("before", "after"):
        res = report[side]
        assert 0.0 <= res["metrics"]["nDCG@10"] <= 1.0 and res["queries"] == 3 and res["documents"] == N_DOCS
        assert res["query_active_dims"] > 0 and res["document_active_dims"] > 0
    from hybrid_search.encoders import SparseEncoder

    assert SparseEncoder.load(report["output"]).architecture == arch


def test_tiny_splade_run_on_labelled_pairs(tmp_path, tiny_beir):
    pairs, _ = mine_pairs(
        [
            Document(str(i), json.loads(line)["text"])
            for i, line in enumerate((tiny_beir / "corpus.jsonl").read_text().splitlines())
        ],
        MiningConfig(seed=3),
    )
    train = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": p["query"], "positive": p["positive"]} for p in pairs])
    report = finetune(tiny_config(tmp_path, "splade", str(train), eval=str(tiny_beir)))
    assert report["data"]["kind"] == "labelled" and report["training"]["loss"].startswith("SpladeLoss")
    _check_run(report, "splade")


def test_tiny_csr_run_self_supervised(tmp_path, tiny_beir):
    report = finetune(
        tiny_config(tmp_path, "csr", str(tiny_beir / "corpus.jsonl"), eval=str(tiny_beir), csr_k=16, csr_hidden_dim=256)
    )
    assert report["training"]["loss"].startswith("CSRLoss")
    _check_run(report, "csr")
    assert report["after"]["document_active_dims"] <= 16


def test_tiny_inference_free_run_resumes_and_hands_off_to_an_index(tmp_path, tiny_beir, capsys):
    from pipelines import cli
    from pipelines.finetune import run_finetune

    corpus = str(tiny_beir / "corpus.jsonl")
    first = run_finetune(
        tiny_config(tmp_path, "inference-free", corpus, eval=str(tiny_beir), max_steps=2, static_learning_rate=0.05)
    )
    assert first["training"]["steps"] == 2
    with pytest.raises(FileExistsError, match="--resume"):
        finetune(tiny_config(tmp_path, "inference-free", corpus))
    # Resume from checkpoint-2 and train on to step 4, then index the corpus with the new model.
    cfg = tiny_config(
        tmp_path, "inference-free", corpus, eval=str(tiny_beir), resume=True, max_steps=4, static_learning_rate=0.05
    )
    report = run_finetune(cfg, then_index=corpus, index=str(tmp_path / "index"), dense=None)
    assert capsys.readouterr().out == ""  # training logs stay off stdout (the CLI prints its report there)
    assert report["training"]["resumed_from"].endswith("checkpoint-2") and report["training"]["steps"] == 4
    assert report["before"] == first["before"]  # read back, not recomputed
    _check_run(report, "inference-free")
    assert report["after"]["query_active_dims"] == report["before"]["query_active_dims"]  # no query expansion

    # The index records the model by its folder; `hybrid-search search` loads it from there.
    from indexers import open_index

    with open_index(str(tmp_path / "index")) as index:
        assert index.meta.sparse["name"] == report["output"] and index.count() == N_DOCS
    capsys.readouterr()
    code = cli.main(["search", "tides and the moon", "--index", str(tmp_path / "index"), "--mode", "sparse", "--json"])
    assert code == 0 and len(json.loads(capsys.readouterr().out)["hits"]) > 0
