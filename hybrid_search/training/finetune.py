"""Fine-tune a sparse encoder end to end: data → model → evaluate → train → save → evaluate → model card.

:func:`finetune` is what ``hybrid-search finetune`` runs. The output folder holds the model (loadable with
``SparseEncoder.load(folder)`` and by every index command), ``README.md`` (the model card with the results),
``finetune.json`` (the same results, machine-readable) and ``checkpoints/`` (for ``resume``).

Example:
    >>> from hybrid_search.training import FinetuneConfig, finetune
    >>> report = finetune(FinetuneConfig(  # doctest: +SKIP
    ...     arch="inference-free", base="splade-tiny", train="corpus.jsonl", out="models/if-domain",
    ...     eval="../shared/data/msmarco-dl19-5k"))
    >>> report["before"]["metrics"]["nDCG@10"], report["after"]["metrics"]["nDCG@10"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.training.build import (
    DEFAULTS,
    MLM_ARCHS,
    build_loss,
    build_model,
    check_label_shape,
    recipe,
    static_embedding_pattern,
)
from hybrid_search.training.data import TrainingData, load_training_data
from hybrid_search.training.evaluate import SparseEvalResult, evaluate_sparse
from hybrid_search.training.mining import MiningConfig
from hybrid_search.training.negatives import NegativeConfig

logger = logging.getLogger(__name__)

REPORT_FILE = "finetune.json"
STATE_FILE = "finetune_state.json"
CHECKPOINTS = "checkpoints"


@dataclass
class FinetuneConfig:
    """Everything one fine-tuning run needs; the CLI flags map onto these fields one to one.

    ``None`` for ``learning_rate``, ``static_learning_rate``, ``max_seq_length`` and the regularizer weights
    means the architecture's default (:func:`hybrid_search.training.build.recipe`). ``device`` ``None`` means
    ``$HYBRID_SEARCH_DEVICE`` or ``auto`` (:func:`hybrid_search.device.resolve_device`); ``precision``
    ``auto`` trains in bf16 (or fp16) mixed precision on a CUDA GPU and in fp32 elsewhere. ``teacher``
    ``"hybrid"`` distils from the mining channels' margins (:mod:`hybrid_search.training.teacher`), ``"hybrid+bm25"``
    from the same with a BM25 channel added; ``None`` trains contrastively.
    """

    arch: str
    base: str
    train: str
    out: str
    eval: str | None = None
    eval_split: str = "test"
    rel_threshold: int = 1
    columns: str | dict[str, str] | None = None
    self_supervised: bool | None = None
    train_split: str = "train"
    min_grade: int = 1
    max_examples: int | None = None
    pseudo_query_ratio: float = 0.0
    mining: MiningConfig = field(default_factory=MiningConfig)
    validation_size: int = 0
    epochs: float | None = None
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float | None = None
    static_learning_rate: float | None = None
    warmup_ratio: float = 0.1
    max_seq_length: int | None = None
    query_regularizer: float | None = None
    document_regularizer: float | None = None
    distill: str = "margin-mse"
    teacher: str | None = None
    csr_k: int = 256
    csr_hidden_dim: int | None = None
    train_backbone: bool = False
    idf_corpus: str | None = None
    seed: int = 42
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 10
    resume: bool | str = False
    overwrite: bool = False
    progress: bool = True
    device: str | None = None
    precision: str = "auto"
    negatives: NegativeConfig = field(default_factory=lambda: NegativeConfig(num_negatives=None))
    rerank_top_n: int = 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneConfig:
        """The config a run recorded (``finetune.json``'s ``config``, :meth:`to_dict`'s output); keys this version
        does not know are ignored and missing ones take their defaults, so older runs still load."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("mining"), Mapping):
            values["mining"] = MiningConfig(**values["mining"])
        if isinstance(values.get("negatives"), Mapping):
            values["negatives"] = NegativeConfig(**values["negatives"])
        return cls(**values)


def rebuild_start(cfg: FinetuneConfig, device: str = "cpu") -> tuple[Any, Any]:
    """The model a run of ``cfg`` started from and its evaluation set (``None`` without ``cfg.eval``), rebuilt as
    the run built them. A fine-tune does not save its start, and an inference-free start is not a file anywhere:
    its query weights are the IDF of the training corpus."""
    eval_set, _, data = _prepare_run(cfg)
    return _base_model(cfg, data, device), eval_set


def _prepare_output(cfg: FinetuneConfig) -> Path:
    out = Path(cfg.out).expanduser()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; pass a folder")
    busy = out.is_dir() and any(out.iterdir())
    if busy and not cfg.resume:
        if not cfg.overwrite:
            raise FileExistsError(
                f"output folder {out} is not empty; pass --resume to continue its training from the last "
                f"checkpoint, or --overwrite to start again"
            )
        if not (out / STATE_FILE).exists() and not (out / REPORT_FILE).exists():
            raise FileExistsError(f"refusing to --overwrite {out}: it does not look like a fine-tuning output folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _checkpoint(out: Path, resume: bool | str) -> str | None:
    if not resume:
        return None
    if isinstance(resume, str):
        path = Path(resume).expanduser()
        if not (path / "trainer_state.json").is_file():
            raise ValueError(f"--resume {resume}: not a training checkpoint (no trainer_state.json)")
        return str(path)
    from transformers.trainer_utils import get_last_checkpoint

    folder = out / CHECKPOINTS
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last is None:
        raise ValueError(f"--resume: no checkpoint in {folder} to resume from; run without --resume to start")
    return last


def _load_state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save_state(out: Path, state: dict[str, Any]) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.replace(out / STATE_FILE)


def _idf_texts(cfg: FinetuneConfig, data: TrainingData) -> list[str]:
    """Inference-free query weights start from the IDF of the corpus that will be searched, when known."""
    if cfg.idf_corpus:
        from hybrid_search.corpus import CorpusReader

        return [d.full_text for d in CorpusReader(cfg.idf_corpus)]
    return data.documents or list(dict.fromkeys(data.dataset["positive"]))


def _split_validation(rows: Any, size: int, seed: int) -> tuple[Any, Any | None]:
    """Hold out ``size`` rows for the validation loss, but never more than a tenth of a small data set."""
    size = min(size, len(rows) // 10)
    if size <= 0:
        return rows, None
    split = rows.train_test_split(test_size=size, seed=seed, shuffle=True)
    return split["train"], split["test"]


def _loss_name(loss: Any) -> str:
    inner = getattr(loss, "loss", None)
    return f"{type(loss).__name__}({type(inner).__name__})" if inner is not None else type(loss).__name__


def _train_losses(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]


def trainer_outcome(result: Any, trainer: Any, device: str, precision: str) -> dict[str, Any]:
    """What every run's report says of its trainer: device, precision, steps and the loss curve.

    Shared by the sparse and the cross-encoder runs, so both reports read the trainer the same way.
    """
    losses = _train_losses(trainer.state.log_history)
    return {
        "device": device,
        "precision": {k: v for k, v in trainer_precision(device, precision).items() if v} or "fp32",
        "steps": int(result.global_step),
        "first_loss": losses[0][1] if losses else None,
        "last_loss": losses[-1][1] if losses else None,
        "losses": losses,
        "train_loss": float(result.training_loss),
    }


def reload_difference(trained: Any, reloaded: Any, dataset: Any, n: int = 4) -> float:
    """Largest absolute difference between the vectors of the trained and the reloaded model.

    A few training queries and passages are encoded on both routes; 0 means the saved folder is a faithful copy.
    """
    import torch

    queries, passages = dataset["query"][:n], dataset["positive"][:n]
    diff = 0.0
    for method, texts in (("encode_query", queries), ("encode_document", passages)):
        a = getattr(trained, method)(texts, convert_to_tensor=True, convert_to_sparse_tensor=False)
        b = getattr(reloaded, method)(texts, convert_to_tensor=True, convert_to_sparse_tensor=False)
        diff = max(diff, float(torch.max(torch.abs(a.float().cpu() - b.float().cpu()))))
    return diff


def _progress_callback(enabled: bool) -> Any:
    """A training progress bar on stderr with the running loss (the Trainer's own writes logs to stdout)."""
    from transformers import TrainerCallback

    class ProgressBar(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if enabled:
                import sys

                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=state.max_steps,
                    initial=state.global_step,
                    desc="training",
                    unit="step",
                    file=sys.stderr,
                    dynamic_ncols=True,
                )

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                logger.info("step %d: %s", state.global_step, {k: v for k, v in logs.items() if "loss" in k})
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return ProgressBar()


def evaluate_model(
    model: Any, dataset: Any, *, name: str, rel_threshold: int, progress: bool, cache: Any = None
) -> SparseEvalResult:
    """Judge ``model`` on ``dataset``; with an embedding ``cache`` its corpus vectors are read or stored there
    (keyed by the model's weights, so the benchmark of the same model reuses them)."""
    from hybrid_search.encoders import SparseEncoder

    encoder = model if isinstance(model, SparseEncoder) else SparseEncoder(model, name)
    doc_vectors = None
    if cache is not None:
        doc_vectors, _ = cache.sparse(encoder, list(dataset.corpus.values()), dataset.fingerprint())
    return evaluate_sparse(encoder, dataset, rel_threshold=rel_threshold, progress=progress, doc_vectors=doc_vectors)


def trainer_precision(device: str, precision: str) -> dict[str, bool]:
    """Mixed-precision flags for the trainer: bf16 where the GPU has it, else fp16 on CUDA; fp32 elsewhere.

    ``precision`` ``auto`` picks that way; ``fp32``, ``bf16`` or ``fp16`` force one (bf16/fp16 need CUDA:
    PyTorch's CPU autocast is slower than fp32 for these small models and changes the results).
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")
    cuda = device.startswith("cuda")
    if precision in ("bf16", "fp16") and not cuda:
        raise ValueError(f"--precision {precision} needs a CUDA device; this run is on {device}")
    if precision == "auto":
        if not cuda:
            return {}
        import torch

        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _device_arguments(device: str, precision: str) -> dict[str, Any]:
    """Trainer arguments that place training on ``device`` (the Trainer itself would pick CUDA when present)."""
    return {"use_cpu": device == "cpu", **trainer_precision(device, precision)}


def _mining_corpus(data: TrainingData, eval_set: Any) -> tuple[list[Any], str]:
    """The training corpus as documents and a content fingerprint. When it is the evaluation corpus (SciFact's
    train and test share one), the evaluation set's own documents and fingerprint are used, so the embedding
    cache serves mining, evaluation and the benchmark from one entry."""
    import hashlib

    from hybrid_search.types import Document

    texts = data.documents or list(dict.fromkeys(data.dataset["positive"]))
    if eval_set is not None and [d.full_text for d in eval_set.corpus.values()] == texts:
        return list(eval_set.corpus.values()), eval_set.fingerprint()
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    return [Document(id=str(i), text=t) for i, t in enumerate(texts)], digest


def _with_negatives(
    cfg: FinetuneConfig, data: TrainingData, eval_set: Any, out: Path, state: dict[str, Any], device: str, cache: Any
) -> tuple[Any, dict[str, Any] | None]:
    """The training rows, with mined hard negatives when asked for and the data has none of its own.

    The mined rows are saved in ``OUT/train-data`` so that ``--resume`` trains on exactly the same rows.
    """
    import datasets

    from hybrid_search.training.negatives import mine_hard_negatives

    n = cfg.negatives.num_negatives or 0  # None was resolved to the recipe's count before this point
    if n <= 0 or data.negative_columns or data.has_label:
        return data.dataset, None
    saved = out / "train-data"
    if state.get("negatives") and saved.is_dir():
        return datasets.load_from_disk(str(saved)), state["negatives"]
    docs, fingerprint = _mining_corpus(data, eval_set)
    dataset, stats = mine_hard_negatives(
        data.dataset,
        docs,
        fingerprint,
        cfg.negatives,
        device=device,
        progress=cfg.progress,
        cache=cache,
        sources=data.sources,
        teacher=cfg.teacher,
    )
    if len(dataset) == 0:
        raise ValueError("hard-negative mining left no training row: lower --hard-negatives or widen --mine-window")
    dataset.save_to_disk(str(saved))
    state["negatives"] = stats
    _save_state(out, state)
    return dataset, stats


def _prepare_run(cfg: FinetuneConfig) -> tuple[Any, list[str], TrainingData]:
    """The evaluation set (or None), its queries, and the training data with those queries kept out."""
    eval_set = None
    if cfg.eval:
        from hybrid_search.dataset import load_dataset

        eval_set = load_dataset(cfg.eval, split=cfg.eval_split)
    eval_queries = [eval_set.queries[q] for q in eval_set.judged_queries if q in eval_set.queries] if eval_set else []
    data = load_training_data(
        cfg.train,
        columns=cfg.columns,
        self_supervised=cfg.self_supervised,
        split=cfg.train_split,
        eval_queries=eval_queries,
        mining=cfg.mining,
        min_grade=cfg.min_grade,
        max_examples=cfg.max_examples,
        seed=cfg.seed,
        pseudo_query_ratio=cfg.pseudo_query_ratio,
    )
    logger.info("training data: %s", data.summary())
    return eval_set, eval_queries, data


def _open_output(cfg: FinetuneConfig) -> tuple[Path, str | None, dict[str, Any]]:
    """The output folder, the checkpoint to resume from, and the run state (reset when the setup changed)."""
    out = _prepare_output(cfg)
    resume_from = _checkpoint(out, cfg.resume) if cfg.resume else None
    state = _load_state(out) if cfg.resume else {}
    # Results computed before training are reused on resume only when they came from the same setup.
    key: dict[str, Any] = {
        "arch": cfg.arch,
        "base": cfg.base,
        "eval": cfg.eval,
        "eval_split": cfg.eval_split,
        "rel_threshold": cfg.rel_threshold,
        "train": cfg.train,
        "train_split": cfg.train_split,
        "validation_size": cfg.validation_size,
        "negatives": cfg.negatives.to_dict(),
    }
    if cfg.teacher:  # only then, so that resuming a run started before teachers existed keeps its state
        key["teacher"] = cfg.teacher
    if cfg.pseudo_query_ratio:  # likewise
        key["pseudo_query_ratio"] = cfg.pseudo_query_ratio
    if state.get("key") != key:
        state = {"key": key}
    _save_state(out, state)
    return out, resume_from, state


def _training_arguments(
    cfg: FinetuneConfig, out: Path, n_examples: int, learning_rate: float, device: str, args_class: Any, **extra: Any
) -> Any:
    """The trainer arguments shared by the sparse and the cross-encoder runs."""
    steps_per_epoch = math.ceil(n_examples / cfg.batch_size)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(steps_per_epoch * (cfg.epochs or 1.0)))
    return args_class(
        output_dir=str(out / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=learning_rate,
        warmup_steps=cfg.warmup_ratio,
        save_strategy="steps",
        save_steps=max(1, min(cfg.save_steps, total_steps)),
        save_total_limit=cfg.save_total_limit,
        # The validation loss is computed once before and once after training: periodic evaluation would
        # cost more CPU than it tells on runs this short.
        eval_strategy="no",
        logging_steps=max(1, min(cfg.logging_steps, total_steps)),
        logging_first_step=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,  # replaced by _progress_callback, which keeps stdout clean
        dataloader_num_workers=0,
        **_device_arguments(device, cfg.precision),
        **extra,
    )


def _run_trainer(
    trainer: Any, validation_set: Any, state: dict[str, Any], out: Path, resume_from: str | None
) -> tuple[Any, float, float | None, float | None]:
    """Train (resuming when asked); return the result, the training seconds and the validation loss before/after."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    validation_before = state.get("validation_loss_before")
    if validation_set is not None and validation_before is None:
        validation_before = trainer.evaluate()["eval_loss"]
        state["validation_loss_before"] = validation_before
        _save_state(out, state)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started
    validation_after = trainer.evaluate()["eval_loss"] if validation_set is not None else None
    return result, seconds, validation_before, validation_after


@dataclass
class Outcome:
    """What one run produced, for :func:`_report`: the training part, the before/after results (as dicts), the
    hard-negative counts and the distillation teacher (how its margins were made and scaled)."""

    training: dict[str, Any]
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    negatives: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None


def _p_value(before: dict[str, Any] | None, after: dict[str, Any] | None) -> float | None:
    if not (before and after and before["extra"].get("per_query_ndcg10") and after["extra"].get("per_query_ndcg10")):
        return None
    from hybrid_search.metrics import paired_significance

    return paired_significance(before["extra"]["per_query_ndcg10"], after["extra"]["per_query_ndcg10"])


def _report(
    cfg: FinetuneConfig,
    out: Path,
    data: TrainingData,
    sets: tuple[Any, Any],
    eval_queries: list[str],
    outcome: Outcome,
    started: float,
) -> dict[str, Any]:
    """The run's report (``sets``: the training and the validation rows, the latter ``None`` when none)."""
    train_set, validation_set = sets
    return {
        "output": str(out.resolve()),
        "config": cfg.to_dict(),
        "data": {
            "source": data.source,
            "kind": data.kind,
            "split": cfg.train_split if data.kind == "beir-qrels" else None,
            "examples": len(train_set),
            "pseudo_queries": data.pseudo_queries,
            "validation": len(validation_set) if validation_set is not None else 0,
            "columns": list(train_set.column_names),
            "dropped": data.dropped,
        },
        "hard_negatives": outcome.negatives,
        "teacher": outcome.teacher,
        "eval_guard": len(eval_queries),
        "training": outcome.training,
        "before": outcome.before,
        "after": outcome.after,
        "ndcg10_p_value": _p_value(outcome.before, outcome.after),
        "seconds": time.perf_counter() - started,
    }


def _write_report(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    from hybrid_search.training.card import write_model_card

    write_model_card(out, report)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


def with_recipe(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with the architecture's epochs and number of hard negatives where it leaves them open."""
    from dataclasses import replace

    defaults = DEFAULTS[cfg.arch]
    negatives = cfg.negatives
    if negatives.num_negatives is None:
        negatives = replace(negatives, num_negatives=defaults.num_negatives)
    return replace(cfg, epochs=defaults.epochs if cfg.epochs is None else cfg.epochs, negatives=negatives)


def finetune(cfg: FinetuneConfig, *, cache: Any = None) -> dict[str, Any]:
    """Run one fine-tuning job; return the report that is also written to ``OUT/finetune.json``.

    Args:
        cfg: the run's settings.
        cache: an embedding cache (``sparse(encoder, docs, fingerprint)`` / ``dense(...)``, as
            ``pipelines.embedding_cache.EmbeddingCache``) for the corpus vectors of the models that do not
            change: the mining teacher and the base model's evaluation. ``None`` encodes every time.

    Raises:
        ValueError: bad training data (see :class:`~hybrid_search.training.data.TrainingDataError`), an unknown
            architecture, an unavailable device, or nothing to resume from.
        FileExistsError: ``out`` holds something and neither ``resume`` nor ``overwrite`` was given.
    """
    from hybrid_search.device import resolve_device

    if cfg.arch not in DEFAULTS:
        raise ValueError(f"unknown architecture {cfg.arch!r}; choose one of {', '.join(DEFAULTS)}")
    _check_teacher(cfg)
    device = resolve_device(cfg.device)
    trainer_precision(device, cfg.precision)  # a bad --precision fails before any work
    cfg = with_recipe(cfg)
    if cfg.arch == "cross-encoder":
        from hybrid_search.training.crossencoder import finetune_cross_encoder

        return finetune_cross_encoder(cfg, device=device, cache=cache)
    if cfg.arch == "csr" and not cfg.train_backbone:
        from hybrid_search.training.csr import finetune_csr_head

        return finetune_csr_head(cfg, device=device, cache=cache)
    return _finetune_sparse(cfg, device=device, cache=cache)


def _check_teacher(cfg: FinetuneConfig) -> None:
    """Refuse a teacher the run cannot use, before any work."""
    from hybrid_search.training.teacher import check_teacher_name

    if cfg.teacher is None:
        return
    check_teacher_name(cfg.teacher)
    if cfg.arch not in MLM_ARCHS:
        raise ValueError(f"--teacher needs --arch splade or inference-free (not {cfg.arch})")
    if cfg.distill != "margin-mse":
        raise ValueError("--teacher gives margins, one per negative: it needs --distill margin-mse")
    if cfg.negatives.num_negatives == 0:
        raise ValueError(f"--teacher {cfg.teacher} labels mined hard negatives: it needs --hard-negatives >= 1")


def _teacher_rows(
    model: Any, sets: tuple[Any, Any], negatives: dict[str, Any], state: dict[str, Any], out: Path
) -> tuple[Any, Any, dict[str, Any]]:
    """The training and validation rows with their teacher margins scaled into the base student's units.

    The scale is fitted once, on the training rows only (never the held-out ones), with the base model at its
    training length (:func:`hybrid_search.training.teacher.fit_scale`), and kept in the run state for ``--resume``.
    """
    from hybrid_search.training.teacher import fit_scale, scale_labels, student_margins

    train_set, validation_set = sets
    fit = state.get("teacher_fit")
    if fit is None:
        columns = [c for c in train_set.column_names if c.startswith("negative")]
        started = time.perf_counter()
        student = student_margins(model, train_set, columns)
        fit = {**fit_scale(student, np.asarray(train_set["label"])), "seconds": round(time.perf_counter() - started, 1)}
        state["teacher_fit"] = fit
        _save_state(out, state)
    logger.info("teacher margins scaled by %.3f (fitted on %d training margins)", fit["scale"], fit["margins"])
    scaled = scale_labels(train_set, fit["scale"])
    held_out = scale_labels(validation_set, fit["scale"]) if validation_set is not None else None
    return scaled, held_out, {**negatives.get("teacher", {}), "loss": "SparseMarginMSELoss", "fit": fit}


def _base_model(cfg: FinetuneConfig, data: TrainingData, device: str) -> Any:
    from transformers import set_seed

    set_seed(cfg.seed)  # a CSR autoencoder starts random: the "before" figures must not change between runs
    return build_model(
        cfg.arch,
        cfg.base,
        idf_texts=_idf_texts(cfg, data) if cfg.arch == "inference-free" else None,
        csr_k=cfg.csr_k,
        csr_hidden_dim=cfg.csr_hidden_dim,
        train_backbone=cfg.train_backbone,
        device=device,
    )


def _evaluate_before(
    cfg: FinetuneConfig, model: Any, eval_set: Any, state: dict[str, Any], out: Path, cache: Any
) -> Any:
    """The base model on the evaluation set (from the state on resume)."""
    if eval_set is None:
        return None
    if state.get("before"):
        return SparseEvalResult.from_dict(state["before"])
    logger.info("evaluating the base model on %s", eval_set.name)
    before = evaluate_model(
        model,
        eval_set,
        name=cfg.base,
        rel_threshold=cfg.rel_threshold,
        progress=cfg.progress,
        cache=cache if cfg.arch != "csr" else None,
    )
    state["before"] = before.to_dict()
    _save_state(out, state)
    return before


def validation_ndcg(
    model: Any, name: str, validation: Any, docs: list[Any], cache: Any, progress: bool
) -> float | None:
    """nDCG@10 of the held-out training queries over the training corpus: what recipes are compared by (the
    validation loss can fall while retrieval does not move). The corpus vectors go through ``cache``."""
    if validation is None or not docs:
        return None
    from hybrid_search.training.evaluate import validation_dataset

    dataset = validation_dataset(validation, docs)
    if not dataset.judged_queries:
        return None
    return float(
        evaluate_model(model, dataset, name=name, rel_threshold=1, progress=progress, cache=cache).metrics["nDCG@10"]
    )


def _sparse_trainer(
    cfg: FinetuneConfig, model: Any, sets: tuple[Any, Any], loss: Any, out: Path, device: str
) -> tuple[Any, dict[str, Any]]:
    """The ``SparseEncoderTrainer`` and the learning rates it uses (per-parameter for inference-free)."""
    from sentence_transformers import SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    train_set, validation_set = sets
    defaults = recipe(cfg.arch, model)
    learning_rate = cfg.learning_rate if cfg.learning_rate is not None else defaults.learning_rate
    static_lr = None
    router_mapping: dict[str, str] = {}
    lr_mapping: dict[str, float] = {}
    if cfg.arch == "inference-free":
        static_lr = cfg.static_learning_rate if cfg.static_learning_rate is not None else defaults.static_learning_rate
        router_mapping = {c: ("query" if c == "query" else "document") for c in train_set.column_names if c != "label"}
        lr_mapping = {static_embedding_pattern(model): float(static_lr)} if static_lr is not None else {}
    args = _training_arguments(
        cfg,
        out,
        len(train_set),
        learning_rate,
        device,
        SparseEncoderTrainingArguments,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # in-batch negatives must not be copies of the positive
        router_mapping=router_mapping,
        learning_rate_mapping=lr_mapping,
    )
    trainer = SparseEncoderTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        loss=loss,
        callbacks=[_progress_callback(cfg.progress)],
    )
    return trainer, {"learning_rate": learning_rate, "static_learning_rate": static_lr}


def _save_and_reload(model: Any, out: Path, rows: Any, device: str) -> tuple[Any, float]:
    """Save the model and load the folder back, as indexes will; refuse a folder that encodes differently."""
    from hybrid_search.encoders import SparseEncoder

    model.save_pretrained(str(out))
    reloaded = SparseEncoder.load(str(out.resolve()))
    reloaded.model.to(device)
    diff = reload_difference(model, reloaded.model, rows)
    if diff > 1e-4:
        raise RuntimeError(f"the saved model in {out} encodes differently from the trained one (max abs diff {diff})")
    return reloaded, diff


def _finetune_sparse(cfg: FinetuneConfig, *, device: str, cache: Any) -> dict[str, Any]:
    """Mine, evaluate the base, train with ``SparseEncoderTrainer``, save, reload, evaluate, report."""
    started = time.perf_counter()
    eval_set, eval_queries, data = _prepare_run(cfg)
    if cfg.teacher and (data.negative_columns or data.has_label):
        raise ValueError(
            f"--teacher {cfg.teacher} labels the negatives it mines: the training data must not bring negative or "
            "label columns of its own"
        )
    if data.has_label:
        check_label_shape(data.dataset["label"][:1], len(data.negative_columns), cfg.distill)
    # The output folder is touched only once the data is known to be usable.
    out, resume_from, state = _open_output(cfg)
    rows, negatives = _with_negatives(cfg, data, eval_set, out, state, device, cache)
    train_set, validation_set = _split_validation(rows, cfg.validation_size, cfg.seed)
    docs = _mining_corpus(data, eval_set)[0] if validation_set is not None else []
    model = _base_model(cfg, data, device)
    before = _evaluate_before(cfg, model, eval_set, state, out, cache)
    if "validation_ndcg10_before" not in state:
        state["validation_ndcg10_before"] = validation_ndcg(model, cfg.base, validation_set, docs, cache, cfg.progress)
        _save_state(out, state)

    # Training reads truncated passages (the cost of the MLM head grows with length); the saved model keeps
    # the base model's own length for indexing and search.
    full_length = model.max_seq_length
    train_length = cfg.max_seq_length or recipe(cfg.arch, model).max_seq_length
    if train_length and full_length and train_length < full_length:
        model.max_seq_length = train_length
    teacher = None
    if cfg.teacher:  # the base student's margins, at the training length, fix the teacher's scale
        train_set, validation_set, teacher = _teacher_rows(
            model, (train_set, validation_set), negatives or {}, state, out
        )
    loss = build_loss(
        cfg.arch,
        model,
        label=data.has_label or teacher is not None,
        distill=cfg.distill,
        query_regularizer=cfg.query_regularizer,
        document_regularizer=cfg.document_regularizer,
    )
    trainer, rates = _sparse_trainer(cfg, model, (train_set, validation_set), loss, out, device)
    result, train_seconds, validation_before, validation_after = _run_trainer(
        trainer, validation_set, state, out, resume_from
    )
    model.max_seq_length = full_length
    # Judge the saved folder, not the object in memory: that is what indexes will load.
    reloaded, reload_diff = _save_and_reload(model, out, train_set, device)
    reloaded.name = cfg.out  # the name `bench --sparse OUT` gives it: the two share cached vectors
    after = None
    if eval_set is not None:
        logger.info("evaluating the fine-tuned model on %s", eval_set.name)
        after = evaluate_model(
            reloaded, eval_set, name=cfg.out, rel_threshold=cfg.rel_threshold, progress=cfg.progress, cache=cache
        )
    training = {
        "loss": _loss_name(loss),
        **rates,
        "epochs": cfg.epochs,
        "max_seq_length": train_length,
        "seconds": train_seconds,
        **trainer_outcome(result, trainer, device, cfg.precision),
        "validation_loss_before": validation_before,
        "validation_loss_after": validation_after,
        "validation_ndcg10_before": state["validation_ndcg10_before"],
        "validation_ndcg10_after": validation_ndcg(reloaded, cfg.out, validation_set, docs, cache, cfg.progress),
        "resumed_from": resume_from,
        "reload_max_abs_diff": reload_diff,
    }
    outcome = Outcome(
        training, before.to_dict() if before else None, after.to_dict() if after else None, negatives, teacher
    )
    return _write_report(out, _report(cfg, out, data, (train_set, validation_set), eval_queries, outcome, started))
