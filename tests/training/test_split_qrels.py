"""``benchmarks/split_qrels.py``: a qrels split divided by query into two BEIR splits, for validation by query."""

from __future__ import annotations

import sys

import pytest

from hybrid_search.dataset import load_beir
from tests.paths import REPO
from tests.training.demo_beir import write_demo_beir

sys.path.insert(0, str(REPO / "benchmarks"))

from split_qrels import main  # noqa: E402


@pytest.mark.parametrize("header", [True, False])
def test_split_by_query_is_disjoint_complete_stable_and_loads(tmp_path, capsys, header):
    source = write_demo_beir(tmp_path / "demo", 12, 4, test_header=header)
    assert main([str(source), "--split", "test", "--every", "2", "--out", str(tmp_path / "a")]) == 0
    assert main([str(source), "--split", "train", "--every", "3", "--out", str(tmp_path / "a")]) == 0
    whole = load_beir(source, "train")
    kept, held = load_beir(tmp_path / "a", "trainA"), load_beir(tmp_path / "a", "trainB")
    assert set(kept.qrels).isdisjoint(held.qrels) and held.qrels and kept.qrels
    assert {**kept.qrels, **held.qrels} == whole.qrels  # every judgement lands on exactly one side
    assert kept.corpus == whole.corpus and kept.queries == whole.queries
    assert load_beir(tmp_path / "a", "testA").qrels.keys() | load_beir(tmp_path / "a", "testB").qrels.keys() == set(
        load_beir(source, "test").qrels
    )
    # The side of a query depends on its id only: a second run writes the same files.
    first = (tmp_path / "a" / "qrels" / "trainB.tsv").read_text(encoding="utf-8")
    assert main([str(source), "--split", "train", "--every", "3", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "qrels" / "trainB.tsv").read_text(encoding="utf-8") == first
    assert "trainB" in capsys.readouterr().out


def test_split_refuses_a_missing_split(tmp_path):
    source = write_demo_beir(tmp_path / "demo", 4, 2)
    with pytest.raises(SystemExit):
        main([str(source), "--split", "dev", "--out", str(tmp_path / "x")])
