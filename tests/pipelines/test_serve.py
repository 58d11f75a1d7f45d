"""``hybrid-search ui``: its settings, error classification and command line, and ``--check`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hybrid_search.index import (
    IndexMeta,
    IndexNotFoundError,
    ModelMismatchError,
    UnknownFilterFieldError,
)
from hybrid_search.models import ModelNotAvailableError
from hybrid_search.retrieval import EmptyQueryError
from pipelines import serve
from pipelines.cli import build_parser, given_search_options


def test_default_settings_are_the_cli_search_defaults():
    from hybrid_search.options import SearchOptions

    cli = SearchOptions.for_index(None, **given_search_options(build_parser().parse_args(["search", "q"])))
    ui = serve.SearchSettings().to_options()
    assert ui.with_(rerank=cli.rerank) == cli and ui.fusion_source == cli.fusion_source == "default"
    assert ui.rerank is False and ui.explain is True


def test_weights_are_kept_for_active_channels_and_dropped_when_uniform():
    settings = serve.SearchSettings(weights={"sparse": 1.0, "dense": 1.0, "bm25": 2.0})
    assert settings.to_options().weights is None  # bm25 is not fused by default
    settings.channels = ["sparse", "dense", "bm25"]
    options = settings.to_options()
    assert options.weights == {"sparse": 1.0, "dense": 1.0, "bm25": 2.0} and options.channels == tuple(
        settings.channels
    )
    assert options.fusion_source == "flags"
    settings.channels = ["dense", "sparse"]
    assert settings.to_options().channels is None  # the default pair, fused by the engine
    single = serve.SearchSettings(mode="bm25", channels=["sparse", "dense"], weights={"sparse": 3.0})
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
    tuned = serve.SearchSettings(fusion="dbsf", weights={"sparse": 0.5, "dense": 1.5}).to_options(meta)
    assert (tuned.fusion, tuned.prefetch_k, tuned.weights) == ("dbsf", 50, {"sparse": 0.5, "dense": 1.5})
    assert tuned.fusion_source == "index (tuned on scifact train, 2026-12-03)"
    changed = serve.SearchSettings(fusion="rrf", weights={"sparse": 0.5, "dense": 1.5}).to_options(meta)
    assert changed.fusion == "rrf" and changed.prefetch_k == 50 and changed.fusion_source == "flags"


def test_filter_inputs():
    assert serve.parse_filter_inputs({}) is None
    assert serve.parse_filter_inputs({"a": " ", "b": ""}) is None
    assert serve.parse_filter_inputs({"lang": "en", "year": "2019, 2020", "flag": "true", "q": '"x"'}) == {
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
    assert serve.available_modes(full) == ["hybrid", "sparse", "dense", "bm25"]
    assert serve.default_channels(full) == ["sparse", "dense"]
    sparse_only = IndexMeta("qdrant-edge", sparse=full.sparse)
    assert serve.available_modes(sparse_only) == ["hybrid", "sparse", "bm25"]
    assert serve.default_channels(sparse_only) == ["sparse", "bm25"]
    assert serve.model_names(full) == ("splade-tiny", "minilm", 64)
    assert serve.model_names(full, dense="other") == ("splade-tiny", "other", 64)
    assert serve.model_facts(full) == [
        ("sparse", "splade-tiny (splade, 30522 dims, dot, ≤64 active)"),
        ("dense", "minilm (384 dims, cosine)"),
    ]


def _connection_error() -> Exception:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("ResponseHandlingException") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (IndexNotFoundError("no index at x"), "no_index"),
        (ModelMismatchError("built with splade-tiny"), "model_mismatch"),
        (ModelNotAvailableError("could not load model"), "model_unavailable"),
        (EmptyQueryError("empty"), "empty_query"),
        (_connection_error(), "unreachable"),
        (Exception("failed to open WAL x: Can't init WAL: Kind(WouldBlock)"), "index_busy"),
        (UnknownFilterFieldError("unknown filter field"), "bad_input"),
        (KeyError("boom"), "error"),
    ],
)
def test_errors_become_problems(error, kind):
    problem = serve.describe_error(error, "/data/idx")
    assert problem.kind == kind and problem.title and problem.message
    if kind == "no_index":
        assert "hybrid-search index CORPUS --index /data/idx" in problem.hint and "make demo" in problem.hint
    if kind == "unreachable":
        assert "/data/idx" in problem.message and "Connection refused" in problem.message


def test_streamlit_command_binds_localhost_and_passes_the_index_after_the_separator():
    command = serve.streamlit_command("./idx", port=8600, sparse="splade-tiny")
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(serve.APP_PATH)]
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "8600"
    assert command[command.index("--browser.gatherUsageStats") + 1] == "false"
    assert "--server.enableAgentApi" not in command
    assert command[command.index("--") :] == ["--", "--sparse", "splade-tiny", "--index", "./idx"]
    assert "--server.enableAgentApi" in serve.streamlit_command("x", agent_api=True)
    assert serve.APP_PATH.is_file()


def test_app_arguments(monkeypatch):
    monkeypatch.delenv(serve.INDEX_ENV, raising=False)
    assert serve.app_arguments([]).index == serve.DEFAULT_INDEX
    monkeypatch.setenv(serve.INDEX_ENV, "/from/env")
    assert serve.app_arguments(["-q", "tests/x.py"]).index == "/from/env"  # pytest's own argv is ignored
    args = serve.app_arguments(["--index", "http://host:6333", "--dense", "minilm"])
    assert (args.index, args.dense, args.sparse) == ("http://host:6333", "minilm", None)


def test_ui_command_line(monkeypatch):
    monkeypatch.delenv(serve.INDEX_ENV, raising=False)
    args = build_parser().parse_args(["ui", "--index", "idx"])
    assert (args.host, args.port, args.no_browser, args.check) == ("127.0.0.1", None, False, None)
    args = build_parser().parse_args(["ui", "--headless", "--check"])
    assert args.no_browser and args.check == serve.CHECK_QUERY and args.index == serve.DEFAULT_INDEX


def test_snapshot_parsing():
    snapshot = {
        "tree": {
            "type": "root",
            "children": [
                {"type": "markdown", "props": {"body": "**10 results** · Hybrid"}},
                {
                    "type": "vertical",
                    "children": [{"type": "markdown", "props": {"body": "**#1** · `d-1` · :violet-badge[x]"}}],
                },
                {"type": "markdown", "props": {"body": "**#2** · `d 2` ·"}},
                {"type": "warning", "props": {"body": "Reranking is off"}},
                {"type": "text_input", "key": "query", "props": {}},
            ],
        }
    }
    assert serve.snapshot_hits(snapshot) == ["d-1", "d 2"]
    assert serve.snapshot_messages(snapshot) == [("warning", "Reranking is off")]


# --- the server, for real --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served_index(tmp_path_factory, demo_vectors, splade, minilm) -> str:
    from indexers import create_index

    docs, svecs, dvecs = demo_vectors
    location = str(tmp_path_factory.mktemp("serve") / "index")
    index = create_index(location, IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings()))
    index.upsert(docs, svecs, dvecs)
    index.close()
    return location


def _hybrid_search(capsys, location: str, query: str) -> list[dict]:
    from pipelines.cli import main

    assert main(["search", query, "--index", location, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["hits"]


def test_ui_check_answers_health_and_serves_the_cli_results(capsys, served_index):
    """`hybrid-search ui --check`: health `ok`, then one search run by the live app, as `search --json` has it."""
    from hybrid_search.fusion import same_order
    from hybrid_search.types import ScoredId

    query = "what is the daily life of thai people"
    expected = _hybrid_search(capsys, served_index, query)  # first: the server will hold the index
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ui", "--index", served_index, "--check", query, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "/_stcore/health: ok" in proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["health"] == "ok" and summary["messages"] == []
    score = {h["id"]: h["score"] for h in expected}
    assert len(summary["hits"]) == 10 and set(summary["hits"]) <= set(score)
    assert same_order(
        [ScoredId(h["id"], h["score"]) for h in expected], [ScoredId(i, score[i]) for i in summary["hits"]]
    )


def test_ui_check_without_an_index_fails_with_the_page_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "ui", "--index", str(tmp_path / "none"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1
    assert "/_stcore/health: ok" in proc.stdout
    assert "No index yet" in proc.stderr and f"--index {tmp_path / 'none'}" in proc.stderr
    assert "Traceback" not in proc.stderr
