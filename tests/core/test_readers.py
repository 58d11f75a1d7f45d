"""Tests for hybrid_search.readers: every format as records, and every bad record reported, never lost."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from hybrid_search.readers import ReadError, RecordReader, count_records, detect_format

ROWS = [
    {"id": "a", "text": "the tide rises", "n": 1},
    {"id": "b", "text": "the moon pulls", "n": 2},
]


def _jsonl(path: Path, rows: list[dict] = ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def _records(reader: RecordReader) -> list[dict]:
    return [record for _, record in reader]


def _as_strings(rows: list[dict]) -> list[dict]:
    return [{k: str(v) for k, v in r.items()} for r in rows]


# --------------------------------------------------------------------------- every format


def test_every_file_format_reads_the_same_records(tmp_path: Path) -> None:
    jsonl = _jsonl(tmp_path / "r.jsonl")
    gz = tmp_path / "r.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    array = tmp_path / "r.json"
    array.write_text(json.dumps(ROWS))
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("id,text,n\na,the tide rises,1\nb,the moon pulls,2\n")
    tsv = tmp_path / "r.tsv"
    tsv.write_text("id\ttext\tn\na\tthe tide rises\t1\nb\tthe moon pulls\t2\n")
    parquet = _parquet(tmp_path / "r.parquet")
    beir = tmp_path / "beir"
    beir.mkdir()
    _jsonl(beir / "corpus.jsonl")

    for path in (jsonl, gz, array, parquet, beir):
        assert _records(RecordReader(path)) == ROWS, path
    for path in (csv_file, tsv):  # text formats carry strings
        assert _records(RecordReader(path)) == _as_strings(ROWS), path
    assert [detect_format(p) for p in (jsonl, gz, array, csv_file, tsv, parquet, beir)] == [
        "jsonl",
        "jsonl",
        "json",
        "csv",
        "tsv",
        "parquet",
        "beir",
    ]
    assert count_records(csv_file) == count_records(parquet) == count_records(jsonl) == 2


def test_locations_name_the_line_or_row(tmp_path: Path) -> None:
    jsonl = _jsonl(tmp_path / "r.jsonl")
    assert [loc for loc, _ in RecordReader(jsonl)] == [f"{jsonl}:1", f"{jsonl}:2"]
    parquet = _parquet(tmp_path / "r.parquet")
    assert [loc for loc, _ in RecordReader(parquet)] == [f"{parquet}:row 1", f"{parquet}:row 2"]


def test_hugging_face_sources_local_file_and_saved_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    parquet = _parquet(tmp_path / "r.parquet")
    assert _records(RecordReader(f"hf:{parquet}")) == ROWS
    saved = tmp_path / "saved"
    datasets.DatasetDict({"corpus": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(saved))
    reader = RecordReader(saved, format="hf", split="corpus")
    assert _records(reader) == ROWS and reader.columns() == ["id", "text", "n"]
    with pytest.raises(ReadError, match="no split 'train'"):
        _records(RecordReader(saved, format="hf"))


def test_tsv_keeps_quotes_literally(tmp_path: Path) -> None:
    tsv = tmp_path / "r.tsv"
    tsv.write_text('id\ttext\na\tsays "hi\nb\tnext row\n')
    assert [r["text"] for r in _records(RecordReader(tsv))] == ['says "hi', "next row"]


# --------------------------------------------------------------------------- columns


def test_columns_from_header_schema_or_the_records_keys(tmp_path: Path) -> None:
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("\n id , text\na,x\n")
    assert RecordReader(csv_file).columns() == ["id", "text"]
    assert RecordReader(_parquet(tmp_path / "r.parquet")).columns() == ["id", "text", "n"]
    uneven = _jsonl(tmp_path / "u.jsonl", [{"q": "x"}, {"q": "y", "extra": 1}])
    reader = RecordReader(uneven)
    assert reader.columns(peek=True) == ["q"]
    assert reader.columns() == ["q", "extra"]
    assert reader.report.problems == []  # the look-ahead is quiet


def test_on_columns_hook_sees_the_header_and_projects_parquet(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def only_text(columns: list[str]) -> list[str]:
        seen.append(columns)
        return ["id", "text", "not-there"]

    reader = RecordReader(_parquet(tmp_path / "r.parquet"))
    reader.on_columns = only_text
    assert _records(reader) == [{"id": r["id"], "text": r["text"]} for r in ROWS]
    assert seen == [["id", "text", "n"]]


# --------------------------------------------------------------------------- bad records


def test_bad_records_are_counted_located_logged_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"id": "a", "text": "ok"}\n'
        b"\n"
        b'{"id": "b", "text": \n'
        b"[1, 2]\n"
        b'{"id": "c", "text": "caf\xe9"}\n'
        b'{"id": "d", "text": "\\ud800 lone"}\n'
    )
    reader = RecordReader(path)
    with caplog.at_level(logging.WARNING, logger="hybrid_search.readers"):
        records = _records(reader)
    assert [r["id"] for r in records] == ["a", "c", "d"]
    assert records[1]["text"] == "caf\ufffd" and records[2]["text"] == "\ufffd lone"
    report = reader.report
    # Nothing is lost silently: every record read was either kept or reported as malformed.
    assert report.read == 5 and report.read == len(records) + report.malformed
    assert (report.malformed, report.decode_errors) == (2, 2)
    assert report.problems == [
        f"{path}:3: malformed JSON: Expecting value",
        f"{path}:4: expected a JSON object, got list",
        f"{path}:5: invalid UTF-8 at byte 24; decoded with replacement characters",
        f"{path}:6: 1 lone UTF-16 surrogate(s) such as \\ud800; replaced with U+FFFD",
    ]
    assert f"{path}:3: malformed JSON" in caplog.text


def test_csv_rows_with_the_wrong_field_count_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('id,text\na,ok\nb,one,two\nc,"multi\nline"\nd\n')
    reader = RecordReader(path)
    assert [r["id"] for r in _records(reader)] == ["a", "c"]
    assert reader.report.problems == [f"{path}:3: expected 2 fields, got 3", f"{path}:6: expected 2 fields, got 1"]


class _MyError(ReadError):
    pass


def test_strict_raises_the_consumers_error_with_the_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n{oops\n')
    reader = RecordReader(path, strict=True, what="training data", error=_MyError)
    with pytest.raises(_MyError, match=rf"^{path}:2: malformed JSON"):
        _records(reader)
    # A consumer's own problems go through the same report; a non-fatal one passes even when strict.
    reader.problem("duplicates", f"{path}:1", "duplicate id 'a'", fatal=False)
    assert reader.report.duplicates == 1 and reader.report.problems == [f"{path}:1: duplicate id 'a'"]
    with pytest.raises(_MyError, match="missing id"):
        reader.problem("missing_id", f"{path}:1", "missing id")


def test_problem_list_is_capped_but_counting_continues(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("not json\n" * 30)
    reader = RecordReader(path)
    assert _records(reader) == []
    report = reader.report
    assert report.malformed == 30 and len(report.problems) == report.max_problems
    assert report.problems_omitted == 30 - report.max_problems


def test_missing_paths_and_unknown_formats_use_the_consumers_words(tmp_path: Path) -> None:
    with pytest.raises(_MyError, match="training data path not found"):
        RecordReader(tmp_path / "nope.jsonl", what="training data", error=_MyError)
    odd = tmp_path / "data.xml"
    odd.touch()
    with pytest.raises(ReadError, match=rf"unknown corpus format for {odd}"):
        RecordReader(odd)
    truncated = tmp_path / "t.jsonl.gz"
    truncated.write_bytes(gzip.compress(b'{"id": "a"}\n' * 100)[:-10])
    with pytest.raises(ReadError, match=rf"cannot read corpus {truncated}"):
        _records(RecordReader(truncated))


# --------------------------------------------------------------------------- its consumers


def test_training_data_streams_through_the_reader_and_reports_the_bad_line(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from hybrid_search.training.data import TrainingDataError, TrainingDataOptions, load_training_data

    path = _jsonl(tmp_path / "pairs.jsonl", [{"query": f"q{i}", "positive": f"passage {i}"} for i in range(4)])
    with path.open("a") as fh:
        fh.write("{broken\n")
    with pytest.raises(TrainingDataError, match=rf"{path}:5: malformed JSON"):
        load_training_data(path)
    path.write_text("".join(json.dumps({"query": f"q{i}", "positive": f"p {i}"}) + "\n" for i in range(4)))
    data = load_training_data(path, TrainingDataOptions(max_examples=3, seed=1))
    assert len(data) == 3 and data.dropped["over_max_examples"] == 1
    bad_csv = tmp_path / "pairs.csv"
    bad_csv.write_text("query,positive\nq,p\nq2,p2,extra\n")
    with pytest.raises(TrainingDataError, match=rf"{bad_csv}:3: expected 2 fields, got 3"):
        load_training_data(bad_csv)


def test_evaluation_datasets_read_strictly_through_the_reader(tmp_path: Path) -> None:
    from hybrid_search.dataset import DatasetError, load_beir, load_hf_dataset

    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n')
    _jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "y"}])
    (root / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(DatasetError, match=r"corpus.jsonl:2: malformed JSON"):
        load_beir(root)

    import pyarrow as pa
    import pyarrow.parquet as pq

    hub = tmp_path / "hub"
    for subset, table in {
        "corpus": pa.table({"_id": ["d1"], "text": ["x"]}),
        "queries": pa.table({"_id": ["q1"], "question": ["y"]}),
        "qrels": pa.table({"query-id": ["q1"], "corpus-id": ["d1"]}),
    }.items():
        (hub / subset).mkdir(parents=True)
        pq.write_table(table, hub / subset / "train-00000-of-00001.parquet")
    with pytest.raises(DatasetError, match=r"queries/train-00000-of-00001.parquet:row 1: expected a column 'text'"):
        load_hf_dataset(hub)
