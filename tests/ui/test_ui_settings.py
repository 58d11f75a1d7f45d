"""The UI's state (``ui.settings``): its controls become the same ``SearchOptions`` the CLI builds."""

from __future__ import annotations

from hybrid_search.index import IndexMeta
from hybrid_search.models import query_models
from hybrid_search.options import parse_filter_boxes
from pipelines.cli import build_parser, given_search_options
from ui.settings import SearchSettings, available_modes, default_channels, model_facts


def test_default_settings_are_the_cli_search_defaults():
    from hybrid_search.options import SearchOptions

    cli = SearchOptions.for_index(None, **given_search_options(build_parser().parse_args(["search", "q"])))
    ui = SearchSettings().to_options()
    assert ui.with_(rerank=cli.rerank) == cli and ui.fusion_source == cli.fusion_source == "default"
    assert ui.rerank is False and ui.explain is True


def test_weights_are_kept_for_active_channels_and_dropped_when_uniform():
    settings = SearchSettings(weights={"sparse": 1.0, "dense": 1.0, "bm25": 2.0})
    assert settings.to_options().weights is None  # bm25 is not fused by default
    settings.channels = ["sparse", "dense", "bm25"]
    options = settings.to_options()
    assert options.weights == {"sparse": 1.0, "dense": 1.0, "bm25": 2.0} and options.channels == tuple(
        settings.channels
    )
    assert options.fusion_source == "flags"
    settings.channels = ["dense", "sparse"]
    assert settings.to_options().channels is None  # the default pair, fused by the engine
    single = SearchSettings(mode="bm25", channels=["sparse", "dense"], weights={"sparse": 3.0})
    assert single.to_options().channels is None and single.to_options().weights is None


def test_settings_start_from_the_fusion_tuned_for_the_index():
    meta = IndexMeta("qdrant-edge", sparse={"name": "s"}, dense={"name": "d"})
    meta.fusion = {
        "method": "dbsf",
        "weights": {"sparse": 0.5, "dense": 1.5},
        "channels": ["sparse", "dense"],
        "prefetch_k": 50,
        "learned": {"dataset": "../shared/data/scifact", "split": "train", "date": "2026-12-03"},
    }
    tuned = SearchSettings(fusion="dbsf", weights={"sparse": 0.5, "dense": 1.5}).to_options(meta)
    assert (tuned.fusion, tuned.prefetch_k, tuned.weights) == ("dbsf", 50, {"sparse": 0.5, "dense": 1.5})
    assert tuned.fusion_source == "index (tuned on scifact train, 2026-12-03)"
    changed = SearchSettings(fusion="rrf", weights={"sparse": 0.5, "dense": 1.5}).to_options(meta)
    assert changed.fusion == "rrf" and changed.prefetch_k == 50 and changed.fusion_source == "flags"


def test_filter_inputs():
    """The sidebar's filter boxes, parsed by the core (the UI adds no rule of its own)."""
    assert parse_filter_boxes({}) is None
    assert parse_filter_boxes({"a": " ", "b": ""}) is None
    assert parse_filter_boxes({"lang": "en", "year": "2019, 2020", "flag": "true", "q": '"x"'}) == {
        "lang": "en",
        "year": [2019, 2020],
        "flag": True,
        "q": '"x"',
    }


def test_modes_channels_and_model_facts_follow_the_index():
    full = IndexMeta(
        "qdrant-edge",
        sparse={
            "name": "splade-tiny",
            "architecture": "splade",
            "dimension": 30522,
            "similarity": "dot",
            "max_active_dims": 64,
        },
        dense={"name": "minilm", "dimension": 384, "similarity": "cosine"},
    )
    assert available_modes(full) == ["hybrid", "sparse", "dense", "bm25"]
    assert default_channels(full) == ["sparse", "dense"]
    sparse_only = IndexMeta("qdrant-edge", sparse=full.sparse)
    assert available_modes(sparse_only) == ["hybrid", "sparse", "bm25"]
    assert default_channels(sparse_only) == ["sparse", "bm25"]
    assert query_models(full) == ("splade-tiny", "minilm", 64)
    assert query_models(full, dense="other") == ("splade-tiny", "other", 64)
    assert model_facts(full) == [
        ("sparse", "splade-tiny (splade, 30522 dims, dot, ≤64 active)"),
        ("dense", "minilm (384 dims, cosine)"),
    ]
