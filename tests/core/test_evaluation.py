"""Tests of hybrid_search.dataset, .metrics and .trec: loaders, metrics, significance and TREC files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hybrid_search.dataset import (
    NANOBEIR,
    DatasetError,
    RetrievalDataset,
    load_beir,
    load_dataset,
    load_hf_dataset,
    resolve_nanobeir,
)
from hybrid_search.metrics import evaluate, evaluate_per_query, measures, paired_significance
from hybrid_search.trec import read_trec_qrels, read_trec_run, write_trec_qrels, write_trec_run
from hybrid_search.types import Document
from tests.paths import MSMARCO as DL19
from tests.paths import missing

# --------------------------------------------------------------------------- helpers


def _write_beir(root: Path, qrels_lines: list[str], split: str = "test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    docs = [
        {"_id": "d1", "title": "Cats", "text": "cats purr", "metadata": {"src": "x"}},
        {"_id": "d2", "title": "", "text": "dogs bark"},
        {"_id": "d3", "title": "Fish", "text": "fish swim"},
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n\n", encoding="utf-8")
    queries = [{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "barking"}, {"_id": "q3", "text": "unjudged"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n", encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text("\n".join(qrels_lines) + "\n", encoding="utf-8")
    return root


def _write_hub_layout(root: Path, *, with_score: bool) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = {
        "corpus": pa.table({"_id": ["d1", "d2", "d3"], "text": ["cats purr", "dogs bark", "fish swim"]}),
        "queries": pa.table({"_id": ["q1", "q2"], "text": ["purring", "barking"]}),
        "qrels": pa.table(
            {"query-id": ["q1", "q2", "q2"], "corpus-id": ["d1", "d2", "d3"]}
            | ({"score": [2, 1, 0]} if with_score else {})
        ),
    }
    for subset, table in tables.items():
        (root / subset).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / subset / "train-00000-of-00001.parquet")
    return root


# --------------------------------------------------------------------------- BEIR loading


def test_load_beir_real_dl19_folder() -> None:
    if not (DL19 / "corpus.jsonl").is_file():
        pytest.skip(missing(DL19, "the DL19 data"))
    ds = load_beir(DL19)
    assert ds.name == "msmarco-dl19-5k"
    assert len(ds.corpus) == 5000
    assert len(ds.queries) == 50
    assert len(ds.judged_queries) == 43
    assert sum(len(v) for v in ds.qrels.values()) == 4102
    assert {g for docs in ds.qrels.values() for g in docs.values()} == {1, 2, 3}
    assert all(isinstance(d, Document) for d in ds.corpus.values())
    assert len(ds.fingerprint()) == 16
    assert load_dataset(str(DL19)).fingerprint() == ds.fingerprint()


@pytest.mark.parametrize("header", [True, False])
def test_load_beir_with_and_without_header(tmp_path: Path, header: bool) -> None:
    lines = (["query-id\tcorpus-id\tscore"] if header else []) + ["q1\td1\t2", "", "q2\td2\t1", "q2\td3\t0"]
    ds = load_beir(_write_beir(tmp_path / "ds", lines))
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d3": 0}}
    assert ds.judged_queries == ["q1", "q2"]
    assert ds.corpus["d1"] == Document(id="d1", text="cats purr", title="Cats", metadata={"src": "x"})
    assert ds.queries["q3"] == "unjudged"


def test_load_beir_binary_qrels_and_other_split(tmp_path: Path) -> None:
    ds = load_beir(_write_beir(tmp_path / "ds", ["q1\td1\t1", "q2\td2\t1"], split="dev"), split="dev")
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def test_load_beir_missing_qrels_file(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "ds", ["q1\td1\t1"])
    with pytest.raises(DatasetError, match=r"qrels.*train\.tsv"):
        load_beir(root, split="train")
    (root / "corpus.jsonl").unlink()
    with pytest.raises(DatasetError, match="corpus.jsonl"):
        load_beir(root)


def test_fingerprint_is_order_independent_and_content_sensitive() -> None:
    docs = [Document("a", "x"), Document("b", "y")]
    one = RetrievalDataset("a", {d.id: d for d in docs}, {}, {})
    two = RetrievalDataset("b", {d.id: d for d in reversed(docs)}, {}, {})
    three = RetrievalDataset("c", {"a": Document("a", "x"), "b": Document("b", "z")}, {}, {})
    assert one.fingerprint() == two.fingerprint() != three.fingerprint()


# --------------------------------------------------------------------------- Hub layout


@pytest.mark.parametrize("with_score", [True, False])
def test_load_hf_dataset_from_local_hub_layout(tmp_path: Path, with_score: bool) -> None:
    root = _write_hub_layout(tmp_path / "NanoToy", with_score=with_score)
    ds = load_hf_dataset(root)
    assert ds.name == "NanoToy"
    assert set(ds.corpus) == {"d1", "d2", "d3"}
    assert ds.corpus["d2"].text == "dogs bark"
    assert ds.queries == {"q1": "purring", "q2": "barking"}
    if with_score:
        expected = {"q1": {"d1": 2}, "q2": {"d2": 1, "d3": 0}}
    else:  # NanoBEIR-style binary qrels without a score column
        expected = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}}
    assert ds.qrels == expected
    via_dispatch = load_dataset(str(root))
    assert via_dispatch.qrels == ds.qrels and via_dispatch.fingerprint() == ds.fingerprint()


def test_nanobeir_names() -> None:
    assert len(NANOBEIR) == 13
    assert NANOBEIR["nano-msmarco"] == "zeta-alpha-ai/NanoMSMARCO"
    assert NANOBEIR["nano-fiqa2018"] == "zeta-alpha-ai/NanoFiQA2018"
    for spelling in ("nano-msmarco", "NanoMSMARCO", "nano_msmarco", "zeta-alpha-ai/NanoMSMARCO"):
        assert resolve_nanobeir(spelling) == "nano-msmarco"
    assert resolve_nanobeir("msmarco-dl19-5k") is None


def test_load_dataset_offline_hub_raises_helpful_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets.config
    import huggingface_hub.constants

    # The flags are read at import time, so patch the module constants as well as the env.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    # An empty cache, so a dataset cached by an earlier real download cannot satisfy it.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset("nano-msmarco")
    message = str(info.value)
    assert "could not be downloaded" in message
    assert "BEIR folder" in message and "--dataset" in message


def test_load_dataset_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="BEIR folder"):
        load_dataset("definitely-not-a-dataset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither a BEIR folder"):
        load_dataset(str(tmp_path / "empty"))


# --------------------------------------------------------------------------- metrics


def test_measure_objects_match_ir_measures_syntax() -> None:
    assert {k: str(v) for k, v in measures(2).items()} == {
        "nDCG@10": "nDCG@10",
        "MRR@10": "RR(rel=2)@10",
        "MAP": "AP(rel=2)",
        "R@100": "R(rel=2)@100",
    }
    assert list(measures(1)) == ["nDCG@10", "MRR@10", "MAP", "R@100"]


def test_perfect_run_scores_one() -> None:
    qrels = {"q1": {"d1": 3, "d2": 1}, "q2": {"d5": 2}}
    run = {"q1": {"d1": 9.0, "d2": 5.0, "dx": 1.0}, "q2": {"d5": 0.3, "dy": 0.1}}
    for t in (1, 2):  # at threshold 2, d2 is not relevant, but the ranking stays ideal
        assert evaluate(run, qrels, rel_threshold=t) == pytest.approx(dict.fromkeys(measures(t), 1.0))


def test_rr_respects_threshold() -> None:
    qrels = {"q1": {"a": 1, "b": 2}}
    run = {"q1": {"a": 2.0, "b": 1.0, "c": 0.5}}
    assert evaluate(run, qrels, rel_threshold=1)["MRR@10"] == pytest.approx(1.0)
    assert evaluate(run, qrels, rel_threshold=2)["MRR@10"] == pytest.approx(0.5)
    assert evaluate(run, qrels, rel_threshold=2)["MAP"] == pytest.approx(0.5)


def test_missing_queries_count_as_zero_and_unjudged_are_ignored() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "empty": {}}
    run = {"q1": {"a": 1.0}, "q_unjudged": {"a": 1.0}}
    per_query = evaluate_per_query(run, qrels)
    assert per_query["MRR@10"] == {"q1": 1.0, "q2": 0.0}
    assert per_query["nDCG@10"] == {"q1": 1.0, "q2": 0.0}
    agg = evaluate(run, qrels)
    for name, values in per_query.items():
        assert agg[name] == pytest.approx(sum(values.values()) / len(values))
    assert agg["MRR@10"] == pytest.approx(0.5)
    assert evaluate({}, qrels) == dict.fromkeys(measures(1), 0.0)


# --------------------------------------------------------------------------- significance


def test_paired_significance() -> None:
    a = {f"q{i}": (i % 7) / 7 for i in range(30)}
    assert paired_significance(a, dict(a)) == 1.0
    better = {q: min(1.0, v + 0.2 + 0.01 * (i % 3)) for i, (q, v) in enumerate(a.items())}
    p = paired_significance(better, a, n_resamples=2000, seed=1)
    assert 0.0 <= p < 0.05
    assert paired_significance(better, a, n_resamples=2000, seed=1) == p  # seeded → reproducible
    noisy = {q: v + (0.05 if i % 2 else -0.05) for i, (q, v) in enumerate(a.items())}
    assert paired_significance(noisy, a, n_resamples=2000) > 0.5
    with pytest.raises(ValueError):
        paired_significance({"x": 1.0}, {"y": 1.0})


# --------------------------------------------------------------------------- TREC files


def test_trec_run_round_trip(tmp_path: Path) -> None:
    run = {"q2": {"d1": 0.5, "d2": 1.25}, "q1": {"d9": -3.0, "d3": 7.0, "d4": 7.0}}
    path = tmp_path / "runs" / "sys.trec"
    write_trec_run(run, path, tag="hybrid-rrf")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d3 1 7.0 hybrid-rrf"
    assert lines[1].startswith("q1 Q0 d4 2 ")
    assert read_trec_run(path) == run
    with pytest.raises(ValueError):
        write_trec_run(run, path, tag="two words")


def test_trec_qrels_round_trip(tmp_path: Path) -> None:
    qrels = {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    write_trec_qrels(qrels, tmp_path / "qrels.txt")
    assert read_trec_qrels(tmp_path / "qrels.txt") == qrels
    assert not math.isnan(evaluate({"q1": {"d1": 1.0}}, qrels)["nDCG@10"])
