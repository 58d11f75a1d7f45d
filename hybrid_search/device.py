"""Where models run: one rule for every encoder, reranker and trainer.

``auto`` means CUDA when torch sees a GPU, else Apple's MPS, else the CPU. An explicit device that this
machine lacks is refused with a message, rather than failing deep inside torch on the first batch.
``HYBRID_SEARCH_DEVICE`` sets the default for every command; a ``--device`` flag overrides it.

Example:
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("CPU ")
    'cpu'
"""

from __future__ import annotations

import os
import re

ENV_VAR = "HYBRID_SEARCH_DEVICE"
DEVICE_CHOICES_HELP = "auto, cpu, cuda, cuda:N or mps (default: $HYBRID_SEARCH_DEVICE, else auto)"
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device that is malformed or not present on this machine."""


def requested_device(spec: str | None = None) -> str:
    """The device asked for: the argument, else ``$HYBRID_SEARCH_DEVICE``, else ``auto``; validated."""
    raw = spec if spec not in (None, "") else os.environ.get(ENV_VAR, "") or "auto"
    value = raw.strip().lower()
    if not _DEVICE_PATTERN.match(value):
        raise DeviceError(f"unknown device {raw!r}; use {DEVICE_CHOICES_HELP}")
    return value


def resolve_device(spec: str | None = None) -> str:
    """A concrete torch device string (``cpu``, ``cuda:0``, ``mps``) for ``spec``.

    Args:
        spec: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``None`` reads ``$HYBRID_SEARCH_DEVICE``.

    Raises:
        DeviceError: the spec is malformed, or names a device this machine does not have.
    """
    value = requested_device(spec)
    if value == "cpu":
        return "cpu"
    import torch

    if value == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if _mps_available(torch):
            return "mps"
        return "cpu"
    if value == "mps":
        if not _mps_available(torch):
            raise DeviceError("device 'mps' asked for, but torch sees no Apple GPU here; use --device cpu or auto")
        return "mps"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(value.partition(":")[2] or 0)
    if count == 0:
        raise DeviceError(f"device {value!r} asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    if index >= count:
        raise DeviceError(f"device {value!r} asked for, but this machine has {count} CUDA GPU(s): cuda:0..cuda:{count - 1}")
    return f"cuda:{index}"


def is_cpu(device: str) -> bool:
    """Whether the CPU-only fast paths (bf16 head screen, ONNX query exports, per-core workers) apply."""
    return device == "cpu"


def _mps_available(torch_module: object) -> bool:
    backend = getattr(getattr(torch_module, "backends", None), "mps", None)
    return bool(backend is not None and backend.is_available())
