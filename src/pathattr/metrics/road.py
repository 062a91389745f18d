"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci, Kasneci 2022).

Pixel removal leaks the shape of what was removed: a model can read the removed region's
outline from the substrate (zeros, blur) and the curve then measures that, not the
attribution. ROAD fills each removed pixel by *noisy linear imputation*: its value is the
weighted mean of its eight neighbours (weight 1/6 for the four direct ones, 1/12 for the
diagonals; removed neighbours are unknowns too), one sparse linear system per image and
fraction,

    sum_q w_q (v_p - v_q) = 0   for every removed pixel p, over its neighbours q in the image,

solved for all channels at once, then Gaussian noise (``noise``, in input units) is added to
the imputed pixels. MoRF removes the most important pixels first (lower curve = better
attribution), LeRF the least important first (higher = better).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import Tensor, nn

from ..engine import chunk_size, is_conv
from ..errors import NonFiniteOutput
from ..forward import choose_output
from ..guard import model_guard
from ..targets import TargetSpec, resolve_target, select
from ..validate import check_eval_mode, check_number, check_tensor
from .curve import Curve
from .perturbation import _ranked, _saliency

#: (row offset, column offset, weight) of the imputation's neighbours
NEIGHBOURS = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
              (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
ORDERS = ("morf", "lerf")
FRACTIONS = tuple(i / 10 for i in range(10))


def impute(image: Tensor, removed: Tensor, noise: float = 0.0,
           generator: torch.Generator | None = None) -> Tensor:
    """``image`` ``(C, H, W)`` with its ``removed`` pixels (``(H, W)`` bool) replaced by the
    noisy linear imputation of the module docstring. Raises ``ValueError`` when every pixel
    is removed (nothing to impute from). Cost: one sparse solve with as many unknowns as
    removed pixels (``scipy.sparse.linalg.spsolve``)."""
    c, h, w = image.shape
    mask = removed.detach().cpu().numpy().astype(bool)
    if mask.shape != (h, w):
        raise ValueError(f"removed has shape {mask.shape}, expected {(h, w)}")
    n = int(mask.sum())
    if n == 0:
        return image.clone()
    if n == h * w:
        raise ValueError("every pixel is removed: ROAD imputes from the pixels kept")
    values = image.detach().double().cpu().numpy().reshape(c, h * w)
    index = np.full(h * w, -1)
    flat = np.flatnonzero(mask)
    index[flat] = np.arange(n)
    pr, pc = np.divmod(flat, w)
    diag = np.zeros(n)
    rows, cols, data = [], [], []
    rhs = np.zeros((n, c))
    for dr, dc, wt in NEIGHBOURS:
        qr, qc = pr + dr, pc + dc
        inside = (qr >= 0) & (qr < h) & (qc >= 0) & (qc < w)
        p = np.flatnonzero(inside)
        q = qr[inside] * w + qc[inside]
        diag[p] += wt
        unknown = index[q] >= 0
        rows.append(p[unknown])
        cols.append(index[q[unknown]])
        data.append(np.full(int(unknown.sum()), -wt))
        np.add.at(rhs, p[~unknown], wt * values[:, q[~unknown]].T)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    data.append(diag)
    a = coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(n, n)).tocsc()
    solved = spsolve(a, rhs).reshape(n, c)
    out = values.copy()
    out[:, flat] = solved.T
    result = torch.as_tensor(out.reshape(c, h, w), dtype=image.dtype, device=image.device)
    if noise:
        eps = torch.randn((c, n), generator=generator, dtype=torch.float64).to(result)
        result.view(c, -1)[:, torch.as_tensor(flat, device=image.device)] += noise * eps
    return result


def road(model: nn.Module, x: Tensor, attributions: Tensor, target: TargetSpec = None,
         order: str = "morf", fractions: tuple[float, ...] = FRACTIONS, noise: float = 0.01,
         seed: int = 0, batch_size: int | str = "auto", ranking: str = "attribution") -> Curve:
    """The ROAD curve of images ``x`` ``(B, C, H, W)``: the softmax probability of the target
    with ``fractions`` of the pixels removed (ranked by ``|attributions|`` summed over
    channels, as insertion and deletion rank them) and imputed. ``order``: "morf" (most
    relevant first; lower AUC is better) or "lerf" (least relevant first; higher is better).
    ``ranking`` "inverse" / "random" give the controls; ``seed`` seeds the noise (and the
    random ranking). ``target``: one class per image, default the prediction on ``x``.
    Returns a ``Curve`` over ``fractions`` (each in [0, 1), sorted).
    Cost: per image and fraction one sparse solve, then one forward pass each, batched."""
    x = check_tensor(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x must be images of shape (B, C, H, W), got {tuple(x.shape)}")
    if order not in ORDERS:
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    f = list(fractions)
    if not f or any(not 0 <= v < 1 for v in f) or f != sorted(f):
        raise ValueError(f"fractions must be sorted numbers in [0, 1), got {fractions!r}")
    check_number(noise, "noise", 0)
    check_eval_mode(model)
    importance = _ranked(_saliency(attributions, x).to(x.device), ranking, seed)
    if order == "lerf":
        importance = -importance
    b, _, h, w = x.shape
    order_idx = importance.argsort(dim=1, descending=True, stable=True)
    g = torch.Generator().manual_seed(seed)
    images = []
    for i in range(b):
        for v in f:
            removed = torch.zeros(h * w, dtype=torch.bool)
            # a fraction below 1 keeps at least one pixel, however few the image has
            removed[order_idx[i, :min(round(v * h * w), h * w - 1)].cpu()] = True
            images.append(impute(x[i], removed.view(h, w), noise, g))
    batch = torch.stack(images) if images else x.new_zeros((0, *x.shape[1:]))
    if is_conv(model, x):
        batch = batch.contiguous(memory_format=torch.channels_last)
    with model_guard(model), torch.inference_mode():
        if target is None:
            target = choose_output(model(x)).argmax(-1)
        t = resolve_target(target, b, x.device)
        t.classes  # noqa: B018 -- raises unless one class per example
        rows = torch.arange(b, device=x.device).repeat_interleave(len(f))
        bs = chunk_size(model, x, batch_size, len(batch))
        probs = torch.cat([select(choose_output(model(batch[i:i + bs])).softmax(-1), t,
                                  rows[i:i + bs]) for i in range(0, len(batch), bs)]
                          or [x.new_zeros(0)])  # an empty batch: no forward
    if not torch.isfinite(probs).all():
        j = int((~torch.isfinite(probs)).nonzero()[0, 0])
        raise NonFiniteOutput(f"the model's output is NaN or inf for example {j // len(f)} "
                              f"with {f[j % len(f)]:.0%} of its pixels imputed")
    return Curve.from_scores(torch.tensor(f, dtype=x.dtype, device=x.device),
                             probs.view(b, len(f)))
