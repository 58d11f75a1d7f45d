"""Corpus documents: the records of any supported source turned into a stream of :class:`Document`.

The formats themselves (JSONL, JSON, CSV/TSV, Parquet, BEIR folders, Hugging Face datasets) are read by
:class:`hybrid_search.readers.RecordReader`, which reports every record it cannot parse. This module decides
what a *document* is: which fields hold the id, the text and the title, what becomes metadata, and which
records cannot be documents (no id, no text) or repeat an id. Readers never hold a whole corpus in memory,
so a multi-gigabyte corpus can be indexed in one pass.

Field names are auto-detected (see :data:`ID_FIELDS`, :data:`TEXT_FIELDS`, :data:`TITLE_FIELDS`)
unless given explicitly; every other field becomes document metadata.

Example:
    >>> CorpusReader("hf:BeIR/scifact:corpus", split="corpus").format
    'hf'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_search.readers import ReadError, ReadReport, RecordReader, source_fingerprint
from hybrid_search.types import Document

logger = logging.getLogger("hybrid_search.corpus")

#: Candidate id fields, in order of preference.
ID_FIELDS: tuple[str, ...] = ("_id", "id", "doc_id", "docid", "corpus-id")
#: Candidate text fields, in order of preference.
TEXT_FIELDS: tuple[str, ...] = ("text", "contents", "content", "body", "passage")
#: Candidate title fields.
TITLE_FIELDS: tuple[str, ...] = ("title",)


class CorpusError(ReadError):
    """A corpus cannot be read: missing path, unknown format, empty corpus, or (strict) bad record."""


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


# --------------------------------------------------------------------------- the reader


class CorpusReader:
    """An iterable of :class:`Document` read lazily from a corpus file, folder, or HF dataset.

    Each iteration re-reads the source and replaces :attr:`report` with a fresh
    :class:`~hybrid_search.readers.ReadReport`.

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
            Hub id or local dataset path; see :mod:`hybrid_search.readers`.
        format: One of :data:`~hybrid_search.readers.FORMATS`; detected from the path when omitted.
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
        self._reader = RecordReader(source, format=format, split=split, strict=strict, error=CorpusError, log=logger)
        self._reader.on_columns = self._pin_columns
        resolved = self._reader.source
        self.source: str | Path = resolved.label if resolved.hf else Path(source).expanduser()
        self.format: str = resolved.format
        self.path: Path | None = resolved.path
        self.split = split
        self.strict = strict
        self.fields = _Fields(
            id=id_field,
            text=text_field,
            title=title_field,
            metadata=tuple(metadata_fields) if metadata_fields is not None else None,
        )
        # Header-based sources pin the auto-detected fields for the current pass only.
        self._active_fields = self.fields

    def __repr__(self) -> str:
        return f"CorpusReader({str(self.source)!r}, format={self.format!r})"

    @property
    def report(self) -> ReadReport:
        """What the last (or current) pass read, skipped and repaired."""
        return self._reader.report

    @property
    def fingerprint(self) -> str:
        """:func:`~hybrid_search.readers.source_fingerprint` of this reader's source."""
        return source_fingerprint(self.source, split=self.split, format=self.format)

    def duplicate_ids(self) -> dict[str, int]:
        """``{id: occurrences}`` for every id that occurs more than once, from a quiet pass over the corpus.

        Lets a caller resolve duplicates corpus-wide (the last occurrence wins) before it stores anything;
        memory grows with the number of ids, like the reader's own duplicate check.
        """
        seen: set[str] = set()
        counts: dict[str, int] = {}
        self._reader.quiet = True
        try:
            for doc in self:
                if doc.id in seen:
                    counts[doc.id] = counts.get(doc.id, 1) + 1
                else:
                    seen.add(doc.id)
        finally:
            self._reader.quiet = False
        return counts

    def __iter__(self) -> Iterator[Document]:
        self._active_fields = self.fields
        reader = self._reader
        seen: set[str] = set()  # ids only, not documents: memory grows with the id count, not text
        for location, record in reader:
            doc = _record_to_document(record, self._active_fields)
            if isinstance(doc, _Skip):
                reader.problem(doc.kind, location, doc.reason)
                continue
            if doc.id in seen:
                # Duplicates are a documented contract (last wins), not bad input, so strict allows them.
                reason = f"duplicate id {doc.id!r}; the later record wins on upsert"
                reader.problem("duplicates", location, reason, fatal=False)
            else:
                seen.add(doc.id)
            reader.report.yielded += 1
            yield doc
        self._finish()

    def _finish(self) -> None:
        """Refuse an empty corpus, and log what the pass skipped or repaired."""
        report, label = self.report, self._reader.label
        if report.yielded == 0:
            raise CorpusError(self._empty_message(label))
        if self._reader.quiet:
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

    def _pin_columns(self, columns: list[str]) -> list[str] | None:
        """Fix the fields once a header or schema is known; with metadata fields, read only what is used."""
        self._active_fields = fields = _resolve_columns(columns, self.fields, self._reader.label)
        if fields.metadata is None:
            return None
        return [c for c in (fields.id, fields.text, fields.title, *fields.metadata, "metadata") if c is not None]
