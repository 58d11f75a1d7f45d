"""``hybrid-search delete``: remove documents from an index by their corpus ids.

For documents that are gone from the corpus as a whole, ``hybrid-search index CORPUS --prune`` finds and
deletes them itself; this command is for removing a few known ids.

Example:
    >>> from pipelines.delete import delete_documents
    >>> delete_documents("./my-index", ["doc-7", "doc-9"])  # doctest: +SKIP
    DeleteReport(location='./my-index', deleted=['doc-7'], missing=['doc-9'], count=4999)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hybrid_search.jsonout import dumps


@dataclass
class DeleteReport:
    """What a delete did: the ids removed, the ids the index did not hold, and the count after."""

    location: str
    deleted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    count: int = 0

    def summary(self) -> str:
        parts = [f"deleted {len(self.deleted)} documents from {self.location}"]
        if self.missing:
            parts.append(f"not in the index: {', '.join(self.missing)}")
        parts.append(f"index now holds {self.count}")
        return "; ".join(parts)


def delete_documents(location: str, ids: Sequence[str], **index_options: Any) -> DeleteReport:
    """Delete ``ids`` from the index at ``location``; ids it does not hold are reported, not an error."""
    from indexers import open_index

    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted or any(not i.strip() for i in wanted):
        raise ValueError("give the ids of the documents to delete (non-empty)")
    index = open_index(location, **index_options)
    try:
        stored = set()
        for start in range(0, len(wanted), 1000):
            stored.update(index.stored_hashes(wanted[start : start + 1000]))
        report = DeleteReport(location=index.location)
        report.deleted = [i for i in wanted if i in stored]
        report.missing = [i for i in wanted if i not in stored]
        if report.deleted:
            index.ensure_free_space(256 * len(report.deleted))  # a delete is a write too
            index.delete(report.deleted)
        report.count = index.count()
    finally:
        index.close()
    return report


def cmd_delete(args: argparse.Namespace) -> int:
    from pipelines.cli import _index_options

    report = delete_documents(args.index, args.ids, **_index_options(args, args.index))
    print(dumps(asdict(report)) if args.json else report.summary())
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search delete`` on the CLI's subparsers."""
    from pipelines.cli import LOCATION_HELP, add_credential_arguments

    p = subparsers.add_parser(
        "delete",
        help="delete documents from an index by id",
        description="Delete documents from an index by their corpus ids. Ids the index does not hold are listed. "
        "To drop everything a corpus no longer has, use: hybrid-search index CORPUS --index IDX --prune",
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="corpus ids of the documents to delete")
    p.add_argument("--index", required=True, help=LOCATION_HELP)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_credential_arguments(p)
    p.set_defaults(func=cmd_delete)
    return p
