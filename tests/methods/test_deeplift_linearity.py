"""DeepLIFT's affine ops are recognised from torch's derivative metadata (``linearity``), not
from a list of names: a sweep over the shape, selection, sum and difference ops torch exposes,
each between two nonlinearities, sums to the plain-forward output change in float64."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pathattr.methods.deeplift import DeepLift, NoDeepLiftRule
from pathattr.methods.deeplift.linearity import AffineProbe, affine_in, formulas

B, SHAPE = 3, (2, 3, 4)  # the op sees h of shape (B, 2, 3, 4)
_g = torch.Generator().manual_seed(0)
W = torch.randn(4, 5, generator=_g, dtype=torch.float64)
C = torch.randn(B, *SHAPE, generator=_g, dtype=torch.float64)  # a constant of h's shape
MASK = torch.rand(SHAPE, generator=_g) > 0.5
IDX = torch.tensor([2, 0, 3, 3])
PER_ROW = torch.tensor([[0, 2, 1, 3]]).expand(B * 6, 4).reshape(B, 2, 3, 4)

# name -> h -> tensor or sequence of tensors; every one is affine in h, none has a rule of its
# own in DeepLIFT's tables
AFFINE = {
    "torch.tensor_split": lambda h: torch.tensor_split(h, 3, dim=3),
    "torch.tensor_split(indices)": lambda h: torch.tensor_split(h, [1, 3], dim=3),
    "torch.hsplit": lambda h: torch.hsplit(h, 2),
    "torch.vsplit": lambda h: torch.vsplit(h.transpose(0, 1), 2),
    "torch.dsplit": lambda h: torch.dsplit(h, [1]),
    "torch.split_with_sizes": lambda h: torch.split_with_sizes(h, [3, 1], dim=3),
    "torch.scatter": lambda h: torch.scatter(C, 3, PER_ROW, h),
    "torch.split": lambda h: torch.split(h, [1, 3], dim=3),
    "torch.chunk": lambda h: torch.chunk(h, 2, dim=3),
    "torch.unbind": lambda h: torch.unbind(h, dim=2),
    "Tensor.unfold": lambda h: h.unfold(3, 2, 1),
    "torch.diff": lambda h: torch.diff(h, dim=3),
    "torch.diff(n=2, prepend)": lambda h: torch.diff(h, n=2, dim=2, prepend=C[:, :, :1]),
    "torch.tril": lambda h: torch.tril(h),
    "torch.triu": lambda h: torch.triu(h, 1),
    "torch.cumsum": lambda h: torch.cumsum(h, 2),
    "Tensor.cumsum_": lambda h: h.clone().cumsum_(3),
    "torch.flip": lambda h: torch.flip(h, (2, 3)),
    "torch.fliplr": lambda h: torch.fliplr(h),
    "torch.roll": lambda h: torch.roll(h, 1, 3),
    "torch.rot90": lambda h: torch.rot90(h, 1, (2, 3)),
    "torch.narrow": lambda h: torch.narrow(h, 3, 1, 2),
    "torch.movedim": lambda h: torch.movedim(h, 1, 3),
    "torch.moveaxis": lambda h: torch.moveaxis(h, 3, 1),
    "torch.swapdims": lambda h: torch.swapdims(h, 2, 3),
    "torch.swapaxes": lambda h: torch.swapaxes(h, 1, 2),
    "Tensor.mT": lambda h: h.mT,
    "torch.diagonal": lambda h: torch.diagonal(h, 0, 2, 3),
    "torch.diag_embed": lambda h: torch.diag_embed(h[:, 0]),
    "torch.ravel": lambda h: torch.ravel(h).reshape(B, -1),
    "torch.atleast_3d": lambda h: torch.atleast_3d(h),
    "torch.broadcast_to": lambda h: torch.broadcast_to(h[:, :1], (B, 3, 3, 4)),
    "torch.tile": lambda h: torch.tile(h, (1, 1, 2)),
    "torch.repeat_interleave": lambda h: torch.repeat_interleave(h, 2, dim=3),
    "Tensor.repeat": lambda h: h.repeat(1, 2, 1, 1),
    "torch.take_along_dim": lambda h: torch.take_along_dim(h, PER_ROW, dim=3),
    "torch.gather": lambda h: torch.gather(h, 3, PER_ROW),
    "torch.index_select": lambda h: torch.index_select(h, 3, IDX),
    "torch.masked_select": lambda h: torch.masked_select(h, MASK).reshape(B, -1),
    "Tensor.masked_fill": lambda h: h.masked_fill(MASK, 0.5),
    "torch.where": lambda h: torch.where(MASK, h, 2.0),
    "torch.where(two)": lambda h: torch.where(MASK, h, h.flip(3)),
    "Tensor.__getitem__(advanced)": lambda h: h[:, :, [2, 0], IDX[:2]],
    "Tensor.__setitem__": lambda h: _set(h),
    "torch.trapezoid": lambda h: torch.trapezoid(h, dim=3),
    "torch.cumulative_trapezoid": lambda h: torch.cumulative_trapezoid(h, dim=3),
    "torch.column_stack": lambda h: torch.column_stack((h[:, 0].flatten(1), h[:, 1].flatten(1))),
    "torch.dstack": lambda h: torch.dstack((h[:, 0], h[:, 1])),
    "torch.hstack": lambda h: torch.hstack((h, C)),
    "torch.select_scatter": lambda h: torch.select_scatter(C, h[:, 0], 1, 1),
    "torch.slice_scatter": lambda h: torch.slice_scatter(C, h[..., :2], 3, 1, 3),
    "torch.diagonal_scatter": lambda h: torch.diagonal_scatter(C, h[..., 0], 0, 2, 3),
    "torch.index_add": lambda h: torch.index_add(C, 3, IDX, h),
    "torch.index_copy": lambda h: torch.index_copy(C, 3, torch.tensor([3, 1, 0, 2]), h),
    "torch.scatter_add": lambda h: torch.scatter_add(C, 3, PER_ROW, h),
    "torch.scatter_reduce(sum)": lambda h: torch.scatter_reduce(C, 3, PER_ROW, h, "sum"),
    "Tensor.scatter_reduce_(mean)": lambda h: C.clone().scatter_reduce_(3, PER_ROW, h, "mean"),
    "Tensor.index_add_": lambda h: C.clone().index_add_(3, IDX, h),
    "torch.lerp": lambda h: torch.lerp(h, C, 0.3),
    "torch.addcmul": lambda h: torch.addcmul(C, h, C),
    "torch.addcdiv": lambda h: torch.addcdiv(C, h, C.abs() + 1),
    "torch.rsub": lambda h: torch.rsub(h, 1.5),
    "torch.einsum(constant)": lambda h: torch.einsum("bijk,kl->bijl", h, W),
    "torch.tensordot": lambda h: torch.tensordot(h, W, dims=([3], [0])),
    "torch.inner": lambda h: torch.inner(h, W.T),
    "torch.trace": lambda h: torch.stack([torch.trace(m) for m in h.flatten(1, 2)[:, :4]]),
    "torch.nn.functional.pad(reflect)": lambda h: F.pad(h, (1, 1, 1, 1), mode="reflect"),
    "torch.nn.functional.pad(replicate)": lambda h: F.pad(h, (1, 2, 1, 0), mode="replicate"),
    "torch.nn.functional.pad(circular)": lambda h: F.pad(h, (1, 1, 0, 2), mode="circular"),
    "torch.nn.functional.pixel_shuffle": lambda h: F.pixel_shuffle(h.reshape(B, 4, 3, 2), 2),
    "torch.nn.functional.unfold": lambda h: F.unfold(h, 2),
    "torch.nn.functional.fold": lambda h: F.fold(F.unfold(h, 2), (3, 4), 2),
    "torch.nn.functional.interpolate(nearest)": lambda h: F.interpolate(h, scale_factor=2),
    "torch.nn.functional.interpolate(bilinear)": lambda h: F.interpolate(
        h, size=(5, 7), mode="bilinear", align_corners=False),
    "torch.nn.functional.avg_pool1d": lambda h: F.avg_pool1d(h.flatten(1, 2), 2),
    "Tensor.contiguous(channels_last)": lambda h: h.contiguous(memory_format=torch.channels_last),
}


def _set(h):
    out = C.clone()
    out[:, 0, 1:] = h[:, 1, :2]
    out[..., IDX[:2]] = h[..., :2] * 2
    return out


def _flat(out) -> torch.Tensor:
    parts = out if isinstance(out, (tuple, list)) else (out,)
    return torch.cat([p.reshape(B, -1) for p in parts], 1)


class Sandwich(nn.Module):
    """x -> Linear -> tanh -> op -> Linear -> softplus -> Linear: the op between two
    nonlinearities, so its multiplier decides the result."""

    def __init__(self, op):
        super().__init__()
        torch.manual_seed(1)
        self.op = op
        self.inner = nn.Linear(7, 24)
        width = _flat(op(torch.zeros(B, *SHAPE, dtype=torch.float64))).shape[1]
        self.mid = nn.Linear(width, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.tanh(self.inner(x)).reshape(len(x), *SHAPE)
        return self.out(F.softplus(self.mid(_flat(self.op(h)))))


@pytest.mark.parametrize("rule", ["rescale", "revealcancel"])
@pytest.mark.parametrize("name", list(AFFINE))
def test_affine_op_between_nonlinearities_sums_to_the_output_change(name, rule):
    model = Sandwich(AFFINE[name]).double().eval()
    x = torch.randn(B, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x0 = torch.randn(B, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    r = DeepLift(model, rule).attribute(x, x0, target=1)
    with torch.no_grad():
        change = model(x)[:, 1] - model(x0)[:, 1]  # plain forwards, not the method's own
    assert (r.attributions.sum(1) - change).abs().max() <= 1e-10
    assert set(r.info["rules"]) <= {"rescale", "revealcancel"}  # no fallback


NOT_AFFINE = {
    "torch.cummax": lambda h: torch.cummax(h, 3).values,
    "torch.sort": lambda h: torch.sort(h, 3).values,
    "torch.topk": lambda h: torch.topk(h, 2, 3).values,
    "torch.amax": lambda h: torch.amax(h, 3),
    "torch.frac": lambda h: torch.frac(3 * h),
    "torch.remainder": lambda h: torch.remainder(h, 0.3),
    "torch.fmod": lambda h: torch.fmod(h, 0.3),
    "torch.round": lambda h: torch.round(3 * h),
    "torch.sign": lambda h: torch.sign(h) * 1.0,
    "torch.nan_to_num": lambda h: torch.nan_to_num(h),
    "torch.logcumsumexp": lambda h: torch.logcumsumexp(h, 3),
    "torch.cumprod": lambda h: torch.cumprod(h, 3),
    "torch.rand_like": lambda h: h + torch.rand_like(h),
    "torch.clamp(tensor bound)": lambda h: torch.clamp(h, max=C),
    "torch.nn.functional.normalize": lambda h: F.normalize(h, dim=3),
    "torch.nn.functional.lp_pool1d": lambda h: F.lp_pool1d(h.flatten(1, 2), 2, 2),
    "torch.einsum(two varying)": lambda h: torch.einsum(
        "bijk,bijk->bij", h, h.flip(3)),
}


@pytest.mark.parametrize("name", list(NOT_AFFINE))
def test_op_that_is_not_affine_is_refused_naming_it(name):
    op = NOT_AFFINE[name]
    x = torch.randn(B, 7, dtype=torch.float64)
    try:
        DeepLift(Sandwich(op).double().eval()).attribute(x, target=0)
    except NoDeepLiftRule as e:
        assert "DeepLIFT has no rule for" in str(e) or "different operations" in str(e)
    else:  # only an op with a rule of its own (einsum of two varying factors) may pass
        assert name.endswith("two varying)")


def test_refusal_names_the_python_op_and_its_aten_operator():
    with pytest.raises(NoDeepLiftRule, match=r"torch\.cummax.*aten::cummax"):
        DeepLift(Sandwich(NOT_AFFINE["torch.cummax"]).double().eval()).attribute(
            torch.randn(B, 7, dtype=torch.float64), target=0)


def _judged_affine(op, h: torch.Tensor) -> bool:
    with AffineProbe() as probe:
        op(h)
    return probe.offending is None


@pytest.mark.parametrize("name", list(AFFINE) + list(NOT_AFFINE))
def test_the_metadata_agrees_with_the_numbers(name):
    """Independent of DeepLIFT: an op judged affine satisfies f((a+b)/2) = (f(a)+f(b))/2 and
    f(a + 2d) - 2 f(a + d) + f(a) = 0 at random points; every op of NOT_AFFINE fails the probe."""
    op = {**AFFINE, **NOT_AFFINE}[name]
    a, b = (torch.randn(B, *SHAPE, dtype=torch.float64, requires_grad=True) for _ in range(2))
    judged = _judged_affine(op, a)
    if name in NOT_AFFINE:  # a product of two varying factors too: bilinear, not affine
        assert not judged
        return
    assert judged
    with torch.no_grad():
        f = lambda t: _flat(op(t))  # noqa: E731
        torch.testing.assert_close(f((a + b) / 2), (f(a) + f(b)) / 2, rtol=0, atol=1e-12)
        torch.testing.assert_close(f(a + 2 * b) - 2 * f(a + b) + f(a),
                                   torch.zeros_like(f(a)), rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["torch.tensor_split", "torch.diff", "torch.tril",
                                 "torch.roll", "torch.cumsum", "torch.flip", "torch.rot90",
                                 "Tensor.masked_fill", "torch.where(two)", "torch.lerp",
                                 "torch.movedim", "torch.take_along_dim"]),
                min_size=2, max_size=4),
       st.sampled_from(["rescale", "revealcancel"]))
def test_random_chains_of_affine_ops_sum_to_the_output_change(names, rule):
    def chain(h):
        for name in names:
            h = _flat(AFFINE[name](h))
            h = F.pad(h, (0, 24 - h.shape[1] % 24)) if h.shape[1] % 24 else h
            h = h[:, :24].reshape(B, *SHAPE)
        return h

    model = Sandwich(chain).double().eval()
    x, x0 = torch.randn(B, 7, dtype=torch.float64), torch.randn(B, 7, dtype=torch.float64)
    r = DeepLift(model, rule).attribute(x, x0, target=0)
    with torch.no_grad():
        change = model(x)[:, 0] - model(x0)[:, 0]
    assert (r.attributions.sum(1) - change).abs().max() <= 1e-10


def test_transformers_model_files_call_only_ops_deeplift_handles():
    """Every ``torch.<name>(`` in transformers' model files that names a shape, split, select,
    pad, cumulative or difference op is in the sweep above."""
    transformers = pytest.importorskip("transformers")
    kinds = re.compile(r"split|stack|cat$|concat|flip|roll|rot90|tril|triu|diff|cumsum|"
                       r"narrow|movedim|moveaxis|swap|diag|ravel|atleast|broadcast_to|tile|"
                       r"repeat_interleave|take_along|gather|index_select|masked_select|where|"
                       r"trapezoid|scatter|index_add|index_copy|lerp|addcmul|addcdiv|tensordot|"
                       r"inner|trace")
    called = set()
    for path in (Path(transformers.__file__).parent / "models").rglob("modeling_*.py"):
        called |= set(re.findall(r"\btorch\.(\w+)\(", path.read_text(encoding="utf-8")))
    listed = {n.split("(")[0].removeprefix("torch.") for n in AFFINE}
    missing = {n for n in called if kinds.search(n) and hasattr(torch, n)} - listed - {
        "cat", "concat", "concatenate", "stack", "hstack", "vstack", "where", "gather",
        "split", "index_select",  # covered by test_deeplift and test_families' real models
        "argwhere", "unravel_index"}  # integer results: they never carry the signal
    assert not missing, f"transformers calls {sorted(missing)}: add them to AFFINE"


def test_formulas_read_from_torch():
    table = formulas()
    assert len(table) > 500
    assert table["sum"].auto_linear and not table["mul.Tensor"].auto_linear
    aten = torch.ops.aten
    assert affine_in(aten.mul.Tensor, {"self"}) and not affine_in(aten.mul.Tensor,
                                                                  {"self", "other"})
    assert affine_in(aten.div.Tensor, {"self"}) and not affine_in(aten.div.Tensor, {"other"})
    assert not affine_in(aten.native_batch_norm.default, {"input"}, {"training": True})
    assert affine_in(aten.native_batch_norm.default, {"input"}, {"training": False})
    assert affine_in(aten.scatter_reduce.two, {"src"}, {"reduce": "sum"})
    assert not affine_in(aten.scatter_reduce.two, {"src"}, {"reduce": "amax"})


def test_one_probe_serves_only_calls_of_the_same_kind():
    from pathattr.methods.deeplift.linearity import probe_key

    a = torch.randn(2, 3, requires_grad=True)
    c = torch.randn(2, 3)
    same = probe_key(torch.roll, (a, 1, 1), {})
    assert same == probe_key(torch.roll, (a.detach().requires_grad_(), 1, 1), {})
    assert same != probe_key(torch.roll, (a, 2, 1), {})  # another shift: probed anew
    assert same != probe_key(torch.roll, (c, 1, 1), {})  # constant: another kind
    assert probe_key(F.pad, (a, (1, 1)), {"mode": "reflect"}) != \
        probe_key(F.pad, (a, (1, 1)), {"mode": "replicate"})
    assert probe_key(torch.cat, ([a, c],), {}) != probe_key(torch.cat, ([c, a],), {})
    assert probe_key(torch.Tensor.__getitem__, (a, (slice(0, 1), 0)), {}) is not None
    assert probe_key(torch.roll, (a, 1, 1), {"unhashable": {1: 2}}) is None


def test_a_torch_without_its_derivative_file_is_refused_saying_so(monkeypatch):
    from pathattr.methods.deeplift import linearity

    monkeypatch.setattr(linearity, "_derivatives_file", lambda: None)
    linearity.formulas.cache_clear()
    linearity._by_formula.cache_clear()
    try:
        with pytest.raises(NoDeepLiftRule, match="derivatives.yaml"):
            DeepLift(Sandwich(AFFINE["torch.diff"]).double().eval()).attribute(
                torch.randn(B, 7, dtype=torch.float64), target=0)
    finally:
        monkeypatch.undo()
        linearity.formulas.cache_clear()
        linearity._by_formula.cache_clear()
