"""The one way the project writes JSON for people and programs: strict, so it is always valid JSON.

Python's :func:`json.dumps` writes ``NaN`` and ``Infinity`` by default, which no JSON parser accepts. Here a
non-finite number is a :class:`ValueError` that says where it is, so a bug shows as a clear error and never
as a file other tools cannot read.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _not_finite(value: Any, path: str = "$") -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity in ``value``, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        items = [(f"{path}.{k}", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    for where, item in items:
        found = _not_finite(item, where)
        if found:
            return found
    return None


def non_finite_as_null(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by ``None``: for reports where a figure can be missing
    (a rate over zero seconds) and ``null`` says so, rather than an error.

    Example:
        >>> non_finite_as_null({"rate": float("nan"), "runs": [1.0, float("inf")]})
        {'rate': None, 'runs': [1.0, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: non_finite_as_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [non_finite_as_null(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = 2, **options: Any) -> str:
    """``json.dumps`` with ``allow_nan=False`` and UTF-8 text kept as is.

    Example:
        >>> dumps({"score": 0.5, "name": "café"}, indent=None)
        '{"score": 0.5, "name": "café"}'
        >>> dumps({"hits": [{"score": float("inf")}]})
        Traceback (most recent call last):
        ...
        ValueError: cannot write inf as JSON (at $.hits[0].score): JSON has no infinite or NaN numbers
    """
    options.setdefault("ensure_ascii", False)
    try:
        return json.dumps(value, indent=indent, allow_nan=False, **options)
    except ValueError:
        found = _not_finite(value)
        if found is None:
            raise
        raise ValueError(
            f"cannot write {found[1]} as JSON (at {found[0]}): JSON has no infinite or NaN numbers"
        ) from None
