"""masked_outputs: agreement with a naive loop, background, baselines, outputs, bad input."""

import math
import time

import pytest
import torch
from torch import nn

from dnnkit.interactions import masked_outputs
from dnnkit.interactions.masking import log_odds, patch_players, player_masks


def _model(seed=0, dropout=False):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(16, 12), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    layers.append(nn.Linear(12, 3))
    return nn.Sequential(*layers).eval()


def naive(model, x, groups, baseline, target):
    """One forward per mask, built by hand."""
    n = len(groups)
    out = []
    for mask in range(1 << n):
        xt = x.clone().reshape(-1)
        b = baseline.reshape(-1) if isinstance(baseline, torch.Tensor) else None
        for i, g in enumerate(groups):
            if not mask >> i & 1:
                for j in g:
                    xt[j] = b[j] if b is not None else baseline
        p = torch.softmax(model(xt.reshape(1, *x.shape)), -1)[0, target]
        out.append(torch.log(p / (1 - p + 1e-7) + 1e-7))
    v = torch.stack(out)
    return v - v[0]


def test_matches_one_at_a_time_loop_with_background_kept():
    model = _model()
    x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))
    groups = [[0, 1], [5], [10, 11, 14], [3]]  # the other 9 positions are background
    base = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(2))
    v = masked_outputs(model, x, players=groups, baseline=base, target=2, batch_size=5)
    ref = naive(model, x, groups, base, 2)
    assert v.shape == (16,) and float(v[0]) == 0.0
    assert torch.allclose(v, ref, atol=1e-5)
    v0 = masked_outputs(model, x, players=groups, baseline=0.0, target=2)
    assert torch.allclose(v0, naive(model, x, groups, 0.0, 2), atol=1e-5)


def test_bool_players_outputs_and_defaults():
    model = _model()
    x = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    model = model.double()
    groups = patch_players(4, 4, 2)  # 4 players
    masks = player_masks(groups, x.shape).reshape(4, 1, 4, 4)
    a = masked_outputs(model, x, players=groups, output="logit", subtract_empty=False, target=1)
    b = masked_outputs(model, x, players=masks, output="logit", subtract_empty=False, target=1)
    assert a.dtype == torch.float64 and torch.equal(a, b)
    with torch.no_grad():
        full = model(x.unsqueeze(0))[0]
    assert float(a[-1]) == pytest.approx(float(full[1]))
    p = masked_outputs(model, x, players=groups, output="prob", target=1, subtract_empty=False)
    assert bool(((p > 0) & (p < 1)).all())
    c = masked_outputs(model, x, players=groups, output=lambda z: z[:, 0] - z[:, 1],
                       subtract_empty=False)
    assert float(c[-1]) == pytest.approx(float(full[0] - full[1]))
    # default target = the model's prediction on x
    pred = int(model(x.unsqueeze(0)).argmax())
    d = masked_outputs(model, x, players=groups, output="logit")
    e = masked_outputs(model, x, players=groups, output="logit", target=pred)
    assert torch.equal(d, e)


def test_log_odds_is_finite_at_saturation():
    z = torch.tensor([[100.0, -100.0], [-100.0, 100.0]])
    lo = log_odds(z, 0)
    assert bool(torch.isfinite(lo).all())
    assert float(lo[0]) == pytest.approx(math.log(1e7), rel=1e-3)


def test_user_model_left_unchanged():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masked_outputs(model, torch.rand(1, 4, 4), players=[[0], [1], [2]])
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_plain_callable_and_scalar_outputs():
    def f(batch):
        return batch.reshape(len(batch), -1).sum(1)

    x = torch.tensor([1.0, 2.0, 4.0])
    v = masked_outputs(f, x, players=[[0], [1], [2]], output="logit")
    assert v.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="one scalar per input"):
        masked_outputs(f, x, players=[[0], [1]], output="log_odds")


def test_training_mode_refused():
    model = _model(dropout=True).train()
    with pytest.raises(ValueError, match="training mode"):
        masked_outputs(model, torch.rand(1, 4, 4), players=[[0], [1]])
    assert model.training


@pytest.mark.parametrize("players,match", [
    ([[0, 1], [1, 2]], "disjoint"),
    ([[0], []], "empty"),
    ([[0], [16]], "players\\[1\\]"),
    ([], "at least 1"),
])
def test_bad_players(players, match):
    with pytest.raises(ValueError, match=match):
        masked_outputs(_model(), torch.rand(1, 4, 4), players=players)


def test_too_many_players_refused_before_any_allocation():
    x = torch.rand(1, 8, 8)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="group players"):
        masked_outputs(lambda b: b.sum((1, 2, 3)), x, players=[[i] for i in range(64)],
                       output="logit")
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(ValueError, match="group players"):
        player_masks(torch.zeros(30, 4, dtype=torch.bool), (4,))


def test_bad_baseline_target_output_and_nan():
    model = _model()
    x = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="baseline"):
        masked_outputs(model, x, players=[[0]], baseline=torch.zeros(3))
    with pytest.raises(TypeError, match="baseline"):
        masked_outputs(model, x, players=[[0]], baseline="black")
    with pytest.raises(ValueError, match="target"):
        masked_outputs(model, x, players=[[0]], target=7)
    with pytest.raises(ValueError, match="Did you mean 'log_odds'"):
        masked_outputs(model, x, players=[[0]], output="log_odd")

    def nan_when_player1_absent(batch):
        out = torch.zeros(len(batch), 2)
        out[batch.reshape(len(batch), -1)[:, 1] == 0] = float("nan")
        return out

    with pytest.raises(ValueError, match="mask 0 \\(players \\[\\]\\)"):
        masked_outputs(nan_when_player1_absent, torch.ones(3), players=[[0], [1]], target=0,
                       output="logit")
    def inf_when_only_player1(batch):
        b = batch.reshape(len(batch), -1)
        bad = (b[:, 0] == 0) & (b[:, 1] == 1)
        return torch.where(bad, float("inf"), 0.0)[:, None].expand(-1, 2)

    with pytest.raises(ValueError, match="mask 2 \\(players \\[1\\]\\)"):
        masked_outputs(inf_when_only_player1, torch.ones(3), players=[[0], [1]], target=0,
                       output="logit")
