"""Writes src/pretrained/imagenet_classes.txt: the 1000 ImageNet-1K class names in label
order, one per line, as torchvision's weights metadata lists them (the names `infer
--pretrained` prints). Run: python scripts/gen_imagenet_classes.py"""

from pathlib import Path

from torchvision.models import MobileNet_V2_Weights

categories = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
assert len(categories) == 1000
out = Path(__file__).resolve().parent.parent / "src" / "pretrained" / "imagenet_classes.txt"
out.write_text("".join(f"{name}\n" for name in categories))
print(f"wrote {out} ({len(categories)} names)")
