"""SPLADE query encoding through ONNX Runtime: the same vectors as sentence-transformers, with less overhead.

A query is ~10 tokens. Through PyTorch, SPLADE-tiny spends much of its time in Python: the BERT modules'
dispatch, then the MLM head's products. Exported as one graph (transformer, MLM head, ``log1p(relu(·))``,
the mask and the max over tokens) it runs on one thread, while the dense query encoder runs beside it on
the other: 3.1–3.5 ms a query against 4.2 ms for the exact PyTorch pass and 7.5 ms for
sentence-transformers (``benchmarks/bench_query.py``).

The graph is exported once per set of weights with ``torch.onnx.export`` and cached under
``<cache>/onnx/<fingerprint>-splade-query/``. Like the dense export it is checked against PyTorch on probe
texts before use (largest difference ≤ 1e-4); a model that does not export, or exports to other numbers,
stays on the exact PyTorch fast path (:mod:`hybrid_search.encoders.fast_splade`).

Only for a handful of texts at a time: document batches keep the PyTorch fast path, whose bfloat16 screen
and padding-free head are faster there than materialising every token's logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.encoders.onnx_dense import (
    OnnxUnavailable,
    export_checked,
    fingerprint,
    ort_session,
    transformer_body,
)

_PROBES = [
    "what is the capital of france",
    "how long does it take for tides to change",
    "a",
    "symptoms of vitamin d deficiency in adults and children " * 2,
]
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxSpladeQuery:
    """SPLADE max-pooled query vectors from an ONNX export of a ``[Transformer(fill-mask), SpladePooling(max)]``
    route (a plain SPLADE model, or a Router's query side).

    Args:
        transformer, pooling: the route's two modules.
        reference: ``texts -> (n, vocabulary) float32 array``, the PyTorch encoding the export must match.
        cache: folder for exports (default ``<hybrid-search cache>/onnx``).
    """

    def __init__(self, transformer: Any, pooling: Any, reference: Any, *, cache: Path | None = None) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise OnnxUnavailable("onnxruntime is not installed (pip install onnxruntime)") from error
        if pooling.pooling_strategy != "max" or getattr(transformer, "transformer_task", "fill-mask") != "fill-mask":
            raise OnnxUnavailable("only max-pooled fill-mask SPLADE runs on ONNX Runtime")
        self.transformer = transformer
        self.double_log = pooling.activation_function == "log1p_relu"
        self.input_names = [n for n in _INPUTS if n in transformer.tokenizer.model_input_names]
        if cache is None:
            from hybrid_search.models import cache_dir

            cache = cache_dir() / "onnx"
        self.folder = Path(cache) / f"{fingerprint([transformer])}-splade-query"
        self.path = self.folder / "model.onnx"
        self._session: Any = None
        if not (self.folder / "verified.json").exists():
            self._export(reference)

    def _export(self, reference: Any) -> None:
        import torch

        names, double_log = self.input_names, self.double_log

        def splade(mlm: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            active = torch.log1p(torch.relu(mlm(**inputs).logits))
            if double_log:
                active = torch.log1p(active)
            # Padding rows are zeroed before the max; every kept value is ≥ 0, so they never win.
            return (active * inputs["attention_mask"].unsqueeze(-1).to(active.dtype)).amax(dim=1)

        module = transformer_body(self.transformer.auto_model, names, splade)
        features = self.transformer.preprocess(_PROBES[:2])

        def check(path: Path) -> float:
            self.path, self._session = path, None
            try:
                return float(np.abs(reference(_PROBES) - self(_PROBES)).max())
            finally:
                self._session = None

        try:
            export_checked(
                self.folder, "the SPLADE query encoder", module, [features[n] for n in names], names, "vector", check
            )
        finally:
            self.path = self.folder / "model.onnx"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), vocabulary)`` float32 SPLADE vectors, on one ONNX Runtime thread."""
        if self._session is None:
            self._session = ort_session(self.path, 1)
        # The Transformer module's own preprocessing: truncation and special tokens as in encode().
        features = self.transformer.preprocess(list(texts))
        return self._session.run(None, {n: features[n].numpy().astype(np.int64) for n in self.input_names})[0]
