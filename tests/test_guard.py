import pytest
import torch
from nets import cnn
from torch import nn

import pathattr
from pathattr.guard import model_guard


def state(m: nn.Module):
    return ([mod.training for mod in m.modules()], [p.requires_grad for p in m.parameters()],
            [(len(mod._forward_hooks), len(mod._forward_pre_hooks), len(mod._backward_hooks))
             for mod in m.modules()])


def test_guard_restores_everything_after_exception():
    m = cnn(0)
    m.fc.weight.requires_grad_(False)  # a user's frozen layer must stay frozen
    user_hook = m.conv1.register_forward_hook(lambda *a: None)
    before = state(m)
    with pytest.raises(RuntimeError, match="boom"), model_guard(m):
        assert not any(p.requires_grad for p in m.parameters())
        m.conv2.register_forward_hook(lambda *a: None)
        m.pool.register_forward_pre_hook(lambda *a: None)
        m.fc.train()
        raise RuntimeError("boom")
    assert state(m) == before
    assert user_hook.id in m.conv1._forward_hooks


def test_methods_leave_model_unchanged_on_error():
    m = cnn(1)
    before = state(m)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="out of range"):
        pathattr.IntegratedGradients(m).attribute(x, target=99, steps=4)
    with pytest.raises(ValueError, match="unknown layer"):
        pathattr.LayerIntegratedGradients(m, "conv9").attribute(x, target=0)
    pathattr.IntegratedGradients(m).attribute(x, target=1, steps=4)
    pathattr.LayerIntegratedGradients(m, "conv2").attribute(x, target=1, steps=4)
    assert state(m) == before


def test_error_raised_mid_pass_restores_hooks():
    m = cnn(2)
    before = state(m)
    calls = {"n": 0}

    def target(out):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("target failed")
        return out[:, 0]

    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="target failed"):
        pathattr.LayerIntegratedGradients(m, "conv2").attribute(x, target=target, steps=8,
                                                                batch_size=4)
    assert state(m) == before
