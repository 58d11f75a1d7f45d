"""``hybrid-search optimize INDEX``: (re)build an index's Seismic sparse accelerator now.

The accelerator (``indexers/seismic.py``) is built from the index's stored sparse vectors. Between
builds, written, changed and deleted documents form a delta that is searched exactly, so results are
never stale; rebuilding folds the delta in and makes the sparse channel fast again. ``hybrid-search
index`` rebuilds by itself once the delta passes 5% of the built documents (at least 1,000); this
command does it on demand, and ``--set`` changes Seismic's settings (kept for later rebuilds).

Example:
    hybrid-search optimize ./my-index
    hybrid-search optimize ./my-index --set query_cut=12 --set n_postings=4000
"""

from __future__ import annotations

import argparse
from typing import Any

from hybrid_search.jsonout import dumps


def _parse_settings(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad setting {item!r}: use NAME=VALUE, e.g. query_cut=12")
        out[name.strip()] = value.strip()
    return out


def cmd_optimize(args: argparse.Namespace) -> int:
    from indexers import open_index
    from indexers.seismic import SeismicSettings, build

    index = open_index(args.index)
    try:
        recorded = (index.meta.sparse_ann or {}).get("settings") or {}
        settings = SeismicSettings.from_dict({**recorded, **_parse_settings(args.set)})
        report = build(index, settings, progress=not args.no_progress)
    finally:
        index.close()
    print(dumps(report.__dict__) if args.json else report.summary())
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search optimize`` (called by :func:`pipelines.cli.build_parser`)."""
    p = subparsers.add_parser(
        "optimize",
        help="(re)build the index's Seismic sparse accelerator (folds in its delta)",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("index", help="the index location (a folder for Qdrant Edge)")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a Seismic setting: n_postings, centroid_fraction, summary_energy, query_cut, "
        "heap_factor, rebuild_fraction, ... (see indexers/seismic.py)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    p.set_defaults(func=cmd_optimize)
    return p
