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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ENV_VAR = "HYBRID_SEARCH_DEVICE"
DEVICE_CHOICES_HELP = "auto, cpu, cuda, cuda:N or mps (default: $HYBRID_SEARCH_DEVICE, else auto)"
#: How documents are encoded on a GPU: ``fp16`` (the default), ``bf16`` or ``fp32``. CPUs always use float32.
PRECISION_ENV_VAR = "HYBRID_SEARCH_GPU_PRECISION"
GPU_PRECISIONS = ("fp16", "bf16", "fp32")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device that is malformed or not present on this machine."""


def requested_device(spec: str | None = None) -> str:
    """The device asked for: the argument, else ``$HYBRID_SEARCH_DEVICE``, else ``auto``; validated."""
    raw = spec if spec not in (None, "") else os.environ.get(ENV_VAR, "") or "auto"
    value = raw.strip().lower()
    if "," in value:
        raise DeviceError(f"a list of devices ({raw!r}) is for `index --workers`; give one device here")
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
        raise DeviceError(
            f"device {value!r} asked for, but this machine has {count} CUDA GPU(s): cuda:0..cuda:{count - 1}"
        )
    return f"cuda:{index}"


def resolve_devices(spec: str | None = None) -> list[str]:
    """Each device of a comma-separated list (``cuda:0,cuda:1``), resolved as :func:`resolve_device` does.

    One device gives a one-item list. Used by ``index --workers`` to place one encoding process per GPU.

    Raises:
        DeviceError: an item is malformed, missing on this machine, or listed twice.
    """
    raw = spec if spec not in (None, "") else os.environ.get(ENV_VAR, "") or "auto"
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise DeviceError(f"empty item in the device list {raw!r}; use e.g. cuda:0,cuda:1")
    devices = [resolve_device(item) for item in items]
    if len(devices) > 1 and len(set(devices)) < len(devices):
        raise DeviceError(f"the device list {raw!r} names a device twice; give --workers N to run several on one")
    return devices


def worker_devices(devices: list[str], workers: int | None) -> list[str]:
    """The device of each encoding worker: one per listed device by default, else round-robin over them.

    Example:
        >>> worker_devices(["cuda:0", "cuda:1"], None)
        ['cuda:0', 'cuda:1']
        >>> worker_devices(["cpu"], 3)
        ['cpu', 'cpu', 'cpu']
    """
    count = len(devices) if workers is None else workers
    if count < 1:
        raise DeviceError(f"--workers must be at least 1, not {count}")
    if count < len(devices):
        raise DeviceError(
            f"{len(devices)} devices listed but --workers is {count}: give --workers {len(devices)} "
            "(one per device) or list fewer devices"
        )
    return [devices[i % len(devices)] for i in range(count)]


def add_argument(parser: Any, *, several: bool = False) -> None:
    """Add ``--device`` to an argparse parser (or argument group), with the same help on every command.

    Args:
        several: the command accepts a comma-separated list (``index --workers``: one process per device).
    """
    extra = "; a comma-separated list (cuda:0,cuda:1) puts one --workers process on each" if several else ""
    parser.add_argument("--device", metavar="DEVICE", help=f"where the models run: {DEVICE_CHOICES_HELP}{extra}")


def is_cpu(device: str) -> bool:
    """Whether the CPU-only fast paths (bf16 head screen, ONNX query exports, per-core workers) apply."""
    return device == "cpu"


def document_precision(device: str) -> str:
    """The precision documents are encoded in on ``device``: ``fp32`` on CPU and MPS; on CUDA,
    ``$HYBRID_SEARCH_GPU_PRECISION`` or ``fp16`` (half-precision matrix products under autocast, float32
    norms, softmax and SPLADE's log1p; ``benchmarks/gpu_check.py`` measures the difference)."""
    if not device.startswith("cuda"):
        return "fp32"
    value = (os.environ.get(PRECISION_ENV_VAR) or "fp16").strip().lower()
    if value not in GPU_PRECISIONS:
        raise DeviceError(f"unknown {PRECISION_ENV_VAR}={value!r}; use one of {', '.join(GPU_PRECISIONS)}")
    return value


@contextmanager
def autocast_documents(device: str, precision: str) -> Iterator[None]:
    """Run the enclosed encoding in ``precision`` on ``device`` (a no-op for ``fp32``)."""
    if precision == "fp32":
        yield
        return
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    with torch.autocast(device_type=device.partition(":")[0], dtype=dtype):
        yield


def _mps_available(torch_module: object) -> bool:
    backend = getattr(getattr(torch_module, "backends", None), "mps", None)
    return bool(backend is not None and backend.is_available())
