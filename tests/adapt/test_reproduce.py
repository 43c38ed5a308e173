"""End-to-end: the reproduction's claims pass; the benchmark runs (slow)."""

from __future__ import annotations

import json
import math

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_quick_reproduction_passes(tmp_path):
    out = run_experiment("adapt", out=tmp_path, quick=True, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    for f in ("report.md", "metrics.json", "adapt_wordlengths.png", "adapt_accuracy.png"):
        assert (out.out_dir / f).is_file()


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("adapt", out=tmp_path, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    m = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    for kind in ("mlp", "cnn"):
        assert m[kind]["training_speedup"] > 1 and m[kind]["inference_speedup"] > 1
    assert m["l1_ablation"]["sparsity_l1"] > m["l1_ablation"]["sparsity_no_l1"]


@pytest.mark.slow
def test_bench_quick_rows():
    from dnnkit.adapt.bench import bench

    rows = bench(quick=True)
    assert rows[0].ours_s > 0 and rows[0].anchor_s > 0
    assert len(rows) == 2
    assert "skipped" in rows[1].note or math.isfinite(rows[1].anchor_s)


def test_experiment_config_is_checked(tmp_path):
    from dnnkit.core.registry import RunContext, get

    exp = get("adapt")
    with pytest.raises(ValueError, match="'models'"):
        exp.run(exp.config(models=("resnet",)), RunContext(out_dir=tmp_path))
    with pytest.raises(ValueError, match="'divergence'"):
        exp.run(exp.config(divergence="js"), RunContext(out_dir=tmp_path))
