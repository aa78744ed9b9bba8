#!/usr/bin/env python3
"""BENCHMARKS.md tables from several rounds of benchmark JSON files: each row gives every
round's figure and their median, and the ratio of the medians against PyTorch's best
layout (the faster of its NCHW and channels_last medians).

    python3 scripts/rounds_table.py nd_1.json nd_2.json nd_3.json flex_*.json torch_*.json

A file's round is the number before `.json` (`nd_2.json` is round 2); files of one round
are one side-by-side run. Layer rows compare forward + backward times, end-to-end rows
training and inference throughput (the BatchNorm-folded inference too, for dwconv rows),
and `--gemm` rows the two GEMM libraries.
"""

import json
import re
import statistics
import sys
from collections import defaultdict


def load(paths):
    """{section: {(row key, implementation): {round: row}}}"""
    sections = defaultdict(lambda: defaultdict(dict))
    for path in paths:
        match = re.search(r"(\d+)\.json$", path)
        if not match:
            sys.exit(f"{path}: expected a round number before .json (e.g. nd_1.json)")
        round_ = int(match.group(1))
        with open(path) as f:
            report = json.load(f)
        for section, key in (("layers", "layer"), ("end_to_end", "model"), ("gemm", "layer")):
            for row in report.get(section, []):
                sections[section][(row[key], row["implementation"])][round_] = row
    return sections


def rounds(by_round, field):
    values = [by_round[r][field] for r in sorted(by_round) if field in by_round[r]]
    return values, statistics.median(values) if values else None


def fmt_rounds(values, digits):
    return ", ".join(f"{v:.{digits}f}" for v in values)


def layer_table(rows):
    print("| layer | implementation | fwd ms | f+b ms | f+b vs PyTorch best | f+b per round (ms) |")
    print("|---|---|---:|---:|---:|---|")
    layers = sorted({layer for layer, _ in rows}, key=lambda l: list(rows).index(
        next(k for k in rows if k[0] == l)))
    for layer in layers:
        impls = {impl: by_round for (l, impl), by_round in rows.items() if l == layer}
        torch = [rounds(r, "forward_backward_ms")[1] for i, r in impls.items()
                 if i.startswith("pytorch")]
        best = min(torch) if torch else None
        for impl in sorted(impls):
            _, fwd = rounds(impls[impl], "forward_ms")
            values, fb = rounds(impls[impl], "forward_backward_ms")
            ratio = f"{best / fb:.2f}x" if best and impl.startswith("dwconv-") else ""
            print(f"| {layer} | {impl} | {fwd:.2f} | {fb:.2f} | {ratio} | {fmt_rounds(values, 2)} |")


def e2e_table(rows):
    print("| model | implementation | train img/s (rounds) | train median | infer img/s (rounds) "
          "| infer median | infer ms | folded infer img/s | folded ms | train vs PyTorch best "
          "| infer vs PyTorch best (folded) | peak RSS MB |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    models = []
    for model, _ in rows:
        if model not in models:
            models.append(model)
    for model in models:
        impls = {impl: by_round for (m, impl), by_round in rows.items() if m == model}
        torch = {i: r for i, r in impls.items() if i.startswith("pytorch")}
        best_train = max((rounds(r, "train_images_per_s")[1] for r in torch.values()), default=None)
        best_infer = max((rounds(r, "infer_images_per_s")[1] for r in torch.values()), default=None)
        for impl in sorted(impls):
            r = impls[impl]
            train_values, train = rounds(r, "train_images_per_s")
            infer_values, infer = rounds(r, "infer_images_per_s")
            _, infer_ms = rounds(r, "infer_ms")
            _, folded = rounds(r, "infer_fused_images_per_s")
            _, folded_ms = rounds(r, "infer_fused_ms")
            _, rss = rounds(r, "peak_rss_mb")
            vs_train = vs_infer = ""
            if impl.startswith("dwconv-") and best_train:
                vs_train = f"{train / best_train:.2f}x"
                vs_infer = f"{infer / best_infer:.2f}x ({folded / best_infer:.2f}x)"
            folded_cells = f"{folded:.1f} | {folded_ms:.2f}" if folded else " | "
            print(f"| {model} | {impl} | {fmt_rounds(train_values, 1)} | {train:.1f} "
                  f"| {fmt_rounds(infer_values, 1)} | {infer:.1f} | {infer_ms:.2f} "
                  f"| {folded_cells} | {vs_train} | {vs_infer} | {rss:.0f} |")


def gemm_table(rows):
    print("| product | library | fwd ms (rounds) | fwd median | f+b ms (rounds) | f+b median |")
    print("|---|---|---|---:|---|---:|")
    for (layer, impl), by_round in rows.items():
        fwd_values, fwd = rounds(by_round, "forward_ms")
        fb_values, fb = rounds(by_round, "forward_backward_ms")
        print(f"| {layer} | {impl} | {fmt_rounds(fwd_values, 2)} | {fwd:.2f} "
              f"| {fmt_rounds(fb_values, 2)} | {fb:.2f} |")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sections = load(sys.argv[1:])
    printed = False
    for section, table in (("layers", layer_table), ("end_to_end", e2e_table),
                           ("gemm", gemm_table)):
        if sections[section]:
            if printed:
                print()
            table(sections[section])
            printed = True


if __name__ == "__main__":
    main()
