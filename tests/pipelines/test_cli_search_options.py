"""``hybrid-search search`` through SearchOptions: bad values are one ``error:`` line (exit 2), ``--json`` is
strict JSON whose fusion terms add up, filters match text and number forms, and a single-model index searches
the way the UI does."""

from __future__ import annotations

import json

import pytest

from hybrid_search.index import IndexMeta
from hybrid_search.types import Document
from indexers import create_index
from pipelines.cli import main

N = 40


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, demo_vectors, splade, minilm):
    """Two indexes of real passages: sparse + dense, and sparse only. ``year`` is text (as CSV stores it),
    ``bucket`` an integer (as JSON stores it)."""
    docs, svecs, dvecs = demo_vectors
    tagged = [
        Document(d.id, d.text, d.title, {"year": str(2019 + i % 2), "bucket": i % 3}) for i, d in enumerate(docs[:N])
    ]
    root = tmp_path_factory.mktemp("cli")
    built = {}
    for name, dense in (("full", minilm.settings()), ("sparse-only", None)):
        index = create_index(str(root / name), IndexMeta(engine="", sparse=splade.settings(), dense=dense))
        index.upsert(tagged, svecs[:N], dvecs[:N] if dense else None)
        index.close()
        built[name] = str(root / name)
    return built


def search(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["search", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rrf-k", "-5"], "rrf_k"),
        (["--rrf-k", "-1", "--json"], "rrf_k"),
        (["--rrf-k", "inf"], "rrf_k"),
        (["--channels", "sparse,foo"], "unknown channel"),
        (["--prefetch-k", "0"], "prefetch_k"),
        (["-k", "0"], "hits to return"),
        (["--weight", "sparse=nan"], "bad weight"),
        (["--weight", "bm25=2"], "not fused"),
        (["--filter", "nope=1"], "unknown filter field"),
        (["--filter", "year"], "FIELD=VALUE"),
    ],
)
def test_bad_values_are_one_error_line_with_status_2(capsys, indexes, flags, message):
    code, out, err = search(capsys, "heart attack", "--index", indexes["full"], *flags)
    assert code == 2 and out == ""
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "flags, fused_by",
    [
        ([], "engine"),
        (["--client-fusion"], "client"),
        (["--fusion", "convex", "--weight", "sparse=2"], "client"),
        (["--fusion", "dbsf"], "engine"),
    ],
)
def test_json_is_strict_and_each_hits_fusion_terms_add_up(capsys, indexes, flags, fused_by):
    code, out, _ = search(capsys, "symptoms of a heart attack", "--index", indexes["full"], "--json", *flags)
    assert code == 0
    result = _strict(out)
    source = "flags" if any(f in ("--fusion", "--weight") for f in flags) else "default"
    assert result["fused_by"] == fused_by and result["fusion_source"] == source
    assert result["total_ms"] > 0 and len(result["hits"]) == 10
    for hit in result["hits"]:
        terms = hit["fusion_terms"]
        assert [t["channel"] for t in terms] == ["sparse", "dense"]
        assert sum(t["term"] for t in terms) == pytest.approx(hit["fused_score"], abs=1e-6)
        for t in terms:
            assert (t["rank"] is None) == (t["channel"] not in hit["channel_ranks"])


def test_the_text_output_shows_the_fusion_terms_and_one_total(capsys, indexes):
    code, out, _ = search(capsys, "symptoms of a heart attack", "--index", indexes["full"], "-k", "2")
    assert code == 0
    assert "fusion=rrf k=60 by the engine, settings from default" in out
    assert out.count("    fusion: ") == 2 and "1/(60+" in out
    timings = next(line for line in out.splitlines() if "timings:" in line)
    assert "encode=" in timings and "(sparse=" in timings and timings.count("total=") == 1


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("year=2019", {"year": "2019"}),  # stored as text, typed as a number
        ("bucket=1", {"bucket": 1}),  # stored as an integer
        ("bucket=1.0", {"bucket": 1}),
    ],
)
def test_filters_match_the_stored_type(capsys, indexes, flag, expected):
    code, out, err = search(capsys, "heart attack", "--index", indexes["full"], "--filter", flag, "--json")
    assert code == 0, err
    hits = _strict(out)["hits"]
    assert hits and all(h["document"]["metadata"].items() >= expected.items() for h in hits)


def test_a_filter_value_nothing_has_is_no_hits_not_a_traceback(capsys, indexes):
    code, out, err = search(capsys, "heart attack", "--index", indexes["full"], "--filter", "year=null")
    assert code == 0 and "no hits" in out and "Traceback" not in err


def test_a_single_model_index_fuses_its_channel_with_bm25_as_the_ui_does(capsys, indexes):
    from indexers import open_index
    from ui.settings import default_channels

    code, out, err = search(capsys, "heart attack", "--index", indexes["sparse-only"], "--json")
    assert code == 0, err
    result = _strict(out)
    assert list(result["channel_rankings"]) == ["sparse", "bm25"] and result["fused_by"] == "client"
    with open_index(indexes["sparse-only"]) as index:
        assert default_channels(index.meta) == ["sparse", "bm25"]
    code, _, err = search(capsys, "heart attack", "--index", indexes["sparse-only"], "--mode", "dense")
    assert code == 2 and "dense search needs a dense model" in err
