"""CSR with a frozen backbone: the sparse autoencoder trained over the backbone's cached embeddings.

With the dense backbone frozen (the sentence-transformers CSR recipe, ``train_csr_nq.py``), CSR training is a
sparse autoencoder over *fixed* vectors: the transformer gives every text the same embedding at every step.
Running it again on every batch, as ``SparseEncoderTrainer`` does, spends all the CPU on a network that does
not change — last round's run made 26 steps in its budget and the head barely moved (nDCG@10 52.6 → 53.1
against MiniLM dense 64.5). So the loop here is ours, and only the loop: the texts are encoded once (the corpus
through the project's embedding cache, which ``bench`` and mining share), and the library's own
``SparseAutoEncoder`` module is trained over those vectors with the library's own loss formulas —
``CSRLoss``'s ``CSRReconstructionLoss`` (L_k, L_4k/8, beta·L_aux) on queries, positives and corpus passages
(the label-free part, which uses the whole corpus) plus gamma times ``SparseMultipleNegativesRankingLoss`` on
the (query, positive) pairs with in-batch negatives. Thousands of steps then take seconds.

The learning rate, the contrastive scale (temperature) and the number of steps are chosen on a validation
part of the training queries (held out by query), by nDCG@10 of those queries over the whole training corpus;
the head is then trained again on every pair with the chosen settings and saved as a normal ``SparseEncoder``
(backbone + autoencoder) that ``bench`` and ``index`` load as before.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Searched on the training validation queries: Adam learning rates for the autoencoder, and the contrastive
#: scale (1 = the library default for dot products; 20 = its advice for cosine-range scores, which a head
#: reconstructing unit-norm MiniLM vectors gives). Four trials of 1,000 steps keep a run of one k within a few
#: minutes on 2 CPU cores (a step costs ~40 ms there: three autoencoder passes with their top-k selections).
LEARNING_RATES = (3e-4, 1e-3)
SCALES = (1.0, 20.0)
#: Steps of one trial, validation every EVAL_EVERY steps; the best step is the step count kept.
MAX_STEPS = 1000
EVAL_EVERY = 100
WARMUP_STEPS = 100


@dataclass
class HeadData:
    """The cached backbone embeddings the head trains on (float32 tensors on the training device).

    ``pairs`` index ``queries`` and ``corpus`` rows: (query row, positive corpus row).
    """

    queries: Any
    corpus: Any
    pairs: list[tuple[int, int]]


@dataclass(frozen=True)
class HeadSettings:
    learning_rate: float
    scale: float
    steps: int
    batch_size: int
    log_every: int = 50


@dataclass
class Trial:
    """One setting tried on validation: nDCG@10 every ``EVAL_EVERY`` steps."""

    learning_rate: float
    scale: float
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def best(self) -> tuple[int, float]:
        return max(self.curve, key=lambda point: (point[1], -point[0]))


def autoencoder(model: Any) -> Any:
    """The model's ``SparseAutoEncoder`` (its last module)."""
    from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

    sae = list(model)[-1]
    if not isinstance(sae, SparseAutoEncoder):
        raise ValueError("not a CSR model: the last module is not a SparseAutoEncoder")
    return sae


def backbone_embed(model: Any, texts: Sequence[str]) -> np.ndarray:
    """What the CSR model's backbone (every module but the autoencoder) gives ``texts``: the head's input."""
    import torch
    from sentence_transformers.util import batch_to_device

    with torch.inference_mode():
        features = batch_to_device(model.tokenize(list(texts)), model.device)
        for module in list(model)[:-1]:
            features = module(features)
        return features["sentence_embedding"].float().cpu().numpy()


def corpus_matrix(dense: Any, docs: Sequence[Any], fingerprint: str, cache: Any, progress: bool) -> np.ndarray:
    """The corpus through the dense backbone, read from the embedding cache when it holds it."""
    if cache is not None:
        return np.asarray(cache.dense(dense, list(docs), fingerprint)[0], dtype=np.float32)
    return np.asarray(dense.encode_document([d.full_text for d in docs], show_progress_bar=progress), np.float32)


def check_backbone(model: Any, texts: Sequence[str], cached: np.ndarray, tolerance: float = 1e-3) -> float:
    """Largest difference between cached vectors and the CSR backbone's own; raise when they are not the same
    input (a base whose dense encoder normalises differently from its sentence-transformers modules)."""
    diff = float(np.max(np.abs(backbone_embed(model, texts) - cached))) if len(texts) else 0.0
    if diff > tolerance:
        raise RuntimeError(f"cached embeddings differ from the CSR backbone's by {diff:.2e}; cannot train over them")
    return diff


def _sample(data: HeadData, rng: np.random.Generator, batch_size: int) -> tuple[list[int], list[int], list[int]]:
    """A batch of (query, positive) rows with distinct queries and positives, and a batch of corpus rows."""
    order = rng.permutation(len(data.pairs))
    seen_q: set[int] = set()
    seen_d: set[int] = set()
    queries, positives = [], []
    for i in order:
        q, d = data.pairs[int(i)]
        if q in seen_q or d in seen_d:
            continue  # in-batch negatives must not be another copy of the positive
        seen_q.add(q)
        seen_d.add(d)
        queries.append(q)
        positives.append(d)
        if len(queries) == batch_size:
            break
    corpus = rng.choice(data.corpus.shape[0], size=min(batch_size, data.corpus.shape[0]), replace=False).tolist()
    return queries, positives, corpus


def _step_loss(sae: Any, loss: Any, data: HeadData, batch: tuple[list[int], list[int], list[int]]) -> Any:
    """CSRLoss on one batch: reconstruction on every column, the contrastive loss on (query, positive)."""
    q, p, c = batch
    outputs = [
        sae({"sentence_embedding": data.queries[q]}),
        sae({"sentence_embedding": data.corpus[p]}),
        sae({"sentence_embedding": data.corpus[c]}),
    ]
    parts = loss.reconstruction_loss.compute_loss_from_embeddings(outputs)
    contrastive = loss.loss.compute_loss_from_embeddings([o["sentence_embedding"] for o in outputs[:2]], None)
    return sum(parts.values()) + loss.gamma * contrastive


def validation_ndcg(sae: Any, queries: Any, corpus: Any, qrels: dict[str, dict[str, int]]) -> float:
    """nDCG@10 of the held-out queries (rows of ``queries``, ids ``"0".."n-1"``) over the corpus rows."""
    import torch

    from hybrid_search.metrics import evaluate

    was_training = sae.training
    sae.eval()
    with torch.inference_mode():
        q = sae({"sentence_embedding": queries})["sentence_embedding"]
        d = sae({"sentence_embedding": corpus})["sentence_embedding"]
        top = torch.topk(q @ d.T, k=min(10, d.shape[0]), dim=1)
    sae.train(was_training)
    run = {
        str(i): {str(int(doc)): float(s) for doc, s in zip(idx, val)}
        for i, (idx, val) in enumerate(zip(top.indices.tolist(), top.values.tolist()))
    }
    return float(evaluate(run, qrels)["nDCG@10"])


def train_head(
    initial: Any,
    model: Any,
    data: HeadData,
    settings: HeadSettings,
    seed: int,
    on_eval: Any = None,
    progress: bool = False,
) -> tuple[Any, list[tuple[int, float]]]:
    """Train a copy of ``initial`` (the untrained autoencoder) for ``settings.steps`` steps.

    ``on_eval(step, sae)`` runs every :data:`EVAL_EVERY` steps and at the end (validation). Returns the trained
    copy and the loss curve ``[(step, loss)]``.
    """
    import torch
    from sentence_transformers.sparse_encoder.losses import CSRLoss, SparseMultipleNegativesRankingLoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sae = copy.deepcopy(initial).train()
    loss = CSRLoss(model, loss=SparseMultipleNegativesRankingLoss(model, scale=settings.scale))
    optimizer = torch.optim.Adam(sae.parameters(), lr=settings.learning_rate)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP_STEPS))
    from tqdm.auto import tqdm

    curve: list[tuple[int, float]] = []
    label = f"csr lr {settings.learning_rate:g} scale {settings.scale:g}"
    for step in tqdm(range(1, settings.steps + 1), desc=label, unit="step", disable=not progress):
        value = _step_loss(sae, loss, data, _sample(data, rng, settings.batch_size))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        warmup.step()
        if step == 1 or step % settings.log_every == 0:
            curve.append((step, float(value.detach())))
        if on_eval is not None and (step % EVAL_EVERY == 0 or step == settings.steps):
            on_eval(step, sae)
    return sae.eval(), curve


def choose_settings(
    initial: Any, model: Any, data: HeadData, validation: tuple[Any, dict[str, dict[str, int]]], cfg: Any
) -> tuple[HeadSettings, list[Trial]]:
    """Try each learning rate and scale on the training pairs; keep the setting and step count whose nDCG@10
    on the held-out training queries is best."""
    queries, qrels = validation
    rates = (cfg.learning_rate,) if cfg.learning_rate is not None else LEARNING_RATES
    steps = cfg.max_steps if cfg.max_steps > 0 else MAX_STEPS
    trials = []
    for rate in rates:
        for scale in SCALES:
            trial = Trial(rate, scale)
            settings = HeadSettings(rate, scale, steps, cfg.batch_size, cfg.logging_steps)
            train_head(
                initial,
                model,
                data,
                settings,
                cfg.seed,
                on_eval=lambda s, sae, t=trial: t.curve.append((s, validation_ndcg(sae, queries, data.corpus, qrels))),
                progress=cfg.progress,
            )
            logger.info("csr lr %g scale %g: best validation nDCG@10 %s", rate, scale, trial.best)
            trials.append(trial)
    best = max(trials, key=lambda t: (t.best[1], -t.best[0]))
    return HeadSettings(best.learning_rate, best.scale, best.best[0], cfg.batch_size, cfg.logging_steps), trials


def split_by_query(pairs: list[tuple[int, int]], size: int, seed: int) -> tuple[list[int], list[int]]:
    """Query rows for training and for validation: ``size`` queries held out whole, at most a tenth."""
    queries = sorted({q for q, _ in pairs})
    size = min(size, len(queries) // 10)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(queries, size=size, replace=False).tolist()) if size > 0 else set()
    return [q for q in queries if q not in held], sorted(held)


def _latents(sae: Any, matrix: np.ndarray, device: str, batch: int = 1024) -> list[Any]:
    """The autoencoder's top-k codes of backbone vectors, as :class:`~hybrid_search.types.SparseVector` rows."""
    import torch

    from hybrid_search.types import SparseVector

    rows: list[Any] = []
    sae.eval()
    with torch.inference_mode():
        for start in range(0, len(matrix), batch):
            codes = sae({"sentence_embedding": torch.as_tensor(matrix[start : start + batch], device=device)})
            for row in codes["sentence_embedding"].float().cpu().numpy():
                nz = np.flatnonzero(row)
                rows.append(SparseVector(nz, row[nz]))
    return rows


def _head_data(model: Any, data: Any, docs: Sequence[Any], corpus: np.ndarray, device: str) -> HeadData:
    """Queries through the backbone, positives as corpus rows. A positive that is not a corpus passage (a mined
    pair's passage less its pseudo-query) is encoded once and added as a row."""
    import torch

    queries = list(dict.fromkeys(data.dataset["query"]))
    q_row = {q: i for i, q in enumerate(queries)}
    d_row: dict[str, int] = {}
    for i, doc in enumerate(docs):
        d_row.setdefault(doc.full_text, i)
    extra = [p for p in dict.fromkeys(data.dataset["positive"]) if p not in d_row]
    d_row.update({text: len(docs) + i for i, text in enumerate(extra)})
    pairs = sorted({(q_row[q], d_row[p]) for q, p in zip(data.dataset["query"], data.dataset["positive"])})
    matrices = [corpus, _embed(model, extra)] if extra else [corpus]
    return HeadData(
        torch.as_tensor(_embed(model, queries), device=device),
        torch.as_tensor(np.concatenate(matrices), device=device),
        pairs,
    )


def _embed(model: Any, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    return np.concatenate([backbone_embed(model, texts[i : i + batch]) for i in range(0, len(texts), batch)])


def _select(data: HeadData, rows: list[int]) -> HeadData:
    keep = set(rows)
    return HeadData(data.queries, data.corpus, [p for p in data.pairs if p[0] in keep])


def _validation(data: HeadData, rows: list[int]) -> tuple[Any, dict[str, dict[str, int]]]:
    qrels: dict[str, dict[str, int]] = {}
    for i, q in enumerate(rows):
        qrels[str(i)] = {str(d): 1 for qq, d in data.pairs if qq == q}
    return data.queries[rows], qrels


def _fit(model: Any, data: HeadData, cfg: Any) -> tuple[HeadSettings, list[Trial], list[tuple[int, float]], int]:
    """Choose the settings on held-out training queries (when there are any), then train on every pair."""
    initial = copy.deepcopy(autoencoder(model))
    train_rows, held = split_by_query(data.pairs, cfg.validation_size, cfg.seed)
    trials: list[Trial] = []
    if held:
        settings, trials = choose_settings(initial, model, _select(data, train_rows), _validation(data, held), cfg)
    else:
        steps = cfg.max_steps if cfg.max_steps > 0 else MAX_STEPS
        settings = HeadSettings(
            cfg.learning_rate or LEARNING_RATES[0], SCALES[1], steps, cfg.batch_size, cfg.logging_steps
        )
    trained, curve = train_head(initial, model, data, settings, cfg.seed, progress=cfg.progress)
    autoencoder(model).load_state_dict(trained.state_dict())
    return settings, trials, curve, len(held)


def _evaluate(model: Any, sae: Any, eval_set: Any, corpus: Any, name: str, cfg: Any, device: str) -> Any:
    from hybrid_search.encoders import SparseEncoder
    from hybrid_search.training.evaluate import evaluate_sparse

    encoder = SparseEncoder(model, name)
    return evaluate_sparse(
        encoder, eval_set, rel_threshold=cfg.rel_threshold, doc_vectors=_latents(sae, corpus, device)
    )


def _eval_corpus(cfg: Any, dense: Any, eval_set: Any, train: tuple[np.ndarray, str], cache: Any) -> Any:
    """The evaluation corpus through the backbone: the training matrix itself when the corpus is the same."""
    if eval_set is None:
        return None
    corpus, fingerprint = train
    if fingerprint == eval_set.fingerprint():
        return corpus
    return corpus_matrix(dense, list(eval_set.corpus.values()), eval_set.fingerprint(), cache, cfg.progress)


def _training_report(
    settings: HeadSettings, trials: list[Trial], curve: list[Any], extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "trainer": "SparseAutoEncoder trained over cached backbone embeddings with CSRLoss's formulas",
        "loss": "CSRLoss(SparseMultipleNegativesRankingLoss) over cached backbone embeddings",
        "learning_rate": settings.learning_rate,
        "static_learning_rate": None,
        "contrastive_scale": settings.scale,
        "epochs": None,
        "max_seq_length": None,
        "precision": "fp32",
        "steps": settings.steps,
        "batch_size": settings.batch_size,
        "first_loss": curve[0][1] if curve else None,
        "last_loss": curve[-1][1] if curve else None,
        "losses": curve,
        "selection": [{"learning_rate": t.learning_rate, "scale": t.scale, "ndcg10": t.curve} for t in trials],
        "validation_ndcg10_after": max((t.best[1] for t in trials), default=None),
        "resumed_from": None,
        **extra,
    }


def finetune_csr_head(cfg: Any, *, device: str, cache: Any = None) -> dict[str, Any]:
    """``hybrid-search finetune --arch csr`` with a frozen backbone: see the module docstring.

    ``--resume`` starts again: the whole loop takes seconds once the corpus vectors are cached.

    Args:
        cfg: a :class:`~hybrid_search.training.FinetuneConfig`.
        device: the resolved torch device.
        cache: the embedding cache for the corpus vectors (see :func:`hybrid_search.training.finetune`).
    """
    import importlib

    from hybrid_search.encoders import DenseEncoder

    ft = importlib.import_module("hybrid_search.training.finetune")
    started = time.perf_counter()
    eval_set, eval_queries, data = ft._prepare_run(cfg)
    out, _, _ = ft._open_output(cfg)
    docs, fingerprint = ft._mining_corpus(data, eval_set)
    model = ft._base_model(cfg, data, device)
    dense = DenseEncoder.load(cfg.base, device=device, backend="torch")
    corpus = corpus_matrix(dense, docs, fingerprint, cache, cfg.progress)
    backbone_diff = check_backbone(model, [d.full_text for d in docs[:4]], corpus[:4])
    head = _head_data(model, data, docs, corpus, device)
    eval_corpus = _eval_corpus(cfg, dense, eval_set, (corpus, fingerprint), cache)
    before = _evaluate(model, autoencoder(model), eval_set, eval_corpus, cfg.base, cfg, device) if eval_set else None

    train_started = time.perf_counter()
    settings, trials, curve, n_held = _fit(model, head, cfg)
    train_seconds = time.perf_counter() - train_started
    reloaded, reload_diff = ft._save_and_reload(model, out, data.dataset, device)
    after = None
    if eval_set is not None:
        after = _evaluate(reloaded.model, autoencoder(reloaded.model), eval_set, eval_corpus, cfg.out, cfg, device)
    training = _training_report(
        settings,
        trials,
        curve,
        {
            "seconds": train_seconds,
            "device": device,
            "validation_queries": n_held,
            "pairs": len(head.pairs),
            "corpus_rows": int(head.corpus.shape[0]),
            "backbone_max_abs_diff": backbone_diff,
            "reload_max_abs_diff": reload_diff,
        },
    )
    outcome = ft.Outcome(training, before.to_dict() if before else None, after.to_dict() if after else None)
    return ft._write_report(out, ft._report(cfg, out, data, (data.dataset, None), eval_queries, outcome, started))
