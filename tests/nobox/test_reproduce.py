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
