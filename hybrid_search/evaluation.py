"""Retrieval datasets, IR metrics, significance tests and TREC run files.

Datasets come from three places, all normalised to :class:`RetrievalDataset`:

* a local BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``),
  read by :func:`load_beir`;
* a Hugging Face Hub repository in the BEIR/NanoBEIR layout (three subsets ``corpus``,
  ``queries`` and ``qrels``, each with a single ``train`` split; columns ``_id``/``text``
  [/``title``] and ``query-id``/``corpus-id`` [/``score``]), read by
  :func:`load_hf_dataset` through ``datasets.load_dataset``;
* a local directory holding a copy of such a Hub repository (``corpus/*.parquet``,
  ``queries/*.parquet``, ``qrels/*.parquet``), also read by :func:`load_hf_dataset`.

:func:`load_dataset` picks the right loader from a single string.

Metrics are computed by ``ir_measures`` (which delegates to ``pytrec_eval``); nothing is
hand-rolled. Aggregates are means over the *judged* queries (queries with at least one
qrel): a judged query that is missing from the run, or has an empty ranking, scores 0 on
every measure. That is what ``ir_measures`` does by itself (the equivalent of
``trec_eval -c``), and this module relies on it and fills the per-query tables the same
way. Queries in the run without qrels are ignored. A judged query whose judgements are
all below the relevance threshold also counts, with 0, as in TREC DL reporting.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ir_measures
import numpy as np

from hybrid_search.types import Document

__all__ = [
    "NANOBEIR",
    "METRIC_NAMES",
    "DatasetError",
    "RetrievalDataset",
    "evaluate",
    "evaluate_per_query",
    "load_beir",
    "load_dataset",
    "load_hf_dataset",
    "measures",
    "paired_significance",
    "read_trec_qrels",
    "read_trec_run",
    "resolve_nanobeir",
    "write_trec_qrels",
    "write_trec_run",
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

#: Names of the metrics returned by :func:`evaluate`, in table order.
METRIC_NAMES: tuple[str, ...] = ("nDCG@10", "MRR@10", "MAP", "R@100")

#: The Hub subsets of a BEIR-style repository and the split each one is stored under.
_HF_SUBSETS: tuple[str, ...] = ("corpus", "queries", "qrels")
_HF_SPLIT = "train"

_BEIR_EXAMPLE = "../shared/data/msmarco-dl19-5k"


class DatasetError(ValueError):
    """A dataset could not be found, downloaded or parsed."""


# --------------------------------------------------------------------------- datasets


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


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{line_no}: expected a JSON object per line")
            yield line_no, record


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"missing {what}: {path} does not exist")
    return path


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    """Read BEIR qrels (``query-id corpus-id score``) with or without a header row.

    Four-column TREC qrels (``qid iteration docid grade``) are accepted too.
    """
    qrels: dict[str, dict[str, int]] = {}
    first = True
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\n\r").split("\t")
            if len(cols) == 1:  # whitespace-separated TREC style
                cols = line.split()
            if len(cols) == 3:
                qid, did, grade = cols
            elif len(cols) == 4:
                qid, _, did, grade = cols
            else:
                raise DatasetError(
                    f"{path}:{line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}"
                )
            grade = grade.strip()
            if first:
                first = False
                if not _is_int(grade):  # header row such as "query-id\tcorpus-id\tscore"
                    continue
            if not _is_int(grade):
                try:
                    as_float = float(grade)
                except ValueError:
                    as_float = float("nan")
                if not as_float.is_integer():
                    raise DatasetError(f"{path}:{line_no}: relevance grade {grade!r} is not an integer")
                grade = str(int(as_float))
            qrels.setdefault(qid.strip(), {})[did.strip()] = int(grade)
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

    corpus: dict[str, Document] = {}
    for line_no, rec in _read_jsonl(corpus_path):
        if "_id" not in rec:
            raise DatasetError(f"{corpus_path}:{line_no}: record has no '_id'")
        meta = rec.get("metadata")
        doc_id = str(rec["_id"])
        corpus[doc_id] = Document(
            id=doc_id,
            text=str(rec.get("text") or ""),
            title=str(rec.get("title") or ""),
            metadata=dict(meta) if isinstance(meta, dict) else {},
        )

    queries: dict[str, str] = {}
    for line_no, rec in _read_jsonl(queries_path):
        if "_id" not in rec:
            raise DatasetError(f"{queries_path}:{line_no}: record has no '_id'")
        queries[str(rec["_id"])] = str(rec.get("text") or "")

    qrels = _read_qrels_tsv(qrels_path)
    return RetrievalDataset(name=root.resolve().name, corpus=corpus, queries=queries, qrels=qrels)


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


def _column(table: Any, name: str, where: str) -> list[Any]:
    """One column of a ``pyarrow.Table`` as Python values, or a DatasetError naming it."""
    if name not in table.column_names:
        raise DatasetError(f"{where}: expected a column {name!r}, found {table.column_names}")
    return table.column(name).to_pylist()


def _dataset_from_tables(name: str, corpus_t: Any, queries_t: Any, qrels_t: Any) -> RetrievalDataset:
    ids = _column(corpus_t, "_id", f"{name}/corpus")
    texts = _column(corpus_t, "text", f"{name}/corpus")
    titles = _column(corpus_t, "title", name) if "title" in corpus_t.column_names else [""] * len(ids)
    corpus = {
        str(i): Document(id=str(i), text=str(t or ""), title=str(ti or "")) for i, t, ti in zip(ids, texts, titles)
    }

    q_ids = _column(queries_t, "_id", f"{name}/queries")
    q_texts = _column(queries_t, "text", f"{name}/queries")
    queries = {str(i): str(t or "") for i, t in zip(q_ids, q_texts)}

    r_q = _column(qrels_t, "query-id", f"{name}/qrels")
    r_d = _column(qrels_t, "corpus-id", f"{name}/qrels")
    r_s = _column(qrels_t, "score", name) if "score" in qrels_t.column_names else [1] * len(r_q)
    qrels: dict[str, dict[str, int]] = {}
    for q, d, s in zip(r_q, r_d, r_s):
        qrels.setdefault(str(q), {})[str(d)] = int(s)
    return RetrievalDataset(name=name, corpus=corpus, queries=queries, qrels=qrels)


def load_hf_dataset(repo_id_or_path: str | os.PathLike[str], *, name: str | None = None) -> RetrievalDataset:
    """Load a BEIR-style dataset from the Hugging Face Hub or a local copy of one.

    Hub repositories (e.g. ``zeta-alpha-ai/NanoMSMARCO``) are read with
    ``datasets.load_dataset(repo_id, subset, split="train")`` for the subsets ``corpus``,
    ``queries`` and ``qrels``. A local directory laid out like such a repository
    (``corpus/train-00000-of-00001.parquet`` and likewise for ``queries`` and ``qrels``) is
    read with the ``parquet`` builder and ``data_files={"train": [...]}``. A ``qrels``
    subset without a ``score`` column (NanoBEIR's are binary) gets grade 1 everywhere.

    Args:
        repo_id_or_path: Hub id (``owner/name``) or local directory.
        name: Dataset name to record; defaults to the NanoBEIR short name when the id is
            a NanoBEIR one, else the id or directory name.

    Returns:
        The dataset.

    Raises:
        DatasetError: The dataset cannot be downloaded, found or parsed.
    """
    import datasets

    spec = os.fspath(repo_id_or_path)
    local = Path(spec).expanduser()
    subsets: dict[str, Any] = {}
    if local.is_dir():
        label = name or local.resolve().name
        for subset in _HF_SUBSETS:
            files = _local_parquet_files(local, subset)
            if not files:
                raise DatasetError(
                    f"{local}: no parquet files for subset {subset!r} (expected {subset}/*.parquet, "
                    f"as in a Hub repository of the BEIR layout)"
                )
            try:
                subsets[subset] = datasets.load_dataset("parquet", data_files={_HF_SPLIT: files}, split=_HF_SPLIT)
            except Exception as exc:
                raise DatasetError(f"{local}: could not read subset {subset!r}: {type(exc).__name__}: {exc}") from exc
    else:
        repo_id = spec[3:] if spec.startswith("hf:") else spec
        label = name or resolve_nanobeir(repo_id) or repo_id
        hub_excs = _hub_exceptions()
        for subset in _HF_SUBSETS:
            try:
                subsets[subset] = datasets.load_dataset(repo_id, subset, split=_HF_SPLIT)
            except hub_excs as exc:
                raise _hub_error(repo_id, exc) from exc
            except ValueError as exc:  # e.g. unknown config name
                raise DatasetError(
                    f"{repo_id!r} does not look like a BEIR-style Hub dataset "
                    f"(subsets corpus/queries/qrels with a 'train' split): {exc}"
                ) from exc
    return _dataset_from_tables(
        label,
        subsets["corpus"].data.table,
        subsets["queries"].data.table,
        subsets["qrels"].data.table,
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


# --------------------------------------------------------------------------- metrics


def measures(rel_threshold: int = 1) -> dict[str, ir_measures.Measure]:
    """The reported measures as ``ir_measures`` objects.

    nDCG uses the graded judgements as gains and ignores the threshold; the binary
    measures count a document as relevant when its grade is ``>= rel_threshold``
    (TREC DL passage uses 2).

    Args:
        rel_threshold: Minimum grade counted as relevant by MRR, MAP and recall.

    Returns:
        ``{"nDCG@10": nDCG@10, "MRR@10": RR(rel=t)@10, "MAP": AP(rel=t), "R@100": R(rel=t)@100}``.
    """
    if rel_threshold < 1:
        raise ValueError("rel_threshold must be >= 1")
    t = int(rel_threshold)
    return {
        "nDCG@10": ir_measures.nDCG @ 10,
        "MRR@10": ir_measures.RR(rel=t) @ 10,
        "MAP": ir_measures.AP(rel=t),
        "R@100": ir_measures.R(rel=t) @ 100,
    }


def _prepare(
    run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    if not judged:
        raise ValueError("qrels contain no judged query")
    clean_run = {
        str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in run.items() if str(q) in judged and docs
    }
    return clean_run, judged


def evaluate_per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    rel_threshold: int = 1,
) -> dict[str, dict[str, float]]:
    """Per-query values of the reported measures.

    Every judged query gets a value for every measure; judged queries that are absent
    from the run (or have an empty ranking) get 0.0. Ranks come from the scores (higher is
    better; ties broken by ``pytrec_eval``'s document-id order).

    Args:
        run: ``{query_id: {doc_id: score}}``.
        qrels: ``{query_id: {doc_id: grade}}``.
        rel_threshold: See :func:`measures`.

    Returns:
        ``{metric_name: {query_id: value}}`` with values in ``[0, 1]``.
    """
    clean_run, judged = _prepare(run, qrels)
    ms = measures(rel_threshold)
    by_measure = {m: n for n, m in ms.items()}
    out: dict[str, dict[str, float]] = {n: dict.fromkeys(judged, 0.0) for n in ms}
    for metric in ir_measures.iter_calc(list(ms.values()), judged, clean_run):
        out[by_measure[metric.measure]][metric.query_id] = float(metric.value)
    return out


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    rel_threshold: int = 1,
) -> dict[str, float]:
    """Mean of the reported measures over the judged queries.

    Uses ``ir_measures.calc_aggregate``, which averages over every query in the qrels and
    scores judged queries missing from the run as 0 (``trec_eval -c``); queries in the
    run but not in the qrels are ignored.

    Args:
        run: ``{query_id: {doc_id: score}}``.
        qrels: ``{query_id: {doc_id: grade}}``.
        rel_threshold: See :func:`measures`.

    Returns:
        ``{"nDCG@10": ..., "MRR@10": ..., "MAP": ..., "R@100": ...}``, each in ``[0, 1]``.
    """
    clean_run, judged = _prepare(run, qrels)
    ms = measures(rel_threshold)
    agg = ir_measures.calc_aggregate(list(ms.values()), judged, clean_run)
    return {n: float(agg.get(m, 0.0)) for n, m in ms.items()}


def paired_significance(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    n_resamples: int = 10000,
    seed: int = 0,
) -> float:
    """Two-sided paired randomisation test on per-query scores.

    Uses ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` (the labels
    of each query's pair are swapped at random) and the mean difference as statistic.
    When ``2**n <= n_resamples`` scipy enumerates all sign assignments exactly.

    Args:
        a: Per-query values of system A (e.g. one entry of :func:`evaluate_per_query`).
        b: Per-query values of system B.
        n_resamples: Monte-Carlo resamples.
        seed: Seed of the resampling generator.

    Returns:
        The p-value over the query ids the two have in common.

    Raises:
        ValueError: No query id in common.
    """
    from scipy.stats import permutation_test

    common = sorted(set(a).intersection(b))
    if not common:
        raise ValueError("paired_significance: the two runs have no query id in common")
    x = np.asarray([float(a[q]) for q in common], dtype=np.float64)
    y = np.asarray([float(b[q]) for q in common], dtype=np.float64)
    if np.array_equal(x, y):
        return 1.0

    def mean_diff(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(u - v, axis=axis)

    result = permutation_test(
        (x, y),
        mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(min(1.0, result.pvalue))


# --------------------------------------------------------------------------- TREC files


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str], tag: str) -> None:
    """Write a run in TREC format: ``qid Q0 docid rank score tag``.

    Queries are written in sorted order, documents by descending score (ties by id).

    Args:
        run: ``{query_id: {doc_id: score}}``.
        path: Output file; parent folders are created.
        tag: Run tag (no whitespace).
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be non-empty and contain no whitespace: {tag!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for qid in sorted(run):
            ranked = sorted(run[qid].items(), key=lambda kv: (-float(kv[1]), kv[0]))
            for rank, (did, score) in enumerate(ranked, start=1):
                fh.write(f"{qid} Q0 {did} {rank} {float(score)!r} {tag}\n")


def read_trec_run(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{query_id: {doc_id: score}}``."""
    run: dict[str, dict[str, float]] = {}
    for sd in ir_measures.read_trec_run(os.fspath(path)):
        run.setdefault(sd.query_id, {})[sd.doc_id] = float(sd.score)
    return run


def write_trec_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | os.PathLike[str]) -> None:
    """Write qrels in TREC format: ``qid 0 docid grade``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for qid in sorted(qrels):
            for did in sorted(qrels[qid]):
                fh.write(f"{qid} 0 {did} {int(qrels[qid][did])}\n")


def read_trec_qrels(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Read TREC (``qid iter docid grade``) or BEIR (``qid docid grade``) qrels."""
    return _read_qrels_tsv(Path(path))
