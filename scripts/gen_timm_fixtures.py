#!/usr/bin/env python3
"""Generates the MobileNetV4 fixtures under tests/fixtures/ from timm's models.

    python3 scripts/gen_timm_fixtures.py           # writes tests/fixtures/v4_*

Needs torch, timm and safetensors (pip install torch timm safetensors); written against
timm 1.0 (`timm.models.mobilenetv3._gen_mobilenet_v4`, which takes the width multiplier
that `timm.create_model` does not pass on).

Files:

    v4_counts.json                 per variant at width 1.0 and 1000 classes: timm's
                                   parameter count (sum of p.numel()) and multiply-adds at
                                   224x224 counted with forward hooks: every Conv2d and
                                   Linear, plus, in the hybrids' attention, the two matrix
                                   products (scores q.k and the weighted sum of values)
    v4_<variant>_w025.safetensors  the state dict of the variant at width 0.25, 10 classes,
                                   random weights (below), stored as float16
    v4_<variant>_w025.pth          the same through torch.save
    v4_<variant>_w025_io.safetensors
                                   input [2, 3, 64, 64] and eval_logits; for conv_small and
                                   hybrid_medium also train_input [4, 3, 64, 64], target,
                                   train_logits, loss (mean cross-entropy of the train-mode
                                   logits) and grad.input, grad.<key> (its gradients)

Weights are random: timm's initialisation, then random BatchNorm affine parameters
(biases around +1, so that few activations sit at the ReLU kink where float32 rounding
could flip them), running statistics calibrated on random images and then perturbed,
random layer-scale factors around 1 (timm starts them at 1e-5, which would hide the
branches), random linear biases; every tensor is then rounded to a float16 value and the
expected outputs computed in float64 from exactly those values.
"""

import json
import os

import torch
from timm.models.mobilenetv3 import _gen_mobilenet_v4

import gen_fixtures

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

# Our name, timm's name, seed.
VARIANTS = [
    ("v4-conv-small", "mobilenetv4_conv_small", 11),
    ("v4-conv-medium", "mobilenetv4_conv_medium", 12),
    ("v4-conv-large", "mobilenetv4_conv_large", 13),
    ("v4-hybrid-medium", "mobilenetv4_hybrid_medium", 14),
    ("v4-hybrid-large", "mobilenetv4_hybrid_large", 15),
]
WIDTH = 0.25
NUM_CLASSES = 10
SIZE = gen_fixtures.SIZE
# Parameters whose gradients are recorded, for one variant without attention and one with:
# one per block kind and part the variant has
# (the stem, conv, fused, universal (start / expand / middle / project), attention (norm,
# projections, key/value downsampling, layer scale), head conv and classifier).
GRADIENT_KEYS = {
    "v4-conv-small": [
        "conv_stem.weight",
        "bn1.weight",
        "blocks.0.0.conv.weight",
        "blocks.1.1.bn1.bias",
        "blocks.2.0.dw_start.conv.weight",
        "blocks.2.0.pw_exp.conv.weight",
        "blocks.2.0.dw_mid.conv.weight",
        "blocks.2.1.pw_proj.conv.weight",
        "blocks.2.5.dw_start.bn.weight",
        "blocks.3.4.dw_mid.bn.bias",
        "blocks.4.0.bn1.weight",
        "norm_head.weight",
        "classifier.weight",
        "classifier.bias",
    ],
    "v4-hybrid-medium": [
        "conv_stem.weight",
        "blocks.0.0.conv_exp.weight",
        "blocks.0.0.bn2.bias",
        "blocks.1.0.dw_start.conv.weight",
        "blocks.1.1.layer_scale.gamma",
        "blocks.2.1.pw_exp.conv.weight",
        "blocks.2.4.norm.weight",
        "blocks.2.4.attn.query.proj.weight",
        "blocks.2.4.attn.key.down_conv.weight",
        "blocks.2.4.attn.value.norm.bias",
        "blocks.2.4.attn.value.proj.weight",
        "blocks.2.4.attn.output.proj.weight",
        "blocks.2.4.layer_scale.gamma",
        "blocks.3.8.attn.key.proj.weight",
        "blocks.3.15.dw_start.conv.weight",
        "norm_head.bias",
        "classifier.weight",
    ],
}


def build(timm_name, width, num_classes):
    model = _gen_mobilenet_v4(timm_name, width, num_classes=num_classes)
    model.eval()
    return model


def randomise(model, generator):
    """Random layer-scale factors around 1, then the torchvision fixtures' randomisation
    (`gen_fixtures.randomise`: BatchNorm affine and running statistics, linear biases,
    every tensor rounded to a float16 value)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layer_scale.gamma"):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.5 + 0.75)
    gen_fixtures.randomise(model, generator)
    model.eval()


def count(timm_name):
    """timm's parameters and hooked multiply-adds at 224x224, width 1.0, 1000 classes."""
    model = build(timm_name, 1.0, 1000)
    params = sum(p.numel() for p in model.parameters())
    macs = gen_fixtures.hook_conv_and_linear_macs(model)

    key_positions = {}

    def key_hook(attention):
        def hook(module, inputs, output):
            key_positions[attention] = output.shape[2] * output.shape[3]
        return hook

    def attention_hook(module, inputs, output):
        queries = inputs[0].shape[2] * inputs[0].shape[3]
        macs[0] += queries * module.num_heads * key_positions[module] * (module.key_dim + module.value_dim)

    for module in model.modules():
        if type(module).__name__ == "MultiQueryAttention2d":
            module.key.register_forward_hook(key_hook(module))
            module.register_forward_hook(attention_hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return {"params": params, "macs": macs[0]}


def generate(name, timm_name, seed):
    # timm's initialisation draws from the global generator.
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build(timm_name, WIDTH, NUM_CLASSES)
    randomise(model, generator)
    stem = name.replace("-", "_")
    metadata = {"variant": name, "timm": timm_name, "width_mult": str(WIDTH)}
    gen_fixtures.write_model_fixtures(
        os.path.join(FIXTURES, f"{stem}_w025"), name, model, generator, NUM_CLASSES,
        GRADIENT_KEYS.get(name), metadata)


def main():
    counts = {name: count(timm_name) for name, timm_name, _ in VARIANTS}
    with open(os.path.join(FIXTURES, "v4_counts.json"), "w") as f:
        json.dump(counts, f, indent=2)
        f.write("\n")
    print(json.dumps(counts))
    for name, timm_name, seed in VARIANTS:
        generate(name, timm_name, seed)


if __name__ == "__main__":
    main()
