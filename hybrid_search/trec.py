"""TREC files: runs (``qid Q0 docid rank score tag``) and qrels (``qid 0 docid grade``, or BEIR's TSV).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.txt"
    >>> write_trec_run({"q1": {"d1": 2.0, "d2": 1.0}}, path, tag="demo")
    >>> read_trec_run(path)
    {'q1': {'d1': 2.0, 'd2': 1.0}}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import ir_measures

from hybrid_search.readers import ReadError

__all__ = ["read_trec_qrels", "read_trec_run", "write_trec_qrels", "write_trec_run"]


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def read_trec_qrels(path: str | os.PathLike[str], *, error: type[ReadError] = ReadError) -> dict[str, dict[str, int]]:
    """Read TREC (``qid iter docid grade``) or BEIR (``query-id corpus-id score``, tab-separated) qrels.

    A BEIR file may start with a header row (told by a non-integer score in the first row). Blank lines are
    ignored; any other line that does not parse raises ``error`` naming the file and line.
    """
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    first = True
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\n\r").split("\t")
            if len(cols) == 1:  # whitespace-separated TREC style
                cols = line.split()
            if len(cols) == 3:
                qid, did, grade = cols
            elif len(cols) == 4:
                qid, _, did, grade = cols
            else:
                raise error(
                    f"{path}:{line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}"
                )
            grade = grade.strip()
            if first:
                first = False
                if not _is_int(grade):  # header row such as "query-id\tcorpus-id\tscore"
                    continue
            if not _is_int(grade):
                try:
                    as_float = float(grade)
                except ValueError:
                    as_float = float("nan")
                if not as_float.is_integer():
                    raise error(f"{path}:{line_no}: relevance grade {grade!r} is not an integer")
                grade = str(int(as_float))
            qrels.setdefault(qid.strip(), {})[did.strip()] = int(grade)
    return qrels


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str], tag: str) -> None:
    """Write a run in TREC format: ``qid Q0 docid rank score tag``.

    Queries are written in sorted order, documents by descending score (ties by id).

    Args:
        run: ``{query_id: {doc_id: score}}``.
        path: Output file; parent folders are created.
        tag: Run tag (no whitespace).
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be non-empty and contain no whitespace: {tag!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for qid in sorted(run):
            ranked = sorted(run[qid].items(), key=lambda kv: (-float(kv[1]), kv[0]))
            for rank, (did, score) in enumerate(ranked, start=1):
                fh.write(f"{qid} Q0 {did} {rank} {float(score)!r} {tag}\n")


def read_trec_run(path: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Read a TREC run file into ``{query_id: {doc_id: score}}``."""
    run: dict[str, dict[str, float]] = {}
    for sd in ir_measures.read_trec_run(os.fspath(path)):
        run.setdefault(sd.query_id, {})[sd.doc_id] = float(sd.score)
    return run


def write_trec_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | os.PathLike[str]) -> None:
    """Write qrels in TREC format: ``qid 0 docid grade``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for qid in sorted(qrels):
            for did in sorted(qrels[qid]):
                fh.write(f"{qid} 0 {did} {int(qrels[qid][did])}\n")
