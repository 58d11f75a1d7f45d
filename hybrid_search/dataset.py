"""Retrieval datasets: a corpus, its queries and their relevance judgements, from a folder or the Hub.

Datasets come from three places, all normalised to :class:`RetrievalDataset`:

* a local BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``),
  read by :func:`load_beir`;
* a Hugging Face Hub repository in the BEIR/NanoBEIR layout (three subsets ``corpus``,
  ``queries`` and ``qrels``, each with a single ``train`` split; columns ``_id``/``text``
  [/``title``] and ``query-id``/``corpus-id`` [/``score``]), read by
  :func:`load_hf_dataset` through ``datasets.load_dataset``;
* a local directory holding a copy of such a Hub repository (``corpus/*.parquet``,
  ``queries/*.parquet``, ``qrels/*.parquet``), also read by :func:`load_hf_dataset`.

:func:`load_dataset` picks the right loader from a single string. Every file is read through
:class:`hybrid_search.readers.RecordReader`, strictly: a dataset that evaluation depends on must not lose a
record quietly, so a bad line raises :class:`DatasetError` naming its file and line.

Example:
    >>> resolve_nanobeir("NanoMSMARCO")
    'nano-msmarco'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_search.readers import HFRef, ReadError, RecordReader, open_hf
from hybrid_search.trec import read_trec_qrels
from hybrid_search.types import Document

__all__ = [
    "NANOBEIR",
    "DatasetError",
    "RetrievalDataset",
    "load_beir",
    "load_dataset",
    "load_hf_dataset",
    "resolve_nanobeir",
]

#: Short names of the 13 NanoBEIR sets and their Hub repositories.
NANOBEIR: dict[str, str] = {
    "nano-climatefever": "zeta-alpha-ai/NanoClimateFEVER",
    "nano-dbpedia": "zeta-alpha-ai/NanoDBPedia",
    "nano-fever": "zeta-alpha-ai/NanoFEVER",
    "nano-fiqa2018": "zeta-alpha-ai/NanoFiQA2018",
    "nano-hotpotqa": "zeta-alpha-ai/NanoHotpotQA",
    "nano-msmarco": "zeta-alpha-ai/NanoMSMARCO",
    "nano-nfcorpus": "zeta-alpha-ai/NanoNFCorpus",
    "nano-nq": "zeta-alpha-ai/NanoNQ",
    "nano-quoraretrieval": "zeta-alpha-ai/NanoQuoraRetrieval",
    "nano-scidocs": "zeta-alpha-ai/NanoSCIDOCS",
    "nano-arguana": "zeta-alpha-ai/NanoArguAna",
    "nano-scifact": "zeta-alpha-ai/NanoSciFact",
    "nano-touche2020": "zeta-alpha-ai/NanoTouche2020",
}

#: The Hub subsets of a BEIR-style repository and the split each one is stored under.
_HF_SUBSETS: tuple[str, ...] = ("corpus", "queries", "qrels")
_HF_SPLIT = "train"

_BEIR_EXAMPLE = "../shared/data/msmarco-dl19-5k"

#: ``(location, record)`` pairs, as :class:`~hybrid_search.readers.RecordReader` yields them.
Rows = Iterator[tuple[str, dict[str, Any]]]


class DatasetError(ReadError):
    """A dataset could not be found, downloaded or parsed."""


@dataclass
class RetrievalDataset:
    """A corpus, its queries and their relevance judgements.

    Attributes:
        name: Human-readable name (folder name, NanoBEIR short name or Hub id).
        corpus: Documents keyed by their corpus id.
        queries: Query text keyed by query id.
        qrels: ``{query_id: {doc_id: grade}}``; grades are ints, higher is more relevant.
    """

    name: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def judged_queries(self) -> list[str]:
        """Ids of the queries that have at least one qrel, in ``queries`` order.

        Judged ids that have no query text are appended at the end (sorted), so that
        evaluation never silently drops a judgement.
        """
        judged = {qid for qid, docs in self.qrels.items() if docs}
        ordered = [qid for qid in self.queries if qid in judged]
        extra = sorted(judged.difference(self.queries))
        return ordered + extra

    def fingerprint(self) -> str:
        """A stable 16-hex-digit digest of the corpus content.

        The sha256 runs over the documents sorted by id, each contributing its id, title
        and text, so it changes whenever indexable content changes and never depends on
        file order. Queries and qrels are not part of it.

        Returns:
            The first 16 hex digits of the digest.
        """
        digest = hashlib.sha256()
        for doc_id in sorted(self.corpus):
            doc = self.corpus[doc_id]
            for part in (doc_id, doc.title or "", doc.text):
                digest.update(part.encode("utf-8"))
                digest.update(b"\x00")
            digest.update(b"\n")
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"RetrievalDataset(name={self.name!r}, docs={len(self.corpus)}, "
            f"queries={len(self.queries)}, judged={len(self.judged_queries)}, "
            f"qrels={sum(len(v) for v in self.qrels.values())})"
        )


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"missing {what}: {path} does not exist")
    return path


def _rows(source: Path, format: str | None = None) -> Rows:
    """The records of one file, strictly: a bad line raises :class:`DatasetError` with its location."""
    return iter(RecordReader(source, format=format, strict=True, what="dataset", error=DatasetError))


def _field(record: dict[str, Any], name: str, location: str) -> Any:
    """A required field of a record, or a DatasetError naming the record and the fields it has."""
    if name not in record:
        raise DatasetError(f"{location}: expected a column {name!r}, found {list(record)}")
    return record[name]


def _corpus(rows: Rows) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for location, rec in rows:
        doc_id = str(_field(rec, "_id", location))
        meta = rec.get("metadata")
        corpus[doc_id] = Document(
            id=doc_id,
            text=str(_field(rec, "text", location) or ""),
            title=str(rec.get("title") or ""),
            metadata=dict(meta) if isinstance(meta, dict) else {},
        )
    return corpus


def _queries(rows: Rows) -> dict[str, str]:
    return {str(_field(rec, "_id", where)): str(_field(rec, "text", where) or "") for where, rec in rows}


def _qrels(rows: Rows) -> dict[str, dict[str, int]]:
    """Hub-layout qrels; a subset without a ``score`` column (NanoBEIR's are binary) gets grade 1."""
    qrels: dict[str, dict[str, int]] = {}
    for where, rec in rows:
        query_id, doc_id = str(_field(rec, "query-id", where)), str(_field(rec, "corpus-id", where))
        qrels.setdefault(query_id, {})[doc_id] = int(rec.get("score", 1))
    return qrels


def load_beir(folder: str | os.PathLike[str], split: str = "test") -> RetrievalDataset:
    """Load a dataset in the BEIR folder layout.

    Expects ``corpus.jsonl`` (``_id``, ``title``, ``text`` and optionally ``metadata``),
    ``queries.jsonl`` (``_id``, ``text``) and ``qrels/{split}.tsv`` with tab-separated
    ``query-id corpus-id score`` rows. The qrels file may or may not start with a header
    row (detected by a non-integer score in the first row); grades may be binary or graded.
    Blank lines are ignored everywhere.

    Args:
        folder: The dataset folder.
        split: Which qrels file to read.

    Returns:
        The dataset, named after the folder.

    Raises:
        DatasetError: A file is missing or malformed.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"BEIR folder not found: {root}")
    corpus_path = _require_file(root / "corpus.jsonl", "corpus file")
    queries_path = _require_file(root / "queries.jsonl", "queries file")
    qrels_path = _require_file(root / "qrels" / f"{split}.tsv", f"qrels file for split {split!r}")
    return RetrievalDataset(
        name=root.resolve().name,
        corpus=_corpus(_rows(corpus_path, "jsonl")),
        queries=_queries(_rows(queries_path, "jsonl")),
        qrels=read_trec_qrels(qrels_path, error=DatasetError),
    )


def resolve_nanobeir(name: str) -> str | None:
    """Map a NanoBEIR name to its short name, or ``None`` if it is not one.

    Accepts ``nano-msmarco``, ``NanoMSMARCO``, ``nano_msmarco``, ``nanomsmarco`` and the Hub
    id ``zeta-alpha-ai/NanoMSMARCO`` alike (case-insensitive).

    Args:
        name: The name to resolve.

    Returns:
        The key of :data:`NANOBEIR`, or ``None``.
    """
    lowered = name.strip().lower()
    for short, repo in NANOBEIR.items():
        if lowered == repo.lower():
            return short
    squashed = lowered.replace("-", "").replace("_", "")
    for short in NANOBEIR:
        if squashed == short.replace("-", ""):
            return short
    return None


def _local_parquet_files(root: Path, subset: str) -> list[str]:
    """The parquet files of one subset in a local copy of a Hub repository."""
    sub = root / subset
    if sub.is_dir():
        files = sorted(p for p in sub.rglob("*.parquet") if p.is_file())
        preferred = [p for p in files if p.name.startswith(f"{_HF_SPLIT}-") or p.name == f"{_HF_SPLIT}.parquet"]
        files = preferred or files
    else:
        single = root / f"{subset}.parquet"
        files = [single] if single.is_file() else []
    return [str(p) for p in files]


def _is_hf_parquet_dir(root: Path) -> bool:
    return root.is_dir() and all(_local_parquet_files(root, s) for s in _HF_SUBSETS)


def _hub_error(repo_id: str, exc: BaseException) -> DatasetError:
    """Turn a ``datasets``/``huggingface_hub`` failure into a helpful DatasetError."""
    from datasets.exceptions import DatasetNotFoundError

    hint = (
        f"Pass a local BEIR folder instead (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), "
        f"e.g. --dataset {_BEIR_EXAMPLE}"
    )
    if isinstance(exc, DatasetNotFoundError):
        reason = f"dataset {repo_id!r} was not found on the Hugging Face Hub or cannot be accessed"
    else:
        offline = _hub_offline()
        reason = f"dataset {repo_id!r} could not be downloaded from the Hugging Face Hub" + (
            " (offline mode is enabled: HF_HUB_OFFLINE=1) and it is not in the local cache"
            if offline
            else " (no network connection? set HF_HUB_OFFLINE=1 to fail fast)"
        )
    return DatasetError(f"{reason}: {type(exc).__name__}: {exc}. {hint}")


def _hub_offline() -> bool:
    try:
        from datasets import config

        if config.HF_HUB_OFFLINE:
            return True
    except Exception:  # pragma: no cover - datasets is a hard dependency of this path
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_exceptions() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the Hub could not give us this dataset".

    Offline, ``datasets`` 5.x raises the builtin ``ConnectionError`` ("Couldn't reach ... on
    the Hub (OfflineModeIsEnabled | LocalEntryNotFoundError)"); an unknown repository gives
    ``DatasetNotFoundError``. Most ``huggingface_hub`` errors are ``OSError`` subclasses;
    ``httpx`` transport errors are not, so they are listed explicitly.
    """
    from datasets.exceptions import DatasetsError

    excs: list[type[BaseException]] = [OSError, DatasetsError]
    try:
        import httpx

        excs.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(excs)


def _local_subset(root: Path, subset: str) -> Rows:
    """The rows of one subset of a local copy of a Hub repository, file after file."""
    files = _local_parquet_files(root, subset)
    if not files:
        raise DatasetError(
            f"{root}: no parquet files for subset {subset!r} (expected {subset}/*.parquet, "
            f"as in a Hub repository of the BEIR layout)"
        )
    for file in files:
        yield from _rows(Path(file), "parquet")


def _hub_subset(repo_id: str, subset: str) -> Rows:
    """The rows of one subset of a Hub repository; failures explain what to do instead."""
    try:
        rows = open_hf(HFRef(label=repo_id, name=repo_id, config=subset), _HF_SPLIT, streaming=False)
    except _hub_exceptions() as exc:
        raise _hub_error(repo_id, exc) from exc
    except ValueError as exc:  # e.g. unknown config name
        raise DatasetError(
            f"{repo_id!r} does not look like a BEIR-style Hub dataset "
            f"(subsets corpus/queries/qrels with a 'train' split): {exc}"
        ) from exc
    for row, record in enumerate(rows, 1):
        yield f"{repo_id}/{subset}:row {row}", record


def load_hf_dataset(repo_id_or_path: str | os.PathLike[str], *, name: str | None = None) -> RetrievalDataset:
    """Load a BEIR-style dataset from the Hugging Face Hub or a local copy of one.

    Hub repositories (e.g. ``zeta-alpha-ai/NanoMSMARCO``) are read with
    ``datasets.load_dataset(repo_id, subset, split="train")`` for the subsets ``corpus``,
    ``queries`` and ``qrels``. A local directory laid out like such a repository
    (``corpus/train-00000-of-00001.parquet`` and likewise for ``queries`` and ``qrels``) is
    read file by file with the Parquet reader. A ``qrels`` subset without a ``score`` column
    (NanoBEIR's are binary) gets grade 1 everywhere.

    Args:
        repo_id_or_path: Hub id (``owner/name``) or local directory.
        name: Dataset name to record; defaults to the NanoBEIR short name when the id is
            a NanoBEIR one, else the id or directory name.

    Returns:
        The dataset.

    Raises:
        DatasetError: The dataset cannot be downloaded, found or parsed.
    """
    spec = os.fspath(repo_id_or_path)
    local = Path(spec).expanduser()
    if local.is_dir():
        label = name or local.resolve().name
        subsets = {subset: _local_subset(local, subset) for subset in _HF_SUBSETS}
    else:
        repo_id = spec.removeprefix("hf:")
        label = name or resolve_nanobeir(repo_id) or repo_id
        subsets = {subset: _hub_subset(repo_id, subset) for subset in _HF_SUBSETS}
    return RetrievalDataset(
        name=label,
        corpus=_corpus(subsets["corpus"]),
        queries=_queries(subsets["queries"]),
        qrels=_qrels(subsets["qrels"]),
    )


def load_dataset(spec: str | os.PathLike[str], split: str = "test") -> RetrievalDataset:
    """Load a dataset from a path, a NanoBEIR short name or a Hub id.

    Dispatch, in order:

    1. a local folder with ``corpus.jsonl`` → :func:`load_beir` (``split`` picks the qrels);
    2. a local folder with ``corpus/``, ``queries/``, ``qrels/`` parquet files →
       :func:`load_hf_dataset`;
    3. a NanoBEIR name (``nano-msmarco``, ``NanoMSMARCO``, ...) → its Hub repository;
    4. ``hf:owner/name`` or ``owner/name`` that is not a local path → the Hub.

    ``split`` only applies to BEIR folders; Hub datasets carry a single ``train`` split.

    Args:
        spec: What to load.
        split: Qrels split of a BEIR folder.

    Returns:
        The dataset.

    Raises:
        DatasetError: Nothing matches ``spec``, or loading it fails (including no network).
    """
    text = os.fspath(spec).strip()
    if not text:
        raise DatasetError("empty dataset spec")
    if text.startswith("hf:"):
        return load_hf_dataset(text, name=resolve_nanobeir(text[3:]))
    local = Path(text).expanduser()
    if local.is_dir():
        if (local / "corpus.jsonl").is_file():
            return load_beir(local, split=split)
        if _is_hf_parquet_dir(local):
            return load_hf_dataset(local)
        raise DatasetError(
            f"{local} is neither a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) "
            f"nor a local copy of a Hub dataset (corpus/, queries/, qrels/ parquet files)"
        )
    short = resolve_nanobeir(text)
    if short is not None:
        return load_hf_dataset(NANOBEIR[short], name=short)
    if local.exists():
        raise DatasetError(f"{local} is a file; pass a dataset folder")
    parts = text.split("/")
    if len(parts) == 2 and all(parts):
        return load_hf_dataset(text)
    raise DatasetError(
        f"unknown dataset {text!r}: not a local folder, not a NanoBEIR name "
        f"({', '.join(NANOBEIR)}) and not a Hub id (owner/name). "
        f"Pass a BEIR folder, e.g. --dataset {_BEIR_EXAMPLE}"
    )
