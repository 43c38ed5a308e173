"""End-to-end: the quick reproduction writes its report and every claim passes (slow)."""

import math

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_quick_reproduction_claims_pass(tmp_path):
    out = run_experiment("adv_ntk", out=tmp_path, quick=True, index=False)
    failed = [c.name for c in out.result.claims if not c.passed]
    assert not failed, failed
    assert (out.out_dir / "degeneration.png").stat().st_size > 10_000
    assert (out.out_dir / "report.md").is_file()
    m = out.result.metrics
    assert m["advntk_robust"] > m["ntk_inf_all_robust"]
    assert math.isfinite(m["advntk_seconds_per_step"])


@pytest.mark.slow
def test_bench_quick_runs():
    from dnnkit.adv_ntk.bench import bench

    rows = bench(quick=True)
    assert len(rows) == 3
    assert all(r.ours_s > 0 and math.isfinite(r.ours_s) for r in rows)
