"""Models, images and targets named by a string — the vocabulary of the command line and of
``pathattr.run`` (built-in names, ``module:factory``, TorchScript files, ``photo:NAME``) — with
one-line errors that name the bad argument (``SettingError``, exit code 2)."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from .errors import SettingError, one_line, printable
from .images import to_rgb


@dataclass
class ModelBundle:
    """A model with what the command needs around it.

    preprocess: RGB PIL image -> input tensor ``(C, H, W)``; display: input tensor -> ``(H, W, 3)``
    floats in [0, 1] of the same H, W (what the heatmaps are drawn over); class_name: index ->
    label; layer: a sensible default layer for neuron analysis (None: none).
    """

    name: str
    model: nn.Module
    preprocess: Callable[[Image.Image], Tensor]
    display: Callable[[Tensor], np.ndarray]
    class_name: Callable[[int], str]
    layer: str | None = None
    #: What ``preprocess`` does, in words (said when the model fails on its input).
    preprocessing: str = ""


@dataclass(frozen=True)
class Preprocessing:
    """ImageNet-style preprocessing of an RGB image for a model that is not built in: shorter
    side to ``size * 8/7`` (bicubic), centre crop ``size``, then ``(x - mean) / std`` per
    channel for pixel values x in [0, 1]. The defaults are EfficientNet-Lite's (224 px, values
    in about [-1, 1]); torchvision-style nets want ``mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225)``."""

    size: int = 224
    mean: tuple[float, float, float] = (127 / 255, 127 / 255, 127 / 255)
    std: tuple[float, float, float] = (128 / 255, 128 / 255, 128 / 255)

    def __call__(self, image: Image.Image) -> Tensor:
        from .zoo.efficientnet import resize_and_crop, to_pil

        img = resize_and_crop(to_pil(image), self.size, round(self.size * 8 / 7))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self._column(self.mean)) / self._column(self.std)

    def display(self, x: Tensor) -> np.ndarray:
        """The model input back to ``(H, W, 3)`` pixel values in [0, 1]."""
        return (x * self._column(self.std) + self._column(self.mean)).clamp(0, 1) \
            .permute(1, 2, 0).numpy()

    def describe(self) -> str:
        def fmt(v):
            return ",".join(f"{c:.4g}" for c in v)
        return (f"{self.size}x{self.size} RGB centre crop, (x - mean) / std with x in [0, 1], "
                f"mean {fmt(self.mean)}, std {fmt(self.std)}")

    @staticmethod
    def _column(v: tuple[float, ...]) -> Tensor:
        return torch.tensor(v, dtype=torch.float32)[:, None, None]


#: Built-in models and what they are (``pathattr models`` prints this).
MODELS = {
    "efficientnet-lite0": "ImageNet classifier, 1000 classes, 224x224 RGB (efficientnet-lite-"
                          "pytorch weights); default layer _blocks.15",
    "efficientnet-lite1": "ImageNet classifier, 1000 classes, 240x240 RGB (efficientnet-lite1-"
                          "pytorch-model weights, the zoo extra); default layer _blocks.20",
    "digits-cnn": "small CNN on scikit-learn's 8x8 handwritten digits, 10 classes (trained on "
                  "first use in ~1 s, then cached); images become 8x8 grey",
    "mnist1d-cnn": "small 1-D CNN on MNIST-1D signals (1, 40), 10 classes (trained on first "
                   "use in ~20 s, then cached); NPZ arrays only, e.g. --data mnist1d",
    "minilm": "MiniLM sentence encoder (all-MiniLM-L6-v2) for explain --text",
    "tiny-lm": "character-level GPT-2 trained on the Zen of Python (on first use, ~15 s, then "
               "cached) for explain --text ... --generate N",
    "molecule-logs": "GINE graph net on aqueous solubility (logS) for explain --smiles (the "
                     "graph extra; trained on first use in ~20 s, then cached)",
    "molecule-crippen": "its twin trained on RDKit's Crippen logP, whose per-atom "
                        "contributions are known (~50 s on first use)",
    "admet-ai:TASK": "admet-ai's pretrained Chemprop ensembles, 41 ADMET tasks (AMES, hERG, "
                     "Solubility_AqSolDB, ...) for explain --smiles (the admet extra)",
}


def _imagenet_display(x: Tensor) -> np.ndarray:
    from .zoo import unpreprocess

    return unpreprocess(x).permute(1, 2, 0).numpy()


def _efficientnet() -> ModelBundle:
    from .zoo import class_name, efficientnet_lite0, preprocess

    return ModelBundle("efficientnet-lite0", efficientnet_lite0(), preprocess, _imagenet_display,
                       class_name, "_blocks.15", Preprocessing().describe())


def _efficientnet_lite1() -> ModelBundle:
    from .zoo import LITE1_CROP, class_name, efficientnet_lite1, preprocess

    return ModelBundle("efficientnet-lite1", efficientnet_lite1(),
                       lambda img: preprocess(img, LITE1_CROP), _imagenet_display, class_name,
                       "_blocks.20", Preprocessing(size=LITE1_CROP).describe())


def _digits_preprocess(img: Image.Image) -> Tensor:
    """Grey, 8x8 (box filter), in [0, 1]; dark ink on light paper is inverted to match the
    training data (bright strokes on black)."""
    a = np.asarray(img.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.float32) / 255.0
    if a.mean() > 0.5:
        a = 1.0 - a
    return torch.from_numpy(a)[None]


def _digits() -> ModelBundle:
    from .zoo import digits_cnn

    return ModelBundle("digits-cnn", digits_cnn(), _digits_preprocess,
                       lambda x: x[0].numpy()[..., None].repeat(3, 2), str, "features.relu2",
                       "8x8 grey in [0, 1], inverted if light")


def _signal_only(img: Image.Image) -> Tensor:
    raise ValueError("mnist1d-cnn explains 1-D signals (1, 40), not images: give an NPZ of "
                     "signals or --data mnist1d")


def _mnist1d() -> ModelBundle:
    from .zoo.mnist1d import mnist1d_cnn

    return ModelBundle("mnist1d-cnn", mnist1d_cnn(), _signal_only,
                       lambda x: torch.sigmoid(x).reshape(1, -1, 1).repeat(6, 1, 3).numpy(), str,
                       "features.relu3", "signals (1, 40), the data set's standardisation")


#: The image models built into pathattr, by name: the only ones loaded from a name read in a
#: results folder (``summarize``), since they run no code from elsewhere.
BUILTIN = {"efficientnet-lite0": _efficientnet, "efficientnet-lite1": _efficientnet_lite1,
           "digits-cnn": _digits, "mnist1d-cnn": _mnist1d}


def load_model(spec: str, weights: str | None = None,
               preprocessing: Preprocessing | None = None) -> ModelBundle:
    """The model named by ``--model``: a built-in name, ``module:factory`` (a function returning
    an ``nn.Module``; with ``weights``, a state_dict file loaded into it), or a model file:
    TorchScript, loaded with ``torch.jit.load``. Files are never unpickled beyond tensors
    (``torch.load(weights_only=True)``), so a fully pickled module is refused. Non-built-in image
    models get ``preprocessing`` (default ``Preprocessing()``: EfficientNet's, 224x224, values
    in about [-1, 1]) and ImageNet class names. Raises ``SettingError``. Cost: loading the
    model.
    """
    if weights is not None and not Path(weights).is_file():
        raise SettingError(f"--weights: no such file: {weights!r}")
    if spec in BUILTIN:
        if weights:
            raise SettingError("--weights: only for --model module:factory")
        if preprocessing is not None:
            raise SettingError(f"--size, --mean, --std: {spec} has its own preprocessing")
        return BUILTIN[spec]()
    if spec == "minilm":
        raise SettingError("--model: minilm explains sentences; use explain --text")
    if spec == "tiny-lm":
        raise SettingError("--model: tiny-lm continues text; use explain --text ... --generate N")
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ts", ".pt2") or path.is_file():
        if not path.is_file():
            raise SettingError(f"--model: no such file: {spec!r}")
        if weights:
            raise SettingError("--weights: only for --model module:factory")
        model = _load_file(path)
    elif ":" in spec:
        model = _from_factory(spec)
        if weights:
            state = _torch_load(Path(weights), "--weights")
            if not isinstance(state, dict):
                raise SettingError(f"--weights: {weights!r} does not hold a state_dict")
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise SettingError(
                    f"--weights: does not fit {spec}: {str(e).splitlines()[0]}") from None
    else:
        close = difflib.get_close_matches(spec, MODELS, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SettingError(f"--model: unknown model {spec!r}{hint} (built-in: "
                         f"{', '.join(MODELS)}; or module:factory, or a TorchScript file)")
    from .zoo import class_name

    prep = preprocessing or Preprocessing()
    return ModelBundle(spec, model.eval(), prep, prep.display, class_name,
                       preprocessing=prep.describe())


def _torch_load(path: Path, arg: str) -> object:
    try:
        with warnings.catch_warnings():  # torch's notes on the pickle protocol: the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for objects, RuntimeError for non-torch files
        raise SettingError(
            f"{arg}: {str(path)!r} is not a tensors-only file ({type(e).__name__}); pathattr "
            f"never unpickles arbitrary objects: save model.state_dict() and pass --model "
            f"module:factory --weights FILE, or save torch.jit.script(model)") from None


def _load_file(path: Path) -> nn.Module:
    # TorchScript archives are zip files with a code/ directory; torch.save archives have none.
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any("/code/" in n for n in z.namelist())
        if scripted:
            try:
                return torch.jit.load(str(path), map_location="cpu")
            except Exception as e:  # torch raises RuntimeErrors with empty messages here
                raise SettingError(f"--model: cannot load TorchScript file {str(path)!r}: "
                                   f"{one_line(e)} (saved by an incompatible torch, or "
                                   f"damaged?)") from None
    obj = _torch_load(path, "--model")
    if isinstance(obj, dict):
        raise SettingError(f"--model: {str(path)!r} holds a state_dict; give the architecture too: "
                         f"--model module:factory --weights {path}")
    raise SettingError(f"--model: {str(path)!r} holds a {type(obj).__name__}, not a model")


def _from_factory(spec: str) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    # Like ``python -m``: modules in the working directory are importable.
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SettingError(f"--model: cannot import {module_name!r}: {e}") from None
    finally:
        sys.path.remove(os.getcwd())
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SettingError(f"--model: {module_name!r} has no function {attr!r}")
    try:
        model = factory()
    except Exception as e:  # the user's code: one line naming the flag, not a traceback
        raise SettingError(f"--model: {spec}() raised {one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise SettingError(f"--model: {spec}() returned {type(model).__name__}, not an nn.Module")
    return model


def load_image(spec: str) -> tuple[str, Image.Image]:
    """``(label, RGB image)`` for a file path or ``photo:NAME`` (a photo bundled with
    scikit-image / matplotlib, see ``pathattr.zoo.PHOTOS``). Raises ``SettingError``."""
    if spec.startswith("photo:"):
        from .zoo import PHOTOS, photo

        name = spec[len("photo:"):]
        if name not in PHOTOS:
            raise SettingError(f"IMAGE: unknown bundled photo {name!r}; available: "
                             f"{', '.join('photo:' + p for p in PHOTOS)}")
        return name, photo(name)
    path = Path(spec)
    if path.is_dir():
        raise SettingError(f"IMAGE: {spec!r} is a directory; give image files, or run a whole "
                           f"folder with: pathattr run --data {spec}")
    if not path.is_file():
        raise SettingError(f"IMAGE: no such file: {spec!r}")
    try:
        with Image.open(path) as img:
            return printable(path.stem, keep=""), to_rgb(img)  # a label is printed
    except UnidentifiedImageError:
        raise SettingError(f"IMAGE: cannot read {spec!r} as an image: not a format Pillow "
                           f"knows") from None
    except Image.DecompressionBombError as e:
        raise SettingError(f"IMAGE: {spec!r} is too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or broken files
        raise SettingError(f"IMAGE: cannot read {spec!r} as an image ({one_line(e)})") from None


def parse_target(spec: str | None, bundle: ModelBundle, n_outputs: int) -> int | None:
    """The class index for ``--target``: an index, or a class name (case-insensitive) of a
    model with class names. None if not given. Raises ``SettingError``."""
    if spec is None:
        return None
    if spec.lstrip("-").isdigit():
        t = int(spec)
        if not 0 <= t < n_outputs:
            raise SettingError(f"--target: class {t} is out of range for a model with "
                             f"{n_outputs} outputs")
        return t
    names = {bundle.class_name(i).lower(): i for i in range(n_outputs)}
    if spec.lower() in names:
        return names[spec.lower()]
    close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.6)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise SettingError(f"--target: unknown class {spec!r}{hint}")
