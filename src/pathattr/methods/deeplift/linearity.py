"""Which ATen operations are affine in their varying arguments, read from torch's own metadata.

DeepLIFT's multiplier for an affine map is its gradient. Rather than list Python names (a new
``torch.tensor_split`` in an upstream model breaks such a list), an op without a rule of its own
is run under ``AffineProbe``, a dispatcher-level mode that sees the few ATen operators it
decomposes into (``tensor_split`` -> ``slice``; ``diff`` -> ``slice``, ``sub``). Each ATen
operator is judged by two facts torch keeps for its own autograd and ships in every wheel
(``torchgen/packaged/autograd/derivatives.yaml``):

* its forward derivative is ``auto_linear`` (torch applies the op itself to tangents: linear in
  all its differentiable inputs jointly), or
* the gradient formula of every varying argument reads no *value* of a varying argument or of
  the result: only ``grad``, constants, the other (constant) arguments and metadata such as
  sizes and dtypes. A Jacobian that does not depend on the varying inputs means the op is
  affine in them (``a * c`` with ``c`` constant, ``a + b``, ``where(mask, a, b)``).

A gradient of ``zeros_like(...)`` (``round``, ``sign``, comparisons), ``non_differentiable`` or
a missing formula never counts as affine: such ops are piecewise constant or not differentiable.
Views (the schema says the output aliases the input) only re-index memory and are affine;
factories (``new_empty``, ``zeros_like``: no formula, a ``pin_memory`` argument) read only the
shape of their argument, unless seeded (``rand_like``). A torch without the file makes an
op without a rule of its own raise ``NoDeepLiftRule`` saying so.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .ops import NoDeepLiftRule

# Metadata of a tensor argument that a gradient formula may read without reading its values.
_METADATA = re.compile(
    r"\b(\w+)\s*\.\s*(?:sym_sizes|sizes|sym_size|size|sym_strides|strides|sym_stride|stride|"
    r"scalar_type|options|layout|device|dim|sym_numel|numel|dtype|is_complex|is_conj|"
    r"sym_storage_offset|storage_offset|suggest_memory_format|is_contiguous)\s*\(")
_METADATA_CALL = re.compile(
    r"(?:\b(?:to_args_sizes_symint|to_args_sizes|to_args_scalartypes|TensorGeometry|zeros_like)"
    r"|\.(?:expand_as|view_as|reshape_as|type_as))\s*\(\s*(\w+)\s*\)")
# A gradient that is zero (piecewise constant ops: round, sign, comparisons; random ops) or
# undefined: never affine.
_ZERO = re.compile(r"^(?:non_differentiable|not_implemented|(?:at::)?zeros(?:_like|_symint)?\()")
# Sawtooth ops: a gradient of ``grad`` everywhere but a jump at every period, so not affine.
_JUMPS = {"frac", "fmod", "remainder"}
def _not_training(options: dict) -> bool:
    return not options.get("training", False)


def _sums(options: dict) -> bool:
    return options.get("reduce") in ("sum", "mean")


# ATen ops whose formula the file does not give per argument (autograd implements ``copy_`` by
# hand; convolution, batch norm and reducing scatters share one formula for all arguments):
# affine in these arguments by their meaning, the others fixed, while the options allow it.
# An overwrite's zero gradient is exact, not a step's. On CUDA, eval batch norm runs as
# ``cudnn_batch_norm``.
_AFFINE_BY_HAND = {  # by name without the in-place ``_``
    # overwriting: the output is the new value, whatever the old one was
    "copy": ({"self", "src"}, None), "fill": ({"self", "value"}, None), "zero": ({"self"}, None),
    "lift_fresh": ({"self"}, None), "alias": ({"self"}, None),
    "convolution": ({"input", "bias"}, None), "_convolution": ({"input", "bias"}, None),
    **dict.fromkeys(("native_batch_norm", "_native_batch_norm_legit_no_training",
                     "cudnn_batch_norm", "miopen_batch_norm"), ({"input", "bias"}, _not_training)),
    "scatter_reduce": ({"self", "src"}, _sums), "index_reduce": ({"self", "source"}, _sums),
}

@dataclass(frozen=True)
class _Formulas:
    """One op's entry: the gradient formula of each argument, and whether its forward
    derivative is ``auto_linear``."""

    gradients: dict
    auto_linear: bool


def _derivatives_file() -> Path | None:
    try:
        import torchgen
    except ImportError:
        return None
    path = Path(torchgen.__file__).parent / "packaged" / "autograd" / "derivatives.yaml"
    return path if path.is_file() else None


@functools.cache
def formulas() -> dict[str, _Formulas]:
    """``"add.Tensor"`` -> its formulas, parsed from torch's ``derivatives.yaml`` (the Default
    dispatch where an entry has several; a formula may continue over several lines). Parsed
    once per process (about 10 ms). Raises ``NoDeepLiftRule`` when this torch ships no such
    file: without it no op could be recognised as affine."""
    path = _derivatives_file()
    if path is None:
        raise NoDeepLiftRule("DeepLIFT reads which operations are affine from torch's own "
                             "torchgen/packaged/autograd/derivatives.yaml, which this torch "
                             "installation lacks; install torch from its official wheels")
    entries: dict[str, list[tuple[str, str]]] = {}
    lines: list[tuple[str, str]] = []
    section, key_indent = None, 0
    key_line = re.compile(r"^(\s+)([A-Za-z_][\w, ]*):\s*(.*)$")
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("- name:"):
            lines = entries.setdefault(line[len("- name:"):].strip().split("(", 1)[0], [])
            section, key_indent = None, 0
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        m = key_line.match(line)
        if m is None or (lines and indent > key_indent and section != "dispatch"):
            if lines and (section is None or section == "Default"):
                lines[-1] = (lines[-1][0], lines[-1][1] + " " + line.strip())
            continue
        keys, formula = m.group(2), m.group(3).strip()
        if keys == "dispatch":
            section = "dispatch"
        elif section is not None and not formula:
            section, key_indent = keys, indent + 2  # Default / AutogradNestedTensor / ...
        elif section is None or section == "Default":
            key_indent = indent
            lines.append((keys, formula))
    table = {}
    for name, pairs in entries.items():
        grads, linear = {}, False
        for keys, formula in pairs:
            formula = formula.strip().strip("'\"")
            for key in (k.strip() for k in keys.split(",")):
                if key == "result":
                    linear = formula == "auto_linear"
                elif key != "output_differentiability":
                    grads[key] = formula
        table[name] = _Formulas(grads, linear)
    return table


def _reads_values(formula: str, names: set[str]) -> bool:
    """Whether ``formula`` reads the value of any tensor in ``names`` (metadata excluded)."""
    text = _METADATA.sub(lambda m: "_meta(", formula)
    text = _METADATA_CALL.sub("_meta", text)
    return any(re.search(rf"\b{re.escape(n)}(?:_p)?\b", text) for n in names)


def _key(op: torch._ops.OpOverload) -> str:
    name = op._schema.name.split("::", 1)[-1]
    base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    overload = op._overloadname
    return base if overload == "default" else f"{base}.{overload}"


def affine_in(op: torch._ops.OpOverload, varying: set[str], options: dict | None = None) -> bool:
    """Whether ATen ``op`` is affine in its arguments named ``varying`` (the others fixed);
    ``options``: its arguments by name, where the answer depends on them (``reduce="sum"``).
    Cost: a dictionary lookup after the first call for an op and set of arguments."""
    if op.is_view or not varying:
        return True
    base = _key(op).split(".")[0]
    if base in _AFFINE_BY_HAND:
        names, allowed = _AFFINE_BY_HAND[base]
        return varying <= names and (allowed is None or allowed(options or {}))
    return _by_formula(op, frozenset(varying))


@functools.cache
def _by_formula(op: torch._ops.OpOverload, varying: frozenset[str]) -> bool:
    """``affine_in`` from the op's formulas (cached per op and varying arguments)."""
    schema, key = op._schema, _key(op)
    entry = formulas().get(key)
    if entry is None:
        # a factory (``new_empty``, ``zeros_like``) reads only the shape, dtype and device of
        # its tensor argument; a seeded one (``rand_like``) would differ between DeepLIFT's runs
        return "pin_memory" in {a.name for a in schema.arguments} and \
            torch.Tag.nondeterministic_seeded not in op.tags
    grads = [entry.gradients.get(n, "non_differentiable") for n in sorted(varying)]
    if key.split(".")[0] in _JUMPS or any(_ZERO.match(g) for g in grads):
        return False
    if entry.auto_linear:
        return True
    outputs = {r.name for r in schema.returns if r.name} | {"result"} | {
        f"result{i}" for i in range(len(schema.returns))}
    return not any(_reads_values(g, set(varying) | outputs) for g in grads)


def _by_name(op, args: tuple, kwargs: dict) -> dict[str, object]:
    named = {a.name: v for a, v in zip(op._schema.arguments, args)}
    return {**named, **kwargs}


class AffineProbe(TorchDispatchMode):
    """Run ATen ops as they are and note the first that is not affine in its varying (requires
    grad) tensor arguments: ``offending`` (None while all were)."""

    def __init__(self):
        super().__init__()
        self.offending: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.offending is None:
            bound = _by_name(func, args, kwargs)
            varying = {n for n, v in bound.items() if _varies(v)}
            if not affine_in(func, varying, bound):
                self.offending = f"{func._schema.name}.{func._overloadname}"
        return func(*args, **kwargs)


def _varies(v: object) -> bool:
    if isinstance(v, torch.Tensor):
        return v.requires_grad
    if isinstance(v, (list, tuple)):
        return any(isinstance(t, torch.Tensor) and t.requires_grad for t in v)
    return False


def _part(v: object) -> object:
    """One argument as ``probe_key`` sees it (raises ``TypeError`` if unhashable)."""
    if isinstance(v, torch.Tensor):
        return (v.dtype, v.dim(), v.requires_grad)
    if isinstance(v, (list, tuple)):
        return (type(v), *map(_part, v))
    if isinstance(v, slice):  # unhashable before Python 3.12
        return (slice, v.start, v.stop, v.step)
    hash(v)
    return (type(v), v)


def probe_key(func, args: tuple, kwargs: dict) -> tuple | None:
    """What decides which ATen operators ``func`` runs, so that one probe serves every such
    call: the function, each tensor's dtype, dimensions and whether it varies, and every other
    argument's value; None if one is unhashable. A decomposition that branched on a constant
    tensor's values would escape this; torch's functions branch on the other arguments.
    Cost: a few microseconds, against the probe's 12-20."""
    try:
        return (func, *map(_part, args), *((k, _part(v)) for k, v in kwargs.items()))
    except TypeError:
        return None
