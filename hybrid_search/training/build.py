"""The model to train and its loss, per architecture.

===============  =====================================================  ===========================================
architecture     model                                                  loss
===============  =====================================================  ===========================================
splade           MLM + SpladePooling (``build_splade``)                  SpladeLoss(SparseMNRL, query + document FLOPS)
inference-free   Router: query = SparseStaticEmbedding (corpus IDF),    SpladeLoss(SparseMNRL, document FLOPS only:
                 document = MLM + SpladePooling                         the query regularizer weight is 0)
csr              dense model + SparseAutoEncoder (``build_csr``)         CSRLoss(SparseMNRL): reconstruction + contrastive
===============  =====================================================  ===========================================

With a ``label`` column the contrastive loss is replaced by distillation: ``SparseMarginMSELoss`` (labels are
margins or teacher scores) or ``SparseDistillKLDivLoss`` (labels are teacher scores for the positive and every
negative).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_search.encoders.sparse import (
    ARCHITECTURES,
    build_csr,
    build_inference_free,
    build_splade,
    detect_architecture,
)
from hybrid_search.models import resolve

logger = logging.getLogger(__name__)

DISTILL_LOSSES = ("margin-mse", "kl-div")


@dataclass(frozen=True)
class ArchDefaults:
    """A-priori settings per architecture, fixed before any evaluation (see :func:`recipe`).

    ``learning_rate`` is the sentence-transformers recipe's, for a base model of BERT-base size trained for
    thousands of steps; :func:`recipe` raises it for small models.
    """

    learning_rate: float
    query_regularizer: float
    document_regularizer: float
    static_learning_rate: float | None = None
    epochs: float = 1.0
    max_seq_length: int = 128
    num_negatives: int = 1


DEFAULTS: dict[str, ArchDefaults] = {
    # SpladeLoss defaults of SparseEncoderTrainer.get_default_loss; two epochs, one mined hard negative.
    "splade": ArchDefaults(learning_rate=2e-5, query_regularizer=5e-5, document_regularizer=3e-5, epochs=2.0),
    # The inference-free recipe: 1e-3 for the static query weights (10x here: runs of hundreds of steps, not
    # thousands, leave each token's weight only a few updates), 2e-5 for the document MLM, no query FLOPS.
    "inference-free": ArchDefaults(
        learning_rate=2e-5, query_regularizer=0.0, document_regularizer=3e-5, static_learning_rate=1e-2, epochs=2.0
    ),
    # train_csr_nq.py: backbone frozen, 2e-4 for the autoencoder (already sized for it: no small-model boost).
    "csr": ArchDefaults(learning_rate=2e-4, query_regularizer=0.0, document_regularizer=0.0, num_negatives=0),
    # training_ms_marco_bce.py: BCE with mined hard negatives, pos_weight = negatives per positive. Last round's
    # 1 epoch at 5e-5 with 2 negatives (72 steps) left the loss at chance. 1e-4 is the fine-tuning rate of the
    # BERT miniatures between mini (256) and small (512) hidden sizes (Turc et al., 2019), MiniLM's 384 among
    # them; 4 negatives (the recipe has 5) and 2 epochs make ~240 steps of 32 pairs, and 128 tokens per pair
    # (the recipe has 512; a step costs ~4 s on 2 CPU cores there) keep that within 30 minutes. On a GPU, raise
    # them (--hard-negatives 5 --max-seq-length 512). The weight that blends it with the first stage is chosen
    # on held-out training queries (hybrid_search.rerank.interpolate).
    "cross-encoder": ArchDefaults(
        learning_rate=1e-4,
        query_regularizer=0.0,
        document_regularizer=0.0,
        epochs=2.0,
        max_seq_length=128,
        num_negatives=4,
    ),
}

#: The architectures whose document side is an MLM with SPLADE pooling (their start is an MLM checkpoint).
MLM_ARCHS = ("splade", "inference-free")

#: Up to this hidden size a transformer counts as small and its recipe learning rate is raised 10x: the BERT
#: miniatures' fine-tuning grid (Turc et al., 2019, "Well-Read Students Learn Better") reaches 1e-4 to 3e-4
#: for the tiny (128) and mini (256) models, where BERT-base's (768) stops at 5e-5.
SMALL_HIDDEN_SIZE = 256
SMALL_MODEL_LR_FACTOR = 10.0


def hidden_size(model: Any) -> int | None:
    """The hidden size of the first transformer inside a sentence-transformers model (``None``: none found)."""
    for module in model.modules():
        config = getattr(getattr(module, "auto_model", None), "config", None)
        if config is not None and getattr(config, "hidden_size", None):
            return int(config.hidden_size)
    return None


def recipe(arch: str, model: Any | None = None) -> ArchDefaults:
    """The defaults of ``arch``; for a small SPLADE or inference-free model (hidden size up to
    :data:`SMALL_HIDDEN_SIZE`, e.g. SPLADE-tiny) the learning rate is raised 10x."""
    from dataclasses import replace

    defaults = DEFAULTS[arch]
    if model is None or arch not in MLM_ARCHS:
        return defaults
    size = hidden_size(model)
    if size is not None and size <= SMALL_HIDDEN_SIZE:
        return replace(defaults, learning_rate=defaults.learning_rate * SMALL_MODEL_LR_FACTOR)
    return defaults


def _is_sentence_transformers_folder(path: str) -> bool:
    return (Path(path) / "modules.json").is_file()


def build_model(
    arch: str,
    base: str,
    *,
    idf_texts: list[str] | None = None,
    csr_k: int = 256,
    csr_hidden_dim: int | None = None,
    train_backbone: bool = False,
    device: str | None = None,
) -> Any:
    """The sentence-transformers ``SparseEncoder`` to fine-tune.

    Args:
        arch: ``splade``, ``inference-free`` or ``csr``.
        base: an MLM (splade, inference-free) or a dense model (csr): a built-in name, folder or Hub id. A
            folder holding a sparse model of the same architecture (an earlier fine-tune) is loaded as is.
        idf_texts: corpus texts whose IDF initialises the inference-free query weights.
        csr_k: active dimensions per CSR vector.
        csr_hidden_dim: CSR latent size (default 4x the dense dimension).
        train_backbone: CSR only: also train the dense transformer (frozen by default, as in the
            sentence-transformers CSR recipe; a few thousand self-supervised pairs are too few to improve it).
        device: where the model is placed: ``auto`` (default: CUDA when present), ``cpu``, ``cuda:N``, ``mps``.
    """
    from sentence_transformers import SparseEncoder as STSparseEncoder

    from hybrid_search.device import resolve_device

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    device = resolve_device(device)
    resolved = resolve(base)
    model = None
    if resolved.source == "local" and _is_sentence_transformers_folder(resolved.path):
        config = Path(resolved.path) / "config_sentence_transformers.json"
        if config.is_file() and '"SparseEncoder"' in config.read_text(encoding="utf-8"):
            model = STSparseEncoder(resolved.path, device=device)
            found = detect_architecture(model)
            if found != arch:
                raise ValueError(f"--base {base} is a {found} model; fine-tune it with --arch {found}")
    if model is None:
        if arch == "splade":
            model = build_splade(base, device=device)
        elif arch == "inference-free":
            if not idf_texts:
                logger.warning("no corpus text for IDF: the inference-free query weights start at 1")
            model = build_inference_free(base, idf_texts or None, device=device)
        else:
            if csr_hidden_dim is not None and 4 * csr_k > csr_hidden_dim:
                # CSRLoss also reconstructs from the top 4k latents.
                raise ValueError(f"--csr-k {csr_k} needs at least {4 * csr_k} latent dimensions (--csr-hidden)")
            k_aux = min(512, csr_hidden_dim) if csr_hidden_dim else 512
            model = build_csr(base, hidden_dim=csr_hidden_dim, k=csr_k, k_aux=k_aux, device=device)
    model.to(device)
    if arch == "csr" and not train_backbone:
        for module in model:
            if type(module).__name__ != "SparseAutoEncoder":
                module.requires_grad_(False)
    return model


def weights_on_line(start: Mapping[str, Any], end: Mapping[str, Any], lam: float) -> dict[str, Any]:
    """The state dict at ``lam`` on the straight line through two state dicts of one architecture:
    ``(1 - lam) * start + lam * end`` for every floating-point tensor, ``end``'s own for the rest (integer buffers
    such as position ids). ``lam`` 0 is the start, 1 the fine-tuned model, 0.5 their average (WiSE-FT), 2 an
    extrapolation; judging a few points shows whether a fine-tune stopped short of, at or past the best point
    along its own weight change (``benchmarks/weight_line.py``)."""
    if set(start) != set(end):
        differ = sorted(set(start) ^ set(end))
        raise ValueError(f"the two models do not share their parameters: {differ[:5]}")
    return {k: (1 - lam) * start[k] + lam * end[k] if end[k].is_floating_point() else end[k] for k in end}


def static_embedding_pattern(model: Any) -> str:
    """A regular expression matching the parameter names of the model's ``SparseStaticEmbedding`` weights.

    ``learning_rate_mapping`` matches against the loss's parameter names (``model.0.sub_modules.query.0.weight``),
    which do not contain the class name, so the pattern is built from the model's own module names.
    """
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

    names = [name for name, module in model.named_modules() if isinstance(module, SparseStaticEmbedding)]
    if not names:
        raise ValueError("the model has no SparseStaticEmbedding module")
    return "(" + "|".join(re.escape(f"{name}.weight") for name in names) + ")$"


def build_loss(
    arch: str,
    model: Any,
    *,
    label: bool = False,
    distill: str = "margin-mse",
    query_regularizer: float | None = None,
    document_regularizer: float | None = None,
    csr_beta: float = 0.1,
    csr_gamma: float = 1.0,
) -> Any:
    """The training loss for ``arch``; see the module docstring."""
    from sentence_transformers.sparse_encoder import losses

    inner: Any
    if label:
        if distill not in DISTILL_LOSSES:
            raise ValueError(f"unknown distillation loss {distill!r}; choose {', '.join(DISTILL_LOSSES)}")
        inner = losses.SparseMarginMSELoss(model) if distill == "margin-mse" else losses.SparseDistillKLDivLoss(model)
    else:
        inner = losses.SparseMultipleNegativesRankingLoss(model)
    if arch == "csr":
        return losses.CSRLoss(model, loss=inner, beta=csr_beta, gamma=csr_gamma)
    defaults = recipe(arch)
    q_reg = defaults.query_regularizer if query_regularizer is None else query_regularizer
    d_reg = defaults.document_regularizer if document_regularizer is None else document_regularizer
    if arch == "inference-free" and q_reg != 0:
        logger.warning("inference-free queries are not encoded by a network; the query regularizer is set to 0")
        q_reg = 0.0
    return losses.SpladeLoss(model, loss=inner, document_regularizer_weight=d_reg, query_regularizer_weight=q_reg)


def check_label_shape(labels: list[Any], n_negatives: int, distill: str) -> None:
    """Raise a clear ValueError when the labels cannot feed the distillation loss."""
    if n_negatives == 0:
        raise ValueError(
            "distillation needs at least one negative column next to the label (query, positive, negative, label)"
        )
    first = labels[0]
    size = len(first) if isinstance(first, list) else 1
    if distill == "kl-div" and size != n_negatives + 1:
        raise ValueError(
            f"kl-div distillation needs a list of {n_negatives + 1} teacher scores per row "
            f"(positive then each negative); the label has {size}"
        )
    if distill == "margin-mse" and size not in (n_negatives, n_negatives + 1):
        raise ValueError(
            f"margin-mse distillation needs a margin per negative ({n_negatives}) or teacher scores for the "
            f"positive and each negative ({n_negatives + 1}); the label has {size}"
        )
