"""One reader stack: every supported file format as a stream of records, with every bad record reported.

The corpus (:mod:`hybrid_search.corpus`), the evaluation datasets (:mod:`hybrid_search.dataset`) and the
training data (:mod:`hybrid_search.training.data`) all read their files through :class:`RecordReader`, so a
format is parsed in one place and a bad line is reported the same way everywhere: counted in a
:class:`ReadReport`, listed with its ``file:line`` (or ``file:row N``) and the reason, logged, and skipped, or,
with ``strict=True``, raised. Nothing is lost silently.

Readers never hold a whole JSONL/CSV file in memory; Parquet is read one record batch at a time and Hugging
Face datasets are opened with ``streaming=True`` wherever the dataset allows it.

Supported sources:

* ``.jsonl`` / ``.ndjson`` (optionally gzip-compressed, e.g. ``.jsonl.gz``): one JSON object a line.
* ``.json``: either a JSON array of objects (loaded whole; arrays cannot be streamed) or JSONL.
* ``.csv`` / ``.tsv`` (optionally gzip-compressed): a header row, then one record a row. TSV is
  read without quote processing (``csv.QUOTE_NONE``), the convention of IR collections such as
  MS MARCO's ``collection.tsv``, so a stray ``"`` in a passage cannot swallow later rows.
* ``.parquet``.
* A BEIR folder: a directory holding ``corpus.jsonl`` or ``corpus.jsonl.gz`` (its corpus file is read).
* Hugging Face datasets, via ``datasets.load_dataset``:

  - ``"hf:owner/name"`` or ``"hf:owner/name:config"`` (or ``format="hf"`` with ``"owner/name"``)
    loads from the Hub.
  - ``format="hf"`` (or an ``hf:`` prefix) with an existing local path loads local files through
    the same library: a directory of data files (a downloaded Hub snapshot, with or without a
    ``README.md`` config) is passed to ``load_dataset(dir)``, which infers the builder from the
    files; a single data file is loaded with the matching builder (``parquet``, ``json``,
    ``csv``) as ``data_files={split: file}``; a directory written by ``save_to_disk`` is opened
    with ``load_from_disk``.

Example:
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> _ = path.write_text(json.dumps({"q": "tides"}) + "\\n" + "{oops\\n")
    >>> reader = RecordReader(path)
    >>> [record for _, record in reader]
    [{'q': 'tides'}]
    >>> reader.report.malformed, reader.report.problems[0].endswith("rows.jsonl:2: malformed JSON: Expecting property name enclosed in double quotes")
    (1, True)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger(__name__)

#: Format names accepted by ``format=``.
FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "tsv", "parquet", "beir", "hf")

_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
#: The corpus file names that make a directory a BEIR folder, in order of preference.
BEIR_FILES: tuple[str, ...] = ("corpus.jsonl", "corpus.jsonl.gz")
_GZIP_MAGIC = b"\x1f\x8b"
HF_PREFIX = "hf:"
# Hub ids are "name" or "owner/name", optionally followed by ":config".
_HF_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?(:[\w.-]+)?$")
_PARQUET_BATCH_ROWS = 1024
# A lone UTF-16 surrogate ("\ud800" escaped in JSON) parses into a str that cannot be encoded as UTF-8, so
# it would fail far from its line, at hashing or storing time. Valid pairs are joined by the JSON parser.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Only JSON escapes (and the rows of a dataset built by other code) can carry one: decoded UTF-8 (CSV/TSV) and
# Arrow strings (Parquet) cannot, so JSON text is repaired only where it holds such an escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_HASH_CHUNK = 1 << 20
# Files that mark a directory written by ``save_to_disk`` (a DatasetDict, or one Dataset).
_SAVED_MARKERS = ("dataset_dict.json", "state.json")


class ReadError(ValueError):
    """A source cannot be read: missing path, unknown format, unreadable file, or (strict) a bad record.

    Each consumer raises its own subclass (``CorpusError``, ``DatasetError``, ``TrainingDataError``) by
    passing it as ``error=`` to :class:`RecordReader`, so callers keep catching the error they know.
    """


@dataclass
class ReadReport:
    """What happened while reading a source; filled in during iteration.

    Counters keep counting past ``max_problems``; only the ``problems`` list is capped, so a
    source with millions of bad lines does not turn the report into a second copy of it.
    """

    read: int = 0
    """Records met, good or bad (blank lines are not records)."""
    yielded: int = 0
    """Records the consumer kept (for a corpus: documents yielded)."""
    malformed: int = 0
    """Lines or rows that could not be parsed into a record."""
    missing_id: int = 0
    """Records without a usable id (counted by the consumer that needs one)."""
    missing_text: int = 0
    """Records without text (counted by the consumer that needs it)."""
    duplicates: int = 0
    """Records whose id was already seen."""
    decode_errors: int = 0
    """Records with invalid UTF-8 or lone surrogates, repaired with U+FFFD and kept."""
    problems: list[str] = field(default_factory=list)
    problems_omitted: int = 0
    max_problems: int = 20

    @property
    def skipped(self) -> int:
        """Records read but not yielded."""
        return self.malformed + self.missing_id + self.missing_text

    def add_problem(self, location: str, reason: str) -> bool:
        """Record ``"location: reason"`` unless the list is full.

        Returns:
            True when the problem was listed, False when it only counted as omitted.
        """
        if len(self.problems) < self.max_problems:
            self.problems.append(f"{location}: {reason}")
            return True
        self.problems_omitted += 1
        return False

    def summary(self) -> str:
        """One line listing the non-zero counters, e.g. ``"read 10, yielded 8, malformed 2"``."""
        names = ("read", "yielded", "malformed", "missing_id", "missing_text", "duplicates", "decode_errors")
        parts = [f"{name} {getattr(self, name)}" for name in names if getattr(self, name)]
        if self.problems_omitted:
            parts.append(f"{self.problems_omitted} problems not listed")
        return ", ".join(parts) if parts else "nothing read"


@dataclass(frozen=True)
class HFRef:
    """A Hugging Face dataset: a Hub id (``name``/``config``) or a local path."""

    label: str
    name: str | None = None
    config: str | None = None
    local: Path | None = None


@dataclass(frozen=True)
class Source:
    """A resolved source: its format and the data file (the corpus file of a BEIR folder), or a dataset."""

    format: str
    path: Path | None  # None for HF
    hf: HFRef | None = None

    @property
    def label(self) -> str:
        return self.hf.label if self.hf is not None else str(self.path)


@dataclass(frozen=True)
class Bad:
    """A record that could not be parsed, with the reason."""

    reason: str


# --------------------------------------------------------------------------- source resolution


def format_from_suffix(path: Path) -> str | None:
    """The format its extension names (``.gz`` looked through), or None when unknown."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        # Parquet compresses internally; a gzipped Parquet file is not something we can stream.
        if suffixes and suffixes[-1] == ".parquet":
            return None
    return _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


def beir_corpus_file(directory: Path) -> Path | None:
    """The corpus file of a BEIR folder, or None when ``directory`` is not one."""
    return next((directory / name for name in BEIR_FILES if (directory / name).is_file()), None)


def is_saved_dataset(directory: Path) -> bool:
    """Whether ``directory`` was written by ``datasets``' ``save_to_disk``."""
    return directory.is_dir() and any((directory / name).is_file() for name in _SAVED_MARKERS)


def parse_hf(spec: str, *, what: str = "corpus", error: type[ReadError] = ReadError) -> HFRef:
    """Parse ``owner/name[:config]`` or a local path (after any ``hf:`` prefix)."""
    local = Path(spec).expanduser()
    if local.exists():
        return HFRef(label=str(local), local=local)
    if not _HF_ID.match(spec):
        raise error(
            f"{what} path not found: {spec} (and it is not a Hugging Face id of the form 'owner/name[:config]')"
        )
    name, _, config = spec.partition(":")
    return HFRef(label=f"{HF_PREFIX}{spec}", name=name, config=config or None)


def resolve_source(
    source: str | Path, format: str | None = None, *, what: str = "corpus", error: type[ReadError] = ReadError
) -> Source:
    """Decide what ``source`` is and which format reads it.

    Args:
        source: A file, a BEIR folder, ``"hf:owner/name[:config]"``, or (with ``format="hf"``) a Hub id or
            local dataset path.
        format: One of :data:`FORMATS`; detected from the path when omitted.
        what: The noun error messages use (``"corpus"``, ``"training data"``).
        error: The :class:`ReadError` subclass to raise.

    Raises:
        ReadError: (as ``error``) the path is missing or its format is unknown.
    """
    if format is not None:
        format = format.lower()
        if format not in FORMATS:
            raise error(f"unknown {what} format {format!r}; expected one of {', '.join(FORMATS)}")
    text = str(source)
    if isinstance(source, str) and text.startswith(HF_PREFIX):
        return Source("hf", None, parse_hf(text[len(HF_PREFIX) :], what=what, error=error))
    if format == "hf":
        return Source("hf", None, parse_hf(text, what=what, error=error))

    path = Path(source).expanduser()
    if not path.exists():
        hint = f" (for a Hugging Face dataset use 'hf:{text}' or format='hf')" if _HF_ID.match(text) else ""
        raise error(f"{what} path not found: {path}{hint}")
    if path.is_dir():
        return _directory_source(path, format, what, error)
    if format == "beir":
        return Source("beir", path)
    detected = format or format_from_suffix(path)
    if detected is None:
        raise error(
            f"unknown {what} format for {path}: cannot tell from the extension "
            f"(known: {', '.join(sorted(_SUFFIX_FORMATS))}, optionally .gz); pass format=..."
        )
    return Source(detected, path)


def _directory_source(path: Path, format: str | None, what: str, error: type[ReadError]) -> Source:
    corpus_file = beir_corpus_file(path)
    if corpus_file is None:
        raise error(
            f"{what} directory {path} is not a BEIR folder (no {' or '.join(BEIR_FILES)}); "
            "pass format='hf' to load it with datasets.load_dataset"
        )
    if format not in (None, "beir", "jsonl"):
        raise error(f"{what} {path} is a directory; format {format!r} needs a file")
    return Source("beir", corpus_file)


def detect_format(source: str | Path, format: str | None = None) -> str:
    """Return the format name :class:`RecordReader` would use for ``source``.

    Raises:
        ReadError: the path is missing or its format is unknown.
    """
    return resolve_source(source, format).format


# --------------------------------------------------------------------------- byte helpers


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for binary reading, transparently un-gzipping by magic bytes, not suffix."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")  # type: ignore[return-value]


def _count_lines(path: Path) -> int:
    newlines, last = 0, b"\n"
    with open_binary(path) as fh:
        while chunk := fh.read(_HASH_CHUNK):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return newlines + (last != b"\n")


def _starts_with(path: Path, char: bytes) -> bool:
    with open_binary(path) as fh:
        head = fh.read(4096)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(char)


def _hash_files(paths: Iterable[tuple[str | None, Path]]) -> str:
    """SHA-256 of the files' bytes; a name is mixed in only where renaming changes the dataset."""
    digest = hashlib.sha256()
    for name, path in paths:
        if name is not None:
            digest.update(name.encode() + b"\0")
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def repair_surrogates(value: Any) -> tuple[Any, int]:
    """``value`` with every lone surrogate in its strings (keys included) replaced by U+FFFD, and the count.

    Such a record is repaired and counted like a line of invalid UTF-8, rather than aborting the run later.
    """
    if isinstance(value, str):
        return _SURROGATE.subn("\ufffd", value) if _SURROGATE.search(value) else (value, 0)
    if isinstance(value, dict):
        fixed: dict[Any, Any] = {}
        total = 0
        for key, item in value.items():
            key, n_key = repair_surrogates(key)
            fixed[key], n_item = repair_surrogates(item)
            total += n_key + n_item
        return (fixed, total) if total else (value, 0)
    if isinstance(value, (list, tuple)):
        pairs = [repair_surrogates(item) for item in value]
        total = sum(n for _, n in pairs)
        return ([item for item, _ in pairs], total) if total else (value, 0)
    return value, 0


# --------------------------------------------------------------------------- the reader

#: Called with a source's column names once they are known (a CSV header, a Parquet schema); returns the
#: columns to read (Parquet reads only those) or None for all. It may raise to fail fast on unusable columns.
ColumnsHook = Callable[[list[str]], Sequence[str] | None]


class RecordReader:
    """An iterable of ``(location, record)`` read lazily from a file, a BEIR folder's corpus, or an HF dataset.

    ``location`` is ``file:line`` (``file:row N`` for Parquet / HF / JSON arrays); ``record`` a dict. Each
    iteration re-reads the source and replaces :attr:`report` with a fresh :class:`ReadReport`. A record
    that cannot be parsed is counted as ``malformed``, listed (capped) in ``report.problems`` with its
    location, logged as a warning and skipped; bytes that are not UTF-8 and lone surrogates are replaced
    with U+FFFD and counted in ``decode_errors`` (the record is kept). With ``strict=True`` each of those
    raises ``error`` naming the location instead. Consumers report their own record-level problems
    (a missing id, a duplicate) through :meth:`problem`, into the same report.

    Args:
        source: Anything :func:`resolve_source` accepts.
        format: One of :data:`FORMATS`; detected from the path when omitted.
        split: Dataset split, for Hugging Face sources only.
        strict: Raise on the first bad record instead of skipping it.
        what: The noun messages use (``"corpus"``, ``"training data"``).
        error: The :class:`ReadError` subclass raised.
        log: Where problems are logged (the consumer's logger, so its users see them where they look).
    """

    def __init__(
        self,
        source: str | Path,
        *,
        format: str | None = None,
        split: str = "train",
        strict: bool = False,
        what: str = "corpus",
        error: type[ReadError] = ReadError,
        log: logging.Logger = logger,
    ) -> None:
        self.source = resolve_source(source, format, what=what, error=error)
        self.split, self.strict, self.what, self.error, self.log = split, strict, what, error, log
        self.report = ReadReport()
        self.on_columns: ColumnsHook | None = None
        self.quiet = False  # a pass that only counts or peeks logs nothing: the real pass reports problems

    @property
    def format(self) -> str:
        return self.source.format

    @property
    def path(self) -> Path | None:
        return self.source.path

    @property
    def label(self) -> str:
        return self.source.label

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        report = self.report = ReadReport()
        for location, record in self._records():
            report.read += 1
            if isinstance(record, Bad):
                self.problem("malformed", location, record.reason)
                continue
            yield location, record

    def problem(self, kind: str, location: str, reason: str, *, fatal: bool = True) -> None:
        """Count a problem of ``kind`` (a :class:`ReadReport` counter), then raise (strict) or list and log it.

        Args:
            fatal: False for problems that are a documented contract rather than bad input (a duplicate
                id: the last one wins), which strict mode allows.
        """
        report = self.report
        setattr(report, kind, getattr(report, kind) + 1)
        if self.strict and fatal:
            raise self.error(f"{location}: {reason}")
        if self.quiet:
            return
        if report.add_problem(location, reason):
            self.log.warning("%s: %s", location, reason)
        elif report.problems_omitted == 1:
            self.log.warning(
                "%s %s: more than %d problems; further ones are counted in the report but not logged",
                self.what,
                self.label,
                report.max_problems,
            )

    def _repaired(self, location: str, record: Any) -> Any:
        """``record`` with its lone surrogates replaced, each record that had some reported."""
        record, surrogates = repair_surrogates(record)
        if surrogates:
            reason = f"{surrogates} lone UTF-16 surrogate(s) such as \\ud800; replaced with U+FFFD"
            self.problem("decode_errors", location, reason)
        return record

    def columns(self, *, peek: bool = False) -> list[str]:
        """The source's column names: its header or schema, else the union of its records' keys.

        A CSV header or Parquet schema is read without the rows; JSON(L) has no schema, so its records are
        read once, quietly, keeping only their keys (first-seen order). Bad records are left to the real pass.

        Args:
            peek: For a source without a schema, the first record's keys only (a cheap look, not a promise
                about later records).
        """
        fmt, path = self.format, self.path
        if fmt in ("csv", "tsv") and path is not None:
            with open_binary(path) as fh:
                first = next((line for line in fh if line.strip()), b"").decode("utf-8", errors="replace")
            header = next(csv.reader([first.removeprefix("\ufeff")], delimiter="\t" if fmt == "tsv" else ","), [])
            return [name.strip() for name in header]
        if fmt == "parquet" and path is not None:
            return list(self._parquet_file(path).schema_arrow.names)
        if fmt == "hf":
            peek = True  # every row of a dataset has the same columns
            names = getattr(self._hf_dataset(), "column_names", None)
            if names:
                return list(names)
        keys: dict[str, None] = {}
        quiet, strict, self.quiet, self.strict = self.quiet, self.strict, True, False
        try:
            for _, record in self:
                keys.update(dict.fromkeys(record))
                if peek:
                    break
        finally:
            self.quiet, self.strict = quiet, strict
        return list(keys)

    # ----------------------------------------------------------------------- record sources

    def _records(self) -> Iterator[tuple[str, dict[str, Any] | Bad]]:
        fmt, path = self.format, self.path
        if fmt == "hf":
            return self._hf_records()
        assert path is not None
        if fmt in ("jsonl", "beir"):
            return self._jsonl_records(path)
        if fmt == "json":
            return self._json_array_records(path) if _starts_with(path, b"[") else self._jsonl_records(path)
        if fmt == "csv":
            return self._csv_records(path, ",", csv.QUOTE_MINIMAL)
        if fmt == "tsv":
            return self._csv_records(path, "\t", csv.QUOTE_NONE)
        if fmt == "parquet":
            return self._parquet_records(path)
        raise self.error(f"unknown {self.what} format {fmt!r}")  # unreachable: resolve_source validated it

    def _lines(self, path: Path) -> Iterator[tuple[int, str]]:
        """Yield ``(line_number, text)``, decoding each line on its own so one bad byte costs one line."""
        try:
            with open_binary(path) as fh:
                for lineno, raw in enumerate(fh, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        line = raw.decode("utf-8", errors="replace")
                        self.problem(
                            "decode_errors",
                            f"{path}:{lineno}",
                            f"invalid UTF-8 at byte {exc.start}; decoded with replacement characters",
                        )
                    yield lineno, (line.removeprefix("\ufeff") if lineno == 1 else line)
        except (OSError, EOFError, zlib.error) as exc:
            # Truncated or corrupt gzip streams surface here, possibly after many good lines.
            raise self.error(f"cannot read {self.what} {path}: {exc}") from exc

    def _jsonl_records(self, path: Path) -> Iterator[tuple[str, dict[str, Any] | Bad]]:
        for lineno, line in self._lines(path):
            if not line.strip():
                continue
            location = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
                yield location, Bad(f"malformed JSON: {reason}")
                continue
            if not isinstance(record, dict):
                yield location, Bad(f"expected a JSON object, got {type(record).__name__}")
                continue
            yield location, self._repaired(location, record) if _SURROGATE_ESCAPE.search(line) else record

    def _json_array_records(self, path: Path) -> Iterator[tuple[str, dict[str, Any] | Bad]]:
        # A JSON array cannot be parsed incrementally with the standard library; JSONL can.
        with open_binary(path) as fh:
            raw = fh.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8-sig", errors="replace")
            reason = f"invalid UTF-8 at byte {exc.start}; decoded with replacement characters"
            self.problem("decode_errors", str(path), reason)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.error(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(items, list):
            raise self.error(f"{self.what} {path}: expected a JSON array of objects, got {type(items).__name__}")
        escaped = _SURROGATE_ESCAPE.search(text) is not None
        for index, item in enumerate(items, 1):
            location = f"{path}:item {index}"
            if not isinstance(item, dict):
                item = Bad(f"expected a JSON object, got {type(item).__name__}")
            yield location, self._repaired(location, item) if escaped and isinstance(item, dict) else item

    def _csv_records(self, path: Path, delimiter: str, quoting: int) -> Iterator[tuple[str, dict[str, Any] | Bad]]:
        # The default 128 KiB field limit is smaller than some real documents; only ever raised.
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
        reader = csv.reader((line for _, line in self._lines(path)), delimiter=delimiter, quoting=quoting)  # type: ignore[arg-type]
        header: list[str] | None = None
        end = 0
        while True:
            start = end + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                end = reader.line_num
                yield f"{path}:{start}", Bad(f"malformed row: {exc}")
                continue
            end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in row]
                if self.on_columns is not None:
                    self.on_columns(header)
                continue
            if len(row) != len(header):
                yield f"{path}:{start}", Bad(f"expected {len(header)} fields, got {len(row)}")
                continue
            yield f"{path}:{start}", dict(zip(header, row))

    def _parquet_file(self, path: Path) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise self.error(f"cannot read Parquet {self.what} {path}: {exc}") from exc

    def _parquet_records(self, path: Path) -> Iterator[tuple[str, dict[str, Any] | Bad]]:
        parquet = self._parquet_file(path)
        names = parquet.schema_arrow.names
        wanted = self.on_columns(list(names)) if self.on_columns is not None else None
        # Read only the columns the consumer uses; wide tables are common for Parquet.
        columns = list(dict.fromkeys(c for c in wanted if c in names)) if wanted is not None else None
        row = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
            for record in batch.to_pylist():
                row += 1
                yield f"{path}:row {row}", record

    def _hf_dataset(self) -> Iterable[dict[str, Any]]:
        hf = self.source.hf
        assert hf is not None
        try:
            return open_hf(hf, self.split)
        except ReadError as exc:
            raise self.error(str(exc)) from exc
        except Exception as exc:  # datasets raises many unrelated types (FileNotFound, DatasetNotFound, ValueError...)
            raise self.error(f"cannot load Hugging Face dataset {hf.label} (split {self.split!r}): {exc}") from exc

    def _hf_records(self) -> Iterator[tuple[str, dict[str, Any] | Bad]]:
        label = self.source.label
        for row, record in enumerate(self._hf_dataset(), 1):
            location = f"{label}[{self.split}]:row {row}"
            if not isinstance(record, dict):
                yield location, Bad(f"expected a row mapping, got {type(record).__name__}")
                continue
            yield location, self._repaired(location, record)


# --------------------------------------------------------------------------- Hugging Face datasets


def _hf_file_builder(path: Path) -> tuple[str, dict[str, Any]]:
    fmt = format_from_suffix(path)
    if fmt in ("jsonl", "json"):
        return "json", {}
    if fmt == "csv":
        return "csv", {}
    if fmt == "tsv":
        return "csv", {"sep": "\t"}
    if fmt == "parquet":
        return "parquet", {}
    if path.suffix.lower() == ".arrow":
        return "arrow", {}
    raise ReadError(f"cannot load {path} with datasets: unknown data file type {''.join(path.suffixes)!r}")


def open_hf(ref: HFRef, split: str, *, streaming: bool = True) -> Iterable[dict[str, Any]]:
    """Open a Hugging Face dataset split as an iterable of row dicts, streaming where possible.

    The one place that calls ``datasets.load_dataset``. Failures of ``datasets`` itself (no network, an
    unknown repository) propagate as they are, so a caller can tell them apart; a missing split of a saved
    dataset raises :class:`ReadError`.

    Args:
        ref: The dataset (see :func:`parse_hf`).
        split: The split to read.
        streaming: False downloads a Hub dataset whole (for callers that need it all anyway).
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is an optional dependency
        raise ReadError(f"reading {ref.label} needs the 'datasets' package: pip install datasets") from exc

    if ref.local is None:
        if not streaming:
            return datasets.load_dataset(ref.name, ref.config, split=split)
        try:
            return datasets.load_dataset(ref.name, ref.config, split=split, streaming=True)
        except NotImplementedError:
            # Some Hub datasets cannot stream; downloading is slower but still works.
            logger.warning("dataset %s does not support streaming; downloading it instead", ref.label)
            return datasets.load_dataset(ref.name, ref.config, split=split)
    local = ref.local
    if is_saved_dataset(local):
        saved = datasets.load_from_disk(str(local))
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise ReadError(f"dataset {ref.label} has no split {split!r} (splits: {', '.join(saved)})")
            saved = saved[split]
        return saved.to_iterable_dataset()  # Arrow files are memory-mapped, so this stays lazy
    if local.is_dir():
        return datasets.load_dataset(str(local), ref.config, split=split, streaming=True)
    builder, kwargs = _hf_file_builder(local)
    return datasets.load_dataset(builder, data_files={split: str(local)}, split=split, streaming=True, **kwargs)


# --------------------------------------------------------------------------- cheap facts about a source


def source_fingerprint(path: str | Path, *, split: str = "train", format: str | None = None) -> str:
    """A short content hash of a source, for keying caches such as stored embeddings.

    Args:
        path: Anything :class:`RecordReader` accepts.
        split: Split of a Hugging Face source (part of a Hub fingerprint).
        format: As for :class:`RecordReader`; only matters for ``"hf"``.

    Returns:
        The first 16 hex digits of a SHA-256 over the file's bytes (``corpus.jsonl`` for a BEIR
        folder; every file, by relative name, for a local dataset directory). A Hub dataset cannot
        be hashed without downloading it, so its id, config and split are hashed instead.
    """
    source = resolve_source(path, format)
    hf = source.hf
    if hf is None:
        assert source.path is not None
        return _hash_files([(None, source.path)])
    if hf.local is None:
        return hashlib.sha256(f"{hf.label}\0{split}".encode()).hexdigest()[:16]
    if hf.local.is_file():
        return _hash_files([(None, hf.local)])
    # Skip hidden entries such as .cache/ or .git/, which change without the data changing.
    names = sorted(p.relative_to(hf.local).as_posix() for p in hf.local.rglob("*") if p.is_file())
    visible = [n for n in names if not any(part.startswith(".") for part in n.split("/"))]
    return _hash_files((name, hf.local / name) for name in visible)


def count_records(source: str | Path, *, format: str | None = None) -> int | None:
    """A cheap estimate of the number of records, e.g. for a progress-bar total.

    Counts lines for JSONL (and JSONL-style ``.json``) and data rows for CSV/TSV, so blank lines
    or multi-line quoted CSV fields make it an over-estimate; reads the row count from Parquet
    metadata. Returns None when unknown without reading the data (JSON arrays, HF datasets).

    Raises:
        ReadError: the path is missing or its format is unknown.
    """
    resolved = resolve_source(source, format)
    path = resolved.path
    if path is None:
        return None
    if resolved.format in ("jsonl", "beir"):
        return _count_lines(path)
    if resolved.format == "json":
        return None if _starts_with(path, b"[") else _count_lines(path)
    if resolved.format in ("csv", "tsv"):
        return max(_count_lines(path) - 1, 0)
    if resolved.format == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None
