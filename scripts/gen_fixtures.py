#!/usr/bin/env python3
"""Generates the torchvision parity fixtures under tests/fixtures/, and checks exported files.

    python3 scripts/gen_fixtures.py                    # writes tests/fixtures/*
    python3 scripts/gen_fixtures.py --check-export model.safetensors

Fixtures (fixed seeds, 10 classes, 64x64 inputs (see SIZE), batch of 2, dropout 0 so that
train-mode logits are deterministic):

    <name>.safetensors     the torchvision state_dict (weights stored as float16, see below)
    <name>.pth             the same state_dict through torch.save (v3_small only)
    <name>_io.safetensors  input, eval_logits, train_logits; for v2 also target, loss and
                           grad.<key> (the gradient of the mean cross-entropy of the
                           train-mode logits for a few named parameters), all computed
                           in float64 from the stored weights

Weights are random (the default initialisation, plus random BatchNorm affine parameters
and running statistics so that eval mode really uses them) and then rounded to float16
values, so that the files stay small: the expected outputs are computed in float64 from
exactly those rounded values, so both sides see the same numbers. A draw is kept only if
float32 rounding cannot move its outputs by more than a tenth of the tests' tolerances
(see `stable`); SIZE and BN_BIAS_MEAN say why the inputs are 64x64 and the BatchNorm
biases positive.

--check-export loads a file written by dwconv's torchvision export into the matching
torchvision model with load_state_dict(strict=True) and compares its logits on the probe
input (see `probe_input`) with the logits dwconv recorded in the file's metadata.
"""

import argparse
import copy
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import torchvision
from safetensors import safe_open
from safetensors.torch import save_file, load_file

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

BUILDERS = {
    "v2": torchvision.models.mobilenet_v2,
    "v3-small": torchvision.models.mobilenet_v3_small,
    "v3-large": torchvision.models.mobilenet_v3_large,
}

# name, architecture, width multiplier, seed.
CASES = [
    ("v2_w050", "v2", 0.5, 1),
    ("v3_small_w050", "v3-small", 0.5, 2),
    ("v3_large_w035", "v3-large", 0.35, 3),
]

# Input size. At 32x32 with a batch of 2 train mode is degenerate: the last layers have
# 1x1 maps, so each train-mode BatchNorm normalises two values to about -1 and +1
# whatever they are; its backward pass is zero up to eps / variance, every gradient
# upstream of it is rounding noise, and train-mode logits move by 1e-4 to 1e-3 under
# float32 rounding (V3-Large: every draw tried). At 64x64 those maps are 2x2 (eight values).
SIZE = 64

# Mean of the random BatchNorm biases. With biases around 0, half of all activations sit
# at the ReLU6/ReLU kink, and in the 2x2 layers a rounding error that moves one of those
# eight values across it moves V2's early gradients by 1e-2 (every draw tried). Around +1
# about a sixth of the values are still clipped at 0, but few sit within rounding
# distance of the kink; `stable` checks that for the draw kept.
BN_BIAS_MEAN = 1.0

# Parameters of V2 whose gradients are recorded: stem conv and BN, the three convs of an
# expanding block (expand 1x1, depthwise 3x3, project 1x1), a stride-2 depthwise conv
# into the 2x2 maps, a residual block's projection there, the last BN and the classifier.
V2_GRADIENT_KEYS = [
    "features.0.0.weight",
    "features.0.1.weight",
    "features.1.conv.0.0.weight",
    "features.2.conv.0.0.weight",
    "features.2.conv.1.0.weight",
    "features.2.conv.2.weight",
    "features.3.conv.1.1.weight",
    "features.14.conv.1.0.weight",
    "features.16.conv.2.weight",
    "features.18.1.bias",
    "classifier.1.weight",
    "classifier.1.bias",
]

NUM_CLASSES = 10
BATCH = 2


def build(architecture, width, num_classes=NUM_CLASSES, dropout=0.0):
    return BUILDERS[architecture](num_classes=num_classes, width_mult=width, dropout=dropout)


def randomise(model, generator):
    """Random BN affine parameters (biases around BN_BIAS_MEAN), running statistics near
    those of random inputs (so that eval mode neither saturates nor ignores
    its input), random linear biases; then every float tensor rounded to a float16 value."""
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in batch_norms:
            n = bn.num_features
            bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.2 + BN_BIAS_MEAN)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
        # Calibrate: cumulative batch statistics of random images, then perturbed.
        for bn in batch_norms:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        model(torch.randn(16, 3, SIZE, SIZE, generator=generator))
        for bn in batch_norms:
            n = bn.num_features
            spread = bn.running_var.sqrt()
            bn.running_mean.add_(torch.randn(n, generator=generator) * 0.2 * spread)
            bn.running_var.mul_(torch.rand(n, generator=generator) * 0.6 + 0.7)
            bn.momentum = 0.1
            bn.num_batches_tracked.zero_()
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def outputs(model, x, architecture, dtype, channels_last=False):
    """Eval logits, train logits and (V2) loss and gradients, computed in `dtype` on a
    copy of the model (train mode updates BatchNorm running statistics)."""
    model = copy.deepcopy(model).to(dtype)
    x = x.to(dtype)
    if channels_last:
        # Other kernels, other summation orders: another float32 implementation.
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.eval()
    with torch.no_grad():
        out = {"eval_logits": model(x)}
    model.train()
    train_logits = model(x)
    out["train_logits"] = train_logits.detach()
    if architecture == "v2":
        target = torch.tensor([3, 7])
        loss = F.cross_entropy(train_logits, target)
        loss.backward()
        parameters = dict(model.named_parameters())
        out["target"] = target
        out["loss"] = loss.detach().reshape(1)
        for key in V2_GRADIENT_KEYS:
            out["grad." + key] = parameters[key].grad
    return out


def relative(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def perturbed(model, x, relative_noise, seed):
    """The model and input with every value multiplied by (1 + relative_noise * N(0, 1)),
    in float64: what rounding in another float32 implementation amounts to."""
    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model).double()
    with torch.no_grad():
        for tensor in model.parameters():
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
            tensor.mul_(1 + relative_noise * noise)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return model, x.double() * (1 + relative_noise * noise)


def worst_error(results, expected):
    """The largest error of any result, as a fraction of its bound (2e-5 relative on
    logits and loss, 1e-4 on gradients)."""
    return max(relative(result[k], expected[k]) / (1e-4 if k.startswith("grad.") else 2e-5)
               for result in results for k in expected if k != "target")


def stable(model, x, architecture, expected):
    """How far float32 results can land from the float64 ones: PyTorch float32 in two
    memory formats, and float64 with 3e-7 relative noise (about 3 float32 roundings) on
    every weight and input value, six draws. A test bound ten times looser than the
    fixture's tolerance then holds for any correct float32 implementation, not just
    for PyTorch's summation order."""
    results = [outputs(model, x, architecture, torch.float32),
               outputs(model, x, architecture, torch.float32, channels_last=True)]
    for seed in range(6):
        results.append(outputs(*perturbed(model, x, 3e-7, seed), architecture, torch.float64))
    return worst_error(results, expected)


def generate(name, architecture, width, seed):
    """Draws weights and an input until the case is well conditioned (`stable`), then
    stores the float64 results as the expected values."""
    for attempt in range(50):
        draw = seed + 1000 * attempt
        torch.manual_seed(draw)
        generator = torch.Generator().manual_seed(draw)
        model = build(architecture, width)
        randomise(model, generator)
        x = torch.randn(BATCH, 3, SIZE, SIZE, generator=generator)
        double = outputs(model, x, architecture, torch.float64)
        worst = stable(model, x, architecture, double)
        if worst <= 1.0:
            break
    else:
        sys.exit(f"{name}: no well-conditioned draw in 50 attempts")

    state = model.state_dict()
    io = {"input": x.contiguous()}
    for key, value in double.items():
        io[key] = (value.float() if value.is_floating_point() else value).contiguous()
    weights = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    metadata = {
        "architecture": architecture,
        "width_mult": str(width),
        "num_classes": str(NUM_CLASSES),
        "input_size": str(SIZE),
        "bn_bias_mean": str(BN_BIAS_MEAN),
        "seed": str(draw),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "script": "scripts/gen_fixtures.py",
    }
    os.makedirs(FIXTURES, exist_ok=True)
    save_file(weights, os.path.join(FIXTURES, name + ".safetensors"), metadata=metadata)
    save_file(io, os.path.join(FIXTURES, name + "_io.safetensors"), metadata=metadata)
    if architecture == "v3-small":
        torch.save(weights, os.path.join(FIXTURES, name + ".pth"))
    print(f"{name}: {architecture} width {width}, seed {draw} (attempt {attempt + 1}): "
          f"{len(state)} tensors, float32 vs float64 {worst:.2f} of the bound, "
          f"eval logits {io['eval_logits'][0, :3].tolist()}...")


def hook_conv_and_linear_macs(model):
    """Registers forward hooks on every Conv2d and Linear of `model` that add their
    multiply-adds for one image to the returned one-element list."""
    macs = [0]

    def conv_hook(module, inputs, output):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        macs[0] += output[0].numel() * per_output

    def linear_hook(module, inputs, output):
        macs[0] += module.in_features * module.out_features

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(conv_hook)
        elif isinstance(module, torch.nn.Linear):
            module.register_forward_hook(linear_hook)
    return macs


def train_gradients(model, x, target, dtype, channels_last=False, noise=0.0, seed=0):
    """Input and parameter gradients of the mean cross-entropy of train-mode logits."""
    model = copy.deepcopy(model).to(dtype).train()
    if noise:
        g = torch.Generator().manual_seed(seed)
        x = x * (1 + noise * torch.randn(x.shape, generator=g, dtype=x.dtype))
    x = x.to(dtype).detach()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    F.cross_entropy(model(x), target).backward()
    grads = {k: p.grad.double() for k, p in model.named_parameters()}
    grads["input"] = x.grad.double()
    return grads


def worst_gradient_error(model, x, target, expected):
    """How far float32 gradients can land from the float64 ones (relative to each
    tensor's largest value): PyTorch in both memory formats, and float64 with 1e-6
    relative noise on the input. A draw with a pre-activation within rounding distance
    of a ReLU kink moves a gradient by far more than rounding; such draws are refused."""
    worst = 0.0
    for result in [
        train_gradients(model, x, target, torch.float32),
        train_gradients(model, x, target, torch.float32, channels_last=True),
        train_gradients(model, x, target, torch.float64, noise=1e-6, seed=1),
        train_gradients(model, x, target, torch.float64, noise=1e-6, seed=2),
    ]:
        for key, value in expected.items():
            scale = value.abs().max().clamp_min(1e-12)
            if scale < 1e-8:
                continue  # a gradient that is zero in exact arithmetic (e.g. a key bias)
            worst = max(worst, ((result[key] - value).abs().max() / scale).item())
    return worst


def write_model_fixtures(base, name, model, generator, num_classes, gradient_keys, metadata,
                         pth=True):
    """Writes `base`.safetensors and (with `pth`) `base`.pth (the randomised model's state
    dict, float16 values) and `base`_io.safetensors: input [2, 3, SIZE, SIZE] and eval_logits, and with
    `gradient_keys` also train_input [4, 3, SIZE, SIZE], target, train_logits, loss (mean
    cross-entropy of the train-mode logits) and grad.input, grad.<key>, all computed in
    float64 from the stored values. A draw whose float32 gradients can land more than 1e-4
    from the float64 ones (`worst_gradient_error`) is refused."""
    weights = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(weights, base + ".safetensors", metadata=metadata)
    if pth:
        torch.save(weights, base + ".pth")

    model_copy = copy.deepcopy(model)
    double = model.double()
    x = torch.randn(2, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        io = {"input": x, "eval_logits": double(x)}
    if gradient_keys:
        train_x = torch.randn(4, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)
        target = torch.randint(0, num_classes, (4,), generator=generator)
        double.train()
        train_x.requires_grad_(True)
        logits = double(train_x)
        loss = F.cross_entropy(logits, target)
        loss.backward()
        parameters = dict(double.named_parameters())
        expected = {k: parameters[k].grad for k in gradient_keys}
        expected["input"] = train_x.grad
        worst = worst_gradient_error(model_copy, train_x.detach(), target, expected)
        if worst > 1e-4:
            raise SystemExit(f"{name}: this draw is unstable ({worst:.1e}); pick another seed")
        io.update({
            "train_input": train_x.detach(),
            "target": target,
            "train_logits": logits.detach(),
            "loss": loss.detach().reshape(1),
            "grad.input": train_x.grad,
        })
        for key in gradient_keys:
            io["grad." + key] = parameters[key].grad
    io = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in io.items()}
    save_file(io, base + "_io.safetensors", metadata=metadata)
    print(f"{name}: {len(weights)} tensors, eval logits {io['eval_logits'][0, :3].tolist()}")


def probe_input(batch, size):
    """The input dwconv's export records logits for: sin(0.37 * i) * 2 over the flat
    index i of a [batch, 3, size, size] tensor, computed in float64, stored as float32."""
    n = batch * 3 * size * size
    i = torch.arange(n, dtype=torch.float64)
    return (torch.sin(0.37 * i) * 2.0).float().reshape(batch, 3, size, size)


def check_export(path):
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    for key in ("dwconv.architecture", "dwconv.width_mult", "dwconv.probe_shape",
                "dwconv.probe_logits"):
        if key not in metadata:
            sys.exit(f"{path}: metadata has no {key!r}: not written by dwconv's export?")
    architecture = metadata["dwconv.architecture"]
    if architecture not in BUILDERS:
        sys.exit(f"{path}: architecture {architecture!r} has no torchvision model "
                 f"(expected one of {sorted(BUILDERS)})")
    width = float(metadata["dwconv.width_mult"])
    state = load_file(path)
    classifier = "classifier.1.weight" if architecture == "v2" else "classifier.3.weight"
    num_classes = state[classifier].shape[0]
    model = build(architecture, width, num_classes=num_classes, dropout=0.2)
    model.load_state_dict(state, strict=True)
    model.eval()
    batch, _, size, _ = json.loads(metadata["dwconv.probe_shape"])
    expected = torch.tensor(json.loads(metadata["dwconv.probe_logits"]), dtype=torch.float32)
    with torch.no_grad():
        logits = model(probe_input(batch, size)).reshape(-1)
    diff = (logits - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-12)
    print(f"{path}: torchvision {torchvision.__version__} {architecture} width {width}, "
          f"{num_classes} classes: load_state_dict(strict=True) ok, {len(state)} tensors")
    print(f"probe {batch}x3x{size}x{size}: max |torchvision - dwconv| = {diff:.3e}, "
          f"relative {diff / scale:.3e}")
    if not diff <= 1e-4 * scale:
        sys.exit("logits differ by more than 1e-4 relative")
    print("export check passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-export", metavar="FILE",
                        help="load a dwconv export into torchvision strictly and compare logits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.check_export:
        check_export(args.check_export)
        return
    for case in CASES:
        generate(*case)


if __name__ == "__main__":
    main()
