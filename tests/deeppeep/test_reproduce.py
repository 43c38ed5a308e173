"""End-to-end reproduction (slow): the claims of the default config, report files, bench rows."""

from __future__ import annotations

import json

import pytest

from dnnkit.core.runner import run_experiment


@pytest.mark.slow
def test_default_reproduction_passes(tmp_path):
    out = run_experiment("deeppeep", out=tmp_path, index=False)
    failed = [(c.name, c.measured) for c in out.result.claims if not c.passed]
    assert not failed, failed
    for f in ("report.md", "metrics.json", "deeppeep_trace.png", "latency_model.json"):
        assert (out.out_dir / f).is_file()
    metrics = json.loads((out.out_dir / "metrics.json").read_text())["metrics"]
    assert metrics["names-only_block_type_acc"] >= 0.8


@pytest.mark.slow
def test_cached_latency_model_is_reused(tmp_path):
    lm_path = tmp_path / "lm.json"
    over = {"latency_model_path": str(lm_path)}
    run_experiment("deeppeep", out=tmp_path / "a", quick=True, overrides=over, index=False)
    first = lm_path.read_text()
    out = run_experiment("deeppeep", out=tmp_path / "b", quick=True, overrides=over, index=False)
    assert lm_path.read_text() == first
    assert "loaded from" in out.result.setup


@pytest.mark.slow
def test_bench_quick_rows():
    from dnnkit.deeppeep.bench import bench

    rows = bench(quick=True)
    assert any("overhead ratio" in r.note for r in rows)
    assert all(r.ours_s > 0 and r.anchor_s > 0 for r in rows)
