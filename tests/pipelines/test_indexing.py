"""The indexing pipeline and the CLI around it, on real models and real passages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.indexing import index_corpus
from tests.paths import REPO


def write_jsonl(path: Path, rows: list, raw_lines: list[bytes] | None = None) -> Path:
    with path.open("wb") as f:
        for row in rows:
            f.write((json.dumps(row) + "\n").encode())
        for line in raw_lines or []:
            f.write(line + b"\n")
    return path


def docs_rows(docs, n):
    return [
        {"_id": d.id, "title": d.title, "text": d.text, "lang": "en" if i % 2 else "fr"} for i, d in enumerate(docs[:n])
    ]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_then_rerun_skips_everything_and_edits_are_reencoded(tmp_path, demo_docs, splade, minilm):
    corpus = write_jsonl(tmp_path / "c.jsonl", docs_rows(demo_docs, 20))
    first = index_corpus(corpus, str(tmp_path / "idx"), sparse=splade, dense=minilm, progress=False, batch_size=8)
    assert (first.indexed, first.skipped_unchanged, first.count) == (20, 0, 20)
    again = index_corpus(corpus, str(tmp_path / "idx"), sparse=splade, dense=minilm, progress=False)
    assert (again.indexed, again.skipped_unchanged, again.count) == (0, 20, 20)
    rows = docs_rows(demo_docs, 20)
    rows[3]["text"] = "An edited passage about the Eiffel tower in Paris."
    edited = index_corpus(write_jsonl(corpus, rows), str(tmp_path / "idx"), sparse=splade, dense=minilm, progress=False)
    assert (edited.indexed, edited.count) == (1, 20)
    from indexers import open_index

    with open_index(str(tmp_path / "idx")) as index:
        assert index.get([rows[3]["_id"]])[0].text.startswith("An edited passage")
        assert index.meta.metadata_fields == ["lang"]
        assert index.meta.sparse["name"] == "splade-tiny" and index.meta.dense["name"] == "minilm"


def test_duplicate_ids_last_one_wins_with_a_count(tmp_path, demo_docs, splade, minilm):
    rows = docs_rows(demo_docs, 6)
    rows.append({**rows[1], "text": "The later version of this passage wins."})
    report = index_corpus(
        write_jsonl(tmp_path / "d.jsonl", rows),
        str(tmp_path / "idx"),
        sparse=splade,
        dense=minilm,
        progress=False,
        batch_size=4,
    )
    assert report.count == 6 and report.corpus["duplicates"] == 1
    from indexers import open_index

    with open_index(str(tmp_path / "idx")) as index:
        assert index.get([rows[1]["_id"]])[0].text == "The later version of this passage wins."


def test_bad_records_are_counted_and_reported_not_fatal(tmp_path, capsys, demo_docs):
    rows = docs_rows(demo_docs, 4)
    corpus = write_jsonl(
        tmp_path / "bad.jsonl",
        rows + [{"title": "no id", "text": "x"}, {"_id": "no-text", "text": "   "}],
        raw_lines=[b'{"_id": "broken", "text": ', b'{"_id": "latin1", "text": "caf\xe9 cr\xe8me"}'],
    )
    long_doc = {"_id": "long", "text": "hybrid search " * 400}
    with corpus.open("ab") as f:
        f.write((json.dumps(long_doc) + "\n").encode())
    code, out, err = run_cli(capsys, "index", str(corpus), "--index", str(tmp_path / "idx"), "--no-progress")
    assert code == 0, err
    assert "index now holds 6" in out
    assert "1 documents longer than the model's max length were truncated" in out
    for word in ("malformed 1", "missing_id 1", "missing_text 1", "decode_errors 1"):
        assert word.replace("_", " ") in out.replace("_", " "), out
    assert f"{corpus}:7: malformed JSON" in out  # the malformed line is named with file and line number
    code, out, err = run_cli(
        capsys, "index", str(corpus), "--index", str(tmp_path / "idx2"), "--strict", "--no-progress"
    )
    assert code == 2 and f"{corpus}:5" in err and "Traceback" not in err


def test_cli_errors_are_clear_and_exit_2(tmp_path, capsys, demo_docs):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    code, _, err = run_cli(capsys, "index", str(empty), "--index", str(tmp_path / "e"), "--no-progress")
    assert code == 2 and "empty" in err
    code, _, err = run_cli(capsys, "index", str(tmp_path / "missing.jsonl"), "--index", str(tmp_path / "m"))
    assert code == 2 and "not found" in err
    code, _, err = run_cli(capsys, "search", "paris", "--index", str(tmp_path / "nowhere"))
    assert code == 2 and "no index at" in err and "hybrid-search index" in err

    corpus = write_jsonl(tmp_path / "c.jsonl", docs_rows(demo_docs, 5))
    assert run_cli(capsys, "index", str(corpus), "--index", str(tmp_path / "idx"), "--no-progress")[0] == 0
    code, _, err = run_cli(capsys, "search", "  ", "--index", str(tmp_path / "idx"))
    assert code == 2 and "empty" in err
    code, _, err = run_cli(capsys, "search", "paris", "--index", str(tmp_path / "idx"), "--filter", "colour=red")
    assert code == 2 and "unknown filter field" in err and "lang" in err
    code, _, err = run_cli(
        capsys,
        "index",
        str(corpus),
        "--index",
        str(tmp_path / "idx"),
        "--dense",
        "none",
        "--sparse",
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    assert code == 2 and ("built with" in err or "error" in err)
    code, _, err = run_cli(capsys, "search", "paris", "--index", str(tmp_path / "idx"), "--dense", str(tmp_path))
    assert code == 2 and "error:" in err


def test_search_json_and_text_output(tmp_path, capsys, demo_docs):
    corpus = write_jsonl(tmp_path / "c.jsonl", docs_rows(demo_docs, 30))
    assert run_cli(capsys, "index", str(corpus), "--index", str(tmp_path / "idx"), "--no-progress")[0] == 0
    code, out, _ = run_cli(
        capsys,
        "search",
        "how do planets orbit the sun",
        "--index",
        str(tmp_path / "idx"),
        "--json",
        "-k",
        "3",
        "--filter",
        "lang=en",
    )
    result = json.loads(out)
    assert code == 0 and len(result["hits"]) == 3 and result["mode"] == "hybrid"
    assert all(h["document"]["metadata"]["lang"] == "en" for h in result["hits"])
    first = result["hits"][0]
    assert abs(sum(r["contribution"] for r in first["explanation"]) - first["channel_scores"]["sparse"]) < 1e-4
    code, out, _ = run_cli(
        capsys, "search", "how do planets orbit the sun", "--index", str(tmp_path / "idx"), "-k", "2"
    )
    assert code == 0 and "overlap (sparse=" in out and "query expands to:" in out and " 1. " in out


def test_models_list(capsys):
    code, out, _ = run_cli(capsys, "models", "list")
    assert code == 0 and "splade-tiny" in out and "minilm" in out


def test_sigkill_mid_run_then_resume_without_reencoding(tmp_path, small_docs, splade, minilm):
    """Kill the indexer with SIGKILL mid-run; the rerun completes exactly, encoding only what was missing."""
    n = 160
    corpus = write_jsonl(tmp_path / "c.jsonl", docs_rows(small_docs, n))
    location = str(tmp_path / "idx")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "-v",
            "index",
            str(corpus),
            "--index",
            location,
            "--batch-size",
            "16",
            "--no-progress",
        ],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = 0
    deadline = time.time() + 240
    for line in proc.stderr:
        if "committed" in line:
            committed = int(line.split("committed")[1].split()[0])
            if committed >= 48:
                break
        assert time.time() < deadline, "indexer made no progress"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and 48 <= committed < n

    report = index_corpus(corpus, location, sparse=splade, dense=minilm, progress=False, batch_size=16)
    assert report.count == n
    assert report.skipped_unchanged >= committed
    assert report.indexed + report.skipped_unchanged == n and report.indexed <= n - committed
    from indexers import open_index

    with open_index(location) as index:
        ids = [p["doc_id"] for p in index._scroll_raw()]
    assert len(ids) == len(set(ids)) == n


def test_max_active_dims_is_recorded_and_reused_for_queries(tmp_path, capsys, demo_docs):
    corpus = write_jsonl(tmp_path / "c.jsonl", docs_rows(demo_docs, 8))
    code, _, err = run_cli(
        capsys,
        "index",
        str(corpus),
        "--index",
        str(tmp_path / "idx"),
        "--dense",
        "none",
        "--max-active-dims",
        "16",
        "--no-progress",
    )
    assert code == 0, err
    from indexers import open_index

    with open_index(str(tmp_path / "idx")) as index:
        assert index.meta.sparse["max_active_dims"] == 16 and index.meta.dense is None
        vectors = index.sparse_vectors([d.id for d in demo_docs[:8]])
    assert len(vectors) == 8 and all(v.nnz <= 16 for v in vectors.values())
    code, out, _ = run_cli(
        capsys, "search", "thai people daily life", "--index", str(tmp_path / "idx"), "--mode", "sparse", "--json"
    )
    assert code == 0 and 0 < len(json.loads(out)["query_tokens"]) <= 16


@pytest.mark.parametrize(
    ("location", "engine"),
    [
        ("http://127.0.0.1:9", "Qdrant"),
        ("opensearch+http://127.0.0.1:9/idx", "OpenSearch"),
        ("elasticsearch+http://127.0.0.1:9/idx", "Elasticsearch"),
    ],
)
def test_unreachable_server_is_one_clear_error(capsys, location, engine):
    """Port 9 on loopback refuses connections: the CLI says so once, without a traceback or the password."""
    code, out, err = run_cli(capsys, "search", "paris", "--index", location, "--password", "s3cret-pw")
    assert code == 2 and f"cannot reach {engine}" in err
    assert "Traceback" not in err and "s3cret-pw" not in err + out


def test_an_index_open_in_another_process_is_a_clear_error(tmp_path):
    from hybrid_search.index import IndexMeta
    from indexers import create_index, open_index
    from indexers.qdrant_edge import IndexLockedError

    location = str(tmp_path / "idx")
    holder = create_index(location, IndexMeta(engine="", sparse={"name": "s", "dimension": 10}))
    child = subprocess.run(
        [sys.executable, "-c", f"from indexers import open_index; open_index({location!r})"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    holder.close()
    assert child.returncode != 0 and "IndexLockedError" in child.stderr and "another process" in child.stderr
    with open_index(location) as index:  # free again once the holder closed it
        assert index.count() == 0
    assert IndexLockedError.__mro__[1].__name__ == "IndexStateError"
