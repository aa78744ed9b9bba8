#!/usr/bin/env python3
"""Side-by-side Markdown tables from several benchmark JSON files (any mix of
`cargo run --example bench -- --json` and `scripts/bench_torch.py --json` outputs).

    python3 scripts/compare_bench.py ndarray.json flex.json torch.json

Rows are grouped by layer; every implementation gets its forward and forward+backward
time, and the ratio columns compare each dwconv row with PyTorch's best (the faster of
NCHW and channels_last) and with Burn's stock grouped conv on the same backend. The
pointwise table compares each formulation of the 1x1 conv with the batched one.
"""

import json
import sys


def load(paths):
    layers, e2e, pointwise = {}, {}, {}
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        for row in report.get("layers", []):
            layers.setdefault(row["layer"], {})[row["implementation"]] = row
        for row in report.get("end_to_end", []):
            e2e.setdefault(row["model"], {})[row["implementation"]] = row
        for row in report.get("pointwise", []):
            pointwise.setdefault(row["layer"], {})[row["implementation"]] = row
    return layers, e2e, pointwise


def best_torch(rows, key):
    torch_rows = [r for name, r in rows.items() if name.startswith("pytorch")]
    if not torch_rows:
        return None
    return min(torch_rows, key=lambda r: r[key]) if key.endswith("_ms") else \
        max(torch_rows, key=lambda r: r[key])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    layers, e2e, pointwise = load(sys.argv[1:])
    if layers:
        print("| layer | implementation | fwd ms | f+b ms | f+b vs PyTorch best "
              "| f+b vs Burn stock |")
        print("|---|---|---:|---:|---:|---:|")
    for layer, rows in layers.items():
        torch_best = best_torch(rows, "forward_backward_ms")
        for name, r in sorted(rows.items()):
            vs_torch = vs_stock = ""
            if name.startswith("dwconv-"):
                backend = name[len("dwconv-"):].rsplit("-", 1)[0]
                if torch_best:
                    vs_torch = f"{torch_best['forward_backward_ms'] / r['forward_backward_ms']:.2f}x"
                stock = rows.get(f"burn-stock-{backend}")
                if stock:
                    vs_stock = f"{stock['forward_backward_ms'] / r['forward_backward_ms']:.1f}x"
            print(f"| {layer} | {name} | {r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} "
                  f"| {vs_torch} | {vs_stock} |")
    if e2e:
        print()
        print("| model | implementation | train img/s | infer img/s | infer ms | train vs PyTorch best "
              "| infer vs PyTorch best | peak RSS MB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for model, rows in e2e.items():
            best_train = best_torch(rows, "train_images_per_s")
            best_infer = best_torch(rows, "infer_images_per_s")
            for name, r in sorted(rows.items()):
                # dwconv rows also give the BatchNorm-folded inference, as its own line.
                variants = [(name, r["infer_images_per_s"], r["infer_ms"], True)]
                if "infer_fused_images_per_s" in r:
                    variants.append((name + " (BN folded)", r["infer_fused_images_per_s"],
                                     r["infer_fused_ms"], False))
                for label, infer, infer_ms, with_train in variants:
                    vs_train = vs_infer = ""
                    if name.startswith("dwconv-") and best_train:
                        if with_train:
                            vs_train = f"{r['train_images_per_s'] / best_train['train_images_per_s']:.3f}x"
                        vs_infer = f"{infer / best_infer['infer_images_per_s']:.3f}x"
                    train = f"{r['train_images_per_s']:.1f}" if with_train else ""
                    print(f"| {model} | {label} | {train} | {infer:.1f} | {infer_ms:.2f} "
                          f"| {vs_train} | {vs_infer} | {r['peak_rss_mb']:.0f} |")


    if pointwise:
        print()
        print("| 1x1 conv | implementation | fwd ms | f+b ms | f+b vs batched |")
        print("|---|---|---:|---:|---:|")
        for layer, rows in pointwise.items():
            for name, r in sorted(rows.items()):
                backend = name.split("-", 1)[1]
                batched = rows.get(f"batched-{backend}")
                ratio = f"{batched['forward_backward_ms'] / r['forward_backward_ms']:.2f}x" \
                    if batched else ""
                print(f"| {layer} | {name} | {r['forward_ms']:.2f} | "
                      f"{r['forward_backward_ms']:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
