"""Indexing under careless and hostile conditions: duplicate ids, a full disk, damaged or read-only index
folders, changed model weights, removed documents and invalid values (issue 17).

Most tests run sparse-only with SPLADE-tiny (2 layers, 128 wide) on a handful of short documents: real
encoding, real engine, a few seconds each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.cli import main
from pipelines.indexing import index_corpus
from tests.paths import REPO


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def stored(location: str) -> dict[str, str]:
    """``{id: text}`` of everything the index holds, read through the engine's scroll."""
    from indexers import open_index

    with open_index(location) as index:
        payloads = list(index._scroll_raw())
    ids = [p["doc_id"] for p in payloads]
    assert len(ids) == len(set(ids)), "an id is stored twice"
    return {p["doc_id"]: p["text"] for p in payloads}


def sparse_only(corpus: Path, location: str, splade, **kwargs):
    return index_corpus(corpus, location, sparse=splade, dense=None, progress=False, **kwargs)


# --- 1. duplicate ids: the last record wins, corpus-wide, on every run ---------------------------------------
def test_duplicates_far_apart_keep_the_last_record_on_every_rerun(tmp_path, splade):
    rows = [{"_id": "x", "text": "the first copy of x"}] + [{"_id": f"d{i}", "text": f"filler {i}"} for i in range(5)]
    rows.append({"_id": "x", "text": "the last copy of x wins"})
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    location = str(tmp_path / "idx")
    first = sparse_only(corpus, location, splade, batch_size=2)
    assert stored(location)["x"] == "the last copy of x wins" and (first.indexed, first.count) == (6, 6)
    for _ in range(3):  # the old pipeline flipped the stored copy, and re-encoded both, on reruns
        again = sparse_only(corpus, location, splade, batch_size=2)
        assert stored(location)["x"] == "the last copy of x wins"
        assert (again.indexed, again.skipped_unchanged) == (0, 6)
        assert again.superseded == 1


_ids = st.sampled_from(["a", "b", "c", "d", "e"])
_texts = st.sampled_from(["red fox", "blue sea", "green tree", "gold sun", "grey rock", "pink rose"])
_corpora = st.lists(st.tuples(_ids, _texts), min_size=1, max_size=9)


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=st.lists(st.tuples(_corpora, st.integers(1, 5), st.booleans()), min_size=1, max_size=3))
def test_property_one_document_per_id_holding_the_last_record(splade, runs):
    """Random corpora with duplicate ids, random batch sizes, random reruns (some pruning, some with a
    changed corpus): after each run the index holds exactly one document per id, with the text of that
    id's last record in the corpus just indexed."""
    with tempfile.TemporaryDirectory() as folder:
        location = str(Path(folder) / "idx")
        ever: set[str] = set()
        for records, batch_size, prune in runs:
            corpus = write_jsonl(Path(folder) / "c.jsonl", [{"_id": i, "text": t} for i, t in records])
            report = sparse_only(corpus, location, splade, batch_size=batch_size, **({"prune": True} if prune else {}))
            last = {i: t for i, t in records}
            ever = set(last) if prune else ever | set(last)
            held = stored(location)
            assert set(held) == ever and report.count == len(ever)
            assert {i: held[i] for i in last} == last
            assert report.superseded == len(records) - len(last)


# --- 2. a full disk: a clear message, exit status 2, and a resumable index --------------------------------------
@contextlib.contextmanager
def small_tmpfs(folder: Path, size_mib: int):
    """Mount a tmpfs of ``size_mib`` MiB at ``folder``, or skip where this process may not mount one."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_to(folder: Path, free_bytes: int) -> Path:
    """Write a filler file that leaves ``free_bytes`` free on ``folder``'s filesystem."""
    filler = folder / "filler"
    with filler.open("ab") as f:
        f.write(b"\0" * max(shutil.disk_usage(folder).free - free_bytes, 0))
    return filler


def test_full_disk_stops_with_a_message_exit_2_and_resumes(tmp_path, capsys, small_docs):
    """On a real small filesystem (a tmpfs): the run that would fill it stops before the engine crashes."""
    from indexers.qdrant_edge import FREE_SPACE_MARGIN

    rows = [{"_id": d.id, "text": d.text} for d in small_docs[:160]]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    with small_tmpfs(tmp_path / "disk", 96) as disk:
        location = str(disk / "idx")
        filler = fill_to(disk, FREE_SPACE_MARGIN + 400 * 1024)
        # In a child process: before this fix the engine died of SIGBUS there (exit 135, no message).
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "index",
                str(corpus),
                "--index",
                location,
                "--dense",
                "none",
                "--batch-size",
                "16",
                "--no-progress",
            ],
            cwd=REPO,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        err = child.stderr
        assert child.returncode == 2 and "Traceback" not in err, (child.returncode, err[-2000:])
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: only ") and "MiB free" in last and "rerun the same command" in last
        landed = stored(location)  # the index opens and reads: nothing half-written
        assert 0 < len(landed) < len(rows)
        filler.unlink()
        code, out, err = run_cli(
            capsys,
            "index",
            str(corpus),
            "--index",
            location,
            "--dense",
            "none",
            "--batch-size",
            "16",
            "--no-progress",
            "--json",
        )
        assert code == 0, err
        report = json.loads(out)
        assert report["skipped_unchanged"] >= len(landed) and report["count"] == len(rows)
        assert stored(location) == {r["_id"]: r["text"] for r in rows}


def test_a_write_failing_with_enospc_is_a_clear_resumable_stop(tmp_path, splade):
    """The same guarantee where no tmpfs can be mounted: the engine's write fails with ENOSPC (simulated
    on the third batch) and the run stops with DiskFullError, keeping every batch written before."""
    import errno

    from hybrid_search.corpus import CorpusReader
    from hybrid_search.index import DiskFullError, IndexMeta, IndexStateError
    from indexers.qdrant_edge import QdrantEdgeIndex
    from pipelines.indexing import index_documents

    rows = [{"_id": f"d{i}", "text": f"passage number {i}"} for i in range(10)]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)

    class FillingDisk(QdrantEdgeIndex):
        writes = 0

        def _upsert_raw(self, *args):
            FillingDisk.writes += 1
            if FillingDisk.writes == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            super()._upsert_raw(*args)

    location = tmp_path / "idx"
    QdrantEdgeIndex.create(location, IndexMeta(engine="", sparse=splade.settings())).close()
    index = FillingDisk.open(location)
    with pytest.raises(DiskFullError, match="rerun the same command") as caught:
        index_documents(CorpusReader(corpus), index, splade, None, batch_size=3, progress=False)
    index.close()
    assert isinstance(caught.value, IndexStateError)  # the CLI prints it as one `error:` line, exit status 2
    assert len(stored(str(location))) == 6
    report = sparse_only(corpus, str(location), splade, batch_size=3)
    assert (report.skipped_unchanged, report.indexed, report.count) == (6, 4, 10)


# --- 5. the model check: resolved path and weights fingerprint ----------------------------------------------------
def test_a_model_folder_with_changed_weights_is_refused_and_a_relative_name_works_from_elsewhere(
    tmp_path, capsys, monkeypatch
):
    import safetensors.torch

    from hybrid_search.models import splade_tiny_dir

    project = tmp_path / "project"
    shutil.copytree(splade_tiny_dir(), project / "models" / "my-splade")
    corpus = write_jsonl(
        tmp_path / "c.jsonl",
        [{"_id": "1", "text": "the eiffel tower in paris"}, {"_id": "2", "text": "a red fox in the snow"}],
    )
    monkeypatch.chdir(project)
    code, _, err = run_cli(
        capsys,
        "index",
        str(corpus),
        "--index",
        str(tmp_path / "idx"),
        "--dense",
        "none",
        "--sparse",
        "models/my-splade",
        "--no-progress",
    )
    assert code == 0, err

    monkeypatch.chdir(tmp_path)  # the relative name means nothing here; the recorded path still does
    code, out, err = run_cli(
        capsys, "search", "paris tower", "--index", str(tmp_path / "idx"), "--mode", "sparse", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["hits"][0]["id"] == "1"
    meta = json.loads((tmp_path / "idx" / "hybrid_search.json").read_text())["sparse"]
    assert meta["path"] == str(project / "models" / "my-splade") and len(meta["weights"]) == 32

    weights = project / "models" / "my-splade" / "model.safetensors"
    tensors = safetensors.torch.load_file(str(weights))
    name = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    tensors[name] = tensors[name] * 1.5
    safetensors.torch.save_file(tensors, str(weights), metadata={"format": "pt"})
    code, _, err = run_cli(capsys, "search", "paris tower", "--index", str(tmp_path / "idx"), "--mode", "sparse")
    assert code == 2 and "Traceback" not in err
    assert "its weights differ" in err and meta["weights"][:12] in err and str(project / "models") in err
    monkeypatch.chdir(project)
    code, _, err = run_cli(
        capsys,
        "index",
        str(corpus),
        "--index",
        str(tmp_path / "idx"),
        "--dense",
        "none",
        "--sparse",
        "models/my-splade",
        "--no-progress",
    )
    assert code == 2 and "its weights differ" in err


# --- 6. removing documents: index --prune and hybrid-search delete ------------------------------------------------
def test_prune_deletes_what_the_corpus_no_longer_has_and_reports_it(tmp_path, capsys, splade):
    rows = [{"_id": f"d{i}", "text": f"passage number {i}"} for i in range(6)]
    location = str(tmp_path / "idx")
    sparse_only(write_jsonl(tmp_path / "c.jsonl", rows), location, splade)
    code, out, err = run_cli(
        capsys,
        "index",
        str(write_jsonl(tmp_path / "c.jsonl", rows[2:])),
        "--index",
        location,
        "--dense",
        "none",
        "--no-progress",
    )
    assert code == 0 and set(stored(location)) == {r["_id"] for r in rows}  # without --prune nothing goes
    code, out, err = run_cli(
        capsys, "index", str(tmp_path / "c.jsonl"), "--index", location, "--dense", "none", "--no-progress", "--prune"
    )
    assert code == 0, err
    assert "pruned 2 documents the corpus no longer has (d0, d1)" in out and "index now holds 4" in out
    assert set(stored(location)) == {r["_id"] for r in rows[2:]}
    with (tmp_path / "c.jsonl").open("a") as f:  # a record whose id cannot be read: prune keeps everything
        f.write('{"_id": "d9", "text": \n')
    report = sparse_only(tmp_path / "c.jsonl", location, splade, prune=True)
    assert report.pruned == 0 and "no readable id" in report.prune_skipped and report.count == 4


def test_delete_command_removes_ids_and_names_the_missing(tmp_path, capsys, splade):
    rows = [{"_id": f"d{i}", "text": f"passage number {i}"} for i in range(4)]
    location = str(tmp_path / "idx")
    sparse_only(write_jsonl(tmp_path / "c.jsonl", rows), location, splade)
    code, out, err = run_cli(capsys, "delete", "d1", "d3", "nope", "--index", location)
    assert code == 0, err
    assert out.strip() == f"deleted 2 documents from {location}; not in the index: nope; index now holds 2"
    assert set(stored(location)) == {"d0", "d2"}
    code, out, _ = run_cli(capsys, "delete", "d0", "--index", location, "--json")
    assert json.loads(out) == {"location": location, "deleted": ["d0"], "missing": [], "count": 1}
    code, _, err = run_cli(capsys, "delete", "d0", "--index", str(tmp_path / "nowhere"))
    assert code == 2 and "no index at" in err


# --- 11. one-line errors instead of tracebacks ----------------------------------------------------------------
@pytest.fixture
def tiny_index(tmp_path, splade) -> tuple[Path, str]:
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": f"d{i}", "text": f"passage number {i}"} for i in range(4)])
    location = str(tmp_path / "idx")
    sparse_only(corpus, location, splade)
    return corpus, location


def _largest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize(
    "damage", ["meta-truncated", "meta-not-json", "segment-config", "wal-segment", "deleted-flags-status"]
)
def test_a_damaged_index_file_is_one_clear_error(tiny_index, capsys, damage):
    corpus, location = tiny_index
    root = Path(location)
    target, keep = {
        "meta-truncated": (root / "hybrid_search.json", 20),
        "meta-not-json": (root / "hybrid_search.json", 0),
        "segment-config": (next(root.glob("shard/segments/*/segment.json")), 10),
        "wal-segment": (_largest(root, "shard/wal/open-*"), 0),
        "deleted-flags-status": (next(root.glob("shard/segments/*/vector_storage-sparse/deleted/status.dat")), 0),
    }[damage]
    os.truncate(target, keep)
    for args in (
        ("search", "passage", "--index", location, "--mode", "sparse"),
        ("index", str(corpus), "--index", location, "--dense", "none", "--no-progress"),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
        assert "damaged" in err and "index the corpus again" in err


def test_index_pointing_at_a_file_and_empty_locations_are_refused(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "1", "text": "x"}])
    for command in (("index", str(corpus)), ("search", "x")):
        code, _, err = run_cli(capsys, *command, "--index", str(corpus))
        assert code == 2 and "is a file, not an index folder" in err and "Traceback" not in err
    for empty in ("", "  "):
        code, _, err = run_cli(capsys, "index", str(corpus), "--index", empty, "--no-progress")
        assert code == 2 and "index location is empty" in err
    assert not (tmp_path / "shard").exists() and not Path("shard").exists()


def test_indexing_with_a_channel_the_index_lacks_is_refused_before_encoding(tiny_index, capsys):
    corpus, location = tiny_index  # sparse-only
    code, _, err = run_cli(capsys, "index", str(corpus), "--index", location, "--no-progress")  # default dense
    assert code == 2 and "Traceback" not in err
    assert "has no dense channel" in err and "--dense none" in err


def test_batch_size_must_be_positive(tmp_path, capsys, splade):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "1", "text": "x"}])
    with pytest.raises(SystemExit) as exited:
        main(["index", str(corpus), "--index", str(tmp_path / "idx"), "--batch-size", "0"])
    assert exited.value.code == 2 and "--batch-size: must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 1"):
        sparse_only(corpus, str(tmp_path / "idx"), splade, batch_size=0)
    assert not (tmp_path / "idx").exists()


def test_index_json_report_never_holds_non_finite_numbers():
    from pipelines.indexing import IndexReport

    report = IndexReport(location="x", indexed=5, seconds=float("nan"))
    report.corpus = {"ratio": float("inf")}
    text = json.dumps(report.to_dict(), allow_nan=False)  # raises on NaN or Infinity
    assert json.loads(text)["seconds"] is None and json.loads(text)["corpus"]["ratio"] is None


# --- 12. creation is atomic, or recovered --------------------------------------------------------------------------
def test_a_crash_between_creating_the_shard_and_writing_metadata_is_recovered(tmp_path, capsys, splade):
    import qdrant_edge as qe

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": f"d{i}", "text": f"passage {i}"} for i in range(3)])
    for leftover in ("shard", "shard.partial"):  # what the old code, and a crash mid-create, leave
        location = tmp_path / f"idx-{leftover}"
        config = qe.EdgeConfig(sparse_vectors={"sparse": qe.EdgeSparseVectorParams()})
        qe.EdgeShard.create(str(location / leftover), config).close()
        code, _, err = run_cli(capsys, "search", "passage", "--index", str(location))
        assert code == 2 and "no index at" in err and "interrupted creation" in err
        report = sparse_only(corpus, str(location), splade)
        assert report.count == 3 and not (location / "shard.partial").exists()


def test_a_shard_with_documents_but_no_metadata_is_never_replaced(tiny_index, capsys):
    corpus, location = tiny_index
    (Path(location) / "hybrid_search.json").unlink()
    code, _, err = run_cli(capsys, "index", str(corpus), "--index", location, "--dense", "none", "--no-progress")
    assert code == 2 and "holds 4 documents but" in err and "Traceback" not in err


# --- 13. a read-only index ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def read_only_copy(index: str, folder: Path):
    """A copy of ``index`` under ``folder`` that cannot be written: a read-only tmpfs as root (root ignores
    permission bits), else a folder without write permission."""
    if os.geteuid() != 0:
        folder.mkdir()
        shutil.copytree(index, folder / "idx")
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            yield folder
        finally:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
        return
    with small_tmpfs(folder, 160) as disk:
        shutil.copytree(index, disk / "idx")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        yield disk


def test_a_read_only_index_is_one_clear_error(tiny_index, tmp_path, capsys):
    corpus, location = tiny_index
    with read_only_copy(location, tmp_path / "ro") as disk:
        for args in (
            ("search", "passage", "--index", str(disk / "idx"), "--mode", "sparse"),
            ("index", str(corpus), "--index", str(disk / "idx"), "--dense", "none", "--no-progress"),
            ("index", str(corpus), "--index", str(disk / "new"), "--dense", "none", "--no-progress"),
        ):
            code, _, err = run_cli(capsys, *args)
            assert code == 2 and "Traceback" not in err, err
            assert "read-only" in err and "no read-only mode" in err and "copy" in err
