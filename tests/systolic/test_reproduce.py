"""End-to-end: the reproduction's claims pass and the benchmark agrees with SCALE-Sim (slow)."""

from __future__ import annotations

import json

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    out = run_experiment("systolic", out=tmp_path, quick=True, index=False)
    failed = [c.name for c in out.result.claims if not c.passed]
    assert not failed, failed
    for f in ("report.md", "metrics.json", "systolic_sweep.png", "systolic_accuracy.png"):
        assert (out.out_dir / f).is_file()
    metrics = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    assert metrics["mobilenet_macs"] == 568_740_352
    if "oracle_max_cycle_diff" in metrics:
        assert metrics["oracle_max_cycle_diff"] == 0


@pytest.mark.slow
@pytest.mark.oracle
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("systolic", out=tmp_path, index=False)
    assert out.result.passed, [(c.name, c.measured) for c in out.result.claims if not c.passed]


@pytest.mark.slow
@pytest.mark.oracle
def test_bench_quick_identical_cycles_and_faster():
    from tests.conftest import oracle_python

    oracle_python(".venv-scalesim")
    from dnnkit.systolic.bench import bench

    rows = bench(quick=True)
    assert "identical cycles: yes" in rows[0].note


def test_experiment_config_is_checked(tmp_path):
    from dnnkit.core.registry import RunContext, get

    exp = get("systolic")
    ctx = RunContext(out_dir=tmp_path)
    with pytest.raises(ValueError, match="must contain 1, 2 and 4"):
        exp.run(exp.config(group_sizes=(1, 8)), ctx)
    with pytest.raises(ValueError, match="acc_group_sizes"):
        exp.run(exp.config(acc_group_sizes=(4, 8)), ctx)
