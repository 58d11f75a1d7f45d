"""Dense encoding through ONNX Runtime: the same vectors as sentence-transformers, faster on CPU.

The transformer of a ``[Transformer, Pooling(mean|cls|max), Normalize?]`` sentence-transformers model is
exported once with ``torch.onnx.export`` (dynamic batch and sequence axes) and cached under
``<cache>/onnx/<fingerprint of the weights>/``; tokenisation, pooling and normalisation stay in Python with
the model's own tokenizer and settings. Every export is checked against the PyTorch model on probe texts
before it is used, and a model that does not export, or exports to different numbers, stays on PyTorch.

Two precisions:

- ``onnx`` (float32): the same vectors to ~1e-6, the default wherever ``onnxruntime`` is installed;
- ``onnx-int8``: dynamic per-channel int8 weights (``onnxruntime.quantization.quantize_dynamic``); faster
  again, with a measured quality cost (``docs/benchmarks.md``), so only on request.

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, which requires transformers < 4.58;
this module needs only ``onnxruntime`` and the exporter that ships with torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PRECISIONS = ("onnx", "onnx-int8")
#: Largest difference from PyTorch accepted for a float32 export, on normalised or raw embeddings.
EXPORT_TOLERANCE = 1e-4
_PROBES = [
    "what is the capital of france",
    "Paris is the capital and most populous city of France, on the Seine.",
    "a",
    "tides are caused by the gravitational pull of the moon and the sun " * 3,
]


class OnnxUnavailable(RuntimeError):
    """The model cannot run on ONNX Runtime here (no onnxruntime, an unsupported layout, a failed check)."""


def _modules(model: Any) -> tuple[Any, Any, bool]:
    from sentence_transformers.models import Normalize, Pooling, Transformer

    mods = list(model)
    if len(mods) not in (2, 3) or not isinstance(mods[0], Transformer) or not isinstance(mods[1], Pooling):
        raise OnnxUnavailable("only [Transformer, Pooling, Normalize?] models run on ONNX Runtime")
    if len(mods) == 3 and not isinstance(mods[2], Normalize):
        raise OnnxUnavailable("only [Transformer, Pooling, Normalize?] models run on ONNX Runtime")
    mode = mods[1].pooling_mode if hasattr(mods[1], "pooling_mode") else mods[1].get_pooling_mode_str()
    if mode not in ("mean", "cls", "max"):
        raise OnnxUnavailable(f"pooling {mode!r} is not supported on ONNX Runtime")
    return mods[0], mode, len(mods) == 3


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and the quantizer's chatter (warnings and log lines about optional packages)."""
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def fingerprint(model: Any) -> str:
    """A digest of the weights and the configuration: the export cache key."""
    from hybrid_search.models import weights_digest

    digest = hashlib.sha256()
    transformer = list(model)[0]
    digest.update(json.dumps(transformer.auto_model.config.to_dict(), sort_keys=True, default=str).encode())
    digest.update(weights_digest(transformer.auto_model).encode())
    return digest.hexdigest()[:20]


def ort_session(path: Path, threads: int) -> Any:
    """A CPU ONNX Runtime session with ``threads`` intra-op threads and every graph optimisation.

    Idle worker threads sleep instead of spinning: a spinning pool keeps a core busy for tens of
    milliseconds after each run (measured here), which is when the other encoder, the engine and an
    overlapping indexing job need it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_checked(
    folder: Path,
    what: str,
    module: Any,
    example: Sequence[Any],
    input_names: Sequence[str],
    output_name: str,
    check: Callable[[Path], float],
) -> None:
    """Export ``module`` (dynamic batch and sequence axes) to ``folder/model.onnx``, once and safely.

    The export goes to a private staging folder; ``check(path)`` returns its largest difference from
    PyTorch, and only an export within :data:`EXPORT_TOLERANCE` is moved into place (with a
    ``verified.json``). A concurrent export of the same weights may finish first: then its result is used.
    """
    import shutil

    import torch

    # A warning so that the CLI shows it: the export is a one-off pause of a few seconds on a first query.
    logger.warning("exporting %s to ONNX Runtime once (about 10 s; cached in %s)", what, folder)
    staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    path = staging / "model.onnx"
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        try:
            with torch.no_grad(), _quiet():
                torch.onnx.export(
                    module,
                    tuple(example),
                    str(path),
                    input_names=list(input_names),
                    output_names=[output_name],
                    dynamic_shapes={n: {0: batch, 1: seq} for n in input_names},
                    dynamo=True,
                    verbose=False,
                )
        except Exception as error:  # noqa: BLE001 - the exporter raises many kinds
            raise OnnxUnavailable(f"the ONNX export failed: {type(error).__name__}") from error
        diff = check(path)
        if not diff <= EXPORT_TOLERANCE:
            raise OnnxUnavailable(f"the ONNX export differs from PyTorch by {diff:.2e}; staying on PyTorch")
        (staging / "verified.json").write_text(json.dumps({"max_abs_diff": diff}))
        if not (folder / "verified.json").exists():  # another process may have finished first
            shutil.rmtree(folder, ignore_errors=True)  # a crashed export's leftovers
            try:
                os.replace(staging, folder)
            except OSError:  # lost the race to a concurrent export of the same weights: use theirs
                if not (folder / "verified.json").exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: The inputs a transformer may take, in the order an exported graph takes them.
EXPORT_INPUTS = (["input_ids", "attention_mask"], ["input_ids", "attention_mask", "token_type_ids"])


def transformer_body(inner: Any, names: list[str], head: Callable[[Any, dict[str, Any]], Any]) -> Any:
    """``head(inner, inputs)`` as a module whose ``forward`` takes the transformer's inputs by position, as
    :func:`export_checked` passes them: ``input_ids, attention_mask`` and, where the tokenizer gives them,
    ``token_type_ids`` (``names``, one of :data:`EXPORT_INPUTS`)."""
    import torch

    if names not in EXPORT_INPUTS:
        raise OnnxUnavailable(f"unsupported model inputs {names}")

    class Body(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner.eval()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return head(self.inner, {"input_ids": input_ids, "attention_mask": attention_mask})

    class BodyWithTypes(Body):
        def forward(  # type: ignore[override]
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return head(self.inner, inputs)

    return (BodyWithTypes() if len(names) == 3 else Body()).eval()


class OnnxDenseForward:
    """Encode with a sentence-transformers model's ONNX export.

    Args:
        model: the ``SentenceTransformer``.
        precision: ``onnx`` (float32) or ``onnx-int8``.
        cache: folder for exports (default ``<hybrid-search cache>/onnx``).
    """

    def __init__(self, model: Any, precision: str = "onnx", *, cache: Path | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown ONNX precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise OnnxUnavailable("onnxruntime is not installed (pip install onnxruntime)") from error
        self.transformer, self.pooling, self.normalize = _modules(model)
        self.model = model
        self.precision = precision
        self.tokenizer = model.tokenizer
        self.input_names = [
            n for n in ("input_ids", "attention_mask", "token_type_ids") if n in self.tokenizer.model_input_names
        ]
        if cache is None:
            from hybrid_search.models import cache_dir

            cache = cache_dir() / "onnx"
        self.folder = Path(cache) / fingerprint(model)
        self.path = self._export()
        self._sessions: dict[int, Any] = {}

    # --- export ---------------------------------------------------------------------------------
    def _export(self) -> Path:
        fp32 = self.folder / "model.onnx"
        if not (self.folder / "verified.json").exists():
            self._export_fp32()
        if self.precision == "onnx":
            return fp32
        int8 = self.folder / "model_int8.onnx"
        if not int8.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = self.folder / f"model_int8.{os.getpid()}.tmp.onnx"
            with _quiet():
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
            os.replace(tmp, int8)
        return int8

    def _export_fp32(self) -> None:
        """Export the transformer body, check it against PyTorch on probe texts, then move it into place."""
        names = self.input_names
        body = transformer_body(self.transformer.auto_model, names, lambda hf, inputs: hf(**inputs).last_hidden_state)
        features = self.tokenizer(_PROBES[:2], padding=True, return_tensors="pt")

        def check(path: Path) -> float:
            self.path, self._sessions = path, {}
            reference = np.asarray(self.model.encode(_PROBES, convert_to_numpy=True), dtype=np.float32)
            try:
                return float(np.abs(reference - self(_PROBES, batch_size=2)).max())
            finally:
                self._sessions = {}

        export_checked(
            self.folder,
            "the dense model",
            body,
            [features[n] for n in names],
            names,
            "last_hidden_state",
            check,
        )

    # --- inference ------------------------------------------------------------------------------
    def session(self, threads: int) -> Any:
        """An ONNX Runtime session with ``threads`` intra-op threads (sessions are kept per count)."""
        if threads not in self._sessions:
            self._sessions[threads] = ort_session(self.path, threads)
        return self._sessions[threads]

    def __call__(
        self, texts: Sequence[str], batch_size: int = 32, *, threads: int | None = None, show_progress_bar: bool = False
    ) -> np.ndarray:
        """``(len(texts), dimension)`` float32 embeddings, as sentence-transformers' ``encode`` gives."""
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        session = self.session(threads or torch.get_num_threads())
        out: np.ndarray | None = None
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in tqdm(range(0, len(order), batch_size), desc="Batches", disable=not show_progress_bar):
            idx = order[start : start + batch_size]
            # The Transformer module's own preprocessing: stripping, lower-casing, truncation as in encode().
            features = {
                k: v.numpy()
                for k, v in self.transformer.preprocess([texts[i] for i in idx]).items()
                if k in self.input_names
            }
            hidden = session.run(None, {n: features[n].astype(np.int64) for n in self.input_names})[0]
            mask = features["attention_mask"].astype(np.float32)[..., None]
            if self.pooling == "mean":
                rows = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            elif self.pooling == "cls":
                rows = hidden[:, 0]
            else:
                rows = np.where(mask > 0, hidden, -1e9).max(axis=1)
            if self.normalize:
                rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            if out is None:
                out = np.empty((len(texts), rows.shape[1]), dtype=np.float32)
            out[idx] = rows
        return out if out is not None else np.zeros((0, self.model.get_embedding_dimension()), dtype=np.float32)
