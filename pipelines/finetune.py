"""``hybrid-search finetune``: adapt a sparse encoder to a domain, check it got better, then index with it.

The work is done by :func:`hybrid_search.training.finetune`; this module parses the command line, prints
the before/after table and, with ``--then-index``, indexes a corpus with the new model so that the index
records it (by its folder path) and ``hybrid-search search`` / ``bench`` load it from there.

Example:
    $ hybrid-search finetune --arch inference-free --base splade-tiny \\
        --train ../shared/data/msmarco-dl19-5k/corpus.jsonl --eval ../shared/data/msmarco-dl19-5k \\
        --out models/if-msmarco --then-index ../shared/data/msmarco-dl19-5k --index .hybrid-search/if-index
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from hybrid_search.constants import TEACHERS
from hybrid_search.device import DEVICE_CHOICES_HELP
from hybrid_search.encoders.sparse import ARCHITECTURES
from hybrid_search.jsonout import dumps, non_finite_as_null

#: What ``--arch`` accepts: the sparse architectures and a cross-encoder reranker.
TRAINABLE = (*ARCHITECTURES, "cross-encoder")


def run_finetune(
    cfg: Any,
    *,
    then_index: str | None = None,
    index: str | None = None,
    dense: str | None = "minilm",
    index_batch_size: int = 64,
    cache: bool = True,
) -> dict[str, Any]:
    """Fine-tune with ``cfg`` (a :class:`~hybrid_search.training.FinetuneConfig`), then optionally index.

    With ``then_index`` the corpus is indexed into ``index`` with the fine-tuned model, loaded from its
    output folder by absolute path: the index records that path as the sparse model's name, so searches
    and benchmarks on the index use the fine-tuned model.

    With ``cache`` the corpus vectors of the models that do not change (the mining teacher, the base model)
    and of the fine-tuned model go to the embedding cache that ``bench`` reads too.
    """
    from hybrid_search.training import finetune
    from pipelines.embedding_cache import EmbeddingCache

    if then_index and cfg.arch == "cross-encoder":
        raise ValueError("--then-index needs a sparse model; a cross-encoder reranks (bench/search --reranker DIR)")
    if then_index and not index:
        raise ValueError("--then-index needs --index PATH: where to build the index")
    if then_index and cfg.idf_corpus is None:
        # Inference-free query weights start from the IDF of the corpus that will be searched.
        cfg.idf_corpus = then_index
    report = finetune(cfg, cache=EmbeddingCache(progress=cfg.progress) if cache else None)
    if then_index:
        from hybrid_search.encoders import SparseEncoder
        from pipelines.indexing import index_corpus

        started = time.perf_counter()
        sparse = SparseEncoder.load(report["output"])
        index_report = index_corpus(
            then_index, index, sparse=sparse, dense=dense, batch_size=index_batch_size, progress=cfg.progress
        )
        report["index"] = {**index_report.to_dict(), "sparse": report["output"], "dense": dense}
        report["seconds"] += time.perf_counter() - started
        (Path(report["output"]) / "finetune.json").write_text(dumps(non_finite_as_null(report)), encoding="utf-8")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short human summary: data, training, and the before/after table."""
    from hybrid_search.training.card import result_rows
    from hybrid_search.training.data import describe_dropped

    data, t = report["data"], report["training"]
    dropped = describe_dropped(data.get("dropped", {}))
    lines = [
        f"model saved to {report['output']} (model card: README.md, results: finetune.json)",
        f"data: {data['examples']} {data['kind']} examples from {data['source']}"
        + (f" (left out: {dropped})" if dropped else ""),
        f"training: {t['steps']} steps in {t['seconds']:.0f}s, {t['loss']}"
        + (
            f", validation loss {t['validation_loss_before']:.4f} -> {t['validation_loss_after']:.4f}"
            if t.get("validation_loss_before") is not None
            else ""
        ),
    ]
    mined = report.get("hard_negatives")
    if mined:
        lines.append(
            f"hard negatives: {mined['negatives']} for {mined['queries']} queries from the "
            f"{'+'.join(mined['channels'])} ranking (ranks {mined['range_min']}-{mined['range_max']}, "
            f"{mined['false_negative_guard']} skipped within the {mined['relative_margin']:.0%} margin, "
            f"{mined['rows_dropped']} rows dropped) in {mined['seconds']:.0f}s"
        )
    teacher = report.get("teacher")
    if teacher:
        fit = teacher["fit"]
        lines.append(
            f"teacher: {teacher['kind']} ({'+'.join(teacher['channels'])}), {teacher['loss']} on margins scaled by "
            f"{fit['scale']:.3f} (RMS of the base student's margins {fit['student_margin_rms']:.3f} / the teacher's "
            f"{fit['teacher_margin_rms']:.3f}, {fit['margins']} training margins)"
        )
    before, after = report.get("before"), report.get("after")
    if before or after:
        ref = after or before
        lines += [
            (
                f"evaluation on {ref['dataset']}: {ref['queries']} judged queries, {ref['documents']} documents "
                f"(binary measures: grade >= {ref['rel_threshold']})"
            ),
            f"{'':8}{'nDCG@10':>9}{'MRR@10':>9}{'R@100':>9}{'q dims':>9}{'d dims':>9}",
        ]
        for name, m, q_dims, d_dims in result_rows(report):
            lines.append(
                f"{name:8}{m['nDCG@10'] * 100:9.2f}{m['MRR@10'] * 100:9.2f}{m['R@100'] * 100:9.2f}"
                f"{q_dims:9.1f}{d_dims:9.1f}"
            )
    if report.get("ndcg10_p_value") is not None:
        delta = (after["metrics"]["nDCG@10"] - before["metrics"]["nDCG@10"]) * 100
        lines.append(f"nDCG@10 {delta:+.2f} points (paired randomisation test: p = {report['ndcg10_p_value']:.3f})")
    if report.get("index"):
        idx = report["index"]
        lines.append(f"indexed {idx['count']} documents into {idx['location']} with the fine-tuned model")
    lines.append(f"total {report['seconds']:.0f}s")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search finetune`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a sparse model (SPLADE, inference-free, CSR) or a cross-encoder reranker on domain data",
        description="Fine-tune a sparse encoder (sentence-transformers' SparseEncoderTrainer) or a cross-encoder "
        "reranker (CrossEncoderTrainer) on labelled pairs, BEIR qrels or pairs mined from unlabelled text, with "
        "hard negatives mined from the hybrid ranking; evaluate before and after; write a model card; "
        "optionally index a corpus with the new sparse model.",
    )
    p.add_argument("--arch", required=True, choices=TRAINABLE)
    p.add_argument(
        "--base",
        help="base model: an MLM for splade/inference-free (default splade-tiny), "
        "a dense model for csr and cross-encoder (default minilm); built-in name, folder or Hub id",
    )
    p.add_argument(
        "--train",
        required=True,
        help="JSONL/JSON/CSV/TSV/Parquet file, BEIR folder, hf:owner/name[:config], or a saved "
        "datasets folder. Without a query column the text is mined into pairs",
    )
    p.add_argument("--out", required=True, help="output folder for the model, its card and checkpoints")
    p.add_argument(
        "--eval",
        metavar="DATASET",
        help="evaluation set (BEIR folder, NanoBEIR name, Hub id); its queries are kept out of training",
    )
    p.add_argument("--eval-split", default="test", help="qrels split of a BEIR eval folder (default test)")
    p.add_argument(
        "--rel-threshold",
        type=int,
        default=1,
        help="lowest grade counted relevant by MRR, MAP and recall (default 1; nDCG uses grades)",
    )
    _add_data_arguments(p.add_argument_group("training data"))
    _add_mining_arguments(p.add_argument_group("hard negatives"))
    _add_training_arguments(p.add_argument_group("training"))
    _add_run_arguments(p.add_argument_group("run"))
    i = p.add_argument_group("handoff")
    i.add_argument("--then-index", metavar="CORPUS", help="index this corpus with the fine-tuned model")
    i.add_argument("--index", help="index location for --then-index")
    i.add_argument("--dense", default="minilm", help="dense model for --then-index, or 'none' (default minilm)")
    i.add_argument("--index-batch-size", type=int, default=64)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_finetune)
    return p


def _add_data_arguments(d: Any) -> None:
    """Where the training examples come from, and how pairs are mined from plain text."""
    d.add_argument(
        "--columns",
        metavar="ROLE=COL,...",
        help="column mapping, e.g. query=question,positive=answer,negative=hard_neg,label=score",
    )
    d.add_argument(
        "--self-supervised",
        action="store_true",
        help="mine (pseudo-query, passage) pairs from the text even if it has a query column",
    )
    d.add_argument("--train-split", default="train", help="qrels split of a BEIR training folder (default train)")
    d.add_argument("--min-grade", type=int, default=1, help="lowest qrels grade used as a positive (default 1)")
    d.add_argument("--max-examples", type=int, help="train on a seeded sample of at most N examples")
    d.add_argument(
        "--pseudo-query-ratio",
        type=float,
        default=0.0,
        metavar="R",
        help="with labelled pairs, also train on R x as many pseudo-query pairs mined from their documents "
        "(the corpus of a BEIR folder), e.g. 1: as many as labelled (default 0: none)",
    )
    d.add_argument("--pairs-per-doc", type=int, default=1, help="pseudo-queries mined per passage (default 1)")
    d.add_argument("--max-query-words", type=int, default=16, help="crop mined pseudo-queries (default 16)")
    d.add_argument(
        "--keep-sentence-prob",
        type=float,
        default=0.1,
        help="chance a mined sentence stays in its passage (default 0.1)",
    )
    d.add_argument(
        "--validation-size",
        type=int,
        default=256,
        help="training examples held out for validation (at most a tenth; default 256; 0: none). csr and "
        "cross-encoder hold out whole queries and choose settings on them (csr: lr, scale, steps; cross-encoder: "
        "the weight that blends it with the first stage)",
    )


def _add_mining_arguments(d: Any) -> None:
    """How hard negatives are mined from the hybrid ranking of the training corpus."""
    d.add_argument(
        "--hard-negatives",
        type=int,
        metavar="N",
        help="hard negatives mined per training pair from the hybrid ranking of the training corpus "
        "(default: splade/inference-free 1, cross-encoder 4, csr 0; 0: in-batch negatives only)",
    )
    d.add_argument(
        "--mine-models",
        default="splade-tiny,minilm",
        metavar="SPARSE[,DENSE]",
        help="the models of the ranking negatives are mined from (default splade-tiny,minilm)",
    )
    d.add_argument(
        "--mine-window",
        default="0:100",
        metavar="MIN:MAX",
        help="ranks of that ranking negatives come from, positives removed (default 0:100)",
    )
    d.add_argument(
        "--mine-margin",
        type=float,
        default=0.05,
        help="skip candidates scored within this fraction of the positive's score in any channel, "
        "as likely unjudged positives (default 0.05, NV-Retriever's TopK-PercPos 95%%)",
    )


def _add_training_arguments(t: Any) -> None:
    """The recipe: epochs, learning rates, lengths, regularizers, architecture sizes."""
    t.add_argument("--epochs", type=float, help="default: splade, inference-free and cross-encoder 2")
    t.add_argument(
        "--max-steps",
        type=int,
        default=-1,
        help="stop after N steps (overrides --epochs); csr: steps of each setting tried (default 1000)",
    )
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument(
        "--lr",
        type=float,
        help="learning rate (default: splade/inference-free 2e-5, 2e-4 for a base "
        "with hidden size <= 256 such as splade-tiny; csr: chosen on validation among 3e-4 and 1e-3; "
        "cross-encoder 1e-4)",
    )
    t.add_argument(
        "--static-lr", type=float, help="inference-free: learning rate of the static query weights (default 1e-2)"
    )
    t.add_argument(
        "--max-seq-length",
        type=int,
        help="sparse: truncate texts while training (the saved model keeps its own length; default 128); "
        "cross-encoder: tokens read per pair, training and reranking (default 128)",
    )
    t.add_argument("--query-reg", type=float, help="query FLOPS weight (splade default 5e-5; inference-free: 0)")
    t.add_argument("--doc-reg", type=float, help="document FLOPS weight (default 3e-5)")
    t.add_argument(
        "--distill",
        choices=["margin-mse", "kl-div"],
        default="margin-mse",
        help="distillation loss when the data has a label/score column (default margin-mse)",
    )
    t.add_argument(
        "--teacher",
        choices=["none", *TEACHERS],
        default="none",
        help="splade/inference-free: distil instead of contrasting. hybrid: SparseMarginMSELoss on margins of the "
        "--mine-models ranking (each channel min-max normalised per query over its candidates, averaged, scaled "
        "into the base student's units on the training rows), one per mined hard negative; hybrid+bm25: the same "
        "with a BM25 channel (rank-bm25 over the training corpus) in the ensemble (default none)",
    )
    t.add_argument("--csr-k", type=int, default=256, help="csr: active dimensions per vector (default 256)")
    t.add_argument("--csr-hidden", type=int, help="csr: latent dimensions (default 4x the dense dimension)")
    t.add_argument("--train-backbone", action="store_true", help="csr: also train the dense transformer")
    t.add_argument(
        "--idf-corpus",
        help="inference-free: corpus whose IDF initialises the query weights "
        "(default: the --then-index corpus, else the training text)",
    )
    t.add_argument(
        "--rerank-top-n",
        type=int,
        default=20,
        help="cross-encoder: first-stage passages reranked per evaluation query (default 20)",
    )


def _add_run_arguments(t: Any) -> None:
    """Seed, checkpoints, resume, device and precision."""
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default 50)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue from the last checkpoint in --out (or from CHECKPOINT)",
    )
    t.add_argument("--overwrite", action="store_true", help="delete an earlier run's output folder first")
    t.add_argument("--device", help=f"where to train and encode: {DEVICE_CHOICES_HELP}")
    t.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (default): bf16 mixed precision on a CUDA GPU that has it, else fp16 on CUDA; fp32 on CPU and MPS",
    )
    t.add_argument("--no-cache", action="store_true", help="encode corpora even if their embeddings are cached")


def config_from_args(args: argparse.Namespace) -> Any:
    from hybrid_search.training import FinetuneConfig, MiningConfig

    base = args.base or ("minilm" if args.arch in ("csr", "cross-encoder") else "splade-tiny")
    return FinetuneConfig(
        arch=args.arch,
        base=base,
        train=args.train,
        out=args.out,
        eval=args.eval,
        eval_split=args.eval_split,
        rel_threshold=args.rel_threshold,
        columns=args.columns,
        self_supervised=True if args.self_supervised else None,
        train_split=args.train_split,
        min_grade=args.min_grade,
        max_examples=args.max_examples,
        pseudo_query_ratio=args.pseudo_query_ratio,
        mining=MiningConfig(
            pairs_per_doc=args.pairs_per_doc,
            max_query_words=args.max_query_words,
            keep_sentence_prob=args.keep_sentence_prob,
            seed=args.seed,
        ),
        validation_size=args.validation_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        static_learning_rate=args.static_lr,
        max_seq_length=args.max_seq_length,
        query_regularizer=args.query_reg,
        document_regularizer=args.doc_reg,
        distill=args.distill,
        teacher=None if args.teacher == "none" else args.teacher,
        csr_k=args.csr_k,
        csr_hidden_dim=args.csr_hidden,
        train_backbone=args.train_backbone,
        idf_corpus=args.idf_corpus,
        seed=args.seed,
        save_steps=args.save_steps,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        device=args.device,
        precision=args.precision,
        negatives=negative_config(args),
        rerank_top_n=args.rerank_top_n,
    )


def negative_config(args: argparse.Namespace) -> Any:
    """``--hard-negatives``, ``--mine-models``, ``--mine-window`` and ``--mine-margin`` as a NegativeConfig."""
    from hybrid_search.training import NegativeConfig

    models = [m.strip() for m in args.mine_models.split(",") if m.strip()]
    if not 1 <= len(models) <= 2:
        raise ValueError(f"--mine-models {args.mine_models!r}: give SPARSE or SPARSE,DENSE")
    low, sep, high = args.mine_window.partition(":")
    try:
        window = (int(low), int(high))
    except ValueError:
        raise ValueError(f"--mine-window {args.mine_window!r}: use MIN:MAX, e.g. 0:100") from None
    if not sep:
        raise ValueError(f"--mine-window {args.mine_window!r}: use MIN:MAX, e.g. 0:100")
    return NegativeConfig(
        num_negatives=args.hard_negatives,
        sparse_model=models[0],
        dense_model=models[1] if len(models) == 2 and models[1] != "none" else None,
        range_min=window[0],
        range_max=window[1],
        relative_margin=args.mine_margin,
    )


def cmd_finetune(args: argparse.Namespace) -> int:
    if args.index and not args.then_index:
        raise ValueError("--index is only used with --then-index CORPUS")
    report = run_finetune(
        config_from_args(args),
        then_index=args.then_index,
        index=args.index,
        dense=None if args.dense == "none" else args.dense,
        index_batch_size=args.index_batch_size,
        cache=not args.no_cache,
    )
    print(dumps(non_finite_as_null(report)) if args.json else format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.finetune ARGS``: the same as ``hybrid-search finetune ARGS``."""
    import sys

    from pipelines import cli

    if "pipelines.finetune" not in cli._COMMAND_MODULES:
        cli._COMMAND_MODULES = (*cli._COMMAND_MODULES, "pipelines.finetune")
    return cli.main(["finetune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
