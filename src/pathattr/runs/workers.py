"""What a run computes, where: a ``Worker`` attributes batches with the run's settings,
in this process (``local``) or as Ray actors (``ray``); the driver alone writes the store."""

from __future__ import annotations

import logging
import socket
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from ..datasets import ItemError, Raw, decode
from ..errors import SettingError, one_line
from ..store import Outcome
from ..validate import check_finite

#: ``--layer NAME`` adds the method ``conductance@NAME``: Neuron IG (total conductance) of each
#: channel of that layer (Shrikumar et al. 2018), stored as one value per channel.
LAYER_METHOD = "conductance"

#: One batch of work: each item with the methods it still needs.
Work = list[tuple[Raw, tuple[str, ...]]]


@dataclass(frozen=True)
class Settings:
    """What a worker needs to compute, picklable for Ray. ``identity()`` must match between a
    store and the run resuming it; methods may be added to a store later."""

    model: str
    weights: str | None
    data: str
    steps: int | str
    target: str | None
    #: Part of a run's identity because batched kernels round differently per batch size
    #: (measured: 16 of 200 digits results moved by up to 2.5e-7 between sizes 4 and 16).
    batch_size: int

    def identity(self) -> dict:
        return asdict(self)


class Worker:
    """One model, turning batches of raw items into outcomes. ``compute`` raises
    ``SettingError`` for a bad model, layer or target (the run cannot go on); a bad item only
    fails that item."""

    def __init__(self, settings: Settings, layers: Sequence[str] = ()):
        self.settings = settings
        self.target: int | None = None
        self.failure: Exception | None = None
        try:
            self._load(layers)
        except Exception as e:  # raised by compute(): Ray reports an actor's failed creation
            self.failure = e    # only as text, and the user should see this error itself

    def _load(self, layers: Sequence[str]) -> None:
        from ..layers import resolve_layer
        from ..named import load_model

        self.bundle = load_model(self.settings.model, self.settings.weights)
        for layer in layers:
            try:
                resolve_layer(self.bundle.model, layer)
            except ValueError as e:
                raise SettingError(str(e), param="layer") from None

    def ready(self) -> bool:
        """True once constructed: Ray's signal that this worker started."""
        return True

    def compute(self, work: Work) -> list[Outcome]:
        """Every (item, method) of ``work``: decode, group items by shape (a wrong-shaped item
        then fails alone), one forward for the predictions, then each method on the group.
        Cost: per item, each method's cost (``steps`` forward+backward passes for IG)."""
        import torch

        if self.failure is not None:
            raise self.failure
        outcomes: list[Outcome] = []
        groups: dict[tuple, list[tuple[Raw, tuple[str, ...], torch.Tensor]]] = {}
        for raw, methods in work:
            try:
                x = decode(raw, self.bundle.preprocess)
            except ItemError as e:
                outcomes += [Outcome(raw.key, m, label=raw.label, error=str(e)) for m in methods]
                continue
            groups.setdefault(tuple(x.shape), []).append((raw, methods, x))
        for shape, members in groups.items():
            outcomes += self._group(shape, members)
        return outcomes

    def _group(self, shape: tuple, members: list) -> list[Outcome]:
        import torch

        from ..call import model_device_dtype
        from ..named import parse_target

        device, dtype = model_device_dtype(self.bundle.model)  # a bf16/fp16/float64 model too
        x = torch.stack([m[2] for m in members]).to(device=device, dtype=dtype)
        try:
            with torch.inference_mode():
                logits = self.bundle.model(x)
            if logits.dim() != 2 or logits.shape[1] == 0:
                raise ValueError(f"output shape {tuple(logits.shape)} is not (batch, classes)")
        except Exception as e:  # e.g. a wrong-shaped item: the model raises on it
            reason = f"model failed on input shape {shape}: {one_line(e)}"
            return [Outcome(raw.key, m, label=raw.label, error=reason)
                    for raw, methods, _ in members for m in methods]
        if self.settings.target is not None and self.target is None:
            self.target = parse_target(self.settings.target, self.bundle, logits.shape[1])
        predicted = logits.argmax(1)
        targets = predicted if self.target is None else torch.full_like(predicted, self.target)
        outcomes = []
        for method in dict.fromkeys(m for _, methods, _ in members for m in methods):
            rows = [i for i, (_, methods, _) in enumerate(members) if method in methods]
            outcomes += self._method(method, members, rows, x, predicted, targets)
        return outcomes

    def _method(self, method: str, members: list, rows: list[int], x, predicted, targets
                ) -> list[Outcome]:
        """``method`` on the items ``rows`` of a group, at once; if that raises, item by item,
        so that only the items it fails on fail."""
        try:
            result, seconds = self._attribute(method, x[rows], targets[rows])
            # a NaN result is a failed item, never a done one (whatever the method)
            check_finite(result.tensor.flatten(1), f"{method}'s attributions")
            if result.delta is not None:
                check_finite(result.delta, f"{method}'s completeness gap")
        except Exception as e:  # one method failing must not lose the others
            if len(rows) > 1:
                return [o for i in rows
                        for o in self._method(method, members, [i], x, predicted, targets)]
            raw = members[rows[0]][0]
            return [Outcome(raw.key, method, label=raw.label,
                            error=f"{method} failed: {one_line(e)}")]
        attr = result.neuron_totals() if method.startswith(LAYER_METHOD + "@") \
            else result.tensor
        out_delta = result.info.get("output_delta")
        return [Outcome(members[i][0].key, method, attr[j].detach().float().numpy(),
                        int(predicted[i]), int(targets[i]), members[i][0].label,
                        None if result.delta is None else float(result.delta[j]),
                        None if out_delta is None else float(out_delta[j]), seconds / len(rows))
                for j, i in enumerate(rows)]

    def _attribute(self, method: str, x, target):
        from .. import registry

        if method.startswith(LAYER_METHOD + "@"):
            from ..methods.conductance import LayerConductance

            start = time.perf_counter()
            result = LayerConductance(self.bundle.model, method.partition("@")[2]).attribute(
                x, target=target, steps=registry.fixed_steps(self.settings.steps))
            return result, time.perf_counter() - start
        start = time.perf_counter()
        result = registry.attribute(method, self.bundle.model, x, target, self.settings.steps)
        return result, time.perf_counter() - start


def run_local(settings: Settings, layers: list[str], batches: Iterator[Work]
           ) -> Iterator[list[Outcome]]:
    worker = Worker(settings, layers)
    for work in batches:
        yield worker.compute(work)


def check_address(address: str | None, timeout: float = 3.0) -> None:
    """Refuse, in seconds, a cluster address nothing answers at (Ray itself retries for
    minutes): ``SettingError`` naming ``address``. ``None``, ``"auto"`` and ``"local"`` are
    Ray's to resolve."""
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SettingError(f"expected host:port or ray://host:port, got {address!r}",
                           param="address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise SettingError(f"nothing answers at {hostport} within {timeout:g} s "
                           f"({one_line(e)}); is the cluster's head running?",
                           param="address") from None


def run_ray(settings: Settings, layers: list[str], batches: Iterator[Work], address: str | None,
         workers: int | None) -> Iterator[list[Outcome]]:
    """Batches over Ray actors, one per worker CPU (``schedule``: a lost node's batches go to
    the other actors). If this process is not connected to a cluster, connects as
    ``ray.init`` does (``address``, else ``RAY_ADDRESS``, else a cluster started with
    ``ray start`` on this machine, else a new local one; ``"local"``: always a new private
    one), and stops what it started afterwards."""
    try:
        import ray
    except ImportError:
        raise SettingError("ray: Ray is not installed; pip install 'pathattr[ray]'",
                           param="engine") \
            from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, num_cpus=workers if address in (None, "local") else None,
                     include_dashboard=False, logging_level=logging.WARNING)
        except ValueError as e:
            if address is not None or workers is None or "existing cluster" not in str(e):
                raise
            raise SettingError(
                "a Ray cluster already runs here (RAY_ADDRESS or `ray start`), and workers "
                "sizes a new local one: pass address='auto' to use that cluster (workers "
                "actors) or address='local' for a private one", param="address, workers") \
                from None
    actors: list = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if workers is not None and workers > cpus:  # the rest would wait for a CPU forever
            raise SettingError(f"the cluster has {cpus} CPU(s) and each worker takes one; "
                               f"ask for at most {cpus}", param="workers")
        n = workers or max(1, cpus)
        actor = ray.remote(num_cpus=1)(Worker)
        actors = [actor.remote(settings, layers) for _ in range(n)]
        yield from schedule(ray, _started(ray, actors), batches)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


#: How long Ray workers may take to start (load the model) before the run goes on without them.
READY_S = 120.0


def _started(ray, actors: list) -> list:
    """The actors placed and started within ``READY_S`` (a node lost a moment ago may still be
    counted in the cluster's CPUs, and its actors never start); ``SettingError`` if none."""
    calls = {a.ready.remote(): a for a in actors}
    done, _ = ray.wait(list(calls), num_returns=len(calls), timeout=READY_S)
    alive = []
    for ref in done:
        try:
            ray.get(ref)
            alive.append(calls[ref])
        except ray.exceptions.RayActorError:
            pass
    if not alive:
        raise SettingError(f"no Ray worker started within {READY_S:g} s (no free CPU, or the "
                           f"cluster's nodes are gone)", param="workers")
    if len(alive) < len(actors):  # said, not hidden: the run is slower than asked for
        warnings.warn(f"{len(actors) - len(alive)} of {len(actors)} Ray workers did not start "
                      f"within {READY_S:g} s; running on {len(alive)}", stacklevel=2)
    return alive


def schedule(ray, actors: list, batches: Iterator[Work]) -> Iterator[list[Outcome]]:
    """Batches over ``actors``, two in flight per actor so none waits for the driver; results
    in completion order. A batch whose actor is lost (its node died) goes to another actor;
    only when every actor is lost does the run stop (a resume then goes on). A task's own
    error (a bad ``--target``) is raised as itself."""
    pending: deque = deque()
    source = iter(batches)
    alive, free = list(actors), list(actors) * 2
    running: dict = {}
    while True:
        while free:
            work = pending.popleft() if pending else next(source, None)
            if work is None:
                break
            a = free.pop()
            running[a.compute.remote(work)] = (a, work)
        if not running:
            return
        (ref,), _ = ray.wait(list(running), num_returns=1)
        a, work = running.pop(ref)
        try:
            outcomes = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # e.g. a bad --target: raise it as itself
            raise e.cause from None
        except ray.exceptions.RayActorError:  # the actor, or its node, is gone
            alive = [x for x in alive if x is not a]
            free = [x for x in free if x is not a]
            if not alive:
                raise RuntimeError("every Ray worker was lost (their nodes stopped); the "
                                   "results so far are stored: run again to resume") from None
            pending.append(work)
            continue
        free.append(a)
        yield outcomes
