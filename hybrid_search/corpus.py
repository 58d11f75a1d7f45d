"""Streaming corpus readers.

Every supported corpus format is turned into a stream of :class:`~hybrid_search.types.Document`
objects by :class:`CorpusReader`. Readers never hold a whole JSONL/CSV file in memory, so a
multi-gigabyte corpus can be indexed in one pass; Parquet is read one record batch at a time and
Hugging Face datasets are opened with ``streaming=True`` wherever the dataset allows it.

Supported sources:

* ``.jsonl`` / ``.ndjson`` (optionally gzip-compressed, e.g. ``.jsonl.gz``): one JSON object a line.
* ``.json``: either a JSON array of objects (loaded whole; arrays cannot be streamed) or JSONL.
* ``.csv`` / ``.tsv`` (optionally gzip-compressed): a header row, then one record a row. TSV is
  read without quote processing (``csv.QUOTE_NONE``), the convention of IR collections such as
  MS MARCO's ``collection.tsv``, so a stray ``"`` in a passage cannot swallow later rows.
* ``.parquet``.
* A BEIR folder: a directory holding ``corpus.jsonl`` or ``corpus.jsonl.gz``.
* Hugging Face datasets, via ``datasets.load_dataset``:

  - ``"hf:owner/name"`` or ``"hf:owner/name:config"`` (or ``format="hf"`` with ``"owner/name"``)
    loads from the Hub, e.g. ``CorpusReader("hf:BeIR/scifact:corpus", split="corpus")``.
  - ``format="hf"`` (or an ``hf:`` prefix) with an existing local path loads local files through
    the same library: a directory of data files (a downloaded Hub snapshot, with or without a
    ``README.md`` config) is passed to ``load_dataset(dir)``, which infers the builder from the
    files; a single data file is loaded with the matching builder (``parquet``, ``json``,
    ``csv``) as ``data_files={split: file}``; a directory written by ``save_to_disk`` is opened
    with ``load_from_disk``.

Field names are auto-detected (see :data:`ID_FIELDS`, :data:`TEXT_FIELDS`, :data:`TITLE_FIELDS`)
unless given explicitly; every other field becomes document metadata.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import math
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hybrid_search.types import Document

logger = logging.getLogger("hybrid_search.corpus")

#: Candidate id fields, in order of preference.
ID_FIELDS: tuple[str, ...] = ("_id", "id", "doc_id", "docid", "corpus-id")
#: Candidate text fields, in order of preference.
TEXT_FIELDS: tuple[str, ...] = ("text", "contents", "content", "body", "passage")
#: Candidate title fields.
TITLE_FIELDS: tuple[str, ...] = ("title",)

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
_BEIR_FILES = ("corpus.jsonl", "corpus.jsonl.gz")
_GZIP_MAGIC = b"\x1f\x8b"
_HF_PREFIX = "hf:"
# Hub ids are "name" or "owner/name", optionally followed by ":config".
_HF_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?(:[\w.-]+)?$")
_PARQUET_BATCH_ROWS = 1024
# A lone UTF-16 surrogate ("\ud800" escaped in JSON) parses into a str that cannot be encoded as UTF-8, so
# it would fail far from its line, at hashing or storing time. Valid pairs are joined by the JSON parser.
_SURROGATE = re.compile("[\ud800-\udfff]")
_HASH_CHUNK = 1 << 20


class CorpusError(ValueError):
    """A corpus cannot be read: missing path, unknown format, empty corpus, or (strict) bad record."""


@dataclass
class ReadReport:
    """What happened while reading a corpus; filled in during iteration.

    Counters keep counting past ``max_problems``; only the ``problems`` list is capped, so a
    corpus with millions of bad lines does not turn the report into a second copy of the corpus.
    """

    read: int = 0
    yielded: int = 0
    malformed: int = 0
    missing_id: int = 0
    missing_text: int = 0
    duplicates: int = 0
    decode_errors: int = 0
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
class _HFRef:
    """A Hugging Face dataset: a Hub id (``name``/``config``) or a local path."""

    label: str
    name: str | None = None
    config: str | None = None
    local: Path | None = None


@dataclass(frozen=True)
class _Source:
    """A resolved corpus source."""

    format: str
    path: Path | None  # the data file (the corpus file of a BEIR folder); None for HF
    hf: _HFRef | None = None

    @property
    def label(self) -> str:
        return self.hf.label if self.hf is not None else str(self.path)


@dataclass(frozen=True)
class _Bad:
    """A record that could not be parsed, with the reason."""

    reason: str


@dataclass(frozen=True)
class _Skip:
    """A parsed record that cannot become a document; ``kind`` names the report counter."""

    kind: str
    reason: str


@dataclass(frozen=True)
class _Fields:
    """Field names to use; ``None`` means auto-detect per record."""

    id: str | None = None
    text: str | None = None
    title: str | None = None
    metadata: tuple[str, ...] | None = None


# --------------------------------------------------------------------------- source resolution


def _format_from_suffix(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        # Parquet compresses internally; a gzipped Parquet file is not something we can stream.
        if suffixes and suffixes[-1] == ".parquet":
            return None
    return _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


def _beir_corpus_file(directory: Path) -> Path | None:
    return next((directory / name for name in _BEIR_FILES if (directory / name).is_file()), None)


def _parse_hf(spec: str) -> _HFRef:
    """Parse ``owner/name[:config]`` or a local path (after any ``hf:`` prefix)."""
    local = Path(spec).expanduser()
    if local.exists():
        return _HFRef(label=str(local), local=local)
    if not _HF_ID.match(spec):
        raise CorpusError(
            f"corpus path not found: {spec} (and it is not a Hugging Face id of the form 'owner/name[:config]')"
        )
    name, _, config = spec.partition(":")
    return _HFRef(label=f"{_HF_PREFIX}{spec}", name=name, config=config or None)


def _resolve(source: str | Path, format: str | None) -> _Source:
    if format is not None:
        format = format.lower()
        if format not in FORMATS:
            raise CorpusError(f"unknown corpus format {format!r}; expected one of {', '.join(FORMATS)}")
    text = str(source)
    if isinstance(source, str) and text.startswith(_HF_PREFIX):
        return _Source("hf", None, _parse_hf(text[len(_HF_PREFIX) :]))
    if format == "hf":
        return _Source("hf", None, _parse_hf(text))

    path = Path(source).expanduser()
    if not path.exists():
        hint = f" (for a Hugging Face dataset use 'hf:{text}' or format='hf')" if _HF_ID.match(text) else ""
        raise CorpusError(f"corpus path not found: {path}{hint}")
    if path.is_dir():
        corpus_file = _beir_corpus_file(path)
        if corpus_file is None:
            raise CorpusError(
                f"corpus directory {path} is not a BEIR folder (no {' or '.join(_BEIR_FILES)}); "
                "pass format='hf' to load it with datasets.load_dataset"
            )
        if format not in (None, "beir", "jsonl"):
            raise CorpusError(f"corpus {path} is a directory; format {format!r} needs a file")
        return _Source("beir", corpus_file)
    if format == "beir":
        return _Source("beir", path)
    detected = format or _format_from_suffix(path)
    if detected is None:
        raise CorpusError(
            f"unknown corpus format for {path}: cannot tell from the extension "
            f"(known: {', '.join(sorted(_SUFFIX_FORMATS))}, optionally .gz); pass format=..."
        )
    return _Source(detected, path)


def detect_format(source: str | Path, format: str | None = None) -> str:
    """Return the format name :class:`CorpusReader` would use for ``source``.

    Raises:
        CorpusError: the path is missing or its format is unknown.
    """
    return _resolve(source, format).format


# --------------------------------------------------------------------------- record conversion


def _as_id(value: Any) -> str | None:
    """Normalise an id to a non-empty string; ints (and integral floats from pandas) are common."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, str):
        # Surrounding whitespace in an id is an export artefact, never meaningful.
        return value.strip() or None
    return None


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return str(value)


def _repair_surrogates(value: Any) -> tuple[Any, int]:
    """``value`` with every lone surrogate in its strings (keys included) replaced by U+FFFD, and the count.

    Such a record is repaired and counted like a line of invalid UTF-8, rather than aborting the run later.
    """
    if isinstance(value, str):
        return _SURROGATE.subn("\ufffd", value) if _SURROGATE.search(value) else (value, 0)
    if isinstance(value, dict):
        fixed: dict[Any, Any] = {}
        total = 0
        for key, item in value.items():
            key, n_key = _repair_surrogates(key)
            fixed[key], n_item = _repair_surrogates(item)
            total += n_key + n_item
        return (fixed, total) if total else (value, 0)
    if isinstance(value, (list, tuple)):
        pairs = [_repair_surrogates(item) for item in value]
        total = sum(n for _, n in pairs)
        return ([item for item, _ in pairs], total) if total else (value, 0)
    return value, 0


def _pick(record: dict[str, Any], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    """The key to use: the explicit one if present, else the first candidate with a value."""
    if explicit is not None:
        return explicit if explicit in record else None
    present = [key for key in candidates if key in record]
    return next((key for key in present if record[key] is not None), present[0] if present else None)


def _metadata(record: dict[str, Any], used: set[str | None], wanted: tuple[str, ...] | None) -> dict[str, Any]:
    nested = record.get("metadata")
    nested = nested if isinstance(nested, dict) else {}
    if wanted is not None:
        out: dict[str, Any] = {}
        for name in wanted:
            if name in record:
                out[name] = record[name]
            elif name in nested:
                out[name] = nested[name]
        return out
    out = dict(nested)
    for key, value in record.items():
        if key in used or (key == "metadata" and (value is None or isinstance(value, dict))):
            continue
        out[key] = value  # a top-level field is more specific than the nested metadata bag
    return out


def _record_to_document(record: dict[str, Any], fields: _Fields) -> Document | _Skip:
    """Convert one parsed record, or say why it must be skipped."""
    id_key = _pick(record, fields.id, ID_FIELDS)
    doc_id = _as_id(record.get(id_key)) if id_key is not None else None
    if doc_id is None:
        looked = fields.id or ", ".join(ID_FIELDS)
        where = f"field {id_key!r} is empty or not a scalar" if id_key else f"no id field (looked for {looked})"
        return _Skip("missing_id", f"missing id: {where}")

    text_key = _pick(record, fields.text, TEXT_FIELDS)
    title_key = _pick(record, fields.title, TITLE_FIELDS)
    text = _as_text(record.get(text_key)) if text_key is not None else ""
    title = _as_text(record.get(title_key)) if title_key is not None else ""
    if not text.strip() and not title.strip():
        looked = fields.text or ", ".join(TEXT_FIELDS)
        where = f"field {text_key!r} is blank" if text_key else f"no text field (looked for {looked})"
        return _Skip("missing_text", f"missing text for id {doc_id!r}: {where} and no title")

    metadata = _metadata(record, {id_key, text_key, title_key}, fields.metadata)
    return Document(id=doc_id, text=text, title=title, metadata=metadata)


def _resolve_columns(columns: list[str], fields: _Fields, label: str) -> _Fields:
    """Fix the field names once for sources with a header/schema, failing fast if unusable."""

    def choose(explicit: str | None, candidates: tuple[str, ...], what: str, required: bool) -> str | None:
        if explicit is not None:
            if explicit not in columns:
                raise CorpusError(f"corpus {label}: {what}_field {explicit!r} is not among its columns {columns}")
            return explicit
        found = next((c for c in candidates if c in columns), None)
        if found is None and required:
            raise CorpusError(
                f"corpus {label}: no {what} column (looked for {', '.join(candidates)}) among its columns "
                f"{columns}; pass {what}_field=..."
            )
        return found

    return _Fields(
        id=choose(fields.id, ID_FIELDS, "id", True),
        text=choose(fields.text, TEXT_FIELDS, "text", True),
        title=choose(fields.title, TITLE_FIELDS, "title", False),
        metadata=fields.metadata,
    )


# --------------------------------------------------------------------------- byte helpers


def _open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for binary reading, transparently un-gzipping by magic bytes, not suffix."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")  # type: ignore[return-value]


def _count_lines(path: Path) -> int:
    newlines, last = 0, b"\n"
    with _open_binary(path) as fh:
        while chunk := fh.read(_HASH_CHUNK):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return newlines + (last != b"\n")


def _starts_with(path: Path, char: bytes) -> bool:
    with _open_binary(path) as fh:
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


# --------------------------------------------------------------------------- the reader


class CorpusReader:
    """An iterable of :class:`Document` read lazily from a corpus file, folder, or HF dataset.

    Each iteration re-reads the source and replaces :attr:`report` with a fresh
    :class:`ReadReport`.

    Bad input, by default, is counted in the report, listed (capped) in ``report.problems`` with
    its ``file:line`` (or ``file:row N`` for Parquet / HF / JSON arrays), logged as a warning on
    the ``hybrid_search.corpus`` logger, and skipped:

    * unparseable JSON lines / CSV rows with the wrong number of fields (``malformed``);
    * records without a usable id (``missing_id``);
    * records whose text is missing or blank and that have no title (``missing_text``);
    * lines with bytes that are not UTF-8 (``decode_errors``) are *not* skipped: they are decoded
      with U+FFFD replacement characters and the document is still yielded.

    With ``strict=True`` each of those raises :class:`CorpusError` naming the location instead.

    Duplicate ids are never skipped, in either mode: both documents are yielded in file order
    and counted in ``duplicates``. Indexes upsert by id, so **the last occurrence wins**.

    Blank lines are ignored silently. A full iteration that yields no document raises
    :class:`CorpusError`.

    Args:
        source: A file, a BEIR folder, ``"hf:owner/name[:config]"``, or (with ``format="hf"``) a
            Hub id or local dataset path; see the module docstring.
        format: One of :data:`FORMATS`; detected from the path when omitted.
        id_field: Field holding the document id; auto-detected from :data:`ID_FIELDS` if omitted.
        text_field: Field holding the text; auto-detected from :data:`TEXT_FIELDS` if omitted.
        title_field: Field holding the title; ``"title"`` if omitted (a title is optional).
        metadata_fields: Fields copied into ``Document.metadata``; all other fields if omitted. A
            nested ``metadata`` object is merged in (top-level fields win on a name clash).
        split: Dataset split, for Hugging Face sources only.
        strict: Raise on the first bad record instead of skipping it.

    Raises:
        CorpusError: At construction for a missing path or unknown format; during iteration for
            an empty corpus, an unreadable file, or (strict) a bad record.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        format: str | None = None,
        id_field: str | None = None,
        text_field: str | None = None,
        title_field: str | None = None,
        metadata_fields: list[str] | None = None,
        split: str = "train",
        strict: bool = False,
    ) -> None:
        self._source = _resolve(source, format)
        self.source: str | Path = self._source.label if self._source.hf else Path(source).expanduser()
        self.format: str = self._source.format
        self.path: Path | None = self._source.path
        self.split = split
        self.strict = strict
        self.fields = _Fields(
            id=id_field,
            text=text_field,
            title=title_field,
            metadata=tuple(metadata_fields) if metadata_fields is not None else None,
        )
        self.report = ReadReport()
        # Header-based sources pin the auto-detected fields for the current pass only.
        self._active_fields = self.fields
        self._quiet = False  # a pass that only counts ids logs nothing: the real pass reports problems

    def __repr__(self) -> str:
        return f"CorpusReader({str(self.source)!r}, format={self.format!r})"

    @property
    def fingerprint(self) -> str:
        """:func:`corpus_fingerprint` of this reader's source."""
        return corpus_fingerprint(self.source, split=self.split, format=self.format)

    def duplicate_ids(self) -> dict[str, int]:
        """``{id: occurrences}`` for every id that occurs more than once, from a quiet pass over the corpus.

        Lets a caller resolve duplicates corpus-wide (the last occurrence wins) before it stores anything;
        memory grows with the number of ids, like the reader's own duplicate check.
        """
        seen: set[str] = set()
        counts: dict[str, int] = {}
        self._quiet = True
        try:
            for doc in self:
                if doc.id in seen:
                    counts[doc.id] = counts.get(doc.id, 1) + 1
                else:
                    seen.add(doc.id)
        finally:
            self._quiet = False
        return counts

    def __iter__(self) -> Iterator[Document]:
        report = self.report = ReadReport()
        self._active_fields = self.fields
        label = self._source.label
        seen: set[str] = set()  # ids only, not documents: memory grows with the id count, not text
        for location, record in self._records():
            report.read += 1
            if isinstance(record, _Bad):
                self._problem("malformed", location, record.reason)
                continue
            record, surrogates = _repair_surrogates(record)
            if surrogates:
                reason = f"{surrogates} lone UTF-16 surrogate(s) such as \\ud800; replaced with U+FFFD"
                self._problem("decode_errors", location, reason)
            doc = _record_to_document(record, self._active_fields)
            if isinstance(doc, _Skip):
                self._problem(doc.kind, location, doc.reason)
                continue
            if doc.id in seen:
                self._problem("duplicates", location, f"duplicate id {doc.id!r}; the later record wins on upsert")
            else:
                seen.add(doc.id)
            report.yielded += 1
            yield doc

        if report.yielded == 0:
            raise CorpusError(self._empty_message(label))
        if self._quiet:
            return
        if report.skipped or report.duplicates or report.decode_errors:
            logger.warning("corpus %s: %s", label, report.summary())
        else:
            logger.info("corpus %s: %s", label, report.summary())

    def _empty_message(self, label: str) -> str:
        report = self.report
        if report.read == 0:
            return f"corpus {label} is empty: it contains no records"
        first = f"; first problem: {report.problems[0]}" if report.problems else ""
        return f"corpus {label} is empty: all {report.read} records were skipped ({report.summary()}){first}"

    def _problem(self, kind: str, location: str, reason: str) -> None:
        """Count a problem, then raise (strict) or list and log it."""
        report = self.report
        setattr(report, kind, getattr(report, kind) + 1)
        # Duplicates are a documented contract (last wins), not bad input, so strict allows them.
        if self.strict and kind != "duplicates":
            raise CorpusError(f"{location}: {reason}")
        if self._quiet:
            return
        if report.add_problem(location, reason):
            logger.warning("%s: %s", location, reason)
        elif report.problems_omitted == 1:
            logger.warning(
                "corpus %s: more than %d problems; further ones are counted in the report but not logged",
                self._source.label,
                report.max_problems,
            )

    # ----------------------------------------------------------------------- record sources

    def _records(self) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
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
        raise CorpusError(f"unknown corpus format {fmt!r}")  # unreachable: _resolve validated it

    def _lines(self, path: Path) -> Iterator[tuple[int, str]]:
        """Yield ``(line_number, text)``, decoding each line on its own so one bad byte costs one line."""
        try:
            with _open_binary(path) as fh:
                for lineno, raw in enumerate(fh, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        line = raw.decode("utf-8", errors="replace")
                        self._problem(
                            "decode_errors",
                            f"{path}:{lineno}",
                            f"invalid UTF-8 at byte {exc.start}; decoded with replacement characters",
                        )
                    yield lineno, (line.removeprefix("\ufeff") if lineno == 1 else line)
        except (OSError, EOFError, zlib.error) as exc:
            # Truncated or corrupt gzip streams surface here, possibly after many good lines.
            raise CorpusError(f"cannot read corpus {path}: {exc}") from exc

    def _jsonl_records(self, path: Path) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
        for lineno, line in self._lines(path):
            if not line.strip():
                continue
            location = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
                yield location, _Bad(f"malformed JSON: {reason}")
                continue
            if not isinstance(record, dict):
                yield location, _Bad(f"expected a JSON object, got {type(record).__name__}")
                continue
            yield location, record

    def _json_array_records(self, path: Path) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
        # A JSON array cannot be parsed incrementally with the standard library; JSONL can.
        with _open_binary(path) as fh:
            raw = fh.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8-sig", errors="replace")
            reason = f"invalid UTF-8 at byte {exc.start}; decoded with replacement characters"
            self._problem("decode_errors", str(path), reason)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(items, list):
            raise CorpusError(f"corpus {path}: expected a JSON array of objects, got {type(items).__name__}")
        for index, item in enumerate(items, 1):
            location = f"{path}:item {index}"
            if not isinstance(item, dict):
                item = _Bad(f"expected a JSON object, got {type(item).__name__}")
            yield location, item

    def _csv_records(self, path: Path, delimiter: str, quoting: int) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
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
                yield f"{path}:{start}", _Bad(f"malformed row: {exc}")
                continue
            end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in row]
                self._active_fields = _resolve_columns(header, self.fields, str(path))
                continue
            if len(row) != len(header):
                yield f"{path}:{start}", _Bad(f"expected {len(header)} fields, got {len(row)}")
                continue
            yield f"{path}:{start}", dict(zip(header, row))

    def _parquet_records(self, path: Path) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise CorpusError(f"cannot read Parquet corpus {path}: {exc}") from exc
        names = parquet.schema_arrow.names
        self._active_fields = fields = _resolve_columns(names, self.fields, str(path))
        columns = None
        if fields.metadata is not None:
            # Read only what becomes part of a Document; wide tables are common for Parquet.
            wanted = [fields.id, fields.text, fields.title, *fields.metadata, "metadata"]
            columns = list(dict.fromkeys(c for c in wanted if c in names))
        row = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
            for record in batch.to_pylist():
                row += 1
                yield f"{path}:row {row}", record

    def _hf_records(self) -> Iterator[tuple[str, dict[str, Any] | _Bad]]:
        hf = self._source.hf
        assert hf is not None
        dataset = _load_hf(hf, self.split)
        for row, record in enumerate(dataset, 1):
            location = f"{hf.label}[{self.split}]:row {row}"
            if not isinstance(record, dict):
                record = _Bad(f"expected a row mapping, got {type(record).__name__}")
            yield location, record


def _hf_file_builder(path: Path) -> tuple[str, dict[str, Any]]:
    fmt = _format_from_suffix(path)
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
    raise CorpusError(f"cannot load {path} with datasets: unknown data file type {''.join(path.suffixes)!r}")


def _load_hf(ref: _HFRef, split: str) -> Iterable[dict[str, Any]]:
    """Open a Hugging Face dataset split as an iterable of row dicts, streaming where possible."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is an optional dependency
        raise CorpusError(f"reading {ref.label} needs the 'datasets' package: pip install datasets") from exc

    try:
        if ref.local is None:
            try:
                return datasets.load_dataset(ref.name, ref.config, split=split, streaming=True)
            except NotImplementedError:
                # Some Hub datasets cannot stream; downloading is slower but still works.
                logger.warning("dataset %s does not support streaming; downloading it instead", ref.label)
                return datasets.load_dataset(ref.name, ref.config, split=split)
        local = ref.local
        if local.is_dir() and any((local / n).is_file() for n in ("dataset_dict.json", "state.json")):
            saved = datasets.load_from_disk(str(local))
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise CorpusError(f"dataset {ref.label} has no split {split!r} (splits: {', '.join(saved)})")
                saved = saved[split]
            return saved.to_iterable_dataset()  # Arrow files are memory-mapped, so this stays lazy
        if local.is_dir():
            return datasets.load_dataset(str(local), ref.config, split=split, streaming=True)
        builder, kwargs = _hf_file_builder(local)
        return datasets.load_dataset(builder, data_files={split: str(local)}, split=split, streaming=True, **kwargs)
    except CorpusError:
        raise
    except Exception as exc:  # datasets raises many unrelated types (FileNotFound, DatasetNotFound, ValueError...)
        raise CorpusError(f"cannot load Hugging Face dataset {ref.label} (split {split!r}): {exc}") from exc


# --------------------------------------------------------------------------- helpers


def corpus_fingerprint(path: str | Path, *, split: str = "train", format: str | None = None) -> str:
    """A short content hash of a corpus, for keying caches such as stored embeddings.

    Args:
        path: Anything :class:`CorpusReader` accepts.
        split: Split of a Hugging Face source (part of a Hub fingerprint).
        format: As for :class:`CorpusReader`; only matters for ``"hf"``.

    Returns:
        The first 16 hex digits of a SHA-256 over the file's bytes (``corpus.jsonl`` for a BEIR
        folder; every file, by relative name, for a local dataset directory). A Hub dataset cannot
        be hashed without downloading it, so its id, config and split are hashed instead.
    """
    source = _resolve(path, format)
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


def count_documents(source: str | Path, *, format: str | None = None) -> int | None:
    """A cheap estimate of the number of records, e.g. for a progress-bar total.

    Counts lines for JSONL (and JSONL-style ``.json``) and data rows for CSV/TSV, so blank lines
    or multi-line quoted CSV fields make it an over-estimate; reads the row count from Parquet
    metadata. Returns None when unknown without reading the data (JSON arrays, HF datasets).

    Raises:
        CorpusError: the path is missing or its format is unknown.
    """
    resolved = _resolve(source, format)
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
