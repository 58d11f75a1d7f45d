"""Points between a fine-tune and its start: ``weights_on_line``, ``rebuild_start``, ``FinetuneConfig.from_dict``
and ``benchmarks/weight_line.py`` on a tiny inference-free run over demo passages in BEIR layout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from hybrid_search.training import FinetuneConfig, NegativeConfig, finetune, weights_on_line
from tests.paths import REPO
from tests.training.demo_beir import write_demo_beir

sys.path.insert(0, str(REPO / "benchmarks"))

from weight_line import main, weight_line  # noqa: E402


def test_weights_on_line_interpolates_floats_keeps_integer_buffers_and_refuses_other_models():
    start = {"w": torch.zeros(3), "ids": torch.arange(3)}
    end = {"w": torch.tensor([2.0, 4.0, -2.0]), "ids": torch.arange(3) + 5}
    assert torch.equal(weights_on_line(start, end, 0.0)["w"], start["w"])
    assert torch.equal(weights_on_line(start, end, 1.0)["w"], end["w"])
    assert torch.equal(weights_on_line(start, end, 0.5)["w"], torch.tensor([1.0, 2.0, -1.0]))
    assert torch.equal(weights_on_line(start, end, 2.0)["w"], torch.tensor([4.0, 8.0, -4.0]))
    assert torch.equal(weights_on_line(start, end, 0.5)["ids"], end["ids"])
    with pytest.raises(ValueError, match="do not share their parameters"):
        weights_on_line({"w": start["w"]}, end, 0.5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    data = write_demo_beir(tmp_path_factory.mktemp("demo-beir"), 10, 5, test_header=False)
    cfg = FinetuneConfig(
        arch="inference-free",
        base="splade-tiny",
        train=str(data),
        eval=str(data),
        out=str(tmp_path_factory.mktemp("runs") / "inference-free"),
        batch_size=4,
        max_steps=3,
        # Large steps, so that the three steps move the rankings and the two ends differ.
        learning_rate=5e-3,
        static_learning_rate=0.5,
        max_seq_length=32,
        warmup_ratio=0.0,
        progress=False,
        seed=1,
        device="cpu",
        negatives=NegativeConfig(num_negatives=None, dense_model=None),
    )
    return cfg, finetune(cfg)


def test_a_recorded_config_loads_back_and_ignores_keys_it_does_not_know(tiny_run):
    from hybrid_search.training.finetune import with_recipe

    cfg, report = tiny_run
    recorded = with_recipe(cfg)  # the run records its config with the recipe's epochs and negatives filled in
    assert recorded != cfg and FinetuneConfig.from_dict(report["config"]) == recorded
    assert FinetuneConfig.from_dict({**report["config"], "a_future_flag": 1}) == recorded


def test_the_line_ends_reproduce_the_run_and_its_midpoint_lies_between(tiny_run, capsys):
    _, report = tiny_run
    before, after = report["before"], report["after"]
    assert before["extra"]["per_query_ndcg10"] != after["extra"]["per_query_ndcg10"]  # the ends differ
    result = weight_line(Path(report["output"]), [0.0, 0.5, 1.0], cache=False, progress=False)
    rows = {row["lambda"]: row for row in result["rows"]}
    assert list(rows) == [0.0, 0.5, 1.0] and all(row["source"] == "judged" for row in rows.values())
    # The start is rebuilt exactly (inference-free: the training corpus's IDF), and the saved model is the end.
    assert rows[0.0]["nDCG@10"] == pytest.approx(before["metrics"]["nDCG@10"])
    assert rows[0.0]["document_active_dims"] == pytest.approx(before["document_active_dims"])
    assert rows[1.0]["nDCG@10"] == pytest.approx(after["metrics"]["nDCG@10"])
    assert rows[1.0]["document_active_dims"] == pytest.approx(after["document_active_dims"])
    assert rows[1.0]["p_vs_finetuned"] is None and 0 <= rows[0.5]["p_vs_finetuned"] <= 1
    assert rows[0.5]["document_active_dims"] not in (
        rows[0.0]["document_active_dims"],
        rows[1.0]["document_active_dims"],
    )
    # The script: the run's own ends from its report, judged points between, as a table or as JSON.
    assert main([report["output"], "--lambdas", "0.5", "--no-cache", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(row["lambda"], row["source"]) for row in printed["rows"]] == [(0.0, "run"), (0.5, "judged"), (1.0, "run")]
    assert printed["rows"][1]["nDCG@10"] == pytest.approx(rows[0.5]["nDCG@10"])
    assert main([report["output"], "--lambdas", "0.5", "--no-cache"]) == 0
    assert "| 0.5 |" in capsys.readouterr().out


def test_the_script_refuses_a_folder_without_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path)])
    assert stopped.value.code == 2 and "no finetune.json" in capsys.readouterr().err
