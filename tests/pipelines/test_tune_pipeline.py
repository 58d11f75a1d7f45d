"""``hybrid-search tune`` end to end on a tiny BEIR folder written from the shipped demo corpus: it learns on
train only, reports on test, caches its rankings, saves into an index that ``search`` then follows, and
refuses what it cannot do with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hybrid_search.tuning import FusionSetting, fusion_defaults
from pipelines.cli import DATA_DIR, main
from pipelines.tune import TuneOptions, run_tune

# (query, relevant demo ids): judged by the documents' titles.
JUDGED = [
    ("how do planets orbit the sun", ["demo-001", "demo-003", "demo-005"]),
    ("python programming language", ["demo-031", "demo-040"]),
    ("what is the mercury planet made of", ["demo-002", "demo-008"]),
    ("treatment for high blood pressure", ["demo-022", "demo-029"]),
    ("who invented the telephone", ["demo-041", "demo-042", "demo-043"]),
    ("java coffee", ["demo-011"]),
    ("moons of jupiter", ["demo-004"]),
    ("brewing espresso at home", ["demo-012"]),
    ("how vaccines were discovered", ["demo-026"]),
    ("version control for source code", ["demo-036"]),
    ("first moon landing", ["demo-050"]),
    ("tides and the moon", ["demo-006"]),
    ("insulin discovery", ["demo-027"]),
    ("mercury pollution from coal", ["demo-073", "demo-023"]),
    ("queen lead singer", ["demo-063"]),
    ("bass fishing tournaments", ["demo-054"]),
    ("sea level rise from melting ice", ["demo-077", "demo-076"]),
    ("fermented cabbage", ["demo-020"]),
    ("who composed the ninth symphony", ["demo-069"]),
    ("the greenhouse effect", ["demo-071"]),
]


def _write_beir(root: Path, splits: dict[str, range]) -> Path:
    root.mkdir(parents=True)
    shutil.copy(DATA_DIR / "demo_corpus.jsonl", root / "corpus.jsonl")
    with (root / "queries.jsonl").open("w") as fh:
        for i, (text, _) in enumerate(JUDGED):
            fh.write(json.dumps({"_id": f"q{i}", "text": text}) + "\n")
    (root / "qrels").mkdir()
    for split, rows in splits.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\t{d}\t1" for i in rows for d in JUDGED[i][1]]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    return _write_beir(tmp_path_factory.mktemp("tune") / "demo-beir", {"train": range(14), "test": range(14, 20)})


@pytest.fixture(scope="module")
def sparse_index(tmp_path_factory, splade) -> str:
    from pipelines.indexing import index_corpus

    location = str(tmp_path_factory.mktemp("tune-index") / "index")
    index_corpus(str(DATA_DIR / "demo_corpus.jsonl"), location, sparse=splade, dense=None, progress=False)
    return location


@pytest.fixture(scope="module")
def tuned(beir, sparse_index, tmp_path_factory):
    # Sparse + BM25 only (the index has no dense channel), so the test encodes nothing heavy.
    work = tmp_path_factory.mktemp("tune-work")
    options = TuneOptions(
        str(beir),
        split="train",
        eval_split="test",
        index=sparse_index,
        folds=3,
        out=str(work / "out"),
        cache=str(work / "emb"),
        progress=False,
    )
    return options, run_tune(options)


def test_tune_learns_on_train_and_reports_on_test(tuned):
    _, report = tuned
    assert report["dataset"]["train_queries"] == 14 and report["dataset"]["eval_queries"] == 6
    chosen = report["chosen"]
    assert set(chosen["setting"]["channels"]) <= {"sparse", "bm25"}
    assert 0 < chosen["cv_ndcg10"] <= 1 and chosen["cv_std"] >= 0
    assert report["settings_tried"] > 100 and report["within_noise"] >= 1
    # The chosen setting is within one standard error of the best, and no simpler setting is.
    assert chosen["gap_to_best"] <= chosen["se"] + 1e-12
    assert report["best"]["cv_ndcg10"] >= max(row["cv_ndcg10"] for row in report["top"]) - 1e-12
    rows = report["eval"]["rows"]
    assert {"sparse alone", "bm25 alone", "tuned"} <= set(rows) and "default RRF" not in rows
    assert report["eval"]["best_single"] in ("sparse alone", "bm25 alone")
    assert all(0 <= row["metrics"]["nDCG@10"] <= 1 for row in rows.values())
    if chosen["setting"]["method"] is None:  # a channel alone: the honest outcome says so
        assert "no fusion beats" in report["recommendation"]


def test_the_tuned_fusion_is_saved_in_the_index_and_search_follows_it(tuned, sparse_index, capsys):
    from indexers import open_index

    _, report = tuned
    index = open_index(sparse_index)
    try:
        fusion = index.meta.fusion
    finally:
        index.close()
    assert fusion["learned"]["split"] == "train" and fusion["learned"]["dataset"] == "demo-beir"
    assert fusion["learned"]["cv_ndcg10"] == pytest.approx(report["chosen"]["cv_ndcg10"], abs=1e-6)
    setting = FusionSetting.from_record(fusion)
    assert setting.to_record() == report["chosen"]["setting"]
    assert main(["search", "mercury planet", "--index", sparse_index, "--json", "-k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == fusion_defaults(type("M", (), {"fusion": fusion})())["mode"]
    # A flag overrides the learned fusion.
    assert main(["search", "mercury planet", "--index", sparse_index, "--json", "--mode", "bm25"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "bm25"


def test_a_rerun_reads_the_cached_rankings(tuned):
    options, first = tuned
    again = run_tune(TuneOptions(**{**options.__dict__, "index": None, "sparse": "splade-tiny", "dense": "none"}))
    assert again["cache"]["rankings"] is True and first["cache"]["rankings"] is False
    assert again["chosen"] == first["chosen"]


def test_a_collection_with_one_split_is_tuned_by_cv_alone_or_refused_clearly(tmp_path, capsys):
    one = _write_beir(tmp_path / "one-split", {"test": range(20)})
    assert (
        main(
            [
                "tune",
                "--dataset",
                str(one),
                "--split",
                "train",
                "--sparse",
                "none",
                "--dense",
                "none",
                "--no-progress",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "qrels file for split 'train'" in capsys.readouterr().err
    assert (
        main(
            [
                "tune",
                "--dataset",
                str(one),
                "--split",
                "test",
                "--eval-split",
                "test",
                "--sparse",
                "none",
                "--dense",
                "none",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "must differ" in capsys.readouterr().err
    # BM25 needs no model: CV on the only split still chooses (a single channel here).
    assert (
        main(
            [
                "tune",
                "--dataset",
                str(one),
                "--split",
                "test",
                "--sparse",
                "none",
                "--dense",
                "none",
                "--no-progress",
                "--out",
                str(tmp_path / "o"),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["chosen"]["setting"]["channels"] == ["bm25"] and "only channel" in report["recommendation"]


def test_the_numpy_ndcg_equals_ir_measures_on_every_query_of_real_rankings(tuned):
    """The grid is scored by the numpy kernel; on the real channel rankings the tune cached (SPLADE-tiny and
    BM25 over the demo corpus), it agrees with ir_measures on every query within 1e-9, for every method."""
    from hybrid_search.tuning import (
        CandidateTable,
        NdcgScorer,
        candidate_space,
        fused_top,
        score_settings,
    )
    from pipelines.tune import read_rankings

    options, report = tuned
    (path,) = Path(options.out).glob("rankings-*.npz")
    rankings = read_rankings(path).as_rankings()
    qrels = {f"q{i}": {d: 1 for d in JUDGED[i][1]} for i in range(20)}
    qrels["q0"] = {"demo-001": 2, "demo-003": 1, "demo-005": 0}  # graded, and a judged non-relevant hit
    table = CandidateTable.build(rankings, list(qrels))
    settings = candidate_space(list(rankings))[::7]
    assert {s.method for s in settings} == {None, "rrf", "dbsf", "convex", "zscore"}
    kernel = score_settings(table, settings, qrels)
    scorer = NdcgScorer(qrels)
    for i, setting in enumerate(settings):
        assert np.max(np.abs(kernel[i] - scorer(table.qids, fused_top(table, setting)))) <= 1e-9, setting.label
    assert kernel.max() > 0.5  # real retrieval, not a table of zeros
    # tune re-scored every reported setting with ir_measures and found the same values.
    assert report["scoring"]["max_abs_diff"] <= 1e-9 and report["scoring"]["settings_rescored_by_ir_measures"] > 5


def test_the_ranking_cache_is_named_from_the_model_folders_without_loading_them(tmp_path):
    """A warm tune must not load the models to find its cached rankings: the key comes from each model's
    folder and files, and any change to a file changes it."""
    from hybrid_search.models import resolve
    from pipelines.tune import _Models

    folder = tmp_path / "my-splade"
    shutil.copytree(resolve("splade-tiny").path, folder)
    models = _Models(TuneOptions("unused", sparse=str(folder), dense="none"))
    first = models.keys()
    assert models._loaded is None and first["dense"] is None
    assert first["sparse"]["folder"] == str(folder.resolve()) and first["sparse"]["files"]
    assert models.keys() == first
    (folder / "config.json").write_text((folder / "config.json").read_text() + "\n")
    assert models.keys() != first and models._loaded is None


def test_a_command_registers_only_its_own_module(tmp_path):
    """``hybrid-search tune`` does not import torch before it needs a model (every command module registered
    would make each command pay seconds for bench's and finetune's imports); ``--help`` still lists all."""
    import subprocess
    import sys

    probe = (
        "import sys; from pipelines.cli import build_parser; "
        "p = build_parser(sys.argv[1:]); "
        "print(sorted(p._subparsers._group_actions[0].choices), 'torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]

    def run(*argv):
        command = [sys.executable, "-c", probe, *argv]
        return subprocess.run(command, capture_output=True, text=True, cwd=root, check=True).stdout

    assert run("tune", "--dataset", "x").strip().endswith("False")
    assert "'tune'" in run("tune") and "'bench'" not in run("tune")
    everything = run("--help")
    assert all(f"'{c}'" in everything for c in ("bench", "ui", "finetune", "delete", "optimize", "tune", "explain"))
