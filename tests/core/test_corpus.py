"""Tests for hybrid_search.corpus: every format, every kind of bad input, and the real data."""

from __future__ import annotations

import gzip
import json
import logging
import sys
from pathlib import Path

import pytest

from hybrid_search.corpus import CorpusError, CorpusReader
from hybrid_search.readers import ReadReport, count_records, detect_format, source_fingerprint
from hybrid_search.types import Document
from tests.paths import MSMARCO, missing

RECORDS = [
    {"_id": "d1", "title": "Alpha", "text": "first passage", "lang": "en"},
    {"_id": 2, "title": "", "text": "second passage", "lang": "de"},
    {"_id": "d3", "title": "Gamma", "text": "third passage", "lang": "fr"},
]


def write_jsonl(path: Path, records: list[dict] | None = None) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in (records or RECORDS)), encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[dict] | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Arrow columns are typed, so RECORDS' mixed str/int ids are written as strings.
    rows = [dict(r, _id=str(r["_id"])) if "_id" in r else r for r in (records or RECORDS)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def assert_standard(docs: list[Document]) -> None:
    """The three RECORDS, with ids as strings and the extra field in metadata."""
    assert [d.id for d in docs] == ["d1", "2", "d3"]
    assert [d.text for d in docs] == ["first passage", "second passage", "third passage"]
    assert [d.title for d in docs] == ["Alpha", "", "Gamma"]
    assert [d.metadata.get("lang") for d in docs] == ["en", "de", "fr"]


# --------------------------------------------------------------------------- formats


def test_jsonl(tmp_path: Path) -> None:
    reader = CorpusReader(write_jsonl(tmp_path / "c.jsonl"))
    docs = list(reader)
    assert_standard(docs)
    assert reader.format == "jsonl"
    assert reader.report.read == reader.report.yielded == 3
    assert reader.report.problems == []
    assert reader.report.summary() == "read 3, yielded 3"


def test_jsonl_gz(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in RECORDS)
    reader = CorpusReader(path)
    assert reader.format == "jsonl"
    assert_standard(list(reader))
    assert count_records(path) == 3


def test_json_array_and_json_lines(tmp_path: Path) -> None:
    array = tmp_path / "array.json"
    array.write_text(json.dumps(RECORDS, indent=2), encoding="utf-8")
    assert_standard(list(CorpusReader(array)))
    assert count_records(array) is None

    lines = write_jsonl(tmp_path / "lines.json")
    assert_standard(list(CorpusReader(lines)))


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        'doc_id,title,contents,lang\nd1,Alpha,first passage,en\n2,,second passage,de\nd3,Gamma,"third passage",fr\n',
        encoding="utf-8",
    )
    reader = CorpusReader(path)
    assert reader.format == "csv"
    assert_standard(list(reader))
    assert count_records(path) == 3


def test_csv_quoted_multiline_field_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('id,text\n1,"two\nlines, with comma"\n2,ok,extra\n', encoding="utf-8")
    reader = CorpusReader(path)
    docs = list(reader)
    assert [(d.id, d.text) for d in docs] == [("1", "two\nlines, with comma")]
    # The bad row starts on physical line 4, after the two-line record.
    assert reader.report.malformed == 1
    assert reader.report.problems == [f"{path}:4: expected 2 fields, got 3"]


def test_tsv_keeps_quotes_literally(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    path.write_text(
        "id\ttitle\ttext\tlang\nd1\tAlpha\tfirst passage\ten\n2\t\tsecond passage\tde\nd3\tGamma\tthird passage\tfr\n"
        'd4\t\t"quoted" start, no closing quote: "\txx\n',
        encoding="utf-8",
    )
    reader = CorpusReader(path)
    assert reader.format == "tsv"
    docs = list(reader)
    assert_standard(docs[:3])
    assert docs[3].text == '"quoted" start, no closing quote: "'


def test_parquet(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "c.parquet")
    reader = CorpusReader(path)
    assert reader.format == "parquet"
    assert_standard(list(reader))
    assert count_records(path) == 3


def test_parquet_integer_ids_become_strings(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"docid": [10, 11], "body": ["a", "b"]}), path)
    assert [(d.id, d.text, d.title) for d in CorpusReader(path)] == [("10", "a", ""), ("11", "b", "")]


def test_parquet_metadata_fields_projection_and_nested_metadata(tmp_path: Path) -> None:
    records = [dict(r, extra=i, metadata={"url": f"u{i}"}) for i, r in enumerate(RECORDS)]
    path = write_parquet(tmp_path / "c.parquet", records)
    docs = list(CorpusReader(path, metadata_fields=["url", "lang"]))
    assert docs[0].metadata == {"url": "u0", "lang": "en"}
    docs = list(CorpusReader(path))
    assert docs[1].metadata == {"url": "u1", "lang": "de", "extra": 1}


def test_beir_folder(tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl", [dict(r, metadata={"src": "x"}) for r in RECORDS])
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "query"}\n', encoding="utf-8")
    reader = CorpusReader(folder)
    assert reader.format == "beir"
    assert reader.path == folder / "corpus.jsonl"
    docs = list(reader)
    assert_standard(docs)
    assert docs[0].metadata == {"src": "x", "lang": "en"}
    assert count_records(folder) == 3


def test_beir_folder_gzipped(tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    folder.mkdir()
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in RECORDS)
    assert_standard(list(CorpusReader(folder)))


def test_hf_local_directory_goes_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hf-snapshot"
    folder.mkdir()
    write_parquet(folder / "train.parquet")
    calls: list[tuple] = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or real(*a, **k))

    reader = CorpusReader(folder, format="hf")
    assert reader.format == "hf"
    assert_standard(list(reader))
    assert calls and calls[0][0][0] == str(folder) and calls[0][1]["streaming"] is True
    # The "hf:" prefix works for local paths too, and a single data file maps to its builder.
    assert_standard(list(CorpusReader(f"hf:{folder / 'train.parquet'}", split="corpus")))
    assert calls[-1][0][0] == "parquet" and calls[-1][1]["split"] == "corpus"


def test_hf_save_to_disk_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    rows = [dict(r, _id=str(r["_id"])) for r in RECORDS]
    datasets.DatasetDict({"corpus": datasets.Dataset.from_list(rows)}).save_to_disk(str(folder))
    assert_standard(list(CorpusReader(folder, format="hf", split="corpus")))
    with pytest.raises(CorpusError, match="no split 'train'"):
        list(CorpusReader(folder, format="hf"))


def test_hf_missing_split_is_a_corpus_error(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    folder = tmp_path / "hf-snapshot"
    folder.mkdir()
    write_parquet(folder / "train.parquet")
    with pytest.raises(CorpusError, match="split 'nope'"):
        list(CorpusReader(folder, format="hf", split="nope"))


def test_hf_hub_id_is_parsed_and_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    calls: list[tuple] = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return iter(RECORDS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    reader = CorpusReader("hf:BeIR/scifact:corpus", split="corpus")
    assert reader.source == "hf:BeIR/scifact:corpus"
    assert_standard(list(reader))
    assert calls == [(("BeIR/scifact", "corpus"), {"split": "corpus", "streaming": True})]

    assert_standard(list(CorpusReader("owner/name", format="hf")))
    assert calls[-1][0] == ("owner/name", None)


def test_explicit_fields_and_metadata_fields(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [{"pid": 7, "passage_text": "hello", "heading": "H", "a": 1, "b": 2, "metadata": {"c": 3}}],
    )
    reader = CorpusReader(
        path, id_field="pid", text_field="passage_text", title_field="heading", metadata_fields=["b", "c"]
    )
    assert list(reader) == [Document(id="7", text="hello", title="H", metadata={"b": 2, "c": 3})]


def test_explicit_field_missing_from_header_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"text_field 'body' is not among its columns"):
        list(CorpusReader(path, text_field="body"))
    path.write_text("key,value\n1,hello\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no id column"):
        list(CorpusReader(path))


def test_a_reader_reiterates(tmp_path: Path) -> None:
    reader = CorpusReader(write_jsonl(tmp_path / "c.jsonl"))
    assert isinstance(reader, CorpusReader)
    assert [d.id for d in reader] == [d.id for d in reader]
    assert reader.report.read == 3  # a fresh report per pass, not accumulated


# --------------------------------------------------------------------------- bad input


def test_malformed_json_line_is_skipped_and_located(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "ok"}\n\n{"_id": "b", "text": \n[1, 2]\n{"_id": "c", "text": "ok"}\n')
    reader = CorpusReader(path)
    with caplog.at_level(logging.WARNING, logger="hybrid_search.corpus"):
        docs = list(reader)
    assert [d.id for d in docs] == ["a", "c"]
    report = reader.report
    assert (report.read, report.yielded, report.malformed) == (4, 2, 2)  # the blank line is not counted
    assert report.problems[0].startswith(f"{path}:3: malformed JSON")
    assert report.problems[1] == f"{path}:4: expected a JSON object, got list"
    assert f"{path}:3" in caplog.text
    assert report.summary() == "read 4, yielded 2, malformed 2"


def test_strict_mode_raises_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "ok"}\n{not json}\n')
    reader = CorpusReader(path, strict=True)
    with pytest.raises(CorpusError, match=rf"{path}:2: malformed JSON"):
        list(reader)

    path.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "  "}\n')
    with pytest.raises(CorpusError, match=rf"{path}:2: missing text"):
        list(CorpusReader(path, strict=True))


def test_missing_id(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [{"text": "no id"}, {"_id": "", "text": "empty id"}, {"_id": None, "text": "null id"}, {"id": 5, "text": "ok"}],
    )
    reader = CorpusReader(path)
    assert [d.id for d in reader] == ["5"]
    assert reader.report.missing_id == 3
    assert reader.report.problems[0].startswith(f"{path}:1: missing id")
    with pytest.raises(CorpusError, match=rf"{path}:1: missing id"):
        list(CorpusReader(path, strict=True))


def test_missing_text_but_title_only_is_kept(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "1", "title": "", "text": "   "},
            {"_id": "2"},
            {"_id": "3", "title": "Title only", "text": ""},
            {"_id": "4", "text": "fine"},
        ],
    )
    reader = CorpusReader(path)
    docs = list(reader)
    assert [d.id for d in docs] == ["3", "4"]
    assert docs[0].full_text == "Title only"
    assert reader.report.missing_text == 2
    assert reader.report.problems[1].startswith(f"{path}:2: missing text")


def test_duplicate_ids_are_all_yielded_in_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [{"_id": i, "text": t} for i, t in [("x", "v1"), ("y", "other"), ("x", "v2"), ("x", "v3")]],
    )
    reader = CorpusReader(path, strict=True)  # duplicates are a contract, not an error, even in strict mode
    with caplog.at_level(logging.WARNING, logger="hybrid_search.corpus"):
        docs = list(reader)
    assert [(d.id, d.text) for d in docs] == [("x", "v1"), ("y", "other"), ("x", "v2"), ("x", "v3")]
    assert reader.report.duplicates == 2
    assert reader.report.problems[0].startswith(f"{path}:3: duplicate id 'x'")
    assert "duplicate id 'x'" in caplog.text
    # Upserting by id keeps the last occurrence.
    assert {d.id: d.text for d in docs}["x"] == "v3"


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"_id": "1", "text": "caf\xe9 latin-1"}\n{"_id": "2", "text": "fine \xc3\xa9"}\n')
    reader = CorpusReader(path)
    docs = list(reader)
    assert [d.text for d in docs] == ["caf\ufffd latin-1", "fine \u00e9"]
    assert reader.report.decode_errors == 1
    assert reader.report.problems[0].startswith(f"{path}:1: invalid UTF-8")
    with pytest.raises(CorpusError, match=rf"{path}:1: invalid UTF-8"):
        list(CorpusReader(path, strict=True))


def test_non_utf8_bytes_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"id,text\n1,ok\n2,na\xefve\n")
    reader = CorpusReader(path)
    assert [d.text for d in reader] == ["ok", "na\ufffdve"]
    assert reader.report.decode_errors == 1
    assert reader.report.problems == [f"{path}:3: invalid UTF-8 at byte 4; decoded with replacement characters"]


def test_problem_list_is_capped_but_counting_continues(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("garbage\n" * 50 + '{"_id": "ok", "text": "ok"}\n')
    reader = CorpusReader(path)
    assert len(list(reader)) == 1
    assert reader.report.malformed == 50
    assert len(reader.report.problems) == ReadReport().max_problems
    assert reader.report.problems_omitted == 50 - ReadReport().max_problems
    assert "malformed 50" in reader.report.summary()


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_corpus(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusError, match=rf"corpus {path} is empty"):
        list(CorpusReader(path))


def test_corpus_of_only_bad_lines_reports_what_was_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('not json\n{"_id": "a"}\n')
    with pytest.raises(CorpusError, match=r"is empty: all 2 records were skipped .*malformed 1, missing_text 1"):
        list(CorpusReader(path))


def test_header_only_csv_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,text\n")
    with pytest.raises(CorpusError, match="is empty"):
        list(CorpusReader(path))


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(CorpusError, match=rf"corpus path not found: {missing}"):
        CorpusReader(missing)
    with pytest.raises(CorpusError, match="hf:owner/name"):
        CorpusReader("owner/name")  # the hint points at the hf: form


def test_unknown_extension_and_format(tmp_path: Path) -> None:
    path = tmp_path / "c.xml"
    path.write_text("<docs/>")
    with pytest.raises(CorpusError, match=rf"unknown corpus format for {path}"):
        CorpusReader(path)
    with pytest.raises(CorpusError, match="unknown corpus format 'xml'"):
        CorpusReader(path, format="xml")
    # An explicit format overrides the extension.
    txt = write_jsonl(tmp_path / "c.txt")
    assert_standard(list(CorpusReader(txt, format="jsonl")))


def test_directory_without_corpus_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="is not a BEIR folder"):
        CorpusReader(tmp_path)


def test_truncated_gzip_is_a_corpus_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    data = gzip.compress(("".join(json.dumps(r) + "\n" for r in RECORDS * 50)).encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=rf"cannot read corpus {path}"):
        list(CorpusReader(path))


# --------------------------------------------------------------------------- helpers


def test_detect_format(tmp_path: Path) -> None:
    expected_formats = {
        "a.jsonl": "jsonl",
        "a.jsonl.gz": "jsonl",
        "a.csv": "csv",
        "a.tsv": "tsv",
        "a.parquet": "parquet",
        "a.json": "json",
    }
    for name, expected in expected_formats.items():
        (tmp_path / name).touch()
        assert detect_format(tmp_path / name) == expected
    assert detect_format("hf:owner/name") == "hf"


def test_corpus_fingerprint(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl")
    b = write_jsonl(tmp_path / "b.jsonl", RECORDS[:2])
    folder = tmp_path / "beir"
    folder.mkdir()
    write_jsonl(folder / "corpus.jsonl")
    fp = source_fingerprint(a)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == source_fingerprint(a) != source_fingerprint(b)
    assert source_fingerprint(folder) == fp  # a BEIR folder hashes its corpus.jsonl
    assert source_fingerprint("hf:owner/name") != source_fingerprint("hf:owner/name", split="test")
    assert CorpusReader(a).fingerprint == fp


def test_count_documents_is_an_upper_bound_for_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}')  # no trailing newline
    assert count_records(path) == 2
    assert count_records("hf:owner/name") is None


# --------------------------------------------------------------------------- the real data


@pytest.mark.skipif(not MSMARCO.is_dir(), reason=missing(MSMARCO, "the MS MARCO DL19 subset"))
def test_real_msmarco_dl19_5k() -> None:
    reader = CorpusReader(MSMARCO)
    assert reader.format == "beir"
    ids = [doc.id for doc in reader]
    assert len(ids) == 5000
    assert len(set(ids)) == 5000
    assert reader.report.summary() == "read 5000, yielded 5000"
    assert count_records(MSMARCO) == 5000


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_lone_surrogates_are_repaired_and_counted_with_file_and_line(tmp_path: Path) -> None:
    """``"\\ud800"`` is valid JSON but not encodable text: it is repaired and named, not fatal at store time."""
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"_id": "1", "text": "fine"}\n'
        '{"_id": "2", "text": "bad \\ud800 here", "tags": ["\\udfff"]}\n'
        '{"_id": "3", "text": "a valid pair \\ud83d\\ude00 stays"}\n',
        encoding="utf-8",
    )
    reader = CorpusReader(path)
    docs = list(reader)
    assert [d.text for d in docs] == ["fine", "bad \ufffd here", "a valid pair \U0001f600 stays"]
    assert docs[1].metadata == {"tags": ["\ufffd"]}
    for doc in docs:  # everything yielded can be stored as UTF-8
        json.dumps([doc.text, doc.metadata], ensure_ascii=False).encode("utf-8")
    assert reader.report.decode_errors == 1
    assert reader.report.problems[0].startswith(f"{path}:2: 2 lone UTF-16 surrogate(s)")
    with pytest.raises(CorpusError, match=rf"{path}:2: 2 lone UTF-16 surrogate"):
        list(CorpusReader(path, strict=True))


def test_duplicate_ids_counts_occurrences_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "x", "text": "v1"},
            {"_id": "y", "text": "y"},
            {"_id": "x", "text": "v2"},
            {"_id": "z"},
            {"_id": "x", "text": "v3"},
            {"_id": "y", "text": "y2"},
        ],
    )
    reader = CorpusReader(path)
    with caplog.at_level(logging.INFO, logger="hybrid_search.corpus"):
        assert reader.duplicate_ids() == {"x": 3, "y": 2}
    assert caplog.text == ""  # the counting pass reports nothing; the real pass does
    assert len(list(reader)) == 5 and reader.report.duplicates == 3 and reader.report.missing_text == 1
