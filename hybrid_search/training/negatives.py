"""Hard negatives mined from the project's own retrieval: the hybrid ranking of the training corpus.

In-batch negatives are random passages, which a model tells apart from the positive by topic alone. A
*hard* negative is a passage the current retrieval ranks high for the query but that is not judged relevant:
it teaches the distinctions that matter at the top of the ranking. The risk is the **false negative**, a
relevant passage the judges never saw; training against it teaches the wrong lesson.

The method follows sentence-transformers' :func:`~sentence_transformers.util.mine_hard_negatives`, with the
setting the NV-Retriever paper (Moreira et al., 2024, "NV-Retriever: Improving text embedding models with
effective hard-negative mining") found best, *TopK-PercPos (95%)*: take the top-ranked candidates, skipping
any whose score reaches 95% of the positive's score (``relative_margin=0.05``). The utility itself needs one
dense ``SentenceTransformer`` and its embeddings; here the candidates come from the ranking an index of this
project would return, the reciprocal-rank fusion of the sparse and the dense channels, so the margin is
applied per channel: a candidate is skipped when **any** channel scores it within the margin of the
query's best positive in that channel. Positives (every passage judged relevant to the query) are never
negatives, and a rank window (``range_min``, ``range_max``) bounds how deep the candidates come from.

The functions are pure over score matrices (:func:`select_negatives`); :func:`mine_hard_negatives` encodes
the texts and adds the ``negative`` columns to a training dataset.

Example:
    >>> import numpy as np
    >>> scores = {"sparse": np.array([[9.0, 8.8, 5.0, 4.0, 1.0]])}
    >>> picked, stats = select_negatives(scores, [{0}], NegativeConfig(num_negatives=2))
    >>> picked, stats["false_negative_guard"]
    ([[2, 3]], 1)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hybrid_search.fusion import DEFAULT_RRF_K

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NegativeConfig:
    """How hard negatives are mined (defaults fixed in advance from NV-Retriever's best setting).

    Attributes:
        num_negatives: negatives per (query, positive) row; 0 turns mining off; ``None``: the architecture's
            default (:data:`hybrid_search.training.build.DEFAULTS`).
        sparse_model: sparse model of the teacher ranking (the project's default index model).
        dense_model: dense model of the teacher ranking, or ``None`` for the sparse channel alone.
        range_min: skip this many top candidates (after the positives are removed).
        range_max: look no deeper than this rank of the fused ranking.
        relative_margin: skip a candidate scored at least ``(1 - margin)`` times the positive in any channel.
        depth: candidates each channel contributes to the fusion (the index's prefetch depth).
        rrf_k: the RRF constant of the fusion.
    """

    num_negatives: int | None = 1
    sparse_model: str = "splade-tiny"
    dense_model: str | None = "minilm"
    range_min: int = 0
    range_max: int = 100
    relative_margin: float = 0.05
    depth: int = 100
    rrf_k: float = DEFAULT_RRF_K

    def __post_init__(self) -> None:
        if self.num_negatives is not None and self.num_negatives < 0:
            raise ValueError("the number of hard negatives must be >= 0")
        if not 0 <= self.range_min < self.range_max:
            raise ValueError("need 0 <= range_min < range_max for the hard-negative rank window")
        if not 0.0 <= self.relative_margin < 1.0:
            raise ValueError("the hard-negative relative margin must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fused_order(scores: Mapping[str, np.ndarray], row: int, depth: int, rrf_k: float) -> list[int]:
    """Document indices of one query, best first, by RRF over each channel's top ``depth`` (ranks from 1)."""
    fused: dict[int, float] = {}
    for matrix in scores.values():
        values = matrix[row]
        k = min(depth, values.size)
        top = np.argpartition(-values, k - 1)[:k] if k < values.size else np.arange(values.size)
        top = top[np.lexsort((top, -values[top]))]  # score descending, index ascending on ties
        for rank, doc in enumerate(top.tolist(), start=1):
            if values[doc] > 0 or len(scores) == 1:
                fused[doc] = fused.get(doc, 0.0) + 1.0 / (rrf_k + rank)
    return [doc for doc, _ in sorted(fused.items(), key=lambda item: (-item[1], item[0]))]


def select_negatives(
    scores: Mapping[str, np.ndarray], positives: Sequence[set[int]], cfg: NegativeConfig
) -> tuple[list[list[int]], dict[str, Any]]:
    """Pick ``cfg.num_negatives`` hard negatives per query from channel score matrices.

    Args:
        scores: ``{channel: (n_queries, n_docs) array}`` of exact scores.
        positives: for each query, the indices of every document judged relevant to it.
        cfg: the window, margin and count.

    Returns:
        ``(negatives, stats)``: per query the chosen document indices (best ranked first; fewer than asked
        when the window runs dry), and counts ``queries``, ``negatives``, ``short`` (queries with fewer
        than asked), ``false_negative_guard`` (candidates skipped by the margin) and ``positive_skipped``.
    """
    wanted = cfg.num_negatives or 0
    stats: dict[str, Any] = {
        "queries": len(positives),
        "negatives": 0,
        "short": 0,
        "false_negative_guard": 0,
        "positive_skipped": 0,
    }
    chosen: list[list[int]] = []
    for row, pos in enumerate(positives):
        ceiling = {name: (1.0 - cfg.relative_margin) * float(np.max(m[row, sorted(pos)])) for name, m in scores.items()}
        picked: list[int] = []
        seen = 0
        for doc in fused_order(scores, row, cfg.depth, cfg.rrf_k)[: cfg.range_max]:
            if doc in pos:
                stats["positive_skipped"] += 1
                continue
            seen += 1
            if seen <= cfg.range_min:
                continue
            if any(scores[name][row, doc] >= ceiling[name] > 0 for name in scores):
                stats["false_negative_guard"] += 1
                continue
            picked.append(doc)
            if len(picked) == wanted:
                break
        stats["negatives"] += len(picked)
        stats["short"] += len(picked) < wanted
        chosen.append(picked)
    return chosen, stats


def _corpus_vectors(kind: str, encoder: Any, docs: Sequence[Any], fingerprint: str, cache: Any, progress: bool) -> Any:
    if cache is not None:
        return getattr(cache, kind)(encoder, list(docs), fingerprint)[0]
    return encoder.encode_document([d.full_text for d in docs], show_progress_bar=progress)


def _channel_models(cfg: NegativeConfig, device: str | None) -> dict[str, Any]:
    """The teacher's encoders by channel name (``sparse``, and ``dense`` when ``cfg.dense_model``), on ``device``."""
    from hybrid_search.encoders import DenseEncoder, SparseEncoder

    models: dict[str, Any] = {"sparse": SparseEncoder.load(cfg.sparse_model)}
    if cfg.dense_model:
        models["dense"] = DenseEncoder.load(cfg.dense_model)
    if device is not None:
        for encoder in models.values():
            encoder.model.to(device)
    return models


def channel_scores(
    queries: Sequence[str],
    docs: Sequence[Any],
    fingerprint: str,
    cfg: NegativeConfig,
    *,
    device: str | None = None,
    progress: bool = False,
    cache: Any = None,
    models: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Exact ``(n_queries, n_docs)`` score matrices of the teacher's channels, as the index would score them.

    Args:
        queries: query texts.
        docs: the corpus (:class:`~hybrid_search.types.Document`).
        fingerprint: the corpus's content digest, the key of its vectors in ``cache``.
        cfg: the teacher's models.
        device: where the teacher models run.
        progress: progress bars while the corpus is encoded.
        cache: an embedding cache (``pipelines.embedding_cache.EmbeddingCache``) or ``None``.
        models: the channels' encoders (:func:`_channel_models`), when the caller has them loaded already.
    """
    from hybrid_search.training.evaluate import to_csr

    models = models if models is not None else _channel_models(cfg, device)
    sparse = models["sparse"]
    doc_vectors = _corpus_vectors("sparse", sparse, docs, fingerprint, cache, progress)
    query_vectors = sparse.encode_query(list(queries))
    dim = sparse.dimension
    out = {"sparse": (to_csr(query_vectors, dim) @ to_csr(doc_vectors, dim).T).toarray().astype(np.float32)}
    if "dense" in models:
        dense = models["dense"]
        matrix = _corpus_vectors("dense", dense, docs, fingerprint, cache, progress)
        out["dense"] = (dense.encode_query(list(queries)) @ np.asarray(matrix).T).astype(np.float32)
    return out


def pair_scores(queries: Sequence[str], passages: Sequence[str], models: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each channel's score of ``passages[i]`` for ``queries[i]``, scored as :func:`channel_scores` scores (with the
    same ``models``): for passages that are not corpus documents (a mined pair's positive is its passage less the
    pseudo-query)."""
    from hybrid_search.training.evaluate import to_csr

    if not queries:
        return {name: np.zeros(0, dtype=np.float32) for name in models}
    sparse = models["sparse"]
    dim = sparse.dimension
    q, p = to_csr(sparse.encode_query(list(queries)), dim), to_csr(sparse.encode_document(list(passages)), dim)
    out = {"sparse": np.asarray(q.multiply(p).sum(axis=1)).ravel().astype(np.float32)}
    if "dense" in models:
        dense = models["dense"]
        rows = np.asarray(dense.encode_query(list(queries))) * np.asarray(dense.encode_document(list(passages)))
        out["dense"] = rows.sum(axis=1).astype(np.float32)
    return out


def mine_hard_negatives(
    dataset: Any,
    docs: Sequence[Any],
    fingerprint: str,
    cfg: NegativeConfig,
    *,
    device: str | None = None,
    progress: bool = False,
    cache: Any = None,
    sources: Sequence[int] | None = None,
    teacher: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Add ``negative`` (``negative_2``...) columns to a ``(query, positive)`` dataset.

    Every positive of a query (each row naming it) is excluded from that query's negatives. Rows whose query
    got fewer negatives than asked are dropped, since a loss needs the same columns in every row; the count
    is in the stats.

    With ``teacher`` the rows also get a ``label`` column: the teacher channels' margins, one per negative, in
    [-1, 1] (:mod:`hybrid_search.training.teacher`), from the score matrices mining computed anyway (``hybrid+bm25``
    adds a BM25 channel, scored here); only positives that are not corpus documents (mined pairs) are scored again.
    They still have to be put into the student's units (:func:`hybrid_search.training.teacher.scale_labels`).

    Args:
        dataset: a ``datasets.Dataset`` with ``query`` and ``positive`` columns.
        docs: the corpus the negatives come from (the training corpus), as documents; positives missing from
            it are added.
        fingerprint: the corpus's content digest (see :func:`channel_scores`).
        cfg: see :class:`NegativeConfig`.
        device, progress, cache: see :func:`channel_scores`.
        sources: for each row, the index in ``docs`` of the passage its positive stands for (mined pairs,
            whose positive is a passage less its pseudo-query); by default each positive is looked up by its
            text, and positives not in ``docs`` are added to it.
        teacher: a name from :data:`hybrid_search.constants.TEACHERS`: add its margins as a ``label`` column
            (statistics under ``stats["teacher"]``); ``None``: no labels.

    Returns:
        ``(dataset_with_negatives, stats)``.

    Raises:
        ValueError: ``teacher`` is not one of those names.
    """
    from hybrid_search.training.teacher import check_teacher_name

    if teacher is not None:
        check_teacher_name(teacher)
    started = time.perf_counter()
    queries = list(dict.fromkeys(dataset["query"]))
    corpus, fingerprint, sources = _with_positives(dataset, docs, fingerprint, sources)
    query_index = {q: i for i, q in enumerate(queries)}
    positives: list[set[int]] = [set() for _ in queries]
    for query, source in zip(dataset["query"], sources):
        positives[query_index[query]].add(source)
    models = _channel_models(cfg, device)  # loaded once: the teacher may score mined positives with them too
    scores = channel_scores(queries, corpus, fingerprint, cfg, progress=progress, cache=cache, models=models)
    chosen, stats = select_negatives(scores, positives, cfg)
    picked = [chosen[query_index[q]] for q in dataset["query"]]
    labels = None
    if teacher:
        labels, stats["teacher"] = _teacher_labels(
            dataset, picked, corpus, sources, query_index, scores, cfg, models, teacher
        )
    rows, dropped = _rows_with_negatives(dataset, picked, corpus, cfg, labels)
    stats.update(
        {
            "rows_dropped": dropped,
            "rows": len(rows),
            "documents": len(corpus),
            "channels": list(scores),
            "seconds": round(time.perf_counter() - started, 1),
            **cfg.to_dict(),
        }
    )
    logger.info("hard negatives: %s", stats)
    return rows, stats


def _with_positives(
    dataset: Any, docs: Sequence[Any], fingerprint: str, sources: Sequence[int] | None
) -> tuple[list[Any], str, Sequence[int]]:
    """The corpus, its fingerprint and each row's positive as a corpus index. Without ``sources`` positives are
    looked up by text; those missing from the corpus are added to it (and to its fingerprint)."""
    import hashlib

    from hybrid_search.types import Document

    corpus = list(docs)
    if sources is not None:
        return corpus, fingerprint, sources
    doc_index: dict[str, int] = {}
    for i, doc in enumerate(corpus):
        doc_index.setdefault(doc.full_text, i)
    missing = [t for t in dict.fromkeys(dataset["positive"]) if t not in doc_index]
    if missing:
        fingerprint = hashlib.sha256((fingerprint + "\x00".join(missing)).encode("utf-8")).hexdigest()[:16]
        for text in missing:
            doc_index[text] = len(corpus)
            corpus.append(Document(id=f"positive-{len(corpus)}", text=text))
    return corpus, fingerprint, [doc_index[positive] for positive in dataset["positive"]]


def _teacher_labels(
    dataset: Any,
    picked: Sequence[list[int]],
    corpus: Sequence[Any],
    sources: Sequence[int],
    query_index: Mapping[str, int],
    scores: Mapping[str, np.ndarray],
    cfg: NegativeConfig,
    models: Mapping[str, Any],
    teacher: str,
) -> tuple[list[list[float]], dict[str, Any]]:
    """Each row's teacher margins in [-1, 1] (one per picked negative) and their statistics over the rows that keep
    enough negatives. Each query's candidates are the fused list mining walks (every mining channel's top
    ``cfg.depth``); ``hybrid+bm25`` scores a BM25 channel over the same corpus and adds it to the ensemble."""
    from hybrid_search.training.teacher import scores_of, unit_margins

    wanted = cfg.num_negatives or 0
    queries, passages = list(dataset["query"]), list(dataset["positive"])
    # A positive that is not its corpus document's text (a mined pair's) is scored as it will be trained on.
    rescore = [i for i, (text, doc) in enumerate(zip(passages, sources)) if text != corpus[doc].full_text]
    rescored_queries, rescored_passages = [queries[i] for i in rescore], [passages[i] for i in rescore]
    extra = pair_scores(rescored_queries, rescored_passages, models)
    teacher_scores = dict(scores)
    if teacher == "hybrid+bm25":
        from hybrid_search.encoders.bm25 import BM25Channel

        bm25 = BM25Channel([d.id for d in corpus], [d.full_text for d in corpus])
        teacher_scores["bm25"] = bm25.score_matrix(list(query_index))  # the queries in row order
        extra["bm25"] = bm25.score_passages(rescored_queries, rescored_passages)
    positive_scores = {i: {name: float(extra[name][k]) for name in extra} for k, i in enumerate(rescore)}
    candidates: dict[int, list[int]] = {}
    labels: list[list[float]] = []
    for i, (query, doc, negatives) in enumerate(zip(queries, sources, picked)):
        row = query_index[query]
        if row not in candidates:
            candidates[row] = fused_order(scores, row, cfg.depth, cfg.rrf_k)
        positive = positive_scores.get(i) or scores_of(teacher_scores, row, doc)
        labels.append(unit_margins(teacher_scores, row, positive, negatives, candidates[row]))
    kept = np.array([m for label in labels if len(label) >= wanted for m in label[:wanted]], dtype=np.float64)
    stats = {
        "kind": teacher,
        "channels": list(teacher_scores),
        "normalisation": f"min-max per query and channel over the fused candidates (top {cfg.depth} of each "
        "mining channel) and the positive; margins averaged over the channels",
        "positives_rescored": len(rescore),
        "unit_margin_mean": float(kept.mean()) if kept.size else None,
        "unit_margin_wrong_share": float(np.mean(kept < 0)) if kept.size else None,
    }
    return labels, stats


def _rows_with_negatives(
    dataset: Any,
    picked: Sequence[list[int]],
    corpus: Sequence[Any],
    cfg: NegativeConfig,
    labels: Sequence[list[float]] | None = None,
) -> tuple[Any, int]:
    """``(query, positive, negative...[, label])`` rows (``picked``: each row's negatives; ``labels``: its teacher
    margins); rows with fewer negatives than asked are dropped, since a loss needs the same columns in every row.
    Returns the rows and the count dropped."""
    import datasets

    wanted = cfg.num_negatives or 0
    names = ["negative" if i == 0 else f"negative_{i + 1}" for i in range(wanted)]
    rows: dict[str, list[Any]] = {"query": [], "positive": [], **{n: [] for n in names}}
    if labels is not None:
        rows["label"] = []
    dropped = 0
    for i, (query, positive, negatives) in enumerate(zip(dataset["query"], dataset["positive"], picked)):
        if len(negatives) < wanted:
            dropped += 1
            continue
        rows["query"].append(query)
        rows["positive"].append(positive)
        for name, doc in zip(names, negatives):
            rows[name].append(corpus[doc].full_text)
        if labels is not None:
            rows["label"].append(labels[i][:wanted])
    return datasets.Dataset.from_dict(rows), dropped
