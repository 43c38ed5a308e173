import pytest
import torch
from torch import nn

from dnnkit.core.checkpoint import CheckpointError
from dnnkit.feddip.config import FedDIPConfig
from dnnkit.feddip.masks import global_magnitude_mask
from dnnkit.feddip.server import FedDIPServer, fedavg, official_mbit, sample_clients
from tests.conftest import need

from .helpers import reply, tiny_model


def _states(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = tiny_model().state_dict()
    return [{k: v + torch.randn(v.shape, generator=g) for k, v in base.items()}
            for _ in range(n)]


@pytest.mark.oracle
def test_fedavg_matches_flower_aggregate_train():
    FedAvg = need("flwr.serverapp.strategy").FedAvg

    states = _states(4)
    counts = [10, 30, 7, 53]
    arrays, _ = FedAvg().aggregate_train(1, [reply(s, c, node=i + 1)
                                            for i, (s, c) in enumerate(zip(states, counts))])
    theirs = arrays.to_torch_state_dict()
    ours = fedavg(states, counts)
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=1e-6)


def test_fedavg_integer_buffers_and_bad_inputs():
    bn = nn.BatchNorm1d(3)
    s1, s2 = bn.state_dict(), {k: v.clone() for k, v in bn.state_dict().items()}
    s2["running_mean"] += 1.0
    s2["num_batches_tracked"] += 5
    out = fedavg([s1, s2], [1, 3])
    assert out["num_batches_tracked"].dtype == torch.long and int(out["num_batches_tracked"]) == 0
    torch.testing.assert_close(out["running_mean"], torch.full((3,), 0.75))
    with pytest.raises(ValueError, match="at least one"):
        fedavg([], [])
    with pytest.raises(ValueError, match="positive sum"):
        fedavg([s1, s2], [0, 0])
    with pytest.raises(ValueError, match="different keys"):
        fedavg([s1, {"x": torch.ones(1)}], [1, 1])


def test_server_masks_and_reprunes_on_schedule_with_nested_masks():
    cfg = FedDIPConfig(rounds=20, clients_per_round=2, target_sparsity=0.9, reconfig_interval=5,
                       prune_until=15, lambda_segments=4)
    srv = FedDIPServer(tiny_model(), cfg)
    assert srv.mask is not None  # server ERK mask for round 0
    prev = None
    for t in range(20):
        rec = srv.aggregate(t, _states(2, seed=t), [5, 5])
        if rec["repruned"]:
            if prev is not None:  # code semantics: a pruned weight never returns
                for k in prev:
                    assert not bool((srv.mask[k] & ~prev[k]).any())
            prev = {k: v.clone() for k, v in srv.mask.items()}
        for k, m in srv.mask.items():
            assert bool((srv.state[k][~m] == 0).all())
    assert srv.history[-1]["sparsity"] == pytest.approx(0.9, abs=1 / srv.n_prunable)
    assert srv.history[0]["sparsity"] == pytest.approx(0.5, abs=1 / srv.n_prunable)


def test_reprune_from_dense_can_regrow():
    cfg = FedDIPConfig(rounds=10, clients_per_round=1, target_sparsity=0.5, init_sparsity=0.5,
                       reconfig_interval=1, regularize=False, reprune_from="dense")
    srv = FedDIPServer(tiny_model(), cfg)
    srv.aggregate(0, _states(1, 0), [1])
    first = {k: v.clone() for k, v in srv.mask.items()}
    big = {k: torch.where(first.get(k, torch.ones_like(v, dtype=torch.bool)), 0.01, 50.0)
           if k in first else v for k, v in srv.state.items()}
    srv.aggregate(1, [big], [1])
    regrown = sum(int((srv.mask[k] & ~first[k]).sum()) for k in first)
    assert regrown > 0
    srv2 = FedDIPServer(tiny_model(), cfg.replace(reprune_from="masked"))
    srv2.aggregate(0, _states(1, 0), [1])
    first2 = {k: v.clone() for k, v in srv2.mask.items()}
    big2 = {k: torch.where(first2[k], 0.01, 50.0) if k in first2 else v
            for k, v in srv2.state.items()}
    srv2.aggregate(1, [big2], [1])
    assert sum(int((srv2.mask[k] & ~first2[k]).sum()) for k in first) == 0


def test_nan_aggregate_names_the_round_and_zero_examples_refused():
    cfg = FedDIPConfig(rounds=10, clients_per_round=1, lambda_segments=2)
    srv = FedDIPServer(tiny_model(), cfg)
    srv.aggregate(0, _states(1), [1])
    bad = _states(1)[0]
    bad["2.bias"][0] = float("nan")
    with pytest.raises(ValueError, match="Round 1.*NaN"):
        srv.aggregate(1, [bad], [1])
    with pytest.raises(ValueError, match="0 training examples"):
        srv.aggregate(1, _states(2), [3, 0])
    with pytest.raises(ValueError, match="expected round 1"):
        srv.aggregate(4, _states(1), [1])


def test_comm_accounting():
    cfg = FedDIPConfig(rounds=10, clients_per_round=2, lambda_segments=2, target_sparsity=0.8)
    srv = FedDIPServer(tiny_model(), cfg)
    recs = [srv.aggregate(t, _states(2, t), [1, 1]) for t in range(3)]
    n = srv.n_params
    assert recs[0]["up_bytes"] == 2 * 4 * n  # dense upload
    assert recs[1]["down_bytes"] < 2 * 4 * n  # masked broadcast
    exp = official_mbit(2, n, 0.0, recs[0]["scheduled_sparsity"])
    assert recs[0]["official_mbit"] == pytest.approx(exp)
    assert recs[2]["cum_down_bytes"] == sum(r["down_bytes"] for r in recs)


def test_sampling_is_seeded_and_checked():
    a = sample_clients(range(10), 5, seed=3, round_index=7)
    assert a == sample_clients(list(reversed(range(10))), 5, seed=3, round_index=7)
    assert len(set(a)) == 5
    assert a != sample_clients(range(10), 5, seed=3, round_index=8)
    with pytest.raises(ValueError, match="Cannot sample 5 clients"):
        sample_clients(range(3), 5, seed=0, round_index=0)


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    cfg = FedDIPConfig(rounds=10, clients_per_round=1, lambda_segments=2)
    srv = FedDIPServer(tiny_model(), cfg)
    srv.aggregate(0, _states(1), [1])
    srv.aggregate(1, _states(1, 1), [1])
    path = srv.save(tmp_path / "ck.safetensors")
    again = FedDIPServer(tiny_model(), cfg)
    assert again.load(path) == 2
    for k in srv.state:
        assert torch.equal(again.state[k], srv.state[k])
    for k in srv.mask:
        assert torch.equal(again.mask[k], srv.mask[k])
    assert again.history == srv.history
    with pytest.raises(CheckpointError, match="different FedDIPConfig"):
        FedDIPServer(tiny_model(), cfg.replace(seed=1)).load(path)
    other = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.raises(CheckpointError, match="does not match the model"):
        FedDIPServer(other, cfg).load(path)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        FedDIPServer(tiny_model(), cfg).load(tmp_path / "bad.safetensors")


def test_global_mask_used_by_server_is_the_tested_one():
    cfg = FedDIPConfig(rounds=10, clients_per_round=1, lambda_segments=2, round0_mask="dense")
    srv = FedDIPServer(tiny_model(), cfg)
    st = _states(1)[0]
    srv.aggregate(0, [st], [1])
    exp = global_magnitude_mask(st, srv.prunable, 0.5)
    for k in exp:
        assert torch.equal(exp[k], srv.mask[k])
