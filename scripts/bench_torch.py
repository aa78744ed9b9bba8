#!/usr/bin/env python3
"""PyTorch side of the depthwise benchmark: the same layer table and end-to-end case as
`cargo run --release --example bench`, printing the same JSON schema with --json.

    python3 scripts/bench_torch.py --repeats 5 --json > torch.json
    python3 scripts/compare_bench.py ours.json torch.json

CPU by default, 2 threads (--threads), OMP_WAIT_POLICY=ACTIVE (set here before torch
loads, as it must be); --device cuda runs on the GPU (cuDNN, `cudnn.benchmark` on, each
timing ends with `torch.cuda.synchronize()`). Every layer and the end-to-end case run in
NCHW and in channels_last; both rows are reported (implementations "pytorch-nchw" and
"pytorch-channels-last"), and the comparison takes the faster one. --layer-batch,
--e2e-size and --e2e-batch scale the workload as examples/bench.rs's flags of the same
names do:

    python3 scripts/bench_torch.py --device cuda --layer-batch 256 --e2e-size 224 \
        --e2e-batch 64,128 --json > torch_cuda.json
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

# [C, H, W], kernel, stride, padding: the table of examples/bench.rs (batch: --layer-batch).
LAYERS = [
    ([96, 32, 32], 3, 1, 1),
    ([144, 32, 32], 3, 1, 1),
    ([384, 8, 8], 3, 1, 1),
    ([960, 4, 4], 3, 1, 1),
    ([144, 32, 32], 3, 2, 1),
    ([240, 8, 8], 5, 1, 2),
]
E2E_CLASSES = 10
DEVICE = torch.device("cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
FORMATS = [("pytorch-nchw", torch.contiguous_format),
           ("pytorch-channels-last", torch.channels_last)]


def median_ms(repeats, f):
    f()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def layer_label(shape, k, stride):
    n, c, h, w = shape
    return f"{k}x{k} s{stride} [{n},{c},{h},{w}]"


def bench_layers(repeats, batch):
    rows = []
    for (c, h, w), k, stride, pad in LAYERS:
        shape = [batch, c, h, w]
        for name, fmt in FORMATS:
            x = torch.randn(shape, device=DEVICE).contiguous(memory_format=fmt).requires_grad_(True)
            weight = torch.randn(c, 1, k, k, device=DEVICE).contiguous(memory_format=fmt)
            weight.requires_grad_(True)
            bias = torch.zeros(c, device=DEVICE, requires_grad=True)
            with torch.no_grad():
                out_shape = F.conv2d(x, weight, bias, stride, pad, 1, c).shape
            grad = torch.randn(out_shape, device=DEVICE).contiguous(memory_format=fmt)

            def forward():
                with torch.no_grad():
                    F.conv2d(x, weight, bias, stride, pad, 1, c)

            def forward_backward():
                x.grad = weight.grad = bias.grad = None
                y = F.conv2d(x, weight, bias, stride, pad, 1, c)
                y.backward(grad)

            rows.append({
                "layer": layer_label(shape, k, stride),
                "implementation": name,
                "forward_ms": median_ms(repeats, forward),
                "forward_backward_ms": median_ms(repeats, forward_backward),
            })
    return rows


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(arch):
    """torchvision's model `arch` (`mobilenet_v2`, `efficientnet_b0`, `mnasnet1_0`, ...), or
    timm's for MobileNetV4 (`mobilenetv4_conv_small`, ...; timm is imported only then), with
    their default drop rates (timm's 0; torchvision's 0.2 dropout on the pooled features,
    and EfficientNet's stochastic depth 0.2, as dwconv's bench builds them)."""
    if arch.startswith("mobilenetv4"):
        import timm
        return timm.create_model(arch, num_classes=E2E_CLASSES)
    return getattr(torchvision.models, arch)(num_classes=E2E_CLASSES)


def bench_end_to_end(repeats, arch, size, batch):
    rows = []
    for name, fmt in FORMATS:
        torch.manual_seed(0)
        model = build(arch)
        model = model.to(DEVICE).to(memory_format=fmt)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(batch, 3, size, size, device=DEVICE).contiguous(memory_format=fmt)
        labels = torch.randint(0, E2E_CLASSES, (batch,), device=DEVICE)

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()

        def infer():
            with torch.inference_mode():
                model(images)

        model.train()
        train_ms = median_ms(repeats, train_step)
        model.eval()
        infer_ms = median_ms(repeats, infer)
        rows.append({
            "model": f"{arch} w1.0 {E2E_CLASSES} classes {size}x{size} batch {batch}",
            "implementation": name,
            "train_ms": train_ms,
            "train_images_per_s": batch / train_ms * 1e3,
            "infer_ms": infer_ms,
            "infer_images_per_s": batch / infer_ms * 1e3,
            # ru_maxrss is the process peak: both formats and the layers so far count.
            "peak_rss_mb": peak_rss_mb(),
        })
    return rows


def main():
    global DEVICE
    parser = argparse.ArgumentParser(description="PyTorch depthwise / MobileNetV2 benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--layer-batch", type=int, default=64)
    parser.add_argument("--e2e-size", type=int, default=32)
    parser.add_argument("--e2e-batch", default="64",
                        help="comma-separated batch sizes, one end-to-end case each")
    parser.add_argument("--e2e-model", default="mobilenet_v2",
                        help="comma-separated torchvision or timm models: mobilenet_v2, efficientnet_b0, "
                             "mobilenet_v3_small, mobilenet_v3_large, mobilenetv4_conv_small, ...")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        torch.backends.cudnn.benchmark = True
    batches = [int(b) for b in args.e2e_batch.split(",")]
    end_to_end = [] if args.skip_end_to_end else [
        row
        for arch in args.e2e_model.split(",")
        for batch in batches
        for row in bench_end_to_end(args.repeats, arch, args.e2e_size, batch)
    ]
    device_name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
    report = {
        "tool": "scripts/bench_torch.py",
        "backend": f"pytorch {torch.__version__} {device_name}",
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        # Measured first, so that the peak memory is the network's, not the layers'.
        "end_to_end": end_to_end,
        "layers": [] if args.skip_layers else bench_layers(args.repeats, args.layer_batch),
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    print(f"{report['backend']} | {report['threads']} threads | median of {args.repeats} (ms)")
    for r in report["layers"]:
        print(f"{r['layer']:<26}{r['implementation']:<24}{r['forward_ms']:>10.2f}"
              f"{r['forward_backward_ms']:>12.2f}")
    for r in report["end_to_end"]:
        print(f"{r['model']}  {r['implementation']}: train {r['train_images_per_s']:.1f} img/s, "
              f"infer {r['infer_images_per_s']:.1f} img/s, peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
