"""Draw the before/after chart of fine-tuning runs from their ``finetune.json`` reports.

    python benchmarks/finetune_chart.py runs/splade runs/inference-free runs/cross-encoder \
        --labels "SPLADE" "inference-free" "reranker" --out docs/finetuning-scifact.png

One pair of bars per run: nDCG@10 before (the base model, or the first stage for a cross-encoder) and after
fine-tuning, on the run's evaluation set, with the difference and the paired test's p-value written above.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(folder: Path) -> dict:
    path = folder / "finetune.json" if folder.is_dir() else folder
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="fine-tuning output folders (or finetune.json files)")
    parser.add_argument("--labels", nargs="+", help="a label per run (default: the folder names)")
    parser.add_argument("--title", default="Fine-tuning on SciFact: nDCG@10 on the test split")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [load(r) for r in args.runs]
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(reports):
        parser.error("give one label per run")
    before = [r["before"]["metrics"]["nDCG@10"] * 100 for r in reports]
    after = [r["after"]["metrics"]["nDCG@10"] * 100 for r in reports]
    fig, ax = plt.subplots(figsize=(1.9 * len(reports) + 2, 4.2))
    xs = range(len(reports))
    width = 0.38
    ax.bar([x - width / 2 for x in xs], before, width, label="before", color="#9aa5b1")
    ax.bar([x + width / 2 for x in xs], after, width, label="after fine-tuning", color="#2f6fdb")
    for x, b, a, r in zip(xs, before, after, reports):
        p = r.get("ndcg10_p_value")
        note = f"{a - b:+.1f}" + (f"\np={p:.3f}" if p is not None else "")
        ax.text(x + width / 2, a + 0.6, note, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("nDCG@10")
    low = min(before + after)
    ax.set_ylim(max(0.0, low - 12), max(before + after) + 8)
    ax.set_title(args.title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
