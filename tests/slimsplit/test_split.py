"""Ensemble encoder, SplitModel halves, joint training, profiling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnnkit.core.data import load_digits_split
from dnnkit.slimsplit import (
    Payload,
    SlimmableEnsembleEncoder,
    SplitModel,
    payload_nbytes,
    profile_modes,
    train_split,
)
from dnnkit.slimsplit.models import digits_decoder, digits_member, digits_split_model


def _members(n=3):
    torch.manual_seed(0)
    return [nn.Conv2d(1, 2, 3, padding=1) for _ in range(n)]


@pytest.mark.parametrize("combine,weights", [("mean", None), ("sum", None),
                                             ("weighted", [1.0, 2.0, 4.0]),
                                             ("learned", [1.0, 2.0, 4.0])])
def test_ensemble_combines_first_k(combine, weights):
    ms = _members()
    enc = SlimmableEnsembleEncoder(ms, combine=combine, weights=weights,
                                   example_input=torch.zeros(1, 1, 5, 5))
    x = torch.randn(2, 1, 5, 5)
    outs = [m(x) for m in ms]
    for k in (1, 2, 3):
        if combine == "mean":
            ref = sum(outs[:k]) / k
        elif combine == "sum":
            ref = sum(outs[:k])
        else:
            w = torch.tensor(weights[:k])
            w = w / w.sum()
            ref = sum(wi * o for wi, o in zip(w, outs[:k]))
        assert torch.allclose(enc(x, k), ref, atol=1e-6)
        enc.set_mode(k)
        assert torch.allclose(enc(x), ref, atol=1e-6)


def test_ensemble_runs_only_k_members_and_refuses_mixed_shapes():
    calls = []
    ms = _members(4)
    for i, m in enumerate(ms):
        m.register_forward_hook(lambda *_, i=i: calls.append(i))
    enc = SlimmableEnsembleEncoder(ms, example_input=torch.zeros(1, 1, 5, 5))
    calls.clear()
    enc(torch.randn(1, 1, 5, 5), 2)
    assert calls == [0, 1]
    with pytest.raises(ValueError, match="'members' parameter.*identical output shapes"):
        SlimmableEnsembleEncoder([nn.Conv2d(1, 2, 3), nn.Conv2d(1, 3, 3)],
                                 example_input=torch.zeros(1, 1, 5, 5))
    lazy = SlimmableEnsembleEncoder([nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3, padding=1)])
    with pytest.raises(ValueError, match="identical output shapes"):
        lazy(torch.zeros(1, 1, 5, 5), 1)


def test_ensemble_bad_input():
    enc = SlimmableEnsembleEncoder(_members(), example_input=torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="'k' parameter"):
        enc.set_mode(4)
    with pytest.raises(ValueError, match="'k' parameter"):
        enc(torch.zeros(1, 1, 5, 5), 0)
    with pytest.raises(ValueError, match="'x' parameter.*non-empty"):
        enc(torch.zeros(0, 1, 5, 5))
    with pytest.raises(ValueError, match="'x' parameter.*finite"):
        enc(torch.full((1, 1, 5, 5), float("nan")))
    with pytest.raises(ValueError, match="'weights' parameter"):
        SlimmableEnsembleEncoder(_members(), combine="weighted")
    with pytest.raises(ValueError, match=r"'weights\[1\]' parameter"):
        SlimmableEnsembleEncoder(_members(), combine="weighted", weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="'combine' parameter"):
        SlimmableEnsembleEncoder(_members(), combine="median")
    with pytest.raises(TypeError, match="'members' parameter"):
        SlimmableEnsembleEncoder(nn.Conv2d(1, 2, 3))


def test_set_mode_is_cheap_and_leaves_weights_untouched():
    model = digits_split_model(seed=0)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    ptrs = [p.data_ptr() for p in model.parameters()]
    for k, b in model.modes:
        model.set_mode(k, b)
        assert (model.k, model.bits) == (k, b)
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_device_and_server_halves_match_forward():
    model = digits_split_model(seed=0).eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for k, b in [(1, 1), (2, 3), (4, 4)]:
        model.set_mode(k, b)
        for i in range(3):
            p = model.device_side(x[i:i + 1])
            assert p.nbytes() == payload_nbytes((1, 1, 4, 4), b)
            out = model.server_side(Payload.from_bytes(p.to_bytes()))
            with torch.no_grad():
                assert torch.allclose(out, model(x[i:i + 1], k, b), atol=1e-6)


def test_halves_leave_train_flags_and_check_headers():
    model = digits_split_model(seed=0)
    model.train()
    p = model.device_side(torch.rand(1, 1, 8, 8))
    model.server_side(p)
    assert all(m.training for m in model.modules())
    other = SplitModel(SlimmableEnsembleEncoder([digits_member(2)],
                                                example_input=torch.zeros(1, 1, 8, 8)),
                       digits_decoder(2), bits_options=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="'payload' parameter.*shape"):
        model.server_side(other.device_side(torch.rand(1, 1, 8, 8)))
    small = digits_split_model(seed=0, bits_options=(1, 2))
    with pytest.raises(ValueError, match="'payload' parameter.*bits"):
        small.server_side(p)
    with pytest.raises(ValueError, match="'bits' parameter"):
        small.set_mode(1, 3)
    with pytest.raises(ValueError, match="'k' parameter"):
        model.set_mode(5, 1)
    with pytest.raises(TypeError, match="'k' parameter"):
        model.set_mode(1.0, 1)
    with pytest.raises(TypeError, match="'encoder' parameter"):
        SplitModel(nn.Conv2d(1, 1, 1), nn.Flatten())


def test_joint_training_learns_all_modes_and_bits_help():
    torch.manual_seed(0)
    d = load_digits_split(seed=0)
    model = digits_split_model(seed=0)
    hist = train_split(model, d.x_train[:600], d.y_train[:600], epochs=4, seed=0)
    assert hist["loss"][-1] < hist["loss"][0]
    table = profile_modes(model, d.x_test, d.y_test, modes=[(1, 1), (1, 4), (4, 4)], repeats=2)
    assert set(table) == {(1, 1), (1, 4), (4, 4)}
    assert all(st.accuracy > 0.5 for st in table.values())
    assert table[(1, 4)].accuracy > table[(1, 1)].accuracy
    assert table[(1, 1)].payload_bytes < table[(1, 4)].payload_bytes
    assert (model.k, model.bits) == (4, 4)


def test_training_is_seeded():
    d = load_digits_split(seed=0)
    a, b = digits_split_model(seed=1), digits_split_model(seed=1)
    train_split(a, d.x_train[:128], d.y_train[:128], epochs=1, seed=3)
    train_split(b, d.x_train[:128], d.y_train[:128], epochs=1, seed=3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_train_and_profile_bad_input():
    model = digits_split_model(seed=0)
    x, y = torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.int64)
    with pytest.raises(ValueError, match="'y' parameter"):
        train_split(model, x, y[:5], epochs=1)
    with pytest.raises(ValueError, match="'modes' parameter"):
        train_split(model, x, y, epochs=1, modes=[(5, 1)])
    with pytest.raises(ValueError, match="'modes' parameter"):
        profile_modes(model, x, y, modes=[(1, 9)])
    with pytest.raises(ValueError, match="'x' parameter"):
        train_split(model, x[:0], y[:0], epochs=1)
