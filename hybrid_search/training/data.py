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

Files and datasets are read as a stream of records through :class:`hybrid_search.readers.RecordReader`, the
reader the corpus and the evaluation sets use too; only the canonical columns are kept in memory. Bad data
raises :class:`TrainingDataError` (a ``ValueError``) that names the file and line, the column or the row.

Example:
    >>> from hybrid_search.training.data import TrainingDataOptions, load_training_data
    >>> options = TrainingDataOptions(columns={"query": "question"}, max_examples=1000)
    >>> data = load_training_data("pairs.jsonl", options)  # doctest: +SKIP
    >>> data.dataset.column_names  # doctest: +SKIP
    ['query', 'positive']
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_search.readers import ReadError, RecordReader, beir_corpus_file, is_saved_dataset
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
#: ``(location, record)`` pairs, as :class:`~hybrid_search.readers.RecordReader` yields them.
Rows = Iterable[tuple[str, Mapping[str, Any]]]


class TrainingDataError(ReadError):
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
            positive is that passage less the pseudo-query), so hard-negative mining can exclude it; with
            pseudo-queries added to labelled pairs, every row's (a labelled row's positive is its document).
        pseudo_queries: how many of the rows are pseudo-query pairs mined beside labelled ones
            (:attr:`TrainingDataOptions.pseudo_query_ratio`).
    """

    dataset: Any
    kind: str
    source: str
    columns: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    documents: list[str] = field(default_factory=list)
    sources: list[int] | None = None
    pseudo_queries: int = 0

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
        pseudo = f", {self.pseudo_queries} of them mined pseudo-queries" if self.pseudo_queries else ""
        return f"{len(self)} {self.kind} examples from {self.source}{pseudo} (columns {self.dataset.column_names})" + (
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


# --------------------------------------------------------------------------- rows → canonical columns


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
    rows: Rows,
    *,
    mapping: Mapping[str, str] | None = None,
    where: str = "training data",
    guard: EvalQueryGuard | None = None,
) -> tuple[dict[str, list[Any]], dict[str, str], dict[str, int], int]:
    """Turn labelled records into canonical columns, one row at a time.

    Args:
        columns: the source's column names (to resolve the roles against).
        rows: ``(location, record)`` pairs; a bad value raises naming its location.
        mapping: role → source column, as :func:`parse_columns` returns it.
        where: the source, for messages about its columns.
        guard: drops training queries that leak an evaluation query.

    Returns:
        ``(columns_dict, source_columns, dropped, rows_read)``.
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
    n_read = 0
    for here, record in rows:
        n_read += 1
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
    return data, source_columns, dropped, n_read


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
    from hybrid_search.dataset import load_beir

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


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class TrainingDataOptions:
    """How :func:`load_training_data` reads, filters and samples its source.

    Attributes:
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
        pseudo_query_ratio: with labelled pairs, also mine inverse-cloze pseudo-query pairs from their documents
            (the corpus of a BEIR folder, else the positives) and train on ``ratio`` × as many of them as there
            are labelled pairs (a seeded sample; fewer when fewer can be mined): more (teacher-scored) queries
            from the domain beside the few labelled ones. ``0`` (default): labelled pairs only.
    """

    columns: str | Mapping[str, str] | None = None
    self_supervised: bool | None = None
    split: str = "train"
    eval_queries: Iterable[str] = ()
    mining: MiningConfig | None = None
    min_grade: int = 1
    max_examples: int | None = None
    seed: int = 0
    pseudo_query_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not self.pseudo_query_ratio >= 0:  # also refuses NaN
            raise ValueError(f"--pseudo-query-ratio must be >= 0, got {self.pseudo_query_ratio}")
        if self.pseudo_query_ratio and self.self_supervised:
            raise ValueError(
                "--pseudo-query-ratio adds mined pairs to labelled ones; with --self-supervised every pair is mined already"
            )


@dataclass(frozen=True)
class _Plan:
    """The options, parsed once: the column mapping, the leakage guard and the mining settings."""

    options: TrainingDataOptions
    mapping: dict[str, str]
    guard: EvalQueryGuard
    mining: MiningConfig

    @classmethod
    def of(cls, options: TrainingDataOptions) -> _Plan:
        return cls(
            options,
            parse_columns(options.columns),
            EvalQueryGuard(options.eval_queries),
            options.mining or MiningConfig(),
        )

    def mines(self, columns: Sequence[str]) -> bool:
        """Whether to mine pairs from text: asked to, or (by default) when there is no query column."""
        wanted = self.options.self_supervised
        no_query = "query" not in self.mapping and _find(columns, ROLE_COLUMNS["query"]) is None
        return bool(wanted) or (wanted is None and no_query)


def load_training_data(
    source: str | os.PathLike[str] | Any, options: TrainingDataOptions | None = None, /, **settings: Any
) -> TrainingData:
    """Read training data from a file, a BEIR folder, a Hugging Face dataset or corpus text.

    Files are read as a stream of records through :class:`~hybrid_search.readers.RecordReader` (strictly: a
    bad line raises, naming its file and line); only the canonical columns are kept in memory.

    Args:
        source: a path, ``hf:owner/name[:config]``, or an in-memory ``datasets.Dataset``.
        options: see :class:`TrainingDataOptions`.
        **settings: the fields of :class:`TrainingDataOptions`, as keywords, when ``options`` is not given.

    Raises:
        TrainingDataError: missing or misnamed columns, wrong value types, or no usable example.
    """
    plan = _Plan.of(options or TrainingDataOptions(**settings))
    if not isinstance(source, (str, os.PathLike)):  # an in-memory datasets.Dataset
        data = _from_dataset(source, plan)
    elif beir_corpus_file(Path(os.fspath(source)).expanduser()) is not None:
        data = _from_beir(Path(os.fspath(source)).expanduser(), plan)
    else:
        data = _from_reader(_open(os.fspath(source), plan.options.split), plan)
    return _subsample(data, plan.options.max_examples, plan.options.seed)


def _open(text: str, split: str) -> RecordReader:
    """A strict reader over a training file, ``hf:`` id or saved dataset folder."""
    path = Path(text).expanduser()
    saved = is_saved_dataset(path)
    if path.is_dir() and not saved and not text.startswith("hf:"):
        raise TrainingDataError(
            f"{path} is a folder but neither a BEIR folder (corpus.jsonl) nor a saved Hugging Face dataset"
        )
    fmt = "hf" if saved else None
    return RecordReader(text, format=fmt, split=split, strict=True, what="training data", error=TrainingDataError)


def _from_reader(reader: RecordReader, plan: _Plan) -> TrainingData:
    head = reader.columns(peek=True)
    if not head:
        for _ in reader:  # a strict pass names the first bad line, if that is why nothing was found
            pass
        raise TrainingDataError(f"training data {reader.label} is empty")
    if reader.format != "hf" and plan.mines(head):
        if plan.options.self_supervised is None:
            logger.info("%s has no query column: mining self-supervised pairs from its text", reader.label)
        return _mine_corpus(reader.path, plan)
    columns = head if reader.format == "hf" else reader.columns()
    return _labelled_or_mined(columns, reader, reader.label, plan)


def _from_dataset(dataset: Any, plan: _Plan) -> TrainingData:
    label = "in-memory dataset"
    rows = ((f"{label}, row {i}", record) for i, record in enumerate(dataset, 1))
    return _labelled_or_mined(list(dataset.column_names), rows, label, plan)


def _from_beir(folder: Path, plan: _Plan) -> TrainingData:
    if plan.options.self_supervised:
        return _mine_corpus(folder, plan)
    pairs, dropped, documents, n_read = _beir_pairs(folder, plan.options.split, plan.guard, plan.options.min_grade)
    dataset = _finish(pairs, str(folder), dropped, n_read)
    columns = {"query": "queries.jsonl", "positive": "corpus.jsonl"}
    return _with_pseudo_queries(TrainingData(dataset, "beir-qrels", str(folder), columns, dropped, documents), plan)


def _labelled_or_mined(cols: list[str], rows: Rows, label: str, plan: _Plan) -> TrainingData:
    if plan.mines(cols):
        return _mined(_documents(cols, rows, label, plan.mapping), label, plan.guard, plan.mining)
    data, source_columns, dropped, n_read = records_to_pairs(
        cols, rows, mapping=plan.mapping, where=label, guard=plan.guard
    )
    dataset = _finish(data, label, dropped, n_read)
    labelled = TrainingData(dataset, "labelled", label, source_columns, dropped, sorted(set(data["positive"])))
    return _with_pseudo_queries(labelled, plan)


def _documents(cols: list[str], rows: Rows, label: str, mapping: Mapping[str, str]) -> list[Any]:
    """The text of a dataset's rows as documents to mine, ids from its id column (else the row number)."""
    from hybrid_search.corpus import ID_FIELDS, TEXT_FIELDS
    from hybrid_search.types import Document

    text_col = mapping.get("positive") or _find(cols, TEXT_FIELDS)
    if text_col is None or text_col not in cols:
        raise TrainingDataError(f"{label}: no text column to mine pairs from (columns {cols})")
    id_col = _find(cols, ID_FIELDS[:4])
    docs = [
        Document(id=str(r.get(id_col, i)) if id_col else str(i), text=_text(r.get(text_col), where, text_col))
        for i, (where, r) in enumerate(rows)
    ]
    if not docs:
        raise TrainingDataError(f"training data {label} is empty")
    return docs


def _mine_corpus(path: Path | None, plan: _Plan) -> TrainingData:
    from hybrid_search.corpus import CorpusError, CorpusReader

    assert path is not None
    try:
        docs = list(CorpusReader(path))
    except CorpusError as exc:
        raise TrainingDataError(f"cannot mine pairs from {path}: {exc}") from exc
    return _mined(docs, str(path), plan.guard, plan.mining)


def _pair_rows(pairs: Sequence[Mapping[str, str]]) -> Any:
    """Mined ``{"query", "positive", ...}`` pairs as ``(query, positive)`` dataset rows."""
    import datasets

    return datasets.Dataset.from_dict(
        {"query": [p["query"] for p in pairs], "positive": [p["positive"] for p in pairs]}
    )


def _mined(docs: list[Any], label: str, guard: EvalQueryGuard, mining: MiningConfig) -> TrainingData:
    pairs, stats = mine_pairs(docs, mining, guard=guard)
    dropped = {"eval_query": stats.get("eval_query", 0), "too_short": stats.get("too_short", 0)}
    if not pairs:
        raise TrainingDataError(
            f"no training pairs could be mined from {label}: {len(docs)} documents, "
            f"{dropped['too_short']} too short to split into a pseudo-query and a passage "
            f"(a passage needs at least {mining.min_query_words + mining.min_context_words} words)"
        )
    row_of = {d.id: i for i, d in enumerate(docs)}
    return TrainingData(
        _pair_rows(pairs),
        "self-supervised",
        label,
        {"query": "mined", "positive": "mined"},
        dropped,
        [d.full_text for d in docs],
        [row_of[p["doc_id"]] for p in pairs],
    )


def _with_pseudo_queries(data: TrainingData, plan: _Plan) -> TrainingData:
    """``data`` (labelled pairs) with ``ratio`` × as many inverse-cloze pairs mined from its documents.

    Every row then names its passage in ``data.sources``: a labelled row its positive document, a mined row the
    passage its pseudo-query was cut from, so that hard-negative mining excludes both the same way. Rows with
    their own negatives or labels are refused: a mined row has neither, and a loss needs the same columns in
    every row.
    """
    import datasets
    import numpy as np

    from hybrid_search.types import Document

    ratio = plan.options.pseudo_query_ratio
    if not ratio:
        return data
    if data.negative_columns or data.has_label:
        raise TrainingDataError(
            f"{data.source}: pseudo-queries can only be added to (query, positive) pairs, not to rows with their "
            f"own negatives or labels ({data.dataset.column_names}); drop --pseudo-query-ratio or those columns"
        )
    docs = [Document(id=str(i), text=text) for i, text in enumerate(data.documents)]
    pairs, stats = mine_pairs(docs, plan.mining, guard=plan.guard)
    wanted = min(len(pairs), round(ratio * len(data)))
    keep = sorted(np.random.default_rng(plan.options.seed).permutation(len(pairs))[:wanted].tolist())
    row_of = {text: i for i, text in reversed(list(enumerate(data.documents)))}  # the first copy of a text
    mined = [pairs[i] for i in keep]
    labelled_sources = [row_of[text] for text in data.dataset["positive"]]
    data.dataset = datasets.concatenate_datasets([data.dataset, _pair_rows(mined)])
    data.sources = labelled_sources + [int(p["doc_id"]) for p in mined]
    data.pseudo_queries = wanted
    if stats["eval_query"]:
        data.dropped["eval_query"] = data.dropped.get("eval_query", 0) + stats["eval_query"]
    logger.info(
        "added %d mined pseudo-query pairs (of %d mined) to %d labelled pairs", wanted, len(pairs), len(data) - wanted
    )
    return data


def _subsample(data: TrainingData, max_examples: int | None, seed: int) -> TrainingData:
    if max_examples is not None and len(data) > max_examples:
        import numpy as np

        data.dropped["over_max_examples"] = len(data) - max_examples
        keep = np.random.default_rng(seed).permutation(len(data))[:max_examples].tolist()
        first_mined = len(data) - data.pseudo_queries  # mined pseudo-queries follow the labelled pairs
        data.pseudo_queries = sum(i >= first_mined for i in keep)
        data.dataset = data.dataset.select(keep)
        if data.sources is not None:
            data.sources = [data.sources[i] for i in keep]
    return data
