#!/usr/bin/env python3
"""Generates the EfficientNet and MnasNet fixtures under tests/fixtures/ from torchvision.

    python3 scripts/gen_efficientnet_fixtures.py     # writes tests/fixtures/{efficientnet,mnasnet}*

Needs torch, torchvision and safetensors. Files:

    torchvision_family_counts.json   per variant at its reference width and 1000 classes:
                                     torchvision's parameter count (sum of p.numel()) and
                                     multiply-adds at 224x224 counted with forward hooks on
                                     every Conv2d and Linear
    <case>.safetensors, <case>.pth   the state dict of the case below, 10 classes, random
                                     weights (gen_fixtures.randomise), float16 values (no
                                     .pth for mnasnet_w100, 6 MB: mnasnet_w050's tests
                                     the format for MnasNet)
    <case>_io.safetensors            input [2, 3, 64, 64] and eval_logits; for the cases with
                                     gradient keys also a train-mode cross-entropy step
                                     (gen_fixtures.write_model_fixtures)

The EfficientNets are built at a width multiplier on top of the variant's own width
coefficient (dwconv's `--width-mult`; torchvision's builder takes the product as its
`width_mult`), so that the fixtures stay small; the parameter counts above check the
full-width models. Stochastic depth and dropout are off so that train mode is
deterministic.
"""

import json
import os
from functools import partial

import torch
import torchvision
from torchvision.models import efficientnet as tv_efficientnet

import gen_fixtures

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
NUM_CLASSES = 10

# Our name, torchvision's builder, width coefficient, depth coefficient.
EFFICIENTNETS = {
    "efficientnet-b0": ("efficientnet_b0", 1.0, 1.0),
    "efficientnet-b1": ("efficientnet_b1", 1.0, 1.1),
    "efficientnet-b2": ("efficientnet_b2", 1.1, 1.2),
    "efficientnet-b3": ("efficientnet_b3", 1.2, 1.4),
    "efficientnet-b4": ("efficientnet_b4", 1.4, 1.8),
    "efficientnet-b5": ("efficientnet_b5", 1.6, 2.2),
    "efficientnet-b6": ("efficientnet_b6", 1.8, 2.6),
    "efficientnet-b7": ("efficientnet_b7", 2.0, 3.1),
    "efficientnet-v2-s": ("efficientnet_v2_s", 1.0, 1.0),
    "efficientnet-v2-m": ("efficientnet_v2_m", 1.0, 1.0),
    "efficientnet-v2-l": ("efficientnet_v2_l", 1.0, 1.0),
}
MNASNETS = {"mnasnet": [0.5, 0.75, 1.0, 1.3]}

# Fixture name, our name, width multiplier, seed, parameters whose gradients are recorded
# (None: none)
# (one per block kind and part: stem, MBConv expand / depthwise / squeeze-excitation /
# project, FusedMBConv with and without projection, last conv, classifier).
CASES = [
    ("efficientnet_b0_w050", "efficientnet-b0", 0.5, 21, [
        "features.0.0.weight",
        "features.0.1.weight",
        "features.1.0.block.0.0.weight",
        "features.1.0.block.1.fc1.weight",
        "features.1.0.block.1.fc2.bias",
        "features.2.0.block.0.0.weight",
        "features.2.1.block.1.1.bias",
        "features.4.2.block.2.fc1.bias",
        "features.6.3.block.3.0.weight",
        "features.7.0.block.3.1.weight",
        "features.8.0.weight",
        "classifier.1.weight",
        "classifier.1.bias",
    ]),
    ("efficientnet_b3_w025", "efficientnet-b3", 0.25, 22, None),
    ("efficientnet_v2_s_w025", "efficientnet-v2-s", 0.25, 23, [
        "features.0.0.weight",
        "features.1.0.block.0.0.weight",
        "features.1.1.block.0.1.bias",
        "features.2.0.block.0.0.weight",
        "features.2.3.block.1.0.weight",
        "features.3.1.block.1.1.weight",
        "features.4.0.block.2.fc2.weight",
        "features.5.4.block.1.0.weight",
        "features.6.14.block.3.0.weight",
        "features.7.0.weight",
        "classifier.1.weight",
    ]),
    ("efficientnet_v2_m_w0125", "efficientnet-v2-m", 0.125, 24, None),
    ("mnasnet_w100", "mnasnet", 1.0, 25, None),
    ("mnasnet_w050", "mnasnet", 0.5, 26, None),
]


def efficientnet(name, width_mult, num_classes, dropout=0.0, stochastic_depth_prob=0.0):
    """torchvision's EfficientNet `name` with `width_mult` times its width coefficient."""
    builder, width, depth = EFFICIENTNETS[name]
    if builder.startswith("efficientnet_b"):
        setting, last = tv_efficientnet._efficientnet_conf(
            builder, width_mult=width * width_mult, depth_mult=depth)
        big = builder in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")
        norm = partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.01) if big else None
    else:
        setting, last = tv_efficientnet._efficientnet_conf(builder)
        adjust = partial(tv_efficientnet._MBConvConfig.adjust_channels, width_mult=width_mult)
        setting = [
            type(c)(c.expand_ratio, c.kernel, c.stride, adjust(c.input_channels),
                    adjust(c.out_channels), c.num_layers)
            for c in setting
        ]
        norm = partial(torch.nn.BatchNorm2d, eps=1e-03)
    return tv_efficientnet.EfficientNet(
        setting, dropout, stochastic_depth_prob=stochastic_depth_prob, num_classes=num_classes,
        norm_layer=norm, last_channel=last)


def build(name, width_mult, num_classes=NUM_CLASSES):
    if name == "mnasnet":
        model = torchvision.models.MNASNet(width_mult, num_classes=num_classes, dropout=0.0)
    else:
        model = efficientnet(name, width_mult, num_classes)
    return model.eval()


def count(model):
    """Parameters and hooked multiply-adds at 224x224."""
    params = sum(p.numel() for p in model.parameters())
    macs = gen_fixtures.hook_conv_and_linear_macs(model)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 224, 224))
    return {"params": params, "macs": macs[0]}


def counts():
    """Every variant as torchvision's own builder makes it (1000 classes)."""
    result = {}
    for name, (builder, _, _) in EFFICIENTNETS.items():
        model = getattr(torchvision.models, builder)()
        # The builder and ours must agree before the counts mean anything.
        assert sum(p.numel() for p in model.parameters()) == \
            sum(p.numel() for p in efficientnet(name, 1.0, 1000).parameters()), name
        result[name] = count(model)
    for alpha in MNASNETS["mnasnet"]:
        result[f"mnasnet@{alpha}"] = count(torchvision.models.MNASNet(alpha))
    return result


def main():
    table = counts()
    with open(os.path.join(FIXTURES, "torchvision_family_counts.json"), "w") as f:
        json.dump(table, f, indent=2)
        f.write("\n")
    print(json.dumps(table))
    for fixture, name, width_mult, seed, gradient_keys in CASES:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = build(name, width_mult)
        gen_fixtures.randomise(model, generator)
        model.eval()
        metadata = {"variant": name, "width_mult": str(width_mult),
                    "torchvision": torchvision.__version__,
                    "script": "scripts/gen_efficientnet_fixtures.py"}
        gen_fixtures.write_model_fixtures(
            os.path.join(FIXTURES, fixture), name, model, generator, NUM_CLASSES,
            gradient_keys, metadata, pth=fixture != "mnasnet_w100")


if __name__ == "__main__":
    main()
