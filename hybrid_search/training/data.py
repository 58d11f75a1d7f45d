"""Training data for fine-tuning: labelled pairs, BEIR qrels, or unlabelled corpus text.

Every source ends as one ``datasets.Dataset`` with fixed column names, in the order the losses read them:
``query``, ``positive``, then ``negative`` / ``negative_2``... (optional), then ``label`` (optional, for
distillation). :func:`load_training_data` picks the reader from the source:

* a JSONL / JSON / CSV / TSV / Parquet file, ``hf:owner/name[:config]`` or a ``save_to_disk`` folder with a
  query column → labelled pairs (or triplets). Column names are detected (:data:`ROLE_COLUMNS`) or given as a
  mapping, e.g. ``{"query": "question", "positive": "answer"}``;
* a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) → (query, relevant passage) pairs;
* anything without a query column, or with ``self_supervised=True`` → corpus text, mined into pairs by
  :func:`hybrid_search.training.mining.mine_pairs`.

Queries of the evaluation set never reach training: :class:`EvalQueryGuard` drops any training query equal
to an evaluation query or containing one, and the number dropped is reported.

Bad data raises :class:`TrainingDataError` (a ``ValueError``) that names the file, the column or the row.

Example:
    >>> from hybrid_search.training.data import load_training_data
    >>> data = load_training_data("pairs.jsonl", columns={"query": "question"})  # doctest: +SKIP
    >>> data.dataset.column_names  # doctest: +SKIP
    ['query', 'positive']
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_search.training.mining import MiningConfig, mine_pairs

logger = logging.getLogger(__name__)

#: Candidate source columns for each role, in order of preference (compared case-insensitively).
ROLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "query": ("query", "anchor", "question", "queries", "q", "query_text"),
    "positive": ("positive", "pos", "document", "passage", "answer", "positive_passage", "doc", "text"),
    "negative": ("negative", "neg", "hard_negative", "negative_passage"),
    "label": ("label", "score", "scores", "margin", "labels"),
}
#: The roles a ``columns`` mapping may name.
ROLES: tuple[str, ...] = ("query", "positive", "negative", "label")

_EXTRA_NEGATIVE = re.compile(r"^(negative|neg|hard_negative)[_-]?(\d+)$", re.IGNORECASE)
_SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}


class TrainingDataError(ValueError):
    """Training data that cannot be used: missing columns, wrong types, or nothing left to train on."""


@dataclass
class TrainingData:
    """Training examples with canonical columns, and where they came from.

    Attributes:
        dataset: a ``datasets.Dataset`` with columns ``query``, ``positive`` [, ``negative``...] [, ``label``].
        kind: ``"labelled"``, ``"beir-qrels"`` or ``"self-supervised"``.
        source: the path or id it was read from.
        columns: the source column each canonical column was read from.
        dropped: rows left out and why, e.g. ``{"empty": 2, "eval_query": 1}``.
        documents: document texts seen in the source (the corpus when mined), e.g. for corpus IDF.
        sources: for mined pairs, the index in ``documents`` of the passage each row was cut from (its
            positive is that passage less the pseudo-query), so hard-negative mining can exclude it.
    """

    dataset: Any
    kind: str
    source: str
    columns: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)
    sources: list[int] | None = None

    @property
    def has_label(self) -> bool:
        return "label" in self.dataset.column_names

    @property
    def negative_columns(self) -> list[str]:
        return [c for c in self.dataset.column_names if c.startswith("negative")]

    def __len__(self) -> int:
        return len(self.dataset)

    def summary(self) -> str:
        dropped = describe_dropped(self.dropped)
        return f"{len(self)} {self.kind} examples from {self.source} (columns {self.dataset.column_names})" + (
            f"; dropped {dropped}" if dropped else ""
        )


# --------------------------------------------------------------------------- leakage guard


#: How each reason for leaving a row out reads in summaries and model cards.
DROP_REASONS: dict[str, str] = {
    "empty": "rows with an empty query or passage",
    "eval_query": "training queries that leak an evaluation query",
    "too_short": "passages too short to mine",
    "below_grade": "qrels below the minimum grade",
    "unknown_id": "qrels naming an unknown query or document",
    "over_max_examples": "examples over --max-examples",
}


def describe_dropped(dropped: Mapping[str, int]) -> str:
    """``{"eval_query": 2}`` → ``"2 training queries that leak an evaluation query"``."""
    return ", ".join(f"{n} {DROP_REASONS.get(why, why.replace('_', ' '))}" for why, n in dropped.items() if n)


def normalise_query(text: str) -> str:
    """Lower-cased word tokens joined by single spaces: the form queries are compared in."""
    return " ".join(re.findall(r"\w+", text.lower()))


class EvalQueryGuard:
    """Tells whether a training query would leak an evaluation query.

    A training query leaks when, after :func:`normalise_query`, it equals an evaluation query or contains
    one as a whole-word phrase (evaluation queries of two words or more, so that a one-word query such as
    ``"python"`` does not veto every sentence mentioning it).
    """

    def __init__(self, eval_queries: Iterable[str] = ()) -> None:
        normalised = {normalise_query(q) for q in eval_queries}
        normalised.discard("")
        self.exact = normalised
        self.phrases = sorted(f" {q} " for q in normalised if " " in q)

    def __bool__(self) -> bool:
        return bool(self.exact)

    def leaks(self, query: str) -> bool:
        norm = normalise_query(query)
        if norm in self.exact:
            return True
        padded = f" {norm} "
        return any(phrase in padded for phrase in self.phrases)


# --------------------------------------------------------------------------- column mapping


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"query=question,positive=answer"`` (or a mapping) → ``{"query": "question", "positive": "answer"}``.

    Roles are ``query``, ``positive``, ``negative`` and ``label``; ``negative`` may list several columns
    separated by ``+`` (``negative=neg1+neg2``).
    """
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            role, sep, column = part.partition("=")
            if not sep or not column.strip():
                raise TrainingDataError(f"bad column mapping {part!r}: use ROLE=COLUMN, e.g. query=question")
            items.append((role, column))
    mapping: dict[str, str] = {}
    for role, column in items:
        role = role.strip().lower()
        if role not in ROLES:
            raise TrainingDataError(f"unknown role {role!r} in the column mapping; roles are {', '.join(ROLES)}")
        mapping[role] = str(column).strip()
    return mapping


def _find(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def resolve_columns(columns: Sequence[str], mapping: Mapping[str, str], where: str) -> dict[str, list[str]]:
    """Map each role to its source column(s); raise when a named or required column is missing.

    Returns:
        ``{"query": [col], "positive": [col], "negative": [cols...], "label": [col]}`` (empty lists for
        absent optional roles).
    """
    resolved: dict[str, list[str]] = {}
    for role, column in mapping.items():
        names = column.split("+") if role == "negative" else [column]
        missing = [n for n in names if n not in columns]
        if missing:
            raise TrainingDataError(
                f"{where}: column {missing[0]!r} named in the column mapping ({role}={column}) is not in the data; "
                f"its columns are {list(columns)}"
            )
        resolved[role] = names
    for role in ROLES:
        if role in resolved:
            continue
        found = _find(columns, ROLE_COLUMNS[role])
        if role == "negative":
            taken = {c for names in resolved.values() for c in names}
            extra = sorted(
                (c for c in columns if _EXTRA_NEGATIVE.match(c) and c not in taken),
                key=lambda c: int(_EXTRA_NEGATIVE.match(c).group(2)),  # type: ignore[union-attr]
            )
            resolved[role] = ([found] if found and found not in taken else []) + extra
        else:
            resolved[role] = [found] if found else []
    # A column can play one role only (e.g. "text" is not both the query and the positive).
    seen: dict[str, str] = {}
    for role in ROLES:
        for column in resolved[role]:
            if column in seen:
                raise TrainingDataError(f"{where}: column {column!r} is mapped to both {seen[column]} and {role}")
            seen[column] = role
    if not resolved["query"]:
        raise TrainingDataError(
            f"{where}: no query column; expected one of {list(ROLE_COLUMNS['query'])} or a mapping such as "
            f"--columns query=COLUMN (found columns {list(columns)}). For unlabelled text use --self-supervised."
        )
    if not resolved["positive"]:
        raise TrainingDataError(
            f"{where}: no positive (relevant passage) column; expected one of {list(ROLE_COLUMNS['positive'])} "
            f"or a mapping such as --columns positive=COLUMN (found columns {list(columns)})"
        )
    return resolved


# --------------------------------------------------------------------------- readers


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8", newline="")


def _file_format(path: Path) -> str | None:
    suffix = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    return _SUFFIX_FORMATS.get(suffix.lower())


def _read_records(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """All records of a tabular file as dicts, with the union of their keys in first-seen order."""
    fmt = _file_format(path)
    records: list[dict[str, Any]] = []
    if fmt in ("jsonl", "json"):
        with _open_text(path) as fh:
            head = fh.read(1)
            while head and head.isspace():
                head = fh.read(1)
            fh.seek(0)
            if fmt == "json" and head == "[":
                try:
                    data = json.load(fh)
                except json.JSONDecodeError as exc:
                    raise TrainingDataError(f"{path}: invalid JSON ({exc.msg})") from exc
                items = list(enumerate(data, 1))
            else:
                items = []
                for line_no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        items.append((line_no, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise TrainingDataError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
        for where, record in items:
            if not isinstance(record, dict):
                raise TrainingDataError(f"{path}:{where}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    elif fmt in ("csv", "tsv"):
        with _open_text(path) as fh:
            reader = csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
            records = [dict(r) for r in reader]
            if reader.fieldnames is None:
                raise TrainingDataError(f"training data {path} is empty: no header row")
            return list(reader.fieldnames), records
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return list(table.column_names), table.to_pylist()
    else:
        raise TrainingDataError(
            f"unsupported training file {path}: use JSONL, JSON, CSV, TSV or Parquet, a BEIR folder, "
            f"or hf:owner/name for a Hugging Face dataset"
        )
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    return list(columns), records


def _read_hf(source: str, split: str) -> tuple[list[str], list[dict[str, Any]]]:
    import datasets

    spec = source.removeprefix("hf:")
    local = Path(spec).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise TrainingDataError(f"{source}: no split {split!r}; it has {list(loaded)}")
                loaded = loaded[split]
        else:
            name, _, config = spec.partition(":")
            loaded = datasets.load_dataset(name, config or None, split=split)
    except TrainingDataError:
        raise
    except Exception as exc:
        raise TrainingDataError(f"could not load Hugging Face dataset {source!r} (split {split!r}): {exc}") from exc
    return list(loaded.column_names), loaded.to_list()


def _text(value: Any, where: str, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TrainingDataError(f"{where}: column {column!r} holds {type(value).__name__}, expected text")


def _label(value: Any, where: str, column: str) -> float | list[float]:
    try:
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
        return float(value)
    except (TypeError, ValueError):
        raise TrainingDataError(f"{where}: label column {column!r} holds {value!r}, expected a number") from None


def records_to_pairs(
    columns: Sequence[str],
    records: Iterable[Mapping[str, Any]],
    *,
    mapping: Mapping[str, str] | None = None,
    where: str = "training data",
    guard: EvalQueryGuard | None = None,
) -> tuple[dict[str, list[Any]], dict[str, str], dict[str, int]]:
    """Turn labelled records into canonical columns.

    Returns:
        ``(columns_dict, source_columns, dropped)``.
    """
    roles = resolve_columns(columns, mapping or {}, where)
    negatives = roles["negative"]
    out_names = ["query", "positive"] + [("negative" if i == 0 else f"negative_{i + 1}") for i in range(len(negatives))]
    source_columns = {"query": roles["query"][0], "positive": roles["positive"][0]}
    source_columns.update(dict(zip(out_names[2:], negatives)))
    label_col = roles["label"][0] if roles["label"] else None
    if label_col:
        source_columns["label"] = label_col
    data: dict[str, list[Any]] = {name: [] for name in out_names + (["label"] if label_col else [])}
    dropped = {"empty": 0, "eval_query": 0}
    for row, record in enumerate(records, 1):
        here = f"{where}, row {row}"
        texts = [_text(record.get(source_columns[name]), here, source_columns[name]) for name in out_names]
        if not all(texts):
            dropped["empty"] += 1
            continue
        if guard and guard.leaks(texts[0]):
            dropped["eval_query"] += 1
            continue
        for name, text in zip(out_names, texts):
            data[name].append(text)
        if label_col:
            value = record.get(label_col)
            if value is None:
                raise TrainingDataError(f"{here}: label column {label_col!r} is empty")
            data["label"].append(_label(value, here, label_col))
    return data, source_columns, dropped


def _finish(data: dict[str, list[Any]], where: str, dropped: Mapping[str, int], n_read: int) -> Any:
    import datasets

    n = len(next(iter(data.values()))) if data else 0
    if n == 0:
        if n_read == 0:
            raise TrainingDataError(f"training data {where} is empty")
        reasons = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        hint = ""
        if dropped.get("eval_query"):
            hint = " Every training query appears in the evaluation set: train on other queries (another split)."
        raise TrainingDataError(f"training data {where}: none of its {n_read} rows is usable ({reasons}).{hint}")
    if "label" in data:
        lengths = {len(v) if isinstance(v, list) else 0 for v in data["label"]}
        if len(lengths) > 1:
            raise TrainingDataError(f"training data {where}: label lists of different lengths {sorted(lengths)}")
    return datasets.Dataset.from_dict(data)


def _beir_pairs(
    folder: Path, split: str, guard: EvalQueryGuard | None, min_grade: int
) -> tuple[dict[str, list[Any]], dict[str, int], list[str], int]:
    from hybrid_search.evaluation import load_beir

    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise TrainingDataError(
            f"BEIR folder {folder} has no qrels/{split}.tsv (splits found: {available or 'none'}); pass "
            f"--train-split with one of them, or --self-supervised to mine pairs from its corpus"
        )
    data = load_beir(folder, split=split)
    pairs: dict[str, list[Any]] = {"query": [], "positive": []}
    dropped = {"empty": 0, "eval_query": 0, "below_grade": 0, "unknown_id": 0}
    n_read = 0
    for qid, docs in data.qrels.items():
        for did, grade in docs.items():
            n_read += 1
            if grade < min_grade:
                dropped["below_grade"] += 1
                continue
            query, doc = data.queries.get(qid, "").strip(), data.corpus.get(did)
            if doc is None or qid not in data.queries:
                dropped["unknown_id"] += 1
                continue
            if not query or not doc.full_text.strip():
                dropped["empty"] += 1
                continue
            if guard and guard.leaks(query):
                dropped["eval_query"] += 1
                continue
            pairs["query"].append(query)
            pairs["positive"].append(doc.full_text)
    return pairs, dropped, [d.full_text for d in data.corpus.values()], n_read


def _is_beir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("corpus.jsonl", "corpus.jsonl.gz"))


def _peek_columns(path: Path) -> list[str]:
    """Column names of a tabular file without reading all of it."""
    fmt = _file_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with _open_text(path) as fh:
        if fmt in ("csv", "tsv"):
            header = next(csv.reader(fh, delimiter="\t" if fmt == "tsv" else ","), None)
            return list(header or [])
        for line in fh:
            if line.strip():
                if line.lstrip().startswith("["):  # a JSON array: read whole below
                    break
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TrainingDataError(f"{path}: first record is not valid JSON ({exc.msg})") from exc
                return list(record) if isinstance(record, dict) else []
        else:
            return []
    return _read_records(path)[0]


def load_training_data(
    source: str | os.PathLike[str] | Any,
    *,
    columns: str | Mapping[str, str] | None = None,
    self_supervised: bool | None = None,
    split: str = "train",
    eval_queries: Iterable[str] = (),
    mining: MiningConfig | None = None,
    min_grade: int = 1,
    max_examples: int | None = None,
    seed: int = 0,
) -> TrainingData:
    """Read training data from a file, a BEIR folder, a Hugging Face dataset or corpus text.

    Args:
        source: a path, ``hf:owner/name[:config]``, or an in-memory ``datasets.Dataset``.
        columns: role → source column mapping (``"query=question,positive=answer"``); roles not given are
            detected from :data:`ROLE_COLUMNS`.
        self_supervised: ``True`` mines pairs from the text even when a query column exists; ``None``
            (default) mines only when there is no query column; ``False`` never mines (an error instead).
        split: the qrels split of a BEIR folder, or the split of a Hugging Face dataset.
        eval_queries: queries of the evaluation set; training queries that leak them are dropped.
        mining: settings of the self-supervised pair mining.
        min_grade: lowest qrels grade that counts as a relevant passage (BEIR folders).
        max_examples: keep at most this many examples (a seeded random sample).
        seed: seed of that sample.

    Raises:
        TrainingDataError: missing or misnamed columns, wrong value types, or no usable example.
    """
    guard = EvalQueryGuard(eval_queries)
    mapping = parse_columns(columns)
    mining = mining or MiningConfig()

    if not isinstance(source, (str, os.PathLike)):  # an in-memory datasets.Dataset
        cols, records, label = list(source.column_names), source.to_list(), "in-memory dataset"
        result = _labelled_or_mined(cols, records, label, mapping, self_supervised, guard, mining)
        return _subsample(result, max_examples, seed)

    text = os.fspath(source)
    path = Path(text).expanduser()
    if text.startswith("hf:") or (path.is_dir() and not _is_beir(path)):
        if (
            not text.startswith("hf:")
            and not (path / "dataset_info.json").exists()
            and not (path / "dataset_dict.json").exists()
        ):
            raise TrainingDataError(
                f"{path} is a folder but neither a BEIR folder (corpus.jsonl) nor a saved Hugging Face dataset"
            )
        cols, records = _read_hf(text, split)
        result = _labelled_or_mined(cols, records, text, mapping, self_supervised, guard, mining)
        return _subsample(result, max_examples, seed)
    if _is_beir(path):
        if self_supervised:
            result = _mine_corpus(path, guard, mining)
        else:
            pairs, dropped, documents, n_read = _beir_pairs(path, split, guard, min_grade)
            dataset = _finish(pairs, str(path), dropped, n_read)
            result = TrainingData(
                dataset,
                "beir-qrels",
                str(path),
                {"query": "queries.jsonl", "positive": "corpus.jsonl"},
                dropped,
                documents,
            )
        return _subsample(result, max_examples, seed)
    if not path.exists():
        raise TrainingDataError(f"training data not found: {path}")
    if _file_format(path) is None:
        _read_records(path)  # raises the unsupported-format message
    if self_supervised:
        return _subsample(_mine_corpus(path, guard, mining), max_examples, seed)
    head = _peek_columns(path)
    if not head:
        raise TrainingDataError(f"training data {path} is empty")
    if self_supervised is None and "query" not in mapping and _find(head, ROLE_COLUMNS["query"]) is None:
        logger.info("%s has no query column: mining self-supervised pairs from its text", path)
        return _subsample(_mine_corpus(path, guard, mining), max_examples, seed)
    cols, records = _read_records(path)
    if not records:
        raise TrainingDataError(f"training data {path} is empty")
    data, source_columns, dropped = records_to_pairs(cols, records, mapping=mapping, where=str(path), guard=guard)
    dataset = _finish(data, str(path), dropped, len(records))
    documents = sorted(set(dataset["positive"]))
    return _subsample(
        TrainingData(dataset, "labelled", str(path), source_columns, dropped, documents), max_examples, seed
    )


def _labelled_or_mined(
    cols: list[str],
    records: list[dict[str, Any]],
    label: str,
    mapping: Mapping[str, str],
    self_supervised: bool | None,
    guard: EvalQueryGuard,
    mining: MiningConfig,
) -> TrainingData:
    if not records:
        raise TrainingDataError(f"training data {label} is empty")
    no_query = "query" not in mapping and _find(cols, ROLE_COLUMNS["query"]) is None
    if self_supervised or (self_supervised is None and no_query):
        from hybrid_search.types import Document

        text_col = mapping.get("positive") or _find(cols, ("text", "contents", "content", "body", "passage"))
        if text_col is None or text_col not in cols:
            raise TrainingDataError(f"{label}: no text column to mine pairs from (columns {cols})")
        id_col = _find(cols, ("_id", "id", "doc_id", "docid"))
        docs = [
            Document(id=str(r.get(id_col, i)) if id_col else str(i), text=_text(r.get(text_col), label, text_col))
            for i, r in enumerate(records)
        ]
        return _mined(docs, label, guard, mining)
    data, source_columns, dropped = records_to_pairs(cols, records, mapping=mapping, where=label, guard=guard)
    dataset = _finish(data, label, dropped, len(records))
    return TrainingData(dataset, "labelled", label, source_columns, dropped, sorted(set(dataset["positive"])))


def _mine_corpus(path: Path, guard: EvalQueryGuard, mining: MiningConfig) -> TrainingData:
    from hybrid_search.corpus import CorpusError, CorpusReader

    try:
        docs = list(CorpusReader(path))
    except CorpusError as exc:
        raise TrainingDataError(f"cannot mine pairs from {path}: {exc}") from exc
    return _mined(docs, str(path), guard, mining)


def _mined(docs: list[Any], label: str, guard: EvalQueryGuard, mining: MiningConfig) -> TrainingData:
    import datasets

    pairs, stats = mine_pairs(docs, mining, guard=guard)
    dropped = {"eval_query": stats.get("eval_query", 0), "too_short": stats.get("too_short", 0)}
    if not pairs:
        raise TrainingDataError(
            f"no training pairs could be mined from {label}: {len(docs)} documents, "
            f"{dropped['too_short']} too short to split into a pseudo-query and a passage "
            f"(a passage needs at least {mining.min_query_words + mining.min_context_words} words)"
        )
    dataset = datasets.Dataset.from_dict(
        {"query": [p["query"] for p in pairs], "positive": [p["positive"] for p in pairs]}
    )
    row_of = {d.id: i for i, d in enumerate(docs)}
    return TrainingData(
        dataset,
        "self-supervised",
        label,
        {"query": "mined", "positive": "mined"},
        dropped,
        [d.full_text for d in docs],
        [row_of[p["doc_id"]] for p in pairs],
    )


def _subsample(data: TrainingData, max_examples: int | None, seed: int) -> TrainingData:
    if max_examples is not None and len(data) > max_examples:
        import numpy as np

        data.dropped["over_max_examples"] = len(data) - max_examples
        keep = np.random.default_rng(seed).permutation(len(data))[:max_examples].tolist()
        data.dataset = data.dataset.select(keep)
        if data.sources is not None:
            data.sources = [data.sources[i] for i in keep]
    return data
