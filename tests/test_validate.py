"""Every bad input gets a clear error naming the argument."""

import pytest
import torch
from nets import cnn, mlp
from torch import nn

import pathattr

X = torch.randn(2, 6, dtype=torch.float64)


@pytest.mark.parametrize("x, match", [
    (torch.tensor([[1, 2, 3, 4, 5, 6]]), "x must be a floating-point tensor"),
    (torch.full((1, 6), float("nan"), dtype=torch.float64), "x contains NaN or inf"),
    (torch.full((1, 6), float("inf"), dtype=torch.float64), "x contains NaN or inf"),
    ([[0.0] * 6], "x must be a tensor or a non-empty tuple of tensors"),
])
def test_bad_inputs(x, match):
    with pytest.raises((TypeError, ValueError), match=match):
        pathattr.IntegratedGradients(mlp(0)).attribute(x, target=0)


@pytest.mark.parametrize("baselines, match", [
    (torch.zeros(3, 6, dtype=torch.float64), r"baselines has shape \(3, 6\)"),
    (torch.zeros(2, 5, dtype=torch.float64), r"baselines has shape \(2, 5\)"),
    (torch.full((2, 6), float("nan"), dtype=torch.float64), "baselines contains NaN"),
    ("mean", "baselines 'mean' unknown"),
    ([0.0], "baselines must be"),
])
def test_bad_baselines(baselines, match):
    with pytest.raises((TypeError, ValueError), match=match):
        pathattr.IntegratedGradients(mlp(0)).attribute(X, baselines=baselines, target=0)


@pytest.mark.parametrize("target, match", [
    (3, r"target 3 is out of range for a model output of shape \(3,\)"),
    (-1, "target -1 is out of range"),
    ([0, 1, 2], "target has 3 entries, expected 1 or 2"),
    (1.5, "must hold integer indices"),
    (None, "target is required"),
    (lambda out: out, "one scalar per row"),
])
def test_bad_targets(target, match):
    with pytest.raises((TypeError, ValueError), match=match):
        pathattr.IntegratedGradients(mlp(0)).attribute(X, target=target)


@pytest.mark.parametrize("kw, match", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": "many"}, "steps must be"),
    ({"rule": "simpson"}, "unknown rule 'simpson'"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"steps": "auto", "tol": 0}, "tol must be a number > 0"),
    ({"steps": "auto", "max_steps": 3}, "max_steps must be an integer >= 16"),
])
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        pathattr.IntegratedGradients(mlp(0)).attribute(X, target=0, **kw)


def test_training_mode_with_dropout_is_refused():
    m = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.5), nn.Linear(4, 2)).double()
    with pytest.raises(ValueError, match=r"training mode with dropout \(1: Dropout"):
        pathattr.IntegratedGradients(m).attribute(X, target=0)
    assert m.training  # the check does not switch modes behind the user's back
    m.eval()
    pathattr.IntegratedGradients(m).attribute(X, target=0, steps=2)


def test_unknown_layer_lists_close_names():
    with pytest.raises(ValueError, match="unknown layer 'conv3'; close names: conv2, conv1"):
        pathattr.LayerIntegratedGradients(cnn(0), "conv3").attribute(
            torch.randn(1, 2, 5, 5, dtype=torch.float64), target=0)


def test_layer_never_executed_and_executed_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 6)
            self.unused = nn.Linear(6, 6)
            self.act = nn.Tanh()
            self.out = nn.Linear(6, 2)

        def forward(self, x):
            return self.out(self.act(self.lin(self.act(x))))

    m = Twice().double().eval()
    with pytest.raises(RuntimeError, match="'unused' was never executed"):
        pathattr.LayerIntegratedGradients(m, "unused").attribute(X, target=0)
    with pytest.raises(RuntimeError, match="'act' was executed 2 times"):
        pathattr.LayerIntegratedGradients(m, "act").attribute(X, target=0, steps=2)


def test_layer_that_is_not_a_submodule():
    with pytest.raises(ValueError, match="not a submodule"):
        pathattr.LayerIntegratedGradients(mlp(0), nn.Linear(2, 2)).attribute(X, target=0)


class FunctionalDropout(nn.Module):
    """Dropout as F.dropout(h, p, self.training): no Dropout module for a check to find."""

    def __init__(self, p: float):
        super().__init__()
        self.fc1, self.fc2, self.p = nn.Linear(6, 16), nn.Linear(16, 3), p

    def forward(self, x):
        return self.fc2(torch.nn.functional.dropout(torch.tanh(self.fc1(x)), self.p,
                                                    self.training))


@pytest.mark.parametrize("method", ["ig", "saliency", "deeplift", "smoothgrad"])
def test_random_model_in_training_mode_is_refused_deterministic_one_accepted(method):
    from pathattr import registry

    x = torch.randn(2, 6)
    random = FunctionalDropout(0.5)  # training mode, as every new nn.Module is
    state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=r"different outputs for the same input .* training "
                                         r"mode \(model, fc1, fc2\).*call model.eval\(\)"):
        registry.make(method, random).attribute(x, target=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the check drew no numbers
    assert random.training  # and the model is as it came
    if method != "deeplift":  # which refuses dropout in training mode even with p = 0
        harmless = FunctionalDropout(0.0)  # training mode, but deterministic: accepted
        registry.make(method, harmless).attribute(x, target=0)
    random.eval()
    registry.make(method, random).attribute(x, target=0)


def test_non_finite_model_output_names_the_example_and_the_point():
    from pathattr.errors import NonFiniteOutput

    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x).sum(1, keepdim=True)  # -inf at 0, NaN below

    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    with pytest.raises(NonFiniteOutput, match=r"is nan for example 1 at path point alpha=1 "):
        pathattr.IntegratedGradients(Log()).attribute(x, torch.ones_like(x), target=0,
                                                      rule="riemann_right", steps=4)
    with pytest.raises(NonFiniteOutput, match=r"is -inf for example 0 at path point alpha=0"):
        pathattr.IntegratedGradients(Log()).attribute(x[:1], target=0, rule="riemann_left")


@pytest.mark.parametrize("shape", [(2, 0), (2, 3, 0, 4)])
def test_zero_size_features_are_refused_by_every_method(shape):
    from pathattr import registry

    class Any(nn.Module):
        def forward(self, x):
            return x.flatten(1).sum(1, keepdim=True) + torch.zeros(len(x), 2)

    for method in registry.available():
        if registry.METHODS[method].images and len(shape) == 2:
            continue  # refuses non-images first
        with pytest.raises(ValueError, match=rf"x has shape \({shape[0]}, .*no features"):
            registry.make(method, Any()).attribute(torch.zeros(shape), target=0)


def test_ctrl_c_interrupts_a_long_call_within_seconds(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # A shell that starts jobs in the background makes them ignore SIGINT; Python's own handler
    # is what a user at a terminal has.
    script = ("import signal, torch, pathattr, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "m = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), "
              "torch.nn.Linear(256, 3)).eval()\n"
              "print('go', flush=True)\n"
              "try:\n"
              "    pathattr.IntegratedGradients(m).attribute(torch.randn(512, 64), target=0, "
              "steps=20000, batch_size=64)\n"
              "except KeyboardInterrupt:\n"
              "    sys.exit(42)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "go\n"
        time.sleep(1.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 42, "the call finished instead of being interrupted"
        assert time.monotonic() - sent < 10
    finally:
        proc.kill()


def test_check_number_names_the_argument_and_its_range():
    from pathattr.validate import check_number

    assert check_number(3, "x") == 3.0 and isinstance(check_number(3, "x"), float)
    assert check_number(0, "x", 0) == 0.0
    for v, kw, msg in ((0, {"low": 0, "low_open": True}, "x must be a number > 0, got 0"),
                       (1.5, {"low": 0, "high": 1}, r"x must be a number in \[0, 1\], got 1.5"),
                       (1, {"low": 0, "high": 1, "high_open": True}, r"in \[0, 1\), got 1"),
                       (True, {}, r"x must be a number \(finite\), got True"),
                       (float("nan"), {"low": 0}, "x must be a number >= 0, got nan"),
                       (float("inf"), {"low": 0}, "got inf"), ("1", {}, "got '1'")):
        with pytest.raises(ValueError, match=msg):
            check_number(v, "x", **kw)
