"""Distillation from the hybrid teacher (``finetune --teacher hybrid``): the margins by hand, their scale, and a
tiny real run through the command line on a BEIR folder built from the demo corpus the repository ships."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_search.training import FinetuneConfig, NegativeConfig, finetune
from hybrid_search.training.teacher import fit_scale, scale_labels, scores_of, unit_margins
from tests.paths import DEMO_CORPUS
from tests.training.demo_beir import write_demo_beir

N_TRAIN = 10
N_TEST = 4


@pytest.fixture(scope="module")
def demo_beir(tmp_path_factory) -> Path:
    """Demo passages (cut to 40 words) in BEIR layout; each passage's title is its query, ``train`` and ``test``."""
    return write_demo_beir(tmp_path_factory.mktemp("teacher-beir"), N_TRAIN, N_TEST)


# --------------------------------------------------------------------------- margins by hand


def test_margins_are_min_max_normalised_per_channel_averaged_and_one_per_negative():
    # One query over 5 documents; the positive is doc 0. The channels' scales differ by 50x.
    scores = {
        "sparse": np.array([[30.0, 20.0, 35.0, 10.0, 0.0]]),
        "dense": np.array([[0.70, 0.30, 0.50, 0.60, 0.20]]),
    }
    candidates = [0, 1, 2, 3]  # doc 4 is outside the query's candidates: it does not set the bounds
    margins = unit_margins(scores, 0, scores_of(scores, 0, 0), [1, 2, 3], candidates)
    assert len(margins) == 3  # one per negative
    # sparse over [10, 35]: pos 0.8, negatives 0.4, 1.0, 0.0; dense over [0.3, 0.7]: pos 1, negatives 0, 0.5, 0.75.
    expected = [((0.8 - 0.4) + 1.0) / 2, ((0.8 - 1.0) + 0.5) / 2, ((0.8 - 0.0) + 0.25) / 2]
    assert margins == pytest.approx(expected)
    # Sign: a negative both channels rank above the positive gets a negative margin.
    flipped = unit_margins(scores, 0, {"sparse": 10.0, "dense": 0.3}, [2], candidates)
    assert flipped[0] < 0
    # A positive outside the candidates widens the bounds instead of leaving [-1, 1].
    low = unit_margins(scores, 0, {"sparse": -5.0, "dense": 0.0}, [1, 2, 3], candidates)
    assert all(-1.0 <= m <= 0.0 for m in low)
    # A channel that cannot tell its candidates apart adds nothing (but still counts in the mean).
    flat = {"sparse": np.ones((1, 5)), "dense": scores["dense"]}
    assert unit_margins(flat, 0, scores_of(flat, 0, 0), [1], candidates) == pytest.approx([1.0 / 2])


def test_scale_matches_the_rms_of_the_student_margins_and_is_applied_to_every_label():
    teacher = np.array([[0.5, 0.25], [-0.25, 0.5]])
    student = np.array([[10.0, 4.0], [-2.0, 8.0]])
    fit = fit_scale(student, teacher)
    assert fit["scale"] == pytest.approx(np.sqrt(np.mean(student**2)) / np.sqrt(np.mean(teacher**2)))
    assert fit["margins"] == 4 and fit["teacher_wrong_share"] == fit["student_wrong_share"] == 0.25
    assert 0 < fit["correlation"] <= 1
    # Scaled, the teacher's margins have the student's RMS; signs and ratios are the teacher's.
    import datasets

    rows = datasets.Dataset.from_dict({"query": ["a", "b"], "label": teacher.tolist()})
    scaled = np.asarray(scale_labels(rows, fit["scale"])["label"])
    assert np.sqrt(np.mean(scaled**2)) == pytest.approx(fit["student_margin_rms"])
    assert scaled == pytest.approx(teacher * fit["scale"])
    with pytest.raises(ValueError, match="every teacher margin is 0"):
        fit_scale(student, np.zeros_like(teacher))
    with pytest.raises(ValueError, match="as many"):
        fit_scale(student[:1], teacher)


# --------------------------------------------------------------------------- a tiny run


def test_tiny_finetune_with_the_hybrid_teacher_through_the_cli(tmp_path, demo_beir, capsys):
    from pipelines import cli

    out = tmp_path / "if-teacher"
    argv = ["finetune", "--arch", "inference-free", "--base", "splade-tiny", "--teacher", "hybrid"]
    argv += ["--train", str(demo_beir), "--train-split", "train", "--eval", str(demo_beir), "--eval-split", "test"]
    argv += ["--out", str(out), "--hard-negatives", "2", "--max-steps", "2", "--batch-size", "4"]
    argv += ["--max-seq-length", "32", "--validation-size", "0", "--device", "cpu", "--no-progress", "--no-cache"]
    argv += ["--json", "--pseudo-query-ratio", "0.5"]  # 5 mined pseudo-queries beside the 10 labelled claims
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    teacher, fit = report["teacher"], report["teacher"]["fit"]
    assert teacher["kind"] == "hybrid" and teacher["channels"] == ["sparse", "dense"]
    assert report["data"]["pseudo_queries"] == 5 and report["data"]["examples"] == 15
    # Qrels positives are corpus documents: their scores are reused; only the mined pairs' positives (passages
    # less their pseudo-query, unless the sentence was kept) are scored again.
    assert 0 < teacher["positives_rescored"] <= 5
    assert fit["margins"] == 2 * report["data"]["examples"] and fit["scale"] > 0
    assert report["training"]["loss"] == "SpladeLoss(SparseMarginMSELoss)"
    assert report["data"]["columns"] == ["query", "positive", "negative", "negative_2", "label"]
    assert report["after"]["queries"] == N_TEST and report["training"]["steps"] == 2
    # The saved rows carry the margins in [-1, 1], one per negative; training saw them times the scale.
    import datasets

    saved = datasets.load_from_disk(str(out / "train-data"))
    assert all(len(label) == 2 and all(-1 <= m <= 1 for m in label) for label in saved["label"])
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "`--teacher hybrid`" in card and f"{fit['scale']:.3f}" in card
    assert "5 pseudo-query pairs mined from their documents (`--pseudo-query-ratio 0.5`" in card
    from hybrid_search.encoders import SparseEncoder

    assert SparseEncoder.load(str(out)).encode_document(["Kepler's laws of planetary motion."])[0].nnz > 0


def test_teacher_rescores_mined_positives_and_refuses_what_it_cannot_label(tmp_path, demo_beir):
    from hybrid_search.training.negatives import mine_hard_negatives
    from hybrid_search.types import Document

    texts = [json.loads(line) for line in DEMO_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [Document(id=d["_id"], text=" ".join(d["text"].split()[:40])) for d in texts[:12]]
    # A mined pair's positive is its passage less the pseudo-query: it is scored again, as trained on.
    import datasets

    rows = datasets.Dataset.from_dict(
        {"query": [d.text.split(".")[0] for d in docs[:3]], "positive": [d.text[len(d.text) // 3 :] for d in docs[:3]]}
    )
    mined, stats = mine_hard_negatives(
        rows, docs, "demo-12", NegativeConfig(num_negatives=1, dense_model=None), sources=[0, 1, 2], teacher="hybrid"
    )
    assert stats["teacher"]["positives_rescored"] == 3 and stats["teacher"]["channels"] == ["sparse"]
    assert len(mined["label"]) == mined.num_rows and all(len(label) == 1 for label in mined["label"])
    # hybrid+bm25 adds a lexical channel to the same mined rows: the same negatives, other margins, still in [-1, 1].
    with_bm25, stats_bm25 = mine_hard_negatives(
        rows,
        docs,
        "demo-12",
        NegativeConfig(num_negatives=1, dense_model=None),
        sources=[0, 1, 2],
        teacher="hybrid+bm25",
    )
    assert stats_bm25["teacher"]["channels"] == ["sparse", "bm25"] and stats_bm25["teacher"]["kind"] == "hybrid+bm25"
    assert with_bm25["negative"] == mined["negative"] and stats_bm25["teacher"]["positives_rescored"] == 3
    assert all(-1 <= m[0] <= 1 for m in with_bm25["label"]) and with_bm25["label"] != mined["label"]
    with pytest.raises(ValueError, match="unknown teacher 'bm25'"):  # refused before any model is loaded
        mine_hard_negatives(rows, docs, "demo-12", NegativeConfig(num_negatives=1), sources=[0, 1, 2], teacher="bm25")
    base = {"arch": "inference-free", "base": "splade-tiny", "train": str(demo_beir), "out": str(tmp_path / "x")}
    with pytest.raises(ValueError, match="needs --arch splade or inference-free"):
        finetune(FinetuneConfig(**{**base, "arch": "csr", "base": "minilm"}, teacher="hybrid"))
    with pytest.raises(ValueError, match="margin-mse"):
        finetune(FinetuneConfig(**base, teacher="hybrid", distill="kl-div"))
    with pytest.raises(ValueError, match="unknown teacher"):
        finetune(FinetuneConfig(**base, teacher="cross-encoder"))
    with pytest.raises(ValueError, match="hard-negatives >= 1"):
        finetune(FinetuneConfig(**base, teacher="hybrid", negatives=NegativeConfig(num_negatives=0), device="cpu"))
