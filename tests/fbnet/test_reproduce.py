"""End-to-end: the reproduction's claims pass; the full 9-candidate space searches (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("fbnet", out=tmp_path, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    for f in ("report.md", "metrics.json", "fbnet_beta_curve.png", "fbnet_entropy_tau.png",
              "fbnet_choices.png"):
        assert (out.out_dir / f).is_file()
    m = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    assert m["search_cost_ratio"] > 10


@pytest.mark.slow
def test_full_candidate_set_search_on_digits():
    from dnnkit.core.data import load_digits_split
    from dnnkit.fbnet import DNASConfig, SuperNet, dnas_search, fbnet_candidates, systolic_table
    from dnnkit.fbnet.experiment import digits_macro

    data = load_digits_split(test_fraction=0.2, seed=0)
    cands = fbnet_candidates(include_shift=True)
    assert len(cands) == 11
    _, slots, _ = digits_macro(8)
    lut = systolic_table(cands, slots)
    lat = {}
    for beta in (0.0, 5.0):
        torch.manual_seed(0)
        stem, slots, head = digits_macro(8)
        net = SuperNet(stem, slots, cands, head, lut)
        res = dnas_search(net, data.x_train[:600], data.y_train[:600],
                          DNASConfig(epochs=4, warmup_epochs=1, tau_decay=0.7, w_lr=0.05,
                                     theta_lr=0.05, beta=beta, batch_size=64,
                                     theta_batch_size=16))
        assert all(a in cands for a in res.arch)
        assert res.history[-1]["entropy"] < res.history[0]["entropy"]
        lat[beta] = res.history[-1]["expected_latency"]
    assert lat[5.0] < lat[0.0]


def test_experiment_config_is_checked(tmp_path):
    from dnnkit.core.registry import RunContext, get

    exp = get("fbnet")
    ctx = RunContext(out_dir=tmp_path)
    with pytest.raises(ValueError, match="'lut'"):
        exp.run(exp.config(lut="phone"), ctx)
    with pytest.raises(ValueError, match="'betas'"):
        exp.run(exp.config(betas=(0.6, 1.0)), ctx)
    with pytest.raises(ValueError, match="'candidates'"):
        exp.run(exp.config(candidates=("k3_e1", "k5_e3")), ctx)
