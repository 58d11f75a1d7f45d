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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hybrid_search.training.build import (
    DEFAULTS,
    build_loss,
    build_model,
    check_label_shape,
    static_embedding_pattern,
)
from hybrid_search.training.data import TrainingData, load_training_data
from hybrid_search.training.evaluate import SparseEvalResult, evaluate_sparse
from hybrid_search.training.mining import MiningConfig

logger = logging.getLogger(__name__)

REPORT_FILE = "finetune.json"
STATE_FILE = "finetune_state.json"
CHECKPOINTS = "checkpoints"


@dataclass
class FinetuneConfig:
    """Everything one fine-tuning run needs; the CLI flags map onto these fields one to one.

    ``None`` for ``learning_rate``, ``static_learning_rate`` and the regularizer weights means the
    architecture's default (:data:`hybrid_search.training.build.DEFAULTS`).
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
    mining: MiningConfig = field(default_factory=MiningConfig)
    validation_size: int = 0
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 32
    learning_rate: float | None = None
    static_learning_rate: float | None = None
    warmup_ratio: float = 0.1
    max_seq_length: int = 128
    query_regularizer: float | None = None
    document_regularizer: float | None = None
    distill: str = "margin-mse"
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _split_validation(data: TrainingData, size: int, seed: int) -> tuple[Any, Any | None]:
    if size <= 0 or len(data) < 2 * size:
        return data.dataset, None
    split = data.dataset.train_test_split(test_size=size, seed=seed, shuffle=True)
    return split["train"], split["test"]


def _loss_name(loss: Any) -> str:
    inner = getattr(loss, "loss", None)
    return f"{type(loss).__name__}({type(inner).__name__})" if inner is not None else type(loss).__name__


def _train_losses(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(int(entry["step"]), float(entry["loss"])) for entry in log_history if "loss" in entry]


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

                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                                file=sys.stderr, dynamic_ncols=True)

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


def evaluate_model(model: Any, dataset: Any, *, name: str, rel_threshold: int, progress: bool) -> SparseEvalResult:
    from hybrid_search.encoders import SparseEncoder

    encoder = model if isinstance(model, SparseEncoder) else SparseEncoder(model, name)
    return evaluate_sparse(encoder, dataset, rel_threshold=rel_threshold, progress=progress)


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run one fine-tuning job; return the report that is also written to ``OUT/finetune.json``.

    Raises:
        ValueError: bad training data (see :class:`~hybrid_search.training.data.TrainingDataError`), an unknown
            architecture, or nothing to resume from.
        FileExistsError: ``out`` holds something and neither ``resume`` nor ``overwrite`` was given.
    """
    from sentence_transformers import (
        SparseEncoderTrainer,
        SparseEncoderTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers

    from hybrid_search.encoders import SparseEncoder

    if cfg.arch not in DEFAULTS:
        raise ValueError(f"unknown architecture {cfg.arch!r}; choose one of {', '.join(DEFAULTS)}")
    started = time.perf_counter()
    eval_set = None
    if cfg.eval:
        from hybrid_search.evaluation import load_dataset

        eval_set = load_dataset(cfg.eval, split=cfg.eval_split)
    eval_queries = list(eval_set.queries.values()) if eval_set else []

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
    )
    logger.info("training data: %s", data.summary())
    if data.has_label:
        check_label_shape(data.dataset["label"][:1], len(data.negative_columns), cfg.distill)
    train_set, validation_set = _split_validation(data, cfg.validation_size, cfg.seed)

    # The output folder is touched only once the data is known to be usable.
    out = _prepare_output(cfg)
    resume_from = _checkpoint(out, cfg.resume) if cfg.resume else None
    state = _load_state(out) if cfg.resume else {}
    # Results computed before training are reused on resume only when they came from the same setup.
    key = {"arch": cfg.arch, "base": cfg.base, "eval": cfg.eval, "eval_split": cfg.eval_split,
           "rel_threshold": cfg.rel_threshold, "train": cfg.train, "validation_size": cfg.validation_size}
    if state.get("key") != key:
        state = {"key": key}
    _save_state(out, state)

    defaults = DEFAULTS[cfg.arch]
    from transformers import set_seed

    set_seed(cfg.seed)  # a CSR autoencoder starts random: the "before" figures must not change between runs
    model = build_model(
        cfg.arch,
        cfg.base,
        idf_texts=_idf_texts(cfg, data) if cfg.arch == "inference-free" else None,
        csr_k=cfg.csr_k,
        csr_hidden_dim=cfg.csr_hidden_dim,
        train_backbone=cfg.train_backbone,
    )

    before = None
    if eval_set is not None:
        if state.get("before"):
            before = SparseEvalResult.from_dict(state["before"])
        else:
            logger.info("evaluating the base model on %s", eval_set.name)
            before = evaluate_model(model, eval_set, name=cfg.base, rel_threshold=cfg.rel_threshold,
                                    progress=cfg.progress)
            state["before"] = before.to_dict()
            _save_state(out, state)

    loss = build_loss(
        cfg.arch,
        model,
        label=data.has_label,
        distill=cfg.distill,
        query_regularizer=cfg.query_regularizer,
        document_regularizer=cfg.document_regularizer,
    )
    learning_rate = cfg.learning_rate if cfg.learning_rate is not None else defaults.learning_rate
    static_lr = None
    router_mapping: dict[str, str] = {}
    lr_mapping: dict[str, float] = {}
    if cfg.arch == "inference-free":
        static_lr = cfg.static_learning_rate if cfg.static_learning_rate is not None else defaults.static_learning_rate
        router_mapping = {c: ("query" if c == "query" else "document") for c in train_set.column_names if c != "label"}
        lr_mapping = {static_embedding_pattern(model): float(static_lr)}

    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_steps = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(steps_per_epoch * cfg.epochs))
    args = SparseEncoderTrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=learning_rate,
        warmup_steps=cfg.warmup_ratio,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # in-batch negatives must not be copies of the positive
        router_mapping=router_mapping,
        learning_rate_mapping=lr_mapping,
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
    )
    # Training reads truncated passages (the cost of the MLM head grows with length); the saved model keeps
    # the base model's own length for indexing and search.
    full_length = model.max_seq_length
    if cfg.max_seq_length and full_length and cfg.max_seq_length < full_length:
        model.max_seq_length = cfg.max_seq_length
    trainer = SparseEncoderTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=validation_set, loss=loss,
        callbacks=[_progress_callback(cfg.progress)],
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    validation_before = state.get("validation_loss_before")
    if validation_set is not None and validation_before is None:
        validation_before = trainer.evaluate()["eval_loss"]
        state["validation_loss_before"] = validation_before
        _save_state(out, state)
    train_started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - train_started
    validation_after = trainer.evaluate()["eval_loss"] if validation_set is not None else None
    model.max_seq_length = full_length
    model.save_pretrained(str(out))

    # Judge the saved folder, not the object in memory: that is what indexes will load.
    reloaded = SparseEncoder.load(str(out.resolve()))
    reload_diff = reload_difference(model, reloaded.model, train_set)
    if reload_diff > 1e-4:
        raise RuntimeError(f"the saved model in {out} encodes differently from the trained one (max abs diff {reload_diff})")
    after = None
    if eval_set is not None:
        logger.info("evaluating the fine-tuned model on %s", eval_set.name)
        after = evaluate_model(reloaded, eval_set, name=str(out), rel_threshold=cfg.rel_threshold,
                               progress=cfg.progress)

    losses = _train_losses(trainer.state.log_history)
    p_value = None
    if before is not None and after is not None and before.per_query_ndcg10 and after.per_query_ndcg10:
        from hybrid_search.evaluation import paired_significance

        p_value = paired_significance(before.per_query_ndcg10, after.per_query_ndcg10)
    report: dict[str, Any] = {
        "output": str(out.resolve()),
        "config": cfg.to_dict(),
        "data": {
            "source": data.source,
            "kind": data.kind,
            "examples": len(train_set),
            "validation": len(validation_set) if validation_set is not None else 0,
            "columns": data.columns,
            "dropped": data.dropped,
        },
        "eval_guard": len(eval_queries),
        "training": {
            "loss": _loss_name(loss),
            "learning_rate": learning_rate,
            "static_learning_rate": static_lr,
            "steps": int(result.global_step),
            "seconds": train_seconds,
            "first_loss": losses[0][1] if losses else None,
            "last_loss": losses[-1][1] if losses else None,
            "losses": losses,
            "train_loss": float(result.training_loss),
            "validation_loss_before": validation_before,
            "validation_loss_after": validation_after,
            "resumed_from": resume_from,
            "reload_max_abs_diff": reload_diff,
        },
        "before": before.to_dict() if before else None,
        "after": after.to_dict() if after else None,
        "ndcg10_p_value": p_value,
        "seconds": time.perf_counter() - started,
    }
    from hybrid_search.training.card import write_model_card

    write_model_card(out, report)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")

    return report
