"""The reproduction (quick config) runs end to end and its claims pass."""

import json

import pytest


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    from dnnkit.core.runner import run_experiment

    run_experiment("options", out=tmp_path, quick=True, index=False)
    metrics = json.loads((tmp_path / "options" / "metrics.json").read_text())
    failed = [c["name"] for c in metrics["claims"] if not c["passed"]]
    assert not failed, failed
    assert (tmp_path / "options" / "error_vs_moneyness.png").is_file()
    assert (tmp_path / "options" / "heston_surrogate.safetensors").is_file()


@pytest.mark.slow
def test_bench_quick_rows():
    from dnnkit.options.bench import bench

    rows = bench(quick=True)
    assert rows and all(r.ours_s > 0 for r in rows)
