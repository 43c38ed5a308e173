"""End-to-end: the default reproduction passes every claim; the bench runs (slow)."""

import math

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_default_reproduction_claims_pass(tmp_path):
    out = run_experiment("nobox", out=tmp_path, quick=False, index=False)
    failed = [c.name for c in out.result.claims if not c.passed]
    assert not failed, failed
    m = out.result.metrics
    assert len(m["pairs"]) >= 4 and len(set(map(tuple, m["pairs"]))) == len(m["pairs"])
    assert all(v <= 0.2 + 1e-6 for v in m["linf_max"].values())
    for fig in ("victim_accuracy.png", "examples.png"):
        assert (out.out_dir / fig).stat().st_size > 5_000


@pytest.mark.slow
def test_quick_reproduction_runs(tmp_path):
    out = run_experiment("nobox", out=tmp_path, quick=True, index=False)
    assert (out.out_dir / "report.md").is_file()
    assert math.isfinite(out.result.metrics["mean_accuracy"]["prototypical"])


@pytest.mark.slow
def test_bench_quick_runs():
    from dnnkit.nobox.bench import bench

    rows = bench(quick=True)
    assert len(rows) == 6
    assert all(r.ours_s > 0 and math.isfinite(r.ours_s) for r in rows)


@pytest.mark.slow
def test_workers_give_the_same_result():
    import torch

    from dnnkit.nobox import nobox_attack
    from tests.nobox.helpers import tiny_attack, tiny_cfg, tiny_data

    x, _ = tiny_data(n_per_class=4)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    kw = dict(group_size=4, surrogate_cfg=tiny_cfg(n_decoders=2, iters=3),
              attack_cfg=tiny_attack(stage1_iters=2, ila_iters=2), seed=0)
    assert torch.equal(nobox_attack(x, y, workers=1, **kw), nobox_attack(x, y, workers=2, **kw))
