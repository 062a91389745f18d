import pytest
import torch
from torch import nn

from pathattr.baselines import Several
from pathattr.methods.conductance import LayerConductance
from pathattr.methods.idg import IntegratedDecisionGradients
from pathattr.methods.integrated_gradients import IntegratedGradients
from pathattr.methods.left_ig import LeftIntegratedGradients
from pathattr.shared_pass import explain


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 12), nn.Tanh(), nn.Linear(12, 3)).eval()


def alone(model, x, base, t, steps, rule, method):
    kw = {"baselines": base, "target": t, "steps": steps}
    if method == "ig":
        return IntegratedGradients(model).attribute(x, rule=rule, **kw)
    if method == "left-ig":
        return LeftIntegratedGradients(model).attribute(x, rule=rule, saturation=0.7, **kw)
    if method == "idg-uniform":
        return IntegratedDecisionGradients(model).attribute(x, sampling="uniform", rule=rule,
                                                            **kw)
    if method == "idg":
        return IntegratedDecisionGradients(model).attribute(
            x, base, t, steps=17, coarse_steps=steps, rule=rule)
    return LayerConductance(model, method[1]).attribute(x, rule=rule, **kw)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_right", "riemann_trapezoid"])
def test_same_numbers_as_each_method_alone(rule):
    model = cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 5, 5, generator=g)
    base = Several(torch.randn(2, 2, 5, 5, generator=g) * 0.1)
    t = torch.tensor([0, 2, 1])
    layers = [("conductance", "1"), ("conductance", "4")]
    idg = "idg:steps=17:coarse_steps=12"  # 17 samples on the call's 12-node grid
    methods = ["ig", ("left-ig", {"saturation": 0.7}), "idg-uniform", idg, *layers]
    got = explain(model, x, methods, base, t, steps=12, rule=rule, batch_size=7)
    keys = ["ig", "left-ig:saturation=0.7", "idg-uniform", idg, *layers]
    assert list(got) == keys
    for key, m in zip(keys, ["ig", "left-ig", "idg-uniform", "idg", *layers]):
        ref = alone(model, x, base, t, 12, rule, m)
        torch.testing.assert_close(got[key].attributions, ref.attributions, rtol=1e-5,
                                   atol=1e-7)
        torch.testing.assert_close(got[key].delta, ref.delta, rtol=1e-5, atol=1e-7)
        assert set(got[key].info) == set(ref.info)


def test_conductance_only_and_module_layers():
    model = cnn()
    x = torch.randn(2, 2, 5, 5)
    got = explain(model, x, [("conductance", model[4])], target=1, steps=8)
    ref = LayerConductance(model, "4").attribute(x, target=1, steps=8)
    torch.testing.assert_close(got[("conductance", model[4])].attributions, ref.attributions)


@pytest.mark.parametrize("methods, err", [([], TypeError), ("ig", TypeError),
                                          (["ig", "gradcam"], ValueError),
                                          ([("conductance", 3)], ValueError)])
def test_bad_methods(methods, err):
    with pytest.raises(err):
        explain(cnn(), torch.randn(1, 2, 5, 5), methods, target=0)


def test_model_state_is_restored():
    model = cnn()
    model[0].weight.requires_grad_(True)
    with pytest.raises(ValueError, match="unknown layer"):
        explain(model, torch.randn(1, 2, 5, 5), ["ig", ("conductance", "nope")], target=0)
    explain(model, torch.randn(1, 2, 5, 5), ["ig", "idg", ("conductance", "1")], target=0)
    assert model[0].weight.requires_grad and not model[3].weight.grad
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_public_explain_is_the_function_whatever_was_imported_first():
    import pathattr
    import pathattr.shared_pass

    assert pathattr.explain is pathattr.shared_pass.explain
    assert pathattr.run.__module__ == "pathattr.runs.driver"


def test_idgi_shares_the_left_riemann_pass_and_runs_its_own_on_other_nodes():
    import pathattr

    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).double().eval()
    x = torch.randn(3, 5, dtype=torch.double)
    got = pathattr.explain(model, x, ["idgi", "ig"], target=1, steps=10, rule="riemann_left")
    alone = pathattr.IDGI(model).attribute(x, target=1, steps=10)
    torch.testing.assert_close(got["idgi"].attributions, alone.attributions, rtol=1e-12,
                               atol=1e-14)
    torch.testing.assert_close(got["idgi"].delta, alone.delta, rtol=0, atol=1e-12)
    own = pathattr.explain(model, x, ["idgi", "ig"], target=1, steps=10)
    torch.testing.assert_close(own["idgi"].attributions, alone.attributions, rtol=1e-12,
                               atol=1e-14)
    torch.testing.assert_close(own["ig"].attributions, pathattr.IntegratedGradients(
        model).attribute(x, target=1, steps=10).attributions, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="no option 'rule'"):
        pathattr.explain(model, x, [("idgi", {"rule": "gausslegendre"})], target=1)
