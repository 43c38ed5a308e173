"""The reproduction runs and its claims pass (slow: quick config ~20 s, default ~1-4 min)."""

import json

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
@pytest.mark.parametrize("quick", [True, False])
def test_reproduction_claims_pass(quick, tmp_path):
    out = run_experiment("interactions", out=tmp_path, quick=quick, device="cpu")
    failed = [c.name for c in out.result.claims if not c.passed]
    assert not failed, failed
    metrics = json.loads((out.out_dir / "metrics.json").read_text())
    ov = metrics["metrics"]["overlap"]
    for kind in ("AND", "OR"):
        joint, trad = ov[kind]["joint (ours)"], ov[kind]["traditional"]
        assert all(j > t for j, t in zip(joint, trad)), kind
    for fig in ("overlap_vs_k.png", "strength_curves.png", "order_profile.png"):
        assert (out.out_dir / fig).stat().st_size > 1000


@pytest.mark.slow
def test_bench_quick_rows():
    from dnnkit.interactions.bench import bench

    rows = bench(quick=True)
    labels = [r.label for r in rows]
    assert any("masked forwards" in lab for lab in labels)
    solver = [r for r in rows if "default solver" in r.label]
    assert solver and "gap over the LP optimum" in solver[0].note
    for r in rows:
        assert r.ours_s > 0
