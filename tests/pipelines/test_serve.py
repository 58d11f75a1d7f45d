"""``hybrid-search ui``: its command line, the app's arguments, and ``--check`` end to end (the UI's settings and
errors: tests/ui/test_ui_settings.py, tests/ui/test_ui_problems.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hybrid_search.index import (
    IndexMeta,
)
from pipelines import serve
from pipelines.cli import build_parser


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
